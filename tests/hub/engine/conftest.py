"""The room convolvers' tests run on every FFT engine this host has (FFTW through
pyFFTW, and numpy's): the same equations must hold on both."""

import pytest

from anamnesis.hub.engine import fft

ENGINES = ["fftw", "numpy"] if fft.HAVE_FFTW else ["numpy"]


@pytest.fixture(params=ENGINES)
def fft_backend(request, monkeypatch):
    """The engine :class:`~anamnesis.hub.engine.fft.RealTransform` uses by default."""
    monkeypatch.setattr(fft, "BACKEND", request.param)
    return request.param
