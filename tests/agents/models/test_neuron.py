"""The embodied neuron: its maths against an independent reference, and its contract.

``reference_run`` is a plain-Python transcription of the equations in the module
docstring of ``agents.models.neuron`` (``math.tanh``, the brute-force quotient of seed
000 eq. 4 with exact difference identities, the semi-implicit step of eq. 5 written
out). The kernel must agree with it to 1e-9 over a second of audio.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.lazy_maths import act, act_diff, act_prime, g_diff

from anamnesis.agents.models import create_model
from anamnesis.agents.models._unlearn_kernels import W_LIMIT
from anamnesis.agents.models.neuron import Neuron
from anamnesis.agents.snapshots import Snapshot, read_snapshot_sync, write_snapshot_sync

SR = 48000
OPTS = {"activity": "room", "energy_g": "tanh", "objective": "maximise",
        "cycle_center": "origin", "elevated_cosine_form": "peak"}
# Learning fast enough that the weights travel within a second (their steps lie near
# the 1e-3 border of the two gradient forms: the one-sample test below covers both).
PARAMS = {"lambda_": 3.0, "mu": 0.6, "nu": 1.5, "s": 2.0, "r": 0.4, "a": 0.3,
          "input_gain": 1.7, "shape": 1.3, "time_scale": 10.0}


def reference_gradient(xin, w, w_prev, s_sum, y, heard, p, opts, name):
    """(E(w | w_k(n-1)) - E(w)) / (w_k(n-1) - w_k(n)) of every tap, by brute force."""
    shape, trough = p["shape"], opts["elevated_cosine_form"] == "trough"
    own = opts["activity"] == "own"
    a_now = (0.0 if own else heard) + y * y
    grad = np.empty(len(w))
    for k in range(len(w)):
        dw = w_prev[k] - w[k]
        if dw == 0.0:   # the analytic limit
            fp = shape * act_prime(name, shape * s_sum, trough)
            gp = 1.0 if opts["energy_g"] == "linear" else 1.0 - math.tanh(a_now) ** 2
            grad[k] = xin[k] * fp * (p["nu"] * gp * 2.0 * y - p["mu"])
            continue
        d_out = act_diff(name, shape * s_sum, shape * dw * xin[k], trough)
        d_act = d_out * (2.0 * y + d_out)
        numerator = -p["mu"] * d_out + p["nu"] * g_diff(opts["energy_g"], a_now + d_act,
                                                        a_now, d_act)
        grad[k] = numerator / dw
    return grad


def reference_run(st, p, opts, x, name, activity_time=0.05):
    """The documented equations, sample by sample, from state ``st`` (get_state()'s
    keys); returns (outputs, final w, v, u, last gradient)."""
    w, v, u = st["w"].copy(), st["v"].copy(), st["u"].copy()
    w_prev = st["w_prev"].copy()
    delays = st["delays"].astype(int)
    hist = list(st["history"])
    ring = len(hist)
    wp = int(st["write_pos"][0])
    heard = float(st["glide"][3])
    c_h = math.exp(-1.0 / (activity_time * SR))
    dt = p["time_scale"] / SR
    sign = 1.0 if opts["objective"] == "maximise" else -1.0
    out = np.empty(len(x))
    grad = np.zeros(len(w))
    for n, sample in enumerate(x):
        xn = p["input_gain"] * sample
        hist[wp] = xn
        heard = xn * xn + c_h * (heard - xn * xn)
        xin = np.array([hist[(wp - d) % ring] for d in delays])
        s_sum = float(np.dot(w, xin))
        y = act(name, p["shape"] * s_sum, opts["elevated_cosine_form"] == "trough")
        grad = reference_gradient(xin, w, w_prev, s_sum, y, heard, p, opts, name)
        for k in range(len(w)):
            wk, vk, uk = w[k], v[k], u[k]
            m = uk if opts["cycle_center"] == "u" else 0.0
            e = wk - m
            cyc = p["s"] * (p["r"] - math.sqrt((wk - uk) ** 2 + vk ** 2))
            v1 = ((vk + dt * (-p["lambda_"] * e + sign * grad[k] + max(cyc - p["a"], 0.0) * vk))
                  / (1.0 + dt * max(p["a"] - cyc, 0.0)))
            w1 = m + (e + dt * (p["lambda_"] * v1 + max(cyc, 0.0) * e)) / (1.0 + dt * max(-cyc, 0.0))
            w_prev[k], w[k], v[k] = wk, w1, v1
            u[k] = uk + dt * (w1 - uk)
        out[n] = y
        wp = (wp + 1) % ring
    return out, w, v, u, grad


def make(activation="tanh", n_taps=4, seed=2, max_delay=300, **opts):
    model = Neuron(n_taps=n_taps, max_delay=max_delay, seed=seed, activation=activation,
                   smoothing=0.0, **{**OPTS, **opts})
    for name, value in PARAMS.items():
        model.set_param(name, value)
    return model


def mic(frames, seed=0):
    """A sound in a room: a gliding tone and noise, loud enough to drive learning."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames) / SR
    return 0.5 * np.sin(2 * np.pi * (180.0 * t + 40.0 * t * t)) + 0.2 * rng.standard_normal(frames)


@pytest.mark.parametrize(("activation", "opts", "seconds"), [
    ("tanh", {}, 1.0),
    ("sine", {"activity": "own", "cycle_center": "u"}, 0.25),
    ("elevated_cosine", {"elevated_cosine_form": "trough", "objective": "minimise"}, 0.25),
    ("tanh", {"energy_g": "linear"}, 0.25),
])
def test_kernel_matches_the_documented_equations(activation, opts, seconds):
    """Output, weights and gradient over ``seconds`` of audio equal the reference to 1e-9."""
    model = make(activation, **opts)
    x = mic(int(seconds * SR))
    start = model.get_state()
    y = model.process(x)
    ref_y, w, v, u, grad = reference_run(start, PARAMS, {**OPTS, **opts}, x, activation)
    np.testing.assert_allclose(y, ref_y, rtol=0, atol=1e-9)
    end = model.get_state()
    for key, ref in (("w", w), ("v", v), ("u", u)):
        np.testing.assert_allclose(end[key], ref, rtol=0, atol=1e-9, err_msg=key)
    np.testing.assert_allclose(model.last_gradient(), grad, rtol=1e-9, atol=1e-12)
    assert np.ptp(end["w"] - start["w"]) > 1e-3      # the weights did learn


@pytest.mark.parametrize("step", [0.0, 1e-9, 1e-5, 3e-3, 0.2])
@pytest.mark.parametrize("activation", ["tanh", "sine", "elevated_cosine"])
def test_gradient_estimate_equals_brute_force_quotient(activation, step):
    """One sample from a state whose weights moved by ``step``: both the Taylor form
    (small steps) and the exact difference (large) equal the quotient's definition."""
    model = make(activation)
    model.process(mic(2000))          # a history and an activity to differentiate in
    st = model.get_state()
    rng = np.random.default_rng(7)
    st["w_prev"] = st["w"] + step * rng.uniform(-1.0, 1.0, st["w"].size)
    model.set_state({"w_prev": st["w_prev"]})
    x = mic(2001)[-1:]
    model.process(x)
    # The reference's first (and only) sample uses the same state.
    *_, grad = reference_run(st, PARAMS, OPTS, x, activation)
    np.testing.assert_allclose(model.last_gradient(), grad, rtol=1e-9, atol=1e-13)


def test_a_tap_of_delay_d_hears_exactly_d_samples_back():
    model = Neuron(n_taps=2, max_delay=50, seed=0, smoothing=0.0)
    for name, value in {"lambda_": 0.0, "s": 0.0, "mu": 0.0, "nu": 0.0,
                        "input_gain": 1.0}.items():
        model.set_param(name, value)
    model.set_state({"w": np.array([0.0, 0.5]), "delays": np.array([0, 37])})  # jump
    x = np.zeros(100)
    x[10] = 1.0
    y = model.process(x)
    assert np.flatnonzero(y).tolist() == [47]
    assert y[47] == pytest.approx(math.tanh(0.5), abs=1e-15)


def test_delay_change_crossfades_then_lands_exactly():
    model = Neuron(n_taps=1, max_delay=400, seed=0, smoothing=0.0, delay_fade=0.001)
    for name, value in {"lambda_": 0.0, "s": 0.0, "mu": 0.0, "nu": 0.0,
                        "delays": [10.0]}.items():
        model.set_param(name, value)
    model.set_state({"w": np.array([0.2])})
    model.process(mic(500))
    model.set_param("delays", [200.0])
    model.process(mic(2000, seed=1)[:20])
    st = model.get_state()
    assert st["delay_cur"][0] == 10 and 0.0 < st["delay_fade"][0] < 1.0   # fading (48)...
    model.process(np.zeros(1000))
    st = model.get_state()
    assert st["delay_cur"][0] == 200 and st["delay_next"][0] == 200   # ... landed


def test_block_size_invariance():
    """Any split of the input into blocks, with a delay change and an activation
    crossfade running across block edges, gives bit-identical samples and state."""
    x = mic(6000)

    def run(sizes):
        model = make()
        out, pos = [], 0
        for i, n in enumerate(sizes):
            if i == 1:
                model.set_param("delays", [3.0, 40.0, 7.0, 250.0])
                model.set_param("activation", "sine")
            out.append(model.process(x[pos:pos + n]).copy())
            pos += n
        return np.concatenate(out), model.get_state()

    y_ref, st_ref = run([1000, 5000])
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.choice(np.arange(1001, 6000), size=9, replace=False))
    sizes = [1000, *np.diff(np.r_[1000, cuts, 6000]).tolist()]
    y, st = run(sizes)
    np.testing.assert_array_equal(y, y_ref)
    for key, value in st_ref.items():
        np.testing.assert_array_equal(st[key], value, err_msg=key)


def test_longer_than_max_block_and_out_buffer():
    x = mic(5000)
    whole = make().process(x)
    small = Neuron(n_taps=4, max_delay=300, seed=2, smoothing=0.0, max_block=64, **OPTS)
    for name, value in PARAMS.items():
        small.set_param(name, value)
    out = np.empty(5000)
    assert small.process(x, out=out) is out
    np.testing.assert_array_equal(out, whole)


def test_determinism_by_seed():
    x = mic(3000)
    a, b, c = make(seed=4).process(x), make(seed=4).process(x), make(seed=5).process(x)
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 1e-3


def test_state_round_trip_through_a_snapshot_file_continues_identically(tmp_path):
    """get_state -> a snapshot file on disk -> set_state on a fresh model: the next
    second is bit-identical (the state has no 0-d arrays to lose a dimension)."""
    x = mic(8000)
    model = make()
    model.set_param("delays", [5.0, 90.0, 17.0, 280.0])
    model.set_param("activation", "sine")
    model.process(x[:3000])             # a delay and an activation fade under way
    path = tmp_path / "n.npz"
    write_snapshot_sync(path, Snapshot(state=model.get_state(), params={}, model="neuron",
                                       agent="n1"))
    fresh = make(seed=9)
    fresh.set_param("activation", "sine")
    fresh.set_param("delays", [5.0, 90.0, 17.0, 280.0])
    fresh.set_state(read_snapshot_sync(path).state)
    np.testing.assert_array_equal(fresh.process(x[3000:]), model.process(x[3000:]))


@pytest.mark.parametrize(("bad", "match"), [
    ({"w": np.zeros(3)}, "shape"),
    ({"w": np.full(4, np.nan)}, "finite"),
    ({"w": np.full(4, 2e6)}, "smaller"),
    ({"delays": np.full(4, 301.0)}, r"\[0, 300\]"),
    ({"delay_fade": np.full(4, 1.0)}, r"\[0, 1\)"),
    ({"glide": np.array([1.0, 1.0, 0.0, -1.0])}, "heard"),
    ({"write_pos": np.array([301])}, "write_pos"),
    ({"nonsense": np.zeros(1)}, "unknown state keys"),
])
def test_set_state_rejects_bad_values_and_changes_nothing(bad, match):
    model = make()
    model.process(mic(500))
    before = model.get_state()
    with pytest.raises(ValueError, match=match):
        model.set_state(bad)
    for key, value in model.get_state().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


@pytest.mark.parametrize(("name", "value", "match"), [
    ("lambda_", -1.0, r"\[0, 1000\]"),
    ("delays", [1.0, 2.0], "4 values"),
    ("delays", [1.5, 2.0, 3.0, 4.0], "whole"),
    ("delays", [0.0, 0.0, 0.0, 301.0], r"\[0, 300\]"),
    ("activation", "relu", "one of"),
    ("input_gain", math.inf, "finite"),
])
def test_set_param_errors(name, value, match):
    with pytest.raises(ValueError, match=match):
        make().set_param(name, value)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_taps": 0}, r"\[1, 8\]"), ({"n_taps": 9}, r"\[1, 8\]"),
    ({"activity": "crowd"}, "room, own"), ({"cycle_center": "x"}, "origin, u"),
    ({"activity_time": -1.0}, "activity_time"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Neuron(**kwargs)


def test_max_delay_defaults_to_100_ms():
    assert Neuron(sample_rate=44100).max_delay == 4410
    assert create_model("neuron").max_delay == 4800


def test_nonfinite_input_is_counted_and_never_output():
    model = make()
    x = mic(1000)
    x[[3, 500, 501]] = [np.nan, np.inf, -np.inf]
    y = model.process(x)
    assert np.all(np.isfinite(y))
    assert model.stats()["nonfinite_inputs"] == 3


def test_blowup_is_recovered_counted_and_never_output():
    """A weight state beyond 1e6 (reachable only from a state set by hand: the limit cycle
    damps implicitly and the rotation is held below 1 rad per sample)."""
    model = make()
    init = model.get_state()["w_init"]
    model.set_param("s", 0.0)          # no limit cycle to damp the set state back
    model.set_state({"w": np.full(4, 9.9e5), "v": np.full(4, 9.9e5)})
    y = model.process(mic(200))
    assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.0)
    assert model.stats()["blowups"] >= 1
    assert np.all(np.abs(model.get_state()["w"]) < W_LIMIT)
    assert np.all(np.abs(model.get_state()["w"] - init) < 10.0)   # restored, then learning


@pytest.mark.parametrize("activation", ["tanh", "sine", "elevated_cosine"])
def test_extreme_parameters_stay_finite_and_bounded(activation):
    rng = np.random.default_rng(11)
    model = Neuron(n_taps=8, seed=1, activation=activation)
    specs = model.param_specs()
    for _ in range(40):
        for name in ("lambda_", "mu", "nu", "s", "r", "a", "input_gain", "shape", "time_scale"):
            spec = specs[name]
            model.set_param(name, float(rng.choice([spec.minimum, spec.maximum,
                                                    rng.uniform(spec.minimum, spec.maximum)])))
        y = model.process(1e3 * rng.standard_normal(256))
        assert np.all(np.isfinite(y)) and np.all(np.abs(y) <= 1.0)


def test_silence_stays_silent_and_a_sound_is_answered():
    """Silence is a fixed point of a tanh neuron (no stored past of its own): it sounds
    only when it hears something, and says what it heard."""
    model = create_model("neuron", seed=1)
    assert np.all(model.process(np.zeros(4800)) == 0.0)
    y = model.process(mic(9600))
    assert np.std(y[4800:]) > 1e-3
    assert model.stats()["heard"] > 0.0
