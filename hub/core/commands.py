"""The hub's commands, one table for every front that speaks in commands.

The dashboard's WebSocket sends ``{"id", "cmd", ...fields}``; the installation's OSC
server maps its addresses (``/hub/scene/save s`` ...) onto the same commands. Each
:class:`Command` names the fields it needs; :func:`run_command` refuses a command that is
unknown or lacks a field with one clear :class:`~anamnesis.hub.core.errors.HubError`
(400) — a missing ``agent`` is never looked up as agent ``"None"`` — and then calls the
hub. The hub's own methods check the values. (SuperCollider's ``scsynth`` keeps its
commands the same way: one table, transports that know none of them.)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anamnesis.hub.core.errors import HubError

if TYPE_CHECKING:
    from anamnesis.hub.core.hub import Hub

#: Fields that name an agent or a route: they must be strings (names of scenes, rings
#: and snapshots are checked by the hub's own rules).
_NAMES = ("agent", "route_id", "coupling_id")


@dataclass(frozen=True)
class Command:
    """One command: the ``fields`` it needs and ``call(hub, **fields)`` (a value or an
    awaitable)."""

    fields: tuple[str, ...]
    call: Callable[..., Any]


def _route_gain(hub: Hub, **f: Any) -> Any:
    """OSC's ``/hub/route a b gain``: the route a -> b at ``gain``, added if new."""
    route_id = f"{f['from']}->{f['to']}"
    if route_id in hub.routes:
        return hub.update_route(route_id, {"gain": f["gain"]})
    return hub.add_route({"from": f["from"], "to": f["to"], "gain": f["gain"]})


async def _coupling_kappa(hub: Hub, **f: Any) -> Any:
    """OSC's ``/hub/coupling a b kappa``: the coupling a ~> b at ``kappa``, added (a blend
    at 20 Hz) if new."""
    coupling_id = f"{f['from']}~>{f['to']}"
    if coupling_id in hub.coupling_book.couplings:
        return await hub.update_coupling(coupling_id, {"kappa": f["kappa"]})
    return await hub.add_coupling({"from": f["from"], "to": f["to"], "kappa": f["kappa"]})


def listen_sources(hub: Hub) -> list[dict[str, Any]]:
    """What ``/ws/listen`` can play: ``[{"source", "channels", "sample_rate"}]`` (every
    agent of the config, then ``"listener"`` in simulated mode with a room)."""
    tap = hub.listen
    if tap is None:
        return []
    return [{"source": source, "channels": tap.channels(source), "sample_rate": tap.sample_rate}
            for source in tap.sources]


def _deleted(action: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose answer is nothing (null)."""
    async def call(*args: Any, **kwargs: Any) -> None:
        result = action(*args, **kwargs)
        if inspect.isawaitable(result):
            await result
    return call


COMMANDS: Mapping[str, Command] = {
    "adopt": Command(("agent",), lambda h, agent: h.adopt(agent)),
    "forget": Command(("agent",), lambda h, agent: h.forget(agent)),
    "set_params": Command(("agent", "params"), lambda h, agent, params: h.set_params(agent, params)),
    "set_weights": Command(("agent", "weights"),
                           lambda h, agent, weights: h.set_weights(agent, weights)),
    "panic": Command((), lambda h: h.panic(True)),
    "unpanic": Command((), lambda h: h.panic(False)),
    "add_route": Command(("route",), lambda h, route: h.add_route(route)),
    "update_route": Command(("route_id", "route"),
                            lambda h, route_id, route: h.update_route(route_id, route)),
    "delete_route": Command(("route_id",), _deleted(lambda h, route_id: h.delete_route(route_id))),
    "route_gain": Command(("from", "to", "gain"), _route_gain),
    "add_ring": Command(("ring",), lambda h, ring: h.add_ring(ring)),
    "add_coupling": Command(("coupling",), lambda h, coupling: h.add_coupling(coupling)),
    "update_coupling": Command(("coupling_id", "coupling"),
                               lambda h, coupling_id, coupling: h.update_coupling(coupling_id,
                                                                                  coupling)),
    "delete_coupling": Command(("coupling_id",),
                               _deleted(lambda h, coupling_id: h.delete_coupling(coupling_id))),
    "coupling_kappa": Command(("from", "to", "kappa"), _coupling_kappa),
    "delete_ring": Command(("name",), lambda h, name: h.delete_ring(str(name))),
    "save_snapshot": Command(("agent", "name"), lambda h, agent, name: h.save_snapshot(agent, name)),
    "recall_snapshot": Command(("agent", "name"),
                               lambda h, agent, name: h.recall_snapshot(agent, str(name))),
    "snapshots": Command(("agent",), lambda h, agent: h.list_snapshots(agent)),
    "room": Command((), lambda h: h.get_room()),
    "put_room": Command(("room",), lambda h, room: h.put_room(room)),
    "room_layout": Command((), lambda h: h.room_layout()),
    "put_room_layout": Command(("layout",), lambda h, layout: h.put_room_layout(layout)),
    "save_scene": Command(("name",), lambda h, name: h.save_scene(name)),
    "recall_scene": Command(("name",), lambda h, name: h.recall_scene(str(name))),
    "delete_scene": Command(("name",), _deleted(lambda h, name: h.delete_scene(str(name)))),
    "interpolate": Command(("a", "b", "t"), lambda h, a, b, t: h.interpolate(a, b, t)),
    "record_start": Command(("name",), lambda h, name: h.record_start(name)),
    "record_stop": Command((), lambda h: h.record_stop()),
    "agents": Command((), lambda h: h.agents_json()),
    "routes": Command((), lambda h: list(h.routes.values())),
    "couplings": Command((), lambda h: h.couplings_json()),
    "scenes": Command((), lambda h: sorted(h.scenes)),
    "events": Command((), lambda h: h.stored_events(100)),
    "listen_sources": Command((), listen_sources),
}


async def run_command(hub: Hub, name: object, fields: Mapping[str, Any]) -> Any:
    """Run command ``name`` with ``fields`` on ``hub``; its result. ``HubError`` (400) for
    an unknown command, a missing field, or a name field that is not a string."""
    command = COMMANDS.get(name) if isinstance(name, str) else None
    if command is None:
        raise HubError(f"unknown command {name!r}; the commands are: {', '.join(sorted(COMMANDS))}")
    missing = [f for f in command.fields if f not in fields]
    if missing:
        raise HubError(f"{name} needs {', '.join(repr(f) for f in missing)}")
    args = {f: fields[f] for f in command.fields}
    for field in _NAMES:
        if field in args and not isinstance(args[field], str):
            raise HubError(f"{name}: {field} must be a string; got {args[field]!r}"[:200])
    result = command.call(hub, **args)
    if inspect.isawaitable(result):
        result = await result
    return result


__all__ = ["COMMANDS", "Command", "listen_sources", "run_command"]
