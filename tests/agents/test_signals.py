"""The seed input generators: exact at any block split, right frequency and level."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from anamnesis.agents.signals import SIGNALS, make_signal, midi_to_hz

SR = 48000
ARGS = {
    "sine": {"freq": 200.0},
    "fm_sine": {"lo": 220.0, "hi": 600.0, "rate": 80.0},
    "saw": {"freq": 180.0},
    "pulse": {"freq": 500.0},
    "sines": {"freqs": (82.41, 155.56), "amp": 0.2},
    "noise": {"amp": 0.1, "fade": 0.5, "seed": 3},
    "silence": {},
}


def test_every_signal_has_a_case():
    assert set(ARGS) == set(SIGNALS)


@pytest.mark.parametrize("kind", sorted(ARGS))
@pytest.mark.parametrize("split", [1, 7, 256, 4096])
def test_block_split_is_bit_identical(kind, split):
    whole = make_signal(kind, SR, **ARGS[kind]).next(10000)
    gen = make_signal(kind, SR, **ARGS[kind])
    parts = [gen.next(min(split, 10000 - i)) for i in range(0, 10000, split)]
    assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("kind", sorted(ARGS))
def test_reset_restarts(kind):
    gen = make_signal(kind, SR, **ARGS[kind])
    first = gen.next(3000)
    gen.reset()
    assert_array_equal(gen.next(3000), first)


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SR / len(x))


@pytest.mark.parametrize("kind,freq", [("sine", 200.0), ("saw", 180.0), ("pulse", 500.0)])
def test_fundamental(kind, freq):
    x = make_signal(kind, SR, **ARGS[kind]).next(SR)
    assert abs(_peak_hz(x) - freq) <= 1.0
    assert 0.9 <= np.max(np.abs(x)) <= 1.1


def test_fm_sine_sweeps_between_lo_and_hi():
    x = make_signal("fm_sine", SR, lo=220.0, hi=600.0, rate=80.0).next(SR)
    phase = np.unwrap(np.angle(_analytic(x)))
    inst = np.diff(phase) * SR / (2 * np.pi)
    inst = inst[1000:-1000]
    assert_allclose([np.percentile(inst, 1), np.percentile(inst, 99)], [220.0, 600.0], rtol=0.03)


def _analytic(x: np.ndarray) -> np.ndarray:
    spectrum = np.fft.fft(x)
    h = np.zeros(len(x))
    h[0] = 1
    h[1:len(x) // 2] = 2
    h[len(x) // 2] = 1
    return np.fft.ifft(spectrum * h)


def test_pulse_is_band_limited():
    """polyBLEP keeps energy above Nyquist/2 far below a naive square's."""
    x = make_signal("pulse", SR, freq=1900.0).next(SR)
    naive = np.where(np.mod(1900.0 * np.arange(SR) / SR, 1.0) < 0.5, 1.0, -1.0)

    def alias_energy(sig):
        spec = np.abs(np.fft.rfft(sig)) ** 2
        freqs = np.fft.rfftfreq(len(sig), 1 / SR)
        harmonic = np.isclose(np.mod(freqs, 1900.0), 0.0, atol=2.0) | np.isclose(
            np.mod(freqs, 1900.0), 1900.0, atol=2.0)
        return spec[~harmonic].sum() / spec.sum()

    assert alias_energy(x) < 0.2 * alias_energy(naive)


def test_noise_fades_and_follows_seed():
    a = make_signal("noise", SR, amp=0.1, fade=0.5, seed=1).next(SR)
    b = make_signal("noise", SR, amp=0.1, fade=0.5, seed=2).next(SR)
    assert np.max(np.abs(a[: SR // 10])) <= 0.1
    assert np.max(np.abs(a[SR // 2:])) == 0.0
    assert not np.array_equal(a, b)


def test_sum_of_sines_level_and_midi():
    assert midi_to_hz(69) == 440.0
    assert_allclose(midi_to_hz(40), 82.4069, rtol=1e-5)
    x = make_signal("sines", SR, freqs=(100.0, 300.0), amp=0.2).next(SR)
    assert_allclose(np.sqrt(np.mean(x ** 2)), 0.2, rtol=1e-3)  # two unit sines: RMS 1 * 0.2


@pytest.mark.parametrize("kind,args,match", [
    ("sine", {"freq": 30000.0}, "freq must be in"),
    ("sine", {"freq": float("nan")}, "freq must be in"),
    ("fm_sine", {"lo": 600.0, "hi": 220.0}, "hi must be >= lo"),
    ("pulse", {"width": 1.5}, "width must be in"),
    ("noise", {"fade": -1.0}, "fade must be a positive"),
    ("sines", {"freqs": ()}, "at least one frequency"),
    ("sine", {"frequency": 3.0}, "bad arguments for signal 'sine'"),
    ("chirp", {}, "unknown signal 'chirp'"),
])
def test_bad_arguments_are_clear(kind, args, match):
    with pytest.raises(ValueError, match=match):
        make_signal(kind, SR, **args)


def test_negative_frames_rejected():
    with pytest.raises(ValueError, match="frames must be >= 0"):
        make_signal("sine", SR).next(-1)
