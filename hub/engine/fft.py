"""Real FFTs over preallocated rows for the room's convolvers: FFTW (through pyFFTW)
where it is installed, numpy's pocketfft otherwise; the same arrays and the same
results (to rounding) either way.

A :class:`RealTransform` owns two arrays: ``time`` (rows, n) real samples and
``spectrum`` (rows, n // 2 + 1) complex bins, both aligned for SIMD. :meth:`forward`
transforms ``time`` into ``spectrum``; :meth:`inverse` the other way. Neither scales:
``inverse(forward(x)) = n * x``, so a convolver folds ``1 / n`` into its response
spectra once (:func:`response_spectra`) rather than into every block. Neither
allocates, and FFTW's releases the GIL while it runs (the rehearsal's threads).

Why FFTW: at the room's sizes (8 and 10 rows of 512, 2048 and 8192 points) it is
2.2-3× faster than numpy's transforms on this machine class, and it computes float32
natively (numpy's float32 ``rfft`` copies to float64 and allocates). Plans are made
with ``FFTW_ESTIMATE``: planning takes about a millisecond and is deterministic, so the
same input gives the same bits in every process (``FFTW_MEASURE`` would time
candidate algorithms and could pick another one next run; it was no faster here).
``ANAMNESIS_FFT=numpy`` in the environment chooses numpy's transforms regardless.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

#: Whether pyFFTW is installed (imported at the first FFTW transform: its import takes
#: 0.1-0.2 s, which a command that never convolves should not pay).
HAVE_FFTW = importlib.util.find_spec("pyfftw") is not None
#: The transforms' engine: "fftw" (pyFFTW) or "numpy".
BACKEND = "fftw" if HAVE_FFTW and os.environ.get("ANAMNESIS_FFT") != "numpy" else "numpy"


class RealTransform:
    """Unscaled real FFTs of ``rows`` rows of ``n`` samples (``dtype`` float32 or
    float64) between :attr:`time` and :attr:`spectrum`; ``backend`` "fftw" or "numpy"
    (default :data:`BACKEND`)."""

    def __init__(self, rows: int, n: int, dtype=np.float64, backend: str | None = None) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.backend = BACKEND if backend is None else backend
        if self.backend not in ("fftw", "numpy"):
            raise ValueError(f"backend must be 'fftw' or 'numpy', got {self.backend!r}")
        if self.backend == "fftw" and not HAVE_FFTW:
            raise ValueError("backend 'fftw' needs pyFFTW (pip install pyFFTW)")
        self.n = int(n)
        cdtype = np.complex64 if self.dtype == np.float32 else np.complex128
        shape, bins = (int(rows), self.n), (int(rows), self.n // 2 + 1)
        if self.backend == "fftw":
            import pyfftw

            self.time = pyfftw.empty_aligned(shape, self.dtype)
            self.spectrum = pyfftw.empty_aligned(bins, cdtype)
            self.time[...] = 0.0
            self.spectrum[...] = 0.0
            flags = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
            self._forward = pyfftw.FFTW(self.time, self.spectrum, axes=(-1,),
                                        flags=flags, threads=1).execute
            self._inverse = pyfftw.FFTW(self.spectrum, self.time, axes=(-1,),
                                        direction="FFTW_BACKWARD", flags=flags,
                                        threads=1).execute
        else:
            self.time = np.zeros(shape, self.dtype)
            self.spectrum = np.zeros(bins, cdtype)
            # numpy's float32 transforms allocate (rfft a float64 copy, irfft with
            # norm="forward" a work array): compute in double there.
            single = self.dtype == np.float32
            self._wide = (np.zeros(shape), np.zeros(bins, np.complex128)) if single else None
            self._forward = self._numpy_forward
            self._inverse = self._numpy_inverse

    def forward(self) -> None:
        """``spectrum = rfft(time)``, unscaled. ``time`` may be overwritten (FFTW's
        out-of-place real transforms destroy their input): refill it before each call."""
        self._forward()

    def inverse(self) -> None:
        """``time = n * irfft(spectrum)`` (unscaled). ``spectrum`` may be overwritten."""
        self._inverse()

    def _numpy_forward(self) -> None:
        if self._wide is None:
            np.fft.rfft(self.time, axis=-1, out=self.spectrum)
        else:
            wide_time, wide = self._wide
            wide_time[...] = self.time
            np.fft.rfft(wide_time, axis=-1, out=wide)
            self.spectrum[...] = wide

    def _numpy_inverse(self) -> None:
        if self._wide is None:
            np.fft.irfft(self.spectrum, n=self.n, axis=-1, norm="forward", out=self.time)
        else:
            wide_time, wide = self._wide
            wide[...] = self.spectrum
            np.fft.irfft(wide, n=self.n, axis=-1, norm="forward", out=wide_time)
            self.time[...] = wide_time


def response_spectra(parts: np.ndarray, n: int) -> np.ndarray:
    """Spectra of response partitions ``parts`` (..., samples) zero-padded to ``n``,
    scaled by ``1 / n`` for the unscaled transforms of :class:`RealTransform`. Computed
    in float64 with numpy (once per response, off the audio path; allocates)."""
    return np.fft.rfft(np.asarray(parts, np.float64), n=n, axis=-1) / n


__all__ = ["BACKEND", "HAVE_FFTW", "RealTransform", "response_spectra"]
