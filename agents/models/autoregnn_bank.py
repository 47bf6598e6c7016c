"""AutoRegNNBank: A independent AutoRegNNs in lockstep, the agents as SIMD lanes.

The offline rehearsal's way to run 8–32 ``autoregnn`` agents of one shape
(:mod:`anamnesis.hub.clock.rehearse`): each column of the bank is bit-identical to
a separate :class:`~anamnesis.agents.models.autoregnn.AutoRegNN` of the same seed,
input and parameters — the kernels of :mod:`anamnesis.agents.models._autoregnn_kernels`
perform the same operations in the same order (tested). The equations, the
initialisation, the arithmetic and the blow-up recovery are
:mod:`anamnesis.agents.models.autoregnn`'s; agents are processed in parts of up to
``AutoRegNNBank.PART_AGENTS`` (at most :data:`MAX_AGENTS` agents in all), each part
over the whole block in one kernel call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from anamnesis.agents.models import _autoregnn_kernels as K
from anamnesis.agents.models.autoregnn import (
    MAX_HIDDEN_SIZE,
    MAX_INPUT_SIZE,
    SNAPSHOT_SECONDS,
    AutoRegNN,
    _check_array,
    _check_out,
    _check_seed,
    _check_state_keys,
    _contiguous,
    _Lanes,
    _param_specs,
    _set_stages,
    _split_weights,
    _stages,
    cascade_coefficients,
    initial_weights,
    modulations,
    spec_of,
)
from anamnesis.agents.models.base import ParamSpec, check_block, check_size

MAX_AGENTS = 4096


class _BankPart:
    """The state arrays of up to ``PART_AGENTS`` agents processed by one kernel call."""

    def __init__(self, n: int, h: int, A: int, a0: int, snapshot_interval: int,
                 specs: Mapping[str, ParamSpec]) -> None:
        self.a0, self.A = a0, A
        self.lanes = lanes = _Lanes(n, h, A)
        self.theta = np.zeros(lanes.n_params)
        self.snap = np.zeros(lanes.n_params)
        self.init = np.zeros(lanes.n_params)
        self.mix = np.zeros(lanes.L)
        self.casc = np.zeros((2, 2, (n + 1) // 2, lanes.L))   # T and G (kernels module)
        self.lane = np.zeros((K.N_LANE, A))
        self.lane[K.LANE_LR] = specs["lr"].default
        self.lane[K.LANE_RIDGE] = specs["ridge"].default
        self.lane[K.LANE_LEARN] = 1.0
        self.ctr = np.zeros((K.N_CTR, A), dtype=np.int64)
        self.ctr[K.CTR_INTERVAL] = snapshot_interval
        self.work = np.zeros((K.N_WORK, lanes.L))
        self.err2 = np.zeros(A)


class AutoRegNNBank:
    """``n_agents`` independent AutoRegNNs processed in lockstep, the agents as SIMD lanes.

    Column a of ``process``'s output is bit-identical to an ``AutoRegNN`` with
    seed ``seeds[a]`` given column a of the input and the same parameters.
    ``seeds``: None → 0, 1, …, n_agents-1; an int s → s, s+1, …; or a
    sequence of n_agents ints. Agents are processed in parts of up to
    ``PART_AGENTS``, each over the whole block in one kernel call, so that a
    part's state stays in the CPU's L1 cache (agents do not interact here; the
    hub routes audio between agents at block boundaries).
    """

    kind = "autoregnn_bank"
    WEIGHT_KEYS = AutoRegNN.WEIGHT_KEYS
    STATE_KEYS = AutoRegNN.STATE_KEYS
    SNAPSHOT_SECONDS = SNAPSHOT_SECONDS
    PART_AGENTS = 8

    def __init__(self, n_agents: int, input_size: int = 12, hidden_size: int = 8,
                 seeds: int | Sequence[int] | None = None, sample_rate: int = 48000,
                 max_block: int = 4096) -> None:
        self.n_agents = check_size("n_agents", n_agents, 1, MAX_AGENTS)
        self.input_size = check_size("input_size", input_size, 1, MAX_INPUT_SIZE)
        self.hidden_size = check_size("hidden_size", hidden_size, 1, MAX_HIDDEN_SIZE)
        self.sample_rate = check_size("sample_rate", sample_rate, 1000, 768000)
        self.max_block = check_size("max_block", max_block, 1, 1 << 20)
        A, n, h = self.n_agents, self.input_size, self.hidden_size
        if seeds is None:
            self.seeds = list(range(A))
        elif isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
            self.seeds = [_check_seed(int(seeds) + a) for a in range(A)]
        else:
            try:
                seeds = list(seeds)  # type: ignore[arg-type]
            except TypeError:
                raise ValueError(f"seeds must be None, an int or {A} ints; got {seeds!r}") from None
            if len(seeds) != A:
                raise ValueError(f"seeds must have {A} entries (one per agent); got {len(seeds)}")
            self.seeds = [_check_seed(s) for s in seeds]
        self.snapshot_interval = max(1, int(round(self.SNAPSHOT_SECONDS * self.sample_rate)))
        self._specs = _param_specs(h)
        self._coef = cascade_coefficients(n)
        self._parts = [_BankPart(n, h, min(self.PART_AGENTS, A - a0), a0, self.snapshot_interval,
                                 self._specs)
                       for a0 in range(0, A, self.PART_AGENTS)]
        self._error_rms = np.zeros(A)
        self._no_mod = np.zeros((0, 0))
        for a in range(A):
            self.reset(agent=a)

    # -- helpers ------------------------------------------------------------------------
    def _agent(self, agent: object) -> int:
        return check_size("agent", agent, 0, self.n_agents - 1)

    def _agents(self, agent: object) -> range:
        if agent is None:
            return range(self.n_agents)
        a = self._agent(agent)
        return range(a, a + 1)

    def _locate(self, a: int) -> tuple[_BankPart, int]:
        part = self._parts[a // self.PART_AGENTS]
        return part, a - part.a0

    # -- lifecycle ----------------------------------------------------------------------
    def reset(self, seed: int | None = None, agent: int | None = None) -> None:
        """Re-draw the weights of ``agent`` (None = every agent) from ``seed`` (default: its
        own seed) and zero its cascades. With ``agent=None`` an int seed s gives agent a s + a."""
        for a in self._agents(agent):
            if seed is not None:
                self.seeds[a] = _check_seed(seed + (a if agent is None else 0))
            w = initial_weights(self.seeds[a], self.input_size, self.hidden_size)
            part, i = self._locate(a)
            for arr in (part.init, part.theta, part.snap):
                part.lanes.put(arr, i, w)
            part.lanes.tiled(part.casc)[..., i] = 0.0
            part.ctr[K.CTR_UNTIL_SNAPSHOT, i] = self.snapshot_interval
            part.ctr[K.CTR_INTERVAL_BLOWUPS, i] = 0

    def process(self, x: np.ndarray, mod: Mapping[str, object] | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Learn from and play ``x`` (frames, n_agents) float64; returns (frames, n_agents), |y| <= 1.

        ``mod`` maps "lr" and/or "ridge" to (frames,) arrays (every agent) or
        (frames, n_agents) arrays (one column per agent). With float64
        C-contiguous ``x`` and ``out`` and no ``mod``, no array is allocated.
        """
        A = self.n_agents
        x = _contiguous(check_block(x, channels=A))
        frames = x.shape[0]
        out = _check_out(out, (frames, A))
        lr_mod = ridge_mod = self._no_mod
        if mod:
            for name, spec, values in modulations(mod, self._specs):
                arr = np.asarray(values, dtype=np.float64)
                if arr.ndim == 2 and arr.shape == (frames, A):
                    arr = _contiguous(arr)
                    spec.validate_block(arr.reshape(-1), arr.size)
                else:
                    arr = _contiguous(spec.validate_block(arr, frames)).reshape(frames, 1)
                if name == "lr":
                    lr_mod = arr
                else:
                    ridge_mod = arr
        for part in self._parts:
            part.err2[:] = 0.0
            K.run_bank(x, out, part.a0, frames, lr_mod, ridge_mod, part.lane, part.theta,
                       part.snap, part.init, part.mix, part.casc, self._coef, part.ctr,
                       part.work, part.err2)
            if frames:
                np.divide(part.err2, frames, out=part.err2)
                np.sqrt(part.err2, out=self._error_rms[part.a0:part.a0 + part.A])
        return out

    # -- parameters ---------------------------------------------------------------------
    def param_specs(self) -> dict[str, ParamSpec]:
        """Name -> ParamSpec (range, unit, lin/log scale, description); each is per agent."""
        return dict(self._specs)

    def set_param(self, name: str, value: object, agent: int | None = None) -> None:
        """Set parameter ``name`` of ``agent`` (None = every agent); ValueError if invalid."""
        v = spec_of(self._specs, name, self.kind).validate(value)
        for a in self._agents(agent):
            part, i = self._locate(a)
            if name == "act_mix":
                part.lanes.tiled(part.mix)[:, i] = v
            else:
                row = {"lr": K.LANE_LR, "ridge": K.LANE_RIDGE, "learn": K.LANE_LEARN}[name]
                part.lane[row, i] = float(v)  # type: ignore[arg-type]

    def params(self, agent: int | None = None) -> dict[str, object]:
        """Parameters of ``agent`` (as AutoRegNN.params()); with None, arrays over agents
        (lr, ridge, learn: (n_agents,); act_mix: (n_agents, hidden_size))."""
        if agent is None:
            each = [self.params(a) for a in range(self.n_agents)]
            return {"lr": np.array([p["lr"] for p in each]),
                    "ridge": np.array([p["ridge"] for p in each]),
                    "learn": np.array([p["learn"] for p in each], dtype=np.int64),
                    "act_mix": np.array([p["act_mix"] for p in each])}
        part, i = self._locate(self._agent(agent))
        return {"lr": float(part.lane[K.LANE_LR, i]), "ridge": float(part.lane[K.LANE_RIDGE, i]),
                "learn": int(part.lane[K.LANE_LEARN, i]),
                "act_mix": part.lanes.tiled(part.mix)[:, i].copy()}

    # -- state --------------------------------------------------------------------------
    def get_state(self, agent: int) -> dict[str, np.ndarray]:
        """Float64 copies of ``agent``'s W1 (h, n), b1 (h), W2 (h), b2 (1), act_mix (h),
        cascade_T (n), cascade_G (n)."""
        part, i = self._locate(self._agent(agent))
        state = part.lanes.get(part.theta, i)
        casc = part.lanes.tiled(part.casc)
        state["act_mix"] = part.lanes.tiled(part.mix)[:, i].copy()
        state["cascade_T"] = _stages(casc[0], self.input_size, i)
        state["cascade_G"] = _stages(casc[1], self.input_size, i)
        return state

    def set_state(self, state: Mapping[str, object], agent: int) -> None:
        """Set any subset of ``get_state()``'s arrays for ``agent``, all checked before any is
        applied (ValueError naming the key). New weights become its last good snapshot."""
        part, i = self._locate(self._agent(agent))
        _check_state_keys(state, self.STATE_KEYS)
        shapes = part.lanes.shapes
        checked = {k: _check_array(k, v, shapes[k], *((0.0, 1.0) if k == "act_mix" else ()))
                   for k, v in state.items()}
        weights = {k: v for k, v in checked.items() if k in self.WEIGHT_KEYS}
        part.lanes.put(part.theta, i, weights)
        casc = part.lanes.tiled(part.casc)
        for key, value in checked.items():
            if key == "act_mix":
                part.lanes.tiled(part.mix)[:, i] = value
            elif key in ("cascade_T", "cascade_G"):
                _set_stages(casc[0 if key == "cascade_T" else 1], value, i)
        if weights:
            part.lanes.put(part.snap, i, part.lanes.get(part.theta, i))
            part.ctr[K.CTR_INTERVAL_BLOWUPS, i] = 0

    def weights(self, agent: int) -> np.ndarray:
        """``agent``'s flat weight vector: W1 (row-major, h x n), b1, W2, b2 concatenated."""
        part, i = self._locate(self._agent(agent))
        s = part.lanes.get(part.theta, i)
        return np.concatenate([s[k].ravel() for k in self.WEIGHT_KEYS])

    def set_weights(self, flat: object, agent: int) -> None:
        """Set ``agent``'s weights from a flat vector laid out as ``weights()`` (validated)."""
        part, _ = self._locate(self._agent(agent))
        self.set_state(_split_weights(flat, self.WEIGHT_KEYS, part.lanes.shapes), agent)

    def stats(self, agent: int | None = None) -> dict[str, object]:
        """AutoRegNN.stats() of ``agent``; with None, arrays over agents (samples: an int)."""
        if agent is None:
            ctr = np.concatenate([part.ctr for part in self._parts], axis=1)
            return {"blowups": ctr[K.CTR_BLOWUPS].copy(),
                    "seed_restores": ctr[K.CTR_SEED_RESTORES].copy(),
                    "nonfinite_inputs": ctr[K.CTR_NONFINITE].copy(),
                    "error_rms": self._error_rms.copy(),
                    "samples": int(ctr[K.CTR_SAMPLES, 0])}
        a = self._agent(agent)
        part, i = self._locate(a)
        ctr = part.ctr[:, i]
        return {"blowups": int(ctr[K.CTR_BLOWUPS]), "seed_restores": int(ctr[K.CTR_SEED_RESTORES]),
                "nonfinite_inputs": int(ctr[K.CTR_NONFINITE]),
                "error_rms": float(self._error_rms[a]), "samples": int(ctr[K.CTR_SAMPLES])}
