"""The measures of a piece (anamnesis.hub.monitor.piece) on signals whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from anamnesis.hub.monitor.piece import (
    FRAME_S,
    PITCH_PROMINENCE_DB,
    analyse_speaker,
    silences,
)

SR = 48000


def _sine(hz: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    return amp * np.sin(2 * np.pi * hz * np.arange(int(seconds * SR)) / SR)


def test_a_sine_has_its_pitch_and_a_sine_heard_is_followed():
    y = _sine(440.0, 20.0)
    m = analyse_speaker(y, SR, x=_sine(440.0, 20.0, 0.1))
    assert m.pitched_share == 1.0 and m.pitch_hz == pytest.approx(440.0, abs=0.5)
    assert m.prominence_db > PITCH_PROMINENCE_DB + 20
    assert m.follow_share == 1.0
    assert m.ceiling_share == 0.0 and m.silences == 0
    assert m.rms_db == pytest.approx(20 * math.log10(0.3 / math.sqrt(2)), abs=0.01)
    # 2.3 % away is not following; 1 % away is
    assert analyse_speaker(y, SR, x=_sine(450.0, 20.0)).follow_share == 0.0
    assert analyse_speaker(y, SR, x=_sine(444.4, 20.0)).follow_share == 1.0
    # nothing pitched heard: no window to judge
    noise = np.random.default_rng(1).normal(0.0, 0.1, y.size)
    assert analyse_speaker(y, SR, x=noise).follow_share is None


def test_noise_has_no_pitch_and_a_sweep_changes_its_centroid():
    noise = np.random.default_rng(2).normal(0.0, 0.1, 20 * SR)
    m = analyse_speaker(noise, SR)
    assert m.pitched_share == 0.0 and m.pitch_hz is None and m.prominence_db < 8.0
    t = np.arange(40 * SR) / SR
    f = 200.0 * 10.0 ** (t / 40.0)                      # 200 Hz -> 2 kHz, exponentially
    sweep = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)
    m = analyse_speaker(sweep, SR)
    assert 2.8 <= m.centroid_octaves <= math.log2(10.0) + 0.1, m.centroid_hz


def test_ceiling_share_counts_frames_within_a_tenth_of_a_db_of_the_ceiling():
    ceiling = 10 ** (-1.0 / 20)
    y = np.clip(_sine(100.0, 10.0, 2.0), -ceiling, ceiling)
    quiet = _sine(100.0, 10.0, ceiling * 10 ** (-0.2 / 20))   # 0.2 dB under: not touching
    both = np.concatenate([y, quiet])
    assert analyse_speaker(both, SR).ceiling_share == pytest.approx(0.5, abs=1e-3)


def test_silences_are_told_apart_from_reset_dropouts():
    frame = int(FRAME_S * SR)
    y = _sine(300.0, 6.0)
    y[2 * SR:2 * SR + 6 * frame] = 0.0             # 300 ms of the network's own silence
    y[4 * SR:4 * SR + 4 * frame] = 0.0             # 200 ms after a reset
    reset = 4 * SR // frame - 2
    m = analyse_speaker(y, SR, reset_frames=[reset])
    assert (m.silences, m.reset_dropouts, m.own_silences, m.resets) == (2, 1, 1, 1)
    # one silent frame is no dropout; silence before the first sound is not counted
    rms = np.array([0.0, 0.0, 0.1, 0.0, 0.1, 0.0, 0.0, 0.1])
    assert silences(rms) == (0, 1)
    assert silences(rms, [4]) == (1, 0)
