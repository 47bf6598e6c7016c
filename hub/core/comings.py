"""Agents that come and go outside the config, and the clock's overload, in the hub's
words: what :class:`anamnesis.hub.core.hub.Hub` does when an agent added on the LAN comes
online (:func:`route_newcomer`), when one gone for good is forgotten (:func:`forget`),
and what it says when its clock cannot keep up (:func:`overload_message`)."""

from __future__ import annotations

import logging
from typing import Any

from anamnesis.hub.core.errors import Conflict, HubError, NotFound

log = logging.getLogger("anamnesis.hub.core.hub")


def route_newcomer(hub: Any, agent_id: str) -> None:
    """A deployed installation's routes that name an agent the config does not list
    (added on the LAN) are played once it is adopted and online: the router's graph
    takes it in (:meth:`anamnesis.hub.clock.deployed.DeployedRouter.set_routes`)."""
    driver = hub.driver
    if hub.mode != "deployed" or driver is None or agent_id in driver.graph.agent_ids:
        return
    if any(agent_id in (r["from"], r["to"]) for r in hub.routes.values()):
        try:
            driver.set_routes(hub.routes)
        except ValueError as exc:
            log.error("routes with agent %s cannot be driven: %s", agent_id, exc)


def forget(hub: Any, agent_id: object) -> dict[str, Any]:
    """Forget an agent that is gone for good (offline or pending, not one of the
    config's): its entry, its adoption, its remembered parameters and the routes that
    name it go; announced again, it is a new pending agent. ``NotFound`` if unknown,
    ``Conflict`` (what to do) if it is online or part of the config."""
    if not isinstance(agent_id, str):
        raise HubError("forget: agent must be a string")
    config = hub.config
    if config is not None and agent_id in config.agent_ids:
        raise Conflict(f"agent {agent_id} is part of the installation config "
                       f"({config.installation.name}); remove its [[agent]] from the "
                       "config to forget it")
    entry = hub.registry.get(agent_id)
    if entry is None:
        raise NotFound(f"no agent {agent_id!r}")
    if entry.online:
        raise Conflict(f"agent {agent_id} is online: stop its process first (else it "
                       "announces itself again at once)")
    routes = [rid for rid, r in hub.routes.items() if agent_id in (r["from"], r["to"])]
    for route_id in routes:
        hub.delete_route(route_id)
    hub.registry.forget(agent_id)
    if hub.params.pop(agent_id, None) is not None:
        hub.event_log.persist("delete_params", agent_id)   # not pushed again on a return
    hub.adopted.save()
    hub.emit("agent_forgotten", f"agent {agent_id} forgotten"
             + (f" with its routes {', '.join(routes)}" if routes else ""),
             agent=agent_id, routes=routes)
    return {"forgotten": agent_id, "routes": routes}


def overload_message(overloaded: bool, speed: float, cpu: float) -> str:
    """The clock's verdict (:mod:`anamnesis.hub.clock.pacing`) said plainly: how far
    behind real time the hub is (``speed``, a share) and the likely cause, from its CPU
    share of one core (``cpu``); or that it caught up."""
    if not overloaded:
        return f"caught up: the hub runs at {speed:.0%} of real time again"
    cause = ("the hub itself needs more than the core it gets: fewer agents, a smaller "
             "room (max_order, rt60) or a rehearsal offline" if cpu >= 0.8 else
             f"the machine is busy with other work (the hub got {cpu:.0%} of a core)")
    return (f"overloaded: the hub keeps up with {speed:.0%} of real time, so the audio "
            f"stutters; likely cause: {cause}. Scopes and spectra pause and telemetry "
            "slows to a quarter until it catches up")


__all__ = ["forget", "overload_message", "route_newcomer"]
