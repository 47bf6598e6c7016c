"""Pacing a hub loop at the audio block rate on the event loop's clock.

Both hub clocks — the simulated driver (``anamnesis.hub.clock.simulated``) and the deployed
router (``anamnesis.hub.clock.deployed``) — run one step per block period. :class:`BlockPacer`
keeps their deadlines drift-free (each deadline is the previous one plus one
period, never "now plus a period"), and when the loop falls more than
``max_lag_s`` behind (a suspended laptop, a stalled machine) it starts afresh
from now and counts a resync, instead of bursting through the missed blocks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("anamnesis.hub.clock.pacing")


class BlockPacer:
    """Sleep until the next block deadline; ``period_s`` and ``max_lag_s`` in seconds."""

    def __init__(self, period_s: float, max_lag_s: float) -> None:
        self.period_s = float(period_s)
        self.max_lag_s = float(max_lag_s)
        self.resyncs = 0
        self._deadline: float | None = None

    async def wait(self) -> None:
        """Wait for the end of the current block period (the first call starts the clock)."""
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time()
        self._deadline += self.period_s
        delay = self._deadline - loop.time()
        if delay < -self.max_lag_s:
            self.resyncs += 1
            log.warning("the clock fell %.2f s behind real time; resynchronised (%d so far)",
                        -delay, self.resyncs)
            self._deadline = loop.time()
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))


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


__all__ = ["BlockPacer", "start_loop_task"]
