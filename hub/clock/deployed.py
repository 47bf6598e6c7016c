"""Deployed mode, live: the hub routes the electrical edges between agents on their own clocks.

Every agent plays on its own sound card (or null clock); the hub, on its own
block clock (paced at real time on the event loop), for every block:

1. reads each routed agent's ``out`` stream from its jitter buffer
   (:class:`anamnesis.hub.clock.deployed_agent.DeployedAgent`, which leases the stream from the agent
   and absorbs the clock drift),
2. runs the routing graph (:mod:`anamnesis.hub.engine.graph`, deployed: latency 0, the network
   and the jitter buffers add theirs),
3. sends each agent its ``in`` block (the agent adds it to what its mic hears).

Every routed agent's RTP, both ways, goes through one socket of the hub
(:class:`anamnesis.hub.clock.rtp_port.SharedRtpPort`, told apart by source address).

Only online, adopted agents of the graph with an RTP port are routed; an agent
that goes offline is dropped (its edges fade out, ``graph.set_agent_online``)
and one that comes back is leased again. With ``tap`` set (a
:class:`anamnesis.hub.monitor.scopes.ScopeTap`) the routed agents' ``out`` blocks go to it too, and
with ``listen`` set (a :class:`anamnesis.hub.monitor.listen.ListenTap`) every block of outputs (silence
for an agent not routed; no listener preview: the air is real). Opening an agent's streams is an HTTP
request, made in a task of its own so the block clock never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.hub.clock.deployed_agent import DeployedAgent
from anamnesis.hub.clock.driver import routes_to_edges
from anamnesis.hub.clock.pacing import (
    BlockPacer,
    OverloadHook,
    PacedLoop,
    pace_stats,
    start_loop_task,
)
from anamnesis.hub.clock.rtp_port import SharedRtpPort
from anamnesis.hub.engine.graph import RoutingGraph

log = logging.getLogger(__name__)


class DeployedRouter(PacedLoop):
    """Routes ``graph``'s edges between deployed agents (see the module docstring).

    ``registry`` is the hub's agent registry; ``interface`` the hub's address (the
    agents' ``--hub``); ``target_ms`` the jitter buffers' starting depth (ms).
    """

    def __init__(self, graph: RoutingGraph, registry: Any, *, interface: str,
                 target_ms: float = 40.0, max_lag_s: float = 0.5) -> None:
        self.graph = graph
        self.registry = registry
        self.interface = interface
        self.target_ms = float(target_ms)
        self.max_lag_s = float(max_lag_s)
        self.block = graph.max_block
        self.sample_rate = graph.sample_rate
        n = graph.n_agents
        self._outputs = np.zeros((self.block, n))
        self._inputs = np.zeros((self.block, n))
        self._heard = np.zeros((n, self.block))        # the outputs, one contiguous row per agent
        self._sends = np.zeros((n, self.block))        # the inputs, one contiguous row per agent
        #: Per routed agent: its rows and its stream's read and send (rebuilt when the
        #: routed agents or the columns change: a dict walk per agent per block saved).
        self._plan: list[tuple[Any, Any, np.ndarray, np.ndarray]] | None = None
        #: Every routed agent's RTP, both ways, on one socket (:mod:`.rtp_port`).
        self.rtp = SharedRtpPort(interface)
        self._agents: dict[str, tuple[tuple[str, int, int], DeployedAgent]] = {}
        self._opening: dict[str, asyncio.Task[None]] = {}
        # _sync runs when something it looks at changed: the registry (its listener),
        # an opening that ended, the routes (a registry without listeners: every block)
        self._dirty = True
        add_listener = getattr(registry, "add_listener", None)
        self._unlisten = add_listener(self._changed) if add_listener is not None else None
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        self._pacer = BlockPacer(self.block / self.sample_rate, max_lag_s,
                                 on_overload=self._overload)
        #: ``on_overload(overloaded, speed, cpu)`` (the hub's), see :mod:`.pacing`.
        self.on_overload: OverloadHook | None = None
        #: True after the hub's panic: the routes carry silence until unpanic.
        self.panicked = False
        self.open_failures = 0
        self.tap: Any = None     # anamnesis.hub.monitor.scopes.ScopeTap: the leased agents' out blocks, if set
        self.listen: Any = None  # anamnesis.hub.monitor.listen.ListenTap: every block of outputs, if set

    def set_routes(self, routes: dict[str, dict[str, Any]]) -> list[str]:
        """Make the graph's edges the hub's routes between its agents; the ids left out.

        An adopted agent the config does not list (one added on the LAN, JOURNEYS 3)
        that a route names joins the graph (a new column, up to its ``max_agents``), so
        its route is played like any other; one the hub has not adopted stays out."""
        for route in routes.values():
            for end in (route["from"], route["to"]):
                entry = self.registry.get(end)
                if end not in self.graph.agent_ids and entry is not None and entry.adopted:
                    try:
                        self.graph.add_agent(end)
                    except ValueError as exc:       # the graph is full
                        log.warning("deployed mode: cannot route agent %s: %s", end, exc)
                    else:
                        log.info("deployed mode: agent %s joins the routes", end)
        edges, skipped = routes_to_edges(self.graph.agent_ids, routes)
        self.graph.set_edges(edges)
        self._dirty = True
        return skipped

    def _changed(self, change: Any = None) -> None:
        self._dirty = True

    def _columns(self) -> dict[str, int]:
        """The graph's columns, with the block arrays grown to them after an agent joined
        (a route edit's allocation, made once, never per block)."""
        n = self.graph.n_agents
        if self._outputs.shape[1] != n:
            self._outputs = np.zeros((self.block, n))
            self._inputs = np.zeros((self.block, n))
            self._heard = np.zeros((n, self.block))
            self._sends = np.zeros((n, self.block))
            self._plan = None
        return {a: i for i, a in enumerate(self.graph.agent_ids)}

    def _sync(self) -> None:
        """Start opening new agents, drop gone or moved ones (loop only, never waits)."""
        for agent_id in self.graph.agent_ids:
            entry = self.registry.get(agent_id)
            wanted = None
            if entry is not None and entry.adopted and entry.online and entry.rtp_port:
                wanted = (entry.host, entry.http_port, entry.rtp_port)
            current = self._agents.get(agent_id)
            if current is not None and current[0] != wanted:
                del self._agents[agent_id]
                self._plan = None
                asyncio.create_task(current[1].close())
                current = None
            if wanted is not None and current is None and agent_id not in self._opening:
                self._opening[agent_id] = asyncio.create_task(self._open(agent_id, wanted))
            routed = agent_id in self._agents
            if self.graph.is_online(agent_id) != routed:
                self.graph.set_agent_online(agent_id, routed)

    async def _open(self, agent_id: str, address: tuple[str, int, int]) -> None:
        host, http_port, rtp_port = address
        agent = DeployedAgent(host=host, http_port=http_port, rtp_port=rtp_port,
                              block=self.block, sample_rate=self.sample_rate,
                              interface=self.interface, streams=("out",),
                              target_ms=self.target_ms, rtp=self.rtp)
        try:
            await agent.open()
        except Exception as exc:  # noqa: BLE001 (unreachable or odd agent: retried next block)
            self.open_failures += 1
            log.warning("deployed mode: cannot open agent %s's streams: %s", agent_id, exc)
            await agent.close()
            await asyncio.sleep(1.0)
        else:
            self._agents[agent_id] = (address, agent)
            self._plan = None
            log.info("deployed mode: routing agent %s", agent_id)
        finally:
            self._opening.pop(agent_id, None)
            self._dirty = True

    @property
    def resyncs(self) -> int:
        """Times the loop fell more than ``max_lag_s`` behind and restarted its clock."""
        return self._pacer.resyncs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self.rtp.open()
        warm = RoutingGraph(self.graph.agent_ids, self.sample_rate, self.block, mode="deployed")
        await loop.run_in_executor(None, warm.tick, np.zeros((self.block, warm.n_agents)))
        columns = self._columns()
        while True:
            if len(columns) != self.graph.n_agents:
                columns = self._columns()
                self._dirty = True
            if self._dirty or self._unlisten is None:
                self._dirty = False
                self._sync()
            if self._plan is None:
                self._plan = [(agent.buffers["out"].read, agent.send_in,
                               self._heard[columns[a]], self._sends[columns[a]])
                              for a, (_, agent) in self._agents.items()]
            self._heard.fill(0.0)                # silence for an agent not routed
            for read, _, heard, _ in self._plan:
                read(heard)
            np.copyto(self._outputs, self._heard.T)
            if self.tap is not None and not self._pacer.overloaded and self._agents:
                # the scopes know the config's agents (the first columns) only
                seen = self.tap.agent_ids
                self.tap.add(self._outputs[:, :len(seen)],
                             [columns[a] for a in self._agents if columns[a] < len(seen)])
            if self.listen is not None:
                self.listen.add(self._outputs, None)
            self.graph.tick(self._outputs, out=self._inputs)
            if self.panicked:       # the routes carry nothing to the agents
                self._inputs.fill(0.0)
            np.copyto(self._sends, self._inputs.T)
            for _, send, _, row in self._plan:
                send(row)
            self.steps += 1
            await self._pacer.wait()

    def start(self) -> None:
        """Start routing in the background."""
        if self._task is None:
            self._task = start_loop_task(self._run(), name="hub-deployed-router",
                                         what="deployed mode: the router")

    def update_room(self, room: Any, agents: Sequence[Any]) -> None:
        """Nothing to recompute: a deployed installation's room is the real one (the hub
        keeps the layout for the dashboard)."""

    def record_start(self, path: Path, max_seconds: float = 3600.0) -> None:
        """Refused: a deployed installation is not recorded by the hub (yet)."""
        raise RuntimeError("recording needs simulated mode: recording a deployed installation "
                           "is not built yet (record the speakers' feeds at the sound card or "
                           "in JACK meanwhile)")

    async def record_stop(self) -> dict[str, Any]:
        """Refused: a deployed installation never records."""
        raise RuntimeError("not recording (a deployed installation does not record)")

    def stats(self) -> dict[str, Any]:
        """Blocks routed, resyncs, the routed agents and their stream counters."""
        return {"steps": self.steps, "resyncs": self.resyncs, "open_failures": self.open_failures,
                **pace_stats(self._pacer),
                "routed": sorted(self._agents), "rtp": self.rtp.stats(),
                "agents": {a: agent.stats() for a, (_, agent) in self._agents.items()}}

    async def close(self) -> None:
        """Stop routing and release every agent's streams."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._unlisten is not None:
            self._unlisten()
        await cancel_and_wait(*list(self._opening.values()))
        for _, agent in list(self._agents.values()):
            await agent.close()
        self._agents.clear()
        self._plan = None
        self.rtp.close()


__all__ = ["DeployedRouter"]
