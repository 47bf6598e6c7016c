"""OSC packets, strictly: :func:`parse_packet` turns a datagram (a message or nested
bundles) into ``(address, args)`` pairs or raises
:class:`~anamnesis.agents.protocol.errors.ProtocolError`; :func:`build_message`,
:func:`build_bundle` and :func:`build_bundle_at` turn replies into bytes.

Reading is our own and strict — a message's size must be what its type tags say, so a
cut-off ``/gain f`` is refused rather than read as 0 (python-osc pads it with zeros),
bundles nest at most :data:`MAX_BUNDLE_DEPTH` deep and arrays :data:`MAX_ARRAY_DEPTH` —
and fast (~2 µs a message; python-osc's reader costs ~5 µs an argument). python-osc
builds messages, and reads the rare one with arrays after the same checks.
:mod:`anamnesis.agents.protocol.oscmap` (the address space) re-exports all of it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

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
#: Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_EPOCH_OFFSET = 2_208_988_800


def type_tag(arg: object) -> str:
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
        return "[" + "".join(type_tag(a) for a in arg) + "]"
    return "?"


def describe_args(args: Sequence[object]) -> str:
    """A type-tag string for error messages, e.g. ``"f f"`` or ``"(none)"``."""
    return " ".join(type_tag(a) for a in args) or "(none)"


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


def _read_string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    """The OSC string at ``pos`` (NUL-terminated, padded to 4 bytes) and the position
    after it; ``ProtocolError`` starting with ``what`` if it is cut off or not UTF-8."""
    end = data.find(b"\x00", pos)
    after = end + 4 - (end % 4)
    if end < 0 or after > len(data):
        raise ProtocolError(f"{what}: truncated string")
    try:
        return data[pos:end].decode("utf-8"), after
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{what}: {exc}") from None


_FIXED = {"i": (struct.Struct(">i"), 4), "f": (struct.Struct(">f"), 4),
          "d": (struct.Struct(">d"), 8), "h": (struct.Struct(">q"), 8)}
_CONSTANT = {"T": True, "F": False, "N": None, "I": None}   # I: impulse, a nil to us


def _parse_message(data: bytes) -> tuple[str, list[object]]:
    """Parse one OSC message, strictly: its size must be what its type tags say (see
    :func:`_read_args`). Arguments are decoded here (python-osc's reader costs ~5 µs an
    argument, and a hub reads 30 telemetry frames of ~36 figures per agent a second);
    messages with arrays go through python-osc after the same checks."""
    address, index = _read_string(data, 0, "malformed OSC address")
    if not address.startswith("/"):
        raise ProtocolError(f"OSC address must start with '/'; got {address[:40]!r}")
    if index >= len(data):
        return address, []
    tags, args_start = _read_string(data, index, f"{address}: malformed type tag string")
    if not tags.startswith(","):
        raise ProtocolError(f"{address}: type tag string must start with ','")
    tags = tags[1:]
    bad = set(tags) - ACCEPTED_TAGS
    if bad:
        raise ProtocolError(
            f"{address}: unsupported OSC type tag(s) {''.join(sorted(bad))!r}; "
            f"accepted: i f d h s b T F N I and arrays")
    if "[" not in tags and "]" not in tags:
        return address, _read_args(address, data, args_start, tags)
    _check_arrays(address, tags)
    _check_payload_size(address, data, args_start, tags)
    if "I" in tags:   # impulse (OSC 1.1, liblo's bang): a nil to us, no payload either
        end = index + len(tags) + 1
        data = data[:index] + data[index:end].replace(b"I", b"N") + data[end:]
    try:
        message = OscMessage(data)
    except Exception as exc:  # python-osc raises ParseError and, for bad UTF-8, ValueError
        raise ProtocolError(f"{address}: malformed OSC arguments: {exc}") from None
    return address, list(message.params)


def _blob_span(address: str, data: bytes, pos: int) -> tuple[int, int]:
    """The size of the blob at ``pos`` and the position after it (padded to 4 bytes)."""
    if pos + 4 > len(data):
        raise ProtocolError(f"{address}: truncated blob argument")
    (length,) = struct.unpack_from(">i", data, pos)
    if length < 0:
        raise ProtocolError(f"{address}: negative blob size")
    return length, pos + 4 + length + (-length % 4)


def _read_args(address: str, data: bytes, pos: int, tags: str) -> list[object]:
    """Decode the arguments of ``tags`` (no arrays) from ``pos``; they must fill the
    message exactly (a cut-off ``/gain f`` must not read as 0 dB, as python-osc's lenient
    reader would have it)."""
    size = len(data)
    args: list[object] = []
    for tag in tags:
        fixed = _FIXED.get(tag)
        if fixed is not None:
            if pos + fixed[1] > size:
                raise ProtocolError(f"{address}: truncated message: arguments need more than "
                                    f"{size} bytes")
            args.append(fixed[0].unpack_from(data, pos)[0])
            pos += fixed[1]
        elif tag == "s":
            if data.find(b"\x00", pos) < 0:
                raise ProtocolError(f"{address}: truncated string argument")
            text, pos = _read_string(data, pos, f"{address}: malformed OSC arguments")
            args.append(text)
        elif tag == "b":
            length, after = _blob_span(address, data, pos)
            if after > size:
                raise ProtocolError(f"{address}: truncated message: arguments need more than "
                                    f"{size} bytes")
            args.append(data[pos + 4:pos + 4 + length])
            pos = after
        else:
            args.append(_CONSTANT[tag])
    if pos != size:
        raise ProtocolError(f"{address}: {size - pos} bytes after the last argument")
    return args


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
            _, pos = _blob_span(address, data, pos)
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


__all__ = [
    "ACCEPTED_TAGS", "FLOAT32_MAX", "MAX_ARRAY_DEPTH", "MAX_BUNDLE_DEPTH", "MAX_DATAGRAM",
    "MAX_MESSAGES_PER_PACKET", "NTP_EPOCH_OFFSET", "build_bundle", "build_bundle_at",
    "build_message", "describe_args", "parse_packet", "parse_packet_timed", "type_tag",
    "timetag_to_unix", "unix_to_timetag",
]
