"""The installation's routes as edited: edges and rings, checked once, driven, stored.

:class:`RouteBook` keeps the routes (id ``"a->b"``; a ring's ``"RING:a->b"``, as
:mod:`anamnesis.hub.installation.edges` names them) as the API shows them
(``{id, from, to, gain, delay_ms, lowpass_hz, highpass_hz, shape}``). Every edit is
checked here (fields, the edge limits of ``installation.edges``, known agents, and in
deployed mode no cycle of zero-delay edges), handed to the driver's graph before it is
kept (the graph may refuse it too), written to the store and logged. The config as
edited (:meth:`RouteBook.edited_config`) folds the routes and the room back into an
installation config: a ring whose edges are all there with common parameters stays a
``[[ring]]``. Loop-only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

from anamnesis.agents.protocol.ids import ID_RE
from anamnesis.hub.core.agent_calls import is_number
from anamnesis.hub.core.errors import Conflict, HubError, NotFound
from anamnesis.hub.core.events import EventLog
from anamnesis.hub.installation.edges import (
    MAX_DELAY_MS,
    MAX_GAIN,
    SHAPES,
    Edge,
    expand_ring,
    ring_edge_id,
    zero_delay_cycles,
)

#: Most routes the hub keeps (each write is a user's, but bound them anyway).
MAX_ROUTES = 4096
_FIELDS = {"from", "to", "gain", "delay_ms", "lowpass_hz", "highpass_hz", "shape"}


def route_json(edge: Edge, edge_id: str) -> dict[str, Any]:
    """An :class:`Edge` as the API shows a route."""
    d = asdict(edge)
    return {"id": edge_id, "from": d.pop("source"), "to": d.pop("target"), **d}


def edge_params(route: Mapping[str, Any]) -> dict[str, Any]:
    """A route's gain, delay, filters and shape as the config's ``Route`` takes them."""
    cut = {k: None if route.get(k) is None else float(route[k])
           for k in ("lowpass_hz", "highpass_hz")}
    return {"gain": float(route["gain"]), "delay_ms": float(route["delay_ms"]), **cut,
            "shape": route["shape"]}


def as_ring(name: str, edges: list[dict[str, Any]]) -> Any:
    """The config's ``Ring`` the edges of ring ``name`` still form (a closed chain with
    common parameters), else None."""
    from anamnesis.hub.installation.config import Ring

    following = {e["from"]: e["to"] for e in edges}
    params = [edge_params(e) for e in edges]
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


def _not_clocked(end: str, agent_id: str) -> str:
    """Why a simulated installation cannot route an agent it was not configured with,
    and what to do: its stream would stay silent (the hub clocks, and places in the
    room, only the agents of its config)."""
    return (f"{end}: agent {agent_id!r} is not part of this simulated installation: the hub "
            f"clocks (and places in the room) only the agents of its config, so {agent_id} "
            f"would stay silent. Add an [[agent]] with id = \"{agent_id}\", a speaker and a "
            f"mic to the config, restart the hub, and start the agent with `anamnesis agent "
            f"--id {agent_id} --audio hub --hub HUB_ADDRESS ...` (or spawn = true to let the "
            f"hub start it)")


class RouteBook:
    """The routes as edited (see the module docstring).

    ``known_ids()`` gives the agents a route may name; ``driver()`` the running driver
    (or None); ``layout()`` the room and the agents with their positions as edited."""

    def __init__(self, config: Any, mode: str, events: EventLog, *,
                 known_ids: Callable[[], set[str]], driver: Callable[[], Any],
                 layout: Callable[[], tuple[Any, tuple[Any, ...]]],
                 finish: Callable[[Any], Any] = lambda config: config) -> None:
        self.config = config
        self._finish = finish
        self.mode = mode
        self.events = events
        self.routes: dict[str, dict[str, Any]] = {}
        self._known_ids = known_ids
        self._driver = driver
        self._layout = layout

    def seed_from_config(self) -> None:
        """The config's routes and rings, on a first start (an empty store)."""
        from anamnesis.hub.engine.graph import edges_from_config

        self.routes.clear()
        for edge_id, edge in edges_from_config(self.config).items():
            self.routes[edge_id] = route_json(edge, edge_id)

    def check(self, body: dict[str, Any], *, current: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        """A route from ``body`` (over ``current`` when editing one); ``HubError`` listing
        every problem."""
        problems = []
        unknown = set(body) - _FIELDS - ({"id"} if current else set())
        if unknown:
            problems.append(f"unknown field(s) {', '.join(sorted(unknown))}; "
                            f"expected {', '.join(sorted(_FIELDS))}")
        route = dict(current or {"gain": 1.0, "delay_ms": 0.0, "lowpass_hz": None,
                                 "highpass_hz": None, "shape": "none"})
        if current is not None and (body.get("from", current["from"]) != current["from"]
                                    or body.get("to", current["to"]) != current["to"]):
            problems.append("from and to of a route cannot change; delete it and add another")
        route.update({k: v for k, v in body.items() if k in _FIELDS})
        known = self._known_ids()
        placed = set(self.config.agent_ids) if self.config is not None else None
        for end in ("from", "to"):
            if not isinstance(route.get(end), str):
                problems.append(f"{end} must be an agent id")
            elif route[end] not in known:
                problems.append(f"{end}: unknown agent {route[end]!r}")
            elif self.mode == "simulated" and placed is not None and route[end] not in placed:
                problems.append(_not_clocked(end, route[end]))
        if not is_number(route["gain"]) or abs(float(route["gain"])) > MAX_GAIN:
            problems.append(f"gain must be a number in [-{MAX_GAIN:g}, {MAX_GAIN:g}]")
        if not is_number(route["delay_ms"]) or not 0 <= float(route["delay_ms"]) <= MAX_DELAY_MS:
            problems.append(f"delay_ms must be in [0, {MAX_DELAY_MS:g}] ms")
        nyquist = (self.config.installation.sample_rate if self.config else 48000) / 2
        for cut in ("lowpass_hz", "highpass_hz"):
            v = route[cut]
            if v is not None and (not is_number(v) or not 0 < float(v) < nyquist):
                problems.append(f"{cut} must be null or in (0, {nyquist:g}) Hz")
        if route["shape"] not in SHAPES:
            problems.append(f"shape must be one of {', '.join(SHAPES)}")
        if problems:      # (an id needs both ends)
            raise HubError("; ".join(problems))
        route_id = route.get("id") or f"{route['from']}->{route['to']}"
        if self.mode == "deployed":
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
        """Hand a new route set to the driver's graph (checked there too) before it is kept."""
        driver = self._driver()
        if driver is not None:
            try:
                driver.set_routes(routes)
            except ValueError as exc:
                raise HubError(str(exc)) from None

    def _keep(self, changed: dict[str, dict[str, Any]], gone: list[str] = ()) -> None:
        for route_id in gone:
            del self.routes[route_id]
            self.events.persist("delete_route", route_id)
        for route_id, route in changed.items():
            self.routes[route_id] = route
            self.events.persist("put_route", route_id, route)
        self.persist_config()

    def add_route(self, body: object) -> dict[str, Any]:
        """Add an edge ``{from, to, gain, delay_ms, lowpass_hz, highpass_hz, shape}``."""
        if not isinstance(body, dict):
            raise HubError("a route is a JSON object")
        route = self.check(body)
        if route["id"] in self.routes:
            raise Conflict(f"route {route['id']} exists; PATCH it")
        if len(self.routes) >= MAX_ROUTES:
            raise Conflict(f"at most {MAX_ROUTES} routes")
        self._drive({**self.routes, route["id"]: route})
        self._keep({route["id"]: route})
        self.events.emit("route_added", f"route {route['id']} added", route=route)
        return route

    def add_ring(self, body: object) -> list[dict[str, Any]]:
        """Add a ring ``{name, agents: [a, b, c], gain, delay_ms, ...}``: the edges
        a -> b -> c -> a, ids ``"NAME:a->b"`` (as a config's ``[[ring]]``)."""
        if not isinstance(body, dict):
            raise HubError("a ring is a JSON object")
        params = dict(body)
        name, agents = params.pop("name", None), params.pop("agents", None)
        if not isinstance(name, str) or not ID_RE.match(name):
            # the config's rule (a ring is written back as a [[ring]] of that name)
            raise HubError("a ring name has 1 to 32 letters, digits, '_' or '-', starting "
                           "with a letter or digit")
        if not isinstance(agents, list) or len(agents) < 2 or len(set(map(str, agents))) \
                != len(agents) or not all(isinstance(a, str) for a in agents):
            raise HubError("agents must list at least two different agent ids")
        if any(rid.startswith(name + ":") for rid in self.routes):
            raise Conflict(f"ring {name} exists; delete it first")
        new = {}
        for a, b in expand_ring(agents):
            route = self.check({"from": a, "to": b, **params})
            route["id"] = ring_edge_id(name, a, b)
            new[route["id"]] = route
        if len(self.routes) + len(new) > MAX_ROUTES:
            raise Conflict(f"at most {MAX_ROUTES} routes")
        self._drive({**self.routes, **new})
        self._keep(new)
        self.events.emit("ring_added", f"ring {name} added ({' -> '.join(agents)})", ring=name,
                         agents=agents)
        return list(new.values())

    def delete_ring(self, name: str) -> list[str]:
        """Remove every edge of ring ``name``; their ids."""
        gone = [rid for rid in self.routes if rid.startswith(name + ":")]
        if not gone:
            raise NotFound(f"no ring {name!r}")
        self._drive({k: v for k, v in self.routes.items() if k not in gone})
        self._keep({}, gone)
        self.events.emit("ring_deleted", f"ring {name} deleted", ring=name)
        return gone

    def update_route(self, route_id: str, body: object) -> dict[str, Any]:
        """Change an edge's parameters."""
        if route_id not in self.routes:
            raise NotFound(f"no route {route_id!r}")
        if not isinstance(body, dict):
            raise HubError("a route is a JSON object")
        route = self.check(body, current=self.routes[route_id])
        self._drive({**self.routes, route_id: route})
        self._keep({route_id: route})
        self.events.emit("route_changed", f"route {route_id} changed", route=route)
        return route

    def delete_route(self, route_id: str) -> None:
        """Remove an edge."""
        if route_id not in self.routes:
            raise NotFound(f"no route {route_id!r}")
        self._drive({k: v for k, v in self.routes.items() if k != route_id})
        self._keep({}, [route_id])
        self.events.emit("route_deleted", f"route {route_id} deleted", route=route_id)

    def edited_config(self) -> Any:
        """The config with the routes, rings and room (and, through ``finish``, the
        couplings) as edited through the API (None without a config). A ring whose edges
        are all there with common parameters stays a ``[[ring]]``; the edges of a ring
        edited apart are listed as ``[[route]]``s.

        It holds only what a config can say, so that the stored config reads back: an
        edge to an agent added on the LAN (deployed mode, JOURNEYS 3) cannot be written
        into a config without that ``[[agent]]``, nor a second ``[[route]]`` between the
        same two agents (a ring's edge edited apart beside a route). Such edges live in
        the hub's store only (its routes, which a restart restores), and a ring that
        includes such an agent keeps its other edges here as ``[[route]]``s. (Room and
        floor-plan edits do not check the edges again: :mod:`.layout`.)"""
        from anamnesis.hub.installation.config import Ring, Route

        if self.config is None:
            return None
        placed = set(self.config.agent_ids)
        plain: list[dict[str, Any]] = []
        rings: dict[str, list[dict[str, Any]]] = {}
        outside = {name for rid, r in self.routes.items()
                   if not {r["from"], r["to"]} <= placed
                   for name, sep, _ in [rid.partition(":")] if sep}
        for route_id, route in self.routes.items():
            if not {route["from"], route["to"]} <= placed:
                continue
            name, sep, _ = route_id.partition(":")
            if sep and name in outside:       # a ring with a member outside the config
                plain.append(route)
                continue
            if sep:
                rings.setdefault(name, []).append(route)
            else:
                plain.append(route)
        kept: list[Ring] = []
        for name, edges in rings.items():
            ring = as_ring(name, edges)
            if ring is None:
                plain.extend(edges)
            else:
                kept.append(ring)
        between: dict[tuple[str, str], dict[str, Any]] = {}
        for r in plain:
            between.setdefault((r["from"], r["to"]), r)     # the first edge of a pair
        routes = tuple(Route(source=r["from"], target=r["to"], **edge_params(r))
                       for r in between.values())
        room, agents = self._layout()
        return self._finish(dataclasses.replace(self.config, routes=routes, rings=tuple(kept),
                                                room=room, agents=agents))

    def persist_config(self) -> None:
        """Store the config as edited (after every route, ring, room or position edit)."""
        edited = self.edited_config()
        if edited is not None:
            self.events.persist("set_config", edited.to_toml())


__all__ = ["MAX_ROUTES", "RouteBook", "as_ring", "edge_params", "route_json"]
