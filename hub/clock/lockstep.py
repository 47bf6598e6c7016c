"""The hub's side of the hub-clocked mode: drive N agents' RTP links in lockstep.

Simulated mode (DESIGN "Clocking"): the hub is the clock. Per block,
:meth:`HubClock.step` sends every agent its input block as one RTP packet with
the hub's timestamp T (samples), waits until every agent has answered with its
output block stamped T (``anamnesis.agents.audio.hubclock``), and returns the outputs as one
array. The routing graph runs between steps, so a ring of agents over RTP
computes exactly what the same ring computes in-process — provided the
in-process twin quantises to L24 at the same two places
(:func:`anamnesis.agents.protocol.pcm.quantize`).

An agent that does not answer within ``timeout_s`` is *absent*: that block it
plays its last block mirrored in time and fading out (``missing``; no click), and
the following steps do not wait for it (``bypassed``), so a dead or stopped agent
costs the others one timeout, never one per block. It is back at its first answer for the step
in progress or the one just ended (late by less than a block), faded in over
its first block. Other answers for an older T arrive ``stale`` and are dropped;
answers flagged free-running (the agent lost the hub's input and plays on
silence) are counted in ``free_reports`` and never taken as the output of a
step. Round-trip times (send → the last answer of the block) are kept.

Everything runs on the event loop; one UDP socket serves all agents, which
are told apart by their address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anamnesis.agents.net.link import warm_up
from anamnesis.agents.net.rtp_session import RtpSender, open_udp
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.hubclock import CLOCK_FREE, EXT_CLOCK
from anamnesis.agents.protocol.pcm import SAMPLE_BYTES, decode, encode_into
from anamnesis.agents.protocol.rtp import (
    DEFAULT_PAYLOAD_TYPE,
    parse_onebyte_extension,
    parse_packet,
)

log = logging.getLogger(__name__)

#: Round trips kept for percentiles.
RTT_KEEP = 4096


@dataclass
class AgentPeer:
    """Counters of one agent driven by a :class:`HubClock`."""

    address: tuple[str, int]
    sender: RtpSender
    sent: int = 0
    received: int = 0
    missing: int = 0
    stale: int = 0
    malformed: int = 0
    free_reports: int = 0
    free_running: bool = False
    absent: bool = False      # timed out: steps do not wait for it until it answers again
    absences: int = 0         # times it became absent
    bypassed: int = 0         # steps that did not wait for it
    back: bool = False        # answered again: waited for from the next step on
    fade_in: bool = False     # its next block taken is faded in
    ssrc: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, clock: HubClock) -> None:
        self.clock = clock

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.clock._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.clock.socket_errors += 1  # ICMP unreachable: an agent went away


class HubClock:
    """Lockstep driver of ``agents`` (a sequence of ``(host, rtp_port)``).

    ``block`` frames at ``sample_rate`` Hz; ``interface`` is the hub's own
    address (the agents accept the hub only from their ``--hub`` address);
    ``timeout_s`` is how long a step waits for the slowest agent (s).
    """

    def __init__(self, agents: Sequence[tuple[str, int]], *, block: int = 256,
                 sample_rate: int = 48000, interface: str = "127.0.0.1",
                 timeout_s: float = 0.1, encoding: str = "L24",
                 payload_type: int = DEFAULT_PAYLOAD_TYPE, start_ts: int = 0) -> None:
        if not agents:
            raise ValueError("HubClock needs at least one agent")
        if not 0.001 <= timeout_s <= 10.0:
            raise ValueError(f"timeout_s must be in [0.001, 10] s; got {timeout_s!r}")
        self.block = block
        self.sample_rate = sample_rate
        self.interface = interface
        self.timeout_s = timeout_s
        self.encoding = encoding
        self.width = SAMPLE_BYTES[encoding]
        self.payload_type = payload_type
        self.peers: list[AgentPeer] = []
        self._index: dict[tuple[str, int], int] = {}
        self.set_agents(agents)
        self.t = start_ts & 0xFFFFFFFF
        self._last_t = -1          # T of the step that ended last (-1: none yet)
        self._down = np.linspace(1.0, 0.0, block)   # fade out over a block (and in, reversed)
        self._pending = 0
        self._done: asyncio.Future | None = None
        self._enc = np.zeros(block * self.width + 16, dtype=np.uint8)
        self._sent_at = 0.0
        self._rtt = np.zeros(RTT_KEEP)
        self.steps = 0
        self.foreign = 0
        self.socket_errors = 0
        self.transport: asyncio.DatagramTransport | None = None

    def set_agents(self, agents: Sequence[tuple[str, int]]) -> None:
        """Drive ``agents`` from the next step on, on the same socket and clock (T runs
        on): agents driven before keep their counters and state, new ones start afresh."""
        if not agents:
            raise ValueError("HubClock needs at least one agent")
        known = {peer.address: peer for peer in self.peers}
        self.peers = [known.get((h, int(p))) or
                      AgentPeer((h, int(p)), RtpSender(payload_type=self.payload_type,
                                                       ts_offset=0))
                      for h, p in agents]
        self._index = {peer.address: i for i, peer in enumerate(self.peers)}
        self._outputs = np.zeros((len(self.peers), self.block))
        self._last = np.zeros((len(self.peers), self.block))
        self._got = np.zeros(len(self.peers), dtype=bool)

    async def open(self, port: int = 0) -> int:
        """Bind the hub's RTP socket on ``interface``; returns its port. Loads the
        PCM kernels first (in a worker thread: a compile must not hold the loop), so the
        first step's round trip is not a compile."""
        await asyncio.get_running_loop().run_in_executor(None, warm_up)
        self.transport, _ = await open_udp(lambda: _Protocol(self), self.interface, port)
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def __aenter__(self) -> HubClock:
        if self.transport is None:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def step(self, inputs: np.ndarray) -> np.ndarray:
        """Send ``inputs`` (agents, frames) float64 at time T, return the outputs
        (agents, frames) stamped T; an agent that timed out fades out, then is silence
        (the module docstring). Advances T by frames.
        The returned array is reused by the next step: copy it to keep it."""
        if self.transport is None:
            raise RuntimeError("HubClock.open() first")
        x = np.asarray(inputs, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(self.peers) or not 1 <= x.shape[1] <= self.block:
            raise ValueError(f"inputs must have shape ({len(self.peers)}, 1..{self.block}); "
                             f"got {x.shape}")
        n = x.shape[1]
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._got[:] = False
        for peer in self.peers:
            if peer.back:           # it answered during the last step: wait for it again
                peer.absent = peer.back = False
                peer.fade_in = True
        self._pending = sum(1 for peer in self.peers if not peer.absent)
        self._n = n
        self._outputs[:, :n] = 0.0
        t = self.t
        self._sent_at = time.perf_counter()
        for i, peer in enumerate(self.peers):
            nbytes = encode_into(np.ascontiguousarray(x[i]), n, self._enc, self.encoding)
            self.transport.sendto(peer.sender.packet(self._enc[:nbytes].tobytes(), t),
                                  peer.address)
            peer.sent += 1
        if self._pending:
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as
                # the last answer completes the block, and the cancelled clock then runs on
                # forever (the hub hung on Ctrl-C). asyncio.timeout re-raises the cancel.
                async with asyncio.timeout(self.timeout_s):
                    await self._done
            except TimeoutError:
                pass
        self._done = None
        self._settle(n)
        self._last_t = t
        self.t = (t + n) & 0xFFFFFFFF
        self.steps += 1
        return self._outputs[:, :n]

    def _settle(self, n: int) -> None:
        """The step's outputs: an answer is kept as the peer's last block (faded in on
        its return); a peer that timed out plays its last block fading out and is absent
        from now on; an absent one is silence."""
        down = self._down if n == self.block else np.linspace(1.0, 0.0, n)
        for i, peer in enumerate(self.peers):
            if self._got[i]:
                if peer.fade_in:
                    self._outputs[i, :n] *= down[::-1]
                    peer.fade_in = False
                self._last[i, :n] = self._outputs[i, :n]
                if peer.back:       # taken, not waited for: it is back, already faded in
                    peer.absent = peer.back = False
            elif peer.absent:
                peer.bypassed += 1
            else:
                peer.missing += 1
                peer.absent = True
                peer.absences += 1
                # Its last block mirrored (it starts where the last one ended), fading out.
                self._outputs[i, :n] = self._last[i, n - 1::-1] * down
                self._last[i] = 0.0
                # The first time at warning, then at debug (``absences`` counts them all):
                # an agent on a loaded host may miss blocks often, and the log is no meter.
                log.log(logging.WARNING if peer.absences == 1 else logging.DEBUG,
                        "agent at %s:%d did not answer within %.0f ms; playing on without "
                        "it until it answers (further absences are only counted)",
                        *peer.address, self.timeout_s * 1e3)

    def _on_datagram(self, data: bytes, addr: Any) -> None:
        i = self._index.get((addr[0], addr[1]))
        if i is None:
            self.foreign += 1
            return
        peer = self.peers[i]
        try:
            packet = parse_packet(data)
            flags = parse_onebyte_extension(packet.extension)
        except ProtocolError:
            peer.malformed += 1
            return
        if packet.payload_type != self.payload_type or len(packet.payload) % self.width:
            peer.malformed += 1
            return
        peer.ssrc = packet.ssrc
        state = flags.get(EXT_CLOCK)
        if state is not None and state[0] == CLOCK_FREE:
            peer.free_reports += 1
            peer.free_running = True
            return
        peer.free_running = False
        if peer.absent:
            self._returning(i, peer, packet)
            return
        if self._done is None or packet.timestamp != self.t or self._got[i]:
            peer.stale += 1
            return
        n = len(packet.payload) // self.width
        if n != self._n:
            peer.malformed += 1
            return
        decode(packet.payload, self.encoding, out=self._outputs[i])
        self._got[i] = True
        peer.received += 1
        self._pending -= 1
        if self._pending == 0 and not self._done.done():
            self._rtt[(self.steps) % RTT_KEEP] = time.perf_counter() - self._sent_at
            self._done.set_result(None)

    def _returning(self, i: int, peer: AgentPeer, packet: Any) -> None:
        """An answer from an absent peer: for the open step (taken, faded in) or the one
        just ended, it is back from the next step on (a step counts on the peers it
        began with); anything older is stale (a stopped agent working off its backlog)."""
        open_step = self._done is not None and packet.timestamp == self.t
        if not open_step and packet.timestamp != self._last_t:
            peer.stale += 1
            return
        if not peer.back:
            peer.back = True
            log.log(logging.INFO if peer.absences == 1 else logging.DEBUG,
                    "agent at %s:%d answers again", *peer.address)
        if open_step and not self._got[i] and len(packet.payload) // self.width == self._n:
            decode(packet.payload, self.encoding, out=self._outputs[i])
            self._got[i] = True
            peer.fade_in = True
            peer.received += 1
        else:
            peer.stale += 1

    def rtt_ms(self) -> dict[str, float]:
        """Round trip (send → last answer of a step) p50 / p99 / max over the last
        :data:`RTT_KEEP` complete steps, in ms."""
        count = min(self.steps, RTT_KEEP)
        recent = self._rtt[:count]
        recent = recent[recent > 0]
        if recent.size == 0:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        p50, p99 = np.percentile(recent, [50.0, 99.0]) * 1000.0
        return {"p50": float(p50), "p99": float(p99), "max": float(recent.max() * 1000.0)}

    def stats(self) -> list[dict[str, Any]]:
        """Per agent: address, sent, received, missing, stale, malformed, free-running,
        absent (and times it was, and steps that did not wait for it)."""
        return [{"address": f"{p.address[0]}:{p.address[1]}", "sent": p.sent,
                 "received": p.received, "missing": p.missing, "stale": p.stale,
                 "malformed": p.malformed, "free_reports": p.free_reports,
                 "free_running": p.free_running, "absent": p.absent,
                 "absences": p.absences, "bypassed": p.bypassed} for p in self.peers]


__all__ = ["AgentPeer", "HubClock"]
