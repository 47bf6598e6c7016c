"""Neuron: one lazy neuron embodied in an agent (seed 000 §3.2).

"Each unit will embody a simplified instance of a neuron in a network, connected
through their microphones." An Unlearn agent runs a whole network in one process;
a ``neuron`` agent is one of its neurons, and the network exists only in the room:
the other neurons' outputs reach it through its microphone, delayed by the distance
from their speakers, as Unlearn's connections are delayed by their ``d_ik`` (seed 000
§3: "neurons in this network have a defined spatial relationship, and thus … output
signals are delayed differently").

Equations (per audio sample ``n``)
==================================

The neuron has ``K`` taps (1..8) of its microphone ``m``, each delayed by its own
``d_k`` whole samples in ``[0, max_delay]`` (100 ms at 48 kHz by default); tap delay 0
is the present sample (the neuron has no stored output of its own to step from: the
room is its recurrence, and the room's own delay is at least one block)::

    x(n)  = input_gain * m(n)
    S(n)  = sum_k w_k(n) * x(n - d_k)
    y(n)  = f(shape * S(n))                           the speaker's signal

with Unlearn's activations ``f`` (tanh, sine, elevated cosine; ``shape`` the
steepness; :mod:`~anamnesis.agents.models.unlearn` defines each).

Energy balance (seed 000 eq. 1-3, as Unlearn's)::

    E = -mu * f(shape * S) + nu * g(A)
    A(n) = H(n) + y(n)^2                              activity="room" (default)
    H(n) = x(n)^2 + c_H (H(n-1) - x(n)^2)             c_H = exp(-1 / (activity_time * sr))

The activity is what the neuron hears: ``H`` is the short-term energy of its
microphone (a one-pole mean of ``x^2`` over ``activity_time``, 50 ms by default:
the time a room takes to carry a sound across, and long enough to be an energy
rather than a waveform), and ``y^2`` is the neuron's own contribution to the
sound it stands in. Why both: Unlearn's activity is the energy of *every* neuron,
the neuron's own output included, and only through that term does ``nu`` reach a
neuron's weights at all (``dA/dw_k = 2 y f' x_k``: the Hebbian part of the
gradient). The other neurons' energy is, for an embodied neuron, what its
microphone hears, so ``H`` stands for them: a loud room saturates ``g = tanh`` and
takes the reward away (the neuron falls back on its own expenditure ``-mu f``, it
becomes lazy), a quiet room gives it back. ``activity="own"`` drops ``H``
(``A = y^2``): a neuron that learns from its own output alone, deaf to the level of
the room. ``g`` is ``energy_g`` ("tanh" | "linear"), as Unlearn's.

Gradient (seed 000 eq. 4) and weight dynamics (eq. 5): Unlearn's, one
implementation (``_unlearn_kernels.exact_gradient`` and ``weight_step``) called for
the K taps: the divided difference from each weight's own change over one sample,
in O(1) per weight, exact above a step of 1e-3 and its third-order Taylor form
below; one semi-implicit step of ``(w, v, u)`` per sample with
``dt = time_scale / sample_rate``; ``objective`` ("maximise" | "minimise") and
``cycle_center`` ("origin" | "u") as Unlearn's, "origin" (the printed equations) by
default. For an embodied neuron the two readings differ in what a quiet room does:
with "origin" every weight rests on its limit cycle of radius ``r`` about zero, so
``r`` is the neuron's resting excitability — above the loop's threshold the
microphones' self-noise rekindles a network that has fallen quiet (the network's
own silences, not resets), below it the network waits for a sound; with "u" the
weights keep what they learnt and drift with it (a loud room then drives every
neuron into saturation).

Real-time parameters, all Unlearn's: λ (``lambda_``, the learning rate), μ, ν, s, r,
a, ``delays`` (K whole samples; a change crossfades over ``delay_fade`` seconds),
``activation`` (crossfades over ``crossfade``), ``shape`` and ``input_gain`` (glide
over ``smoothing``), ``time_scale``. ``input_gain`` is the threshold of seed 000
§3.2 between "a 'solipsistic' mode of self-oscillation and a more reactive,
input-dependent mode": below the gain at which the loop through the room closes
(speaker -> air -> microphones -> neurons -> speakers), the network sounds only
while something excites it and dies away after; above it, it keeps itself going.

Initial state: weights uniform in ``±init_weight``, ``v = 0``, ``u = w``; delays
uniform in ``[0, max_delay]`` (drawn from ``seed``); the microphone's past silent.
Silence is a fixed point of a tanh or sine neuron: an embodied network starts
from what it hears (a noise burst, a visitor), not from a random stored past.

Blow-ups: a weight state non-finite or beyond 1e6 restores the seeded initial
weights, counted in ``stats()["blowups"]``; non-finite input samples count as
``nonfinite_inputs`` and are read as 0; input is clipped to ±1000.

Cost: one neuron of K taps is K multiply-adds, one activation and K weight steps
per sample: a microcontroller's work (``bench/bench_neuron.py``).
"""

from __future__ import annotations

import math

import numpy as np

from anamnesis.agents.models._neuron_kernels import (
    ACC_ACTIVITY,
    ACC_ENERGY,
    ACC_FRAMES,
    ACC_GRAD2,
    ACC_HEARD,
    CNT_BLOWUPS,
    CNT_NONFINITE,
    neuron_kernel,
)
from anamnesis.agents.models._unlearn_kernels import W_LIMIT
from anamnesis.agents.models.base import (
    Counters,
    ParamSpec,
    check_block,
    check_size,
    state_arrays,
)
from anamnesis.agents.models.unlearn import (
    ACTIVATIONS,
    _choice,
    _float_array,
    _int_array,
    _non_negative,
    _whole,
    checked_rates,
    fill_rates,
    out_block,
)

_ACT_CODE = {name: code for code, name in enumerate(ACTIVATIONS)}
MAX_TAPS = 8


def _param_specs(n_taps: int, max_delay: int) -> dict[str, ParamSpec]:
    return {
        "lambda_": ParamSpec(
            "lambda_", 1.0, 0.0, 1000.0, "rad/time unit", "lin",
            "learning rate λ: angular frequency of every weight's (w, v) rotation and "
            "the stiffness of its spring; 0 switches learning off", per_sample=True,
            aliases=("lr",)),
        "mu": ParamSpec("mu", 0.4, 0.0, 10000.0, "", "lin",
                        "μ: weight of the neuron's own expenditure -μ f(S) in its energy "
                        "balance"),
        "nu": ParamSpec("nu", 1.0, 0.0, 10000.0, "", "lin",
                        "ν: weight of the activity reward ν g(A), A = what the neuron "
                        "hears + its own output's energy"),
        "s": ParamSpec("s", 0.1, 0.0, 1000.0, "1/time unit", "lin",
                       "strength of every weight's limit-cycle attractor", per_sample=True),
        "r": ParamSpec("r", 0.3, 0.0, 10.0, "", "lin",
                       "radius of every weight's limit cycle (with cycle_center 'origin': "
                       "the neuron's resting excitability)"),
        "a": ParamSpec("a", 0.0, 0.0, 1000.0, "1/time unit", "lin",
                       "friction on every weight's velocity v"),
        "input_gain": ParamSpec("input_gain", 0.5, 0.0, 1000.0, "", "log",
                                "gain of the microphone (the reactive <-> self-oscillating "
                                "threshold of the network; glides over `smoothing` s)"),
        "activation": ParamSpec("activation", "tanh", kind="choice", choices=ACTIVATIONS,
                                description="activation f (crossfades over `crossfade` s)"),
        "shape": ParamSpec("shape", 1.0, 0.01, 100.0, "", "log",
                           "steepness of the activation, f(shape * S) "
                           "(glides over `smoothing` seconds)"),
        "delays": ParamSpec("delays", 0.0, 0.0, float(max_delay), "samples", "lin",
                            "delay of every tap of the microphone (K whole samples); a "
                            "change crossfades over `delay_fade` seconds",
                            kind="array", size=n_taps),
        "time_scale": ParamSpec("time_scale", 10.0, 1e-3, 1e3, "time units/s", "log",
                                "ODE time units per second: dt = time_scale / sample_rate"),
    }


_STATE_KEYS = ("w", "v", "u", "w_prev", "w_init", "delays", "delay_cur", "delay_next",
               "delay_fade", "history", "write_pos", "glide", "activation_from")


class Neuron:
    """One embodied lazy neuron as a real-time processor (equations: module docstring).

    Structure, fixed at construction: ``n_taps`` (1..8) taps of the microphone,
    delays up to ``max_delay`` samples (default: 100 ms at ``sample_rate``), at most
    ``max_block`` frames per kernel call. ``seed`` draws the initial weights and
    delays. Options where the seeds are silent (module docstring): ``activity``
    ("room" | "own"), ``activity_time`` (s), ``energy_g``, ``objective``,
    ``cycle_center``, ``elevated_cosine_form``, ``init_weight``; glide
    times ``smoothing``, ``crossfade``, ``delay_fade`` in seconds.
    """

    kind = "neuron"
    input_channels = 1
    WEIGHT_KEYS = ("w",)

    def __init__(self, n_taps: int = 4, max_delay: int | None = None, seed: int = 0,
                 sample_rate: int = 48000, activation: str = "tanh",
                 max_block: int = 4096, *, activity: str = "room",
                 activity_time: float = 0.05, energy_g: str = "tanh",
                 objective: str = "maximise", cycle_center: str = "origin",
                 elevated_cosine_form: str = "peak", init_weight: float = 1.0,
                 smoothing: float = 0.01, crossfade: float = 0.02,
                 delay_fade: float = 0.05) -> None:
        self.n_taps = check_size("n_taps", n_taps, 1, MAX_TAPS)
        self.sample_rate = check_size("sample_rate", sample_rate, 1000, 768000)
        self.max_delay = check_size(
            "max_delay", round(0.1 * self.sample_rate) if max_delay is None else max_delay,
            0, 10 * 192000)
        self.max_block = check_size("max_block", max_block, 1, 1 << 20)
        self.seed = check_size("seed", seed, 0, 2**63 - 1)
        self.activity = _choice("activity", activity, ("room", "own"))
        self.activity_time = _non_negative("activity_time", activity_time, 60.0)
        self.energy_g = _choice("energy_g", energy_g, ("tanh", "linear"))
        self.objective = _choice("objective", objective, ("maximise", "minimise"))
        self.cycle_center = _choice("cycle_center", cycle_center, ("origin", "u"))
        self.elevated_cosine_form = _choice("elevated_cosine_form", elevated_cosine_form,
                                            ("peak", "trough"))
        self.init_weight = _non_negative("init_weight", init_weight, 1e3)
        self.smoothing = _non_negative("smoothing", smoothing, 10.0)
        self.crossfade = _non_negative("crossfade", crossfade, 10.0)
        self.delay_fade = _non_negative("delay_fade", delay_fade, 10.0)

        k = self.n_taps
        self.ring = self.max_delay + 1
        self._specs = _param_specs(k, self.max_delay)
        self._params: dict[str, object] = {
            name: spec.default for name, spec in self._specs.items() if name != "delays"}
        self._params["activation"] = self._specs["activation"].validate(activation)
        state = state_arrays({
            "_d_cur": (k, np.int64), "_d_next": (k, np.int64), "_d_pend": (k, np.int64),
            "_fade": (k, np.float64), "_hist": (2 * self.ring, np.float64),
            "_wp": (1, np.int64), "_w": (k, np.float64), "_v": (k, np.float64),
            "_u": (k, np.float64), "_w_prev": (k, np.float64), "_w_init": (k, np.float64),
            "_grad": (k, np.float64), "_xin": (k, np.float64), "_lag": (4, np.float64),
            "_acc": (5, np.float64), "_counters": (2, np.int64), "_modes": (7, np.int64),
            "_coefs": (13, np.float64), "_lam_buf": (self.max_block, np.float64),
            "_s_buf": (self.max_block, np.float64),
        })
        for name, array in state.items():
            setattr(self, name, array)
        self._act_from = _ACT_CODE[self._params["activation"]]
        self._last = {"energy": 0.0, "error_rms": 0.0, "activity": 0.0, "heard": 0.0}
        self.counters = Counters()
        self.reset(self.seed)

    # --- lifetime --------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Re-draw the weights and delays from ``seed`` (``None``: the current one) and
        forget what the microphone heard; parameters and counters are kept."""
        if seed is not None:
            self.seed = check_size("seed", seed, 0, 2**63 - 1)
        rng = np.random.default_rng(self.seed)
        delays = rng.integers(0, self.max_delay + 1, size=self.n_taps)
        w0 = rng.uniform(-self.init_weight, self.init_weight, size=self.n_taps)
        self._d_pend[:] = delays
        self._d_cur[:] = delays
        self._d_next[:] = delays
        self._fade[:] = 0.0
        self._w_init[:] = w0
        self._w[:] = w0
        self._w_prev[:] = w0
        self._u[:] = w0
        self._v[:] = 0.0
        self._grad[:] = 0.0
        self._hist[:] = 0.0
        self._wp[0] = 0
        self._lag[:] = (float(self._params["input_gain"]), float(self._params["shape"]),
                        0.0, 0.0)
        self._act_from = _ACT_CODE[self._params["activation"]]

    # --- audio -----------------------------------------------------------------------

    def process(self, x: np.ndarray, mod: dict[str, np.ndarray] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Run microphone block ``x`` (frames,) through the neuron; return its output.

        ``mod`` may map "lambda_" and/or "s" to per-sample arrays (frames,). With
        ``out`` (float64, (frames,)) nothing is allocated; any split of a signal into
        blocks gives the same samples as one call.
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
            self._act_from = neuron_kernel(
                x[pos:pos + m], out[pos:pos + m], lam, s, m, self._d_cur, self._d_next,
                self._d_pend, self._fade, self._hist, self._wp, self._w, self._v, self._u,
                self._w_prev, self._w_init, self._grad, self._xin, self._lag, self._acc,
                self._counters, self._modes, self._coefs)
            pos += m
        self._update_stats()
        return out

    def _prepare_coefs(self) -> None:
        p, sr = self._params, self.sample_rate
        self._modes[1:] = (
            _ACT_CODE[p["activation"]], self.n_taps, self.ring, self.activity == "own",
            self.energy_g == "linear", self.elevated_cosine_form == "trough")
        self._coefs[:] = (
            p["mu"], p["nu"], p["r"], p["a"], p["time_scale"] / sr,
            1.0 if self.objective == "maximise" else -1.0,
            1.0 if self.cycle_center == "u" else 0.0,
            p["input_gain"], p["shape"],
            math.exp(-1.0 / (self.smoothing * sr)) if self.smoothing > 0 else 0.0,
            1.0 / max(1.0, self.delay_fade * sr),
            1.0 / max(1.0, self.crossfade * sr),
            math.exp(-1.0 / (self.activity_time * sr)) if self.activity_time > 0 else 0.0)

    def _update_stats(self) -> None:
        frames = self._acc[ACC_FRAMES]
        self._last["energy"] = float(self._acc[ACC_ENERGY] / frames)
        self._last["error_rms"] = float(math.sqrt(
            self._acc[ACC_GRAD2] / (frames * self.n_taps)))
        self._last["activity"] = float(self._acc[ACC_ACTIVITY] / frames)
        self._last["heard"] = float(self._acc[ACC_HEARD] / frames)
        self.counters.blowups = int(self._counters[CNT_BLOWUPS])
        self.counters.nonfinite_inputs = int(self._counters[CNT_NONFINITE])

    def stats(self) -> dict[str, float]:
        """Telemetry of the last ``process`` call and the event counters.

        ``energy``: mean E; ``error_rms``: RMS of the gradient estimates dE/dw (the
        learning drive, plotted where AutoRegNN plots its prediction error);
        ``activity``: mean A; ``heard``: mean H, the microphone's short-term energy
        after the input gain; ``weight_rms``; ``blowups``, ``nonfinite_inputs``.
        """
        return {
            "blowups": float(self.counters.blowups),
            "nonfinite_inputs": float(self.counters.nonfinite_inputs),
            "energy": self._last["energy"],
            "error_rms": self._last["error_rms"],
            "activity": self._last["activity"],
            "heard": self._last["heard"],
            "weight_rms": float(np.sqrt(np.mean(self._w ** 2))),
        }

    def last_gradient(self) -> np.ndarray:
        """The estimates dE/dw of every tap's weight at the last sample (K,), a copy."""
        return self._grad.copy()

    # --- parameters ------------------------------------------------------------------

    def set_param(self, name: str, value: object) -> None:
        """Set real-time parameter ``name`` (see :meth:`param_specs`); ``ValueError`` if
        invalid. "delays" takes K whole numbers of samples and crossfades to them."""
        spec = self._specs.get(name)
        if spec is None:
            raise ValueError(f"unknown parameter {name!r}; parameters: {', '.join(self._specs)}")
        checked = spec.validate(value)
        if name == "delays":
            checked = _whole("delays", checked)
        self.apply_param(name, checked)

    def apply_param(self, name: str, value: object) -> None:
        """Apply a value :meth:`set_param` has checked (no check, nothing allocated)."""
        if name == "delays":
            self._d_pend[:] = value
            return
        self._params[name] = value

    def params(self) -> dict[str, object]:
        """Current parameter values (targets); "delays" as a float array in samples."""
        out = dict(self._params)
        out["delays"] = self._d_pend.astype(np.float64)
        return out

    def param_specs(self) -> dict[str, ParamSpec]:
        """Range, unit, scale and description of every real-time parameter."""
        return dict(self._specs)

    # --- state -----------------------------------------------------------------------

    def get_state(self) -> dict[str, np.ndarray]:
        """A full snapshot (copies): enough to continue bit-identically elsewhere.

        ``w``, ``v``, ``u``, ``w_prev``, ``w_init``: (K,); ``delays`` (requested),
        ``delay_cur``, ``delay_next``, ``delay_fade``: the read heads; ``history``:
        (max_delay+1,) the gained microphone, ring-ordered; ``write_pos`` (1,);
        ``glide``: (input_gain, shape, activation-crossfade position, heard energy);
        ``activation_from`` (1,): the activation being faded from.
        """
        return {
            "w": self._w.copy(), "v": self._v.copy(), "u": self._u.copy(),
            "w_prev": self._w_prev.copy(), "w_init": self._w_init.copy(),
            "delays": self._d_pend.copy(), "delay_cur": self._d_cur.copy(),
            "delay_next": self._d_next.copy(), "delay_fade": self._fade.copy(),
            "history": self._hist[:self.ring].copy(), "write_pos": self._wp.copy(),
            "glide": self._lag.copy(), "activation_from": np.array([self._act_from]),
        }

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore any subset of :meth:`get_state`'s keys; if invalid, ``ValueError`` and
        no change. "delays" alone moves every read head there at once; "w" alone also
        sets ``w_prev`` (the weights at rest)."""
        new = self._checked_state(state)
        for key in ("w", "v", "u", "w_prev", "w_init"):
            if key in new:
                getattr(self, f"_{key}")[:] = new[key]
        if "w" in new and "w_prev" not in new:
            self._w_prev[:] = new["w"]
        if any(k in new for k in ("delays", "delay_cur", "delay_next", "delay_fade")):
            pend = new.get("delays", self._d_pend.copy())
            cur = new.get("delay_cur", pend if "delays" in new else self._d_cur.copy())
            nxt = new.get("delay_next", cur if ("delays" in new or "delay_cur" in new)
                          else self._d_next.copy())
            fade = new.get("delay_fade", np.where(nxt == cur, 0.0, self._fade))
            self._d_pend[:] = pend
            self._d_cur[:] = cur
            self._d_next[:] = nxt
            self._fade[:] = fade
        if "history" in new:
            self._hist[:self.ring] = new["history"]
            self._hist[self.ring:] = new["history"]
        if "write_pos" in new:
            self._wp[0] = int(new["write_pos"][0])
        if "glide" in new:
            self._lag[:] = new["glide"]
        if "activation_from" in new:
            self._act_from = int(new["activation_from"][0])

    def _checked_state(self, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        unknown = sorted(set(state) - set(_STATE_KEYS))
        if unknown:
            raise ValueError(f"unknown state keys {unknown}; valid keys: {', '.join(_STATE_KEYS)}")
        k = self.n_taps
        new: dict[str, np.ndarray] = {}
        for key in ("w", "v", "u", "w_prev", "w_init"):
            if key in state:
                arr = _float_array(key, state[key], (k,))
                if np.any(np.abs(arr) >= W_LIMIT):
                    raise ValueError(f"{key} must be smaller than {W_LIMIT:g} in magnitude")
                new[key] = arr
        for key in ("delays", "delay_cur", "delay_next"):
            if key in state:
                new[key] = _int_array(key, state[key], (k,), 0, self.max_delay)
        if "delay_fade" in state:
            fade = _float_array("delay_fade", state["delay_fade"], (k,))
            if np.any((fade < 0) | (fade >= 1)):
                raise ValueError("delay_fade must be in [0, 1)")
            new["delay_fade"] = fade
        if "history" in state:
            new["history"] = _float_array("history", state["history"], (self.ring,))
        if "write_pos" in state:
            new["write_pos"] = _int_array("write_pos", np.reshape(state["write_pos"], -1),
                                          (1,), 0, self.ring - 1)
        if "glide" in state:
            glide = _float_array("glide", state["glide"], (4,))
            self._specs["input_gain"].validate(float(glide[0]))
            self._specs["shape"].validate(float(glide[1]))
            if not 0.0 <= glide[2] < 1.0:
                raise ValueError("glide[2] (activation crossfade position) must be in [0, 1)")
            if glide[3] < 0.0:
                raise ValueError("glide[3] (heard energy) must be >= 0")
            new["glide"] = glide
        if "activation_from" in state:
            new["activation_from"] = _int_array(
                "activation_from", np.reshape(state["activation_from"], -1), (1,), 0,
                len(ACTIVATIONS) - 1)
        return new
