"""Unlearn: the lazy-neuron network (seed 000 §3, seed 001 "Unlearn").

A recurrent network of ``N`` neurons, each with ``K`` delayed inputs, whose
weights do not learn a task: every weight follows a small third-order
dynamical system that climbs its neuron's *energy balance* and hovers on a
small limit cycle. The temporal dynamics of that adaptation are the sound.

Equations (per audio sample ``n``; ``dt`` is the ODE time step)
===============================================================

Topology. Connection ``c = i*K + k`` (neuron ``i``, input slot ``k``) reads
source ``j = sources[c]`` through ``d = delays[c]`` whole samples in
``[0, max_delay]``. Sources are drawn at random without self-loops (unless
``self_loops=True``) and without repeats within a neuron. Source index ``N``
is the external input: slot 0 of ``input_neuron`` reads it (seed 001 example
6: "one of the three inputs of the first neuron"). ``output_neuron`` (the last
neuron by default: "one other neuron") is the model's output.

Neurons (seed 000 eq. 1-2). All neurons update together from the stored past
(the one-sample step of a recurrent network), so a connection of delay ``d``
reads its source ``d + 1`` samples back::

    S_i(n) = sum_k w_ik(n) * x_j(n - 1 - d_ik)       x_N(n) = input_gain * input(n)
    x_i(n) = f(shape * S_i(n))

Energy balance (seed 001, the minus sign lost in extraction restored)::

    E_i = -mu * f(shape * S_i) + nu * g(A)        A(n) = sum_j x_j(n)^2

``A`` is seed 001's "total energy of the whole network" (``activity="energy"``;
``activity="sum"`` takes seed 000's literal ``A = sum_j x_j``). It includes the
neuron's own output ``x_i``, and that is how a neuron's weights reach the
``nu`` term at all: were ``g`` independent of ``w_i``, ``nu`` could not change
the dynamics, yet the examples span ``nu`` from 0.4 to 980. Through ``A`` the
``nu`` term is Hebbian (``dE/dw_ij`` contains ``2 nu g'(A) x_i x_j f'``): a
neuron strengthens inputs that move with its own output, while ``-mu f`` is
its own expenditure. ``g = tanh`` (``energy_g="tanh"``): a saturating reward,
so activity settles where ``2 nu g'(A) x_i`` balances ``mu`` — the lazy-neuron
balance; ``energy_g="linear"`` takes ``g(A) = A``.

Gradient (seed 000 eq. 4), from each weight's own change over one sample::

    dE/dw_ij ~= (E(w_i | w_ij(n-1)) - E(w_i)) / (w_ij(n-1) - w_ij(n))

Only ``S_i`` changes in ``E(w_i | w_ij(n-1))``, by ``D = (w_ij(n-1) - w_ij(n)) x_j``,
and with it ``x_i`` and ``A``. The quotient is therefore computed in O(1) per
weight as a product of divided differences, never dividing by the weight
change itself::

    q_f = (f(S+D) - f(S)) / D           dx = D q_f
    dA  = dx (2 x_i + dx)               q_g = (g(A+dA) - g(A)) / dA
    dE/dw_ij = x_j q_f (nu q_g (2 x_i + dx) - mu)          (activity="sum": 2 x_i + dx -> 1)

A divided difference whose step is below 1e-3 is evaluated as its third-order
Taylor polynomial (``f' + f'' D/2 + f''' D^2/6``): that is its analytic limit
when the weight did not move, and it is more accurate than the cancelling
difference for small steps. Larger steps use the exact difference. The
result equals the brute-force quotient of the definition to 1e-9 relative or
better (tests/agents/models/test_unlearn.py).

Sign. Seed 000 says the neuron *maximises* its energy balance (gradient
ascent, ``w' = +lambda dE/dw``); seed 001 calls ``E`` a function "to be
minimized", but prints the same equations (``+dE/dw`` in ``v'``). We follow
the equations: ascent (``objective="maximise"``); ``"minimise"`` flips the sign
of the gradient term.

Weight dynamics (seed 000 eq. 5 = seed 001), per connection, with
``c = s (r - sqrt((w - u)^2 + v^2))``::

    w' = lambda v + c w                   (cycle_center="origin", the default:
    v' = -lambda w + dE/dw + c v - a v     the equations as printed)
    u' = w - u

The printed equations centre the rotation and the limit cycle on ``w = 0``:
the ``-lambda w`` spring holds every weight at ``dE/dw / lambda`` and the cycle
draws it towards radius ``r``. The prose of seed 000 instead says the weights
"converge to the local minimum ... then remain ... slowly oscillating around
the converged point", with ``u`` a leaky integrator of ``w`` and ``r << w``. That
reading is ``cycle_center="u"``: ``w`` is replaced by ``w - u`` in the spring
and in the cycle term, so the rest points are ``dE/dw = 0`` and each weight
hovers at radius ``r`` around its own slow mean ``u``. The two readings differ
most when learning is switched off (``lambda = 0``): with ``"u"`` every weight
stays near its mean ``u`` — the network keeps what it learnt; with
``"origin"`` the cycle term keeps rescaling every weight about zero, and a
network that adapted to a sine falls silent and wakes in bursts. The presets
(``anamnesis.agents.presets.unlearn``) use the printed reading for examples 1, 3, 4, 5
and ``"u"`` for examples 2 and 6, which the printed reading cannot produce
(example 2 falls silent within two seconds at any time scale; example 6 rings
at 100 Hz for about a second after the switch-off, then stays silent or bursts
at other frequencies).

Integration. ``dt = time_scale / sample_rate`` ODE time units per sample.
``time_scale`` (ODE time units per second) is the time scale of ``lambda``,
which the seeds do not give; 1 runs the ODE in seconds (``lambda = 60`` turns a
weight at 60 rad/s). The default, 0.03, is the slow time at which example 1
sounds as described (the presets choose per example). One semi-implicit step
per sample: symplectic Euler for the conservative rotation (``v`` first from
``w(n)``, then ``w`` from the new ``v``); the remaining linear terms are
explicit where they excite and implicit where they damp, so damping is
unconditionally stable at any ``s``, ``a``::

    e = w - m           (m = 0, or u with cycle_center="u")
    v(n+1) = (v + dt (-lambda e + dE/dw + max(c-a, 0) v)) / (1 + dt max(a-c, 0))
    w(n+1) = m + (e + dt (lambda v(n+1) + max(c, 0) e)) / (1 + dt max(-c, 0))
    u(n+1) = u + dt (w(n+1) - u)

Symplectic Euler is stable for ``lambda dt < 2``; ``lambda dt`` is held at most
1 rad per sample (``LAMBDA_DT_MAX``), which only the extreme corner of the
ranges (lambda * time_scale > 48000 at 48 kHz) reaches.

Activations (``z = shape * S``; ``shape`` is the steepness):

* ``tanh``: ``tanh(z)``, output in (-1, 1);
* ``sine``: ``sin(z)``, output in [-1, 1];
* ``elevated_cosine``: the raised cosine ``(1 + cos z) / 2``, output in [0, 1]
  (a non-negative "firing rate", 1 at rest, periodic in ``z``: with large
  weights it folds its input many times — the noisy examples 3-5).
  ``elevated_cosine_form="trough"`` gives ``(1 - cos z) / 2`` (0 and flat at rest,
  which makes silence a super-stable state).

The elevated cosine's own formula is lost from seed 001 (its "Activation
function:" and "Energy function:" lines are empty). ``f`` in ``E_i`` is the
activation itself, as seed 001 defines it ("f is the activation function of
the neurons"); ``g`` is not given by any example and is the ``energy_g`` choice.

Speed: ``tanh`` is a branch-free polynomial/exp form (:func:`fast_tanh`, a few
ulp) so the neuron loop vectorises; connection arrays are stored k-major
inside the kernel for the same reason.

Output: ``x_out(n)`` itself, always finite: in (-1, 1) for tanh and sine, in
[0, 1] for the elevated cosine (which carries a DC offset; the agent's safety
chain removes DC).

Real-time parameters are targets: ``input_gain`` and ``shape`` glide with a
one-pole lag (``smoothing`` seconds); a new activation crossfades from the old
over ``crossfade`` seconds; new delays crossfade from the old read head to the
new over ``delay_fade`` seconds (a further change waits for the running fade),
so nothing clicks. ``lambda_`` and ``s`` may also be given per sample in ``mod``.
``reset`` and ``set_state`` jump.

Initial state (not given by the seeds): weights uniform in
``±init_weight``, ``v = 0``, ``u = w``; the stored past of every neuron is
uniform noise of amplitude ``init_activity`` (the kick that starts
self-oscillation; silence is otherwise a fixed point of a tanh network).

Blow-ups. A neuron whose weight state becomes non-finite or exceeds 1e6 in
magnitude is re-initialised to its seeded initial weights and counted in
``stats()["blowups"]``. Non-finite input samples count as
``nonfinite_inputs`` and are read as 0; input is clipped to ±1000.
"""

from __future__ import annotations

import math

import numpy as np

from anamnesis.agents.models._unlearn_kernels import (
    _ACC_ACTIVITY,
    _ACC_ENERGY,
    _ACC_FRAMES,
    _ACC_GRAD2,
    _CNT_BLOWUPS,
    _CNT_NONFINITE,
    W_LIMIT,
    neuron_major_into,
    unlearn_kernel,
)
from anamnesis.agents.models.base import (
    Counters,
    ParamSpec,
    check_block,
    check_size,
    state_arrays,
)

ACTIVATIONS = ("tanh", "sine", "elevated_cosine")
_ACT_CODE = {name: code for code, name in enumerate(ACTIVATIONS)}


def _param_specs(n_conn: int, max_delay: int) -> dict[str, ParamSpec]:
    return {
        "lambda_": ParamSpec(
            "lambda_", 60.0, 0.0, 1000.0, "rad/time unit", "lin",
            "learning rate λ: angular frequency of every weight's (w, v) rotation and "
            "the stiffness of its spring; 0 switches learning off", per_sample=True,
            aliases=("lr",)),
        "mu": ParamSpec("mu", 0.4, 0.0, 10000.0, "", "lin",
                        "μ: weight of the neuron's own expenditure -μ f(S) in its energy "
                        "balance"),
        "nu": ParamSpec("nu", 0.4, 0.0, 10000.0, "", "lin",
                        "ν: weight of the network-activity reward ν g(A) in the energy balance"),
        "s": ParamSpec("s", 0.1, 0.0, 1000.0, "1/time unit", "lin",
                       "strength of every weight's limit-cycle attractor", per_sample=True),
        "r": ParamSpec("r", 0.01, 0.0, 10.0, "", "lin", "radius of every weight's limit cycle"),
        "a": ParamSpec("a", 0.0, 0.0, 1000.0, "1/time unit", "lin",
                       "friction on every weight's velocity v"),
        "input_gain": ParamSpec("input_gain", 1.0, 0.0, 16.0, "", "lin",
                                "gain of the external input into the input neuron "
                                "(glides over `smoothing` seconds)"),
        "activation": ParamSpec("activation", "tanh", kind="choice", choices=ACTIVATIONS,
                                description="activation f of every neuron "
                                            "(crossfades over `crossfade` seconds)"),
        "shape": ParamSpec("shape", 1.0, 0.01, 100.0, "", "log",
                           "steepness of the activation, f(shape * S) "
                           "(glides over `smoothing` seconds)"),
        "delays": ParamSpec("delays", 0.0, 0.0, float(max_delay), "samples", "lin",
                            "delay of every connection, neuron-major (N*K whole samples); "
                            "a change crossfades over `delay_fade` seconds",
                            kind="array", size=n_conn),
        "time_scale": ParamSpec("time_scale", 0.03, 1e-3, 1e3, "time units/s", "log",
                                "ODE time units per second: dt = time_scale / sample_rate"),
    }


_STATE_KEYS = ("w", "v", "u", "w_prev", "w_init", "sources", "delays", "delay_cur",
               "delay_next", "delay_fade", "history", "write_pos", "glide", "activation_from")


class Unlearn:
    """The lazy-neuron network as a real-time processor (equations: module docstring).

    Structure, fixed at construction: ``n_neurons`` (2..256) neurons with
    ``n_inputs`` (1..16) delayed inputs each, delays up to ``max_delay``
    samples, at most ``max_block`` frames per kernel call (longer blocks are
    processed in pieces), ``sample_rate`` Hz. ``seed`` draws the topology, the
    delays, the initial weights and the initial activity.

    Options where the seeds are ambiguous (see the module docstring):
    ``activity`` ("energy" | "sum"), ``energy_g`` ("tanh" | "linear"),
    ``objective`` ("maximise" | "minimise"), ``cycle_center`` ("origin" |
    "u"), ``elevated_cosine_form`` ("peak" | "trough"); ``init_weight``
    (initial weights uniform in ±init_weight) and ``init_activity`` (amplitude
    of the noise that fills the stored past at start). The defaults of the
    parameters and of ``init_weight`` are example 1 of seed 001 as the
    ``unlearn1`` preset plays it, so a bare ``Unlearn()`` sounds. Glide times in seconds:
    ``smoothing`` (input_gain, shape), ``crossfade`` (activation), ``delay_fade``
    (delays).
    """

    kind = "unlearn"
    input_channels = 1
    WEIGHT_KEYS = ("w",)

    def __init__(self, n_neurons: int = 16, n_inputs: int = 3, max_delay: int = 2400,
                 seed: int = 0, sample_rate: int = 48000, activation: str = "tanh",
                 max_block: int = 4096, *, input_neuron: int = 0,
                 output_neuron: int | None = None, self_loops: bool = False,
                 activity: str = "energy", energy_g: str = "tanh",
                 objective: str = "maximise", cycle_center: str = "origin",
                 elevated_cosine_form: str = "peak", init_weight: float = 3.0,
                 init_activity: float = 0.5, smoothing: float = 0.01,
                 crossfade: float = 0.02, delay_fade: float = 0.05) -> None:
        self.n_neurons = check_size("n_neurons", n_neurons, 2, 256)
        self.n_inputs = check_size("n_inputs", n_inputs, 1, 16)
        self.max_delay = check_size("max_delay", max_delay, 0, 10 * 192000)
        self.sample_rate = check_size("sample_rate", sample_rate, 1000, 768000)
        self.max_block = check_size("max_block", max_block, 1, 1 << 20)
        self.seed = check_size("seed", seed, 0, 2**63 - 1)
        self.input_neuron = check_size("input_neuron", input_neuron, 0, self.n_neurons - 1)
        self.output_neuron = check_size(
            "output_neuron", self.n_neurons - 1 if output_neuron is None else output_neuron,
            0, self.n_neurons - 1)
        if not isinstance(self_loops, (bool, np.bool_)):
            # ValueError, not TypeError: the model contract reports every bad argument so.
            raise ValueError(  # noqa: TRY004
                f"self_loops must be True or False; got {self_loops!r}")
        self.self_loops = bool(self_loops)
        limit = self.n_neurons if self.self_loops else self.n_neurons - 1
        if self.n_inputs > limit:
            raise ValueError(f"n_inputs must be <= {limit} (distinct sources"
                             f"{'' if self.self_loops else ', no self-loops'}); "
                             f"got {self.n_inputs}")
        self.activity = _choice("activity", activity, ("energy", "sum"))
        self.energy_g = _choice("energy_g", energy_g, ("tanh", "linear"))
        self.objective = _choice("objective", objective, ("maximise", "minimise"))
        self.cycle_center = _choice("cycle_center", cycle_center, ("origin", "u"))
        self.elevated_cosine_form = _choice("elevated_cosine_form", elevated_cosine_form,
                                            ("peak", "trough"))
        self.init_weight = _non_negative("init_weight", init_weight, 1e3)
        self.init_activity = _non_negative("init_activity", init_activity, 1.0)
        self.smoothing = _non_negative("smoothing", smoothing, 10.0)
        self.crossfade = _non_negative("crossfade", crossfade, 10.0)
        self.delay_fade = _non_negative("delay_fade", delay_fade, 10.0)

        n, c = self.n_neurons, self.n_neurons * self.n_inputs
        self.n_connections = c
        self.ring = self.max_delay + 1
        self._specs = _param_specs(c, self.max_delay)
        self._params: dict[str, object] = {
            name: spec.default for name, spec in self._specs.items() if name != "delays"}
        self._params["activation"] = self._specs["activation"].validate(activation)

        # The kernel's state, carved from one buffer (see models.base.state_arrays).
        state = state_arrays({
            "_src": (c, np.int64), "_d_cur": (c, np.int64), "_d_next": (c, np.int64),
            "_d_pend": (c, np.int64), "_fade": (c, np.float64), "_off": (c, np.int64),
            "_hist": ((n + 1) * 2 * self.ring, np.float64), "_wp": (1, np.int64),
            "_w": (c, np.float64), "_v": (c, np.float64), "_u": (c, np.float64),
            "_w_prev": (c, np.float64), "_w_init": (c, np.float64), "_grad": (c, np.float64),
            "_xin": (c, np.float64), "_d1": (n, np.float64), "_d2": (n, np.float64),
            "_d3": (n, np.float64), "_y": (n, np.float64), "_s_sum": (n, np.float64),
            "_lag": (3, np.float64), "_acc": (4, np.float64), "_counters": (2, np.int64),
            "_modes": (9, np.int64), "_coefs": (12, np.float64),
            "_lam_buf": (self.max_block, np.float64), "_s_buf": (self.max_block, np.float64),
        })
        for name, array in state.items():   # self._w, self._hist, ...: views of one buffer
            setattr(self, name, array)
        self._act_from = _ACT_CODE[self._params["activation"]]
        self._last = {"energy": 0.0, "error_rms": 0.0, "activity": 0.0}
        self.counters = Counters()
        self.reset(self.seed)

    # --- lifetime --------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Re-draw topology, delays, weights and the initial activity from ``seed``.

        ``None`` keeps the current seed. Parameters and event counters are
        kept; glides and crossfades jump to their targets.
        """
        if seed is not None:
            self.seed = check_size("seed", seed, 0, 2**63 - 1)
        rng = np.random.default_rng(self.seed)
        n, k = self.n_neurons, self.n_inputs
        sources = np.empty((n, k), dtype=np.int64)
        for i in range(n):
            pool = np.arange(n) if self.self_loops else np.delete(np.arange(n), i)
            sources[i] = rng.choice(pool, size=k, replace=False)
        sources[self.input_neuron, 0] = n
        delays = rng.integers(0, self.max_delay + 1, size=n * k)
        w0 = rng.uniform(-self.init_weight, self.init_weight, size=n * k)
        past = rng.uniform(-self.init_activity, self.init_activity, size=(n, self.ring))
        self._src[:] = self._internal(sources.ravel())
        delays = self._internal(delays)
        self._set_delays(delays, delays, delays, np.zeros(n * k))
        self._w_init[:] = self._internal(w0)
        self._w[:] = self._w_init
        self._w_prev[:] = self._w_init
        self._u[:] = self._w_init
        self._v[:] = 0.0
        self._grad[:] = 0.0
        hist = self._hist.reshape(n + 1, 2 * self.ring)
        hist[:n, :self.ring] = past
        hist[:n, self.ring:] = past
        hist[n] = 0.0
        self._wp[0] = 0
        self._lag[:] = (float(self._params["input_gain"]), float(self._params["shape"]), 0.0)
        self._act_from = _ACT_CODE[self._params["activation"]]
        self._y[:] = 0.0

    def _internal(self, public: np.ndarray) -> np.ndarray:
        """Neuron-major (i*K + k, the public order) to the kernel's k-major (k*N + i)."""
        flat = np.ascontiguousarray(public).ravel()
        out = np.empty_like(flat)
        neuron_major_into(out, flat, self.n_neurons, self.n_inputs)
        return out

    def _public(self, internal: np.ndarray) -> np.ndarray:
        """The kernel's k-major order back to the public neuron-major order (a copy)."""
        return np.ascontiguousarray(internal.reshape(self.n_inputs, self.n_neurons).T).ravel()

    def _set_delays(self, pend: np.ndarray, cur: np.ndarray, nxt: np.ndarray,
                    fade: np.ndarray) -> None:
        self._d_pend[:] = pend
        self._d_cur[:] = cur
        self._d_next[:] = nxt
        self._fade[:] = fade
        self._off[:] = self._src * (2 * self.ring) + self.ring - 1 - self._d_cur

    # --- audio -----------------------------------------------------------------------

    def process(self, x: np.ndarray, mod: dict[str, np.ndarray] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Run input ``x`` (frames,) through the network; return the output neuron's samples.

        ``mod`` may map "lambda_" and/or "s" to per-sample arrays (frames,).
        With ``out`` (float64, shape (frames,)) nothing is allocated. Any split
        of a signal into blocks gives the same samples as one call.
        """
        x = check_block(x)
        frames = x.shape[0]
        out = out_block(out, frames)
        lam_mod, s_mod = checked_rates(self._specs, mod, frames)
        if frames == 0:
            return out
        self._prepare_coefs()
        self._acc[:] = 0.0
        pos = 0
        while pos < frames:
            m = min(self.max_block, frames - pos)
            lam = self._lam_buf[:m]
            s = self._s_buf[:m]
            fill_rates(lam, s, self._params, lam_mod, s_mod, pos)
            self._modes[0] = self._act_from
            self._act_from = unlearn_kernel(
                x[pos:pos + m], out[pos:pos + m], lam, s, m,
                self._src, self._d_cur, self._d_next, self._d_pend, self._fade, self._off,
                self._hist, self._wp, self._w, self._v, self._u, self._w_prev, self._w_init,
                self._grad, self._xin, self._y, self._s_sum, self._d1, self._d2,
                self._d3, self._lag, self._acc, self._counters, self._modes, self._coefs)
            pos += m
        self._update_stats()
        return out

    def _prepare_coefs(self) -> None:
        p, sr = self._params, self.sample_rate
        self._modes[1:] = (
            _ACT_CODE[p["activation"]], self.n_neurons, self.n_inputs, self.output_neuron,
            self.ring, self.activity == "energy", self.energy_g == "linear",
            self.elevated_cosine_form == "trough")
        self._coefs[:] = (
            p["mu"], p["nu"], p["r"], p["a"], p["time_scale"] / sr,
            1.0 if self.objective == "maximise" else -1.0,
            1.0 if self.cycle_center == "u" else 0.0,
            p["input_gain"], p["shape"],
            math.exp(-1.0 / (self.smoothing * sr)) if self.smoothing > 0 else 0.0,
            1.0 / max(1.0, self.delay_fade * sr),
            1.0 / max(1.0, self.crossfade * sr))

    def _update_stats(self) -> None:
        frames = self._acc[_ACC_FRAMES]
        self._last["energy"] = float(self._acc[_ACC_ENERGY] / frames)
        self._last["error_rms"] = float(math.sqrt(
            self._acc[_ACC_GRAD2] / (frames * self.n_connections)))
        self._last["activity"] = float(self._acc[_ACC_ACTIVITY] / frames)
        self.counters.blowups = int(self._counters[_CNT_BLOWUPS])
        self.counters.nonfinite_inputs = int(self._counters[_CNT_NONFINITE])

    def stats(self) -> dict[str, float]:
        """Telemetry of the last ``process`` call and the event counters.

        ``energy``: mean energy balance E_i over neurons and samples;
        ``error_rms``: RMS of the gradient estimates dE/dw over connections and
        samples — Unlearn has no prediction error, and this learning drive is
        what the dashboard plots in its place; ``activity``: mean A (network
        energy); ``weight_rms``: RMS of the weights now; ``delays_moving``: how
        many connections are still crossfading to new delays; ``blowups``,
        ``nonfinite_inputs``: counts since construction.
        """
        moving = int(np.count_nonzero((self._d_cur != self._d_pend)
                                      | (self._d_cur != self._d_next)))
        return {
            "blowups": float(self.counters.blowups),
            "nonfinite_inputs": float(self.counters.nonfinite_inputs),
            "energy": self._last["energy"],
            "error_rms": self._last["error_rms"],
            "activity": self._last["activity"],
            "weight_rms": float(np.sqrt(np.mean(self._w ** 2))),
            "delays_moving": float(moving),
        }

    def last_gradient(self) -> np.ndarray:
        """The estimates dE/dw of every weight at the last sample processed (N*K,), a copy.

        Neuron-major like "w". This is the learning drive the weights feel
        (the dashboard can show it next to the weights).
        """
        return self._public(self._grad)

    # --- parameters ------------------------------------------------------------------

    def set_param(self, name: str, value: object) -> None:
        """Set real-time parameter ``name`` (see :meth:`param_specs`); ``ValueError`` if invalid.

        Call between ``process`` calls. "delays" takes N*K whole numbers of
        samples in [0, max_delay] (neuron-major) and crossfades to them.
        """
        spec = self._specs.get(name)
        if spec is None:
            raise ValueError(f"unknown parameter {name!r}; parameters: {', '.join(self._specs)}")
        checked = spec.validate(value)
        if name == "delays":
            checked = _whole("delays", checked)
        self.apply_param(name, checked)

    def apply_param(self, name: str, value: object) -> None:
        """Apply a value :meth:`set_param` has checked: no check and no array allocated
        (the engine calls it on the audio thread); "delays" in the public neuron-major
        layout, written transposed into the kernel's input-major one."""
        if name == "delays":
            neuron_major_into(self._d_pend, value, self.n_neurons, self.n_inputs)
            return
        self._params[name] = value

    def params(self) -> dict[str, object]:
        """Current parameter values (targets); "delays" as a float array in samples."""
        out = dict(self._params)
        out["delays"] = self._public(self._d_pend).astype(np.float64)
        return out

    def param_specs(self) -> dict[str, ParamSpec]:
        """Range, unit, scale and description of every real-time parameter."""
        return dict(self._specs)

    # --- state -----------------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """A full snapshot (copies): enough to continue bit-identically elsewhere.

        ``w``, ``v``, ``u``, ``w_prev`` (weights one sample back), ``w_init``
        (what a blow-up restores): (N*K,). ``sources``: (N*K,) ints, N = the
        external input. ``delays``: requested delays (samples); ``delay_cur``,
        ``delay_next``, ``delay_fade``: the read heads of running crossfades.
        ``history``: (N+1, max_delay+1) past outputs (row N: the scaled input),
        ring-ordered; ``write_pos``: the ring index written next. ``glide``:
        (input_gain, shape, activation-crossfade position) in effect;
        ``activation_from``: the activation code being faded from.
        """
        n, pub = self.n_neurons, self._public
        return {
            "w": pub(self._w), "v": pub(self._v), "u": pub(self._u),
            "w_prev": pub(self._w_prev), "w_init": pub(self._w_init),
            "sources": pub(self._src), "delays": pub(self._d_pend),
            "delay_cur": pub(self._d_cur), "delay_next": pub(self._d_next),
            "delay_fade": pub(self._fade),
            "history": self._hist.reshape(n + 1, 2 * self.ring)[:, :self.ring].copy(),
            "write_pos": np.array(self._wp[0]), "glide": self._lag.copy(),
            "activation_from": np.array(self._act_from),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore any subset of :meth:`get_state`'s keys; if invalid, ``ValueError`` and no change.

        Setting "delays" alone moves every read head there at once (a snapshot
        recall jumps; use ``set_param("delays", ...)`` to crossfade).
        Setting "w" alone also sets ``w_prev`` to it (the weights are at rest).
        """
        new = _checked_state(self, state)
        n, ring = self.n_neurons, self.ring
        for key in ("w", "v", "u", "w_prev", "w_init", "sources", "delays", "delay_cur",
                    "delay_next", "delay_fade"):
            if key in new:
                new[key] = self._internal(new[key])
        for key in ("w", "v", "u", "w_prev", "w_init"):
            if key in new:
                getattr(self, f"_{key}")[:] = new[key]
        if "w" in new and "w_prev" not in new:
            self._w_prev[:] = new["w"]
        if "sources" in new:
            self._src[:] = new["sources"]
        if any(k in new for k in ("delays", "delay_cur", "delay_next", "delay_fade", "sources")):
            pend = new.get("delays", self._d_pend)
            cur = new.get("delay_cur", pend if "delays" in new else self._d_cur)
            nxt = new.get("delay_next", cur if ("delays" in new or "delay_cur" in new)
                          else self._d_next)
            fade = new.get("delay_fade", np.where(nxt == cur, 0.0, self._fade))
            self._set_delays(pend.copy(), cur.copy(), nxt.copy(), fade.copy())
        if "history" in new:
            hist = self._hist.reshape(n + 1, 2 * ring)
            hist[:, :ring] = new["history"]
            hist[:, ring:] = new["history"]
        if "write_pos" in new:
            self._wp[0] = int(new["write_pos"])
        if "glide" in new:
            self._lag[:] = new["glide"]
        if "activation_from" in new:
            self._act_from = int(new["activation_from"])


def out_block(out: np.ndarray | None, frames: int) -> np.ndarray:
    """``out`` checked as a float64 array of ``frames`` (a new one when None)."""
    if out is None:
        return np.empty(frames)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (frames,)):
        raise ValueError(f"out must be a float64 array of shape ({frames},)")
    return out


def checked_rates(specs: dict[str, ParamSpec], mod: dict[str, np.ndarray] | None,
                  frames: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The per-sample λ and s of ``mod`` checked against ``specs`` (None: not modulated);
    the lazy neuron's two audio-rate parameters (Unlearn's and the embodied neuron's)."""
    lam_mod = s_mod = None
    if mod:
        for name in mod:
            if name not in ("lambda_", "s"):
                raise ValueError(f"cannot modulate {name!r} per sample; "
                                 f"per-sample parameters: lambda_, s")
            if frames == 0 and np.shape(mod[name]) != (0,):
                raise ValueError(f"{name} modulation must have shape (0,); "
                                 f"got {np.shape(mod[name])}")
        if frames:
            if "lambda_" in mod:
                lam_mod = specs["lambda_"].validate_block(mod["lambda_"], frames)
            if "s" in mod:
                s_mod = specs["s"].validate_block(mod["s"], frames)
    return lam_mod, s_mod


def fill_rates(lam: np.ndarray, s: np.ndarray, params: dict[str, object],
               lam_mod: np.ndarray | None, s_mod: np.ndarray | None, pos: int) -> None:
    """λ and s of the piece of a block starting at ``pos`` into the kernel's buffers."""
    m = lam.shape[0]
    if lam_mod is None:
        lam.fill(params["lambda_"])
    else:
        lam[:] = lam_mod[pos:pos + m]
    if s_mod is None:
        s.fill(params["s"])
    else:
        s[:] = s_mod[pos:pos + m]


def _checked_state(model: Unlearn, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` (a subset of :meth:`Unlearn.get_state`'s keys) checked against ``model``:
    copies in the public (source-major) layout; ``ValueError`` naming the first problem."""
    unknown = sorted(set(state) - set(_STATE_KEYS))
    if unknown:
        raise ValueError(f"unknown state keys {unknown}; valid keys: {', '.join(_STATE_KEYS)}")
    n, c, ring = model.n_neurons, model.n_connections, model.ring
    new: dict[str, np.ndarray] = {}
    for key in ("w", "v", "u", "w_prev", "w_init"):
        if key in state:
            arr = _float_array(key, state[key], (c,))
            if np.any(np.abs(arr) >= W_LIMIT):
                raise ValueError(f"{key} must be smaller than {W_LIMIT:g} in magnitude")
            new[key] = arr
    if "sources" in state:
        src = _int_array("sources", state["sources"], (c,), 0, n)
        if not model.self_loops and np.any(src == np.repeat(np.arange(n), model.n_inputs)):
            raise ValueError("sources must not connect a neuron to itself "
                             "(construct with self_loops=True to allow it)")
        new["sources"] = src
    for key in ("delays", "delay_cur", "delay_next"):
        if key in state:
            new[key] = _int_array(key, state[key], (c,), 0, model.max_delay)
    if "delay_fade" in state:
        fade = _float_array("delay_fade", state["delay_fade"], (c,))
        if np.any((fade < 0) | (fade >= 1)):
            raise ValueError("delay_fade must be in [0, 1)")
        new["delay_fade"] = fade
    if "history" in state:
        new["history"] = _float_array("history", state["history"], (n + 1, ring))
    if "write_pos" in state:
        new["write_pos"] = _int_array("write_pos", state["write_pos"], (), 0, ring - 1)
    if "glide" in state:
        glide = _float_array("glide", state["glide"], (3,))
        model._specs["input_gain"].validate(float(glide[0]))
        model._specs["shape"].validate(float(glide[1]))
        if not 0.0 <= glide[2] < 1.0:
            raise ValueError("glide[2] (activation crossfade position) must be in [0, 1)")
        new["glide"] = glide
    if "activation_from" in state:
        new["activation_from"] = _int_array("activation_from", state["activation_from"],
                                            (), 0, len(ACTIVATIONS) - 1)
    return new


def _choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _non_negative(name: str, value: object, maximum: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number; got {value!r}") from None
    if not (math.isfinite(number) and 0.0 <= number <= maximum):
        raise ValueError(f"{name} must be in [0, {maximum:g}]; got {value!r}")
    return number


def _whole(name: str, values: np.ndarray) -> np.ndarray:
    if not np.all(values == np.round(values)):
        raise ValueError(f"{name} must be whole numbers of samples")
    return values.astype(np.int64)


def _float_array(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers") from None
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _int_array(name: str, value: object, shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    arr = _float_array(name, value, shape)
    if not np.all(arr == np.round(arr)):
        raise ValueError(f"{name} must be whole numbers")
    if np.any(arr < lo) or np.any(arr > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}]")
    return arr.astype(np.int64)
