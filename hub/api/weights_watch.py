"""Weights on watch: the dashboard's live multislider of an agent's weights.

A WebSocket client sends ``watch_weights {agents: [ids]}`` (:mod:`anamnesis.hub.api.ws`);
the socket's watch set is replaced ([] stops watching). One poller task reads
every watched agent's flat weight vector (the hub's ``get_weights``: OSC
``/weights``) at most once per ``period_s`` s (default 1/3 s: about 3 Hz),
however many sockets watch it (one read per agent at a time, in a task of its
own, so an agent slow to answer delays nobody else), and hands each socket that
watches the agent
``{"type": "weights", "agent": ID, "weights": [...], "t": UNIX_S}``.

Offline (or pending, or unknown) agents are skipped until they are online. A
failed read (a timeout, an agent that refuses) is counted in
``hub.counts["weights_watch_errors"]`` and logged once per agent; the poller
keeps going. With nothing watched the task sleeps on an event and costs
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from anamnesis.agents.net.tasks import cancel_and_wait

log = logging.getLogger(__name__)

#: Seconds between two reads of one agent's weights (about 3 Hz).
WATCH_PERIOD_S = 1.0 / 3.0
#: Most agents one socket may watch at once.
MAX_WATCHED = 256

Push = Callable[[dict[str, Any]], None]


class WeightsWatch:
    """Polls the watched agents' weights for every watching socket (see the module docstring).

    ``hub`` is the :class:`anamnesis.hub.core.hub.Hub` (its ``registry``, ``get_weights`` and
    ``counts``).
    """

    def __init__(self, hub: Any, *, period_s: float = WATCH_PERIOD_S) -> None:
        self.hub = hub
        self.period_s = float(period_s)
        self._watchers: dict[Hashable, tuple[frozenset[str], Push]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._logged: set[str] = set()
        self._reading: dict[str, asyncio.Task[None]] = {}
        self.polls = 0

    def watch(self, key: Hashable, agents: Iterable[str], push: Push) -> list[str]:
        """Make ``agents`` the watch set of the socket ``key`` (pushing with ``push``); an
        empty set stops its watching. The set, sorted."""
        wanted = frozenset(agents)
        if len(wanted) > MAX_WATCHED:
            raise ValueError(f"at most {MAX_WATCHED} agents can be watched at once")
        if wanted:
            self._watchers[key] = (wanted, push)
            self._wake.set()
            if self._task is None:
                self._task = asyncio.create_task(self._run(), name="hub-weights-watch")
        else:
            self._watchers.pop(key, None)
        return sorted(wanted)

    def unwatch(self, key: Hashable) -> None:
        """Forget the socket ``key`` (it closed)."""
        self._watchers.pop(key, None)

    def watched(self) -> set[str]:
        """Every agent some socket watches."""
        out: set[str] = set()
        for agents, _ in self._watchers.values():
            out |= agents
        return out

    async def _read(self, agent_id: str) -> None:
        try:
            weights = await self.hub.get_weights(agent_id)
        except Exception as exc:  # noqa: BLE001 (HubError, TimeoutError: counted, logged once)
            self.hub.counts["weights_watch_errors"] += 1
            if agent_id not in self._logged:
                self._logged.add(agent_id)
                log.warning("watching the weights of %s: %s (logged once)", agent_id, exc)
            return
        message = {"type": "weights", "agent": agent_id, "weights": weights,
                   "t": round(time.time(), 3)}
        for agents, push in list(self._watchers.values()):
            if agent_id in agents:
                push(message)

    def _online(self, agent_id: str) -> bool:
        entry = self.hub.registry.get(agent_id)
        return entry is not None and entry.adopted and entry.online

    async def _run(self) -> None:
        while True:
            if not self._watchers:
                self._wake.clear()
                await self._wake.wait()
            for agent_id in sorted(self.watched()):
                # One read per agent at a time, each in a task of its own: an agent that
                # is slow to answer delays only its own pushes.
                if agent_id not in self._reading and self._online(agent_id):
                    task = asyncio.create_task(self._read(agent_id),
                                               name=f"hub-weights-{agent_id}")
                    self._reading[agent_id] = task
                    task.add_done_callback(
                        lambda _, agent_id=agent_id: self._reading.pop(agent_id, None))
            self.polls += 1
            await asyncio.sleep(self.period_s)

    async def close(self) -> None:
        """Stop polling."""
        self._watchers.clear()
        tasks = [t for t in (self._task, *self._reading.values()) if t is not None]
        await cancel_and_wait(*tasks)
        self._task = None


__all__ = ["MAX_WATCHED", "WATCH_PERIOD_S", "WeightsWatch"]
