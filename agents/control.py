"""The asyncio-side facade of one agent: what OSC, OSCQuery, zeroconf and the
process use to read and steer it.

:class:`AgentControl` validates at the edge (``ParamSpec``), then posts to the
audio thread through the :class:`~anamnesis.agents.dsp.engine.AgentEngine` (commands for the
model; single stores for gain, mute and panic), and keeps the live value of
every parameter so readers never touch the model from this thread. Every
method runs on the event loop; none blocks it (state requests wait for a block
boundary asynchronously, file work goes to the executor).

Listeners (:meth:`AgentControl.add_listener`) are called on the loop with
``(name, value)`` after every accepted :meth:`set` — also when the value is
the one it already had, so a client that sets and listens always hears back —
and for every parameter a :meth:`recall` or resume changes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from anamnesis.agents.dsp.engine import AgentEngine, Reset, SetParam
from anamnesis.agents.models.base import Model, ParamSpec
from anamnesis.agents.snapshots import Snapshot, SnapshotStore, check_name

log = logging.getLogger(__name__)

Listener = Callable[[str, object], None]

GAIN_SPEC = ParamSpec(
    "gain", 0.0, -60.0, 12.0, unit="dB", scale="lin",
    description="output gain before the limiter (dB); ramped over 10 ms")
MUTE_SPEC = ParamSpec(
    "mute", 0, 0, 1, kind="bool",
    description="1 = fade the speaker out over 10 ms (learning goes on), 0 = fade back in")
SAFETY_PARAMS = ("gain", "mute")
MAX_SEED = 2**63 - 1


def _copy(value: object) -> object:
    return value.copy() if isinstance(value, np.ndarray) else value


class AgentControl:
    """Parameters, panic, reset, weights, snapshots and telemetry of one agent.

    ``engine`` owns the model and the safety chain; ``store`` (optional) holds
    snapshots; ``backend_stats`` returns the audio backend's counters (xruns).
    Construct it before the audio clock starts (it reads the model's state
    layout directly).
    """

    def __init__(self, engine: AgentEngine, *, agent_id: str,
                 store: SnapshotStore | None = None,
                 backend_stats: Callable[[], Mapping[str, float]] | None = None) -> None:
        self._engine = engine
        self._model: Model = engine.model
        self._store = store
        self._backend_stats = backend_stats
        self.agent_id = agent_id
        self.model_kind: str = self._model.kind
        self.sample_rate: int = engine.sample_rate
        self.block: int = engine.block
        self._model_specs = dict(self._model.param_specs())
        clash = set(self._model_specs) & set(SAFETY_PARAMS)
        if clash:
            raise ValueError(f"model parameter(s) {sorted(clash)} clash with the agent's own")
        self._specs = {**self._model_specs, "gain": GAIN_SPEC, "mute": MUTE_SPEC}
        self._values: dict[str, object] = {k: _copy(v) for k, v in self._model.params().items()}
        self._values["gain"] = engine.safety.gain_db
        self._values["mute"] = int(engine.safety.muted)
        self._listeners: list[Listener] = []
        state = self._model.get_state()
        self._state_layout = {k: np.shape(v) for k, v in state.items()}
        keys = tuple(getattr(self._model, "WEIGHT_KEYS", ()))
        self._weight_layout: list[tuple[str, tuple[int, ...], int, int]] = []
        pos = 0
        for key in keys:
            shape = self._state_layout[key]
            size = int(np.prod(shape))
            self._weight_layout.append((key, shape, pos, pos + size))
            pos += size
        self._n_weights = pos

    # --- parameters -------------------------------------------------------------------
    def specs(self) -> dict[str, ParamSpec]:
        """Every parameter: the model's, plus ``gain`` (dB, -60..+12) and ``mute`` (bool)."""
        return dict(self._specs)

    def values(self) -> dict[str, object]:
        """The live value of every parameter (arrays as copies)."""
        return {k: _copy(v) for k, v in self._values.items()}

    def _spec(self, name: str) -> ParamSpec:
        spec = self._specs.get(name)
        if spec is None:
            spec = next((s for s in self._specs.values() if name in s.aliases), None)
        if spec is None:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(self._specs)}")
        return spec

    def set(self, name: str, value: object, index: int | None = None) -> object:
        """Validate and apply one parameter; return the normalised value.

        ``index`` sets one element of an array parameter (0-based). Raises
        ``ValueError`` with a clear message for an unknown name, a bad value or
        index, or a full command queue; the value is then unchanged.
        """
        spec = self._spec(name)
        name = spec.name                 # an alias (``lr`` of Unlearn's λ) sets its parameter
        if index is not None:
            value = self._with_element(spec, value, index)
        normalised = spec.validate(value)
        if name == "gain":
            self._engine.safety.set_gain_db(float(normalised))  # type: ignore[arg-type]
        elif name == "mute":
            self._engine.safety.set_mute(bool(normalised))
        else:
            self._engine.post(SetParam(name, _copy(normalised)))
        self._values[name] = normalised
        self._notify(name, normalised)
        return _copy(normalised)

    def _with_element(self, spec: ParamSpec, value: object, index: object) -> np.ndarray:
        if spec.kind != "array":
            raise ValueError(f"{spec.name} is not an array parameter; it takes no index")
        size = np.size(self._values[spec.name])
        if (isinstance(index, bool) or not isinstance(index, (int, np.integer))
                or not 0 <= int(index) < size):
            raise ValueError(f"{spec.name} index must be a whole number in [0, {size - 1}]; "
                             f"got {index!r}")
        element = ParamSpec(f"{spec.name}[{int(index)}]", 0.0, spec.minimum, spec.maximum,
                            unit=spec.unit).validate(value)
        arr = np.array(self._values[spec.name], dtype=np.float64)
        arr[int(index)] = element
        return arr

    def _notify(self, name: str, value: object) -> None:
        for callback in list(self._listeners):
            try:
                callback(name, _copy(value))
            except Exception:  # one broken listener must not stop the others or the set
                log.exception("listener %r failed on %s", callback, name)

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(name, value)`` on the loop for every value change; returns
        a function that unsubscribes it."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)
        return unsubscribe

    # --- panic, reset -------------------------------------------------------------------
    def panic(self) -> None:
        """Fade the speaker to exact silence within 50 ms; it stays silent until :meth:`unpanic`.
        Works even when the command queue is full."""
        self._engine.safety.panic()
        log.warning("agent %s: panic", self.agent_id)

    def unpanic(self) -> None:
        """Fade the speaker back in (250 ms)."""
        self._engine.safety.unpanic()
        log.info("agent %s: unpanic", self.agent_id)

    @property
    def panicked(self) -> bool:
        return self._engine.safety.panicked

    def reset(self, seed: int | None = None) -> None:
        """Re-initialise the learnt state (from ``seed``, or the model's current seed)."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or not 0 <= int(seed) <= MAX_SEED):
            raise ValueError(f"seed must be a whole number >= 0; got {seed!r}")
        self._engine.post(Reset(None if seed is None else int(seed)))

    # --- weights and state ------------------------------------------------------------
    @property
    def n_weights(self) -> int:
        """Length of the flat weight vector."""
        return self._n_weights

    async def get_weights(self) -> np.ndarray:
        """The flat weight vector (``model.WEIGHT_KEYS`` concatenated), read at a block boundary."""
        keys = [k for k, *_ in self._weight_layout]

        def read(model: Model) -> dict[str, np.ndarray]:
            state = model.get_state()
            return {k: np.array(state[k], dtype=np.float64) for k in keys}
        state = await self._engine.call(read)
        if not keys:
            return np.zeros(0)
        return np.concatenate([state[k].ravel() for k in keys])

    async def set_weights(self, flat: object) -> None:
        """Replace the weights with ``flat`` at a block boundary; learning goes on from
        there. ``ValueError`` on a wrong length or a non-finite value."""
        try:
            vec = np.array(flat, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError("weights must be numbers") from None
        if vec.size != self._n_weights:
            raise ValueError(f"weights must have {self._n_weights} values; got {vec.size}")
        if not np.all(np.isfinite(vec)):
            raise ValueError("weights must be finite")
        update = {k: vec[a:b].reshape(shape) for k, shape, a, b in self._weight_layout}
        await self._engine.call(lambda model: model.set_state(update))

    async def read_state(self) -> dict[str, np.ndarray]:
        """A copy of the model's full state, read at a block boundary."""
        return await self._engine.call(
            lambda model: {k: np.array(v) for k, v in model.get_state().items()})

    # --- snapshots --------------------------------------------------------------------
    def _require_store(self) -> SnapshotStore:
        if self._store is None:
            raise ValueError("this agent has no state directory")
        return self._store

    async def snapshot(self, name: str) -> None:
        """Save the model state and parameters as snapshot ``name`` (atomic write)."""
        store = self._require_store()
        check_name(name)
        state = await self.read_state()
        await store.save(name, state, self.values())
        log.info("agent %s: snapshot %r saved", self.agent_id, name)

    async def recall(self, name: str) -> None:
        """Load snapshot ``name`` (state and parameters); ``ValueError`` if unknown or corrupt."""
        store = self._require_store()
        check_name(name)
        snap = await store.load(name)
        await self.apply_snapshot(snap, what=f"snapshot {name!r}")
        log.info("agent %s: snapshot %r recalled", self.agent_id, name)

    def snapshot_names(self) -> list[str]:
        """Names of the saved snapshots."""
        return self._store.names() if self._store is not None else []

    async def autosave(self) -> None:
        """Write the autosave (state and parameters) if there is a state directory."""
        if self._store is None:
            return
        await self._store.save_autosave(await self.read_state(), self.values())

    def _checked_snapshot(self, snap: Snapshot, what: str) -> tuple[dict, dict]:
        """Validate a snapshot against this model: state shapes and parameter values."""
        state: dict[str, np.ndarray] = {}
        for key, arr in snap.state.items():
            if key not in self._state_layout:
                raise ValueError(f"{what}: state {key!r} is not part of this {self.model_kind} "
                                 "model")
            if arr.shape == (1,) and self._state_layout[key] == ():
                arr = arr.reshape(())  # written as (1,) before 2026-12 (a 0-d array)
            if arr.shape != self._state_layout[key]:
                raise ValueError(f"{what}: state {key!r} has shape {arr.shape}; this model "
                                 f"needs {self._state_layout[key]} (different size?)")
            state[key] = arr
        params: dict[str, object] = {}
        for key, value in snap.params.items():
            spec = self._specs.get(key)
            if spec is None:
                log.warning("%s: ignoring unknown parameter %r", what, key)
                continue
            params[key] = spec.validate(value)
        return state, params

    async def apply_snapshot(self, snap: Snapshot, *, what: str = "snapshot") -> None:
        """Apply a loaded snapshot: state and model parameters at one block boundary,
        gain and mute through their ramps. ``ValueError`` if it does not fit this model."""
        state, params = self._checked_snapshot(snap, what)
        model_params = {k: v for k, v in params.items() if k not in SAFETY_PARAMS}

        def apply(model: Model) -> None:
            for key, value in model_params.items():
                model.set_param(key, value)
            if state:
                model.set_state(state)
        # Values change now, so a set() issued while we wait is queued after this
        # call and also wins in the values: model and values agree.
        for key, value in params.items():
            self._values[key] = value
        if "gain" in params:
            self._engine.safety.set_gain_db(float(params["gain"]))  # type: ignore[arg-type]
        if "mute" in params:
            self._engine.safety.set_mute(bool(params["mute"]))
        for key, value in params.items():
            self._notify(key, value)
        await self._engine.call(apply)

    # --- telemetry --------------------------------------------------------------------
    def telemetry(self) -> dict[str, float]:
        """The latest figures: levels (``rms``, ``peak``, ``in_rms``, ``in_peak``: linear,
        full scale 1), the model's stats (``error_rms``, ``blowups``, ...), ``xruns``,
        callback duration percentiles (``callback_p50_ms``, ``callback_p99_ms``), the
        safety chain's counters (``safety_nonfinite``, ``safety_limited``, ...), and
        ``panicked``/``muted`` (0/1)."""
        out: dict[str, float] = {}
        for key, value in self._model.stats().items():
            if isinstance(value, (int, float, np.integer, np.floating)):
                out[key] = float(value)
        out.update(self._engine.telemetry())
        out.setdefault("xruns", 0.0)
        if self._backend_stats is not None:
            out.update({k: float(v) for k, v in self._backend_stats().items()})
        for key, value in self._engine.safety.counters().items():
            out[f"safety_{key}"] = float(value)
        out["panicked"] = float(self.panicked)
        out["muted"] = float(self._engine.safety.muted)
        for key, value in out.items():
            if not math.isfinite(value):
                out[key] = 0.0
        return out

    def describe(self) -> dict[str, Any]:
        """Identity of the agent (for logs and the process's ready line)."""
        return {"id": self.agent_id, "model": self.model_kind, "sample_rate": self.sample_rate,
                "block": self.block, "weights": self._n_weights}
