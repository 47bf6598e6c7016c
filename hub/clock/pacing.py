"""Pacing a hub loop at the audio block rate on the event loop's clock.

Both hub clocks — the simulated driver (``anamnesis.hub.clock.simulated``) and the deployed
router (``anamnesis.hub.clock.deployed``) — run one step per block period. :class:`BlockPacer`
keeps their deadlines drift-free (each deadline is the previous one plus one
period, never "now plus a period"), and when the loop falls more than
``max_lag_s`` behind (a suspended laptop, a stalled machine) it starts afresh
from now and counts a resync, instead of bursting through the missed blocks (logged
once, then at most every :data:`RESYNC_LOG_S` with the count: a busy machine must not
flood the terminal).

It also measures how fast the loop really runs: every :data:`SPEED_WINDOW_S` the share
of real time it kept up with (``speed``: blocks × period / wall seconds, 1 = real
time) and the hub process's CPU share of that window. After
:data:`OVERLOAD_WINDOWS` windows below :data:`OVERLOAD_BELOW` it is *overloaded*
(``on_overload(True, speed, cpu)`` once); after as many at or above
:data:`RECOVERED_AT` it has recovered (``on_overload(False, ...)``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("anamnesis.hub.clock.pacing")

#: Seconds between two "resynchronised" log lines (the first is logged at once).
RESYNC_LOG_S = 30.0
#: Length of one speed measurement (s).
SPEED_WINDOW_S = 2.0
#: Speed (share of real time) under which a window counts as overloaded.
OVERLOAD_BELOW = 0.9
#: Speed at or above which a window counts as recovered.
RECOVERED_AT = 0.97
#: Consecutive windows that make (or end) an overload.
OVERLOAD_WINDOWS = 2

#: ``on_overload(overloaded, speed, cpu)``: speed and the hub's CPU share (of one core).
OverloadHook = Callable[[bool, float, float], None]


class BlockPacer:
    """Sleep until the next block deadline; ``period_s`` and ``max_lag_s`` in seconds."""

    def __init__(self, period_s: float, max_lag_s: float, *,
                 on_overload: OverloadHook | None = None) -> None:
        self.period_s = float(period_s)
        self.max_lag_s = float(max_lag_s)
        self.resyncs = 0
        self.on_overload = on_overload
        #: Share of real time the last full window kept up with (1 = real time).
        self.speed = 1.0
        #: The hub process's CPU share of one core over the last full window.
        self.cpu = 0.0
        self.overloaded = False
        #: Times the loop became overloaded.
        self.overloads = 0
        self._deadline: float | None = None
        self._last_log = -float("inf")
        self._logged_resyncs = 0
        self._window: tuple[float, float] | None = None   # (wall, process CPU) at its start
        self._window_blocks = 0
        self._streak = 0

    async def wait(self) -> None:
        """Wait for the end of the current block period (the first call starts the clock)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._deadline is None:
            self._deadline = now
        self._measure(now)
        self._deadline += self.period_s
        delay = self._deadline - now
        if delay < -self.max_lag_s:
            self.resyncs += 1
            if now - self._last_log >= RESYNC_LOG_S:
                log.warning("the clock fell %.2f s behind real time; resynchronised (%d "
                            "times in all, %d since the last line)", -delay, self.resyncs,
                            self.resyncs - self._logged_resyncs)
                self._last_log, self._logged_resyncs = now, self.resyncs
            self._deadline = now
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))

    def _measure(self, now: float) -> None:
        """Count one block; at the end of a window, its speed and the overload state."""
        if self._window is None:
            self._window = (now, time.process_time())
            return
        self._window_blocks += 1
        start, cpu0 = self._window
        elapsed = now - start
        if elapsed < SPEED_WINDOW_S:
            return
        cpu_now = time.process_time()
        self.speed = self._window_blocks * self.period_s / elapsed
        self.cpu = (cpu_now - cpu0) / elapsed
        self._window, self._window_blocks = (now, cpu_now), 0
        slow = self.speed < OVERLOAD_BELOW
        if slow != self.overloaded and (slow or self.speed >= RECOVERED_AT):
            self._streak += 1
        else:
            self._streak = 0
        if self._streak >= OVERLOAD_WINDOWS:
            self._streak = 0
            self.overloaded = slow
            self.overloads += int(slow)
            if self.on_overload is not None:
                self.on_overload(slow, self.speed, self.cpu)


class PacedLoop:
    """What both hub clocks share about their pace: ``_pacer`` (a :class:`BlockPacer`
    built with ``on_overload=self._overload``) and ``on_overload`` (the hub's hook)."""

    _pacer: BlockPacer
    on_overload: OverloadHook | None

    @property
    def overloaded(self) -> bool:
        """True while the loop cannot keep up with real time."""
        return self._pacer.overloaded

    def _overload(self, overloaded: bool, speed: float, cpu: float) -> None:
        """The pacer's verdict, handed to the hub (the loop itself sheds the scopes while
        :attr:`overloaded`)."""
        if self.on_overload is not None:
            self.on_overload(overloaded, speed, cpu)


def pace_stats(pacer: BlockPacer) -> dict[str, Any]:
    """The pacer's figures for a driver's ``stats()``: speed (share of real time), the
    hub's CPU share of a core, whether it is overloaded, and how often it was."""
    return {"speed": round(pacer.speed, 3), "cpu": round(pacer.cpu, 3),
            "overloaded": pacer.overloaded, "overloads": pacer.overloads}


def start_loop_task(loop_body: Coroutine[Any, Any, None], *, name: str,
                    what: str) -> asyncio.Task[None]:
    """Run a hub loop as the named task ``name``; if it ever ends with an error,
    log ``"{what} stopped: …"`` (a cancelled loop is a normal stop)."""
    task = asyncio.create_task(loop_body, name=name)

    def ended(done: asyncio.Task[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            log.error("%s stopped: %r", what, done.exception())

    task.add_done_callback(ended)
    return task


__all__ = ["BlockPacer", "OverloadHook", "PacedLoop", "pace_stats", "start_loop_task"]
