"""The seed pieces of deploy/ as rehearsals: ring4 (seed 000's four-unit ring, and its
coupled variant) and embodied8 (eight neurons networked only through the air).

Each check is a property of a deterministic rehearsal (bit-identical per seed), so the
bounds are the pieces' own, measured once and kept with a margin; none depends on the
machine's speed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from anamnesis.hub.clock.rehearse import Rehearsal
from anamnesis.hub.installation.check import load_config, parse_config

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
SPEED_OF_SOUND = 343.0


def render(config, seconds: float, *, room: bool = True) -> np.ndarray:
    """Every speaker of ``config`` for ``seconds`` (frames, agents)."""
    r = Rehearsal(config, room=room, listener=False)
    blocks = int(round(seconds * r.sample_rate / r.block))
    out = np.empty((blocks * r.block, len(r.agent_ids)))
    for b in range(blocks):
        r.step()
        out[b * r.block:(b + 1) * r.block] = r.outputs
    return out


def dbfs(y: np.ndarray) -> np.ndarray:
    """RMS level of every column, dBFS (-300 for digital silence)."""
    return 10.0 * np.log10(np.mean(y ** 2, axis=0) + 1e-30)


def without_return(text: str) -> str:
    start = text.index("[[route]]                     # the ring's return")
    return text[:start] + text[text.index("[[route]]", start + 5):]


# --- ring4 ---------------------------------------------------------------------------

def test_ring4_keeps_sounding_after_its_noise_and_is_silent_without_its_return():
    """The noise fades out over 2 s; over seconds 8-10 every unit still sounds (above
    -40 dBFS); with the return edge n4 -> n1 cut, all four are digitally silent."""
    text = (DEPLOY / "ring4.toml").read_text()
    sr = 48000
    closed = render(parse_config(text), 10.0)[8 * sr:]
    assert np.all(dbfs(closed) > -40.0), dbfs(closed)
    assert np.all(np.isfinite(closed)) and np.max(np.abs(closed)) <= 10 ** (-1 / 20) + 1e-9
    cut = render(parse_config(without_return(text)), 10.0)[8 * sr:]
    assert np.all(dbfs(cut) < -200.0), dbfs(cut)


def test_ring4_coupled_sounds_and_its_couplings_act():
    config = load_config(DEPLOY / "ring4_coupled.toml")
    assert [k.id for k in config.couplings] == ["n1~>n2", "n2~>n3", "n3~>n4", "n4~>n1"]
    r = Rehearsal(config, listener=False)
    blocks = 10 * r.sample_rate // r.block
    level = np.zeros(4)
    for b in range(blocks):
        r.step()
        if b >= 8 * r.sample_rate // r.block:
            level += np.sum(r.outputs ** 2, axis=0)
    assert np.all(10 * np.log10(level / (2 * r.sample_rate)) > -40.0)
    assert r.couplings.applied == [99] * 4        # 10 Hz for 10 s, the first after 0.1 s


# --- embodied8 -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embodied8():
    """62 s of deploy/embodied8.toml: the burst ends at 0.5 s."""
    return render(load_config(DEPLOY / "embodied8.toml"), 62.0)


def test_embodied8_stays_active_a_minute_after_its_burst(embodied8):
    sr = 48000
    last = embodied8[-10 * sr:]
    assert np.all(dbfs(last) > -50.0), dbfs(last)
    assert np.all(np.isfinite(embodied8))
    assert np.max(np.abs(embodied8)) <= 10 ** (-1 / 20) + 1e-9


def test_embodied8_without_its_room_falls_silent():
    """No room, no network: each neuron hears nothing but n1 its burst, so after the
    burst every speaker is digitally silent — the sound is the network's."""
    y = render(load_config(DEPLOY / "embodied8.toml"), 3.0, room=False)
    assert np.all(dbfs(y[48000:]) < -200.0), dbfs(y[48000:])
    assert dbfs(y[:24000])[0] > -40.0              # n1 did play its burst


def band_levels(y: np.ndarray, sr: int = 48000) -> np.ndarray:
    """Third-octave levels (dB) of the mean power spectrum of all speakers, 50 Hz-12 kHz."""
    spec = np.mean(np.abs(np.fft.rfft(y * np.hanning(len(y))[:, None], axis=0)) ** 2, axis=1)
    freqs = np.fft.rfftfreq(len(y), 1.0 / sr)
    centres = 50.0 * 2.0 ** (np.arange(24) / 3.0)
    return np.array([10 * np.log10(np.mean(spec[(freqs >= c / 2 ** (1 / 6))
                                                 & (freqs < c * 2 ** (1 / 6))]) + 1e-30)
                     for c in centres])


def test_embodied8_moving_one_speaker_changes_the_network(embodied8):
    """n3's speaker 1.5 m further out (towards the wall): the network's spectrum over
    seconds 10-20 differs by more than 2 dB per third octave on average."""
    text = (DEPLOY / "embodied8.toml").read_text()
    moved = text.replace("speaker = [10.50, 5.00, 1.7]", "speaker = [12.00, 5.00, 1.7]")
    assert moved != text
    y = render(parse_config(moved), 20.0)
    sr = 48000
    here, there = band_levels(embodied8[10 * sr:20 * sr]), band_levels(y[10 * sr:20 * sr])
    assert np.mean(np.abs(here - there)) > 2.0, np.round(here - there, 1)


TWO_NEURONS = """
[installation]
name = "two-neurons"
block = 256

[room]
size = [20.0, 16.0, 6.0]
rt60 = 0.3
listener = [10.0, 8.0, 1.6]

[[agent]]
id = "talker"
model = "neuron"
params = {{ n_taps = 1, delays = [0.0], input_gain = 1.0, lambda_ = 0.0, s = 0.0, mu = 0.0, nu = 0.0 }}
speaker = [6.0, 8.0, 3.0]
mic = [6.0, 11.5, 3.0]

[[agent]]
id = "listener"
model = "neuron"
params = {{ n_taps = 1, delays = [0.0], input_gain = 0.3, lambda_ = 0.0, s = 0.0, mu = 0.0, nu = 0.0 }}
speaker = [{x}, 5.0, 3.0]
mic = [{x}, 8.0, 3.0]

[[source]]
name = "voice"
kind = "noise"
args = {{ amp = 0.5, seed = 3 }}
targets = ["talker"]
"""


@pytest.mark.parametrize("x", [8.0, 9.0, 12.0])
def test_a_neuron_hears_another_through_the_air_at_the_acoustic_delay(x):
    """Two neurons with one tap each (delay 0; the listener below its threshold): the
    cross-correlation of their outputs peaks at the distance from one's speaker to the
    other's mic over the speed of sound, plus what the code counts on the way — the
    lockstep's one block (hub.engine.coupling) and the listener's safety chain (its
    limiter's lookahead) — within 1 ms."""
    from anamnesis.agents.dsp.safety import SafetyChain

    config = parse_config(TWO_NEURONS.format(x=x))
    y = render(config, 4.0)
    sr, block = 48000, 256
    a, b = y[sr:, 0], y[sr:, 1]
    n = len(a)
    xc = np.fft.irfft(np.conj(np.fft.rfft(a, 2 * n)) * np.fft.rfft(b, 2 * n))[:sr // 10]
    lag = int(np.argmax(np.abs(xc)))
    air = math.dist((6.0, 8.0, 3.0), (x, 8.0, 3.0)) / SPEED_OF_SOUND
    expected = air * sr + block + SafetyChain(sr, block).latency
    assert abs(lag - expected) <= sr / 1000, (lag, expected)
