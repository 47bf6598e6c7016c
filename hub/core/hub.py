"""The hub service: discovery, liveness, local agents, routes, parameters, scenes, events.

:class:`Hub` is the asyncio shell that owns the sockets, tasks and files
(STYLE 9); :mod:`anamnesis.hub.api.app` puts HTTP and WebSocket in front of it and
``anamnesis hub`` (:func:`run_hub`) runs both. What it does:

* **Discovery and liveness** (:mod:`anamnesis.hub.fleet.discovery`): agents found by zeroconf on
  ``--interface``, adopted by signature or by hand, pinged every second.
* **Local agents** (:mod:`anamnesis.hub.fleet.supervisor`): config agents with ``spawn = true``
  run as supervised ``python -m anamnesis.agents`` children: ``--audio hub`` in
  simulated mode, their sound card's channel in deployed mode; the constructor
  arguments of their ``params`` (``hidden_size`` ...) as ``--model-arg``s.
* **Simulated mode** (:mod:`anamnesis.hub.clock.simulated`): the hub is the clock; the config's
  agents are driven in lockstep over RTP through the routing graph
  (:mod:`anamnesis.hub.engine.graph`), whose edges follow the routes. **Deployed mode**
  (:mod:`anamnesis.hub.clock.deployed`): the agents keep their own clocks; the hub routes their
  ``out`` streams through the graph into their ``in`` streams.
* **Parameters**: ``set_params`` sends OSC to the agent, reads its ``/state``
  back and remembers the values; an agent that comes (back) online gets the
  remembered values again, so a returning agent resumes where the hub left it.
* **Routes**: the installation's edges (id ``"a->b"``; a ring's ``"RING:a->b"``,
  as :mod:`anamnesis.hub.engine.graph` names them), seeded from the config's routes and rings on
  the first start, edited through the API (checked here and by the graph).
* **Scenes**: every online agent's parameters and weights under a name; recall
  sends them back; ``interpolate`` blends two scenes at ``t`` in [0, 1].
* **Room** (``get_room``/``put_room``, ``room_layout``/``put_room_layout``): the
  config's ``[room]`` and the agents' speaker and mic positions, editable through
  the API, checked with every check of :mod:`anamnesis.hub.installation.config` (the listener and every
  agent's speaker and mic inside the room, a feasible RT60; every problem in one
  400). In simulated mode the room couples the agents (:mod:`anamnesis.hub.engine.coupling`): an
  edit is recomputed on a worker and crossfaded in, and every WebSocket client
  gets ``{"type": "room", "layout": ...}`` when a recomputation starts and ends.
* **Persistence** (:mod:`anamnesis.hub.core.store`, SQLite WAL in the state dir, every call in
  the store's own worker thread): the config as edited (:meth:`Hub.edited_config`,
  rewritten after every route, ring, room or position edit; on a restart its room
  and positions are restored), routes,
  remembered parameters, scenes (parameters + weights as snapshot blobs) and the
  event log, so a restarted hub restores all of it. The ids adopted by hand go
  to ``STATE_DIR/adopted.json`` (written atomically; the store has no table for
  them yet). On the first start (an empty store) routes and rings come from the
  config; afterwards the store wins.
* **Recording** (simulated mode): every agent's output to
  ``STATE_DIR/recordings/NAME.wav`` (float64, one channel per agent), written off
  the loop.
* **Trust**: agents signed with the installation key are adopted. Without a key
  (none in the config or on the command line) a hub that starts local agents makes
  its own, ``STATE_DIR/installation.key`` (0600), and gives it to them.
* **Access**: the API token lives in ``STATE_DIR/token`` (mode 0600), created
  on the first start; it is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from anamnesis.agents.protocol.oscmap import build_message
from anamnesis.hub.fleet.discovery import AgentBrowser, AgentChange, AgentRegistry, LivenessMonitor
from anamnesis.hub.fleet.osc import HubOsc, Messages
from anamnesis.hub.fleet.supervisor import ChildSpec, Supervisor, agent_argv
from anamnesis.hub.fleet.telemetry import AgentTelemetry
from anamnesis.hub.installation.edges import MAX_DELAY_MS, MAX_GAIN, SHAPES
from anamnesis.hub.core.errors import HubError

log = logging.getLogger(__name__)

#: Events kept in memory (the store keeps more).
MAX_EVENTS = 1000
#: Most scenes and routes the hub keeps (each write is a user's, but bound them anyway).
MAX_SCENES = 256
MAX_ROUTES = 4096
#: Seconds to wait for an agent's reply to a state or weights query.
REPLY_TIMEOUT_S = 2.0
_ADOPTED_FILE = "adopted.json"
_TOKEN_FILE = "token"
#: Seconds of quiet that end a gesture (a drag): its last event is then recorded.
GESTURE_QUIET_S = 1.0


def load_or_create_token(state_dir: Path) -> str:
    """The API token of ``STATE_DIR/token``, created (mode 0600) on the first start."""
    path = Path(state_dir) / _TOKEN_FILE
    try:
        token = path.read_text().strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def _own_key(path: Path) -> bytes:
    """The hub's own installation key at ``path`` (created, mode 0600, on first use)."""
    from anamnesis.agents.protocol.key import generate_key, load_key

    return load_key(path) if path.exists() else generate_key(path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _state_values(messages: Messages) -> dict[str, object]:
    """Parameter values from an agent's ``/state`` bundle (address -> value)."""
    values: dict[str, object] = {}
    for address, args in messages:
        if address in ("/panicked", "/error", "/pong") or not address.startswith("/"):
            continue
        name = address[1:]
        values[name] = args[0] if len(args) == 1 else list(args)
    return values


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _lerp_value(a: object, b: object, t: float) -> object:
    """Blend two parameter values: floats and equal-length float lists linearly,
    ints rounded, anything else (choices) switches at t = 0.5."""
    if isinstance(a, float) and _is_number(b):
        return (1.0 - t) * a + t * float(b)  # type: ignore[arg-type]
    if isinstance(a, int) and not isinstance(a, bool) and isinstance(b, int):
        return a if t < 0.5 else b
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) \
            and all(_is_number(x) for x in a + b):
        return [(1.0 - t) * float(x) + t * float(y) for x, y in zip(a, b)]
    return a if t < 0.5 else b


class Hub:
    """The running hub (see the module docstring).

    ``config`` is a :class:`~anamnesis.hub.installation.config.Config` or None
    (discovered agents only); ``state_dir`` holds the token, the database and the
    local agents' logs; ``interface`` the address zeroconf and OSC bind to; ``key``
    the installation key (None: every agent needs adopting by hand); ``spawn``
    whether local agents are started; ``key_file`` is passed to the local agents;
    ``ping_interval`` is the liveness period (s); ``agent_launch`` how local agents
    start (:mod:`anamnesis.hub.fleet.launcher`: ``"fork"``, warm from a forkserver,
    or ``"exec"``, each a new program). The fronts (REST/WebSocket, OSC) are attached
    by whoever runs the hub (:mod:`anamnesis.hub.cli.hub`); the hub knows none of them.
    """

    def __init__(self, *, state_dir: Path, interface: str = "127.0.0.1", config: Any = None,
                 key: bytes | None = None, key_file: Path | None = None, mode: str | None = None,
                 spawn: bool = True, ping_interval: float = 1.0,
                 agent_launch: str = "fork") -> None:
        self.state_dir = Path(state_dir)
        self.interface = interface
        self.config = config
        self.key_file = key_file
        # No installation key: a hub that starts agents makes one of its own (in start()),
        # so the agents it starts itself are signed and adopted.
        self._own_key = key is None and spawn and config is not None and any(
            a.spawn for a in config.agents)
        # The clocking mode: as given, else the config's, else simulated.
        self.mode = mode or (config.installation.mode if config is not None else "simulated")
        self.spawn = spawn
        self.name = config.installation.name if config is not None else "anamnesis"
        self.token = ""              # read or created in start()
        self.registry = AgentRegistry()
        self.liveness = LivenessMonitor(self.registry, None, interval=ping_interval)
        self.osc = HubOsc(on_pong=self.liveness.pong)
        self.liveness.osc = self.osc
        self.browser = AgentBrowser(self.registry, interface=interface, key=key)
        self.telemetry = AgentTelemetry(self.osc, interface)
        self.driver: Any = None      # anamnesis.hub.clock.simulated.SimulatedDriver in simulated mode
        self.scopes: Any = None      # anamnesis.hub.monitor.scopes.ScopeTap fed by the driver (with a config)
        self.listen: Any = None      # anamnesis.hub.monitor.listen.ListenTap fed by the driver (with a config)
        self._resumed: set[str] = set()   # online agents that got their parameters
        self.supervisor = Supervisor(self.state_dir / "logs", launch=agent_launch)
        self.routes: dict[str, dict[str, Any]] = {}
        self.room = config.room if config is not None else None    # as edited (put_room)
        # The config's agents with their speaker and mic positions as edited (put_room_layout).
        self.layout_agents: tuple[Any, ...] = tuple(config.agents) if config is not None else ()
        self.params: dict[str, dict[str, object]] = {}     # desired values, per agent
        self.scenes: dict[str, dict[str, Any]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)   # recent, in memory
        self.store: Any = None          # anamnesis.hub.core.store.AsyncStore once started
        self.counts: Counter[str] = Counter()
        self.started = time.time()
        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._writes: set[asyncio.Task[Any]] = set()
        self._adopted_dirty = False
        self._adopted_writer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._gestures: dict[str, dict[str, Any]] = {}   # coalesced events (emit_gesture)
        self.registry.add_listener(self._on_agent_change)

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Restore from the store, then start OSC, liveness, discovery and local agents."""
        from anamnesis.hub.core.store import AsyncStore

        loop = asyncio.get_running_loop()
        if self.spawn and self.config is not None and any(a.spawn for a in self.config.agents):
            self.supervisor.prepare()    # the agents' forkserver warms while the hub starts
        self.token = await loop.run_in_executor(None, load_or_create_token, self.state_dir)
        if self._own_key:
            self.key_file = self.state_dir / "installation.key"
            self.browser.key = await loop.run_in_executor(None, _own_key, self.key_file)
        self.store = await AsyncStore.open(self.state_dir, state_dir=True)
        stored = await self.store.load_all()
        restored = bool(stored.config_toml or stored.routes or stored.params or stored.scenes)
        if not restored:
            self._seed_from_config()
            await self.store.replace_routes(self.routes)
            for agent_id, params in self.params.items():
                await self.store.set_params(agent_id, params)
            if self.config is not None:
                await self.store.set_config(self.config.to_toml())
        else:
            self.routes = {k: dict(v) for k, v in stored.routes.items()}
            self.params = {k: dict(v) for k, v in stored.params.items()}
            if stored.config_toml and self.config is not None:
                self._restore_room(stored.config_toml)
            for name in stored.scenes:
                self.scenes[name] = await self._load_scene(name)
        adopted = await loop.run_in_executor(None, self._read_adopted)
        self.registry.restore_adopted(adopted)
        from anamnesis.hub.fleet.specs import warm as warm_specs

        # The agents' parameter descriptions (agents_json) import the models: not on the loop.
        await loop.run_in_executor(None, warm_specs, self.config)
        await self.osc.start(self.interface)
        self.liveness.start()
        await self.browser.start()
        if self.config is not None:
            from anamnesis.hub.engine.graph import from_config

            if self.mode == "simulated":
                from anamnesis.hub.engine.coupling import default_cache_dir
                from anamnesis.hub.clock.simulated import SimulatedDriver

                self.driver = SimulatedDriver(from_config(self.config), self.registry,
                                              interface=self.interface,
                                              ready=self._resumed.__contains__,
                                              room=self.room, agents=self.layout_agents,
                                              cache_dir=default_cache_dir())
                self.driver.on_room = self._room_recomputed
            else:
                from anamnesis.hub.clock.deployed import DeployedRouter

                self.driver = DeployedRouter(from_config(self.config), self.registry,
                                             interface=self.interface)
            from anamnesis.hub.monitor.scopes import ScopeTap

            self.scopes = ScopeTap(self.driver.graph.agent_ids, self.driver.sample_rate)
            self.driver.tap = self.scopes
            from anamnesis.hub.monitor.listen import ListenTap

            # Live audio for the dashboard's listen stream (anamnesis.hub.api.app /ws/listen); the
            # listener preview exists in simulated mode while there is a room.
            self.listen = ListenTap(
                self.driver.graph.agent_ids, self.driver.sample_rate,
                listener=lambda: self.mode == "simulated" and self.room is not None)
            self.driver.listen = self.listen
            try:
                skipped = self.driver.set_routes(self.routes)
            except ValueError as exc:   # stored routes the graph refuses (the config changed)
                log.error("stored routes cannot be driven; using the config's: %s", exc)
                skipped = []
            if skipped:
                log.warning("routes not driven (agents outside the config): %s",
                            ", ".join(skipped))
            self.driver.start()
        if self.spawn and self.config is not None:
            for spec in self._local_agents():
                self.supervisor.start(spec)
        self.emit("hub_started", f"hub {self.name} started ({self.mode})", restored=restored)

    async def _load_scene(self, name: str) -> dict[str, Any]:
        from anamnesis.hub.core.store import decode_state

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
        return {"name": name, "saved": scene.meta.get("saved", scene.updated_at), "agents": agents}

    async def close(self) -> None:
        """Stop everything; pending writes finish before the store closes."""
        if self.driver is not None:
            await self.driver.close()
        await self.liveness.close()
        await self.browser.close()
        await self.supervisor.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.telemetry.close()
        self.osc.close()
        for key in list(self._gestures):   # the last value of every gesture in progress
            self._gesture_end(key)
        await self.flush()
        if self.store is not None:
            await self.store.close()

    def _local_agents(self) -> list[ChildSpec]:
        out = []
        for spec in self.config.agents:
            if not spec.spawn:
                continue
            extra: list[str] = ["--seed", str(spec.seed)]
            if self.mode == "deployed":
                audio = "sounddevice"
                if spec.channel is not None:
                    extra += ["--in-channel", str(spec.channel),
                              "--out-channel", str(spec.channel)]
            else:   # simulated: the hub is the clock (anamnesis.hub.clock.simulated)
                audio = "hub"
                extra += ["--hub", self.interface,
                          "--block", str(self.config.installation.block),
                          "--sample-rate", str(self.config.installation.sample_rate)]
            out.append(ChildSpec(spec.id, agent_argv(
                spec.id, model=spec.model, preset=spec.preset, audio=audio,
                interface=self.interface, installation=self.name, key_file=self.key_file,
                state_dir=self.state_dir / "agents" / spec.id, model_args=spec.model_args(),
                extra=extra), fork_main="anamnesis.agents.main:main"))
        return out

    def _seed_from_config(self) -> None:
        if self.config is None:
            return
        for spec in self.config.agents:
            # Parameters the agent is told when it comes online (constructor arguments such
            # as hidden_size cannot be changed over OSC: they are the agent process's own).
            try:
                initial = spec.initial_params()
            except (KeyError, ValueError) as exc:
                log.warning("agent %s: initial parameters unavailable: %s", spec.id, exc)
                continue
            plain = {name.rstrip("_"): value for name, value in initial.items()
                     if _is_number(value) or isinstance(value, str) or (
                         isinstance(value, (list, tuple)) and all(_is_number(v) for v in value))}
            if plain:
                self.params[spec.id] = {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in plain.items()}
        from anamnesis.hub.engine.graph import edges_from_config

        # The graph's own ids (anamnesis.hub.engine.graph): routes "a->b", ring edges "RING:a->b".
        for edge_id, edge in edges_from_config(self.config).items():
            self.routes[edge_id] = _route_json(edge, edge_id)

    # -- persistence --------------------------------------------------------------

    def _read_adopted(self) -> list[str]:
        path = self.state_dir / _ADOPTED_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("%s unreadable (%s); agents adopted by hand must be adopted again", path, exc)
            return []
        return [str(x) for x in data] if isinstance(data, list) else []

    def _write_adopted(self, ids: list[str]) -> None:
        _write_atomic(self.state_dir / _ADOPTED_FILE, json.dumps(ids))

    def _persist(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Run ``self.store.METHOD(*args)`` in the background (in order: the store has
        one worker thread); failures are logged and counted."""
        if self.store is None:
            return

        async def write() -> None:
            try:
                await getattr(self.store, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 (a full disk must not take the hub down)
                self.counts["store_errors"] += 1
                log.error("hub store: %s failed: %s", method, exc)

        task = asyncio.create_task(write(), name=f"store {method}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def flush(self) -> None:
        """Wait until the writes queued so far are done."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    def _save_adopted(self) -> None:
        """Write the adopted ids in the background: one writer at a time, the newest set
        last (a burst of adoptions is coalesced)."""
        self._adopted_dirty = True
        if self._adopted_writer is not None and not self._adopted_writer.done():
            return

        async def writer() -> None:
            loop = asyncio.get_running_loop()
            while self._adopted_dirty:
                self._adopted_dirty = False
                try:
                    await loop.run_in_executor(None, self._write_adopted,
                                               sorted(self.registry.adopted_ids))
                except OSError as exc:
                    self.counts["store_errors"] += 1
                    log.error("writing %s failed: %s", _ADOPTED_FILE, exc)

        self._adopted_writer = asyncio.create_task(writer(), name="hub-save-adopted")
        self._writes.add(self._adopted_writer)
        self._adopted_writer.add_done_callback(self._writes.discard)

    # -- events -------------------------------------------------------------------

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        """``listener(message)`` for every event and agent change (WebSocket push)."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def broadcast(self, message: dict[str, Any] | bytes) -> None:
        """Hand ``message`` to every listener (the WebSocket clients; bytes: a binary
        message, :mod:`anamnesis.hub.monitor.scopes`)."""
        self._push(message)

    def _push(self, message: dict[str, Any] | bytes) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("hub listener failed")

    def emit(self, kind: str, message: str, *, agent: str | None = None,
             **data: Any) -> dict[str, Any]:
        """Record an event: kept in memory, written to the store's log, pushed."""
        now = time.time()
        event = {"t": round(now, 3), "kind": kind, "message": message, "agent": agent, **data}
        self.events.append(event)
        self._push({"type": "event", "event": event})
        self._persist("log_event", kind, message, agent_id=agent, data=data or None, ts=now)
        return event

    def emit_gesture(self, key: str, kind: str, message: str, *, agent: str | None = None,
                     **data: Any) -> None:
        """Record the events of a continuous gesture (a slider or weight drag, a scene
        blend, a moving speaker: up to ten writes a second) as two: the first at once, and
        the last once ``key`` has been quiet for :data:`GESTURE_QUIET_S` — so the log and
        the store say what happened without a row per slider step. A ``params`` dict is
        merged over the gesture (every parameter touched, at its last value)."""
        loop = asyncio.get_running_loop()
        held = self._gestures.get(key)
        if held is None:
            self.emit(kind, message, agent=agent, **data)
            held = self._gestures[key] = {"event": None, "params": {}}
        else:
            held["handle"].cancel()
            if isinstance(data.get("params"), dict):
                held["params"].update(data["params"])
                data["params"] = dict(held["params"])
            held["event"] = (kind, message, agent, data)
        held["handle"] = loop.call_later(GESTURE_QUIET_S, self._gesture_end, key)

    def _gesture_end(self, key: str) -> None:
        held = self._gestures.pop(key, None)
        if held is None:
            return
        held["handle"].cancel()
        if held["event"] is not None:
            kind, message, agent, data = held["event"]
            self.emit(kind, message, agent=agent, **data)

    async def stored_events(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` events of the store's log, oldest first."""
        rows = await self.store.events(limit)
        return [{"id": e.id, "t": e.ts, "kind": e.kind, "agent": e.agent_id,
                 "message": e.message, **(e.data if isinstance(e.data, dict) else {})}
                for e in rows]

    def _on_agent_change(self, change: AgentChange) -> None:
        entry = change.entry
        self._push({"type": "agent", "change": change.kind, "agent": self.agent_json(entry)})
        if change.kind in ("added", "adopted", "online", "offline"):
            self.emit(f"agent_{change.kind}", f"agent {entry.agent_id} {change.kind}",
                      agent=entry.agent_id, status=entry.status)
        if change.kind in ("added", "adopted") and entry.adopted:
            self._save_adopted()
        if entry.adopted and entry.online and change.kind in ("online", "adopted"):
            self._spawn_task(self._resume(entry.agent_id))
        if change.kind in ("offline", "updated") and not entry.online:
            self._resumed.discard(entry.agent_id)
        if change.kind == "offline":
            self._spawn_task(self.telemetry.unsubscribe(entry.agent_id))

    def _spawn_task(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self, agent_id: str) -> None:
        """An agent came (back) online: give it the remembered parameters, read its state,
        subscribe to its telemetry."""
        entry = self.registry.get(agent_id)
        if entry is not None:
            await self.telemetry.subscribe(agent_id, entry.osc_peer)
        try:
            desired = self.params.get(agent_id)
            if desired:
                await self._send_params(agent_id, desired)
            else:
                await self.read_state(agent_id)
        except (HubError, TimeoutError) as exc:
            log.warning("resuming agent %s failed: %s", agent_id, exc)
        entry = self.registry.get(agent_id)
        if entry is not None and entry.online:
            self._resumed.add(agent_id)

    # -- agents -------------------------------------------------------------------

    def _entry(self, agent_id: str, *, online: bool = False):
        entry = self.registry.get(agent_id)
        if entry is None:
            raise HubError(f"no agent {agent_id!r}", 404)
        if online and not entry.adopted:
            raise HubError(f"agent {agent_id} is pending; adopt it first", 409)
        if online and not entry.online:
            raise HubError(f"agent {agent_id} is offline", 409)
        return entry

    def _lock(self, agent_id: str) -> asyncio.Lock:
        if agent_id not in self._locks:
            self._locks[agent_id] = asyncio.Lock()
        return self._locks[agent_id]

    def adopt(self, agent_id: str) -> dict[str, Any]:
        """Adopt a pending agent (persisted)."""
        self._entry(agent_id)
        entry = self.registry.adopt(agent_id)
        return self.agent_json(entry)

    async def read_state(self, agent_id: str) -> dict[str, object]:
        """Ask the agent for ``/state``; returns (and remembers) its parameter values."""
        entry = self._entry(agent_id, online=True)
        async with self._lock(agent_id):
            messages = await self.osc.collect(
                entry.osc_peer, [build_message("/state")],
                lambda ms: any(a == "/panicked" for a, _ in ms), REPLY_TIMEOUT_S)
        values = _state_values(messages)
        self.registry.set_params(agent_id, values)
        return values

    async def _send_params(self, agent_id: str, params: dict[str, object]) -> dict[str, object]:
        entry = self._entry(agent_id, online=True)
        outgoing = []
        for name, value in params.items():
            args = value if isinstance(value, list) else [value]
            outgoing.append(build_message("/" + name, args))
        outgoing.append(build_message("/state"))
        async with self._lock(agent_id):
            messages = await self.osc.collect(
                entry.osc_peer, outgoing, lambda ms: any(a == "/panicked" for a, _ in ms),
                REPLY_TIMEOUT_S)
        errors = [str(args[0]) for a, args in messages if a == "/error" and args]
        values = _state_values(messages)
        self.registry.set_params(agent_id, values)
        if errors:
            raise HubError(f"agent {agent_id} refused: " + "; ".join(errors), 400)
        return values

    async def set_params(self, agent_id: str, params: object) -> dict[str, object]:
        """Set parameters (``{name: value}``, OSC names such as ``lr``) on an online agent;
        the agent's values after the change. Remembered, so they are restored."""
        if not isinstance(params, dict) or not params:
            raise HubError("params must be a non-empty object {name: value}")
        if len(params) > 256:
            raise HubError("at most 256 parameters at once")
        for name, value in params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise HubError(f"bad parameter name {name!r}")
            ok = _is_number(value) or isinstance(value, (str, bool)) or (
                isinstance(value, list) and 0 < len(value) <= 4096
                and all(_is_number(v) for v in value))
            if not ok:
                raise HubError(f"parameter {name}: value must be a number, a string or a "
                               f"list of numbers; got {value!r}"[:300])
        values = await self._send_params(agent_id, params)
        accepted = {k: values.get(k, v) for k, v in params.items()}
        self.params.setdefault(agent_id, {}).update(accepted)
        self._persist("set_params", agent_id, accepted)
        self.emit_gesture(f"params:{agent_id}", "params", f"parameters of {agent_id} set",
                          agent=agent_id, params=accepted)
        return values

    def panic(self, on: bool = True) -> list[str]:
        """``/panic`` (or ``/unpanic``) to every known agent; the ids it went to."""
        sent = []
        for entry in self.registry.entries():
            if entry.adopted:
                self.osc.send(entry.osc_peer, "/panic" if on else "/unpanic")
                sent.append(entry.agent_id)
        self.emit("panic" if on else "unpanic", ("panic" if on else "unpanic") + f" sent to "
                  f"{len(sent)} agents", agents=sent)
        return sent

    # -- routes ---------------------------------------------------------------------

    def known_agent_ids(self) -> set[str]:
        """Agents of the config and every discovered one."""
        ids = {e.agent_id for e in self.registry.entries()}
        if self.config is not None:
            ids |= set(self.config.agent_ids)
        return ids

    def _check_route(self, body: dict[str, Any], *, current: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
        problems = []
        allowed = {"from", "to", "gain", "delay_ms", "lowpass_hz", "highpass_hz", "shape"}
        unknown = set(body) - allowed - ({"id"} if current else set())
        if unknown:
            problems.append(f"unknown field(s) {', '.join(sorted(unknown))}; "
                            f"expected {', '.join(sorted(allowed))}")
        route = dict(current or {"gain": 1.0, "delay_ms": 0.0, "lowpass_hz": None,
                                 "highpass_hz": None, "shape": "none"})
        if current is not None and (body.get("from", current["from"]) != current["from"]
                                    or body.get("to", current["to"]) != current["to"]):
            problems.append("from and to of a route cannot change; delete it and add another")
        route.update({k: v for k, v in body.items() if k in allowed})
        known = self.known_agent_ids()
        for end in ("from", "to"):
            if not isinstance(route.get(end), str):
                problems.append(f"{end} must be an agent id")
            elif route[end] not in known:
                problems.append(f"{end}: unknown agent {route[end]!r}")
        if not _is_number(route["gain"]) or abs(float(route["gain"])) > MAX_GAIN:
            problems.append(f"gain must be a number in [-{MAX_GAIN:g}, {MAX_GAIN:g}]")
        if not _is_number(route["delay_ms"]) or not 0 <= float(route["delay_ms"]) <= MAX_DELAY_MS:
            problems.append(f"delay_ms must be in [0, {MAX_DELAY_MS:g}] ms")
        nyquist = (self.config.installation.sample_rate if self.config else 48000) / 2
        for cut in ("lowpass_hz", "highpass_hz"):
            v = route[cut]
            if v is not None and (not _is_number(v) or not 0 < float(v) < nyquist):
                problems.append(f"{cut} must be null or in (0, {nyquist:g}) Hz")
        if route["shape"] not in SHAPES:
            problems.append(f"shape must be one of {', '.join(SHAPES)}")
        route_id = route.get("id") or f"{route['from']}->{route['to']}"
        if not problems and self.mode == "deployed":
            from anamnesis.hub.installation.edges import Edge, zero_delay_cycles

            edges = [Edge(r["from"], r["to"], delay_ms=float(r["delay_ms"]))
                     for rid, r in self.routes.items() if rid != route_id]
            edges.append(Edge(route["from"], route["to"], delay_ms=float(route["delay_ms"])))
            for cycle in zero_delay_cycles(edges):
                problems.append("feedback cycle " + " -> ".join(cycle) + " has no delay; in "
                                "deployed mode give one of its edges a delay_ms > 0")
        if problems:
            raise HubError("; ".join(problems))
        route["id"] = route_id
        return route

    def _drive(self, routes: dict[str, dict[str, Any]]) -> None:
        """Hand a new route set to the simulated graph (checked there too) before it is kept."""
        if self.driver is not None:
            try:
                self.driver.set_routes(routes)
            except ValueError as exc:
                raise HubError(str(exc)) from None

    def add_route(self, body: object) -> dict[str, Any]:
        """Add an edge ``{from, to, gain, delay_ms, lowpass_hz, highpass_hz, shape}``."""
        if not isinstance(body, dict):
            raise HubError("a route is a JSON object")
        route = self._check_route(body)
        if route["id"] in self.routes:
            raise HubError(f"route {route['id']} exists; PATCH it", 409)
        if len(self.routes) >= MAX_ROUTES:
            raise HubError(f"at most {MAX_ROUTES} routes", 409)
        self._drive({**self.routes, route["id"]: route})
        self.routes[route["id"]] = route
        self._persist("put_route", route["id"], route)
        self._persist_config()
        self.emit("route_added", f"route {route['id']} added", route=route)
        return route

    def add_ring(self, body: object) -> list[dict[str, Any]]:
        """Add a ring ``{name, agents: [a, b, c], gain, delay_ms, ...}``: the edges
        a -> b -> c -> a, ids ``"NAME:a->b"`` (as a config's ``[[ring]]``)."""
        from anamnesis.hub.installation.edges import expand_ring, ring_edge_id

        if not isinstance(body, dict):
            raise HubError("a ring is a JSON object")
        params = dict(body)
        name, agents = params.pop("name", None), params.pop("agents", None)
        if not isinstance(name, str) or not 1 <= len(name) <= 32 or not name.replace(
                "_", "").replace("-", "").isalnum():
            raise HubError("a ring name has 1 to 32 letters, digits, '_' or '-'")
        if not isinstance(agents, list) or len(agents) < 2 or len(set(map(str, agents))) \
                != len(agents) or not all(isinstance(a, str) for a in agents):
            raise HubError("agents must list at least two different agent ids")
        if any(rid.startswith(name + ":") for rid in self.routes):
            raise HubError(f"ring {name} exists; delete it first", 409)
        new = {}
        for a, b in expand_ring(agents):
            route = self._check_route({"from": a, "to": b, **params})
            route["id"] = ring_edge_id(name, a, b)
            new[route["id"]] = route
        if len(self.routes) + len(new) > MAX_ROUTES:
            raise HubError(f"at most {MAX_ROUTES} routes", 409)
        self._drive({**self.routes, **new})
        for route_id, route in new.items():
            self.routes[route_id] = route
            self._persist("put_route", route_id, route)
        self._persist_config()
        self.emit("ring_added", f"ring {name} added ({' -> '.join(agents)})", ring=name,
                  agents=agents)
        return list(new.values())

    def delete_ring(self, name: str) -> list[str]:
        """Remove every edge of ring ``name``; their ids."""
        gone = [rid for rid in self.routes if rid.startswith(name + ":")]
        if not gone:
            raise HubError(f"no ring {name!r}", 404)
        self._drive({k: v for k, v in self.routes.items() if k not in gone})
        for route_id in gone:
            del self.routes[route_id]
            self._persist("delete_route", route_id)
        self._persist_config()
        self.emit("ring_deleted", f"ring {name} deleted", ring=name)
        return gone

    def update_route(self, route_id: str, body: object) -> dict[str, Any]:
        """Change an edge's parameters."""
        if route_id not in self.routes:
            raise HubError(f"no route {route_id!r}", 404)
        if not isinstance(body, dict):
            raise HubError("a route is a JSON object")
        route = self._check_route(body, current=self.routes[route_id])
        self._drive({**self.routes, route_id: route})
        self.routes[route_id] = route
        self._persist("put_route", route_id, route)
        self._persist_config()
        self.emit("route_changed", f"route {route_id} changed", route=route)
        return route

    def delete_route(self, route_id: str) -> None:
        """Remove an edge."""
        if route_id not in self.routes:
            raise HubError(f"no route {route_id!r}", 404)
        self._drive({k: v for k, v in self.routes.items() if k != route_id})
        del self.routes[route_id]
        self._persist("delete_route", route_id)
        self._persist_config()
        self.emit("route_deleted", f"route {route_id} deleted", route=route_id)

    async def get_weights(self, agent_id: str) -> list[float]:
        """The agent's flat weight vector (its ``/weights``)."""
        return await self._weights(agent_id)

    async def set_weights(self, agent_id: str, weights: object) -> list[float]:
        """Write the agent's flat weight vector (float32 over OSC; learning goes on from
        there); returns the vector read back."""
        if not isinstance(weights, list) or not 0 < len(weights) <= 8192 or not all(
                _is_number(w) for w in weights):
            raise HubError("weights must be a non-empty list of at most 8192 finite numbers")
        entry = self._entry(agent_id, online=True)
        async with self._lock(agent_id):
            messages = await self.osc.collect(
                entry.osc_peer, [build_message("/weights", [float(w) for w in weights]),
                                 build_message("/weights")],
                lambda ms: any(a in ("/weights", "/error") for a, _ in ms), REPLY_TIMEOUT_S)
        errors = [str(args[0]) for a, args in messages if a == "/error" and args]
        if errors:
            raise HubError(f"agent {agent_id} refused: " + "; ".join(errors))
        self.emit_gesture(f"weights:{agent_id}", "weights", f"weights of {agent_id} written",
                          agent=agent_id)
        return next([float(x) for x in args] for a, args in messages if a == "/weights")

    async def agent_snapshot(self, agent_id: str, action: str, name: object) -> dict[str, Any]:
        """``/snapshot NAME`` (save the agent's model state in its own state dir) or
        ``/recall NAME`` (load one) on the agent."""
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise HubError("a snapshot name has 1 to 64 characters")
        address = "/" + action
        entry = self._entry(agent_id, online=True)
        async with self._lock(agent_id):
            messages = await self.osc.collect(
                entry.osc_peer, [build_message(address, [name])],
                lambda ms: any(a in (address, "/error") for a, _ in ms), REPLY_TIMEOUT_S)
        errors = [str(args[0]) for a, args in messages if a == "/error" and args]
        if errors:
            raise HubError(f"agent {agent_id} refused: " + "; ".join(errors))
        self.emit(action, f"{action} {name} on {agent_id}", agent=agent_id, snapshot=name)
        if action == "recall":
            await self.read_state(agent_id)
        return {"agent": agent_id, action: name}

    # -- hub-level snapshots ---------------------------------------------------------

    async def list_snapshots(self, agent_id: str) -> list[dict[str, Any]]:
        """The snapshots the hub keeps of ``agent_id`` (oldest first; scenes' own not listed)."""
        infos = await self.store.snapshots(agent_id)
        if not infos and agent_id not in self.known_agent_ids():
            raise HubError(f"no agent {agent_id!r}", 404)
        return [_snapshot_json(i) for i in infos if not i.name.startswith("scene/")]

    async def save_snapshot(self, agent_id: str, name: object) -> dict[str, Any]:
        """Fetch the agent's weights (OSC ``/weights``) and parameters (``/state``) and keep
        them in the hub's store as snapshot ``name`` (a blob; same name: replaced)."""
        from anamnesis.hub.core.store import encode_state

        if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable() \
                or "/" in name:
            raise HubError("a snapshot name has 1 to 64 printable characters and no '/'")
        entry = self._entry(agent_id, online=True)
        params = await self.read_state(agent_id)
        weights = await self._weights(agent_id)
        data = encode_state({"weights": np.asarray(weights, dtype=np.float64),
                             "params": np.asarray(json.dumps(params))})
        await self.store.save_snapshot(agent_id, name, entry.model or "unknown", data)
        info = await self.store.find_snapshot(agent_id, name)
        self.emit("snapshot_saved", f"snapshot {name} of {agent_id} kept by the hub",
                  agent=agent_id, snapshot=name)
        return dict(_snapshot_json(info), params=params, weights=len(weights))

    async def recall_snapshot(self, agent_id: str, name: str) -> dict[str, Any]:
        """Write a kept snapshot back: its weights, then its parameters (remembered, as a
        scene's are); the agent's values after."""
        from anamnesis.hub.core.store import decode_state

        entry = self._entry(agent_id, online=True)
        info = await self.store.find_snapshot(agent_id, name)
        if info is None or name.startswith("scene/"):
            raise HubError(f"no snapshot {name!r} of {agent_id}", 404)
        if entry.model and info.model != entry.model:
            raise HubError(f"snapshot {name!r} is of a {info.model} model; {agent_id} runs "
                           f"{entry.model}", 409)
        _, data = await self.store.snapshot(info.id)
        state = decode_state(data)
        params = json.loads(str(state["params"][()]))
        weights = await self.set_weights(agent_id, [float(w) for w in state["weights"]])
        values = await self._send_params(agent_id, params)
        self.params.setdefault(agent_id, {}).update(params)
        self._persist("set_params", agent_id, params)
        self.emit("snapshot_recalled", f"snapshot {name} recalled on {agent_id}",
                  agent=agent_id, snapshot=name)
        return {"agent": agent_id, "snapshot": name, "params": values, "weights": len(weights)}

    # -- scenes ---------------------------------------------------------------------

    async def _weights(self, agent_id: str) -> list[float]:
        entry = self._entry(agent_id, online=True)
        async with self._lock(agent_id):
            messages = await self.osc.collect(
                entry.osc_peer, [build_message("/weights")],
                lambda ms: any(a in ("/weights", "/error") for a, _ in ms), REPLY_TIMEOUT_S)
        for address, args in messages:
            if address == "/weights":
                return [float(x) for x in args]
        raise HubError(f"agent {agent_id} refused the weights query", 502)

    async def save_scene(self, name: object) -> dict[str, Any]:
        """Save every online adopted agent's parameters and weights under ``name``."""
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable() \
                or "/" in name:
            raise HubError("a scene name has 1 to 64 printable characters and no '/'")
        if name not in self.scenes and len(self.scenes) >= MAX_SCENES:
            raise HubError(f"at most {MAX_SCENES} scenes; delete one", 409)
        agents: dict[str, Any] = {}
        for entry in self.registry.entries():
            if entry.adopted and entry.online:
                params = await self.read_state(entry.agent_id)
                agents[entry.agent_id] = {"model": entry.model, "params": params,
                                          "weights": await self._weights(entry.agent_id)}
        from anamnesis.hub.core.store import SceneAgent, encode_state

        saved = round(time.time(), 3)
        await self.store.save_scene(name, {
            agent_id: SceneAgent(params=part["params"], model=part["model"],
                                 state=encode_state({"weights": np.asarray(part["weights"])}))
            for agent_id, part in agents.items()}, meta={"saved": saved})
        scene = {"name": name, "saved": saved, "agents": agents}
        self.scenes[name] = scene
        self.emit("scene_saved", f"scene {name} saved ({len(agents)} agents)", scene=name,
                  agents=sorted(agents))
        return scene

    def get_scene(self, name: str) -> dict[str, Any]:
        """A saved scene (404 if unknown)."""
        if name not in self.scenes:
            raise HubError(f"no scene {name!r}", 404)
        return self.scenes[name]

    async def delete_scene(self, name: str) -> None:
        """Forget a scene."""
        self.get_scene(name)
        del self.scenes[name]
        await self.store.delete_scene(name)
        self.emit("scene_deleted", f"scene {name} deleted", scene=name)

    async def _apply(self, agents: dict[str, Any]) -> dict[str, Any]:
        done: dict[str, Any] = {}
        for agent_id, part in agents.items():
            entry = self.registry.get(agent_id)
            if entry is None or not entry.online or not entry.adopted:
                done[agent_id] = "offline"
                continue
            weights = part.get("weights") or []
            if weights:
                self.osc.send(entry.osc_peer, "/weights", *[float(w) for w in weights])
            params = {k: v for k, v in part.get("params", {}).items()}
            try:
                await self._send_params(agent_id, params)
                self.params.setdefault(agent_id, {}).update(params)
                self._persist("set_params", agent_id, params)
                done[agent_id] = "ok"
            except (HubError, TimeoutError) as exc:
                done[agent_id] = str(exc)
        return done

    async def recall_scene(self, name: str) -> dict[str, Any]:
        """Send a scene's parameters and weights to its agents; per agent ``ok`` or why not."""
        scene = self.get_scene(name)
        result = await self._apply(scene["agents"])
        self.emit("scene_recalled", f"scene {name} recalled", scene=name, result=result)
        return result

    async def interpolate(self, a: object, b: object, t: object) -> dict[str, Any]:
        """Blend scenes ``a`` and ``b`` at ``t`` in [0, 1] (0 = a) and apply the blend to
        the agents present in both: float parameters and weights linearly."""
        if not isinstance(a, str) or not isinstance(b, str):
            raise HubError("a and b must be scene names")
        if not _is_number(t) or not 0.0 <= float(t) <= 1.0:
            raise HubError("t must be a number in [0, 1]")
        t = float(t)  # type: ignore[arg-type]
        sa, sb = self.get_scene(a), self.get_scene(b)
        blend: dict[str, Any] = {}
        for agent_id in sorted(set(sa["agents"]) & set(sb["agents"])):
            pa, pb = sa["agents"][agent_id], sb["agents"][agent_id]
            params = {k: _lerp_value(v, pb["params"].get(k, v), t)
                      for k, v in pa["params"].items()}
            wa, wb = pa.get("weights") or [], pb.get("weights") or []
            weights = ([(1 - t) * x + t * y for x, y in zip(wa, wb)] if len(wa) == len(wb)
                       else (wa if t < 0.5 else wb))
            blend[agent_id] = {"params": params, "weights": weights}
        result = await self._apply(blend)
        self.emit_gesture("scene_interpolated", "scene_interpolated",
                          f"scenes {a} and {b} blended at t = {t:g}", a=a, b=b, t=t, result=result)
        return result

    # -- recording --------------------------------------------------------------------

    def record_start(self, name: object) -> dict[str, Any]:
        """Record every agent's output (simulated mode) to ``STATE_DIR/recordings/NAME.wav``."""
        if self.driver is None or not hasattr(self.driver, "record_start"):
            raise HubError("recording needs simulated mode with a config "
                           "(recording a deployed installation is not built yet)", 409)
        if not isinstance(name, str) or not 1 <= len(name) <= 64 or not all(
                c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            raise HubError("a recording name has 1 to 64 letters, digits, '-', '_' or '.'")
        path = self.state_dir / "recordings" / f"{name}.wav"
        try:
            self.driver.record_start(path)
        except RuntimeError as exc:
            raise HubError(str(exc), 409) from None
        self.emit("record_start", f"recording to {path.name}", file=path.name)
        return {"recording": path.name}

    async def record_stop(self) -> dict[str, Any]:
        """Stop recording; the file's name, frames and seconds."""
        if self.driver is None or not hasattr(self.driver, "record_stop"):
            raise HubError("not recording", 409)
        try:
            info = await self.driver.record_stop()
        except RuntimeError as exc:
            raise HubError(str(exc), 409) from None
        info["path"] = Path(info["path"]).name
        self.emit("record_stop", f"recorded {info['seconds']:.1f} s to {info['path']}", **info)
        return info

    # -- the config as edited, the room ---------------------------------------------

    def edited_config(self) -> Any:
        """The config with the routes, rings and room as edited through the API (None
        without a config). A ring whose edges are all there with common parameters stays a
        ``[[ring]]``; the edges of a ring edited apart are listed as ``[[route]]``s."""
        import dataclasses

        from anamnesis.hub.installation.config import Ring, Route

        if self.config is None:
            return None
        plain: list[dict[str, Any]] = []
        rings: dict[str, list[dict[str, Any]]] = {}
        for route_id, route in self.routes.items():
            name, sep, _ = route_id.partition(":")
            if sep:
                rings.setdefault(name, []).append(route)
            else:
                plain.append(route)
        kept: list[Ring] = []
        for name, edges in rings.items():
            ring = _as_ring(name, edges)
            if ring is None:
                plain.extend(edges)
            else:
                kept.append(ring)
        routes = tuple(Route(source=r["from"], target=r["to"], **_edge_params(r)) for r in plain)
        return dataclasses.replace(self.config, routes=routes, rings=tuple(kept), room=self.room,
                                   agents=self.layout_agents)

    def _persist_config(self) -> None:
        edited = self.edited_config()
        if edited is not None:
            self._persist("set_config", edited.to_toml())

    def _restore_room(self, toml_text: str) -> None:
        from anamnesis.hub.installation.config import ConfigError, parse_config

        try:
            stored = parse_config(toml_text, "stored config", base_dir=self.config.base_dir)
        except ConfigError as exc:
            log.error("the stored config no longer checks; the room comes from the config "
                      "file: %s", exc)
            return
        if stored.agent_ids == self.config.agent_ids:
            import dataclasses

            self.room = stored.room
            self.layout_agents = tuple(
                dataclasses.replace(mine, speaker=theirs.speaker, mic=theirs.mic)
                for mine, theirs in zip(self.config.agents, stored.agents))
        else:
            log.warning("the stored config has other agents; the room comes from the config file")

    def get_room(self) -> dict[str, Any] | None:
        """The room as edited, in the config's layout (None: no room)."""
        from anamnesis.hub.installation.config import vars_of

        return None if self.room is None else vars_of(self.room)

    def put_room(self, body: object) -> dict[str, Any] | None:
        """Replace the room: ``body`` is a ``[room]`` table as JSON (``size``, ``rt60`` or
        ``absorption``, ``listener``, ...), or null for none. Checked with every check of
        the config (listener and each agent's speaker and mic inside the room; every
        problem in one 400), stored with the config as edited, pushed as an event, and in
        simulated mode recomputed and crossfaded in (:meth:`_apply_room`)."""

        if self.config is None:
            raise HubError("the hub runs without a config: there is no room to edit", 409)
        if body is not None and not isinstance(body, dict):
            raise HubError("a room is a JSON object ([room] as in the config) or null")
        data = self.edited_config().to_dict()
        data.pop("room", None)
        if body is not None:
            data["room"] = body
        checked = self._check_edit(data, "room")
        self.room = checked.room
        self._apply_room()
        room = self.get_room()
        self.emit("room_changed", "room changed" if room else "room removed", room=room)
        return room

    def _check_edit(self, data: dict[str, Any], what: str) -> Any:
        """The config edited through the API (``data`` in the TOML layout), checked with
        every check of :mod:`anamnesis.hub.installation.config`; a :class:`HubError` lists every problem."""
        from anamnesis.hub.installation.config import ConfigError, check_config_data

        try:
            return check_config_data(data, what, base_dir=self.config.base_dir)
        except ConfigError as exc:
            raise HubError("; ".join(f"{p.where}: {p.message}" if p.where else p.message
                                     for p in exc.problems)) from None

    def _apply_room(self) -> None:
        """Store the edited room and positions; hand them to the simulation."""
        self._persist_config()
        if self.driver is not None and hasattr(self.driver, "update_room"):
            self.driver.update_room(self.room, self.layout_agents)
        self.broadcast({"type": "room", "layout": self.room_layout()})

    def _room_recomputed(self) -> None:
        """The simulation started or finished recomputing the room's responses."""
        self.broadcast({"type": "room", "layout": self.room_layout()})

    def room_layout(self) -> dict[str, Any]:
        """The floor plan: the room as edited (None: none), every agent's speaker and mic
        (m, or None), whether responses are being recomputed and how long the last
        computation took (ms)."""
        driver = self.driver
        return {
            "room": self.get_room(),
            "agents": {a.id: {"speaker": None if a.speaker is None else list(a.speaker),
                              "mic": None if a.mic is None else list(a.mic)}
                       for a in self.layout_agents},
            "recomputing": bool(getattr(driver, "room_recomputing", False)),
            "responses_ms": getattr(driver, "responses_ms", None),
        }

    def put_room_layout(self, body: object) -> dict[str, Any]:
        """Move the listener and/or speakers and mics: ``body`` is ``{"listener": [x, y, z],
        "agents": {id: {"speaker": [x, y, z], "mic": [x, y, z]}}}`` (every part optional,
        metres). Checked with every check of the config (all problems in one 400); then
        as :meth:`put_room`. Returns :meth:`room_layout`."""

        if self.config is None:
            raise HubError("the hub runs without a config: there is no floor plan to edit", 409)
        if not isinstance(body, dict) or set(body) - {"listener", "agents"}:
            raise HubError('a layout is a JSON object with "listener" and/or "agents"')
        data = self.edited_config().to_dict()
        if "listener" in body:
            if "room" not in data:
                raise HubError("there is no room: the listener has nowhere to stand", 409)
            data["room"]["listener"] = body["listener"]
        moves = body.get("agents", {})
        if not isinstance(moves, dict):
            raise HubError('"agents" is an object {id: {"speaker": [x, y, z], "mic": [x, y, z]}}')
        by_id = {a["id"]: a for a in data["agent"]}
        problems = []
        for agent_id, move in moves.items():
            if agent_id not in by_id:
                problems.append(f"no agent {agent_id!r} in the installation")
            elif not isinstance(move, dict) or set(move) - {"speaker", "mic"}:
                problems.append(f'{agent_id}: give "speaker" and/or "mic" as [x, y, z] metres')
            else:
                by_id[agent_id].update(move)
        if problems:
            raise HubError("; ".join(problems))
        checked = self._check_edit(data, "layout")
        self.room = checked.room
        self.layout_agents = checked.agents
        self._apply_room()
        moved = sorted(moves) + (["the listener"] if "listener" in body else [])
        self.emit_gesture("room_layout", "room_layout", "moved " + (", ".join(moved) or "nothing"))
        return self.room_layout()

    # -- descriptions -----------------------------------------------------------------

    def installation(self) -> dict[str, Any]:
        """The installation as the API shows it (the config as edited)."""
        edited = self.edited_config()
        cfg = edited.to_dict() if edited is not None else None
        return {"name": self.name, "mode": self.mode, "interface": self.interface,
                "started": self.started, "config": cfg,
                "clock": self.driver.stats() if self.driver is not None else None,
                "local_agents": [c.to_json() for c in self.supervisor.children.values()]}

    def agent_json(self, entry: Any) -> dict[str, Any]:
        """One agent as the API shows it (REST, the WebSocket's hello and every ``agent``
        push): its record, its remembered desired parameters and ``specs``, what its
        model's parameters are (ranges, scales, units: :func:`anamnesis.hub.fleet.specs.agent_specs`)."""
        from anamnesis.hub.fleet.specs import agent_specs

        return dict(entry.to_json(), desired=self.params.get(entry.agent_id, {}),
                    specs=agent_specs(self.config, entry.agent_id, entry.model))

    def agents_json(self) -> list[dict[str, Any]]:
        """Every agent (:meth:`agent_json`)."""
        return [self.agent_json(e) for e in self.registry.entries()]


def _snapshot_json(info: Any) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "model": info.model,
            "created": round(info.created_at, 3), "size": info.size, "sha256": info.sha256}


def _edge_params(route: dict[str, Any]) -> dict[str, Any]:
    """A route's gain, delay, filters and shape as :class:`anamnesis.hub.installation.config.Route` takes them."""
    cut = {k: None if route.get(k) is None else float(route[k])
           for k in ("lowpass_hz", "highpass_hz")}
    return {"gain": float(route["gain"]), "delay_ms": float(route["delay_ms"]), **cut,
            "shape": route["shape"]}


def _as_ring(name: str, edges: list[dict[str, Any]]) -> Any:
    """The :class:`anamnesis.hub.installation.config.Ring` the edges of ring ``name`` still form (a closed chain
    with common parameters), else None."""
    from anamnesis.hub.installation.config import Ring

    following = {e["from"]: e["to"] for e in edges}
    params = [_edge_params(e) for e in edges]
    if len(following) != len(edges) or len(edges) < 2 or any(p != params[0] for p in params):
        return None
    agents = [edges[0]["from"]]
    while len(agents) <= len(edges):
        nxt = following.get(agents[-1])
        if nxt is None:
            return None
        if nxt == agents[0]:
            break
        agents.append(nxt)
    if len(agents) != len(edges) or following.get(agents[-1]) != agents[0]:
        return None
    return Ring(agents=tuple(agents), name=name, **params[0])


def _route_json(edge: Any, edge_id: str) -> dict[str, Any]:
    d = asdict(edge)
    return {"id": edge_id, "from": d.pop("source"), "to": d.pop("target"), **d}


__all__ = ["Hub", "load_or_create_token"]
