"""The installation's weight couplings as edited: checked once, driven, kept with the
config.

:class:`CouplingBook` keeps the couplings (id ``"a~>b"``) as the API shows them
(``{id, from, to, mode, kappa, rate_hz, gain, noise, mask}``, plus the live counts of
:mod:`anamnesis.hub.fleet.couplings` under ``stats``). An edit is checked with the
config's own rules (:func:`anamnesis.hub.installation.check_couplings.read_couplings`,
so the API and a config file refuse the same things in the same words) and, when both
agents are online, against their weight vectors' lengths; it is handed to the driver
and kept in the config as edited (``[[coupling]]``), which the store holds, so a
restarted hub restores it. Scenes save and recall the set (:mod:`.scenes`). Loop-only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from anamnesis.hub.core.errors import Conflict, HubError, NotFound
from anamnesis.hub.core.events import EventLog

log = logging.getLogger(__name__)

#: Most couplings the hub keeps (each one is a task reading two agents at up to 100 Hz).
MAX_COUPLINGS = 256
_FIELDS = ("from", "to", "mode", "kappa", "rate_hz", "gain", "noise", "mask")


def coupling_json(coupling: Any) -> dict[str, Any]:
    """A :class:`~anamnesis.hub.installation.config.Coupling` as the API shows it."""
    from anamnesis.hub.installation.config import coupling_dict

    return {"id": coupling.id, **{"mask": None, **coupling_dict(coupling)}}


class CouplingBook:
    """The couplings as edited (see the module docstring).

    ``known_ids()`` the agents a coupling may name; ``driver()`` the running
    :class:`~anamnesis.hub.fleet.couplings.CouplingDriver` or None; ``weights(id)`` an
    online agent's flat weights (None when it cannot answer); ``persist()`` stores the
    config as edited.
    """

    def __init__(self, config: Any, events: EventLog, *, known_ids: Callable[[], set[str]],
                 driver: Callable[[], Any],
                 weights: Callable[[str], Awaitable[list[float] | None]],
                 persist: Callable[[], None]) -> None:
        self.events = events
        self.couplings: dict[str, Any] = {}      # id -> Coupling, in insertion order
        self._known_ids = known_ids
        self._driver = driver
        self._weights = weights
        self._persist = persist
        if config is not None:
            self.couplings = {k.id: k for k in config.couplings}

    def restore(self, toml_text: str, base_dir: Any) -> None:
        """The couplings of the config as last edited (at a restart), if it still checks."""
        from anamnesis.hub.installation.check import parse_config
        from anamnesis.hub.installation.config import ConfigError

        try:
            stored = parse_config(toml_text, "stored config", base_dir=base_dir)
        except ConfigError as exc:
            log.error("the stored config no longer checks; the couplings come from the "
                      "config file: %s", exc)
            return
        self.couplings = {k.id: k for k in stored.couplings}

    def definitions(self) -> list[dict[str, Any]]:
        """Every coupling as the API shows it, without counts (what a scene keeps)."""
        return [coupling_json(k) for k in self.couplings.values()]

    def listing(self) -> list[dict[str, Any]]:
        """Every coupling with its live counts."""
        return [self.show(cid) for cid in self.couplings]

    def show(self, cid: str) -> dict[str, Any]:
        """One coupling with its live counts (``NotFound`` if there is none)."""
        if cid not in self.couplings:
            raise NotFound(f"no coupling {cid!r}")
        driver = self._driver()
        stats = driver.stats(cid) if driver is not None else None
        return {**coupling_json(self.couplings[cid]), "stats": stats}

    def check(self, body: object, current: Any = None) -> Any:
        """A Coupling from a JSON ``body`` (over ``current`` when editing one); ``HubError``
        naming every problem, in the config's words."""
        from anamnesis.hub.installation.check import _Checker
        from anamnesis.hub.installation.check_couplings import read_couplings
        from anamnesis.hub.installation.toml import _Locator

        if not isinstance(body, dict):
            raise HubError("a coupling is a JSON object")
        table = dict(body)
        table.pop("id", None)
        table.pop("stats", None)
        if current is not None:
            if any(table.get(k, v) != v for k, v in (("from", current.source),
                                                      ("to", current.target))):
                raise HubError("from and to of a coupling cannot change; delete it and add "
                               "another")
            table = {**coupling_json(current), **table}
            table.pop("id")
        if table.get("mask") is None:
            table.pop("mask", None)
        checker = _Checker("coupling", _Locator(""))
        found = read_couplings(checker, [table], sorted(self._known_ids()))
        if checker.problems:
            raise HubError("; ".join(p.message for p in checker.problems))
        return found[0]

    async def _check_shapes(self, coupling: Any) -> None:
        a, b = await self._weights(coupling.source), await self._weights(coupling.target)
        if a is None or b is None:
            return              # offline: the driver says so in the coupling's stats
        if len(a) != len(b):
            raise HubError(f"{coupling.source} has {len(a)} weights and {coupling.target} "
                           f"{len(b)}; a coupling joins agents whose weight vectors have one "
                           "shape (the same model and sizes)")
        if coupling.mask is not None and max(coupling.mask) >= len(a):
            raise HubError(f"the mask reaches weight {max(coupling.mask)} of {len(a)}")

    async def _keep(self, couplings: dict[str, Any]) -> None:
        driver = self._driver()
        if driver is not None:
            await driver.set(couplings)
        self.couplings = couplings
        self._persist()

    async def add(self, body: object) -> dict[str, Any]:
        """Add a coupling ``{from, to, mode, kappa, rate_hz, gain, noise, mask}``."""
        coupling = self.check(body)
        reverse = f"{coupling.target}~>{coupling.source}"
        if coupling.id in self.couplings or reverse in self.couplings:
            raise Conflict(f"agents {coupling.source} and {coupling.target} are coupled "
                           "already; PATCH or delete that coupling")
        if len(self.couplings) >= MAX_COUPLINGS:
            raise Conflict(f"at most {MAX_COUPLINGS} couplings")
        await self._check_shapes(coupling)
        await self._keep({**self.couplings, coupling.id: coupling})
        self.events.emit("coupling_added", f"coupling {coupling.id} added ({coupling.mode}, "
                         f"kappa {coupling.kappa:g}, {coupling.rate_hz:g} Hz)",
                         coupling=coupling_json(coupling))
        return self.show(coupling.id)

    async def update(self, cid: str, body: object) -> dict[str, Any]:
        """Change a coupling's mode, strength, rate or transform."""
        if cid not in self.couplings:
            raise NotFound(f"no coupling {cid!r}")
        coupling = self.check(body, self.couplings[cid])
        await self._check_shapes(coupling)
        await self._keep({**self.couplings, cid: coupling})
        self.events.emit("coupling_changed", f"coupling {cid} changed",
                         coupling=coupling_json(coupling))
        return self.show(cid)

    async def delete(self, cid: str) -> None:
        """Remove a coupling."""
        if cid not in self.couplings:
            raise NotFound(f"no coupling {cid!r}")
        await self._keep({k: v for k, v in self.couplings.items() if k != cid})
        self.events.emit("coupling_deleted", f"coupling {cid} deleted", coupling=cid)

    async def replace(self, bodies: list[Any]) -> None:
        """Make the set exactly ``bodies`` (a scene's recall), each checked."""
        new = {}
        for body in bodies:
            coupling = self.check(body)
            new[coupling.id] = coupling
        await self._keep(new)

    def edited(self, config: Any) -> Any:
        """``config`` with the couplings as edited, those between its own agents (one to
        an agent added on the LAN lives in the store only, as its routes do)."""
        placed = set(config.agent_ids)
        return dataclasses.replace(config, couplings=tuple(
            k for k in self.couplings.values() if {k.source, k.target} <= placed))


__all__ = ["MAX_COUPLINGS", "CouplingBook", "coupling_json"]
