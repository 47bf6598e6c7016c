"""Measuring what a real-time step allocates (tracemalloc), for the no-allocation tests."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable


def traced_allocation(step: Callable[[], object], repeats: int = 100) -> tuple[int, int]:
    """Run ``step()`` ``repeats`` times under tracemalloc (call it once first, to warm up).

    Returns (peak, retained): the most memory held at once above what was held
    when tracing started, and what is still held after the last call, in bytes.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(repeats):
            step()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base, current - base
