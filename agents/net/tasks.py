"""The cancel-and-await idiom, once: stopping a background task cleanly.

:func:`cancel_and_wait` cancels asyncio tasks (None is skipped) and waits until each has
finished, swallowing the ``CancelledError`` that cancelling causes; anything else a task
raised on its way out is raised here. Both the agent and the hub use it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel every given task, then wait for each to end (loop-only)."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["cancel_and_wait"]
