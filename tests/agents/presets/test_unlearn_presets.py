"""The six Unlearn examples of seed 001 as presets: parameters and behaviour.

Renders go through ``agents.render.render_preset`` exactly as ``anamnesis
render`` does, with the render seed 0. Examples 1-5 are rendered at their full
20 s (a fraction of a second each); example 6 at its full 100 s (~2-3 s), since
its point is what remains after 1:19.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.signal import butter, sosfilt, stft

from anamnesis.agents.presets import At, Ramp, all_presets, get_preset
from anamnesis.agents.render import render_preset

SR = 48000
SEED_TABLE = {  # seed 001: activation, max delay, lambda, mu, nu, s, r, a
    "unlearn1": ("tanh", 2400, 60.0, 0.4, 0.4, 0.1, 0.01, 0.0),
    "unlearn2": ("tanh", 2400, 0.4, 0.4, 0.4, 160.0, 0.01, 0.0),
    "unlearn3": ("elevated_cosine", 2400, 10.0, 0.1, 10.0, 0.1, 0.02, 0.5),
    "unlearn4": ("elevated_cosine", 2400, 10.0, 235.0, 900.0, 0.1, 0.02, 0.5),
    "unlearn5": ("elevated_cosine", 2400, 28.0, 0.02, 900.0, 0.1, 0.2, 6.8),
    "unlearn6": ("tanh", 4800, 1.0, 100.0, 980.0, 6.5, 0.6, 0.1),
}


def ac(y: np.ndarray) -> np.ndarray:
    """The output without DC and below-audio drift: a 20 Hz 2nd-order high-pass."""
    return sosfilt(butter(2, 20.0, "highpass", fs=SR, output="sos"), y)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(y * y)))


def flatness(y: np.ndarray) -> float:
    """Spectral flatness (geometric / arithmetic mean of the power spectrum), 0..1."""
    power = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2 + 1e-30
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


def strongest_below(y: np.ndarray, hi: float = 1000.0, lo: float = 20.0) -> float:
    """Frequency (Hz) of the largest spectral peak of ``y`` in (lo, hi)."""
    spectrum = np.abs(np.fft.rfft((y - y.mean()) * np.hanning(y.size)))
    freqs = np.fft.rfftfreq(y.size, 1.0 / SR)
    band = (freqs > lo) & (freqs < hi)
    return float(freqs[band][np.argmax(spectrum[band])])


def spectral_flux(y: np.ndarray) -> float:
    """Mean frame-to-frame change of the log spectrum (dB), 50 Hz - 8 kHz."""
    freqs, _, z = stft(y - y.mean(), fs=SR, nperseg=2048, noverlap=1024)
    band = (freqs > 50.0) & (freqs < 8000.0)
    level = 20.0 * np.log10(np.abs(z[band]) + 1e-9)
    return float(np.mean(np.abs(np.diff(level, axis=1))))


_CACHE: dict[str, object] = {}


def rendered(name: str):
    if name not in _CACHE:
        preset = get_preset(name)
        _CACHE[name] = render_preset(preset, preset.seconds, seed=0)
    return _CACHE[name]


def test_the_six_presets_carry_the_seed_parameters():
    presets = all_presets()
    for name, (activation, max_delay, lam, mu, nu, s, r, a) in SEED_TABLE.items():
        preset = presets[name]
        assert preset.model == "unlearn"
        assert preset.model_args["n_neurons"] == 16 and preset.model_args["n_inputs"] == 3
        assert preset.model_args["activation"] == activation
        assert preset.model_args["max_delay"] == max_delay
        assert [preset.params[k] for k in ("lambda_", "mu", "nu", "s", "r", "a")] == \
            [lam, mu, nu, s, r, a]
    assert get_preset("unlearn2").modulations == (Ramp("s", 160.0, 18.0, 0.0, 20.0, "exp"),)
    six = get_preset("unlearn6")
    assert set(six.events) == {At(79.0, "input_gain", 0.0), At(79.0, "lambda_", 0.0)}
    assert six.inputs[0].kind == "sine" and six.inputs[0].args["freq"] == 100.0
    assert all(get_preset(f"unlearn{i}").inputs[0].kind == "silence" for i in range(1, 6))


@pytest.mark.parametrize("name", ["unlearn1", "unlearn3", "unlearn4", "unlearn5"])
def test_self_oscillation_without_input(name):
    result = rendered(name)
    y = result.output
    assert np.all(result.inputs == 0.0)
    assert np.all(np.isfinite(y))
    lo = 0.0 if SEED_TABLE[name][0] == "elevated_cosine" else -1.0
    assert y.min() >= lo and y.max() <= 1.0
    assert rms(ac(y)) > 1e-3
    assert rms(ac(y[: 5 * SR])) > 1e-3  # it starts by itself
    assert result.stats["blowups"] == 0.0


def test_wind_is_noise_like_and_example_1_resonant():
    wind = flatness(ac(rendered("unlearn4").output)[SR:])
    resonant = flatness(ac(rendered("unlearn1").output)[SR:])
    assert wind > 0.2
    assert wind > 3.0 * resonant


def test_falling_s_settles_the_chatter():
    """s falling from 160 to 18 stops the weights' limit cycles (s r < ~0.5 below s = 50),
    and the sound settles: its spectrum changes less from frame to frame than with
    s held at 160."""
    preset = get_preset("unlearn2")
    swept = rendered("unlearn2")
    held = render_preset(dataclasses.replace(preset, modulations=()), 20.0, seed=0)

    def hover(result) -> float:
        st = result.model.get_state()
        return float(np.sqrt(np.mean((st["w"] - st["u"]) ** 2 + st["v"] ** 2)))

    assert hover(swept) < 0.5 * hover(held)
    late = slice(15 * SR, 20 * SR)
    assert spectral_flux(swept.output[late]) < 0.95 * spectral_flux(held.output[late])
    assert rms(ac(swept.output[late])) > 1e-3  # an equilibrium *sound*, not silence


def test_sine_adaptation_leaves_a_resonance_near_100_hz():
    result = rendered("unlearn6")
    y = result.output
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    switch = 79 * SR
    assert 95.0 <= strongest_below(y[switch - 5 * SR:switch]) <= 105.0  # locked while learning
    after = y[switch:]
    assert 85.0 <= strongest_below(after) <= 115.0
    last = y[-10 * SR:]  # and it is still there 11-21 s later, not a dying ring
    assert rms(ac(last)) > 1e-3
    assert 85.0 <= strongest_below(last) <= 115.0
    params = result.model.params()
    assert params["lambda_"] == 0.0 and params["input_gain"] == 0.0
    # the input row of the network's history is silent after the switch-off
    assert np.all(result.model.get_state()["history"][16] == 0.0)
