"""Matrix convolution for the simulated room: every speaker to every mic (and to the
listener's two ears) by uniformly partitioned overlap-save FFT convolution.

Equations. With block length ``B`` (samples) and impulse responses ``h[o, i, n]`` of
length ``L``, each response is cut into ``P = ceil(L / B)`` partitions of ``B``
samples, zero-padded to ``2B`` and transformed once (``H[p, o, i, k]``, ``k`` in
``0..B``). Every block, the last ``2B`` input samples of each input are transformed
(``X_t[i, k]``) and pushed onto a frequency-domain delay line (FDL); the output
spectrum is the multiply-accumulate

    Y[o, k] = sum_p sum_i H[p, o, i, k] * X_{t-p}[i, k]

and the last ``B`` samples of ``irfft(Y)`` are the output block (overlap-save: the
first ``B`` are circularly aliased and discarded). The result equals the linear
convolution of the whole input with ``h``, block by block, with no added latency.

Choices. The FFTs are numpy's (``out=`` into preallocated arrays, numpy ≥ 2.0); the
multiply-accumulate is one numba kernel over explicit arrays. ``process`` takes
exactly ``block`` frames: a uniformly partitioned FDL advances one partition per
call, so a shorter block would need an extra input buffer and latency, which the
hub (always ticking whole blocks) does not need. New responses are transformed by
``prepare`` (on a worker: it allocates and runs FFTs) and installed by ``swap``
(constant time, on the audio side), with a linear crossfade over one block: the FDL holds the input history, so the new
responses' output is exact from the first block and only the switch is smoothed.
``dtype=float32`` halves memory traffic for live use; ``float64`` (default) is exact
to ~1e-12.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MIN_BLOCK = 64
MAX_BLOCK = 1024


@njit(cache=True, nogil=True, fastmath=True)
def fdl_mac_range(h_re, h_im, x_re, x_im, head, p0, p1, acc_re, acc_im):
    """Multiply-accumulate of partitions ``p0 <= p < p1`` of the FDL against the
    response spectra, *added* to ``acc`` (pure kernel).

    h_re, h_im:     (P, n_out, n_in, K) response partition spectra, real and imaginary.
    x_re, x_im:     (P, n_in, K) input spectra ring; slot ``head`` is the newest.
    acc_re, acc_im: (n_out, K), += ``sum_{p0 <= p < p1} sum_i H[p] X[head - p]``.

    Real and imaginary parts are separate arrays so the inner loop vectorises
    (about 25 % faster than numba's complex multiply at 94 partitions).
    """
    n_parts, n_out, n_in, n_bins = h_re.shape
    for p in range(p0, p1):
        slot = head - p
        if slot < 0:
            slot += n_parts
        for o in range(n_out):
            for i in range(n_in):
                for k in range(n_bins):
                    a = h_re[p, o, i, k]
                    b = h_im[p, o, i, k]
                    c = x_re[slot, i, k]
                    d = x_im[slot, i, k]
                    acc_re[o, k] += a * c - b * d
                    acc_im[o, k] += a * d + b * c


class MatrixConvolver:
    """Uniformly partitioned overlap-save convolution of ``n_in`` inputs to ``n_out``.

    ``irs``: (n_out, n_in, ir_len) impulse responses in samples (linear gain).
    ``block``: frames per ``process`` call, 64–1024 (also the partition length; up to
    ``max_block`` for a level of :class:`~anamnesis.hub.engine.partitions.RoomConvolver`).
    ``dtype``: float64 (default, exact) or float32 (half the memory traffic).
    Everything is allocated here; ``process`` allocates nothing. ``process`` is
    :meth:`push`, :meth:`accumulate` and :meth:`finish` in one call; a level of the room's
    convolver calls them over several blocks.
    """

    def __init__(self, irs: np.ndarray, block: int, dtype=np.float64, *,
                 max_block: int = MAX_BLOCK) -> None:
        irs = np.asarray(irs)
        if irs.ndim != 3 or min(irs.shape) < 1:
            raise ValueError(
                f"irs must have shape (n_out, n_in, ir_len) with sizes >= 1, got {irs.shape}"
            )
        if not MIN_BLOCK <= int(block) <= max_block:
            raise ValueError(
                f"block must be in {MIN_BLOCK}..{max_block} frames, got {block}"
            )
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        cdtype = np.complex128 if self.dtype == np.float64 else np.complex64
        self.block = B = int(block)
        self.n_out, self.n_in, self.ir_len = irs.shape
        self.n_parts = -(-self.ir_len // B)
        K = B + 1
        # Spectra as (real, imaginary) pairs of real arrays: see fdl_mac.
        shape = (self.n_parts, self.n_out, self.n_in, K)
        self._spectra = (np.zeros(shape, self.dtype), np.zeros(shape, self.dtype))
        self._pending = (np.zeros(shape, self.dtype), np.zeros(shape, self.dtype))
        self._swap_pending = False
        self._fdl_re = np.zeros((self.n_parts, self.n_in, K), dtype=self.dtype)
        self._fdl_im = np.zeros((self.n_parts, self.n_in, K), dtype=self.dtype)
        self._head = 0
        # Always float64: numpy's float32 rfft allocates a float64 copy internally;
        # the spectrum is computed in double and cast into the FDL slot.
        self._inbuf = np.zeros((self.n_in, 2 * B), dtype=np.float64)
        self._prev = np.zeros((self.n_in, B), dtype=np.float64)
        self._in_spectrum = np.zeros((self.n_in, K), dtype=np.complex128)
        self._acc = np.zeros((self.n_out, K), dtype=cdtype)
        self._acc_re = np.zeros((self.n_out, K), dtype=self.dtype)
        self._acc_im = np.zeros((self.n_out, K), dtype=self.dtype)
        # The new responses' output while a swap crossfades (see push).
        self._new_re = np.zeros((self.n_out, K), dtype=self.dtype)
        self._new_im = np.zeros((self.n_out, K), dtype=self.dtype)
        self._incoming: tuple | None = None      # the spectra this block fades to
        self._time = np.zeros((self.n_out, 2 * B), dtype=self.dtype)
        self._old = np.zeros((self.n_out, B), dtype=self.dtype)
        # Fade-in weight of the new responses, (n + 1) / B: the last sample is all new.
        self._ramp = (np.arange(1, B + 1, dtype=self.dtype) / B)[None, :]
        self._fade = np.zeros((self.n_out, B), dtype=self.dtype)
        self._out = np.zeros((B, self.n_out), dtype=self.dtype)
        self._transform(irs, self._spectra)

    # -- responses -------------------------------------------------------------

    def _transform(self, irs: np.ndarray, spectra: tuple) -> None:
        B, P = self.block, self.n_parts
        padded = np.zeros((self.n_out, self.n_in, P * B), dtype=np.float64)
        padded[:, :, : irs.shape[2]] = irs
        parts = padded.reshape(self.n_out, self.n_in, P, B).transpose(2, 0, 1, 3)
        full = np.fft.rfft(parts, n=2 * B, axis=-1)
        spectra[0][...] = full.real
        spectra[1][...] = full.imag

    def prepare(self, new_irs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform new responses (same shape as the current ones) into the partition
        spectra :meth:`swap` installs. Allocates and runs FFTs: call it on a worker,
        never on the audio path. Thread-safe (touches no state of the convolver)."""
        new_irs = np.asarray(new_irs)
        if new_irs.shape != (self.n_out, self.n_in, self.ir_len):
            raise ValueError(
                f"new irs must have shape {(self.n_out, self.n_in, self.ir_len)}, got {new_irs.shape}"
            )
        shape = (self.n_parts, self.n_out, self.n_in, self.block + 1)
        spectra = (np.zeros(shape, self.dtype), np.zeros(shape, self.dtype))
        self._transform(new_irs, spectra)
        return spectra

    def swap(self, prepared: tuple[np.ndarray, np.ndarray]) -> None:
        """Install spectra from :meth:`prepare`: the next ``process`` crossfades old → new
        linearly over its block. Constant time, allocation-free: call it on the thread
        that calls ``process``, between two blocks. A second swap before ``process``
        replaces the first."""
        self._pending = prepared
        self._swap_pending = True

    def set_irs(self, new_irs: np.ndarray) -> None:
        """:meth:`prepare` then :meth:`swap`, on the calling thread (offline use)."""
        self.swap(self.prepare(new_irs))

    def reset(self) -> None:
        """Forget the input history (silence in, silence out); responses are kept."""
        self._fdl_re[...] = 0.0
        self._fdl_im[...] = 0.0
        self._inbuf[...] = 0.0
        self._prev[...] = 0.0
        self._head = 0

    # -- audio -----------------------------------------------------------------

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Convolve one block. ``x``: (block, n_in) samples; returns (block, n_out)
        samples, written into ``out`` if given (else into an internal buffer that the
        next call overwrites). Allocation-free: :meth:`push`, :meth:`accumulate` over
        every partition, :meth:`finish`.
        """
        B = self.block
        if x.shape != (B, self.n_in):
            raise ValueError(f"x must have shape {(B, self.n_in)}, got {x.shape}")
        if out is None:
            out = self._out
        elif out.shape != (B, self.n_out):
            raise ValueError(f"out must have shape {(B, self.n_out)}, got {out.shape}")
        self.push(x)
        self.accumulate(0, self.n_parts)
        return self.finish(out)

    # -- one block in steps (a level of RoomConvolver spreads them over blocks) -------

    def push(self, x: np.ndarray) -> None:
        """Take the next input block (block, n_in, shape unchecked): its spectrum enters
        the FDL, the accumulators are cleared, and a swap waiting since the last push
        is latched: this block's output fades to it."""
        B = self.block
        # Separate arrays: an in-place shift of one buffer makes numpy copy (overlap).
        inbuf = self._inbuf
        inbuf[:, :B] = self._prev
        inbuf[:, B:] = x.T
        self._prev[...] = x.T
        self._head += 1
        if self._head == self.n_parts:
            self._head = 0
        np.fft.rfft(inbuf, axis=-1, out=self._in_spectrum)
        self._fdl_re[self._head] = self._in_spectrum.real
        self._fdl_im[self._head] = self._in_spectrum.imag
        self._acc_re[...] = 0.0
        self._acc_im[...] = 0.0
        self._incoming = None
        if self._swap_pending:
            self._incoming = self._pending
            self._swap_pending = False
            self._new_re[...] = 0.0
            self._new_im[...] = 0.0

    def accumulate(self, p0: int, p1: int) -> None:
        """Multiply-accumulate partitions ``p0 <= p < p1`` of the pushed block (against
        both responses while a swap fades)."""
        spectra = self._spectra
        fdl_mac_range(spectra[0], spectra[1], self._fdl_re, self._fdl_im, self._head,
                      p0, p1, self._acc_re, self._acc_im)
        if self._incoming is not None:
            new = self._incoming
            fdl_mac_range(new[0], new[1], self._fdl_re, self._fdl_im, self._head,
                          p0, p1, self._new_re, self._new_im)

    def finish(self, out: np.ndarray) -> np.ndarray:
        """The output block (block, n_out) of what was accumulated since :meth:`push`,
        into ``out`` (crossfaded linearly to the latched responses, which then stay)."""
        self._time_block(self._acc_re, self._acc_im, self._old)
        if self._incoming is None:
            out[...] = self._old.T
            return out
        self._time_block(self._new_re, self._new_im, self._fade)
        np.subtract(self._fade, self._old, out=self._fade)
        np.multiply(self._fade, self._ramp, out=self._fade)
        np.add(self._fade, self._old, out=self._fade)
        out[...] = self._fade.T
        old, self._spectra = self._spectra, self._incoming
        if not self._swap_pending:          # (a newer swap keeps its own spectra)
            self._pending = old
        self._incoming = None
        return out

    def _time_block(self, acc_re: np.ndarray, acc_im: np.ndarray, dest: np.ndarray) -> None:
        """The last ``block`` samples of the inverse transform of ``acc``, into dest."""
        self._acc.real = acc_re
        self._acc.imag = acc_im
        np.fft.irfft(self._acc, n=2 * self.block, axis=-1, out=self._time)
        dest[...] = self._time[:, self.block:]
