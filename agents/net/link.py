"""The RTP audio link of an agent: receiver, sender, block rings, listen-in leases.

DESIGN "Audio link: RTP": audio between agent and hub is RTP (RFC 3550), L24
mono, one packet per block. This module holds the I/O around the pure codec
(:mod:`anamnesis.agents.protocol.rtp`, :mod:`anamnesis.agents.protocol.sdp`) and the jitter buffer
(:mod:`anamnesis.agents.dsp.jitter`):

* :class:`RtpReceiver` — an asyncio datagram protocol for one incoming stream:
  accepts only its configured peer, learns the SSRC (and resynchronises when it
  changes), classifies every packet (duplicate, reordered, late, lost by
  sequence gaps), measures the RFC 3550 interarrival jitter, and writes the
  samples into a :class:`~anamnesis.agents.dsp.jitter.JitterBuffer` on the reader's timeline.
* :class:`RtpSender` — headers for one outgoing stream (random SSRC, sequence
  and timestamp base; marker bit on the first packet after a (re)start).
* :class:`BlockRing` — a preallocated single-producer single-consumer ring of
  blocks between the audio thread and the event loop (both directions). Its
  kernels hold the GIL, which orders the two sides; nothing is allocated.
* :class:`AgentLink` — the agent's RTP port: its UDP socket, the ``out`` /
  ``mic`` / ``in`` taps fed by the audio thread, listen-in leases
  (``GET /streams/NAME.sdp?port=P``), the ``in`` receiver of the deployed mode,
  and the demultiplexing of the hub-clocked mode (:mod:`anamnesis.agents.audio.hubclock`).

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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anamnesis.agents.dsp.jitter import JitterBuffer
from anamnesis.agents.dsp.rings import BlockRing, LoopWake
from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.net.rtp_session import RtpReceiver, RtpSender, is_ipv4, open_udp
from anamnesis.agents.protocol import pcm
from anamnesis.agents.protocol.pcm import SAMPLE_BYTES, encode_into
from anamnesis.agents.protocol.rtp import DEFAULT_PAYLOAD_TYPE
from anamnesis.agents.protocol.sdp import StreamDescription, build_sdp

log = logging.getLogger(__name__)

#: Streams of an agent: its speaker signal, what its mic hears, what it receives from the hub.
STREAMS = ("out", "mic", "in")
#: Seconds a listen-in lease lasts unless renewed.
LEASE_S = 60.0
MAX_LEASES = 32
MAX_LEASES_PER_HOST = 8


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
        if not is_ipv4(interface):
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
        self.rings = {name: BlockRing(ring_slots, block) for name in STREAMS}
        self._ring_list = [self.rings[name] for name in STREAMS]
        #: 1 while a stream has listeners (the audio thread skips idle taps).
        self._active = np.zeros(len(STREAMS), dtype=np.int64)
        self.leases: dict[tuple[str, str, int], Lease] = {}
        self._wake = LoopWake(self._drain)
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
        self.refused_hosts = 0      # stream requests from hosts the agent does not serve

    # -- lifecycle (loop) -------------------------------------------------------------
    async def open(self, port: int = 0) -> int:
        """Bind the RTP socket (``port`` 0: a free one); returns the bound port."""
        self._wake.attach(asyncio.get_running_loop())
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
        self._wake.wake()

    # -- outgoing (loop) --------------------------------------------------------------
    def _drain(self) -> None:
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
        if not is_ipv4(host):
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
            "refused_hosts": self.refused_hosts,
            "leases": [{"stream": le.stream, "host": le.host, "port": le.port,
                        "expires_in_s": round(le.expires - time.monotonic(), 1)}
                       for le in self.leases.values()],
            "in": self.receiver.stats(),
        }


def warm_up() -> None:
    """Compile (or load from cache) this module's kernels, off the audio path."""
    from anamnesis.agents.dsp import jitter

    jitter.warm_up()
    ring = BlockRing(2, 8)
    x = np.zeros(8)
    ring.push(x, 8, 0)
    ring.push_pcm(np.zeros(24, dtype=np.uint8), 8, 3, 0)
    ring.push_pcm(np.zeros(16, dtype=np.uint8), 8, 2, 0)
    ring.pop(x)
    ring.push_pcm(np.frombuffer(bytes(24), dtype=np.uint8), 8, 3, 0)   # a datagram's view
    ring.pop(x)
    # the dtypes and layouts the backends tap: float64, float32 (the null clock's
    # speaker), strided float32 (a channel of a PortAudio buffer)
    ring.push(np.zeros(8, dtype=np.float32), 8, 0)
    ring.push(np.zeros((8, 2), dtype=np.float32)[:, 1], 8, 0)
    ring.push(np.zeros((8, 2))[:, 1], 8, 0)
    pcm.warm_up()


__all__ = ["STREAMS", "AgentLink", "Lease", "LeaseError", "warm_up"]
