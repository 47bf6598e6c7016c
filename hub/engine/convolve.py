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

Choices. The FFTs are :class:`~anamnesis.hub.engine.fft.RealTransform`'s (FFTW where
pyFFTW is installed, numpy's otherwise), unscaled, over preallocated rows, with the
``1 / 2B`` folded into the response spectra; the multiply-accumulate and the copies
around the transforms are numba kernels over explicit arrays. ``process`` takes
exactly ``block`` frames: a uniformly partitioned FDL advances one partition per
call, so a shorter block would need an extra input buffer and latency, which the
hub (always ticking whole blocks) does not need. New responses are transformed by
``prepare`` (on a worker: it allocates and runs FFTs) and installed by ``swap``
(constant time, on the audio side), with a linear crossfade over one block: the FDL holds the input history, so the new
responses' output is exact from the first block and only the switch is smoothed.
``dtype=float32`` halves memory traffic for live use (and its transforms run in single
precision under FFTW); ``float64`` (default) is exact to ~1e-12.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from anamnesis.hub.engine.fft import RealTransform, response_spectra

MIN_BLOCK = 64
MAX_BLOCK = 1024
#: The spectra's rows are padded to a multiple of this many bins (zeros): the
#: multiply-add then runs whole SIMD vectors (16 float32 lanes with AVX-512) instead of
#: ending every row of B + 1 bins with a scalar bin.
BIN_ALIGN = 16


def padded_bins(block: int) -> int:
    """Bins per spectrum row for ``block``-sample partitions: ``block + 1``, rounded up
    to a multiple of :data:`BIN_ALIGN`."""
    return -(-(block + 1) // BIN_ALIGN) * BIN_ALIGN


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


@njit(cache=True, nogil=True)
def stage_input(prev, x, time):
    """Overlap-save input rows: ``time[i] = [prev[i], x[:, i]]``, then ``prev[i] =
    x[:, i]``. prev: (n_in, B); x: (B, n_in) samples; time: (n_in, 2B)."""
    n_in, B = prev.shape
    for i in range(n_in):
        for n in range(B):
            time[i, n] = prev[i, n]
            v = x[n, i]
            time[i, B + n] = v
            prev[i, n] = v


@njit(cache=True, nogil=True)
def store_spectrum(spectrum, fdl_re, fdl_im, slot, acc_re, acc_im):
    """The input spectrum (n_in, K) into FDL slot ``slot`` as real and imaginary
    parts; the accumulators (n_out, K) cleared for the block it starts."""
    n_in, K = spectrum.shape
    for i in range(n_in):
        for k in range(K):
            c = spectrum[i, k]
            fdl_re[slot, i, k] = c.real
            fdl_im[slot, i, k] = c.imag
    n_out = acc_re.shape[0]
    for o in range(n_out):
        for k in range(K):
            acc_re[o, k] = 0.0
            acc_im[o, k] = 0.0


@njit(cache=True, nogil=True)
def load_spectrum(acc_re, acc_im, spectrum):
    """``spectrum = acc_re + i acc_im`` (n_out, K), for the inverse transform (the
    accumulators' padding bins beyond K are left out)."""
    n_out, K = spectrum.shape
    for o in range(n_out):
        for k in range(K):
            spectrum[o, k] = complex(acc_re[o, k], acc_im[o, k])


@njit(cache=True, nogil=True)
def take_block(time, out):
    """The overlap-save output: ``out[n, o] = time[o, B + n]`` with ``B = len(out)``
    (the first B samples of each row are circularly aliased)."""
    B, n_out = out.shape
    for o in range(n_out):
        for n in range(B):
            out[n, o] = time[o, B + n]


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
        self.block = B = int(block)
        self.n_out, self.n_in, self.ir_len = irs.shape
        self.n_parts = -(-self.ir_len // B)
        K = self._bins = padded_bins(B)
        # Spectra as (real, imaginary) pairs of real arrays: see fdl_mac.
        shape = (self.n_parts, self.n_out, self.n_in, K)
        self._spectra = (np.zeros(shape, self.dtype), np.zeros(shape, self.dtype))
        self._pending = (np.zeros(shape, self.dtype), np.zeros(shape, self.dtype))
        self._swap_pending = False
        self._fdl_re = np.zeros((self.n_parts, self.n_in, K), dtype=self.dtype)
        self._fdl_im = np.zeros((self.n_parts, self.n_in, K), dtype=self.dtype)
        self._head = 0
        self._prev = np.zeros((self.n_in, B), dtype=self.dtype)
        self._forward = RealTransform(self.n_in, 2 * B, self.dtype)
        self._inverse = RealTransform(self.n_out, 2 * B, self.dtype)
        self._acc_re = np.zeros((self.n_out, K), dtype=self.dtype)
        self._acc_im = np.zeros((self.n_out, K), dtype=self.dtype)
        # The new responses' output while a swap crossfades (see push).
        self._new_re = np.zeros((self.n_out, K), dtype=self.dtype)
        self._new_im = np.zeros((self.n_out, K), dtype=self.dtype)
        self._incoming: tuple | None = None      # the spectra this block fades to
        self._old = np.zeros((B, self.n_out), dtype=self.dtype)
        # Fade-in weight of the new responses, (n + 1) / B: the last sample is all new.
        self._ramp = (np.arange(1, B + 1, dtype=self.dtype) / B)[:, None]
        self._fade = np.zeros((B, self.n_out), dtype=self.dtype)
        self._out = np.zeros((B, self.n_out), dtype=self.dtype)
        self._transform(irs, self._spectra)

    # -- responses -------------------------------------------------------------

    def _transform(self, irs: np.ndarray, spectra: tuple) -> None:
        B, P = self.block, self.n_parts
        padded = np.zeros((self.n_out, self.n_in, P * B), dtype=np.float64)
        padded[:, :, : irs.shape[2]] = irs
        parts = padded.reshape(self.n_out, self.n_in, P, B).transpose(2, 0, 1, 3)
        full = response_spectra(parts, 2 * B)
        spectra[0][..., : B + 1] = full.real
        spectra[1][..., : B + 1] = full.imag

    def prepare(self, new_irs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform new responses (same shape as the current ones) into the partition
        spectra :meth:`swap` installs. Allocates and runs FFTs: call it on a worker,
        never on the audio path. Thread-safe (touches no state of the convolver)."""
        new_irs = np.asarray(new_irs)
        if new_irs.shape != (self.n_out, self.n_in, self.ir_len):
            raise ValueError(
                f"new irs must have shape {(self.n_out, self.n_in, self.ir_len)}, got {new_irs.shape}"
            )
        shape = (self.n_parts, self.n_out, self.n_in, self._bins)
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
        self._head += 1
        if self._head == self.n_parts:
            self._head = 0
        forward = self._forward
        stage_input(self._prev, x, forward.time)
        forward.forward()
        store_spectrum(forward.spectrum, self._fdl_re, self._fdl_im, self._head,
                       self._acc_re, self._acc_im)
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
        inverse = self._inverse
        load_spectrum(self._acc_re, self._acc_im, inverse.spectrum)
        inverse.inverse()
        if self._incoming is None:
            take_block(inverse.time, out)
            return out
        take_block(inverse.time, self._old)
        load_spectrum(self._new_re, self._new_im, inverse.spectrum)
        inverse.inverse()
        take_block(inverse.time, self._fade)
        np.subtract(self._fade, self._old, out=self._fade)
        np.multiply(self._fade, self._ramp, out=self._fade)
        np.add(self._fade, self._old, out=self._fade)
        out[...] = self._fade
        old, self._spectra = self._spectra, self._incoming
        if not self._swap_pending:          # (a newer swap keeps its own spectra)
            self._pending = old
        self._incoming = None
        return out
