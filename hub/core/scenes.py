"""Scenes and the hub's own snapshots: named sets of the agents' parameters and weights.

* A **scene** is every online adopted agent's parameters and weights under a name
  (:meth:`SceneBook.save_scene`); recalling it sends them back, agent by agent
  (``ok`` or why not); :meth:`SceneBook.interpolate` blends two scenes at ``t`` in
  [0, 1] — floats and weights linearly, integers and choices switching at one half —
  and applies the blend to the agents present in both.
* A scene also keeps the installation's weight couplings (:mod:`.couplings`) as they
  were saved; recalling it makes them the set again (blends leave couplings alone).
* A **hub snapshot** is one agent's weights and parameters kept in the hub's store
  (:meth:`SceneBook.save_snapshot`), written back by :meth:`SceneBook.recall_snapshot`.

Scenes live in the store (weights as snapshot blobs) and in memory. Loop-only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from anamnesis.hub.core.agent_calls import AgentCalls, is_number
from anamnesis.hub.core.errors import Conflict, HubError, NotFound
from anamnesis.hub.core.events import EventLog

#: Most scenes the hub keeps.
MAX_SCENES = 256


def check_name(name: object, what: str) -> str:
    """A scene's or snapshot's name: 1 to 64 printable characters and no '/'."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable() \
            or "/" in name:
        raise HubError(f"a {what} name has 1 to 64 printable characters and no '/'")
    return name


def lerp_value(a: object, b: object, t: float) -> object:
    """Blend two parameter values: floats and equal-length float lists linearly,
    ints rounded, anything else (choices) switches at t = 0.5."""
    if isinstance(a, float) and is_number(b):
        return (1.0 - t) * a + t * float(b)  # type: ignore[arg-type]
    if isinstance(a, int) and not isinstance(a, bool) and isinstance(b, int):
        return a if t < 0.5 else b
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
            and all(is_number(x) for x in a + b):
        return [(1.0 - t) * float(x) + t * float(y) for x, y in zip(a, b, strict=True)]
    return a if t < 0.5 else b


def snapshot_json(info: Any) -> dict[str, Any]:
    """A stored snapshot's description as the API shows it."""
    return {"id": info.id, "name": info.name, "model": info.model,
            "created": round(info.created_at, 3), "size": info.size, "sha256": info.sha256}


class SceneBook:
    """Scenes and hub snapshots (see the module docstring); ``known_ids()`` gives the
    agents a snapshot may belong to."""

    def __init__(self, calls: AgentCalls, events: EventLog, *,
                 known_ids: Callable[[], set[str]],
                 couplings: Callable[[], list[dict[str, Any]]] = list,
                 set_couplings: Callable[[list[Any]], Awaitable[None]] | None = None) -> None:
        self.calls = calls
        self.events = events
        self.scenes: dict[str, dict[str, Any]] = {}
        self._known_ids = known_ids
        self._couplings = couplings
        self._set_couplings = set_couplings

    @property
    def store(self) -> Any:
        return self.events.store

    async def load(self, names: list[str]) -> None:
        """Read the stored scenes ``names`` into memory (at start)."""
        from anamnesis.hub.core.store import decode_state

        for name in names:
            scene = await self.store.scene(name)
            agents: dict[str, Any] = {}
            for agent_id, entry in scene.agents.items():
                weights: list[float] = []
                model = None
                if entry.snapshot_id is not None:
                    info, data = await self.store.snapshot(entry.snapshot_id)
                    weights = [float(x) for x in decode_state(data).get("weights", np.zeros(0))]
                    model = info.model
                agents[agent_id] = {"model": model, "params": entry.params, "weights": weights}
            self.scenes[name] = {"name": name, "saved": scene.meta.get("saved", scene.updated_at),
                                 "agents": agents}
            if isinstance(scene.meta.get("couplings"), list):
                self.scenes[name]["couplings"] = scene.meta["couplings"]

    # -- hub snapshots ------------------------------------------------------------------

    async def list_snapshots(self, agent_id: str) -> list[dict[str, Any]]:
        """The snapshots the hub keeps of ``agent_id`` (oldest first; scenes' own not listed)."""
        infos = await self.store.snapshots(agent_id)
        if not infos and agent_id not in self._known_ids():
            raise NotFound(f"no agent {agent_id!r}")
        return [snapshot_json(i) for i in infos if not i.name.startswith("scene/")]

    async def save_snapshot(self, agent_id: str, name: object) -> dict[str, Any]:
        """Fetch the agent's weights (OSC ``/weights``) and parameters (``/state``) and keep
        them in the hub's store as snapshot ``name`` (a blob; same name: replaced)."""
        from anamnesis.hub.core.store import encode_state

        name = check_name(name, "snapshot")
        entry = self.calls.entry(agent_id, online=True)
        params = await self.calls.read_state(agent_id)
        weights = await self.calls.weights(agent_id)
        data = encode_state({"weights": np.asarray(weights, dtype=np.float64),
                             "params": np.asarray(json.dumps(params))})
        await self.store.save_snapshot(agent_id, name, entry.model or "unknown", data)
        info = await self.store.find_snapshot(agent_id, name)
        self.events.emit("snapshot_saved", f"snapshot {name} of {agent_id} kept by the hub",
                         agent=agent_id, snapshot=name)
        return dict(snapshot_json(info), params=params, weights=len(weights))

    async def recall_snapshot(self, agent_id: str, name: str) -> dict[str, Any]:
        """Write a kept snapshot back: its weights, then its parameters (remembered, as a
        scene's are); the agent's values after."""
        from anamnesis.hub.core.store import decode_state

        entry = self.calls.entry(agent_id, online=True)
        info = await self.store.find_snapshot(agent_id, name)
        if info is None or name.startswith("scene/"):
            raise NotFound(f"no snapshot {name!r} of {agent_id}")
        if entry.model and info.model != entry.model:
            raise Conflict(f"snapshot {name!r} is of a {info.model} model; {agent_id} runs "
                           f"{entry.model}")
        _, data = await self.store.snapshot(info.id)
        state = decode_state(data)
        params = json.loads(str(state["params"][()]))
        weights = await self.calls.set_weights(agent_id, [float(w) for w in state["weights"]])
        values = await self.calls.send_params(agent_id, params)
        self.calls.remember(agent_id, params)
        self.events.emit("snapshot_recalled", f"snapshot {name} recalled on {agent_id}",
                         agent=agent_id, snapshot=name)
        return {"agent": agent_id, "snapshot": name, "params": values, "weights": len(weights)}

    # -- scenes ---------------------------------------------------------------------------

    async def save_scene(self, name: object) -> dict[str, Any]:
        """Save every online adopted agent's parameters and weights under ``name``."""
        from anamnesis.hub.core.store import SceneAgent, encode_state

        name = check_name(name, "scene")
        if name not in self.scenes and len(self.scenes) >= MAX_SCENES:
            raise Conflict(f"at most {MAX_SCENES} scenes; delete one")
        agents: dict[str, Any] = {}
        for entry in self.calls.registry.entries():
            if entry.adopted and entry.online:
                params = await self.calls.read_state(entry.agent_id)
                agents[entry.agent_id] = {"model": entry.model, "params": params,
                                          "weights": await self.calls.weights(entry.agent_id)}
        saved = round(time.time(), 3)
        couplings = self._couplings()
        await self.store.save_scene(name, {
            agent_id: SceneAgent(params=part["params"], model=part["model"],
                                 state=encode_state({"weights": np.asarray(part["weights"])}))
            for agent_id, part in agents.items()}, meta={"saved": saved, "couplings": couplings})
        scene = {"name": name, "saved": saved, "agents": agents, "couplings": couplings}
        self.scenes[name] = scene
        self.events.emit("scene_saved", f"scene {name} saved ({len(agents)} agents)",
                         scene=name, agents=sorted(agents))
        return scene

    def get_scene(self, name: str) -> dict[str, Any]:
        """A saved scene (404 if unknown)."""
        if name not in self.scenes:
            raise NotFound(f"no scene {name!r}")
        return self.scenes[name]

    async def delete_scene(self, name: str) -> None:
        """Forget a scene."""
        self.get_scene(name)
        del self.scenes[name]
        await self.store.delete_scene(name)
        self.events.emit("scene_deleted", f"scene {name} deleted", scene=name)

    async def _apply(self, agents: dict[str, Any]) -> dict[str, Any]:
        done: dict[str, Any] = {}
        for agent_id, part in agents.items():
            entry = self.calls.registry.get(agent_id)
            if entry is None or not entry.online or not entry.adopted:
                done[agent_id] = "offline"
                continue
            weights = part.get("weights") or []
            if weights:
                self.calls.osc.send(entry.osc_peer, "/weights", *[float(w) for w in weights])
            params = dict(part.get("params", {}))
            try:
                await self.calls.send_params(agent_id, params)
                self.calls.remember(agent_id, params)
                done[agent_id] = "ok"
            except (HubError, TimeoutError) as exc:
                done[agent_id] = str(exc)
        return done

    async def recall_scene(self, name: str) -> dict[str, Any]:
        """Send a scene's parameters and weights to its agents; per agent ``ok`` or why not."""
        scene = self.get_scene(name)
        result = await self._apply(scene["agents"])
        couplings = "kept"
        if "couplings" in scene and self._set_couplings is not None:
            try:
                await self._set_couplings(scene["couplings"])
                couplings = "ok"
            except HubError as exc:      # an agent of a coupling is gone from the config
                couplings = str(exc)
        self.events.emit("scene_recalled", f"scene {name} recalled", scene=name, result=result,
                         couplings=couplings)
        return result

    async def interpolate(self, a: object, b: object, t: object) -> dict[str, Any]:
        """Blend scenes ``a`` and ``b`` at ``t`` in [0, 1] (0 = a) and apply the blend to
        the agents present in both: float parameters and weights linearly."""
        if not isinstance(a, str) or not isinstance(b, str):
            raise HubError("a and b must be scene names")
        if not is_number(t) or not 0.0 <= float(t) <= 1.0:
            raise HubError("t must be a number in [0, 1]")
        t = float(t)  # type: ignore[arg-type]
        sa, sb = self.get_scene(a), self.get_scene(b)
        blend: dict[str, Any] = {}
        for agent_id in sorted(set(sa["agents"]) & set(sb["agents"])):
            pa, pb = sa["agents"][agent_id], sb["agents"][agent_id]
            params = {k: lerp_value(v, pb["params"].get(k, v), t)
                      for k, v in pa["params"].items()}
            wa, wb = pa.get("weights") or [], pb.get("weights") or []
            weights = ([(1 - t) * x + t * y for x, y in zip(wa, wb, strict=True)]
                       if len(wa) == len(wb) else (wa if t < 0.5 else wb))
            blend[agent_id] = {"params": params, "weights": weights}
        result = await self._apply(blend)
        self.events.emit_gesture("scene_interpolated", "scene_interpolated",
                                 f"scenes {a} and {b} blended at t = {t:g}", a=a, b=b, blend=t,
                                 result=result)
        return result


__all__ = ["MAX_SCENES", "SceneBook", "check_name", "lerp_value", "snapshot_json"]
