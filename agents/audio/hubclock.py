"""The hub-clocked audio backend (``--audio hub``): the hub is the agent's clock.

DESIGN "Clocking", simulated mode. The hub sends the agent its input block as
one RTP packet with timestamp T (its sample clock); the agent processes exactly
that block and returns its output as one RTP packet with the same timestamp T
(the agent's own SSRC and sequence numbers; no timestamp offset), to the
address the input came from. That address (the hub's host and its clock's port)
is kept while it sends: packets from another port are counted ``foreign`` and
dropped, until the hub has been silent for ``fallback_s``. The hub collects outputs
by T (see ``anamnesis.hub.clock.lockstep.HubClock``). With no loss the hub gets what the same model would
compute in-process from the same input — bit for bit, given that both sides
see the L24 wire values (:func:`anamnesis.agents.protocol.pcm.quantize`).

Clock states, told to the hub in every output packet by an RFC 8285 one-byte
header extension, element :data:`EXT_CLOCK` = :data:`CLOCK_HUB` or
:data:`CLOCK_FREE`:

* **waiting** — started, nothing from the hub yet: the model does not run (a
  rehearsal must start from the same state as its in-process twin); commands
  and state requests are served every :data:`IDLE_TICK_S` with empty blocks;
* **hub-clocked** — one output per input, in arrival order; an input whose T is
  older than the last one processed is dropped (``stale``);
* **free-running** — no input for ``fallback_s`` (0.5 s): the agent runs on its
  own clock with silence in (as the null backend), sending its outputs flagged
  ``CLOCK_FREE`` with timestamps continuing from the last T, so the piece does
  not stop and the hub knows why. The first input from the hub returns the
  agent to hub-clocked (marker bit set on the next output).

Threads: one clock thread, ``anamnesis-hub-clock``, created in :meth:`start`
and joined in :meth:`stop`; it waits on an event (never spins). Input blocks
reach it through a preallocated :class:`~anamnesis.agents.dsp.rings.BlockRing` filled on the
event loop; outputs go back through another, drained on the loop (one
``call_soon_threadsafe`` per wake-up, coalesced).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import numpy as np

from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.dsp.rings import BlockRing, LoopWake
from anamnesis.agents.net.link import AgentLink
from anamnesis.agents.net.rtp_session import RtpSender, onebyte_extension_block
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.hubclock import CLOCK_FREE, CLOCK_HUB, EXT_CLOCK
from anamnesis.agents.protocol.pcm import encode_into
from anamnesis.agents.protocol.rtp import payload_bounds, ts_diff

log = logging.getLogger(__name__)
#: Seconds between command services while waiting for the hub's first block.
IDLE_TICK_S = 0.05
#: Bit of a ring timestamp that marks a free-running output (T uses the low 32 bits).
_FREE_FLAG = 1 << 40
_TS_MASK = (1 << 32) - 1


class HubClockBackend:
    """The ``hub`` audio backend of an agent (see the module docstring).

    ``link`` is the agent's open :class:`~anamnesis.agents.net.link.AgentLink` (its ``hub_host``
    is the only address accepted as the hub); ``fallback_s`` is how long the
    agent waits for the next input before it runs free on silence (s).
    """

    name = "hub"

    def __init__(self, engine: AgentEngine, link: AgentLink, *, fallback_s: float = 0.5,
                 ring_slots: int = 64) -> None:
        if not 0.01 <= fallback_s <= 60.0:
            raise ValueError(f"fallback_s must be in [0.01, 60] s; got {fallback_s!r}")
        self._engine = engine
        self._link = link
        self.fallback_s = float(fallback_s)
        block = engine.block
        self._in = BlockRing(ring_slots, block)
        self._out = BlockRing(ring_slots, block)
        self._event = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake = LoopWake(self._drain)
        self._sender = RtpSender(payload_type=link.payload_type, ts_offset=0)
        self._enc = np.zeros(block * link.width + 16, dtype=np.uint8)
        self._ext = {CLOCK_HUB: onebyte_extension_block(EXT_CLOCK, CLOCK_HUB),
                     CLOCK_FREE: onebyte_extension_block(EXT_CLOCK, CLOCK_FREE)}
        self._hub_addr: Any = None
        self._hub_heard = 0.0      # monotonic s of the last input from _hub_addr
        self._last_state = -1
        # counters (loop side)
        self.inputs = 0
        self.malformed = 0
        self.oversized = 0
        self.wrong_type = 0
        self.foreign = 0
        self.ring_full = 0
        self.outputs = 0
        # counters (clock thread)
        self.blocks = 0
        self.stale = 0
        self.fallbacks = 0
        self.free_blocks = 0
        self.callback_errors = 0
        self.state = "waiting"

    def describe(self) -> str:
        e = self._engine
        return (f"hub clock via RTP port {self._link.port} (hub {self._link.hub_host}), "
                f"{e.block} frames at {e.sample_rate} Hz, silence-in after {self.fallback_s:g} s")

    # -- lifecycle (loop) -------------------------------------------------------------
    def start(self) -> None:
        """Take the hub's packets from the link and start the clock thread (once).
        Must be called on the event loop that runs the link."""
        if self._thread is not None:
            raise RuntimeError("the hub clock is already started")
        self._wake.attach(asyncio.get_running_loop())
        self._link.set_hub_handler(self._on_datagram)
        self._engine.clock_running = True
        self._thread = threading.Thread(target=self._run, name="anamnesis-hub-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the clock thread and join it (idempotent)."""
        self._stop.set()
        self._event.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.error("the hub clock thread did not stop within 5 s")
                return
        self._link.set_hub_handler(None)
        self._engine.clock_running = False

    # -- from the hub (loop) ------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: Any) -> None:
        link = self._link
        now = time.monotonic()
        if addr != self._hub_addr:
            if self._hub_addr is not None and now - self._hub_heard < self.fallback_s:
                # The hub's host, another port: not the clock this agent follows (a stray
                # or hostile local process; the hub keeps one port while it drives).
                self.foreign += 1
                link.problems(str(addr[0]), "RTP from another port of the hub's host",
                              f"port {addr[1]}; the hub clocks this agent from port "
                              f"{self._hub_addr[1]}")
                return
            self._hub_addr = addr   # the first hub, or a new one after the last fell silent
        self._hub_heard = now
        try:
            _marker, pt, _seq, ts, _ssrc, start, end = payload_bounds(data)
        except ProtocolError as exc:
            self.malformed += 1
            link.problems(str(addr[0]), "malformed RTP from the hub", str(exc))
            return
        if pt != link.payload_type:
            self.wrong_type += 1
            return
        nbytes = end - start
        if nbytes % link.width:
            self.malformed += 1
            return
        n = nbytes // link.width
        if n > self._engine.block:
            self.oversized += 1
            link.problems(str(addr[0]), "oversized block from the hub",
                          f"{n} frames, the agent's block is {self._engine.block}")
            return
        self.inputs += 1
        payload = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start)
        if not self._in.push_pcm(payload, n, link.width, ts):
            self.ring_full += 1
        self._event.set()

    # -- to the hub (loop) --------------------------------------------------------------
    def _drain(self) -> None:
        link = self._link
        while True:
            item = self._out.peek()
            if item is None:
                return
            block, stamp = item
            nbytes = encode_into(block, block.shape[0], self._enc, link.encoding)
            self._out.release()
            state = CLOCK_FREE if stamp & _FREE_FLAG else CLOCK_HUB
            if state != self._last_state:
                self._sender.restart()
                self._last_state = state
            if self._hub_addr is None:
                continue
            packet = self._sender.packet(self._enc[:nbytes].tobytes(), stamp & _TS_MASK,
                                         self._ext[state])
            link.send_to_hub(packet, self._hub_addr)
            self.outputs += 1

    # -- the clock thread ---------------------------------------------------------------
    def _run(self) -> None:
        engine = self._engine
        block = engine.block
        mic = np.zeros(block)
        speaker = np.zeros(block)
        empty_in, empty_out = mic[:0], speaker[:0]
        ring = self._in
        meta = ring.meta
        expected = -1          # T of the next block in hub-clocked order (-1: any)
        last_input = 0.0       # monotonic s of the last hub block
        seen_hub = False
        free = False
        free_t = 0             # free-running stream time (samples)
        next_deadline = 0.0    # free-running: monotonic s of the next block
        period = block / engine.sample_rate
        while not self._stop.is_set():
            self._event.clear()
            n = ring.pop(mic)
            if n >= 0:
                t = int(meta[1]) & _TS_MASK
                if expected >= 0 and not free and ts_diff(t, expected) < 0:
                    self.stale += 1
                    continue
                if free:
                    free = False
                    log.info("hub clock: input from the hub again; hub-clocked")
                seen_hub = True
                self.state = "hub"
                self._block(mic, speaker, n, t, False)
                expected = (t + n) & _TS_MASK
                last_input = time.monotonic()
                continue
            now = time.monotonic()
            if not seen_hub:
                engine.process_block(empty_in, empty_out)  # serve commands, no audio
                self._event.wait(IDLE_TICK_S)
                continue
            if not free:
                wait = last_input + self.fallback_s - now
                if wait > 0:
                    self._event.wait(wait)
                    continue
                free = True
                self.fallbacks += 1
                self.state = "free"
                free_t = expected
                next_deadline = now
                log.warning("hub clock: no input from the hub for %.2f s; running free on "
                            "silence (the hub is told in every output packet)", self.fallback_s)
            if now >= next_deadline:
                mic.fill(0.0)
                self._block(mic, speaker, block, free_t, True)
                self.free_blocks += 1
                free_t = (free_t + block) & _TS_MASK
                expected = free_t
                next_deadline += period
                if now - next_deadline > 4 * period:  # fell far behind: resynchronise
                    next_deadline = now + period
            else:
                self._event.wait(next_deadline - now)

    def _block(self, mic: np.ndarray, speaker: np.ndarray, n: int, t: int, free: bool) -> None:
        """Process one block and queue its output (clock thread)."""
        link = self._link
        full = n == mic.shape[0]
        x = mic if full else mic[:n]
        y = speaker if full else speaker[:n]
        try:
            self._engine.process_block(x, y)
        except Exception:  # process_block never raises; this guards the adapter itself
            y.fill(0.0)
            self.callback_errors += 1
        link.tap(1, x, n, t)
        link.tap(2, x, n, t)
        link.tap(0, y, n, t)
        self.blocks += 1
        if not self._out.push(y, n, t | (_FREE_FLAG if free else 0)):
            self.ring_full += 1
        self._wake.wake()

    def stats(self) -> dict[str, float]:
        """``xruns`` (0: the hub is the clock), blocks, inputs/outputs, stale inputs,
        fallbacks to free running and free-running blocks, ring overflows."""
        return {"xruns": 0.0, "backend_blocks": float(self.blocks),
                "hub_inputs": float(self.inputs), "hub_outputs": float(self.outputs),
                "hub_stale": float(self.stale), "hub_malformed": float(self.malformed),
                "hub_oversized": float(self.oversized), "hub_foreign": float(self.foreign),
                "hub_fallbacks": float(self.fallbacks),
                "hub_free_blocks": float(self.free_blocks), "hub_ring_full": float(self.ring_full),
                "callback_errors": float(self.callback_errors),
                "hub_clocked": 1.0 if self.state == "hub" else 0.0}


__all__ = ["HubClockBackend"]
