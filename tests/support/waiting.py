"""One way for a test to wait for something that takes real time (an agent to come
online, a restart): poll ``predicate`` (a plain or an async function) until it holds,
and fail with what was awaited after ``timeout`` seconds. The timeout is a guard for
a stuck peer, not a speed requirement: give it the generous figure a loaded CI
machine needs."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def wait_for(predicate: Callable[[], Any], timeout: float, what: str, *,
                   every: float = 0.05) -> None:
    """Poll ``predicate()`` (awaited if it returns an awaitable) every ``every`` s until
    it is true; ``AssertionError`` naming ``what`` after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)
