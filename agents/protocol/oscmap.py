"""The OSC address space of an agent: a pure codec, derived from its parameter specs.

Nothing here owns a socket or a task (STYLE 8, 9): :func:`parse_packet` turns a
datagram into messages (:mod:`anamnesis.agents.protocol.oscpacket`, re-exported here), :class:`OscAddressSpace` turns a message into a
:class:`Request` (or raises :class:`~anamnesis.agents.protocol.errors.ProtocolError`), and
:func:`build_message` / :func:`build_bundle` turn replies back into bytes. The
services in ``agents/osc.py`` and ``agents/oscquery.py`` wrap this.

Addresses (``/{name}`` for each parameter; a trailing underscore of a Python name
is dropped, so the unlearn model's ``lambda_`` is ``/lambda``; a parameter's aliases
answer too, so ``/lr`` reaches the learning rate of every model, Unlearn's λ included):

========================  =================================================================
``/PARAM``                no arguments: reply ``/PARAM <value>`` (a query)
``/PARAM f``              float parameter (``i``, ``h``, ``d`` are coerced)
``/PARAM i``              int parameter (``h``, and whole ``f``/``d``, are coerced)
``/PARAM i``              bool parameter (0/1; ``T``/``F`` and 0.0/1.0 are coerced)
``/PARAM s`` or ``i``     choice parameter, by name or by index
``/PARAM f``              array parameter: one value for every element
``/PARAM i f``            array parameter: element ``i`` (0-based) only
``/PARAM f f ...``        array parameter: all ``size`` elements (also as one ``[...]`` array)
``/panic``, ``/unpanic``  fade every output to silence within 50 ms / undo it. ``/panic``
                          panics whatever it carries (a button's release too);
                          ``/unpanic`` needs a press (none, ``T``, ``I``, ``N``, a number
                          >= 1): its release (``F``, 0) is counted and ignored
``/reset [i]``            re-initialise the learnt state (optional integer seed)
``/weights``              no arguments: reply ``/weights f f ...`` (flat vector); floats: set it
``/snapshot s``           save the model state under a name; ``/recall s`` loads one
``/state``                reply with one message per parameter (and ``/panicked i``), bundled
``/ping``                 reply ``/pong``
``/subscribe [i [s]]``    telemetry at 30 Hz to that UDP port of the sender's host
                          (no argument: the sender's own port), from the agent's OSC
                          port; with a prefix (``/subscribe 9000 /a1``) every address
                          starts with it (``/a1/level``); renew within the lease
``/unsubscribe [i]``      stop it
``/reply_port i``         send this host's replies to that UDP port from now on (for a
                          controller that sends from a throw-away port); 0 undoes it
========================  =================================================================

Replies and errors go to the sender (or its ``/reply_port``): ``/error s`` carries
``"/ADDRESS: what was wrong"``. Every telemetry bundle begins with ``/agent s ID``.
Bundles are dispatched at their time tag: "immediately" and past times at once, a
future time scheduled on the loop (never sleeping it; at most 60 s ahead).
The ``N`` (nil) argument is ignored everywhere, so clients that send a bang as
``/panic N`` work. Address patterns (``*``, ``?``, ``[``, ``{``) are not expanded:
an agent has a flat namespace and a pattern is answered with ``/error``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from anamnesis.agents.models.base import ParamSpec
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscpacket import (  # noqa: F401 (re-exported: the codec's API)
    ACCEPTED_TAGS,
    FLOAT32_MAX,
    MAX_ARRAY_DEPTH,
    MAX_BUNDLE_DEPTH,
    MAX_DATAGRAM,
    MAX_MESSAGES_PER_PACKET,
    NTP_EPOCH_OFFSET,
    build_bundle,
    build_bundle_at,
    build_message,
    describe_args,
    parse_packet,
    parse_packet_timed,
    timetag_to_unix,
    type_tag,
    unix_to_timetag,
)

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PATTERN_CHARS = frozenset("*?[]{}, #")
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_-]+){1,4}$")

# OSCQuery ACCESS values.
ACCESS_NONE, ACCESS_READ, ACCESS_WRITE, ACCESS_READWRITE = 0, 1, 2, 3

Action = Literal[
    "get", "set", "panic", "unpanic", "release", "reset", "get_weights", "set_weights",
    "snapshot", "recall", "state", "ping", "subscribe", "unsubscribe", "reply_port"]


@dataclass(frozen=True)
class Request:
    """One decoded OSC message: what the sender asked the agent to do.

    ``name`` is the parameter name (as in ``control.specs()``) for ``get``/``set``;
    ``value`` the new value (a number, a string, a tuple of floats for whole
    arrays and weights, a seed, a snapshot name or a port); ``index`` the array
    element for ``/PARAM i f``.
    """

    action: Action
    address: str
    name: str | None = None
    value: object = None
    index: int | None = None


@dataclass(frozen=True)
class Command:
    """A fixed (non-parameter) address, described for OSCQuery and for docs."""

    address: str
    type_tag: str            # the OSCQuery TYPE: the arguments it takes ("" for none)
    access: int              # OSCQuery ACCESS
    description: str


#: The fixed commands of every agent.
COMMANDS: dict[str, Command] = {c.address: c for c in (
    Command("/panic", "I", ACCESS_WRITE,
            "Fade every output to silence within 50 ms and keep it silent until /unpanic "
            "(a button: whatever it sends)."),
    Command("/unpanic", "I", ACCESS_WRITE, "Undo /panic: fade the output back in (a "
            "button's press: none, T or a number >= 1; its release is ignored)."),
    Command("/reset", "i", ACCESS_WRITE,
            "Re-initialise the learnt state; optional integer seed "
            "(none: the model's current seed)."),
    Command("/weights", "f", ACCESS_READWRITE,
            "The flat weight vector: no arguments replies with it, floats set all of it."),
    Command("/snapshot", "s", ACCESS_WRITE, "Save the model state under a name in the state dir."),
    Command("/recall", "s", ACCESS_WRITE, "Load a named snapshot of the model state."),
    Command("/state", "", ACCESS_NONE, "Reply with one message per parameter, bundled."),
    Command("/ping", "", ACCESS_NONE, "Reply /pong."),
    Command("/subscribe", "is", ACCESS_WRITE,
            "Send telemetry (/agent ID, /level rms peak, /error_rms, ...) at 30 Hz from the "
            "agent's OSC port to this UDP port of the sender's host, every address after an "
            "optional prefix; renew within the lease (60 s)."),
    Command("/unsubscribe", "i", ACCESS_WRITE, "Stop the telemetry of /subscribe."),
    Command("/reply_port", "i", ACCESS_WRITE,
            "Send this host's replies to this UDP port from now on (0: to the source port)."),
)}

# ---------------------------------------------------------------------------
# The address space
# ---------------------------------------------------------------------------


def address_of(name: str) -> str:
    """The OSC address of parameter ``name`` (``lambda_`` -> ``/lambda``)."""
    return "/" + name.rstrip("_")


def _number(address: str, arg: object, *, allow_bool: bool = False) -> float | int:
    if isinstance(arg, bool):
        if allow_bool:
            return int(arg)
        raise ProtocolError(f"{address}: expected a number, got {type_tag(arg)}")
    if isinstance(arg, (int, float)):
        return arg
    raise ProtocolError(f"{address}: expected a number, got {type_tag(arg)}")


class OscAddressSpace:
    """The address space of one agent, built from ``control.specs()``.

    ``specs`` maps parameter names to :class:`ParamSpec`. Raises ``ValueError``
    if a name cannot be an OSC address or collides with a fixed command.
    """

    def __init__(self, specs: Mapping[str, ParamSpec]) -> None:
        self.specs: dict[str, ParamSpec] = dict(specs)
        self._by_address: dict[str, str] = {}
        for name in self.specs:
            if not _NAME_RE.match(name.rstrip("_")):
                raise ValueError(f"parameter name {name!r} cannot be an OSC address")
            address = address_of(name)
            if address in COMMANDS or address in ("/panicked", "/pong", "/error", "/level"):
                raise ValueError(f"parameter {name!r} collides with the fixed address {address}")
            if address in self._by_address:
                raise ValueError(
                    f"parameters {self._by_address[address]!r} and {name!r} share {address}")
            self._by_address[address] = name
        # Aliases (ParamSpec.aliases: /lr for Unlearn's λ) answer where no parameter of
        # that name exists; a model's own parameter always wins.
        self._aliases: dict[str, str] = {}
        for name, spec in self.specs.items():
            for alias in spec.aliases:
                address = address_of(alias)
                if not _NAME_RE.match(alias) or address in COMMANDS:
                    raise ValueError(f"alias {alias!r} of {name!r} cannot be an OSC address")
                if address not in self._by_address and address not in self._aliases:
                    self._aliases[address] = name

    # -- lookup -----------------------------------------------------------------

    def addresses(self) -> list[str]:
        """Every address: parameters (in spec order), their aliases, then the fixed
        commands."""
        return [address_of(n) for n in self.specs] + list(self._aliases) + list(COMMANDS)

    def aliases(self) -> dict[str, str]:
        """Alias address -> the parameter name it reaches (``{"/lr": "lambda_"}``)."""
        return dict(self._aliases)

    def addresses_of(self, name: str) -> tuple[str, ...]:
        """The alias addresses of parameter ``name`` (``("/lr",)`` for Unlearn's λ)."""
        return tuple(a for a, n in self._aliases.items() if n == name)

    def param_of(self, address: str) -> str | None:
        """The parameter name behind ``address`` (its own or an alias), or None."""
        name = self._by_address.get(address)
        return name if name is not None else self._aliases.get(address)

    def type_tag(self, name: str) -> str:
        """The OSC type tag of the value of ``name`` (``"f"``, ``"i"``, ``"s"``, ``"ffff"``)."""
        spec = self.specs[name]
        if spec.kind == "float":
            return "f"
        if spec.kind in ("int", "bool"):
            return "i"
        if spec.kind == "choice":
            return "s"
        return "f" * int(spec.size or 1)

    # -- decoding ---------------------------------------------------------------

    def decode(self, address: str, args: Sequence[object]) -> Request:
        """Turn one message into a :class:`Request`; :class:`ProtocolError` if malformed.

        Checks types and arity (and array indices); range checks are left to the
        control facade, which raises ``ValueError`` with the parameter's range.
        """
        args = [a for a in args if a is not None]     # N (nil) is ignored
        if _PATTERN_CHARS & set(address):
            raise ProtocolError(f"{address}: address patterns are not supported")
        name = self.param_of(address)
        if name is not None:
            return self._decode_param(address, name, args)
        if address not in COMMANDS:
            hint = _closest(address, self.addresses())
            raise ProtocolError(
                f"{address}: unknown address" + (f"; did you mean {hint}?" if hint else ""))
        if address == "/panic":          # whatever it carries: a panic is never refused
            return Request("panic", address)
        if address == "/unpanic":
            return Request("unpanic" if pressed(address, args) else "release", address)
        if address in ("/state", "/ping"):
            _arity(address, args, 0)
            return Request(address[1:], address)  # type: ignore[arg-type]
        if address == "/reset":
            if len(args) > 1:
                raise ProtocolError(
                    f"{address}: takes an optional integer seed; got {describe_args(args)}")
            seed = None
            if args:
                value = _number(address, args[0])
                if isinstance(value, float) and not value.is_integer():
                    raise ProtocolError(f"{address}: seed must be a whole number; got {value:g}")
                seed = int(value)
                if seed < 0:
                    raise ProtocolError(f"{address}: seed must be >= 0; got {seed}")
            return Request("reset", address, value=seed)
        if address == "/weights":
            if not args:
                return Request("get_weights", address)
            if len(args) == 1 and isinstance(args[0], list):
                args = args[0]
            values = tuple(float(_number(address, a)) for a in args)
            return Request("set_weights", address, value=values)
        if address in ("/snapshot", "/recall"):
            if len(args) != 1 or not isinstance(args[0], str):
                raise ProtocolError(f"{address}: takes one string (s); got {describe_args(args)}")
            snapshot = args[0]
            if not snapshot or len(snapshot) > 64:
                raise ProtocolError(f"{address}: name must have 1 to 64 characters")
            return Request(address[1:], address, value=snapshot)  # type: ignore[arg-type]
        if address == "/reply_port":
            if len(args) != 1:
                raise ProtocolError(f"{address}: takes one port (i); got {describe_args(args)}")
            value = _number(address, args[0])
            if isinstance(value, float) or not 0 <= value <= 65535:
                raise ProtocolError(f"{address}: port must be an integer in [0, 65535] "
                                    f"(0: reply to the source port); got {value!r}")
            return Request("reply_port", address, value=int(value))
        # /subscribe [port [prefix]] and /unsubscribe [port]
        prefix = None
        if address == "/subscribe" and len(args) == 2:
            prefix = args[1]
            if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
                raise ProtocolError(f"{address}: the prefix must look like /a1 or /room/a1 "
                                    f"(letters, digits, _ and -, at most 64); got {prefix!r}")
            args = args[:1]
        if len(args) > 1:
            raise ProtocolError(f"{address}: takes an optional port (i); got {describe_args(args)}")
        port = None
        if args:
            value = _number(address, args[0])
            if isinstance(value, float) or not 1 <= value <= 65535:
                raise ProtocolError(
                    f"{address}: port must be an integer in [1, 65535]; got {value!r}")
            port = int(value)
        return Request(address[1:], address, name=prefix, value=port)  # type: ignore[arg-type]

    def _decode_param(self, address: str, name: str, args: list[object]) -> Request:
        spec = self.specs[name]
        if not args:
            return Request("get", address, name)
        if spec.kind == "array":
            return self._decode_array(address, name, spec, args)
        if len(args) != 1:
            raise ProtocolError(
                f"{address}: takes one {self.type_tag(name)}; got {describe_args(args)}")
        arg = args[0]
        if spec.kind == "choice":
            if isinstance(arg, str):
                return Request("set", address, name, arg)
            if isinstance(arg, int) and not isinstance(arg, bool):
                if not 0 <= arg < len(spec.choices):
                    raise ProtocolError(
                        f"{address}: choice index must be in [0, {len(spec.choices) - 1}]; "
                        f"got {arg}")
                return Request("set", address, name, spec.choices[arg])
            raise ProtocolError(
                f"{address}: expected one of {', '.join(spec.choices)} (s) or an index (i); "
                f"got {type_tag(arg)}")
        value = _number(address, arg, allow_bool=spec.kind == "bool")
        if spec.kind in ("int", "bool") and isinstance(value, float):
            if not value.is_integer():
                raise ProtocolError(f"{address}: expected a whole number; got {value:g}")
            value = int(value)
        if spec.kind == "float":
            value = float(value)
        return Request("set", address, name, value)

    def _decode_array(self, address: str, name: str, spec: ParamSpec,
                      args: list[object]) -> Request:
        size = int(spec.size or 1)
        if len(args) == 1 and isinstance(args[0], list):
            args = args[0]
            if len(args) != size:
                raise ProtocolError(f"{address}: array must have {size} values; got {len(args)}")
        # Two arguments are "i f" (one element), except for a 2-element array given
        # as two floats, which is the whole array.
        first_is_int = bool(args) and isinstance(args[0], int) and not isinstance(args[0], bool)
        if len(args) == 2 and (size != 2 or first_is_int):
            index, value = args
            if isinstance(index, bool) or not isinstance(index, int):
                raise ProtocolError(
                    f"{address}: /PARAM i f sets one element; the index must be an integer, "
                    f"got {type_tag(index)}")
            if not 0 <= index < size:
                raise ProtocolError(f"{address}: index must be in [0, {size - 1}]; got {index}")
            return Request("set", address, name, float(_number(address, value)), index=index)
        if len(args) == 1:
            return Request("set", address, name, float(_number(address, args[0])))
        if len(args) == size:
            return Request("set", address, name,
                           tuple(float(_number(address, a)) for a in args))
        raise ProtocolError(
            f"{address}: takes f (all elements), i f (one element) or {size} floats; "
            f"got {describe_args(args)}")

    # -- encoding ---------------------------------------------------------------

    def encode_value(self, name: str, value: object) -> list[object]:
        """The OSC arguments carrying ``value`` of parameter ``name`` (see :meth:`type_tag`)."""
        spec = self.specs[name]
        if spec.kind == "array":
            return [float(v) for v in np.asarray(value, dtype=np.float64).ravel()]
        if spec.kind == "choice":
            return [str(value)]
        if spec.kind in ("int", "bool"):
            return [int(value)]  # type: ignore[call-overload]
        return [float(value)]  # type: ignore[arg-type]

    def value_message(self, name: str, value: object, address: str | None = None) -> bytes:
        """``/PARAM <value>`` encoded, as a reply or a push; ``address`` (an alias the
        query came to) replaces ``/PARAM``, so a controller hears back where it asked."""
        return build_message(address or address_of(name), self.encode_value(name, value))

    def state_bundle(self, values: Mapping[str, object], *, panicked: bool) -> bytes:
        """Every parameter's value (and ``/panicked i``) as one bundle."""
        messages = [self.value_message(n, values[n]) for n in self.specs if n in values]
        messages.append(build_message("/panicked", [int(panicked)]))
        return build_bundle(messages)


def telemetry_messages(telemetry: Mapping[str, float], *, agent_id: str | None = None,
                       prefix: str = "") -> list[bytes]:
    """Encode one telemetry frame: ``/agent s ID`` (with ``agent_id``), ``/level rms peak``
    plus ``/KEY value`` for every other key, each address after ``prefix`` (``/a1``).

    Python ints (the control plane's counters) are sent as ``i``, everything else
    as ``f``. Keys that are not valid OSC names, and values that are not numbers,
    are skipped.
    """
    out: list[bytes] = []
    if agent_id is not None:
        out.append(build_message(prefix + "/agent", [agent_id]))
    if "rms" in telemetry and "peak" in telemetry:
        out.append(build_message(prefix + "/level",
                                 [float(telemetry["rms"]), float(telemetry["peak"])]))
    for key, value in telemetry.items():
        if key in ("rms", "peak") or not _NAME_RE.match(key):
            continue
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        if isinstance(value, (int, np.integer)) and -2**31 <= int(value) < 2**31:
            out.append(build_message(f"{prefix}/{key}", [int(value)]))
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            out.append(build_message(f"{prefix}/{key}", [number]))
    return out


def pressed(address: str, args: Sequence[object]) -> bool:
    """Whether an ``/unpanic`` button's message is its press (True) or its release
    (False), as controllers send them: nothing or a bang (``N``, ``I``: dropped before
    this), ``T``, or a number >= 1 (TouchOSC's 1.0, Max's 1) press; ``F``, 0 and anything
    else release (staying panicked is the safe side). A ``/panic`` needs no such reading:
    it panics whatever it carries. :class:`ProtocolError` for more than one argument."""
    args = [a for a in args if a is not None]
    if not args:
        return True
    if len(args) > 1:
        raise ProtocolError(f"{address}: takes no argument or a button's one (T or a number "
                            f">= 1: pressed, F or 0: released); got {describe_args(args)}")
    value = args[0]
    if isinstance(value, bool):
        return value
    return isinstance(value, (int, float)) and value >= 1


def _arity(address: str, args: Sequence[object], n: int) -> None:
    if len(args) != n:
        raise ProtocolError(f"{address}: takes no arguments; got {describe_args(args)}")


def _closest(address: str, candidates: Iterable[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(address, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def finite_or_none(x: float) -> float | None:
    """``x`` if finite, else None (JSON has no infinity)."""
    return x if math.isfinite(x) else None


__all__ = [
    "ACCESS_NONE", "ACCESS_READ", "ACCESS_READWRITE", "ACCESS_WRITE", "COMMANDS",
    "Command", "MAX_DATAGRAM", "OscAddressSpace", "Request", "address_of", "build_bundle",
    "build_message", "describe_args", "finite_or_none", "parse_packet", "pressed",
    "telemetry_messages",
]
