"""Block rings between the audio thread and the event loop.

:class:`BlockRing` is a preallocated single-producer single-consumer ring of blocks
(samples, their length and an RTP timestamp each), used in both directions: the audio
thread taps its speaker, mic and input signals into rings the loop drains into RTP
packets, and the hub clock's input blocks reach the audio thread through one. Its
kernels hold the GIL, which orders the two sides; nothing is allocated after
construction, and a full ring drops (and counts) the newest block. :class:`LoopWake`
tells the loop that a ring has something, at most once until the loop has looked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from anamnesis.agents.protocol.pcm import pcm_sample

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
    for k in range(n):
        buf[i, k] = pcm_sample(payload, k, width)
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



class LoopWake:
    """Run ``drain`` on an event loop, asked from another thread (the audio thread): at
    most one call is pending at a time, so a burst of blocks costs the loop one wake-up.
    Until :meth:`attach` gives it the loop, :meth:`wake` does nothing; a closed loop
    (shutting down) is ignored."""

    def __init__(self, drain: Callable[[], None]) -> None:
        self._drain = drain
        self._loop: Any = None
        self._pending = False

    def attach(self, loop: Any) -> None:
        """The loop ``drain`` runs on (call from that loop)."""
        self._loop = loop

    def wake(self) -> None:
        """Have the loop run ``drain`` soon, unless it is already going to."""
        if self._pending or self._loop is None:
            return
        self._pending = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: shutting down
            self._pending = False

    def _run(self) -> None:
        self._pending = False
        self._drain()


__all__ = ["BlockRing", "LoopWake"]
