"""RTP sessions of an agent's link: one sender and one receiver per stream (RFC 3550).

* :class:`RtpSender` — headers for one outgoing stream (random SSRC, sequence and
  timestamp base; marker bit on the first packet after a (re)start).
* :class:`RtpReceiver` — one incoming stream: accepts only its configured peer, learns
  the SSRC (and resynchronises when it changes), classifies every packet (duplicate,
  reordered, late, lost by sequence gaps), measures the RFC 3550 interarrival jitter
  and the sender's clock drift (:class:`~anamnesis.agents.net.drift.ClockDrift`), and writes the samples into a :class:`~anamnesis.agents.dsp.jitter.JitterBuffer` on
  the reader's timeline.
* :func:`open_udp` opens the link's datagram endpoint (a large receive buffer: bursts
  after a stall must not be lost)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from anamnesis.agents.dsp.jitter import LATE, OVERRUN, PARTLY_LATE, JitterBuffer
from anamnesis.agents.net.drift import ClockDrift
from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.pcm import SAMPLE_BYTES
from anamnesis.agents.protocol.rtp import (
    DEFAULT_PAYLOAD_TYPE,
    HEADER_SIZE,
    extend_ts,
    payload_bounds,
    seq_diff,
)

#: RFC 3550 A.1: a forward jump of more sequence numbers than this is a restart.
MAX_DROPOUT = 3000
#: Sequence numbers remembered for duplicate detection (older ones count as late).
SEQ_WINDOW = 1024
#: Largest samples per packet a receiver accepts (bigger datagrams are "oversized").
MAX_PACKET_FRAMES = 2048
#: Socket receive buffer asked for (bytes): bursts after a stall must not be lost.
RCVBUF = 1 << 20

_HEAD = struct.Struct("!BBHII")
_ONEBYTE_HEAD = struct.Struct("!HH")

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Sender
# ---------------------------------------------------------------------------


class RtpSender:
    """RTP headers for one outgoing stream.

    SSRC, first sequence number and timestamp offset are random (RFC 3550 §5.1);
    the marker bit is set on the first packet and after :meth:`restart`.
    ``packet(payload, ts)`` takes the stream's own sample clock ``ts`` and adds
    the offset, so several copies of one stream have independent numbering.
    """

    def __init__(self, *, payload_type: int = DEFAULT_PAYLOAD_TYPE, ssrc: int | None = None,
                 sequence: int | None = None, ts_offset: int | None = None,
                 rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.payload_type = payload_type
        self.ssrc = rng.getrandbits(32) if ssrc is None else ssrc
        self.sequence = rng.getrandbits(16) if sequence is None else sequence & 0xFFFF
        self.ts_offset = rng.getrandbits(32) if ts_offset is None else ts_offset
        self._marker = True
        self.packets = 0

    def restart(self) -> None:
        """The next packet starts a new run (marker bit set)."""
        self._marker = True

    def _next_fields(self, first: int, ts: int) -> tuple[int, int, int, int, int]:
        """The header fields of the next packet at stream time ``ts`` (its sequence
        number taken, the marker cleared)."""
        second = self.payload_type | (0x80 if self._marker else 0)
        self._marker = False
        sequence = self.sequence
        self.sequence = (sequence + 1) & 0xFFFF
        self.packets += 1
        return first, second, sequence, (ts + self.ts_offset) & 0xFFFFFFFF, self.ssrc

    def header(self, ts: int, extension: bytes | None = None) -> bytes:
        """The 12-byte header (plus ``extension``, a packed RFC 3550 extension block
        whose presence sets the X bit) for a packet at stream time ``ts`` (samples)."""
        head = _HEAD.pack(*self._next_fields(0x90 if extension else 0x80, ts))
        return head + extension if extension else head

    def header_into(self, buffer: Any, ts: int) -> int:
        """Write the 12-byte header (no extension) for stream time ``ts`` at the start of
        ``buffer`` (a writable bytes-like object, e.g. a numpy uint8 array); 12."""
        _HEAD.pack_into(buffer, 0, *self._next_fields(0x80, ts))
        return HEADER_SIZE

    def packet(self, payload: bytes, ts: int, extension: bytes | None = None) -> bytes:
        """A whole packet: :meth:`header` + ``payload``."""
        return self.header(ts, extension) + payload


def onebyte_extension_block(ident: int, value: int) -> bytes:
    """A packed RFC 3550 extension block carrying one RFC 8285 one-byte element
    ``ident`` (1-14) with the single byte ``value``: 8 bytes."""
    return _ONEBYTE_HEAD.pack(0xBEDE, 1) + bytes(((ident << 4), value & 0xFF, 0, 0))


# ---------------------------------------------------------------------------
# Receiver
# ---------------------------------------------------------------------------


def is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


class RtpReceiver(asyncio.DatagramProtocol):
    """Receive one RTP stream from ``peer_host`` (and ``peer_port``, if given) into
    ``buffer``. Everything else is counted and dropped: datagrams from other
    addresses (``foreign``), longer than :attr:`max_datagram` bytes or with more
    than ``max_frames`` samples (``oversized``), not RTP (``malformed``), another
    payload type (``wrong_type``).

    Per packet: the first one (or one with a new SSRC: ``ssrc_changes``; or a
    sequence jump > :data:`MAX_DROPOUT`: ``restarts``) maps the sender's
    timestamps onto the buffer's timeline ``target`` samples ahead of the play
    position. Then a repeated sequence number is a ``duplicate``; an older one a
    ``reordered`` packet; a packet whose samples were already played is ``late``
    (dropped — unless it is the newest, when the stream as a whole fell behind:
    the timeline is remapped, ``resyncs``); a marker bit on a newer packet (a
    sender restart) also remaps. ``lost`` = expected − distinct packets received
    (RFC 3550 A.3, without counting duplicates). ``jitter`` is the RFC 3550 A.8
    interarrival jitter in samples.

    ``datagram_received`` runs on the event loop and never raises.
    """

    def __init__(self, buffer: JitterBuffer, *, peer_host: str, peer_port: int | None = None,
                 payload_type: int = DEFAULT_PAYLOAD_TYPE, encoding: str = "L24",
                 max_frames: int = MAX_PACKET_FRAMES, name: str = "in",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if encoding not in SAMPLE_BYTES:
            raise ValueError(f"encoding must be L24 or L16; got {encoding!r}")
        self.buffer = buffer
        self.peer_host = peer_host
        self.peer_port = peer_port
        self.payload_type = payload_type
        self.encoding = encoding
        self.width = SAMPLE_BYTES[encoding]
        self.max_frames = max_frames
        #: Largest datagram accepted (bytes): header, 15 CSRCs, a 1 KiB extension,
        #: max_frames samples and 255 bytes of padding.
        self.max_datagram = HEADER_SIZE + 60 + 4 + 1024 + max_frames * self.width + 255
        self.name = name
        self._clock = clock
        self._rate = float(buffer.sample_rate)
        self.transport: asyncio.DatagramTransport | None = None
        self.problems = RateLimitedLog(log, prefix=f"RTP {name}")
        self.ssrc: int | None = None
        self.datagrams = 0
        self.packets = 0           # RTP packets of the stream (before classification)
        self.received = 0          # distinct packets
        self.duplicates = 0
        self.reordered = 0
        self.late = 0
        self.foreign = 0
        self.oversized = 0
        self.malformed = 0
        self.wrong_type = 0
        self.ssrc_changes = 0
        self.restarts = 0
        self.resyncs = 0
        self.too_old = 0           # late packets older than the duplicate window (not "received")
        self._lost_before = 0
        self._seen = [-1] * SEQ_WINDOW
        self._base = self._max = 0
        self._max_ts = 0
        self._offset = 0
        self._session_received = 0
        self._transit: float | None = None
        self.jitter = 0.0
        self.last_arrival = 0.0
        #: The sender's clock against this host's (``clock_ppm`` in :meth:`stats`).
        self.drift = ClockDrift(self._rate)

    # -- asyncio ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        self.problems("-", "socket error", str(exc))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams += 1
        if len(data) > self.max_datagram:
            self.oversized += 1
            return
        if addr[0] != self.peer_host or (self.peer_port is not None and addr[1] != self.peer_port):
            self.foreign += 1
            return
        try:
            self.handle(data)
        except ProtocolError as exc:
            self.malformed += 1
            self.problems(str(addr[0]), "malformed RTP", str(exc))
        except Exception as exc:  # a bug must not kill the protocol: count and log once
            self.malformed += 1
            self.problems(str(addr[0]), "receiver error", f"{type(exc).__name__}: {exc}")

    # -- the stream -------------------------------------------------------------------
    def handle(self, data: bytes) -> None:
        """Process one datagram already accepted by address (see the class docstring)."""
        marker, pt, seq, ts, ssrc, start, end = payload_bounds(data)
        if pt != self.payload_type:
            self.wrong_type += 1
            return
        nbytes = end - start
        if nbytes == 0 or nbytes % self.width:
            raise ProtocolError(f"{self.encoding} payload of {nbytes} bytes")
        n = nbytes // self.width
        if n > self.max_frames:
            self.oversized += 1
            return
        self.packets += 1
        now = self._clock()
        in_order = True
        if ssrc != self.ssrc:
            if self.ssrc is not None:
                self.ssrc_changes += 1
                self.problems(self.peer_host, "new SSRC", f"stream {self.name} now from SSRC "
                              f"{ssrc:#010x} (was {self.ssrc:#010x}); resynchronising")
            self._new_session(ssrc, seq, ts)
            ext = self._max
            ext_ts = self._max_ts
        else:
            d = seq_diff(seq, self._max & 0xFFFF)
            if d > 0:
                if d > MAX_DROPOUT:
                    self.restarts += 1
                    self._new_session(ssrc, seq, ts)
                    ext, ext_ts = self._max, self._max_ts
                else:
                    ext = self._max + d
                    self._max = ext
                    ext_ts = extend_ts(self._max_ts, ts)
                    self._max_ts = ext_ts
                    if marker:  # the sender restarted: its clock may have jumped
                        self.resyncs += 1
                        self._offset = self._anchor(ext_ts)
                        self.drift.reset()
            elif d == 0:
                self.duplicates += 1
                return
            else:
                if -d >= SEQ_WINDOW:
                    self.late += 1  # far too old to play, and beyond duplicate detection
                    self.too_old += 1
                    self.buffer.note_late()
                    return
                ext = self._max + d
                if self._seen[ext % SEQ_WINDOW] == ext:
                    self.duplicates += 1
                    return
                self.reordered += 1
                in_order = False
                self._base = min(self._base, ext)
                ext_ts = extend_ts(self._max_ts, ts)
        self._seen[ext % SEQ_WINDOW] = ext
        self._session_received += 1
        self.received += 1
        # RFC 3550 A.8 interarrival jitter, in samples
        transit = now * self._rate - ext_ts
        if self._transit is not None:
            self.jitter += (abs(transit - self._transit) - self.jitter) / 16.0
        self._transit = transit
        self.last_arrival = now
        if in_order:
            self.drift.add(now, ext_ts)
        payload = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start)
        pos = ext_ts + self._offset
        status = self.buffer.write_pcm(payload, pos, n, self.width)
        if status == LATE or status == PARTLY_LATE:
            self.late += 1
            self.buffer.note_late()
            if status == LATE and in_order:  # the whole stream is behind: catch up
                self.resyncs += 1
                self._offset = self._anchor(ext_ts)
                self.buffer.write_pcm(payload, ext_ts + self._offset, n, self.width)
        elif status == OVERRUN:  # far ahead of the play position (a jump, or no reader)
            self.resyncs += 1
            self._offset = self._anchor(ext_ts)
            self.buffer.write_pcm(payload, ext_ts + self._offset, n, self.width)

    def timeline_position(self, ts: int) -> int:
        """Where the sample with RTP timestamp ``ts`` (of the current SSRC) plays on the
        buffer's timeline (samples)."""
        return extend_ts(self._max_ts, ts) + self._offset

    def _anchor(self, ext_ts: int) -> int:
        """:meth:`_place`, and tell the buffer that a new mapping begins."""
        self.buffer.reanchor()
        return self._place(ext_ts)

    def _place(self, ext_ts: int) -> int:
        """Timeline offset that puts ``ext_ts`` ``target`` samples ahead of the play
        position, and never onto samples of the previous mapping still to be played."""
        buffer = self.buffer
        ahead = buffer.position + buffer.target
        # follow on after the old data, but never further than 4 blocks past the target
        # (a flood of SSRC changes must not push the timeline out of the ring)
        end = min(buffer.written_end, ahead + 4 * buffer.block)
        return max(ahead, end) - ext_ts

    def _new_session(self, ssrc: int, seq: int, ts: int) -> None:
        if self.ssrc is not None:
            self._lost_before += self._session_lost()
        self.ssrc = ssrc
        self._base = self._max = (1 << 16) + seq
        self._max_ts = (1 << 32) + ts
        self._offset = self._anchor(self._max_ts)
        self._session_received = 0
        self._seen = [-1] * SEQ_WINDOW
        self._transit = None
        self.drift.reset()

    def _session_lost(self) -> int:
        if self.ssrc is None:
            return 0
        return max(0, self._max - self._base + 1 - self._session_received)

    @property
    def lost(self) -> int:
        """Packets never received (expected from the sequence numbers − distinct received)."""
        return self._lost_before + self._session_lost()

    def stats(self) -> dict[str, float]:
        """Receiver and jitter-buffer counters; ``jitter_ms`` is RFC 3550's estimate;
        ``clock_ppm`` the sender's clock rate against this host's (:class:`ClockDrift`;
        present once ``drift_span_s`` reaches its 20 s)."""
        out = {
            "datagrams": float(self.datagrams), "packets": float(self.packets),
            "received": float(self.received), "lost": float(self.lost),
            "late": float(self.late), "duplicates": float(self.duplicates),
            "reordered": float(self.reordered), "foreign": float(self.foreign),
            "oversized": float(self.oversized), "malformed": float(self.malformed),
            "wrong_type": float(self.wrong_type), "ssrc_changes": float(self.ssrc_changes),
            "restarts": float(self.restarts), "resyncs": float(self.resyncs),
            "jitter": self.jitter, "jitter_ms": 1000.0 * self.jitter / self._rate,
            "drift_span_s": round(self.drift.span_s, 1),
        }
        ppm = self.drift.ppm
        if ppm is not None:   # the sender's clock against ours, + fast (after 20 s of it)
            out["clock_ppm"] = round(ppm, 1)
        out.update(self.buffer.stats())
        return out


# ---------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------


async def open_udp(protocol_factory: Callable[[], asyncio.DatagramProtocol], host: str,
                   port: int = 0) -> tuple[asyncio.DatagramTransport, asyncio.DatagramProtocol]:
    """A UDP endpoint bound to ``host:port`` (0: any free port) with a 1 MiB receive
    buffer (best effort)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError:
        pass  # the kernel keeps its default; bursts may then be dropped and counted as lost
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(protocol_factory, sock=sock)


__all__ = ["RtpReceiver", "RtpSender", "onebyte_extension_block", "open_udp"]
