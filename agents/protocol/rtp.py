"""RTP framing (RFC 3550): a pure codec (the payloads' PCM is :mod:`anamnesis.agents.protocol.pcm`).

No I/O and no state: the receiver and sender in :mod:`anamnesis.agents.net.link` and the
hub's drivers build on these functions; tests feed them tables and random
bytes. Malformed input raises :class:`~anamnesis.agents.protocol.errors.ProtocolError` and nothing
else.

Header (RFC 3550 §5.1), 12 bytes then optional parts::

    V=2 | P | X | CC(4) | M | PT(7) | sequence(16) | timestamp(32) | SSRC(32)
    CSRC list (CC × 32 bit) | extension: profile(16) length(16, in 32-bit words) data
    payload | padding (P set: the last byte counts the padding bytes, itself included)

Sequence numbers wrap at 2**16, timestamps at 2**32: :func:`seq_diff`,
:func:`ts_diff` give the signed shortest distance, :func:`extend_seq` and
:func:`extend_ts` unwrap a wire value next to a known extended (64-bit) one.

The hub-clocked mode marks the agent's clock state in a one-byte header
extension (RFC 8285, profile 0xBEDE): :func:`pack_onebyte_extension` and
:func:`parse_onebyte_extension`.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from anamnesis.agents.protocol.errors import ProtocolError

RTP_VERSION = 2
HEADER_SIZE = 12
#: The dynamic payload type our SDP maps to L24 (or L16) mono.
DEFAULT_PAYLOAD_TYPE = 97
#: RFC 8285 one-byte header extension profile.
ONEBYTE_PROFILE = 0xBEDE

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32

_HEAD = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")


class RtpPacket(NamedTuple):
    """One parsed RTP packet. ``payload`` excludes CSRCs, extension and padding;
    ``extension`` is ``(profile, data)`` or None."""

    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...]
    extension: tuple[int, bytes] | None
    payload: bytes
    padding: int


def pack_packet(payload: bytes, *, sequence: int, timestamp: int, ssrc: int,
                payload_type: int = DEFAULT_PAYLOAD_TYPE, marker: bool = False,
                csrc: tuple[int, ...] | list[int] = (),
                extension: tuple[int, bytes] | None = None, padding: int = 0) -> bytes:
    """One RTP packet (RFC 3550 §5.1) as bytes.

    ``sequence`` is taken modulo 2**16 and ``timestamp`` (samples) modulo 2**32;
    ``extension`` is ``(profile, data)`` with ``len(data)`` a multiple of 4;
    ``padding`` (0–255) bytes are appended with the P bit set. Out-of-range
    fields raise ``ValueError``.
    """
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type must be in [0, 127]; got {payload_type}")
    if not 0 <= ssrc < TS_MOD:
        raise ValueError(f"SSRC must be a 32-bit unsigned number; got {ssrc}")
    if len(csrc) > 15:
        raise ValueError(f"at most 15 CSRCs; got {len(csrc)}")
    if not 0 <= padding <= 255:
        raise ValueError(f"padding must be in [0, 255] bytes; got {padding}")
    first = (RTP_VERSION << 6) | (0x20 if padding else 0) | (0x10 if extension else 0) | len(csrc)
    parts = [_HEAD.pack(first, (0x80 if marker else 0) | payload_type, sequence % SEQ_MOD,
                        timestamp % TS_MOD, ssrc)]
    for c in csrc:
        if not 0 <= c < TS_MOD:
            raise ValueError(f"CSRC must be a 32-bit unsigned number; got {c}")
        parts.append(struct.pack("!I", c))
    if extension is not None:
        profile, data = extension
        if len(data) % 4 or len(data) > 4 * 0xFFFF or not 0 <= profile <= 0xFFFF:
            raise ValueError("extension data must be a multiple of 4 bytes (at most 262140) "
                             "and the profile 16 bits")
        parts.append(_EXT.pack(profile, len(data) // 4))
        parts.append(bytes(data))
    parts.append(bytes(payload))
    if padding:
        parts.append(bytes(padding - 1) + bytes((padding,)))
    return b"".join(parts)


def parse_packet(data: bytes | bytearray | memoryview) -> RtpPacket:
    """Parse one RTP datagram; :class:`ProtocolError` naming what is wrong (the checks
    are :func:`payload_bounds`')."""
    marker, payload_type, sequence, timestamp, ssrc, start, end = payload_bounds(data)
    first = data[0]
    cc = first & 0x0F
    csrc = struct.unpack_from(f"!{cc}I", data, HEADER_SIZE) if cc else ()
    extension = None
    if first & 0x10:
        at = HEADER_SIZE + 4 * cc
        profile, words = _EXT.unpack_from(data, at)
        extension = (profile, bytes(data[at + 4:at + 4 + 4 * words]))
    return RtpPacket(bool(marker), payload_type, sequence, timestamp, ssrc, tuple(csrc),
                     extension, bytes(data[start:end]), len(data) - end)


def payload_bounds(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int, int]:
    """Check one RTP datagram and find its payload without copying it: ``(marker,
    payload_type, sequence, timestamp, ssrc, payload_start, payload_end)`` (the
    receiver's fast path; :func:`parse_packet` builds on it). :class:`ProtocolError`
    naming what is wrong."""
    size = len(data)
    if size < HEADER_SIZE:
        raise ProtocolError(f"RTP packet too short: {size} bytes, the header alone is 12")
    first, second, sequence, timestamp, ssrc = _HEAD.unpack_from(data, 0)
    if first >> 6 != RTP_VERSION:
        raise ProtocolError(f"RTP version {first >> 6}, expected 2")
    offset = HEADER_SIZE + 4 * (first & 0x0F)
    if offset > size:
        raise ProtocolError(f"RTP header announces {first & 0x0F} CSRCs but the packet has "
                            f"{size} bytes")
    if first & 0x10:
        if offset + 4 > size:
            raise ProtocolError("RTP extension bit set but no extension header")
        words = _EXT.unpack_from(data, offset)[1]
        offset += 4 + 4 * words
        if offset > size:
            raise ProtocolError(f"RTP extension of {4 * words} bytes overruns the packet")
    end = size
    if first & 0x20:
        if end <= offset:
            raise ProtocolError("RTP padding bit set but the packet has no payload byte")
        pad = data[end - 1]
        if pad == 0 or pad > end - offset:
            raise ProtocolError(f"RTP padding count {pad} is invalid for {end - offset} bytes "
                                "after the header")
        end -= pad
    return (second >> 7, second & 0x7F, sequence, timestamp, ssrc, offset, end)


# ---------------------------------------------------------------------------
# One-byte header extensions (RFC 8285)
# ---------------------------------------------------------------------------


def pack_onebyte_extension(elements: dict[int, bytes]) -> tuple[int, bytes]:
    """``(0xBEDE, data)`` for :func:`pack_packet` from ``{id: value}`` (id 1–14,
    1–16 bytes each), zero-padded to a multiple of 4 bytes."""
    out = bytearray()
    for ident, value in elements.items():
        if not 1 <= ident <= 14 or not 1 <= len(value) <= 16:
            raise ValueError(f"one-byte extension id must be 1-14 and value 1-16 bytes; "
                             f"got id {ident}, {len(value)} bytes")
        out.append((ident << 4) | (len(value) - 1))
        out += value
    out += bytes(-len(out) % 4)
    return ONEBYTE_PROFILE, bytes(out)


def parse_onebyte_extension(extension: tuple[int, bytes] | None) -> dict[int, bytes]:
    """``{id: value}`` from an RFC 8285 one-byte extension; ``{}`` for None or
    another profile; :class:`ProtocolError` if an element overruns the data."""
    if extension is None or extension[0] != ONEBYTE_PROFILE:
        return {}
    data = extension[1]
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        head = data[i]
        if head == 0:  # padding byte
            i += 1
            continue
        ident, length = head >> 4, (head & 0x0F) + 1
        if ident == 15:  # reserved: stop parsing (RFC 8285 §4.2)
            break
        if i + 1 + length > len(data):
            raise ProtocolError(f"one-byte extension element {ident} overruns the data")
        out[ident] = bytes(data[i + 1:i + 1 + length])
        i += 1 + length
    return out


# ---------------------------------------------------------------------------
# Wrap-around arithmetic
# ---------------------------------------------------------------------------


def seq_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` of two 16-bit sequence numbers, in [-32768, 32767]."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """Signed distance ``a - b`` of two 32-bit timestamps (samples), in [-2**31, 2**31)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def seq_add(a: int, n: int) -> int:
    """Sequence number ``a + n`` modulo 2**16."""
    return (a + n) & 0xFFFF


def ts_add(a: int, n: int) -> int:
    """Timestamp ``a + n`` (samples) modulo 2**32."""
    return (a + n) & 0xFFFFFFFF


def extend_seq(reference: int, seq: int) -> int:
    """The extended (unwrapped) sequence number closest to the extended ``reference``
    whose low 16 bits are ``seq``."""
    return reference + seq_diff(seq, reference & 0xFFFF)


def extend_ts(reference: int, ts: int) -> int:
    """The extended (unwrapped) timestamp closest to the extended ``reference`` whose
    low 32 bits are ``ts``."""
    return reference + ts_diff(ts, reference & 0xFFFFFFFF)


def ptime_ms(frames: int, sample_rate: int) -> float:
    """Packet duration (ms) of ``frames`` at ``sample_rate`` Hz."""
    return 1000.0 * frames / sample_rate


__all__ = [
    "DEFAULT_PAYLOAD_TYPE", "HEADER_SIZE", "ONEBYTE_PROFILE", "RTP_VERSION", "RtpPacket",
    "extend_seq", "extend_ts", "pack_onebyte_extension", "pack_packet", "parse_onebyte_extension",
    "parse_packet", "payload_bounds", "ptime_ms", "seq_add", "seq_diff", "ts_add",
    "ts_diff",
]
