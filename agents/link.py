"""The RTP audio link of an agent: receiver, sender, block rings, listen-in leases.

DESIGN "Audio link: RTP": audio between agent and hub is RTP (RFC 3550), L24
mono, one packet per block. This module holds the I/O around the pure codec
(:mod:`agents.rtp`, :mod:`agents.sdp`) and the jitter buffer
(:mod:`agents.jitter`):

* :class:`RtpReceiver` — an asyncio datagram protocol for one incoming stream:
  accepts only its configured peer, learns the SSRC (and resynchronises when it
  changes), classifies every packet (duplicate, reordered, late, lost by
  sequence gaps), measures the RFC 3550 interarrival jitter, and writes the
  samples into a :class:`~agents.jitter.JitterBuffer` on the reader's timeline.
* :class:`RtpSender` — headers for one outgoing stream (random SSRC, sequence
  and timestamp base; marker bit on the first packet after a (re)start).
* :class:`BlockRing` — a preallocated single-producer single-consumer ring of
  blocks between the audio thread and the event loop (both directions). Its
  kernels hold the GIL, which orders the two sides; nothing is allocated.
* :class:`AgentLink` — the agent's RTP port: its UDP socket, the ``out`` /
  ``mic`` / ``in`` taps fed by the audio thread, listen-in leases
  (``GET /streams/NAME.sdp?port=P``), the ``in`` receiver of the deployed mode,
  and the demultiplexing of the hub-clocked mode (:mod:`agents.hubclock`).

Pacing: the audio thread pushes a block into a ring and, if no wake-up is
pending, posts one ``call_soon_threadsafe`` to the loop (the pattern of
sounddevice's asyncio example); the loop drains the rings and sends one packet
per block. So packets leave at the audio clock's pace, never from a timer or a
busy loop.

Network safety: a listen-in copy goes only to the address the HTTP request came
from (no reflection to third hosts), to a port in [1024, 65535], at most
:data:`MAX_LEASES` at once and :data:`MAX_LEASES_PER_HOST` per host, each for
:data:`LEASE_S` seconds unless renewed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from .errors import ProtocolError
from .jitter import LATE, OVERRUN, PARTLY_LATE, JitterBuffer
from .osc import RateLimitedLog
from .rtp import (
    DEFAULT_PAYLOAD_TYPE,
    HEADER_SIZE,
    SAMPLE_BYTES,
    extend_ts,
    payload_bounds,
    seq_diff,
)
from .sdp import StreamDescription, build_sdp

log = logging.getLogger(__name__)

#: Streams of an agent: its speaker signal, what its mic hears, what it receives from the hub.
STREAMS = ("out", "mic", "in")
#: Seconds a listen-in lease lasts unless renewed.
LEASE_S = 60.0
MAX_LEASES = 32
MAX_LEASES_PER_HOST = 8
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


# ---------------------------------------------------------------------------
# PCM encoding into preallocated buffers (the sender's hot path)
# ---------------------------------------------------------------------------


@njit(cache=True)
def _encode_pcm(x, n, out, width):
    """Big-endian PCM of ``x[:n]`` into the uint8 array ``out``: rounding, clipping
    and NaN → 0 exactly as :func:`agents.rtp.encode_l24` / ``encode_l16``."""
    if width == 3:
        scale, lo, hi = 8388608.0, -8388608.0, 8388607.0
    else:
        scale, lo, hi = 32768.0, -32768.0, 32767.0
    for i in range(n):
        v = x[i]
        if v != v:
            c = 0
        else:
            r = np.rint(v * scale)
            if r < lo:
                r = lo
            elif r > hi:
                r = hi
            c = int(r)
        if c < 0:
            c += 1 << (8 * width)
        if width == 3:
            out[3 * i] = (c >> 16) & 0xFF
            out[3 * i + 1] = (c >> 8) & 0xFF
            out[3 * i + 2] = c & 0xFF
        else:
            out[2 * i] = (c >> 8) & 0xFF
            out[2 * i + 1] = c & 0xFF


def encode_into(x: np.ndarray, n: int, out: np.ndarray, encoding: str = "L24") -> int:
    """Encode ``x[:n]`` (float64) into the uint8 array ``out``; returns the byte count."""
    width = SAMPLE_BYTES[encoding]
    _encode_pcm(x, n, out, width)
    return n * width


# ---------------------------------------------------------------------------
# Block rings between the audio thread and the loop
# ---------------------------------------------------------------------------

R_WRITTEN, R_READ, R_DROPPED = 0, 1, 2


@njit(cache=True)
def _ring_push(buf, lens, stamps, counts, x, n, ts):
    slots = buf.shape[0]
    w = counts[R_WRITTEN]
    if w - counts[R_READ] >= slots:
        counts[R_DROPPED] += 1
        return False
    i = w % slots
    for k in range(n):
        buf[i, k] = x[k]
    lens[i] = n
    stamps[i] = ts
    counts[R_WRITTEN] = w + 1
    return True


@njit(cache=True)
def _ring_push_pcm(buf, lens, stamps, counts, payload, n, width, ts):
    slots = buf.shape[0]
    w = counts[R_WRITTEN]
    if w - counts[R_READ] >= slots:
        counts[R_DROPPED] += 1
        return False
    i = w % slots
    if width == 3:
        for k in range(n):
            j = 3 * k
            v = (np.int64(payload[j]) << 16) | (np.int64(payload[j + 1]) << 8) | np.int64(payload[j + 2])
            if v >= 8388608:
                v -= 16777216
            buf[i, k] = v * (1.0 / 8388608.0)
    else:
        for k in range(n):
            v = (np.int64(payload[2 * k]) << 8) | np.int64(payload[2 * k + 1])
            if v >= 32768:
                v -= 65536
            buf[i, k] = v * (1.0 / 32768.0)
    lens[i] = n
    stamps[i] = ts
    counts[R_WRITTEN] = w + 1
    return True


@njit(cache=True)
def _ring_pop(buf, lens, stamps, counts, out, meta):
    """Copy the oldest block into ``out``; ``meta[0]`` = frames (-1: empty), ``meta[1]`` = ts."""
    r = counts[R_READ]
    if r >= counts[R_WRITTEN]:
        meta[0] = -1
        return
    i = r % buf.shape[0]
    n = lens[i]
    for k in range(n):
        out[k] = buf[i, k]
    meta[0] = n
    meta[1] = stamps[i]
    counts[R_READ] = r + 1


class BlockRing:
    """A preallocated SPSC ring of ``slots`` blocks of up to ``frames`` float64 samples,
    each with a timestamp (samples). ``push``/``push_pcm`` on the producer's thread,
    ``pop``/``peek``+``release`` on the consumer's; a full ring drops the new block
    (counted in :attr:`dropped`). Allocation-free on both sides (numba kernels
    that hold the GIL, so the two sides are ordered)."""

    def __init__(self, slots: int, frames: int) -> None:
        self.frames = frames
        self.buf = np.zeros((slots, frames))
        self.lens = np.zeros(slots, dtype=np.int64)
        self.stamps = np.zeros(slots, dtype=np.int64)
        self.counts = np.zeros(3, dtype=np.int64)
        self.meta = np.zeros(2, dtype=np.int64)

    def push(self, x: np.ndarray, n: int, ts: int) -> bool:
        """Copy ``x[:n]`` (float64) with timestamp ``ts``; False if the ring is full."""
        return _ring_push(self.buf, self.lens, self.stamps, self.counts, x, n, ts)

    def push_pcm(self, payload: np.ndarray, n: int, width: int, ts: int) -> bool:
        """Decode ``n`` big-endian samples of ``width`` bytes from the uint8 ``payload``."""
        return _ring_push_pcm(self.buf, self.lens, self.stamps, self.counts, payload, n, width,
                              ts)

    def pop(self, out: np.ndarray) -> int:
        """Copy the oldest block into ``out``; its frames, or -1 if empty (then
        :attr:`meta` ``[1]`` is unchanged). The timestamp is ``self.meta[1]``."""
        _ring_pop(self.buf, self.lens, self.stamps, self.counts, out, self.meta)
        return self.meta[0]

    def pending(self) -> int:
        """Blocks waiting."""
        return int(self.counts[R_WRITTEN] - self.counts[R_READ])

    def peek(self) -> tuple[np.ndarray, int] | None:
        """The oldest block (a view, valid until :meth:`release`) and its timestamp."""
        r = int(self.counts[R_READ])
        if r >= self.counts[R_WRITTEN]:
            return None
        i = r % self.buf.shape[0]
        return self.buf[i, :self.lens[i]], int(self.stamps[i])

    def release(self) -> None:
        """Free the block returned by :meth:`peek`."""
        self.counts[R_READ] += 1

    @property
    def dropped(self) -> int:
        return int(self.counts[R_DROPPED])


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

    def header(self, ts: int, extension: bytes | None = None) -> bytes:
        """The 12-byte header (plus ``extension``, a packed RFC 3550 extension block
        whose presence sets the X bit) for a packet at stream time ``ts`` (samples)."""
        first = 0x90 if extension else 0x80
        second = self.payload_type | (0x80 if self._marker else 0)
        self._marker = False
        head = _HEAD.pack(first, second, self.sequence, (ts + self.ts_offset) & 0xFFFFFFFF,
                          self.ssrc)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        return head + extension if extension else head

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


def _is_ipv4(text: str) -> bool:
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
                        self._offset = self._place(ext_ts)
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
        payload = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start)
        pos = ext_ts + self._offset
        status = self.buffer.write_pcm(payload, pos, n, self.width)
        if status == LATE or status == PARTLY_LATE:
            self.late += 1
            self.buffer.note_late()
            if status == LATE and in_order:  # the whole stream is behind: catch up
                self.resyncs += 1
                self._offset = self._place(ext_ts)
                self.buffer.write_pcm(payload, ext_ts + self._offset, n, self.width)
        elif status == OVERRUN:  # far ahead of the play position (a jump, or no reader)
            self.resyncs += 1
            self._offset = self._place(ext_ts)
            self.buffer.write_pcm(payload, ext_ts + self._offset, n, self.width)

    def timeline_position(self, ts: int) -> int:
        """Where the sample with RTP timestamp ``ts`` (of the current SSRC) plays on the
        buffer's timeline (samples)."""
        return extend_ts(self._max_ts, ts) + self._offset

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
        self._offset = self._place(self._max_ts)
        self._session_received = 0
        self._seen = [-1] * SEQ_WINDOW
        self._transit = None

    def _session_lost(self) -> int:
        if self.ssrc is None:
            return 0
        return max(0, self._max - self._base + 1 - self._session_received)

    @property
    def lost(self) -> int:
        """Packets never received (expected from the sequence numbers − distinct received)."""
        return self._lost_before + self._session_lost()

    def stats(self) -> dict[str, float]:
        """Receiver and jitter-buffer counters; ``jitter_ms`` is RFC 3550's estimate."""
        out = {
            "datagrams": float(self.datagrams), "packets": float(self.packets),
            "received": float(self.received), "lost": float(self.lost),
            "late": float(self.late), "duplicates": float(self.duplicates),
            "reordered": float(self.reordered), "foreign": float(self.foreign),
            "oversized": float(self.oversized), "malformed": float(self.malformed),
            "wrong_type": float(self.wrong_type), "ssrc_changes": float(self.ssrc_changes),
            "restarts": float(self.restarts), "resyncs": float(self.resyncs),
            "jitter": self.jitter, "jitter_ms": 1000.0 * self.jitter / self._rate,
        }
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


# ---------------------------------------------------------------------------
# The agent's RTP port
# ---------------------------------------------------------------------------


@dataclass
class Lease:
    """A listen-in copy of one stream to ``host:port`` until ``expires`` (monotonic s)."""

    stream: str
    host: str
    port: int
    expires: float
    sender: RtpSender = field(default_factory=RtpSender)


class LeaseError(ValueError):
    """A listen-in request that cannot be granted; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class AgentLink(asyncio.DatagramProtocol):
    """The agent's RTP endpoint on ``interface:port`` (see the module docstring).

    ``block`` (frames) and ``sample_rate`` (Hz) are the engine's; ``hub_host`` is the
    only address whose packets are taken as the ``in`` stream (the hub).
    ``deployed`` receives ``in`` into a drift-absorbing jitter buffer of
    ``target_ms`` that the audio thread reads with :meth:`before_block`; the
    hub-clocked mode instead hands each ``in`` packet to the handler installed
    with :meth:`set_hub_handler`.

    Audio-thread API (allocation-free): :meth:`before_block`, :meth:`after_block`,
    :meth:`tap`. Loop API: :meth:`open`, :meth:`lease`, :meth:`sdp`,
    :meth:`send_to_hub`, :meth:`close`, :meth:`stats`.
    """

    def __init__(self, *, agent_id: str, interface: str, block: int, sample_rate: int,
                 hub_host: str | None = None, encoding: str = "L24",
                 payload_type: int = DEFAULT_PAYLOAD_TYPE, target_ms: float = 30.0,
                 ring_slots: int = 64) -> None:
        if not _is_ipv4(interface):
            raise ValueError(f"the RTP interface must be an IPv4 address; got {interface!r}")
        self.agent_id = agent_id
        self.interface = interface
        self.block = block
        self.sample_rate = sample_rate
        self.hub_host = hub_host or interface
        self.encoding = encoding
        self.width = SAMPLE_BYTES[encoding]
        self.payload_type = payload_type
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.rings = {name: BlockRing(ring_slots, block) for name in STREAMS}
        self._ring_list = [self.rings[name] for name in STREAMS]
        #: 1 while a stream has listeners (the audio thread skips idle taps).
        self._active = np.zeros(len(STREAMS), dtype=np.int64)
        self.leases: dict[tuple[str, str, int], Lease] = {}
        self._wake_pending = False
        self._enc = np.zeros(block * self.width + 16, dtype=np.uint8)
        self._clock = 0
        self.buffer = JitterBuffer(sample_rate=sample_rate, block=block, target_ms=target_ms,
                                   absorb_drift=True, adaptive=True)
        self.receiver = RtpReceiver(self.buffer, peer_host=self.hub_host, payload_type=payload_type,
                                    encoding=encoding, name=f"{agent_id} in")
        self._hub_handler: Callable[[bytes, Any], None] | None = None
        self._deployed = False
        self._in_buf = np.zeros(block)
        self._mix = np.zeros(block)
        self.sent = 0
        self.unexpected = 0
        self.send_errors = 0
        self.dropped_blocks = 0
        self.problems = RateLimitedLog(log, prefix=f"RTP agent {agent_id}")

    # -- lifecycle (loop) -------------------------------------------------------------
    async def open(self, port: int = 0) -> int:
        """Bind the RTP socket (``port`` 0: a free one); returns the bound port."""
        self._loop = asyncio.get_running_loop()
        transport, _ = await open_udp(lambda: self, self.interface, port)
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.receiver.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a listener that went away: normal, counted
        self.send_errors += 1

    def close(self) -> None:
        """Close the socket; leases end."""
        self.leases.clear()
        self._active[:] = 0
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def set_deployed(self, enabled: bool = True) -> None:
        """Receive ``in`` into the jitter buffer that :meth:`before_block` reads."""
        self._deployed = enabled

    def set_hub_handler(self, handler: Callable[[bytes, Any], None] | None) -> None:
        """Hub-clocked mode: ``handler(datagram, addr)`` gets every datagram from the hub."""
        self._hub_handler = handler

    # -- incoming (loop) --------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._hub_handler is not None and addr[0] == self.hub_host:
            self._hub_handler(data, addr)
        elif self._deployed:
            self.receiver.datagram_received(data, addr)
        else:
            self.unexpected += 1  # nothing listens for `in` (not yet wired, or shutting down)

    # -- audio thread -----------------------------------------------------------------
    def before_block(self, mic: np.ndarray, n: int) -> np.ndarray:
        """Deployed mode: ``mic`` + the ``in`` stream (jitter-buffered) as the model's
        input (a preallocated array, first ``n`` frames valid); taps ``mic`` and ``in``.
        Without the deployed mode: taps ``mic`` and returns it unchanged."""
        if not self._deployed or n > self.block:
            self.tap(1, mic, n, self._clock)
            return mic
        full = n == self.block
        inb = self._in_buf if full else self._in_buf[:n]
        self.buffer.read(inb)
        mix = self._mix if full else self._mix[:n]
        np.add(mic, inb, out=mix)
        self.tap(1, mic, n, self._clock)
        self.tap(2, inb, n, self._clock)
        return mix

    def after_block(self, speaker: np.ndarray, n: int) -> None:
        """Tap ``out`` and advance the stream clock by ``n`` samples."""
        self.tap(0, speaker, n, self._clock)
        self._clock += n

    def tap(self, index: int, block: np.ndarray, n: int, ts: int) -> None:
        """Offer ``block[:n]`` of stream ``STREAMS[index]`` at stream time ``ts``
        (samples) to its listeners. Audio thread; a no-op when nobody listens."""
        if self._active[index] == 0:
            return
        if n > self.block or not self._ring_list[index].push(block, n, ts):
            self.dropped_blocks += 1
        self._wake()

    def _wake(self) -> None:
        if self._wake_pending or self._loop is None:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the loop is closed: shutting down
            self._wake_pending = False

    # -- outgoing (loop) --------------------------------------------------------------
    def _drain(self) -> None:
        self._wake_pending = False
        now = time.monotonic()
        for index, name in enumerate(STREAMS):
            ring = self._ring_list[index]
            while True:
                item = ring.peek()
                if item is None:
                    break
                block, ts = item
                nbytes = encode_into(block, block.shape[0], self._enc, self.encoding)
                ring.release()
                payload = self._enc[:nbytes].tobytes()
                self._send_leases(name, payload, ts, now)

    def _send_leases(self, stream: str, payload: bytes, ts: int, now: float) -> None:
        transport = self.transport
        if transport is None:
            return
        expired = []
        for key, lease in self.leases.items():
            if lease.stream != stream:
                continue
            if lease.expires <= now:
                expired.append(key)
                continue
            transport.sendto(lease.sender.packet(payload, ts), (lease.host, lease.port))
            self.sent += 1
        for key in expired:
            self._end_lease(key)

    def send_to_hub(self, packet: bytes, addr: Any) -> None:
        """Send one packet (the hub-clocked mode's output) to ``addr``."""
        if self.transport is not None:
            self.transport.sendto(packet, addr)
            self.sent += 1

    # -- listen-in leases (loop) ------------------------------------------------------
    def lease(self, stream: str, host: str, port: int, *, now: float | None = None) -> Lease:
        """Start or renew for :data:`LEASE_S` s a copy of ``stream`` to ``host:port``.
        ``host`` must be the requesting client's own address (the caller's duty: the
        HTTP handler passes the request's peer). :class:`LeaseError` if refused."""
        if stream not in STREAMS:
            raise LeaseError(f"no stream {stream!r}; streams: {', '.join(STREAMS)}", 404)
        if not isinstance(port, int) or not 1024 <= port <= 65535:
            raise LeaseError(f"port must be a UDP port in [1024, 65535]; got {port!r}")
        if not _is_ipv4(host):
            raise LeaseError(f"listen-in needs an IPv4 client address; got {host!r}")
        now = time.monotonic() if now is None else now
        self._expire(now)
        key = (stream, host, port)
        lease = self.leases.get(key)
        if lease is None:
            if len(self.leases) >= MAX_LEASES:
                raise LeaseError(f"too many listeners ({MAX_LEASES}); try again later", 503)
            if sum(1 for le in self.leases.values() if le.host == host) >= MAX_LEASES_PER_HOST:
                raise LeaseError(f"at most {MAX_LEASES_PER_HOST} listen-in copies per host", 503)
            lease = Lease(stream, host, port, now + LEASE_S)
            self.leases[key] = lease
            self._active[STREAMS.index(stream)] = 1
            log.info("agent %s: %s stream to %s:%d for %.0f s", self.agent_id, stream, host,
                     port, LEASE_S)
        else:
            lease.expires = now + LEASE_S
        return lease

    def end_lease(self, stream: str, host: str, port: int) -> bool:
        """Stop a copy early; False if there was none."""
        return self._end_lease((stream, host, port))

    def _end_lease(self, key: tuple[str, str, int]) -> bool:
        lease = self.leases.pop(key, None)
        if lease is None:
            return False
        index = STREAMS.index(lease.stream)
        if not any(le.stream == lease.stream for le in self.leases.values()):
            self._active[index] = 0
        return True

    def _expire(self, now: float) -> None:
        for key in [k for k, le in self.leases.items() if le.expires <= now]:
            self._end_lease(key)

    def sdp(self, stream: str, host: str, port: int, lease: Lease | None = None) -> str:
        """The SDP of ``stream`` as sent to ``host:port``."""
        desc = StreamDescription(
            name=f"anamnesis agent {self.agent_id} {stream}", address=host, port=port,
            sample_rate=self.sample_rate, encoding=self.encoding,
            payload_type=self.payload_type, frames=self.block, origin=self.interface,
            session_id=lease.sender.ssrc if lease else 0)
        return build_sdp(desc)

    def telemetry(self) -> dict[str, float]:
        """Flat figures for the agent's telemetry: the ``in`` receiver and its jitter
        buffer (``rtp_in_*``; ms where named), packets sent and listen-in leases."""
        r = self.receiver
        b = self.buffer.stats()
        return {
            "rtp_in_received": float(r.received), "rtp_in_lost": float(r.lost),
            "rtp_in_late": float(r.late), "rtp_in_duplicates": float(r.duplicates),
            "rtp_in_reordered": float(r.reordered), "rtp_in_concealed": b["concealed"],
            "rtp_in_underruns": b["underruns"], "rtp_in_slips": b["slips"],
            "rtp_in_jitter_ms": 1000.0 * r.jitter / self.sample_rate,
            "rtp_in_depth_ms": b["depth_smoothed_ms"], "rtp_sent": float(self.sent),
            "rtp_leases": float(len(self.leases)),
        }

    def stats(self) -> dict[str, object]:
        """Port, packets sent, leases, dropped tap blocks, and the ``in`` receiver."""
        return {
            "rtp_port": self.port, "sent": self.sent, "send_errors": self.send_errors,
            "dropped_blocks": self.dropped_blocks, "unexpected": self.unexpected,
            "leases": [{"stream": le.stream, "host": le.host, "port": le.port,
                        "expires_in_s": round(le.expires - time.monotonic(), 1)}
                       for le in self.leases.values()],
            "in": self.receiver.stats(),
        }


def add_stream_routes(app: Any, link: AgentLink) -> None:
    """Add ``GET /streams`` (JSON: port, leases, receiver stats) and ``GET
    /streams/{name}.sdp?port=P`` (start or renew a listen-in lease to the
    requester's own address; returns the SDP) to an aiohttp application.
    Must run before a catch-all route is added."""
    from aiohttp import web

    async def sdp_handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        host = request.remote or ""
        text = request.query.get("port")
        if text is None:
            raise web.HTTPBadRequest(text=f"add ?port=P: the UDP port on your machine to send "
                                          f"the {name} stream to, e.g. /streams/{name}.sdp?port=5004")
        try:
            port = int(text)
        except ValueError:
            raise web.HTTPBadRequest(text=f"port must be a number; got {text[:20]!r}") from None
        try:
            lease = link.lease(name, host, port)
        except LeaseError as exc:
            raise _http_error(exc) from None
        return web.Response(text=link.sdp(name, host, port, lease), content_type="application/sdp",
                            headers={"Cache-Control": "no-store"})

    async def index_handler(request: web.Request) -> web.Response:
        return web.json_response(link.stats())

    app.router.add_get("/streams", index_handler)
    app.router.add_get(r"/streams/{name}.sdp", sdp_handler)


def _http_error(exc: LeaseError) -> Exception:
    from aiohttp import web

    classes = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}
    return classes.get(exc.status, web.HTTPBadRequest)(text=str(exc))


def warm_up() -> None:
    """Compile (or load from cache) this module's kernels, off the audio path."""
    from . import jitter

    jitter.warm_up()
    ring = BlockRing(2, 8)
    x = np.zeros(8)
    ring.push(x, 8, 0)
    ring.push_pcm(np.zeros(24, dtype=np.uint8), 8, 3, 0)
    ring.push_pcm(np.zeros(16, dtype=np.uint8), 8, 2, 0)
    ring.pop(x)
    # the dtypes and layouts the backends tap: float64, float32 (the null clock's
    # speaker), strided float32 (a channel of a PortAudio buffer)
    ring.push(np.zeros(8, dtype=np.float32), 8, 0)
    ring.push(np.zeros((8, 2), dtype=np.float32)[:, 1], 8, 0)
    ring.push(np.zeros((8, 2))[:, 1], 8, 0)
    out = np.zeros(24, dtype=np.uint8)
    encode_into(x, 8, out, "L24")
    encode_into(x, 8, out, "L16")


__all__ = [
    "STREAMS",
    "AgentLink",
    "BlockRing",
    "Lease",
    "LeaseError",
    "RtpReceiver",
    "RtpSender",
    "add_stream_routes",
    "encode_into",
    "onebyte_extension_block",
    "open_udp",
    "warm_up",
]
