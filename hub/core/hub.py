"""The hub service: the composition root of the rooms that run an installation.

:class:`Hub` owns the sockets, tasks and files (STYLE 9) and builds the collaborators
that hold the installation's state and rules, giving each what it needs (never the
hub itself):

* :class:`~anamnesis.hub.core.events.EventLog` — events, gestures, listeners (the
  WebSocket push), the store's write queue;
* :class:`~anamnesis.hub.core.agent_calls.AgentCalls` — OSC requests to agents, their
  remembered parameters, weights, panic, adoption;
* :class:`~anamnesis.hub.core.routes.RouteBook` — edges and rings as edited, and the
  config as edited;
* :class:`~anamnesis.hub.core.couplings.CouplingBook` — weight couplings as edited (run
  by :class:`~anamnesis.hub.fleet.couplings.CouplingDriver` over the agents' OSC);
* :class:`~anamnesis.hub.core.scenes.SceneBook` — scenes, blends, hub snapshots;
* :class:`~anamnesis.hub.core.layout.RoomLayout` — the room and the floor plan;
* :mod:`~anamnesis.hub.core.state_files` — token, own key, ``adopted.json``.

What the hub itself does:

* **Discovery and liveness** (:mod:`anamnesis.hub.fleet.discovery`): agents found by
  zeroconf on ``--interface``, adopted by signature or by hand, pinged every second; an
  agent that comes (back) online gets its remembered parameters again.
* **Local agents** (:mod:`anamnesis.hub.fleet.supervisor`): config agents with
  ``spawn = true`` run as supervised agent processes (forked warm, or exec'd):
  ``--audio hub`` in simulated mode, their sound card's channel in deployed mode; the
  constructor arguments of their ``params`` (``hidden_size`` ...) as ``--model-arg``s.
* **Clocking**: in simulated mode (:mod:`anamnesis.hub.clock.simulated`) the hub is the
  clock and drives the config's agents in lockstep over RTP through the routing graph
  and the room; in deployed mode (:mod:`anamnesis.hub.clock.deployed`) the agents keep
  their own clocks and the hub routes their ``out`` streams into their ``in`` streams.
* **Persistence** (:mod:`anamnesis.hub.core.store`, SQLite WAL in the state dir): the
  config as edited, routes, remembered parameters, scenes and the event log, so a
  restarted hub restores all of it. On the first start (an empty store) routes, rings
  and parameters come from the config; afterwards the store wins.
* **Recording** (simulated mode): every agent's output to
  ``STATE_DIR/recordings/NAME.wav``, written off the loop.
* **Trust**: agents signed with the installation key are adopted. Without a key a hub
  that starts local agents makes its own, ``STATE_DIR/installation.key`` (0600).

The fronts (REST/WebSocket :mod:`anamnesis.hub.api.app`, OSC
:mod:`anamnesis.hub.api.osc`) are attached by whoever runs the hub
(:mod:`anamnesis.hub.cli.hub`); the hub knows none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from anamnesis.hub.clock.driver import Driver
from anamnesis.hub.core import comings, recording
from anamnesis.hub.core.agent_calls import AgentCalls, is_number
from anamnesis.hub.core.couplings import CouplingBook
from anamnesis.hub.core.errors import HubError
from anamnesis.hub.core.events import EventLog
from anamnesis.hub.core.layout import RoomLayout
from anamnesis.hub.core.routes import RouteBook
from anamnesis.hub.core.scenes import SceneBook
from anamnesis.hub.core.state_files import (
    KEY_FILE,
    AdoptedFile,
    load_or_create_token,
    own_key,
)
from anamnesis.hub.fleet.couplings import CouplingDriver
from anamnesis.hub.fleet.discovery import (
    AgentBrowser,
    AgentChange,
    AgentRegistry,
    LivenessMonitor,
)
from anamnesis.hub.fleet.osc import HubOsc
from anamnesis.hub.fleet.ports import Ports, choose_ports, port_args
from anamnesis.hub.fleet.supervisor import ChildSpec, Supervisor, agent_argv
from anamnesis.hub.fleet.telemetry import AgentTelemetry

log = logging.getLogger(__name__)

#: The agent program's entry, for a forked start (:class:`ChildSpec`'s ``fork_main``).
AGENT_MAIN = "anamnesis.agents.main:main"


class Hub:
    """The running hub (see the module docstring).

    ``config`` is a :class:`~anamnesis.hub.installation.config.Config` or None
    (discovered agents only); ``state_dir`` holds the token, the database and the
    local agents' logs; ``interface`` the address zeroconf and OSC bind to; ``key``
    the installation key (None: every agent needs adopting by hand); ``spawn``
    whether local agents are started; ``key_file`` is passed to the local agents;
    ``ping_interval`` is the liveness period (s); ``agent_launch`` how local agents
    start (:mod:`anamnesis.hub.fleet.launcher`: ``"fork"``, warm from a forkserver,
    or ``"exec"``, each a new program); ``step_timeout_s`` how long a simulated block
    waits for the slowest agent before giving it up as silence (s).
    """

    def __init__(self, *, state_dir: Path, interface: str = "127.0.0.1", config: Any = None,
                 key: bytes | None = None, key_file: Path | None = None, mode: str | None = None,
                 spawn: bool = True, ping_interval: float = 1.0,
                 agent_launch: str = "fork", step_timeout_s: float = 0.05) -> None:
        self.state_dir = Path(state_dir)
        self.step_timeout_s = float(step_timeout_s)
        self.interface = interface
        self.config, self.key_file = config, key_file
        # No installation key: a hub that starts agents makes one of its own (in start()),
        # so the agents it starts itself are signed and adopted.
        self._spawns = spawn and config is not None and any(a.spawn for a in config.agents)
        self._own_key = key is None and self._spawns
        # The clocking mode: as given, else the config's, else simulated.
        self.mode = mode or (config.installation.mode if config is not None else "simulated")
        self.spawn = spawn
        self.name = config.installation.name if config is not None else "anamnesis"
        self.token, self.started = "", time.time()   # the token: read or created in start()
        self.counts: Counter[str] = Counter()
        self.driver: Driver | None = None   # SimulatedDriver or DeployedRouter (with a config)
        self._ports: dict[str, Ports] = {}  # the local agents' (osc, http, rtp) ports
        self.scopes: Any = None      # anamnesis.hub.monitor.scopes.ScopeTap (with a config)
        self.listen: Any = None      # anamnesis.hub.monitor.listen.ListenTap (with a config)
        self.registry = AgentRegistry()
        self.liveness = LivenessMonitor(self.registry, None, interval=ping_interval)
        self.osc = self.liveness.osc = HubOsc(on_pong=self.liveness.pong)
        # With a config the hub is that installation and lists only its agents (and any
        # signed with its key); without one it lists every agent it hears.
        self.browser = AgentBrowser(self.registry, interface=interface, key=key,
                                    installation=self.name if config is not None else None)
        self.telemetry = AgentTelemetry(self.osc, interface)
        self.supervisor = Supervisor(self.state_dir / "logs", launch=agent_launch,
                                     on_exit=lambda agent_id: self.registry.gone(agent_id))
        self.event_log = EventLog(self.counts)
        self.calls = AgentCalls(self.registry, self.osc, self.event_log)
        self.route_book = RouteBook(config, self.mode, self.event_log,
                                    known_ids=self.known_agent_ids, driver=lambda: self.driver,
                                    layout=lambda: (self.layout.room, self.layout.agents),
                                    finish=lambda c: self.coupling_book.edited(c))
        self.coupling_driver = CouplingDriver(peer=self._online_peer, osc=self.osc,
                                              counts=self.counts)
        self.coupling_book = CouplingBook(config, self.event_log, known_ids=self.known_agent_ids,
                                          driver=lambda: self.coupling_driver,
                                          weights=self._weights_or_none,
                                          persist=self.route_book.persist_config)
        self.layout = RoomLayout(config, self.event_log, edited_config=self.route_book.edited_config,
                                 persist_config=self.route_book.persist_config,
                                 driver=lambda: self.driver)
        self.scene_book = SceneBook(self.calls, self.event_log, known_ids=self.known_agent_ids,
                                    couplings=self.coupling_book.definitions,
                                    set_couplings=self.coupling_book.replace)
        self.adopted = AdoptedFile(self.state_dir, self.counts,
                                   ids=lambda: self.registry.adopted_pins, track=self.event_log.track)
        self._resumed: set[str] = set()   # online agents that got their parameters
        self._tasks: set[asyncio.Task[Any]] = set()
        self.registry.add_listener(self._on_agent_change)
        # The collaborators' calls, made on the hub by the fronts and the tests (each
        # documented where it lives).
        log_, calls, routes, scenes, layout = (self.event_log, self.calls, self.route_book,
                                               self.scene_book, self.layout)
        self.add_listener, self.broadcast, self.flush = (log_.add_listener, log_.broadcast,
                                                         log_.flush)
        self.emit, self.emit_gesture, self.stored_events = (log_.emit, log_.emit_gesture,
                                                            log_.stored)
        self.read_state, self.set_params = calls.read_state, calls.set_params
        self.get_weights, self.set_weights = calls.weights, calls.set_weights
        self.agent_snapshot = calls.agent_snapshot
        self.add_route, self.update_route, self.delete_route = (
            routes.add_route, routes.update_route, routes.delete_route)
        self.add_ring, self.delete_ring = routes.add_ring, routes.delete_ring
        book = self.coupling_book
        self.couplings_json, self.get_coupling = book.listing, book.show
        self.add_coupling, self.update_coupling, self.delete_coupling = (
            book.add, book.update, book.delete)
        self.edited_config = routes.edited_config
        self.list_snapshots, self.save_snapshot, self.recall_snapshot = (
            scenes.list_snapshots, scenes.save_snapshot, scenes.recall_snapshot)
        self.save_scene, self.get_scene, self.delete_scene = (
            scenes.save_scene, scenes.get_scene, scenes.delete_scene)
        self.recall_scene, self.interpolate = scenes.recall_scene, scenes.interpolate
        self.get_room, self.put_room = layout.get_room, layout.put_room
        self.room_layout, self.put_room_layout = layout.room_layout, layout.put_room_layout

    # The state the API and the tests read, kept by the collaborators.
    routes = property(lambda self: self.route_book.routes)
    params = property(lambda self: self.calls.params)
    scenes = property(lambda self: self.scene_book.scenes)
    events = property(lambda self: self.event_log.events)
    room = property(lambda self: self.layout.room)
    layout_agents = property(lambda self: self.layout.agents)
    store = property(lambda self: self.event_log.store)

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Restore from the store, then start OSC, liveness, discovery and local agents."""
        from anamnesis.hub.core.async_store import AsyncStore
        from anamnesis.hub.fleet.specs import warm as warm_specs

        loop = asyncio.get_running_loop()
        if self._spawns:
            self.supervisor.prepare()    # the agents' forkserver warms while the hub starts
        self.token = await loop.run_in_executor(None, load_or_create_token, self.state_dir)
        if self._own_key:
            self.key_file = self.state_dir / KEY_FILE
            self.browser.key = await loop.run_in_executor(None, own_key, self.key_file)
        self.event_log.store = store = await AsyncStore.open(self.state_dir, state_dir=True)
        stored = await store.load_all()
        restored = bool(stored.config_toml or stored.routes or stored.params or stored.scenes)
        if not restored:
            if self.config is not None:
                self.seed_params()
                self.route_book.seed_from_config()
            await store.replace_routes(self.routes)
            for agent_id, params in self.params.items():
                await store.set_params(agent_id, params)
            if self.config is not None:
                await store.set_config(self.config.to_toml())
        else:
            self.routes.update({k: dict(v) for k, v in stored.routes.items()})
            self.params.update({k: dict(v) for k, v in stored.params.items()})
            if stored.config_toml and self.config is not None:
                self.layout.restore(stored.config_toml)
                self.coupling_book.restore(stored.config_toml, self.config.base_dir)
            await self.scene_book.load(list(stored.scenes))
        self.registry.restore_adopted(await loop.run_in_executor(None, self.adopted.read))
        # The agents' parameter descriptions (agents_json) import the models: not on the loop.
        await loop.run_in_executor(None, warm_specs, self.config)
        await self.osc.start(self.interface)
        await self.coupling_driver.set(self.coupling_book.couplings)
        self.liveness.start()
        await self.browser.start()
        if self.config is not None:
            self._start_driver()
        if self.spawn and self.config is not None:
            local = [a.id for a in self.config.agents if a.spawn]
            self._ports, changed = await loop.run_in_executor(
                None, choose_ports, self.interface, local, stored.ports)
            if changed:
                await store.set_agent_ports(changed)
            for spec in self.local_agents():
                self.supervisor.start(spec)
        self.emit("hub_started", f"hub {self.name} started ({self.mode})", restored=restored)

    def _start_driver(self) -> None:
        from anamnesis.hub.engine.graph import from_config
        from anamnesis.hub.monitor.listen import ListenTap
        from anamnesis.hub.monitor.scopes import ScopeTap

        if self.mode == "simulated":
            from anamnesis.hub.clock.simulated import SimulatedDriver
            from anamnesis.hub.engine.coupling import default_cache_dir

            self.driver = SimulatedDriver(from_config(self.config), self.registry,
                                          interface=self.interface,
                                          timeout_s=self.step_timeout_s,
                                          ready=self._resumed.__contains__,
                                          room=self.room, agents=self.layout_agents,
                                          cache_dir=default_cache_dir())
            self.driver.on_room = self.layout.recomputed
        else:
            from anamnesis.hub.clock.deployed import DeployedRouter

            self.driver = DeployedRouter(from_config(self.config), self.registry,
                                         interface=self.interface)
        self.driver.on_overload = self._overload
        self.scopes = ScopeTap(self.driver.graph.agent_ids, self.driver.sample_rate)
        self.driver.tap = self.scopes
        # Live audio for the dashboard's listen stream (/ws/listen); the listener preview
        # exists in simulated mode while there is a room.
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
            log.warning("routes not driven (agents outside the config): %s", ", ".join(skipped))
        self.driver.start()

    async def close(self) -> None:
        """Stop everything; pending writes finish before the store closes."""
        await self.coupling_driver.close()
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
        self.event_log.end_gestures()       # the last value of every gesture in progress
        await self.event_log.flush()
        if self.store is not None:
            await self.store.close()

    def local_agents(self) -> list[ChildSpec]:
        """The supervised processes of the config's local agents (``spawn = true``)."""
        out = []
        for spec in self.config.agents:
            if not spec.spawn:
                continue
            extra: list[str] = ["--seed", str(spec.seed)]
            if spec.id in self._ports:   # the same ports at every start (fleet/ports.py)
                extra += port_args(self._ports[spec.id])
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
                allow=self.config.installation.allow, extra=extra), fork_main=AGENT_MAIN))
        return out

    def seed_params(self) -> None:
        """The parameters each config agent is told when it comes online (constructor
        arguments such as hidden_size cannot be changed over OSC: they are the agent
        process's own)."""
        for spec in self.config.agents:
            try:
                initial = spec.initial_params()
            except (KeyError, ValueError) as exc:
                log.warning("agent %s: initial parameters unavailable: %s", spec.id, exc)
                continue
            plain = {name.rstrip("_"): value for name, value in initial.items()
                     if is_number(value) or isinstance(value, str) or (
                         isinstance(value, (list, tuple)) and all(is_number(v) for v in value))}
            if plain:
                self.params[spec.id] = {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in plain.items()}

    # -- agents coming and going ------------------------------------------------------

    def _on_agent_change(self, change: AgentChange) -> None:
        entry = change.entry
        # A parameter change (ten a second while a slider moves) carries no specs: they
        # are static for a model, sent with hello and every other change, and the page
        # keeps what it has.
        if change.kind == "removed":
            self.broadcast({"type": "agent_removed", "agent": entry.agent_id})
            return
        self.broadcast({"type": "agent", "change": change.kind,
                        "agent": self.agent_json(entry, specs=change.kind != "params")})
        if change.kind in ("added", "adopted", "online", "offline"):
            self.emit(f"agent_{change.kind}", f"agent {entry.agent_id} {change.kind}",
                      agent=entry.agent_id, status=entry.status)
        if change.kind in ("added", "adopted") and entry.adopted:
            self.adopted.save()
        announced = (entry.osc_port, entry.http_port, entry.rtp_port)
        if change.kind in ("added", "updated") and entry.agent_id in self._ports \
                and self._ports[entry.agent_id] != announced and all(announced):
            self._ports[entry.agent_id] = announced     # it had to take others: keep those
            self.event_log.persist("set_agent_ports", {entry.agent_id: announced})
        if entry.adopted and entry.online and change.kind in ("online", "adopted"):
            self._spawn_task(self._resume(entry.agent_id))
            comings.route_newcomer(self, entry.agent_id)
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
                await self.calls.send_params(agent_id, desired)
            else:
                await self.calls.read_state(agent_id)
        except (HubError, TimeoutError) as exc:
            log.warning("resuming agent %s failed: %s", agent_id, exc)
        entry = self.registry.get(agent_id)
        if entry is not None and entry.online:
            self._resumed.add(agent_id)

    def _online_peer(self, agent_id: str) -> Any:
        """The OSC address of an adopted agent that is online, else None (couplings)."""
        entry = self.registry.get(agent_id)
        return entry.osc_peer if entry is not None and entry.adopted and entry.online else None

    async def _weights_or_none(self, agent_id: str) -> list[float] | None:
        try:
            return await self.calls.weights(agent_id)
        except HubError:
            return None

    def known_agent_ids(self) -> set[str]:
        """Agents of the config and every discovered one."""
        ids = {e.agent_id for e in self.registry.entries()}
        if self.config is not None:
            ids |= set(self.config.agent_ids)
        return ids

    def adopt(self, agent_id: str) -> dict[str, Any]:
        """Adopt a pending agent (persisted)."""
        return self.agent_json(self.calls.adopt(agent_id))

    def forget(self, agent_id: object) -> dict[str, Any]:
        """Forget an agent gone for good (:func:`anamnesis.hub.core.comings.forget`)."""
        return comings.forget(self, agent_id)

    # -- recording --------------------------------------------------------------------

    def record_start(self, name: object) -> dict[str, Any]:
        """Record every agent's output (simulated mode) to ``STATE_DIR/recordings/NAME.wav``."""
        return recording.record_start(self, name)

    async def record_stop(self) -> dict[str, Any]:
        """Stop recording; the file's name, frames and seconds."""
        return await recording.record_stop(self)

    # -- panic and overload -----------------------------------------------------------

    def panic(self, on: bool = True) -> list[str]:
        """``/panic`` (``/unpanic``) to every adopted agent and, at once and whatever the
        clock does, the hub's own outputs: the routes carry silence and every listener
        (the browser's listen streams, the headphone preview) is silenced now, its queued
        audio dropped; the ids the panic went to."""
        if self.driver is not None:
            self.driver.panicked = on
        if self.listen is not None:
            self.listen.panic(on)
        return self.calls.panic(on)

    @property
    def overloaded(self) -> bool:
        """True while the hub's clock cannot keep up with real time: optional work
        (scopes, spectra, a quarter of the telemetry pushes) is shed."""
        return self.driver is not None and self.driver.overloaded

    def _overload(self, overloaded: bool, speed: float, cpu: float) -> None:
        """The clock's verdict, said once, plainly, in the log (the terminal) and the
        event log (:func:`anamnesis.hub.core.comings.overload_message`)."""
        message = comings.overload_message(overloaded, speed, cpu)
        log.warning("%s", message)
        self.emit("overload" if overloaded else "overload_end", message,
                  speed=round(speed, 3), cpu=round(cpu, 3))

    # -- descriptions -----------------------------------------------------------------

    def installation(self) -> dict[str, Any]:
        """The installation as the API shows it (the config as edited)."""
        edited = self.edited_config()
        cfg = edited.to_dict() if edited is not None else None
        return {"name": self.name, "mode": self.mode, "interface": self.interface,
                "started": self.started, "config": cfg,
                "clock": self.driver.stats() if self.driver is not None else None,
                "local_agents": [c.to_json() for c in self.supervisor.children.values()]}

    def agent_json(self, entry: Any, *, specs: bool = True) -> dict[str, Any]:
        """One agent as the API shows it (REST, the WebSocket's hello and ``agent``
        pushes): its record, its remembered desired parameters and (with ``specs``) what
        its model's parameters are (:func:`anamnesis.hub.fleet.specs.agent_specs`)."""
        out = dict(entry.to_json(), desired=self.params.get(entry.agent_id, {}))
        if specs:
            from anamnesis.hub.fleet.specs import agent_specs

            out["specs"] = agent_specs(self.config, entry.agent_id, entry.model)
        return out

    def agents_json(self) -> list[dict[str, Any]]:
        """Every agent (:meth:`agent_json`)."""
        return [self.agent_json(e) for e in self.registry.entries()]


__all__ = ["Hub", "load_or_create_token"]
