"""The Unlearn model: its maths against an independent reference, and its contract.

``reference_step`` below is a plain-Python transcription of the equations in
the module docstring of ``agents.models.unlearn`` (public neuron-major order,
``math.tanh``, the brute-force gradient quotient). The kernel must agree with
it; everything else here checks the processor contract (blocks, state,
determinism, errors, finiteness).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from support.alloc import traced_allocation
from support.lazy_maths import act, act_diff, act_prime, g_diff

from anamnesis.agents.models import create_model
from anamnesis.agents.models._unlearn_kernels import TAYLOR_STEP, W_LIMIT, fast_tanh
from anamnesis.agents.models.base import Model
from anamnesis.agents.models.unlearn import Unlearn

SR = 48000


# --- the reference: the documented equations, written out plainly ------------------

def reference_inputs(st, n, k):
    hist, wp = st["history"], int(st["write_pos"])
    ring = hist.shape[1]
    return np.array([hist[st["sources"][c], (wp - 1 - st["delays"][c]) % ring]
                     for c in range(n * k)])


def reference_gradient(st, p, opts, n, k, name):
    """The quotient (E(w | w_c(t-1)) - E(w)) / (w_c(t-1) - w_c(t)) of every weight, by brute force.

    E_i = -mu f(shape S_i) + nu g(A) is re-evaluated with the one weight moved
    back; the numerator is formed with difference identities so that it keeps
    full precision at tiny steps (a plain float64 difference would lose
    ~|log10(step)| digits and not be a useful reference).
    """
    shape, trough = p["shape"], opts["elevated_cosine_form"] == "trough"
    energy = opts["activity"] == "energy"
    xin = reference_inputs(st, n, k)
    w, w_prev = st["w"], st["w_prev"]
    s_vals = [sum(w[i * k + j] * xin[i * k + j] for j in range(k)) for i in range(n)]
    outs = [act(name, shape * s, trough) for s in s_vals]
    a_net = sum(o * o for o in outs) if energy else sum(outs)
    grad = np.empty(n * k)
    for c in range(n * k):
        i = c // k
        dw = w_prev[c] - w[c]
        if dw == 0.0:  # the analytic limit
            fp = shape * act_prime(name, shape * s_vals[i], trough)
            gp = 1.0 if opts["energy_g"] == "linear" else 1.0 - math.tanh(a_net) ** 2
            h = 2.0 * outs[i] if energy else 1.0
            grad[c] = xin[c] * fp * (p["nu"] * gp * h - p["mu"])
            continue
        d_out = act_diff(name, shape * s_vals[i], shape * dw * xin[c], trough)
        out_moved = outs[i] + d_out
        d_act = d_out * (out_moved + outs[i]) if energy else d_out
        numerator = (-p["mu"] * d_out
                     + p["nu"] * g_diff(opts["energy_g"], a_net + d_act, a_net, d_act))
        grad[c] = numerator / dw
    return grad, xin, outs


def reference_step(st, p, opts, x, n, k, name, out_neuron):
    """One sample of the documented equations; returns (new state dict, output)."""
    grad, _, outs = reference_gradient(st, p, opts, n, k, name)
    dt = p["time_scale"] / SR
    sign = 1.0 if opts["objective"] == "maximise" else -1.0
    new = {key: np.array(val, copy=True) for key, val in st.items()}
    for c in range(n * k):
        w, v, u = st["w"][c], st["v"][c], st["u"][c]
        m = u if opts["cycle_center"] == "u" else 0.0
        e = w - m
        cyc = p["s"] * (p["r"] - math.sqrt((w - u) ** 2 + v ** 2))
        v1 = (v + dt * (-p["lambda_"] * e + sign * grad[c] + max(cyc - p["a"], 0.0) * v)) \
            / (1.0 + dt * max(p["a"] - cyc, 0.0))
        w1 = m + (e + dt * (p["lambda_"] * v1 + max(cyc, 0.0) * e)) / (1.0 + dt * max(-cyc, 0.0))
        new["v"][c], new["w"][c], new["w_prev"][c] = v1, w1, w
        new["u"][c] = u + dt * (w1 - u)
    wp = int(st["write_pos"])
    new["history"][:n, wp] = outs
    new["history"][n, wp] = p["input_gain"] * x
    new["write_pos"] = np.array((wp + 1) % st["history"].shape[1])
    return new, outs[out_neuron], grad


DEFAULT_OPTS = {"activity": "energy", "energy_g": "tanh", "objective": "maximise",
                "cycle_center": "origin", "elevated_cosine_form": "peak"}


def small_model(n=3, k=2, max_delay=7, activation="tanh", seed=1, **opts):
    return Unlearn(n_neurons=n, n_inputs=k, max_delay=max_delay, seed=seed,
                   activation=activation, **opts)


def random_state(model: Unlearn, rng: np.random.Generator, step: float) -> dict:
    """A full, random but valid state; ``w_prev`` differs from ``w`` by ``step`` (relative)."""
    n, k, ring = model.n_neurons, model.n_inputs, model.ring
    st = model.get_state()
    w = rng.uniform(-1.5, 1.5, n * k)
    st.update(
        w=w, w_prev=w * (1.0 + step * rng.uniform(0.5, 1.0, n * k)),
        v=rng.uniform(-0.3, 0.3, n * k), u=w + rng.uniform(-0.05, 0.05, n * k),
        delays=rng.integers(0, model.max_delay + 1, n * k),
        history=rng.uniform(-0.9, 0.9, (n + 1, ring)),
        write_pos=np.array(rng.integers(0, ring)))
    st["delay_cur"] = st["delays"].copy()
    st["delay_next"] = st["delays"].copy()
    st["delay_fade"] = np.zeros(n * k)
    return st


PARAMS = {"lambda_": 60.0, "mu": 0.7, "nu": 1.3, "s": 5.0, "r": 0.05, "a": 0.4,
          "input_gain": 0.8, "shape": 1.3, "time_scale": 40.0}


def configure(model: Unlearn, params: dict) -> None:
    for name, value in params.items():
        model.set_param(name, value)
    model.set_state({"glide": np.array([params["input_gain"], params["shape"], 0.0])})


# --- the maths ---------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["tanh", "sine", "elevated_cosine"])
@pytest.mark.parametrize("opts", [
    {},
    {"cycle_center": "u"},
    {"activity": "sum", "energy_g": "linear", "objective": "minimise"},
    {"elevated_cosine_form": "trough", "cycle_center": "u", "energy_g": "linear"},
])
@pytest.mark.parametrize("step", [0.0, 3e-6, 0.2])
def test_one_step_of_three_neurons_matches_the_documented_equations(activation, opts, step):
    """w, v, u, w_prev, history and the output after one sample, against the reference."""
    model = small_model(activation=activation, **opts)
    configure(model, PARAMS)
    rng = np.random.default_rng(7)
    st = random_state(model, rng, step)
    model.set_state(st)
    st = model.get_state()
    x = 0.37
    y = model.process(np.array([x]))
    expected, y_ref, grad_ref = reference_step(
        st, PARAMS, {**DEFAULT_OPTS, **opts}, x, 3, 2, activation, model.output_neuron)
    got = model.get_state()
    np.testing.assert_allclose(model.last_gradient(), grad_ref, rtol=1e-9, atol=1e-13)
    # The state inherits the gradient's tolerance through dt * grad (dt ~ 8e-4).
    for key in ("w", "v", "u", "w_prev"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(got["history"], expected["history"], rtol=1e-13, atol=1e-15)
    assert int(got["write_pos"]) == int(expected["write_pos"])
    assert y[0] == pytest.approx(y_ref, rel=1e-13, abs=1e-15)


def test_hand_computed_single_neuron_step():
    """Two neurons, one input each, every number written out by hand (origin cycle)."""
    model = Unlearn(n_neurons=2, n_inputs=1, max_delay=0, seed=0, init_activity=0.0)
    dt = 0.01
    p = {"lambda_": 2.0, "mu": 0.5, "nu": 0.25, "s": 3.0, "r": 0.1, "a": 0.2,
         "input_gain": 1.0, "shape": 1.0, "time_scale": dt * SR}
    configure(model, p)
    # neuron 0 reads the input (source 2), neuron 1 reads neuron 0; delay 0 = 1 sample back.
    model.set_state({"sources": np.array([2, 0]), "delays": np.array([0, 0]),
                     "w": np.array([0.5, -1.0]), "w_prev": np.array([0.5, -1.0]),
                     "v": np.array([0.1, 0.0]), "u": np.array([0.4, -1.0]),
                     "history": np.array([[0.2], [0.0], [0.6]]), "write_pos": np.array(0)})
    y = model.process(np.array([0.0]))
    # S0 = 0.5*0.6 = 0.3, x0 = tanh(0.3); S1 = -1*0.2 = -0.2, x1 = tanh(-0.2) = the output
    x0, x1 = math.tanh(0.3), math.tanh(-0.2)
    assert y[0] == pytest.approx(x1, rel=1e-15)
    a_net = x0 ** 2 + x1 ** 2
    gp = 1 - math.tanh(a_net) ** 2
    g0 = 0.6 * (1 - x0 ** 2) * (0.25 * gp * 2 * x0 - 0.5)      # w did not move: the limit
    g1 = 0.2 * (1 - x1 ** 2) * (0.25 * gp * 2 * x1 - 0.5)
    np.testing.assert_allclose(model.last_gradient(), [g0, g1], rtol=1e-13)
    st = model.get_state()
    # weight 0: rho = sqrt(0.1^2 + 0.1^2), c = 3 (0.1 - rho) < 0: both terms damp (implicit)
    c = 3.0 * (0.1 - math.sqrt(0.1 ** 2 + 0.1 ** 2))
    v_new = (0.1 + dt * (-2.0 * 0.5 + g0)) / (1 + dt * (0.2 - c))
    w_new = (0.5 + dt * 2.0 * v_new) / (1 + dt * (-c))
    assert st["v"][0] == pytest.approx(v_new, rel=1e-13)
    assert st["w"][0] == pytest.approx(w_new, rel=1e-13)
    assert st["u"][0] == pytest.approx(0.4 + dt * (w_new - 0.4), rel=1e-13)
    assert st["w_prev"][0] == 0.5
    # weight 1: rho = 0, c = 0.3 > a: v grows explicitly, w too (c > 0)
    v1 = 0.0 + dt * (-2.0 * -1.0 + g1 + (0.3 - 0.2) * 0.0)
    w1 = -1.0 + dt * (2.0 * v1 + 0.3 * -1.0)
    assert st["v"][1] == pytest.approx(v1, rel=1e-13)
    assert st["w"][1] == pytest.approx(w1, rel=1e-13)
    np.testing.assert_allclose(st["history"][:, 0], [x0, x1, 0.0], rtol=1e-15)


@pytest.mark.parametrize("activation", ["tanh", "sine", "elevated_cosine"])
@pytest.mark.parametrize("activity,energy_g", [("energy", "tanh"), ("sum", "tanh"),
                                               ("energy", "linear")])
@pytest.mark.parametrize("step", [0.0, 1e-9, 1e-5, 4e-4, 2e-3, 0.05, 0.8])
def test_gradient_estimate_equals_brute_force_quotient(activation, activity, energy_g, step):
    """The O(1) divided-difference gradient against recomputing E_i from scratch."""
    opts = {**DEFAULT_OPTS, "activity": activity, "energy_g": energy_g}
    model = small_model(n=6, k=3, max_delay=30, activation=activation,
                        activity=activity, energy_g=energy_g)
    configure(model, PARAMS)
    st = random_state(model, np.random.default_rng(11), step)
    model.set_state(st)
    st = model.get_state()
    model.process(np.array([0.21]))
    grad_ref, _, _ = reference_gradient(st, PARAMS, opts, 6, 3, activation)
    assert step == 0.0 or np.all(st["w_prev"] != st["w"])
    np.testing.assert_allclose(model.last_gradient(), grad_ref, rtol=1e-9, atol=1e-13)


def test_gradient_uses_both_forms():
    """Large weight steps take the exact difference, small ones the Taylor form."""
    model = small_model(n=6, k=3, max_delay=30)
    configure(model, PARAMS)
    st = random_state(model, np.random.default_rng(3), 0.0)
    # one weight jumped by far more than the Taylor threshold, the rest did not move
    st["w_prev"][4] = st["w"][4] + 50 * TAYLOR_STEP
    model.set_state(st)
    st = model.get_state()
    model.process(np.array([0.0]))
    grad_ref, _, _ = reference_gradient(st, PARAMS, DEFAULT_OPTS, 6, 3, "tanh")
    np.testing.assert_allclose(model.last_gradient(), grad_ref, rtol=1e-10, atol=1e-13)


def test_fast_tanh_is_accurate():
    z = np.concatenate([np.linspace(-30.0, 30.0, 60001), np.logspace(-300, 1.5, 2000),
                        -np.logspace(-300, 1.5, 2000), [0.125, -0.125, 19.9, 25.0]])
    got = np.array([fast_tanh(v) for v in z])
    np.testing.assert_allclose(got, np.tanh(z), rtol=2e-15, atol=0.0)
    assert fast_tanh(1e300) == 1.0 and fast_tanh(-1e300) == -1.0 and fast_tanh(0.0) == 0.0


# --- delays ------------------------------------------------------------------------

def chain(d0: int, d1: int, **kw) -> Unlearn:
    """Input -> neuron 0 (delay d0) -> neuron 1 (delay d1) = output; learning frozen."""
    model = Unlearn(n_neurons=2, n_inputs=1, max_delay=100, seed=0, init_activity=0.0, **kw)
    configure(model, {**PARAMS, "lambda_": 0.0, "s": 0.0, "a": 0.0, "input_gain": 1.0,
                      "shape": 1.0})
    model.set_state({"sources": np.array([2, 0]), "delays": np.array([d0, d1]),
                     "w": np.array([1.2, 0.9])})
    return model


def impulse(n: int = 300) -> np.ndarray:
    x = np.zeros(n)
    x[0] = 0.5
    return x


@pytest.mark.parametrize("d0,d1,extra", [(0, 0, 7), (3, 10, 1), (40, 0, 59)])
def test_delays_move_history_by_exactly_d_samples(d0, d1, extra):
    y_a = chain(d0, d1).process(impulse())
    y_b = chain(d0, d1 + extra).process(impulse())
    first = 2 + d0 + d1  # one step per neuron plus each delay
    assert np.all(y_a[:first] == 0.0) and y_a[first] != 0.0
    assert y_a[first] == pytest.approx(math.tanh(0.9 * math.tanh(1.2 * 0.5)), rel=1e-14)
    np.testing.assert_array_equal(y_b[extra:], y_a[:-extra])
    assert np.all(y_b[:first + extra] == 0.0)


def test_set_param_delays_crossfades_then_lands_exactly():
    model = chain(5, 5, delay_fade=0.001)  # 48 samples
    model.process(np.zeros(10))
    model.set_param("delays", [5, 25])
    assert model.stats()["delays_moving"] == 1.0
    model.process(np.zeros(200))  # the fade runs and completes
    assert model.stats()["delays_moving"] == 0.0
    y = model.process(impulse())
    ref = chain(5, 25).process(impulse())
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(model.params()["delays"], [5.0, 25.0])


def test_delay_change_while_playing_does_not_click():
    t = np.arange(9600) / SR
    x = 0.8 * np.sin(2 * np.pi * 200.0 * t)

    def run(jump: bool) -> np.ndarray:
        model = chain(0, 0, delay_fade=0.05)
        y1 = model.process(x[:4800])
        if jump:
            model.set_state({"delays": np.array([57, 0])})
        else:
            model.set_param("delays", [57, 0])
        return np.concatenate([y1, model.process(x[4800:])])

    steady = np.max(np.abs(np.diff(run(False)[1000:4800])))
    faded = np.max(np.abs(np.diff(run(False)[4790:])))
    jumped = np.max(np.abs(np.diff(run(True)[4790:4810])))
    assert faded < 1.05 * steady          # no larger step than the sine's own
    assert jumped > 3.0 * steady          # while a hard switch would click


# --- the processor contract --------------------------------------------------------

def busy_model(seed: int = 5, max_block: int = 4096) -> Unlearn:
    model = Unlearn(n_neurons=8, n_inputs=3, max_delay=300, seed=seed, init_weight=2.0,
                    max_block=max_block)
    configure(model, {**PARAMS, "time_scale": 2.0})
    return model


def signal(frames: int = 3000) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    t = np.arange(frames) / SR
    x = 0.5 * np.sin(2 * np.pi * 330.0 * t)
    mod = {"lambda_": 40.0 + 20.0 * np.sin(2 * np.pi * 3.0 * t),
           "s": np.linspace(8.0, 1.0, frames)}
    return x, mod


def run_blocks(model: Unlearn, sizes: list[int]) -> np.ndarray:
    x, mod = signal()
    out, pos = [], 0
    for size in sizes:
        part = {k: v[pos:pos + size] for k, v in mod.items()}
        out.append(model.process(x[pos:pos + size], part))
        pos += size
    assert pos == x.size
    return np.concatenate(out)


def split(total: int, rng: np.random.Generator) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.choice([0, 1, 2, 3, 31, 64, 257, 700]), total - sum(sizes))))
    return sizes


@pytest.mark.parametrize("sizes", [[3000], [1] * 3000, [17] * 176 + [8], [256] * 11 + [184],
                                   "random"])
def test_block_size_invariance(sizes):
    if sizes == "random":
        sizes = split(3000, np.random.default_rng(2))
    reference = busy_model()
    reference.set_param("delays", np.arange(24) * 7)
    reference.set_param("activation", "sine")  # crossfades run across block edges
    y_ref = run_blocks(reference, [3000])
    model = busy_model()
    model.set_param("delays", np.arange(24) * 7)
    model.set_param("activation", "sine")
    y = run_blocks(model, sizes)
    np.testing.assert_array_equal(y, y_ref)
    for key, value in reference.get_state().items():
        np.testing.assert_array_equal(model.get_state()[key], value, err_msg=key)
    assert np.std(y_ref) > 1e-3


def test_longer_than_max_block_is_processed_in_pieces():
    y_ref = run_blocks(busy_model(), [3000])
    y = run_blocks(busy_model(max_block=64), [3000])
    np.testing.assert_array_equal(y, y_ref)


def test_zero_frames_and_out_buffer():
    model = busy_model()
    assert model.process(np.zeros(0)).shape == (0,)
    out = np.full(100, np.nan)
    result = model.process(np.zeros(100), out=out)
    assert result is out and np.all(np.isfinite(out))


def test_process_with_out_does_not_allocate_the_block():
    model = busy_model()
    x = np.zeros(8192)
    out = np.empty(8192)
    model.process(x, out=out)  # compile and warm up
    peak, _ = traced_allocation(lambda: model.process(x, out=out), repeats=1)
    assert peak < 8 * 1024  # an (8192,) float64 block would be 64 KiB


def test_determinism_by_seed():
    a = run_blocks(busy_model(seed=9), [3000])
    b = run_blocks(busy_model(seed=9), [1000, 2000])
    c = run_blocks(busy_model(seed=10), [3000])
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(a - c)) > 0.1
    model = busy_model(seed=10)
    run_blocks(model, [3000])
    model.reset(9)
    configure(model, {**PARAMS, "time_scale": 2.0})
    np.testing.assert_array_equal(run_blocks(model, [3000]), a)


def test_seed_draws_a_valid_topology():
    model = Unlearn(n_neurons=16, n_inputs=3, max_delay=2400, seed=4)
    st = model.get_state()
    src = st["sources"].reshape(16, 3)
    assert src[0, 0] == 16  # the input slot of the first neuron
    for i in range(16):
        assert i not in src[i]
        assert len(set(src[i])) == 3
    assert np.all((st["delays"] >= 0) & (st["delays"] <= 2400))
    assert len(np.unique(st["delays"])) > 40


def test_state_round_trip_continues_identically():
    a = busy_model(seed=1)
    x, mod = signal()
    a.process(x[:1200], {k: v[:1200] for k, v in mod.items()})
    a.set_param("delays", np.arange(24) * 11)  # fades in flight at the snapshot
    a.set_param("activation", "elevated_cosine")
    a.process(x[1200:1500], {k: v[1200:1500] for k, v in mod.items()})
    snapshot = a.get_state()
    b = Unlearn(n_neurons=8, n_inputs=3, max_delay=300, seed=77)
    for name, value in a.params().items():
        b.set_param(name, value)
    b.set_state(snapshot)
    rest = {k: v[1500:] for k, v in mod.items()}
    np.testing.assert_array_equal(b.process(x[1500:], rest), a.process(x[1500:], rest))
    snapshot["w"][:] = 123.0  # get_state returns copies
    assert not np.any(a.get_state()["w"] == 123.0)


def test_set_state_subset_changes_only_that():
    model = busy_model()
    before = model.get_state()
    w = np.linspace(-1.0, 1.0, 24)
    model.set_state({"w": w})
    after = model.get_state()
    np.testing.assert_array_equal(after["w"], w)
    np.testing.assert_array_equal(after["w_prev"], w)  # at rest
    for key in ("v", "u", "sources", "delays", "history", "write_pos"):
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)


@pytest.mark.parametrize("bad,match", [
    ({"bogus": 1}, "unknown state keys"),
    ({"w": np.zeros(5)}, r"w must have shape \(24,\)"),
    ({"w": np.full(24, np.nan)}, "w must be finite"),
    ({"v": np.full(24, 2 * W_LIMIT)}, "v must be smaller than"),
    ({"sources": np.full(24, 9)}, r"sources must be in \[0, 8\]"),
    ({"sources": np.repeat(np.arange(8), 3)}, "must not connect a neuron to itself"),
    ({"delays": np.full(24, 301)}, r"delays must be in \[0, 300\]"),
    ({"delays": np.full(24, 2.5)}, "delays must be whole numbers"),
    ({"delay_fade": np.full(24, 1.0)}, r"delay_fade must be in \[0, 1\)"),
    ({"history": np.zeros((9, 300))}, r"history must have shape \(9, 301\)"),
    ({"write_pos": 301}, r"write_pos must be in \[0, 300\]"),
    ({"glide": np.array([1.0, 0.0, 0.0])}, r"shape must be in \[0.01, 100\]"),
    ({"activation_from": 3}, r"activation_from must be in \[0, 2\]"),
])
def test_set_state_rejects_bad_values_and_changes_nothing(bad, match):
    model = busy_model()
    before = model.get_state()
    with pytest.raises(ValueError, match=match):
        model.set_state({"w": np.ones(24), **bad})
    for key, value in before.items():
        np.testing.assert_array_equal(model.get_state()[key], value, err_msg=key)


@pytest.mark.parametrize("name,value,match", [
    ("lambda", 1.0, "unknown parameter 'lambda'"),
    ("lambda_", -1.0, r"lambda_ must be in \[0, 1000\]"),
    ("s", float("nan"), "s must be finite"),
    ("activation", "relu", "activation must be one of tanh, sine, elevated_cosine"),
    ("shape", 0.0, r"shape must be in \[0.01, 100\]"),
    ("delays", np.zeros(5), r"delays must be a scalar or 24 values"),
    ("delays", 1000.0, r"delays must be in \[0, 300\] samples"),
    ("delays", 1.5, "delays must be whole numbers"),
    ("mu", "x", "mu must be a single number"),
])
def test_set_param_errors(name, value, match):
    with pytest.raises(ValueError, match=match):
        busy_model().set_param(name, value)


@pytest.mark.parametrize("kwargs,match", [
    ({"n_inputs": 8, "n_neurons": 8}, r"n_inputs must be <= 7"),
    ({"n_neurons": 1}, r"n_neurons must be in \[2, 256\]"),
    ({"activation": "relu"}, "activation must be one of"),
    ({"cycle_center": "middle"}, "cycle_center must be one of origin, u"),
    ({"activity": "power"}, "activity must be one of energy, sum"),
    ({"objective": "max"}, "objective must be one of maximise, minimise"),
    ({"energy_g": "exp"}, "energy_g must be one of tanh, linear"),
    ({"elevated_cosine_form": "raised"}, "elevated_cosine_form must be one of peak, trough"),
    ({"init_weight": -1.0}, r"init_weight must be in \[0, 1000\]"),
    ({"max_delay": 2.5}, "max_delay must be a whole number"),
    ({"input_neuron": 16}, r"input_neuron must be in \[0, 15\]"),
    ({"self_loops": "yes"}, "self_loops must be True or False"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Unlearn(**kwargs)


def test_process_errors():
    model = busy_model()
    with pytest.raises(ValueError, match=r"input must have shape \(frames,\)"):
        model.process(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"out must be a float64 array of shape \(4,\)"):
        model.process(np.zeros(4), out=np.zeros(5))
    with pytest.raises(ValueError, match="cannot modulate 'mu' per sample"):
        model.process(np.zeros(4), {"mu": np.zeros(4)})
    with pytest.raises(ValueError, match=r"lambda_ modulation must have shape \(4,\)"):
        model.process(np.zeros(4), {"lambda_": np.zeros(3)})
    with pytest.raises(ValueError, match=r"s must be in \[0, 1000\]"):
        model.process(np.zeros(4), {"s": np.full(4, -1.0)})


def test_self_loops_when_asked():
    model = Unlearn(n_neurons=4, n_inputs=4, self_loops=True, seed=2)
    src = model.get_state()["sources"].reshape(4, 4)
    assert any(i in src[i] for i in range(1, 4))


# --- finiteness, counters, telemetry ------------------------------------------------

def test_nonfinite_input_is_counted_and_never_output():
    model = busy_model()
    x = np.array([np.nan, np.inf, -np.inf, 1e308, 0.5] * 200)
    y = model.process(x)
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert model.stats()["nonfinite_inputs"] == 600.0


def test_blowup_is_recovered_counted_and_never_output():
    """A gradient far beyond anything the weights can hold: counted, reset, never heard."""
    # With a linear g over the plain sum and a constant input x = 200 at shape
    # 0.01 (so shape * w * x < 1: f' ~ shape, no saturation), the input slot's
    # gradient is a steady x f' nu ~ 1.4e4; with lambda = s = a = 0 nothing holds
    # v, which grows by dt * 1.4e4 ~ 290 per sample past W_LIMIT.
    model = Unlearn(n_neurons=8, n_inputs=3, max_delay=100, seed=3, init_weight=1.0,
                    activity="sum", energy_g="linear")
    for name, value in {"lambda_": 0.0, "s": 0.0, "a": 0.0, "mu": 0.0, "nu": 1e4,
                        "shape": 0.01, "input_gain": 1.0, "time_scale": 1000.0}.items():
        model.set_param(name, value)
    model.set_state({"glide": np.array([1.0, 0.01, 0.0])})
    initial = model.get_state()["w_init"]
    y = model.process(np.full(8000, 200.0))
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert model.stats()["blowups"] >= 1.0
    st = model.get_state()
    assert all(np.all(np.isfinite(st[k])) and np.all(np.abs(st[k]) < W_LIMIT)
               for k in ("w", "v", "u"))
    np.testing.assert_array_equal(st["w_init"], initial)


def test_fast_rotation_is_held_stable():
    """lambda dt beyond symplectic Euler's limit of 2 is held at LAMBDA_DT_MAX: no blow-up."""
    model = busy_model()
    configure(model, {**PARAMS, "lambda_": 1000.0, "time_scale": 1000.0, "s": 0.0,
                      "a": 0.0, "mu": 0.0, "nu": 0.0})
    w0 = model.get_state()["w"]
    model.process(np.zeros(20000))
    st = model.get_state()
    assert model.stats()["blowups"] == 0.0
    # a pure rotation of (w, v) by symplectic Euler keeps w bounded near its start
    assert np.max(np.abs(st["w"])) < 2.5 * np.max(np.abs(w0))


@pytest.mark.parametrize("activation", ["tanh", "sine", "elevated_cosine"])
def test_extreme_parameters_stay_finite_and_bounded(activation):
    model = Unlearn(n_neurons=8, n_inputs=3, max_delay=100, seed=3, activation=activation,
                    init_weight=50.0)
    for name, value in {"lambda_": 1000.0, "mu": 1e4, "nu": 1e4, "s": 1000.0, "r": 10.0,
                        "a": 0.0, "time_scale": 1000.0, "shape": 100.0,
                        "input_gain": 16.0}.items():
        model.set_param(name, value)
    x = 1000.0 * np.sign(np.sin(np.arange(5000) * 0.3))
    y = model.process(x)
    lo = 0.0 if activation == "elevated_cosine" else -1.0
    assert np.all(np.isfinite(y)) and y.min() >= lo and y.max() <= 1.0
    assert all(math.isfinite(v) for v in model.stats().values())


def test_stats_report_energy_and_learning_drive():
    model = busy_model()
    model.process(signal()[0])
    stats = model.stats()
    for key in ("blowups", "nonfinite_inputs", "energy", "error_rms", "activity",
                "weight_rms", "delays_moving"):
        assert key in stats and math.isfinite(stats[key])
    assert stats["error_rms"] > 0.0 and stats["activity"] > 0.0
    model.process(np.zeros(1))  # over one sample, error_rms is the RMS of that gradient
    assert model.stats()["error_rms"] == pytest.approx(
        np.sqrt(np.mean(model.last_gradient() ** 2)), rel=1e-12)


def test_silence_decays_to_exact_zero_without_denormals():
    """A dying network reaches exact zeros instead of an endless (slow) denormal tail."""
    model = Unlearn(n_neurons=8, n_inputs=3, max_delay=100, seed=1, init_weight=0.1)
    configure(model, {**PARAMS, "time_scale": 1.0})
    y = model.process(np.zeros(48000))
    assert np.any(y[:1000] != 0.0) and np.all(y[-20000:] == 0.0)
    tiny = np.finfo(np.float64).tiny  # the smallest normal number
    st = model.get_state()
    for values in (y, st["w"], st["v"], st["u"], st["history"].ravel()):
        assert not np.any((values != 0.0) & (np.abs(values) < tiny))


# --- glides ------------------------------------------------------------------------

def test_input_gain_glides_instead_of_jumping():
    model = chain(0, 0, smoothing=0.01)
    model.process(np.ones(100))
    model.set_param("input_gain", 0.0)
    model.process(np.ones(2400))
    st = model.get_state()
    ring_in = st["history"][2]  # the ring holds only max_delay + 1 = 101 samples
    wp = int(st["write_pos"])
    last = np.roll(ring_in, -wp)  # oldest first: the last 101 samples of gain * 1
    assert np.all(np.diff(last) <= 0.0)
    assert last[-1] == pytest.approx(math.exp(-2400 / 480), rel=1e-9)


def test_activation_switch_crossfades():
    t = np.arange(4800) / SR
    x = 1.5 * np.sin(2 * np.pi * 50.0 * t)

    def steps(crossfade: float) -> float:
        model = chain(0, 0, crossfade=crossfade)
        model.set_param("shape", 2.0)
        model.set_state({"glide": np.array([1.0, 2.0, 0.0])})
        y1 = model.process(x[:2640])  # switch at a peak of the input, z = -3.6
        model.set_param("activation", "sine")
        y2 = model.process(x[2640:])
        return float(np.max(np.abs(np.diff(np.concatenate([y1, y2])[2630:2700]))))

    assert steps(0.02) < 0.3 * steps(0.0)


# --- the registry ------------------------------------------------------------------

def test_model_protocol_and_registry():
    model = create_model("unlearn", n_neurons=8, n_inputs=3, seed=0)
    assert isinstance(model, Model) and isinstance(model, Unlearn)
    assert model.kind == "unlearn" and Unlearn.WEIGHT_KEYS == ("w",)
    specs = model.param_specs()
    assert {n for n, s in specs.items() if s.per_sample} == {"lambda_", "s"}
    for name, spec in specs.items():
        spec.describe()
        model.set_param(name, model.params()[name])
