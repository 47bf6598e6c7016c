"""The REST API under ``/api``: one handler per route, and their table.

The first line of each handler's docstring is its OpenAPI summary
(:mod:`anamnesis.hub.api.openapi`). Reads are open, writes need the token
(:mod:`anamnesis.hub.api.access`); errors are JSON ``{"error": "..."}`` with a 4xx
status. A body that is not JSON, or past :mod:`anamnesis.hub.api.bodies`' limits, is a
400 naming the problem, and is counted
(``hub.counts["malformed_json"]``); a body over :data:`~anamnesis.hub.api.keys.MAX_BODY`
is aiohttp's 413. :data:`REST_ROUTES` is the table of these routes;
:data:`anamnesis.hub.api.app.ROUTES` adds the OpenAPI document, the WebSockets
(:mod:`anamnesis.hub.api.ws`) and the dashboard (:mod:`anamnesis.hub.api.static`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from anamnesis.hub.api.bodies import decode_json
from anamnesis.hub.api.keys import CONNECTIONS, HUB, Handler
from anamnesis.hub.core.commands import listen_sources
from anamnesis.hub.core.errors import Conflict, HubError, NotFound


async def _json_body(request: web.Request) -> Any:
    hub = request.app[HUB]
    raw = await request.read()   # over MAX_BODY: aiohttp answers 413 itself
    if not raw:
        return {}
    try:
        return decode_json(raw)
    except HubError:
        hub.counts["malformed_json"] += 1
        raise


# ---------------------------------------------------------------------------
# Handlers (the first docstring line is the OpenAPI summary)
# ---------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """Liveness of the hub (open, no token); ``ok`` is false, and ``problems`` say why,
    while its database refuses writes or a recording has stopped writing (a full or
    read-only disk). ``discovery`` counts what zeroconf brought and what was refused
    (``refused_replay``, ``refused_pending_full``, ``bad_signature``, ...); ``http`` the
    open connections and those refused past the caps (anamnesis.hub.api.connections)."""
    hub = request.app[HUB]
    agents = hub.registry.entries()
    problems = [p for p in (hub.event_log.store_failing,
                            getattr(hub.driver, "recording_error", None)) if p]
    discovery = {**hub.registry.counts, **hub.browser.counts}
    return web.json_response({"ok": not problems, "problems": problems, "name": hub.name,
                              "agents": len(agents),
                              "online": sum(1 for a in agents if a.online and a.adopted),
                              "discovery": {k: discovery[k] for k in sorted(discovery)},
                              "http": request.app[CONNECTIONS].counts()})


async def installation(request: web.Request) -> web.Response:
    """The installation: name, mode, config, local agents."""
    return web.json_response(request.app[HUB].installation())


async def list_agents(request: web.Request) -> web.Response:
    """Every agent: status (pending/online/offline), host, ports, model, parameters.
    ``?others=1`` adds the agents other installations announce on this network
    (status ``elsewhere``, with their installation's name)."""
    hub = request.app[HUB]
    others = request.query.get("others", "0")
    if others not in ("0", "1"):
        raise HubError("others must be 0 or 1")
    agents = hub.agents_json()
    if others == "1":
        agents += [{**o, "status": "elsewhere"} for o in hub.browser.others.values()]
    return web.json_response(agents)


async def get_agent(request: web.Request) -> web.Response:
    """One agent."""
    hub = request.app[HUB]
    agent_id = request.match_info["agent_id"]
    for agent in hub.agents_json():
        if agent["id"] == agent_id:
            return web.json_response(agent)
    raise NotFound(f"no agent {agent_id!r}")


async def agent_stream(request: web.Request) -> web.Response:
    """Listen in on an agent's stream (out, mic, in): redirect to the agent's own SDP URL.

    The agent starts (or renews, for 60 s) a unicast copy of the stream to port ``port``
    of the address that asks it, so the client must ask the agent itself: the hub never
    reflects a stream to another host (anamnesis.agents.net.link). ``?port=P`` is passed on.

    307: to the agent's own SDP URL (Location)
    404: no such agent, or no such stream
    409: the agent has no known HTTP address yet
    """
    hub = request.app[HUB]
    agent_id, name = request.match_info["agent_id"], request.match_info["name"]
    if name not in ("out", "mic", "in"):
        raise NotFound(f"no stream {name!r}: an agent streams out, mic and in")
    for agent in hub.agents_json():
        if agent["id"] == agent_id:
            break
    else:
        raise NotFound(f"no agent {agent_id!r}")
    if not agent.get("host") or not agent.get("http_port"):
        raise Conflict(f"agent {agent_id!r} has no known HTTP address yet")
    query = f"?port={request.query['port']}" if "port" in request.query else ""
    raise web.HTTPTemporaryRedirect(
        f"http://{agent['host']}:{agent['http_port']}/streams/{name}.sdp{query}")


async def patch_agent(request: web.Request) -> web.Response:
    """Set parameters: body {"params": {name: value}}; returns the agent's values after."""
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) != {"params"}:
        raise HubError('body must be {"params": {name: value, ...}}')
    values = await request.app[HUB].set_params(request.match_info["agent_id"], body["params"])
    return web.json_response({"params": values})


async def adopt_agent(request: web.Request) -> web.Response:
    """Adopt a pending agent (remembered across restarts)."""
    return web.json_response(request.app[HUB].adopt(request.match_info["agent_id"]))


async def forget_agent(request: web.Request) -> web.Response:
    """Forget an offline or pending agent that is gone for good (and the routes naming it).

    Its entry, its adoption, its remembered parameters and every route or ring edge that
    names it go, for every browser at once (``agent_removed``) and after a restart; the
    event log says so (``agent_forgotten``, with the routes). Announced again, it is a
    new pending agent. Answers {"forgotten": ID, "routes": [route ids]}.

    404: no agent of that id
    409: the agent is online (stop its process first: it would announce itself again at
      once), or it is an [[agent]] of the installation's config (remove it from the config
      and restart the hub)
    """
    return web.json_response(request.app[HUB].forget(request.match_info["agent_id"]))


async def get_weights(request: web.Request) -> web.Response:
    """The agent's flat weight vector: {"weights": [...]}."""
    weights = await request.app[HUB].get_weights(request.match_info["agent_id"])
    return web.json_response({"weights": weights})


async def put_weights(request: web.Request) -> web.Response:
    """Write the agent's weights: body {"weights": [...]} (learning goes on from there)."""
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) != {"weights"}:
        raise HubError('body must be {"weights": [numbers]}')
    weights = await request.app[HUB].set_weights(request.match_info["agent_id"], body["weights"])
    return web.json_response({"weights": weights})


async def snapshot_agent(request: web.Request) -> web.Response:
    """Save the agent's model state in its state dir: body {"name": NAME}.

    201: the snapshot saved
    """
    body = await _json_body(request)
    name = body.get("name") if isinstance(body, dict) else None
    return web.json_response(await request.app[HUB].agent_snapshot(
        request.match_info["agent_id"], "snapshot", name), status=201)


async def recall_agent(request: web.Request) -> web.Response:
    """Load a snapshot the agent saved: body {"name": NAME}."""
    body = await _json_body(request)
    name = body.get("name") if isinstance(body, dict) else None
    return web.json_response(await request.app[HUB].agent_snapshot(
        request.match_info["agent_id"], "recall", name))


async def list_snapshots(request: web.Request) -> web.Response:
    """Snapshots the hub keeps of the agent (id, name, model, created, size, sha256)."""
    return web.json_response(await request.app[HUB].list_snapshots(
        request.match_info["agent_id"]))


async def save_snapshot(request: web.Request) -> web.Response:
    """Keep the agent's weights (OSC /weights) and parameters in the hub: body {"name": NAME}.

    201: the snapshot kept
    """
    body = await _json_body(request)
    name = body.get("name") if isinstance(body, dict) else None
    return web.json_response(await request.app[HUB].save_snapshot(
        request.match_info["agent_id"], name), status=201)


async def recall_snapshot(request: web.Request) -> web.Response:
    """Write a snapshot the hub keeps back to the agent: weights, then parameters."""
    return web.json_response(await request.app[HUB].recall_snapshot(
        request.match_info["agent_id"], request.match_info["snap"]))


async def list_routes(request: web.Request) -> web.Response:
    """Every route (edge): from, to, gain, delay_ms, lowpass_hz, highpass_hz, shape."""
    return web.json_response(list(request.app[HUB].routes.values()))


async def add_route(request: web.Request) -> web.Response:
    """Add a route; its id is "FROM->TO".

    201: the route added
    """
    route = request.app[HUB].add_route(await _json_body(request))
    return web.json_response(route, status=201)


async def get_route(request: web.Request) -> web.Response:
    """One route."""
    route_id = request.match_info["route_id"]
    route = request.app[HUB].routes.get(route_id)
    if route is None:
        raise NotFound(f"no route {route_id!r}")
    return web.json_response(route)


async def patch_route(request: web.Request) -> web.Response:
    """Change a route's gain, delay, filters or shape."""
    hub = request.app[HUB]
    return web.json_response(hub.update_route(request.match_info["route_id"],
                                              await _json_body(request)))


async def delete_route(request: web.Request) -> web.Response:
    """Remove a route."""
    request.app[HUB].delete_route(request.match_info["route_id"])
    return web.json_response({"deleted": request.match_info["route_id"]})


async def list_couplings(request: web.Request) -> web.Response:
    """Every weight coupling ({id, from, to, mode, kappa, rate_hz, gain, noise, mask}) with
    its live counts under "stats" (applied, stale, refused, error, distance)."""
    return web.json_response(request.app[HUB].couplings_json())


async def add_coupling(request: web.Request) -> web.Response:
    """Add a weight coupling; its id is "FROM~>TO". Checked as a config's [[coupling]], and
    against the two agents' weight vectors when both are online.

    201: the coupling added
    """
    coupling = await request.app[HUB].add_coupling(await _json_body(request))
    return web.json_response(coupling, status=201)


async def get_coupling(request: web.Request) -> web.Response:
    """One weight coupling with its live counts."""
    return web.json_response(request.app[HUB].get_coupling(request.match_info["coupling_id"]))


async def patch_coupling(request: web.Request) -> web.Response:
    """Change a coupling's mode, kappa, rate_hz, gain, noise or mask."""
    hub = request.app[HUB]
    return web.json_response(await hub.update_coupling(request.match_info["coupling_id"],
                                                       await _json_body(request)))


async def delete_coupling(request: web.Request) -> web.Response:
    """Remove a weight coupling."""
    await request.app[HUB].delete_coupling(request.match_info["coupling_id"])
    return web.json_response({"deleted": request.match_info["coupling_id"]})


async def add_ring(request: web.Request) -> web.Response:
    """Add a ring: body {"name", "agents": [a, b, ...], gain, delay_ms, ...}; its edges.

    201: the ring's edges added
    """
    return web.json_response(request.app[HUB].add_ring(await _json_body(request)), status=201)


async def delete_ring(request: web.Request) -> web.Response:
    """Remove every edge of a ring."""
    return web.json_response({"deleted": request.app[HUB].delete_ring(request.match_info["name"])})


async def get_room(request: web.Request) -> web.Response:
    """The room as edited ([room] of the config as JSON; null: none)."""
    return web.json_response(request.app[HUB].get_room())


async def put_room(request: web.Request) -> web.Response:
    """Replace the room: body a [room] table as JSON, or null; every problem in one 400.

    Checked as the config checks it (size, rt60 or absorption, the listener and every
    agent's speaker and mic inside the room), stored with the config as edited and
    pushed to WebSocket clients as a ``room_changed`` event; in simulated mode the
    responses are recomputed on a worker and crossfaded in (the agents hear the new room).
    """
    raw = await request.read()
    body = None if raw.strip() == b"null" else await _json_body(request)
    return web.json_response(request.app[HUB].put_room(body))


async def panic(request: web.Request) -> web.Response:
    """Fade every agent's output to silence (OSC /panic to each)."""
    return web.json_response({"panic": request.app[HUB].panic(True)})


async def unpanic(request: web.Request) -> web.Response:
    """Undo a panic (OSC /unpanic to each)."""
    return web.json_response({"unpanic": request.app[HUB].panic(False)})


async def list_scenes(request: web.Request) -> web.Response:
    """Saved scenes (names, times, agents)."""
    return web.json_response([
        {"name": s["name"], "saved": s["saved"], "agents": sorted(s["agents"])}
        for s in request.app[HUB].scenes.values()])


async def save_scene(request: web.Request) -> web.Response:
    """Save every online agent's parameters and weights: body {"name": NAME}.

    201: the scene saved
    """
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise HubError('body must be {"name": NAME}')
    scene = await request.app[HUB].save_scene(body.get("name"))
    return web.json_response(scene, status=201)


async def get_scene(request: web.Request) -> web.Response:
    """One scene with every agent's parameters and weights."""
    return web.json_response(request.app[HUB].get_scene(request.match_info["name"]))


async def delete_scene(request: web.Request) -> web.Response:
    """Forget a scene."""
    await request.app[HUB].delete_scene(request.match_info["name"])
    return web.json_response({"deleted": request.match_info["name"]})


async def recall_scene(request: web.Request) -> web.Response:
    """Send a scene back to its agents; per agent "ok", "offline" or the error."""
    return web.json_response(await request.app[HUB].recall_scene(request.match_info["name"]))


async def interpolate_scenes(request: web.Request) -> web.Response:
    """Blend two scenes: body {"a": NAME, "b": NAME, "t": 0..1} (0 = a)."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise HubError('body must be {"a": NAME, "b": NAME, "t": 0..1}')
    return web.json_response(await request.app[HUB].interpolate(
        body.get("a"), body.get("b"), body.get("t")))


async def record_start(request: web.Request) -> web.Response:
    """Record every agent's output (simulated mode): body {"name": NAME} -> recordings/NAME.wav."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise HubError('body must be {"name": NAME}')
    return web.json_response(request.app[HUB].record_start(body.get("name")))


async def record_stop(request: web.Request) -> web.Response:
    """Stop recording; the file's name, frames and seconds."""
    return web.json_response(await request.app[HUB].record_stop())


async def list_events(request: web.Request) -> web.Response:
    """Recent events, oldest first (?limit=N, default 100, at most 1000)."""
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise HubError("limit must be an integer") from None
    limit = max(1, min(limit, 1000))
    return web.json_response(await request.app[HUB].stored_events(limit))


async def get_room_layout(request: web.Request) -> web.Response:
    """The room's floor plan as the dashboard draws it: speakers, mics, listener."""
    return web.json_response(request.app[HUB].room_layout())


async def put_room_layout(request: web.Request) -> web.Response:
    """Move speakers, mics or the listener: body the layout (as GET gives it)."""
    hub = request.app[HUB]
    return web.json_response(hub.put_room_layout(await _json_body(request)))


async def list_listen_sources(request: web.Request) -> web.Response:
    """What /ws/listen?source=... can play: [{"source", "channels", "sample_rate"}]."""
    return web.json_response(listen_sources(request.app[HUB]))


# ---------------------------------------------------------------------------
# The REST route table (create_app appends /api/openapi.json, the sockets, the dashboard)
# ---------------------------------------------------------------------------


REST_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/health", health),
    ("GET", "/api/installation", installation),
    ("GET", "/api/agents", list_agents),
    ("GET", "/api/agents/{agent_id}", get_agent),
    ("PATCH", "/api/agents/{agent_id}", patch_agent),
    ("POST", "/api/agents/{agent_id}/adopt", adopt_agent),
    ("DELETE", "/api/agents/{agent_id}", forget_agent),
    ("GET", "/api/agents/{agent_id}/weights", get_weights),
    ("GET", "/api/agents/{agent_id}/streams/{name}.sdp", agent_stream),
    ("PUT", "/api/agents/{agent_id}/weights", put_weights),
    ("POST", "/api/agents/{agent_id}/snapshot", snapshot_agent),
    ("POST", "/api/agents/{agent_id}/recall", recall_agent),
    ("GET", "/api/agents/{agent_id}/snapshots", list_snapshots),
    ("POST", "/api/agents/{agent_id}/snapshots", save_snapshot),
    ("POST", "/api/agents/{agent_id}/snapshots/{snap}/recall", recall_snapshot),
    ("GET", "/api/routes", list_routes),
    ("POST", "/api/routes", add_route),
    ("GET", "/api/routes/{route_id}", get_route),
    ("PATCH", "/api/routes/{route_id}", patch_route),
    ("DELETE", "/api/routes/{route_id}", delete_route),
    ("POST", "/api/rings", add_ring),
    ("GET", "/api/couplings", list_couplings),
    ("POST", "/api/couplings", add_coupling),
    ("GET", "/api/couplings/{coupling_id}", get_coupling),
    ("PATCH", "/api/couplings/{coupling_id}", patch_coupling),
    ("DELETE", "/api/couplings/{coupling_id}", delete_coupling),
    ("DELETE", "/api/rings/{name}", delete_ring),
    ("GET", "/api/room", get_room),
    ("PUT", "/api/room", put_room),
    ("POST", "/api/panic", panic),
    ("POST", "/api/unpanic", unpanic),
    ("GET", "/api/scenes", list_scenes),
    ("POST", "/api/scenes", save_scene),
    ("POST", "/api/scenes/interpolate", interpolate_scenes),
    ("GET", "/api/scenes/{name}", get_scene),
    ("DELETE", "/api/scenes/{name}", delete_scene),
    ("POST", "/api/scenes/{name}/recall", recall_scene),
    ("POST", "/api/record/start", record_start),
    ("POST", "/api/record/stop", record_stop),
    ("GET", "/api/events", list_events),
    ("GET", "/api/room/layout", get_room_layout),
    ("PUT", "/api/room/layout", put_room_layout),
    ("GET", "/api/listen", list_listen_sources),
]


__all__ = ["REST_ROUTES"]
