"""The OSC address space of an agent: a pure codec, derived from its parameter specs.

Nothing here owns a socket or a task (STYLE 8, 9): :func:`parse_packet` turns a
datagram into messages, :class:`OscAddressSpace` turns a message into a
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
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

from anamnesis.agents.models.base import ParamSpec
from anamnesis.agents.protocol.errors import ProtocolError

#: Largest UDP payload we send or accept (bytes): the IPv4 UDP maximum.
MAX_DATAGRAM = 65_507
#: Nesting depth of bundles accepted inside one datagram.
MAX_BUNDLE_DEPTH = 8
#: Deepest nesting of OSC arrays ("[...]" in the type tags) in a message.
MAX_ARRAY_DEPTH = 4
#: Largest finite float32: floats beyond it are sent as ``d``.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Messages accepted in one datagram (a bundle of many tiny messages).
MAX_MESSAGES_PER_PACKET = 512

#: Type tags python-osc parses and we accept in incoming messages.
ACCEPTED_TAGS = frozenset("ifdhsbTFNI[]")

_BUNDLE_PREFIX = b"#bundle\x00"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PATTERN_CHARS = frozenset("*?[]{}, #")
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_-]+){1,4}$")
#: Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2_208_988_800

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
# Packets
# ---------------------------------------------------------------------------


def _tag_of(arg: object) -> str:
    """The OSC type tag a decoded python-osc argument came from (for messages)."""
    if arg is True:
        return "T"
    if arg is False:
        return "F"
    if arg is None:
        return "N"
    if isinstance(arg, int):
        return "i"
    if isinstance(arg, float):
        return "f"
    if isinstance(arg, str):
        return "s"
    if isinstance(arg, bytes):
        return "b"
    if isinstance(arg, list):
        return "[" + "".join(_tag_of(a) for a in arg) + "]"
    return "?"


def describe_args(args: Sequence[object]) -> str:
    """A type-tag string for error messages, e.g. ``"f f"`` or ``"(none)"``."""
    return " ".join(_tag_of(a) for a in args) or "(none)"


def _check_arrays(address: str, tags: str) -> None:
    """Arrays balanced and nested at most :data:`MAX_ARRAY_DEPTH` deep (python-osc
    recurses, and 1,000 levels were a RecursionError per datagram)."""
    depth = 0
    for tag in tags:
        depth += (tag == "[") - (tag == "]")
        if depth > MAX_ARRAY_DEPTH or depth < 0:
            break
    if depth:
        raise ProtocolError(f"{address}: OSC arrays must be balanced and nested at most "
                            f"{MAX_ARRAY_DEPTH} deep")


def _parse_message(data: bytes) -> tuple[str, list[object]]:
    """Parse one OSC message; check the type tags first so python-osc never logs or guesses."""
    try:
        address, index = osc_types.get_string(data, 0)
    except (osc_types.ParseError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed OSC address: {exc}") from None
    if not address.startswith("/"):
        raise ProtocolError(f"OSC address must start with '/'; got {address[:40]!r}")
    if index < len(data):
        try:
            tags, args_start = osc_types.get_string(data, index)
        except (osc_types.ParseError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"{address}: malformed type tag string: {exc}") from None
        if not tags.startswith(","):
            raise ProtocolError(f"{address}: type tag string must start with ','")
        bad = set(tags[1:]) - ACCEPTED_TAGS
        if bad:
            raise ProtocolError(
                f"{address}: unsupported OSC type tag(s) {''.join(sorted(bad))!r}; "
                f"accepted: i f d h s b T F N I and arrays")
        _check_arrays(address, tags[1:])
        _check_payload_size(address, data, args_start, tags[1:])
        if "I" in tags:   # impulse (OSC 1.1, liblo's bang): a nil to us, no payload either
            end = index + len(tags)
            data = data[:index] + data[index:end].replace(b"I", b"N") + data[end:]
    try:
        message = OscMessage(data)
    except Exception as exc:  # python-osc raises ParseError and, for bad UTF-8, ValueError
        raise ProtocolError(f"{address}: malformed OSC arguments: {exc}") from None
    return address, list(message.params)


def _check_payload_size(address: str, data: bytes, start: int, tags: str) -> None:
    """Check that the arguments fill the message exactly.

    python-osc pads a truncated float or int with zeros (a lenient reading meant
    for Reaktor), which would turn a cut-off ``/gain f`` into 0 dB; an agent
    must not act on a truncated message, so its size is checked first.
    """
    pos = start
    size = len(data)
    for tag in tags:
        if tag in "if":
            pos += 4
        elif tag in "dh":
            pos += 8
        elif tag == "s":
            end = data.find(b"\x00", pos)
            if end < 0:
                raise ProtocolError(f"{address}: truncated string argument")
            pos = end + 4 - (end % 4)
        elif tag == "b":
            if pos + 4 > size:
                raise ProtocolError(f"{address}: truncated blob argument")
            (length,) = struct.unpack_from(">i", data, pos)
            if length < 0:
                raise ProtocolError(f"{address}: negative blob size")
            pos += 4 + length + (-length % 4)
        if pos > size:
            raise ProtocolError(f"{address}: truncated message: arguments need more than "
                                f"{size} bytes")
    if pos != size:
        raise ProtocolError(f"{address}: {size - pos} bytes after the last argument")


def parse_packet(data: bytes) -> list[tuple[str, list[object]]]:
    """Parse a datagram (a message or a bundle, nested at most :data:`MAX_BUNDLE_DEPTH`).

    Returns ``(address, args)`` pairs in datagram order, time tags dropped (the hub
    dispatches at once; the agent's server uses :func:`parse_packet_timed`). Raises
    :class:`ProtocolError` for anything malformed; a bundle is accepted whole or not
    at all.
    """
    return [(address, args) for _, address, args in parse_packet_timed(data)]


def parse_packet_timed(data: bytes) -> list[tuple[int, str, list[object]]]:
    """:func:`parse_packet` with each message's time tag: that of its innermost bundle
    (64-bit NTP: seconds since 1900 in the high 32 bits), or 1 ("immediately") for a
    plain message."""
    if len(data) == 0:
        raise ProtocolError("empty datagram")
    if len(data) % 4:
        raise ProtocolError(f"OSC packet size must be a multiple of 4 bytes; got {len(data)}")
    out: list[tuple[int, str, list[object]]] = []
    # Iterative walk: (buffer, depth, time tag). Bundles push their elements.
    stack: list[tuple[bytes, int, int]] = [(bytes(data), 0, 1)]
    while stack:
        chunk, depth, timetag = stack.pop()
        if chunk.startswith(_BUNDLE_PREFIX):
            if depth >= MAX_BUNDLE_DEPTH:
                raise ProtocolError(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
            if len(chunk) < 16:
                raise ProtocolError("truncated bundle header")
            (inner,) = struct.unpack_from(">Q", chunk, 8)
            elements: list[bytes] = []
            pos = 16
            while pos < len(chunk):
                if pos + 4 > len(chunk):
                    raise ProtocolError("truncated bundle element size")
                (size,) = struct.unpack_from(">i", chunk, pos)
                pos += 4
                if size <= 0 or size % 4 or pos + size > len(chunk):
                    raise ProtocolError(f"bad bundle element size {size}")
                elements.append(chunk[pos:pos + size])
                pos += size
            # Reverse so that popping keeps datagram order.
            stack.extend((element, depth + 1, inner) for element in reversed(elements))
        elif chunk.startswith(b"/"):
            address, args = _parse_message(chunk)
            out.append((timetag, address, args))
            if len(out) > MAX_MESSAGES_PER_PACKET:
                raise ProtocolError(f"more than {MAX_MESSAGES_PER_PACKET} messages in one datagram")
        else:
            raise ProtocolError("datagram is neither an OSC message nor a bundle")
    return out


def timetag_to_unix(timetag: int) -> float | None:
    """Unix seconds of an NTP time tag; None for "immediately" (1)."""
    if timetag == 1:
        return None
    return (timetag >> 32) - NTP_EPOCH_OFFSET + (timetag & 0xFFFFFFFF) / 2**32


def unix_to_timetag(seconds: float) -> int:
    """The NTP time tag of Unix time ``seconds``."""
    ntp = seconds + NTP_EPOCH_OFFSET
    whole = int(ntp)
    return (whole << 32) | int((ntp - whole) * 2**32)


def build_bundle_at(timetag: int, messages: Iterable[bytes]) -> bytes:
    """Wrap encoded messages in an OSC bundle with time tag ``timetag`` (NTP)."""
    parts = [_BUNDLE_PREFIX, struct.pack(">Q", timetag)]
    for message in messages:
        parts.append(struct.pack(">i", len(message)))
        parts.append(message)
    return b"".join(parts)


def _osc_arg(builder: OscMessageBuilder, value: object) -> None:
    if isinstance(value, (bool, np.bool_)):
        builder.add_arg(bool(value))
    elif isinstance(value, (int, np.integer)):
        v = int(value)
        builder.add_arg(v, "h" if not -2**31 <= v < 2**31 else "i")
    elif isinstance(value, (float, np.floating)):
        v = float(value)   # past float32's range (a blown-up weight): 64 bits, not an error
        builder.add_arg(v, "d" if math.isfinite(v) and abs(v) > FLOAT32_MAX else "f")
    elif isinstance(value, str):
        builder.add_arg(value, "s")
    elif isinstance(value, bytes):
        builder.add_arg(value, "b")
    elif value is None:
        builder.add_arg(None, "N")
    else:
        raise ProtocolError(f"cannot encode {type(value).__name__} as an OSC argument")


def build_message(address: str, args: Iterable[object] = ()) -> bytes:
    """Encode one OSC message. Floats are sent as ``f`` (32 bit; ``d`` past its range),
    ints as ``i`` (or ``h``)."""
    builder = OscMessageBuilder(address)
    for value in args:
        _osc_arg(builder, value)
    return builder.build().dgram


def build_bundle(messages: Iterable[bytes]) -> bytes:
    """Wrap encoded messages in an OSC bundle with the time tag "immediately"."""
    return build_bundle_at(1, messages)


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
        raise ProtocolError(f"{address}: expected a number, got {_tag_of(arg)}")
    if isinstance(arg, (int, float)):
        return arg
    raise ProtocolError(f"{address}: expected a number, got {_tag_of(arg)}")


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
                f"got {_tag_of(arg)}")
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
                    f"got {_tag_of(index)}")
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
