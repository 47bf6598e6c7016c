"""AutoRegNNBank and AutoRegNN2: equal to separate models, bit for bit; and the kernels
without numba (NUMBA_DISABLE_JIT) equal to the compiled ones, bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from anamnesis.agents.models.autoregnn import AutoRegNN, AutoRegNN2, initial_weights
from anamnesis.agents.models.autoregnn_bank import AutoRegNNBank

SR = 48000
ROOT = Path(__file__).resolve().parents[3]


def sine(freq, seconds, sr=SR):
    return np.sin(2 * np.pi * freq * np.arange(int(round(seconds * sr))) / sr)


def square(freq, seconds, sr=SR):
    """A pulse wave of duty cycle 0.5 in {-1, 1}."""
    t = np.arange(int(round(seconds * sr))) / sr
    return np.where(np.mod(freq * t, 1.0) < 0.5, 1.0, -1.0)


def harmonic_ratio(y, sr=SR):
    """(fundamental Hz, energy of harmonics 2..11 / energy of the fundamental)."""
    y = y - y.mean()
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / sr)
    f0 = f[np.argmax(spec)]

    def band(fc):
        return spec[(f > fc - 30) & (f < fc + 30)].sum()

    return f0, sum(band(k * f0) for k in range(2, 12)) / band(f0)


# --- the bank ----------------------------------------------------------------------------------

def _configure(target, a, agent=None):
    """Per-agent parameters of agent a; ``agent`` is passed to a bank's set_param."""
    kw = {} if agent is None else {"agent": agent}
    target.set_param("lr", [0.1, 0.3, 0.05, 1.5, 50.0][a % 5], **kw)
    target.set_param("ridge", [1e-4, 1e-3, 0.0, 1e-5, 0.05][a % 5], **kw)   # a % 5 == 4 blows up
    target.set_param("act_mix", np.linspace(0, 1, 8) if a % 3 == 1 else 0.0, **kw)
    target.set_param("learn", 0 if a == 2 else 1, **kw)


def test_bank_columns_equal_separate_models_bit_for_bit():
    A, seeds = 11, [7 * a + 1 for a in range(11)]          # 11 agents: two parts
    frames = 9600
    rng = np.random.default_rng(0)
    x = np.stack([sine(150.0 + 40 * a, frames / SR) for a in range(A)], axis=1)
    x[:, 5] = rng.uniform(-1, 1, frames)
    x[300, 3] = np.nan
    lr_mod = np.abs(x) * 0.5 + 0.01                        # per agent, follows each input
    lr_mod[300, 3] = 0.1
    lr_mod[:, 4] = 50.0                                    # keep agent 4 blowing up
    ridge_mod = np.full(frames, 0.05)                      # shared
    bank = AutoRegNNBank(A, seeds=seeds)
    for a in range(A):
        _configure(bank, a, agent=a)
    models = [AutoRegNN(seed=s) for s in seeds]
    for a, m in enumerate(models):
        _configure(m, a)

    half = frames // 2
    ya = bank.process(x[:half], {"lr": lr_mod[:half]})
    hand = {"W2": np.linspace(-0.5, 0.5, 8), "cascade_G": np.full(12, 0.1)}
    bank.set_state(hand, agent=9)
    bank.reset(agent=6)
    yb = bank.process(x[half:], {"lr": lr_mod[half:], "ridge": ridge_mod[half:]})
    y_bank = np.concatenate([ya, yb])

    for a, m in enumerate(models):
        y1 = m.process(x[:half, a], {"lr": lr_mod[:half, a]})
        if a == 9:
            m.set_state(hand)
        if a == 6:
            m.reset()
        y2 = m.process(x[half:, a], {"lr": lr_mod[half:, a], "ridge": ridge_mod[half:]})
        assert_array_equal(y_bank[:, a], np.concatenate([y1, y2]), err_msg=f"agent {a}")
        for key, value in m.get_state().items():
            assert_array_equal(bank.get_state(a)[key], value, err_msg=f"agent {a} {key}")
        assert bank.stats(a) == m.stats()
        assert bank.params(a)["lr"] == m.params()["lr"]
    stats = bank.stats()
    assert stats["blowups"][4] > 0 and stats["nonfinite_inputs"][3] == 1
    assert stats["blowups"][0] == 0 and stats["samples"] == frames


@pytest.mark.parametrize("sizes", [[1], [7], [333, 1, 4096], [4096]], ids=str)
def test_bank_block_splits_are_bit_identical(sizes):
    A = 9
    x = np.stack([sine(100.0 + 30 * a, 0.1) for a in range(A)], axis=1)
    whole = AutoRegNNBank(A, seeds=3)
    whole.set_param("lr", 0.4)
    ref = whole.process(x)
    split = AutoRegNNBank(A, seeds=3)
    split.set_param("lr", 0.4)
    out = np.empty_like(x)
    pos, i = 0, 0
    while pos < len(x):
        end = min(len(x), pos + sizes[i % len(sizes)])
        split.process(x[pos:end], out=out[pos:end])
        pos, i = end, i + 1
    assert_array_equal(out, ref)


def test_bank_seeds_parameters_and_state_access():
    bank = AutoRegNNBank(3, input_size=6, hidden_size=5, seeds=[4, 5, 6])
    assert bank.seeds == [4, 5, 6]
    assert AutoRegNNBank(3, seeds=10).seeds == [10, 11, 12]
    assert AutoRegNNBank(2).seeds == [0, 1]
    for a, seed in enumerate([4, 5, 6]):
        expected = initial_weights(seed, 6, 5)
        state = bank.get_state(a)
        for key, value in expected.items():
            assert_array_equal(state[key], value)
        assert_array_equal(bank.weights(a), np.concatenate([state[k].ravel() for k in bank.WEIGHT_KEYS]))
    bank.set_param("lr", 0.7)
    bank.set_param("lr", 0.2, agent=1)
    bank.set_param("act_mix", [0, 0.1, 0.2, 0.3, 0.4], agent=2)
    p = bank.params()
    assert_array_equal(p["lr"], [0.7, 0.2, 0.7])
    assert p["act_mix"].shape == (3, 5)
    assert_array_equal(p["act_mix"][2], [0, 0.1, 0.2, 0.3, 0.4])
    assert bank.params(1)["lr"] == 0.2
    bank.set_weights(bank.weights(2), agent=0)
    assert_array_equal(bank.weights(0), bank.weights(2))
    bank.set_state({"cascade_T": np.arange(6.0) / 10}, agent=0)
    assert_array_equal(bank.get_state(0)["cascade_T"], np.arange(6.0) / 10)
    assert_array_equal(bank.get_state(1)["cascade_T"], np.zeros(6))


@pytest.mark.parametrize("call, match", [
    (lambda: AutoRegNNBank(0), "n_agents must be in"),
    (lambda: AutoRegNNBank(3, seeds=[1, 2]), "seeds must have 3 entries"),
    (lambda: AutoRegNNBank(2, seeds=[1, -2]), "seed must be in"),
    (lambda: AutoRegNNBank(2, seeds=object()), "seeds must be None, an int or 2 ints"),
    (lambda: AutoRegNNBank(2).get_state(2), r"agent must be in \[0, 1\]"),
    (lambda: AutoRegNNBank(2).set_param("lr", 0.1, agent=-1), r"agent must be in \[0, 1\]"),
    (lambda: AutoRegNNBank(2).set_param("lr", 99.0), r"lr must be in \[0, 50\]"),
    (lambda: AutoRegNNBank(2).set_param("volume", 1.0), "unknown parameter 'volume'"),
    (lambda: AutoRegNNBank(2).process(np.zeros((10, 3))), r"input must have shape \(frames, 2\)"),
    (lambda: AutoRegNNBank(2).process(np.zeros((10, 2)), {"lr": np.ones((10, 3))}),
     r"lr modulation must have shape \(10,\)"),
    (lambda: AutoRegNNBank(2).process(np.zeros((10, 2)), {"ridge": np.full((10, 2), -1.0)}),
     r"ridge must be in \[0, 1\]"),
    (lambda: AutoRegNNBank(2).set_state({"W1": np.zeros((8, 8))}, agent=0),
     r"state 'W1' must have shape \(8, 12\)"),
])
def test_bank_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- AutoRegNN2 ----------------------------------------------------------------------------------------

def test_pair_seeding_draws_set_a_then_set_b():
    p = AutoRegNN2(input_size=5, hidden_size=3, seed=12)
    rng = np.random.default_rng(12)
    a = initial_weights(12, 5, 3, rng=rng)
    b = initial_weights(12, 5, 3, rng=rng)
    state = p.get_state()
    for key in ("W1", "b1", "W2", "b2"):
        assert_array_equal(state[f"a.{key}"], a[key])
        assert_array_equal(state[f"b.{key}"], b[key])
        assert_array_equal(state[f"a.{key}"], initial_weights(12, 5, 3)[key])
    assert set(state) == set(AutoRegNN2.STATE_KEYS)
    flat = p.weights()
    assert_array_equal(flat, np.concatenate([state[k].ravel() for k in AutoRegNN2.WEIGHT_KEYS]))
    q = AutoRegNN2(input_size=5, hidden_size=3, seed=13)
    q.set_weights(flat)
    assert_array_equal(q.weights(), flat)


def test_pair_alpha_0_and_1_are_exactly_the_set_a_and_set_b_generators():
    x = np.stack([sine(500.0, 0.2), square(500.0, 0.2)], axis=1)
    for alpha, col in ((0.0, 0), (1.0, 1)):
        pair = AutoRegNN2(seed=3)
        pair.set_param("lr", 0.5)
        pair.set_param("ridge", 1e-3)
        pair.set_param("interp", alpha)
        start = pair.get_state()
        single = AutoRegNN(seed=3)
        single.set_param("lr", 0.5)
        single.set_param("ridge", 1e-3)
        prefix = "ab"[col]
        single.set_state({k: start[f"{prefix}.{k}"] for k in ("W1", "b1", "W2", "b2")})
        assert_array_equal(pair.process(x), single.process(x[:, col].copy()), err_msg=f"alpha {alpha}")
        end = pair.get_state()
        for k in ("W1", "b1", "W2", "b2"):
            assert_array_equal(end[f"{prefix}.{k}"], single.get_state()[k])


def test_pair_tracks_the_sine_at_alpha_0_and_the_pulse_at_alpha_1():
    # interp_sine_pulse: sine and pulse at 500 Hz, n 12, h 8, lr 0.5, ridge 1e-3
    x = np.stack([sine(500.0, 3.0), square(500.0, 3.0)], axis=1)
    pulse_ratio = harmonic_ratio(x[-SR // 4:, 1])[1]
    ratios = {}
    for alpha in (0.0, 1.0):
        pair = AutoRegNN2(input_size=12, hidden_size=8, seed=0)
        pair.set_param("lr", 0.5)
        pair.set_param("ridge", 1e-3)
        pair.set_param("interp", alpha)
        y = pair.process(x)
        f0, ratios[alpha] = harmonic_ratio(y[-SR // 4:])
        assert abs(f0 - 500.0) < 0.02 * 500.0
    assert ratios[0.0] < 0.1                       # close to a sine
    assert ratios[1.0] > 0.75 * pulse_ratio        # keeps the pulse's harmonics


def test_pair_interp_modulated_per_sample_and_block_splits():
    x = np.stack([sine(300.0, 0.1), square(200.0, 0.1)], axis=1)
    interp = 0.5 + 0.5 * sine(7.0, 0.1)
    a = AutoRegNN2(seed=1)
    ref = a.process(x, {"interp": interp, "lr": np.full(len(x), 0.3)})
    b = AutoRegNN2(seed=1)
    out = np.empty(len(x))
    for lo in range(0, len(x), 777):
        hi = min(len(x), lo + 777)
        b.process(x[lo:hi], {"interp": interp[lo:hi], "lr": np.full(hi - lo, 0.3)}, out=out[lo:hi])
    assert_array_equal(out, ref)
    c = AutoRegNN2(seed=1)
    c.set_param("lr", 0.3)
    assert not np.array_equal(c.process(x), ref)           # interp 0.5 throughout differs
    with pytest.raises(ValueError, match=r"interp must be in \[0, 1\]"):
        a.process(x, {"interp": np.full(len(x), 1.5)})
    with pytest.raises(ValueError, match=r"input must have shape \(frames, 2\)"):
        a.process(sine(300.0, 0.01))


def test_pair_state_round_trip_and_blow_up_recovery():
    x = np.stack([sine(500.0, 2.0), square(500.0, 2.0)], axis=1)
    x[1000, 1] = np.inf
    a = AutoRegNN2(seed=4)
    a.process(x[:4000])
    b = AutoRegNN2(seed=8)
    b.set_state(a.get_state())
    assert_array_equal(b.process(x[4000:8000]), a.process(x[4000:8000]))
    a.set_param("lr", 50.0)
    a.set_param("ridge", 0.05)
    y = a.process(x[8000:])
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    stats = a.stats()
    assert stats["blowups"] > 0 and stats["nonfinite_inputs"] == 1
    assert all(np.all(np.isfinite(v)) for v in a.get_state().values())


# --- the kernels as plain Python -------------------------------------------------------------------------

_PURE_PYTHON_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from anamnesis.agents.models.autoregnn import AutoRegNN, AutoRegNN2
    from anamnesis.agents.models.autoregnn_bank import AutoRegNNBank

    def run():
        t = np.arange(160) / 48000.0
        x = np.sin(2 * np.pi * 900 * t)
        x[7] = np.nan
        single = AutoRegNN(input_size=4, hidden_size=3, seed=5)
        single.set_param("act_mix", [0.0, 0.5, 1.0])
        single.set_param("lr", 50.0)
        single.set_param("ridge", 1.0)           # blows up within the 160 samples
        y1 = single.process(x)
        bank = AutoRegNNBank(3, input_size=4, hidden_size=3, seeds=[1, 2, 3])
        bank.set_param("lr", 0.7)
        bank.set_param("act_mix", 0.5, agent=1)
        y2 = bank.process(np.stack([x[:40], -x[:40], 0.5 * x[:40]], axis=1))
        pair = AutoRegNN2(input_size=4, hidden_size=3, seed=2)
        pair.set_param("lr", 0.4)
        y3 = pair.process(np.stack([x[:40], np.sign(x[:40])], axis=1),
                          {"interp": np.linspace(0, 1, 40)})
        return [y1.tolist(), y2.tolist(), y3.tolist(), single.stats()["blowups"]]

    if __name__ == "__main__":
        json.dump(run(), sys.stdout)
""")


def test_kernels_without_numba_are_bit_identical(tmp_path):
    script = tmp_path / "pure.py"
    script.write_text(_PURE_PYTHON_SCRIPT)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=str(ROOT),
               PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(script)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    pure = json.loads(done.stdout)
    namespace: dict[str, object] = {}
    exec(compile(_PURE_PYTHON_SCRIPT, "pure.py", "exec"), namespace)
    compiled = namespace["run"]()
    assert compiled[3] > 0                          # the blow-up path ran
    for p, c in zip(pure, compiled, strict=False):
        assert_array_equal(np.array(p), np.array(c))


def _subnormals(state: dict) -> int:
    values = np.concatenate([np.ravel(v) for v in state.values()
                             if isinstance(v, np.ndarray) and v.dtype.kind == "f"])
    return int(np.sum((values != 0.0) & (np.abs(values) < np.finfo(np.float64).tiny)))


def test_silence_never_leaves_subnormal_state():
    """In silence the state decays towards zero; it must reach exact zero, never the
    subnormal floats (on which the kernel ran 100x slower: 27 us/sample)."""
    noise = np.random.default_rng(1).standard_normal(4096) * 0.1
    silence = np.zeros(256)
    single = AutoRegNN(seed=1)
    bank = AutoRegNNBank(4, seeds=[1, 2, 3, 4])
    for m in (single, bank):
        m.set_param("lr", 0.9)
        m.set_param("ridge", 1e-2)             # fast decay: subnormal within a second before
    single.process(noise)
    bank.process(np.tile(noise[:, None], (1, 4)))
    for _ in range(400):                        # ~2 s of silence
        single.process(silence)
        bank.process(np.zeros((256, 4)))
    assert _subnormals(single.get_state()) == 0
    assert all(_subnormals(bank.get_state(a)) == 0 for a in range(4))
    assert not np.any(single.get_state()["W1"]), "the weights decayed to exact zero"
    # a single model and its bank column still agree bit for bit
    assert_array_equal(single.process(noise[:256]), bank.process(
        np.tile(noise[:256, None], (1, 4)))[:, 0])
