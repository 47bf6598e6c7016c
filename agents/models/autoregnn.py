"""AutoRegNN: an autoregressive network that learns sample by sample while it plays.

Seed 000 §2 and DESIGN "AutoRegNN — exact definition". Three classes share the
numba kernels of :mod:`anamnesis.agents.models._autoregnn_kernels`:

* :class:`AutoRegNN` (``autoregnn``) — one network, one input channel;
* :class:`AutoRegNN2` (``autoregnn2``) — two parameter sets trained on two
  inputs, generating with their interpolation;
* :class:`~anamnesis.agents.models.autoregnn_bank.AutoRegNNBank` (in
  :mod:`anamnesis.agents.models.autoregnn_bank`) — A independent AutoRegNNs in
  lockstep (offline rehearsal of 8–32 agents), each column bit-identical to a
  separate AutoRegNN (the kernels perform the same operations in the same order;
  tested). The helpers of this module (weights, checks, lane layout) are shared
  with it.

Equations (float64 throughout), input size n, hidden size h
------------------------------------------------------------
Cascades T and G of n one-pole lowpasses, ``c_k = exp(-1/2**k)``, k = 1..n;
feeding sample s: ``f_1 = (1-c_1)*s + c_1*f_1``, then
``f_k = (1-c_k)*f_(k-1) + c_k*f_k`` with the already updated f_(k-1).

Network on u: ``z_j = b1_j + sum_k W1[j,k]*u_k`` (summed in order k = 1..n),
``a_j = m_j*sin(z_j) + (1-m_j)*tanh(z_j)``, ``y = tanh(b2 + sum_j W2_j*a_j)``.

Per sample t (input x, learning rate lr, ridge λ):

1. ``yhat = net(T)``, ``e = yhat - x``;
2. (if ``learn``) ``g = 2*e*(1-yhat**2)``; ``delta_j = g*W2_j*(m_j*cos z_j +
   (1-m_j)*(1-tanh(z_j)**2))`` with the W2 from before the step;
   ``W2_j -= lr*(g*a_j + 2λ*W2_j)``, ``b2 -= lr*g``,
   ``W1[j,k] -= lr*(delta_j*u_k + 2λ*W1[j,k])``, ``b1_j -= lr*delta_j``
   (the gradient of ``(x-yhat)**2 + λ*(|W1|^2 + |W2|^2)``; biases unpenalised);
3. feed x into T;
4. ``y[t] = net(G)`` with the updated weights; feed y[t] into G; output y[t].

Choices where the sources are silent
------------------------------------
* **Initialisation.** ``rng = numpy.random.default_rng(seed)``; then, in this
  order, ``W1 = rng.uniform(-1, 1, (h, n))``, ``b1 = rng.uniform(-1, 1, h)``,
  ``W2 = rng.uniform(-1, 1, h)``, ``b2 = rng.uniform(-1, 1, 1)``. Cascades
  start at 0. AutoRegNN2 draws set a first and then set b from the *same*
  generator, so its set a equals an AutoRegNN's initial weights for that seed.
* **Arithmetic.** Products are fused multiply-adds, sums run in the order
  written above, and the gradient step is written ``w*(1 - 2*lr*λ) - (lr*g)*u``
  (``lr*delta_j`` as ``((lr*g)*W2_j)*a'(z_j)``): DESIGN's values up to rounding,
  tested against a plain numpy implementation of the equations to 1e-9 over
  4800 samples. tanh, sin and cos are the kernels' own float64 implementations
  (|error| < 5e-16), not libm: see the kernels module. A frozen model
  (``learn`` 0) still predicts, for ``stats()["error_rms"]``.
* **Blow-ups.** A non-finite value anywhere in the weights makes the generated
  sample non-finite (the kernels' tanh maps ±inf to NaN), so the kernel checks
  y[t] every sample. On a blow-up it restores the *last good snapshot* — the
  weights at the most recent snapshot point (every ``SNAPSHOT_SECONDS`` =
  0.25 s, counted in samples) that closed an interval free of blow-ups — and
  regenerates y[t] from it. A further blow-up before the next snapshot point
  shows that the snapshot is on a doomed path too: then the seed's initial
  weights are restored (and become the snapshot). Cascades are kept (T heard
  only finite input, G only finite output). Every event counts once in
  ``stats()["blowups"]``; fallbacks to the seed count in ``seed_restores``.
  ``set_state`` with weights makes them the new good snapshot.
  When does it blow up? With ridge 0 even lr 50 does not: the output tanh
  saturates and the gradient vanishes. The weight decay factor ``1 - 2*lr*λ``
  below -1 (e.g. lr 50 with λ ≥ 0.02) makes the weights grow geometrically
  until they overflow: that regime blows up, recovers and blows up again.
* **Non-finite input** samples are replaced by 0 and counted
  (``nonfinite_inputs``).
* ``act_mix`` m_j = 0 uses ``a_j = tanh(z_j)`` without evaluating the sine
  (the same value; it only avoids turning an already infinite z into NaN twice).
* ``reset`` re-draws the weights and zeroes the cascades; parameters (lr,
  ridge, learn, act_mix, interp) and the event counters are kept.
* The kernels need no scratch sized by the block length, so ``process``
  takes any number of frames in one call (there is nothing to chunk);
  ``max_block`` is kept as the agent's nominal block size (Model contract).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from anamnesis.agents.models import _autoregnn_kernels as K
from anamnesis.agents.models.base import ParamSpec, check_block, check_size

#: Where set_param's scalar parameters live in the kernels' parameter arrays.
_PRM_ROWS = {"lr": 0, "ridge": 1, "learn": 2}
_LANE_ROWS = {"lr": K.LANE_LR, "ridge": K.LANE_RIDGE, "learn": K.LANE_LEARN}

MAX_INPUT_SIZE = 32    # c_32 = exp(-2**-32): longer cascades would be frozen
MAX_HIDDEN_SIZE = 128
MAX_SEED = 2**63 - 1
SNAPSHOT_SECONDS = 0.25


def cascade_coefficients(input_size: int) -> np.ndarray:
    """Return (2, n): ``c_k = exp(-1/2**k)`` for k = 1..n in row 0 and ``1 - c_k`` in row 1."""
    k = np.arange(1, input_size + 1, dtype=np.float64)
    c = np.exp(-1.0 / 2.0 ** k)
    return np.ascontiguousarray(np.stack([c, 1.0 - c]))


def initial_weights(seed: int, input_size: int, hidden_size: int,
                    rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The seed's initial W1 (h, n), b1 (h), W2 (h), b2 (1), drawn in that order, uniform in [-1, 1].

    With ``rng`` given, draw from it (AutoRegNN2's second set) instead of a new generator.
    """
    if rng is None:
        rng = np.random.default_rng(seed)
    W1 = rng.uniform(-1.0, 1.0, (hidden_size, input_size))
    b1 = rng.uniform(-1.0, 1.0, hidden_size)
    W2 = rng.uniform(-1.0, 1.0, hidden_size)
    b2 = rng.uniform(-1.0, 1.0, 1)
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}


def _check_seed(seed: object) -> int:
    return check_size("seed", seed, 0, MAX_SEED)


def _check_out(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape)
    if not isinstance(out, np.ndarray) or out.dtype != np.float64:
        raise ValueError("out must be a float64 numpy array")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}; got {out.shape}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be C-contiguous and writeable")
    return out


def _contiguous(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _param_specs(hidden_size: int) -> dict[str, ParamSpec]:
    return {
        "lr": ParamSpec(
            "lr", 0.1, 0.0, 50.0, unit="", scale="log", per_sample=True,
            description="learning rate: step size of the per-sample gradient step; "
                        "around 1 learning turns chaotic; with 2*lr*ridge > 2 the weights "
                        "diverge (blow-ups, recovered)"),
        "ridge": ParamSpec(
            "ridge", 1e-4, 0.0, 1.0, unit="", scale="log", per_sample=True,
            description="ridge λ: weight of the L2 penalty on W1 and W2 that pulls the "
                        "weights towards zero and tames chaotic learning"),
        "learn": ParamSpec(
            "learn", 1, 0, 1, kind="bool",
            description="1 = learn every sample, 0 = freeze the weights (keep generating)"),
        "act_mix": ParamSpec(
            "act_mix", np.zeros(hidden_size), 0.0, 1.0, kind="array", size=hidden_size,
            description="activation of each hidden neuron: 0 = tanh, 1 = sine, between = "
                        "a mix (a scalar sets every neuron)"),
    }


def modulations(mod: object, specs: Mapping[str, ParamSpec]) -> list[tuple[str, ParamSpec, object]]:
    """``(name, spec, values)`` of each per-sample modulation in ``mod`` (a ``None`` value
    is skipped); ``ValueError`` for anything else than a mapping of per-sample parameters."""
    if not isinstance(mod, Mapping):
        raise ValueError("mod must map parameter names to per-sample arrays")
    out = []
    for name, values in mod.items():
        spec = specs.get(name)
        if spec is None or not spec.per_sample:
            per_sample = ", ".join(k for k, v in specs.items() if v.per_sample)
            raise ValueError(f"cannot modulate {name!r} per sample; "
                             f"per-sample parameters: {per_sample}")
        if values is not None:
            out.append((name, spec, values))
    return out


def spec_of(specs: Mapping[str, ParamSpec], name: str, kind: str) -> ParamSpec:
    """The spec of parameter ``name`` of a ``kind`` model; ``ValueError`` naming the known ones."""
    spec = specs.get(name)
    if spec is None:
        raise ValueError(f"unknown parameter {name!r} for {kind}; known: {', '.join(specs)}")
    return spec


def check_sizes(model: Any, input_size: object, hidden_size: object, sample_rate: object,
                max_block: object) -> tuple[int, int]:
    """Check and set ``model``'s input_size, hidden_size, sample_rate (Hz) and max_block
    (frames), and its snapshot interval (samples); returns (input_size, hidden_size)."""
    model.input_size = n = check_size("input_size", input_size, 1, MAX_INPUT_SIZE)
    model.hidden_size = h = check_size("hidden_size", hidden_size, 1, MAX_HIDDEN_SIZE)
    model.sample_rate = check_size("sample_rate", sample_rate, 1000, 768000)
    model.max_block = check_size("max_block", max_block, 1, 1 << 20)
    model.snapshot_interval = max(1, int(round(model.SNAPSHOT_SECONDS * model.sample_rate)))
    return n, h


def _split_weights(flat: object, keys: Sequence[str], shapes: Mapping[str, tuple[int, ...]]
                   ) -> dict[str, np.ndarray]:
    """Cut a flat weight vector into the arrays named ``keys`` (row-major), checking its length."""
    try:
        vec = np.asarray(flat, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("weights must be an array of numbers") from None
    sizes = [int(np.prod(shapes[k])) for k in keys]
    if vec.shape != (sum(sizes),):
        raise ValueError(f"weights must have shape ({sum(sizes)},); got {vec.shape}")
    out, pos = {}, 0
    for key, size in zip(keys, sizes, strict=False):
        out[key] = vec[pos:pos + size].reshape(shapes[key])
        pos += size
    return out


def _check_state_keys(state: Mapping[str, object], known: Sequence[str]) -> None:
    if not isinstance(state, Mapping):
        raise ValueError("state must be a mapping of name to array")
    unknown = sorted(set(state) - set(known))
    if unknown:
        raise ValueError(f"unknown state key(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(known)}")


def _check_array(name: str, value: object, shape: tuple[int, ...],
                 lo: float = -math.inf, hi: float = math.inf) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"state {name!r} must be an array of numbers") from None
    if arr.shape != shape:
        raise ValueError(f"state {name!r} must have shape {shape}; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"state {name!r} must be finite")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"state {name!r} must be in [{lo:g}, {hi:g}]")
    return arr


def _stages(C: np.ndarray, n: int, a: int) -> np.ndarray:
    """Cascade stages 1..n of agent a (copy 0) from a (2, m, h, A) view; stage k is at
    [k % 2, k // 2] (the kernels keep odd and even stages apart; see the kernels module)."""
    out = np.empty(n)
    out[0::2] = C[0, :(n + 1) // 2, 0, a]
    out[1::2] = C[1, :n // 2, 0, a]
    return out


def _set_stages(C: np.ndarray, value: np.ndarray, a: int) -> None:
    """Write stages 1..n of agent a into every copy j of a (2, m, h, A) view."""
    n = len(value)
    C[0, :(n + 1) // 2, :, a] = value[0::2, None]
    C[1, :n // 2, :, a] = value[1::2, None]


class _Lanes:
    """Named views into the flat arrays of a bank of ``A`` networks (layout: kernels module)."""

    def __init__(self, n: int, h: int, A: int) -> None:
        self.n, self.h, self.A = n, h, A
        self.L = h * A
        self.n_params = A * (n * h + 2 * h + 1)
        self.shapes = {"W1": (h, n), "b1": (h,), "W2": (h,), "b2": (1,), "act_mix": (h,),
                       "cascade_T": (n,), "cascade_G": (n,)}

    def weights(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """(n, h, A), (h, A), (h, A), (A,) views of theta's W1, b1, W2, b2."""
        n, h, A, L = self.n, self.h, self.A, self.L
        return {"W1": theta[:n * L].reshape(n, h, A), "b1": theta[n * L:(n + 1) * L].reshape(h, A),
                "W2": theta[(n + 1) * L:(n + 2) * L].reshape(h, A), "b2": theta[(n + 2) * L:]}

    def get(self, theta: np.ndarray, a: int) -> dict[str, np.ndarray]:
        v = self.weights(theta)
        return {"W1": np.ascontiguousarray(v["W1"][:, :, a].T), "b1": v["b1"][:, a].copy(),
                "W2": v["W2"][:, a].copy(), "b2": v["b2"][a:a + 1].copy()}

    def put(self, theta: np.ndarray, a: int, weights: Mapping[str, np.ndarray]) -> None:
        v = self.weights(theta)
        for key, value in weights.items():
            if key == "W1":
                v["W1"][:, :, a] = value.T
            elif key == "b2":
                v["b2"][a] = value[0]
            else:
                v[key][:, a] = value

    def tiled(self, arr: np.ndarray) -> np.ndarray:
        """A tiled (…, L) array as (…, h, A): element [..., j, a] is agent a's copy j."""
        return arr.reshape(arr.shape[:-1] + (self.h, self.A))


class AutoRegNN:
    """One AutoRegNN agent: ``process(x)`` learns from x and plays its own prediction.

    ``input_size`` n (cascade length, 1..32), ``hidden_size`` h (1..128),
    ``seed`` (>= 0) for the initial weights, ``sample_rate`` Hz (the maths does
    not depend on it; it sets the snapshot interval), ``max_block`` frames
    (nominal block size).
    """

    kind = "autoregnn"
    input_channels = 1
    WEIGHT_KEYS = ("W1", "b1", "W2", "b2")
    STATE_KEYS = ("W1", "b1", "W2", "b2", "act_mix", "cascade_T", "cascade_G")
    SNAPSHOT_SECONDS = SNAPSHOT_SECONDS

    def __init__(self, input_size: int = 12, hidden_size: int = 8, seed: int = 0,
                 sample_rate: int = 48000, max_block: int = 4096) -> None:
        n, h = check_sizes(self, input_size, hidden_size, sample_rate, max_block)
        self.seed = _check_seed(seed)
        self._specs = _param_specs(h)
        self._prm = np.array([self._specs["lr"].default, self._specs["ridge"].default, 1.0])
        self._lanes = _Lanes(n, h, 1)
        self._coef = cascade_coefficients(n)
        self._theta = np.zeros(self._lanes.n_params)
        self._snap = np.zeros(self._lanes.n_params)
        self._init = np.zeros(self._lanes.n_params)
        self._mix = np.zeros(h)
        self._casc = np.zeros((2, 2, (n + 1) // 2, 1))   # T and G (kernels module)
        self._ctr = np.zeros((K.N_CTR, 1), dtype=np.int64)
        self._ctr[K.CTR_INTERVAL] = self.snapshot_interval
        self._work = np.zeros((K.N_WORK, h))
        self._err2 = np.zeros(1)
        self._error_rms = 0.0
        self._no_mod = np.zeros(0)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Re-draw the weights from ``seed`` (default: the current seed) and zero the cascades."""
        if seed is not None:
            self.seed = _check_seed(seed)
        w = initial_weights(self.seed, self.input_size, self.hidden_size)
        for arr in (self._init, self._theta, self._snap):
            self._lanes.put(arr, 0, w)
        self._casc[:] = 0.0
        self._ctr[K.CTR_UNTIL_SNAPSHOT] = self.snapshot_interval
        self._ctr[K.CTR_INTERVAL_BLOWUPS] = 0

    def process(self, x: np.ndarray, mod: Mapping[str, object] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Learn from and play ``x`` (frames,) float64; returns the output (frames,), |y| <= 1.

        ``mod`` maps "lr" and/or "ridge" to arrays of ``frames`` values
        (audio-rate modulation). With float64 C-contiguous ``x`` and ``out``
        given and no ``mod``, no array is allocated.
        """
        x = _contiguous(check_block(x))
        frames = x.shape[0]
        out = _check_out(out, (frames,))
        lr_mod = ridge_mod = self._no_mod
        if mod:
            for name, spec, values in modulations(mod, self._specs):
                arr = _contiguous(spec.validate_block(values, frames))
                if name == "lr":
                    lr_mod = arr
                else:
                    ridge_mod = arr
        self._err2[0] = 0.0
        K.run_single(x, out, frames, lr_mod, ridge_mod, self._prm, self._theta, self._snap,
                     self._init, self._mix, self._casc, self._coef, self._ctr, self._work,
                     self._err2)
        if frames:
            self._error_rms = math.sqrt(self._err2[0] / frames)
        return out

    def set_param(self, name: str, value: object) -> None:
        """Set ``lr``, ``ridge``, ``learn`` or ``act_mix`` (ValueError naming the problem).

        Takes effect from the next ``process`` call.
        """
        spec = spec_of(self._specs, name, self.kind)
        self.apply_param(name, spec.validate(value))

    def apply_param(self, name: str, value: object) -> None:
        """Apply a value :meth:`set_param` has checked (its spec's ``validate``): no check,
        no allocation — what the engine calls on the audio thread."""
        if name == "act_mix":
            self._mix[:] = value
        else:
            self._prm[_PRM_ROWS[name]] = value  # type: ignore[assignment]

    def params(self) -> dict[str, object]:
        """Current parameter values (act_mix as a fresh array of hidden_size)."""
        return {"lr": float(self._prm[0]), "ridge": float(self._prm[1]),
                "learn": int(self._prm[2]), "act_mix": self._mix.copy()}

    def param_specs(self) -> dict[str, ParamSpec]:
        """Name -> ParamSpec (range, unit, lin/log scale, description, per-sample flag)."""
        return dict(self._specs)

    def get_state(self) -> dict[str, np.ndarray]:
        """Float64 copies of W1 (h, n), b1 (h), W2 (h), b2 (1), act_mix (h), cascade_T (n), cascade_G (n)."""
        state = self._lanes.get(self._theta, 0)
        state["act_mix"] = self._mix.copy()
        state["cascade_T"] = _stages(self._casc[0][..., None], self.input_size, 0)
        state["cascade_G"] = _stages(self._casc[1][..., None], self.input_size, 0)
        return state

    def set_state(self, state: Mapping[str, object]) -> None:
        """Set any subset of ``get_state()``'s arrays (all checked before any is applied).

        New weights become the last good snapshot (see the module doc).
        """
        _check_state_keys(state, self.STATE_KEYS)
        shapes = self._lanes.shapes
        checked = {k: _check_array(k, v, shapes[k], *((0.0, 1.0) if k == "act_mix" else ()))
                   for k, v in state.items()}
        weights = {k: v for k, v in checked.items() if k in self.WEIGHT_KEYS}
        self._lanes.put(self._theta, 0, weights)
        for key, value in checked.items():
            if key == "act_mix":
                self._mix[:] = value
            elif key in ("cascade_T", "cascade_G"):
                _set_stages(self._casc[0 if key == "cascade_T" else 1][..., None], value, 0)
        if weights:
            self._snap[:] = self._theta
            self._ctr[K.CTR_INTERVAL_BLOWUPS] = 0

    def weights(self) -> np.ndarray:
        """The flat weight vector: W1 (row-major, h x n), b1, W2, b2 concatenated."""
        s = self._lanes.get(self._theta, 0)
        return np.concatenate([s[k].ravel() for k in self.WEIGHT_KEYS])

    def set_weights(self, flat: object) -> None:
        """Set the weights from a flat vector laid out as ``weights()`` (validated)."""
        self.set_state(_split_weights(flat, self.WEIGHT_KEYS, self._lanes.shapes))

    def stats(self) -> dict[str, float]:
        """Counters since construction and the prediction error of the last block.

        ``blowups``: non-finite events recovered; ``seed_restores``: recoveries
        that fell back to the seed's weights; ``nonfinite_inputs``: input
        samples replaced by 0; ``error_rms``: RMS of the prediction error
        e = yhat - x over the last processed block (linear, full scale 1);
        ``samples``: samples processed.
        """
        ctr = self._ctr[:, 0]
        return {"blowups": int(ctr[K.CTR_BLOWUPS]), "seed_restores": int(ctr[K.CTR_SEED_RESTORES]),
                "nonfinite_inputs": int(ctr[K.CTR_NONFINITE]),
                "error_rms": float(self._error_rms), "samples": int(ctr[K.CTR_SAMPLES])}


class AutoRegNN2:
    """AutoRegNN2: sets a and b learn inputs x[:, 0] and x[:, 1]; the output is generated with
    ``θ = (1-α) θa + α θb`` (every weight and bias), α = ``interp``, and one G cascade.

    Seeding: set a is drawn first from ``default_rng(seed)`` (so it equals
    ``AutoRegNN(seed=seed)``'s initial weights), set b continues from the same
    generator. ``act_mix`` is shared by both sets. With α = 0 the output is
    exactly that of an AutoRegNN with the same seed fed x[:, 0].
    """

    kind = "autoregnn2"
    input_channels = 2
    WEIGHT_KEYS = ("a.W1", "a.b1", "a.W2", "a.b2", "b.W1", "b.b1", "b.W2", "b.b2")
    STATE_KEYS = WEIGHT_KEYS + ("act_mix", "a.cascade_T", "b.cascade_T", "cascade_G")
    SNAPSHOT_SECONDS = SNAPSHOT_SECONDS

    def __init__(self, input_size: int = 12, hidden_size: int = 8, seed: int = 0,
                 sample_rate: int = 48000, max_block: int = 4096) -> None:
        n, h = check_sizes(self, input_size, hidden_size, sample_rate, max_block)
        self.seed = _check_seed(seed)
        self._specs = _param_specs(h)
        self._specs["interp"] = ParamSpec(
            "interp", 0.5, 0.0, 1.0, per_sample=True,
            description="α: the generator uses (1-α)·θa + α·θb; 0 = set a (input 1), 1 = set b")
        self._lane = np.zeros((K.N_LANE, 2))   # lr, ridge, learn of each set (always equal)
        self._lane[K.LANE_LR] = self._specs["lr"].default
        self._lane[K.LANE_RIDGE] = self._specs["ridge"].default
        self._lane[K.LANE_LEARN] = 1.0
        self._interp = 0.5
        self._pair = _Lanes(n, h, 2)
        self._one = _Lanes(n, h, 1)
        self._coef = cascade_coefficients(n)
        self._theta = np.zeros(self._pair.n_params)
        self._snap = np.zeros(self._pair.n_params)
        self._init = np.zeros(self._pair.n_params)
        self._theta_mix = np.zeros(self._one.n_params)
        self._mix2 = np.zeros(2 * h)
        self._mix1 = np.zeros(h)
        # T of sets a and b, tiled ([1] unused: the generator has its own G below)
        self._casc_t = np.zeros((2, 2, (n + 1) // 2, 2 * h))
        self._casc_g = np.zeros((2, (n + 1) // 2, h))       # G, tiled
        self._ctr = np.zeros((K.N_CTR, 2), dtype=np.int64)   # column 0: generator events
        self._ctr[K.CTR_INTERVAL] = self.snapshot_interval
        self._work = np.zeros((K.N_WORK, 2 * h))
        self._work_g = np.zeros((K.N_WORK, h))
        self._err2 = np.zeros(2)
        self._error_rms = 0.0
        self._no_mod = np.zeros((0, 0))
        self._no_interp = np.zeros(0)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Re-draw both sets from ``seed`` (a first, then b) and zero the three cascades."""
        if seed is not None:
            self.seed = _check_seed(seed)
        rng = np.random.default_rng(self.seed)
        for s in range(2):
            w = initial_weights(self.seed, self.input_size, self.hidden_size, rng=rng)
            for arr in (self._init, self._theta, self._snap):
                self._pair.put(arr, s, w)
        self._casc_t[:] = 0.0
        self._casc_g[:] = 0.0
        self._ctr[K.CTR_UNTIL_SNAPSHOT] = self.snapshot_interval
        self._ctr[K.CTR_INTERVAL_BLOWUPS] = 0

    def process(self, x: np.ndarray, mod: Mapping[str, object] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Learn from ``x`` (frames, 2) and play the interpolated generator; returns (frames,).

        ``mod`` maps "lr", "ridge" and/or "interp" to arrays of ``frames`` values.
        ``stats()["error_rms"]`` is the RMS over both sets' prediction errors.
        """
        x = _contiguous(check_block(x, channels=2))
        frames = x.shape[0]
        out = _check_out(out, (frames,))
        mods = {"lr": self._no_mod, "ridge": self._no_mod, "interp": self._no_interp}
        if mod:
            for name, spec, values in modulations(mod, self._specs):
                arr = _contiguous(spec.validate_block(values, frames))
                mods[name] = arr if name == "interp" else arr.reshape(frames, 1)
        self._err2[:] = 0.0
        K.run_pair(x, out, frames, mods["lr"], mods["ridge"], mods["interp"], self._lane,
                   self._interp, self._theta, self._snap, self._init, self._mix2, self._mix1,
                   self._casc_t, self._casc_g, self._coef, self._ctr, self._work, self._work_g,
                   self._theta_mix, self._err2)
        if frames:
            self._error_rms = math.sqrt((self._err2[0] + self._err2[1]) / (2 * frames))
        return out

    def set_param(self, name: str, value: object) -> None:
        """Set ``lr``, ``ridge``, ``learn``, ``act_mix`` or ``interp`` (ValueError if invalid)."""
        spec = spec_of(self._specs, name, self.kind)
        self.apply_param(name, spec.validate(value))

    def apply_param(self, name: str, value: object) -> None:
        """Apply a value :meth:`set_param` has checked: no check, no allocation (the
        engine calls it on the audio thread)."""
        if name == "act_mix":
            self._mix1[:] = value
            self._pair.tiled(self._mix2)[:] = self._mix1[:, None]
        elif name == "interp":
            self._interp = value
        else:
            self._lane[_LANE_ROWS[name]] = value  # type: ignore[assignment]

    def params(self) -> dict[str, object]:
        """Current parameter values (act_mix as a fresh array of hidden_size)."""
        return {"lr": float(self._lane[K.LANE_LR, 0]), "ridge": float(self._lane[K.LANE_RIDGE, 0]),
                "learn": int(self._lane[K.LANE_LEARN, 0]), "act_mix": self._mix1.copy(),
                "interp": float(self._interp)}

    def param_specs(self) -> dict[str, ParamSpec]:
        """Name -> ParamSpec (range, unit, lin/log scale, description, per-sample flag)."""
        return dict(self._specs)

    def get_state(self) -> dict[str, np.ndarray]:
        """Float64 copies of a.W1 … b.b2, act_mix, a.cascade_T, b.cascade_T, cascade_G."""
        state: dict[str, np.ndarray] = {}
        for s, prefix in enumerate("ab"):
            for key, value in self._pair.get(self._theta, s).items():
                state[f"{prefix}.{key}"] = value
        casc_t = self._pair.tiled(self._casc_t[0])
        state["act_mix"] = self._mix1.copy()
        state["a.cascade_T"] = _stages(casc_t, self.input_size, 0)
        state["b.cascade_T"] = _stages(casc_t, self.input_size, 1)
        state["cascade_G"] = _stages(self._one.tiled(self._casc_g), self.input_size, 0)
        return state

    def set_state(self, state: Mapping[str, object]) -> None:
        """Set any subset of ``get_state()``'s arrays (all checked before any is applied)."""
        _check_state_keys(state, self.STATE_KEYS)
        base = self._pair.shapes
        shapes = {f"{p}.{k}": base[k] for p in "ab" for k in ("W1", "b1", "W2", "b2")}
        shapes.update({"act_mix": base["act_mix"], "a.cascade_T": base["cascade_T"],
                       "b.cascade_T": base["cascade_T"], "cascade_G": base["cascade_G"]})
        checked = {k: _check_array(k, v, shapes[k], *((0.0, 1.0) if k == "act_mix" else ()))
                   for k, v in state.items()}
        casc_t = self._pair.tiled(self._casc_t[0])
        for s, prefix in enumerate("ab"):
            self._pair.put(self._theta, s, {k.split(".")[1]: v for k, v in checked.items()
                                            if k in self.WEIGHT_KEYS and k[0] == prefix})
        for key, value in checked.items():
            if key == "act_mix":
                self.set_param("act_mix", value)
            elif key == "a.cascade_T":
                _set_stages(casc_t, value, 0)
            elif key == "b.cascade_T":
                _set_stages(casc_t, value, 1)
            elif key == "cascade_G":
                _set_stages(self._one.tiled(self._casc_g), value, 0)
        if any(k in self.WEIGHT_KEYS for k in checked):
            self._snap[:] = self._theta
            self._ctr[K.CTR_INTERVAL_BLOWUPS] = 0

    def weights(self) -> np.ndarray:
        """The flat weight vector: a.W1 (row-major), a.b1, a.W2, a.b2, b.W1, … concatenated."""
        s = self.get_state()
        return np.concatenate([s[k].ravel() for k in self.WEIGHT_KEYS])

    def set_weights(self, flat: object) -> None:
        """Set both sets' weights from a flat vector laid out as ``weights()`` (validated)."""
        shapes = {f"{p}.{k}": self._pair.shapes[k] for p in "ab" for k in ("W1", "b1", "W2", "b2")}
        self.set_state(_split_weights(flat, self.WEIGHT_KEYS, shapes))

    def stats(self) -> dict[str, float]:
        """As AutoRegNN.stats(); error_rms over both sets' prediction errors; seed_restores
        counts restored sets."""
        ctr = self._ctr[:, 0]
        return {"blowups": int(ctr[K.CTR_BLOWUPS]), "seed_restores": int(ctr[K.CTR_SEED_RESTORES]),
                "nonfinite_inputs": int(self._ctr[K.CTR_NONFINITE].sum()),
                "error_rms": float(self._error_rms), "samples": int(ctr[K.CTR_SAMPLES])}
