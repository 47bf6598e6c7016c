"""What every driver of the engine offers the hub (simulated or deployed), and the one
way a driver turns the hub's routes into its graph's edges.

:class:`Driver` is the protocol the hub composes against: routes in
(:meth:`~Driver.set_routes`), start, close, statistics, the scope and listen taps, the
room (:meth:`~Driver.update_room`) and recording (:meth:`~Driver.record_start`,
:meth:`~Driver.record_stop`). Both drivers answer every call: what a driver cannot do
(a deployed installation records nothing yet, and its room is the real one) it
refuses itself, with a message the hub passes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from anamnesis.hub.installation.edges import Edge


class Driver(Protocol):
    """A driver of the routing graph (:class:`~anamnesis.hub.clock.simulated.SimulatedDriver`
    or :class:`~anamnesis.hub.clock.deployed.DeployedRouter`)."""

    graph: Any
    sample_rate: int
    tap: Any
    listen: Any
    panicked: bool                  # the hub's panic: the routes carry silence
    on_overload: Any                # the hub's hook (anamnesis.hub.clock.pacing.OverloadHook)

    @property
    def overloaded(self) -> bool:
        """True while the loop cannot keep up with real time."""

    def set_routes(self, routes: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """Make the graph's edges the routes; the ids left out (``ValueError`` if refused)."""

    def start(self) -> None:
        """Start driving in the background."""

    async def close(self) -> None:
        """Stop driving."""

    def stats(self) -> dict[str, Any]:
        """Counters for the API."""

    def update_room(self, room: Any, agents: Sequence[Any]) -> None:
        """The installation's room or positions changed (recomputed off the audio thread)."""

    def record_start(self, path: Path, max_seconds: float = 3600.0) -> None:
        """Record every agent's output to ``path``; ``RuntimeError`` (the reason) if not."""

    async def record_stop(self) -> dict[str, Any]:
        """Stop recording: path, frames, seconds; ``RuntimeError`` if not recording."""


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


__all__ = ["Driver", "routes_to_edges"]
