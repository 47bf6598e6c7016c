"""Couplings of learned parameters, live: the hub reads and writes the agents' weights
over OSC at each coupling's rate (deployed mode, and the live simulated hub).

The maths is :mod:`anamnesis.hub.engine.weight_couplings`'s. Each coupling runs as one
task of its own, so an agent slow to answer delays nobody else. At each of its times
(``1 / rate_hz`` apart on the loop's clock; a late time is skipped, never caught up in
a burst) the task asks both agents for ``/weights`` at once and waits at most
:func:`reply_window` seconds. Then:

* both answered: the coupled vectors go back as ``/weights f ...`` (fire and forget:
  each agent applies them at its next block boundary; what the agents learn in between
  goes on), counted in ``applied``;
* either did not (offline, stopped, a lost datagram): nothing is written, ``stale``
  counts it, and the next time tries again — the other agent plays on untouched;
* the vectors differ in shape (or the mask reaches beyond them): nothing is written,
  ``refused`` counts it and ``error`` says why, logged once per coupling.

Nothing here touches audio: an agent's audio thread only ever sees a weight write
queued for a block boundary, as from the dashboard. In the live hub the writes land
within a block or two of their time; a rehearsal (:class:`anamnesis.hub.clock.rehearse.
Rehearsal`) applies them at exact boundaries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.oscmap import build_message
from anamnesis.hub.engine.weight_couplings import couple, distance

log = logging.getLogger(__name__)


def reply_window(rate_hz: float) -> float:
    """Seconds a coupling waits for both agents' weights: most of its period, at most
    half a second (a reply later than that is stale)."""
    return min(0.5, 0.8 / rate_hz)


class CouplingTask:
    """One coupling's task and its counts (see the module docstring).

    ``coupling`` a :class:`anamnesis.hub.installation.config.Coupling`; ``peer(id)``
    gives an online agent's OSC address or None; ``osc`` the hub's
    :class:`~anamnesis.hub.fleet.osc.HubOsc`; ``counts`` the hub's counters.
    """

    def __init__(self, coupling: Any, *, peer: Callable[[str], Any], osc: Any,
                 counts: Counter[str], seed: int = 0) -> None:
        self.coupling = coupling
        self._peer = peer
        self._osc = osc
        self._counts = counts
        self._rng = np.random.default_rng(seed)
        self.applied = 0
        self.stale = 0
        self.refused = 0
        self.error: str | None = None
        self.last_distance: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin coupling (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"coupling {self.coupling.id}")

    async def close(self) -> None:
        """Stop; a read in flight is abandoned."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def stats(self) -> dict[str, Any]:
        """What the API shows of the coupling's work."""
        return {"applied": self.applied, "stale": self.stale, "refused": self.refused,
                "error": self.error, "distance": self.last_distance}

    async def _read(self, agent_id: str) -> np.ndarray | None:
        peer = self._peer(agent_id)
        if peer is None:
            return None
        try:
            replies = await self._osc.collect(
                peer, [build_message("/weights")],
                lambda ms: any(a in ("/weights", "/error") for a, _ in ms),
                reply_window(self.coupling.rate_hz))
        except Exception:   # a timeout, TooBusy, a closed socket: stale all the same
            return None
        for address, args in replies:
            if address == "/weights" and args and all(
                    isinstance(v, (int, float)) for v in args):
                return np.array(args, dtype=np.float64)
        return None

    async def step(self) -> bool:
        """One time of the coupling; True if it wrote."""
        k = self.coupling
        w_from, w_to = await asyncio.gather(self._read(k.source), self._read(k.target))
        if w_from is None or w_to is None:
            self.stale += 1
            self._counts["coupling_stale"] += 1
            return False
        try:
            new_from, new_to = couple(k.mode, k.kappa, w_from, w_to, gain=k.gain,
                                      noise=k.noise, mask=k.mask, rng=self._rng)
        except ValueError as exc:
            self.refused += 1
            self._counts["coupling_refused"] += 1
            if self.error is None:
                log.error("coupling %s: %s", k.id, exc)
            self.error = str(exc)
            return False
        self.error = None
        writes = [(k.target, new_to)] + ([(k.source, new_from)] if new_from is not None else [])
        for agent_id, w in writes:
            peer = self._peer(agent_id)
            if peer is not None:
                self._osc.send_raw(peer, build_message("/weights", [float(v) for v in w]))
        self.last_distance = distance(w_from if new_from is None else new_from, new_to)
        self.applied += 1
        self._counts["coupling_applied"] += 1
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.coupling.rate_hz
        due = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                await self.step()
            except Exception:   # never let one coupling's surprise end the others
                self._counts["coupling_errors"] += 1
                log.exception("coupling %s failed", self.coupling.id)
            due += period
            now = loop.time()
            if due < now:                 # late: skip the missed times, no burst
                due = now + period


class CouplingDriver:
    """Every coupling of the installation as a :class:`CouplingTask`; :meth:`set` replaces
    the set (a changed coupling restarts, an unchanged one goes on)."""

    def __init__(self, *, peer: Callable[[str], Any], osc: Any, counts: Counter[str]) -> None:
        self._peer = peer
        self._osc = osc
        self._counts = counts
        self.tasks: dict[str, CouplingTask] = {}

    async def set(self, couplings: Mapping[str, Any]) -> None:
        """Run exactly ``couplings`` (id -> Coupling)."""
        for cid in list(self.tasks):
            if cid not in couplings or self.tasks[cid].coupling != couplings[cid]:
                await self.tasks.pop(cid).close()
        for i, (cid, coupling) in enumerate(couplings.items()):
            if cid not in self.tasks:
                task = CouplingTask(coupling, peer=self._peer, osc=self._osc,
                                    counts=self._counts, seed=i)
                self.tasks[cid] = task
                task.start()

    def stats(self, cid: str) -> dict[str, Any] | None:
        """The running coupling's counts, or None."""
        task = self.tasks.get(cid)
        return None if task is None else task.stats()

    async def close(self) -> None:
        """Stop every coupling."""
        for task in self.tasks.values():
            with contextlib.suppress(Exception):
                await task.close()
        self.tasks.clear()
