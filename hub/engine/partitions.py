"""Non-uniformly partitioned convolution for the room: short partitions at the head of
each response (no added latency), long ones for its tail (few multiply-adds).

The uniform convolver (:class:`~anamnesis.hub.engine.convolve.MatrixConvolver`) cuts a
0.5 s response at 256-frame blocks into 94 partitions and multiplies all 94 spectra
every block. Here the response is cut into *levels* (Gardner 1995; Wefers 2015; the
scheme of zita-convolver): level ``k`` covers samples ``[S_k, S_k + n_k M_k)`` of
every response with ``n_k`` partitions of ``M_k`` samples, ``M_0`` the block and each
next ``M`` four times the last (at most :data:`MAX_PARTITION` blocks). Each level is a
uniform convolver of its own segment, fed every ``M_k`` samples with the last ``M_k``
input samples; what it computes belongs ``S_k`` samples later and waits in a ring of
future output. ``S_k >= 2 M_k`` gives each level one partition of slack, which spreads
its work: the forward transform when its input is complete, its multiply-adds over the
blocks that follow, the inverse transform at its next turn, so no block carries a whole
level's work (done at once, the 4096-sample level's made the slowest 1 % of blocks take
2.6 ms instead of 1.0). At 256-frame blocks, 0.5 s responses take 8 × 256, 6 × 1024
and 4 × 4096: 18 multiply-adds per sample and response instead of 94.

Equation: ``y[n] = sum_k sum_j h[S_k + j] x[n - S_k - j]``, each inner sum the linear
convolution of the input with the segment ``h[S_k : S_k + n_k M_k]``: the output
equals the direct convolution to rounding, with no added latency.

A response swap (:meth:`RoomConvolver.prepare` on a worker, :meth:`RoomConvolver.swap`
on the audio side) reaches every level at once; each crossfades linearly over its own
next partition, so the whole response is the new one after at most ``S_last + M_last``
samples (the response's length), without a step. ``process`` allocates nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from anamnesis.hub.engine.convolve import MAX_BLOCK, MatrixConvolver

#: How much longer each level's partitions are than the last's.
GROWTH = 4
#: Longest partition, in blocks (its transforms, at a level's turn, stay a fraction of a
#: block's time).
MAX_PARTITION = 16


def levels(ir_len: int, block: int) -> list[tuple[int, int, int]]:
    """(offset S, partition M, partitions n) of each level for responses of ``ir_len``
    samples at ``block`` frames (see the module docstring): ``S_k >= 2 M_k`` for k >= 1."""
    out: list[tuple[int, int, int]] = []
    start, size = 0, block
    while start < ir_len:
        following = min(size * GROWTH, MAX_PARTITION * block)
        rest = -(-(ir_len - start) // size)
        parts = rest if following == size else min(rest, max(1, -(-(2 * following - start) // size)))
        out.append((start, size, parts))
        start += parts * size
        size = following
    return out


@njit(cache=True, nogil=True)
def mix_due(mix, ring, now, out):
    """``out = mix + ring[now:now + B]``, and those ring rows cleared (B = len(out))."""
    B, n_out = out.shape
    for n in range(B):
        for o in range(n_out):
            out[n, o] = mix[n, o] + ring[now + n, o]
            ring[now + n, o] = 0.0


class RoomConvolver:
    """``n_in`` inputs to ``n_out`` outputs through ``irs`` (n_out, n_in, ir_len), one
    ``block`` (64–1024 frames) per :meth:`process`; the interface of
    :class:`~anamnesis.hub.engine.convolve.MatrixConvolver` (``prepare``, ``swap``,
    ``set_irs``, ``reset``, ``process``) over :func:`levels`."""

    def __init__(self, irs: np.ndarray, block: int, dtype=np.float64) -> None:
        irs = np.asarray(irs)
        if irs.ndim != 3 or min(irs.shape) < 1:
            raise ValueError(
                f"irs must have shape (n_out, n_in, ir_len) with sizes >= 1, got {irs.shape}")
        self.block = B = int(block)
        self.n_out, self.n_in, self.ir_len = irs.shape
        self.dtype = np.dtype(dtype)
        self.levels = levels(self.ir_len, B)
        self._stages = [MatrixConvolver(self._segment(irs, k), size, dtype,
                                        max_block=size if k else MAX_BLOCK)
                        for k, (_, size, _) in enumerate(self.levels)]
        self.head = self._stages[0]     # checks block and dtype as MatrixConvolver does
        tails = self.levels[1:]
        self._inputs = [np.zeros((m, self.n_in), self.dtype) for _, m, _ in tails]
        self._outputs = [np.zeros((m, self.n_out), self.dtype) for _, m, _ in tails]
        largest = max((s + m for s, m, _ in tails), default=B)
        self._ring = np.zeros((-(-(largest + B) // B) * B, self.n_out), self.dtype)
        self._time = 0                   # samples processed
        self._tails_due = False          # process_head ran, process_tails not yet
        # Per tail level: partitions accumulated since its last push (-1: none pushed).
        self._done = [-1] * len(tails)
        # Each tail level's (index, offset, partition, partitions, convolver, input,
        # output), built once: the block's loops then allocate no Python objects (a
        # list or tuple per block wakes the garbage collector, about 3 % of the room).
        self._tails = [(k, s, m, n, stage, inp, outp) for k, ((s, m, n), stage, inp, outp)
                       in enumerate(zip(tails, self._stages[1:], self._inputs,
                                        self._outputs, strict=True))]
        self._out = np.zeros((B, self.n_out), self.dtype)
        self._mix = np.zeros((B, self.n_out), self.dtype)

    @property
    def n_parts(self) -> int:
        """Partitions per response, all levels together."""
        return sum(n for _, _, n in self.levels)

    def _segment(self, irs: np.ndarray, k: int) -> np.ndarray:
        start, size, parts = self.levels[k]
        seg = np.zeros((self.n_out, self.n_in, parts * size), dtype=irs.dtype)
        piece = irs[:, :, start:start + parts * size]
        seg[:, :, :piece.shape[2]] = piece
        return seg

    # -- responses -------------------------------------------------------------

    def prepare(self, new_irs: np.ndarray) -> tuple:
        """Every level's spectra of ``new_irs`` (same shape), for :meth:`swap`. Allocates
        and runs FFTs: call it on a worker. Touches no state of the convolver."""
        new_irs = np.asarray(new_irs)
        if new_irs.shape != (self.n_out, self.n_in, self.ir_len):
            raise ValueError(f"new irs must have shape {(self.n_out, self.n_in, self.ir_len)}"
                             f", got {new_irs.shape}")
        return tuple(stage.prepare(self._segment(new_irs, k))
                     for k, stage in enumerate(self._stages))

    def swap(self, prepared: tuple) -> None:
        """Install :meth:`prepare`'s spectra: each level crossfades over its next
        partition. Constant time; on the thread that calls ``process``."""
        for stage, spectra in zip(self._stages, prepared, strict=True):
            stage.swap(spectra)

    def set_irs(self, new_irs: np.ndarray) -> None:
        """:meth:`prepare` then :meth:`swap`, on the calling thread (offline use)."""
        self.swap(self.prepare(new_irs))

    def reset(self) -> None:
        """Forget the input history and the pending tail output; responses are kept."""
        for stage in self._stages:
            stage.reset()
        self._ring[...] = 0.0
        self._time = 0
        self._tails_due = False
        self._done = [-1] * len(self._done)

    # -- audio -----------------------------------------------------------------

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Convolve one block: ``x`` (block, n_in) -> (block, n_out), into ``out`` if
        given (else an internal buffer the next call overwrites). Allocation-free:
        :meth:`process_head` then :meth:`process_tails`."""
        out = self.process_head(x, out)
        self.process_tails()
        return out

    def process_head(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The first half of :meth:`process`: the head level's convolution of ``x`` plus
        the tails' output due in this block, into ``out``; ``x`` is copied into the
        tail levels' inputs, so the caller may overwrite it at once.

        :meth:`process_tails` (the tail levels' share of this block's work, which only
        writes output due from the *next* block on) may then run on another thread,
        concurrently with whatever the caller does next, and must end before the next
        ``process_head``; if it has not been called, this call runs it first."""
        B = self.block
        if out is None:
            out = self._out
        elif out.shape != (B, self.n_out):
            raise ValueError(f"out must have shape {(B, self.n_out)}, got {out.shape}")
        if self._tails_due:
            self.process_tails()
        mix = self._mix                  # in the convolver's dtype: no casting buffers
        self.head.process(x, mix)        # checks x's shape
        t, ring = self._time, self._ring
        for _k, _start, size, _parts, _stage, inputs, _outputs in self._tails:
            at = t % size
            inputs[at:at + B] = x
        # The tails write from block t + 1 on (S_k >= 2 M_k): what is due now is complete.
        mix_due(mix, ring, t % len(ring), out)
        self._tails_due = True
        return out

    def process_tails(self) -> None:
        """The second half of :meth:`process`: each tail level's work for the block
        :meth:`process_head` took (a turn: the last partitions, the inverse transform,
        the output into the ring, the new input's transform; else a share of
        multiply-adds). Allocation-free; does nothing if no head is waiting."""
        if not self._tails_due:
            return
        B = self.block
        t = self._time
        for k, start, size, parts, stage, inputs, outputs in self._tails:
            at = t % size
            done = self._done[k]
            if at + B == size:           # its input is complete: its turn
                if done >= 0:            # the last turn's block ends: due S - 2M from now
                    stage.accumulate(done, parts)
                    stage.finish(outputs)
                    self._add(t + B - 2 * size + start, outputs)
                stage.push(inputs)
                self._done[k] = 0
            elif done >= 0:              # its share of multiply-adds, over m - 1 blocks
                share = -(-parts * (at // B + 1) // (size // B - 1))
                if share > done:
                    stage.accumulate(done, min(share, parts))
                    self._done[k] = min(share, parts)
        self._time = t + B
        self._tails_due = False

    def _add(self, when: int, y: np.ndarray) -> None:
        """Add ``y`` to the future output from sample ``when`` on (wrapping the ring)."""
        ring = self._ring
        at = when % len(ring)
        first = min(len(y), len(ring) - at)
        ring[at:at + first] += y[:first]
        if first < len(y):
            ring[:len(y) - first] += y[first:]


__all__ = ["GROWTH", "MAX_PARTITION", "RoomConvolver", "levels"]
