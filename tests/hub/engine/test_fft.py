"""RealTransform: unscaled real FFTs over preallocated rows, on FFTW and on numpy, equal
to numpy's reference transforms, allocation-free, and chosen by ANAMNESIS_FFT."""

import os
import subprocess
import sys

import numpy as np
import pytest
from support.alloc import traced_allocation

from anamnesis.hub.engine import fft
from anamnesis.hub.engine.fft import RealTransform, response_spectra

pytestmark = pytest.mark.usefixtures("fft_backend")


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("rows, n", [(8, 512), (10, 2048), (1, 128), (3, 8192)])
def test_forward_and_inverse_equal_numpy_unscaled(rows, n, dtype, tol):
    rng = np.random.default_rng(rows * n)
    x = rng.normal(0.0, 1.0, (rows, n))
    t = RealTransform(rows, n, dtype)
    assert t.time.shape == (rows, n) and t.spectrum.shape == (rows, n // 2 + 1)
    t.time[...] = x
    t.forward()
    want = np.fft.rfft(x.astype(dtype).astype(np.float64), axis=-1)
    scale = np.abs(want).max()
    assert np.abs(t.spectrum - want).max() <= tol * scale * np.log2(n)
    t.inverse()                                     # unscaled: n times the input
    assert np.abs(t.time / n - x.astype(dtype)).max() <= tol * np.log2(n) * 4


def test_response_spectra_carry_one_over_n():
    rng = np.random.default_rng(1)
    h = rng.normal(0.0, 1.0, (2, 3, 100))
    t = RealTransform(1, 256)
    t.spectrum[...] = response_spectra(h, 256)[1, 2] * np.fft.rfft(np.eye(256)[0])
    t.inverse()                                     # H/n times a unit impulse's spectrum
    np.testing.assert_allclose(t.time[0, :100], h[1, 2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.time[0, 100:], 0.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transforms_allocate_nothing(dtype):
    t = RealTransform(10, 2048, dtype)

    def step():
        t.time[...] = 1.0                          # (the transforms may destroy it)
        t.forward()
        t.inverse()

    step()
    peak, retained = traced_allocation(step)
    assert peak < 2048 and retained < 512         # a 10 x 2048 row set is 80 kB


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        RealTransform(1, 64, np.int16)
    with pytest.raises(ValueError, match="backend must be 'fftw' or 'numpy'"):
        RealTransform(1, 64, backend="mkl")


def test_fftw_is_installed_on_linux():
    """pyFFTW is a dependency on Linux: without it the room would quietly run on numpy's
    transforms, 2-3x slower."""
    if not sys.platform.startswith("linux"):
        pytest.skip("pyFFTW is optional off Linux (no wheels for every platform)")
    assert fft.HAVE_FFTW


def test_the_environment_chooses_numpy():
    code = "from anamnesis.hub.engine import fft; print(fft.BACKEND)"
    env = dict(os.environ, ANAMNESIS_FFT="numpy")
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=60)
    assert got.stdout.strip() == "numpy"
