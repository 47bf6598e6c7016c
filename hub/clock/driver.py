"""What every driver of the engine offers the hub (simulated or deployed), and the one
way a driver turns the hub's routes into its graph's edges.

:class:`Driver` is the protocol the hub composes against: routes in
(:meth:`~Driver.set_routes`), start, close, statistics, the scope and listen taps. A
simulated installation can also move its room (``update_room``) and record
(``record_start``/``record_stop``): :func:`can_record` and :func:`can_move_room` say
whether a driver does, so a deployed one is refused with a clear message rather than
probed with ``hasattr`` at every call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from anamnesis.hub.installation.edges import Edge


class Driver(Protocol):
    """A driver of the routing graph (:class:`~anamnesis.hub.clock.simulated.SimulatedDriver`
    or :class:`~anamnesis.hub.clock.deployed.DeployedRouter`)."""

    graph: Any
    sample_rate: int
    tap: Any
    listen: Any

    def set_routes(self, routes: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Make the graph's edges the routes; the ids left out (``ValueError`` if refused)."""

    def start(self) -> None:
        """Start driving in the background."""

    async def close(self) -> None:
        """Stop driving."""

    def stats(self) -> dict[str, Any]:
        """Counters for the API."""


def routes_to_edges(agent_ids: Sequence[str], routes: Mapping[str, Mapping[str, Any]]
                    ) -> tuple[dict[str, Edge], list[str]]:
    """The graph edges of the hub's ``routes`` (API shape ``{from, to, gain, ...}``)
    between ``agent_ids``, and the ids of the routes left out (an end not driven)."""
    known = set(agent_ids)
    edges, skipped = {}, []
    for route_id, r in routes.items():
        if r["from"] in known and r["to"] in known:
            edges[route_id] = Edge(r["from"], r["to"], float(r["gain"]), float(r["delay_ms"]),
                                   r.get("lowpass_hz"), r.get("highpass_hz"),
                                   r.get("shape", "none"))
        else:
            skipped.append(route_id)
    return edges, skipped


def can_record(driver: Any) -> bool:
    """True if ``driver`` records every agent's output (simulated mode)."""
    return driver is not None and callable(getattr(driver, "record_start", None))


def can_move_room(driver: Any) -> bool:
    """True if ``driver`` couples its agents through a room it can recompute."""
    return driver is not None and callable(getattr(driver, "update_room", None))


__all__ = ["Driver", "can_move_room", "can_record", "routes_to_edges"]
