"""The hub's HTTP API: REST under ``/api``, a WebSocket at ``/ws``, the dashboard at ``/``.

``create_app(hub)`` (STYLE 10) builds the aiohttp application around a running
:class:`hub.service.Hub`: typed ``web.AppKey``s, the WebSocket pusher in
``cleanup_ctx``, every open WebSocket closed on shutdown.

Access: every write (any method but GET/HEAD/OPTIONS) and the WebSocket need the
installation's token, as ``Authorization: Bearer TOKEN`` or the ``anamnesis_token``
cookie, which ``GET /?token=TOKEN`` sets once (then redirects to ``/`` so the
token leaves the address bar). Tokens are compared with ``hmac.compare_digest``;
the token is never logged (the access log is off; requests are not logged with
their query). ``GET /api/health`` is open, as are the other reads (the server binds
127.0.0.1 unless told otherwise).

Errors are JSON ``{"error": "..."}`` with a 4xx status; a body that is not JSON
is a 400 naming the parse error, and is counted (``hub.counts["malformed_json"]``).

WebSocket messages (JSON text): the server pushes ``{"type": "hello", "agents": [...],
"routes": [...]}`` once, then ``{"type": "agent", ...}`` on every agent change,
``{"type": "event", ...}`` for every event and ``{"type": "telemetry", "agents":
{id: {"rms": .., "peak": .., "error_rms": .., ...}}}`` at most 20 times a second
(levels linear, full scale 1). A client that connects to ``/ws?scopes=1`` also gets
binary messages: scopes and spectra of the agents' outputs (at most 30 a second, when the
hub has them: every block in simulated mode, the
``out`` stream of each routed agent in deployed mode); their frame layout is
:mod:`hub.scopes`'s, and ``hello`` has ``"scope": {"agents": [ids by index], "frames": N,
"hz": 30}`` (null without a config). Clients send commands
``{"id": N, "cmd": NAME, ...args}`` and get ``{"type": "reply", "id": N, "ok": true,
"result": ...}`` or ``{"type": "reply", "id": N, "ok": false, "error": "..."}``.
Commands mirror the REST writes: ``adopt {agent}``, ``set_params {agent, params}``,
``set_weights {agent, weights}``,
``panic``, ``unpanic``, ``add_route {route}``, ``update_route {route_id, route}``,
``delete_route {route_id}``, ``add_ring {ring}``, ``delete_ring {name}``,
``put_room {room}``, ``save_snapshot {agent, name}``, ``recall_snapshot {agent, name}``,
``save_scene {name}``, ``recall_scene {name}``,
``interpolate {a, b, t}``, ``delete_scene {name}``, ``record_start {name}``,
``record_stop``, and the reads ``agents``,
``routes``, ``room``, ``snapshots {agent}``, ``scenes``, ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from hub.scopes import SCOPE_HZ
from hub.service import Hub, HubError

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("sockets", weakref.WeakSet)

COOKIE = "anamnesis_token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/api/health", "/api/openapi.json", "/"})
#: Largest request body (bytes): a scene of many agents' weights fits.
MAX_BODY = 4 * 1024 * 1024
#: Messages queued per WebSocket before the slowest client is dropped.
WS_QUEUE = 256
#: Telemetry pushes per second to WebSocket clients (at most; agents send 20 Hz).
TELEMETRY_HZ = 20.0
WEB_DIR = Path(__file__).resolve().parent.parent / "web"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip()
    return request.cookies.get(COOKIE)


def token_ok(hub: Hub, given: str | None) -> bool:
    """Constant-time check of a presented token."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), hub.token.encode("utf-8"))


@web.middleware
async def _access(request: web.Request, handler: Handler) -> web.StreamResponse:
    hub = request.app[HUB]
    needs_token = request.path == "/ws" or (
        request.method not in READ_METHODS and request.path not in OPEN_PATHS)
    if needs_token and not token_ok(hub, _token_of(request)):
        hub.counts["unauthorized"] += 1
        return _error("missing or wrong token (Authorization: Bearer TOKEN)", 401)
    try:
        return await handler(request)
    except HubError as exc:
        return _error(str(exc), exc.status)
    except TimeoutError as exc:
        return _error(str(exc), 504)


async def _json_body(request: web.Request) -> Any:
    hub = request.app[HUB]
    raw = await request.read()   # over MAX_BODY: aiohttp answers 413 itself
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        hub.counts["malformed_json"] += 1
        raise HubError(f"malformed JSON body: {exc}", 400) from None


# ---------------------------------------------------------------------------
# Handlers (the first docstring line is the OpenAPI summary)
# ---------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    """Liveness of the hub (open, no token)."""
    hub = request.app[HUB]
    agents = hub.registry.entries()
    return web.json_response({"ok": True, "name": hub.name,
                              "agents": len(agents),
                              "online": sum(1 for a in agents if a.online and a.adopted)})


async def installation(request: web.Request) -> web.Response:
    """The installation: name, mode, config, local agents."""
    return web.json_response(request.app[HUB].installation())


async def list_agents(request: web.Request) -> web.Response:
    """Every agent: status (pending/online/offline), host, ports, model, parameters."""
    return web.json_response(request.app[HUB].agents_json())


async def get_agent(request: web.Request) -> web.Response:
    """One agent."""
    hub = request.app[HUB]
    agent_id = request.match_info["agent_id"]
    for agent in hub.agents_json():
        if agent["id"] == agent_id:
            return web.json_response(agent)
    raise HubError(f"no agent {agent_id!r}", 404)


async def agent_stream(request: web.Request) -> web.Response:
    """Listen in on an agent's stream (out, mic, in): redirect to the agent's own SDP URL.

    The agent starts (or renews, for 60 s) a unicast copy of the stream to port ``port``
    of the address that asks it, so the client must ask the agent itself: the hub never
    reflects a stream to another host (agents.link). ``?port=P`` is passed on.
    """
    hub = request.app[HUB]
    agent_id, name = request.match_info["agent_id"], request.match_info["name"]
    if name not in ("out", "mic", "in"):
        raise HubError(f"no stream {name!r}: an agent streams out, mic and in", 404)
    for agent in hub.agents_json():
        if agent["id"] == agent_id:
            break
    else:
        raise HubError(f"no agent {agent_id!r}", 404)
    if not agent.get("host") or not agent.get("http_port"):
        raise HubError(f"agent {agent_id!r} has no known HTTP address yet", 409)
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
    """Save the agent's model state in its state dir: body {"name": NAME}."""
    body = await _json_body(request)
    name = body.get("name") if isinstance(body, dict) else None
    return web.json_response(await request.app[HUB].agent_snapshot(
        request.match_info["agent_id"], "snapshot", name))


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
    """Keep the agent's weights (OSC /weights) and parameters in the hub: body {"name": NAME}."""
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
    """Add a route; its id is "FROM->TO"."""
    route = request.app[HUB].add_route(await _json_body(request))
    return web.json_response(route, status=201)


async def get_route(request: web.Request) -> web.Response:
    """One route."""
    route_id = request.match_info["route_id"]
    route = request.app[HUB].routes.get(route_id)
    if route is None:
        raise HubError(f"no route {route_id!r}", 404)
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


async def add_ring(request: web.Request) -> web.Response:
    """Add a ring: body {"name", "agents": [a, b, ...], gain, delay_ms, ...}; its edges."""
    return web.json_response(request.app[HUB].add_ring(await _json_body(request)), status=201)


async def delete_ring(request: web.Request) -> web.Response:
    """Remove every edge of a ring."""
    return web.json_response({"deleted": request.app[HUB].delete_ring(request.match_info["name"])})


async def get_room(request: web.Request) -> web.Response:
    """The room as edited ([room] of the config as JSON; null: none). Not simulated yet (issue 7)."""
    return web.json_response(request.app[HUB].get_room())


async def put_room(request: web.Request) -> web.Response:
    """Replace the room: body a [room] table as JSON, or null; every problem in one 400.

    Checked as the config checks it (size, rt60 or absorption, the listener and every
    agent's speaker and mic inside the room), stored with the config as edited and
    pushed to WebSocket clients as a ``room_changed`` event. The acoustic simulation
    that couples agents through the room is a later issue (7): the room does not change
    the audio yet.
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
    """Save every online agent's parameters and weights: body {"name": NAME}."""
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


async def openapi(request: web.Request) -> web.Response:
    """This document: the REST API as OpenAPI 3.0."""
    return web.json_response(openapi_document(request.app))


async def index(request: web.Request) -> web.StreamResponse:
    """The dashboard; ?token=TOKEN sets the access cookie once and redirects to /."""
    hub = request.app[HUB]
    given = request.query.get("token")
    if given is not None:
        if not token_ok(hub, given):
            hub.counts["unauthorized"] += 1
            return _error("wrong token", 401)
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, hub.token, httponly=True, samesite="Strict", path="/")
        raise response
    page = WEB_DIR / "index.html"
    if await asyncio.get_running_loop().run_in_executor(None, page.is_file):
        return web.FileResponse(page)
    return web.Response(text=f"<!doctype html><title>{hub.name}</title>"
                             "<p>anamnesis hub: the dashboard is not installed; "
                             "the API is at /api.</p>", content_type="text/html")


# ---------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------


async def _ws_command(hub: Hub, msg: dict[str, Any]) -> Any:
    cmd = msg.get("cmd")
    if cmd == "adopt":
        return hub.adopt(str(msg.get("agent")))
    if cmd == "set_weights":
        return await hub.set_weights(str(msg.get("agent")), msg.get("weights"))
    if cmd == "set_params":
        return await hub.set_params(str(msg.get("agent")), msg.get("params"))
    if cmd in ("panic", "unpanic"):
        return hub.panic(cmd == "panic")
    if cmd == "add_route":
        return hub.add_route(msg.get("route"))
    if cmd == "add_ring":
        return hub.add_ring(msg.get("ring"))
    if cmd == "delete_ring":
        return hub.delete_ring(str(msg.get("name")))
    if cmd == "save_snapshot":
        return await hub.save_snapshot(str(msg.get("agent")), msg.get("name"))
    if cmd == "recall_snapshot":
        return await hub.recall_snapshot(str(msg.get("agent")), str(msg.get("name")))
    if cmd == "snapshots":
        return await hub.list_snapshots(str(msg.get("agent")))
    if cmd == "put_room":
        return hub.put_room(msg.get("room"))
    if cmd == "room":
        return hub.get_room()
    if cmd == "update_route":
        return hub.update_route(str(msg.get("route_id")), msg.get("route"))
    if cmd == "delete_route":
        hub.delete_route(str(msg.get("route_id")))
        return None
    if cmd == "save_scene":
        return await hub.save_scene(msg.get("name"))
    if cmd == "recall_scene":
        return await hub.recall_scene(str(msg.get("name")))
    if cmd == "interpolate":
        return await hub.interpolate(msg.get("a"), msg.get("b"), msg.get("t"))
    if cmd == "delete_scene":
        await hub.delete_scene(str(msg.get("name")))
        return None
    if cmd == "record_start":
        return hub.record_start(msg.get("name"))
    if cmd == "record_stop":
        return await hub.record_stop()
    if cmd == "agents":
        return hub.agents_json()
    if cmd == "routes":
        return list(hub.routes.values())
    if cmd == "scenes":
        return sorted(hub.scenes)
    if cmd == "events":
        return await hub.stored_events(100)
    raise HubError(f"unknown command {cmd!r}")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Live agent state and events; takes the same commands as the REST writes."""
    hub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_BODY)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    queue: asyncio.Queue[dict[str, Any] | bytes | None] = asyncio.Queue(maxsize=WS_QUEUE)
    wants_scopes = request.query.get("scopes") == "1"

    def push(message: dict[str, Any] | bytes) -> None:
        if isinstance(message, bytes) and not wants_scopes:
            return
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:  # a client that cannot keep up is dropped, not waited for
            hub.counts["ws_dropped"] += 1
            with contextlib.suppress(asyncio.QueueFull):
                queue.get_nowait()
                queue.put_nowait(None)

    async def sender() -> None:
        while (message := await queue.get()) is not None:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_json(message)
        await ws.close()

    unsubscribe = hub.add_listener(push)
    scopes = hub.scopes
    push({"type": "hello", "name": hub.name, "agents": hub.agents_json(),
          "routes": list(hub.routes.values()),
          "scope": None if scopes is None else {"agents": list(scopes.agent_ids),
                                                "frames": scopes.frames, "hz": SCOPE_HZ}})
    send_task = asyncio.create_task(sender())
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except json.JSONDecodeError as exc:
                hub.counts["malformed_json"] += 1
                push({"type": "reply", "id": None, "ok": False,
                      "error": f"malformed JSON: {exc}"})
                continue
            if not isinstance(data, dict):
                push({"type": "reply", "id": None, "ok": False, "error": "send a JSON object"})
                continue
            try:
                result = await _ws_command(hub, data)
                push({"type": "reply", "id": data.get("id"), "ok": True, "result": result})
            except (HubError, TimeoutError) as exc:
                push({"type": "reply", "id": data.get("id"), "ok": False, "error": str(exc)})
    finally:
        unsubscribe()
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await send_task
    return ws


async def _telemetry_pusher(app: web.Application) -> AsyncIterator[None]:
    """Background tasks (cleanup_ctx): every 1/TELEMETRY_HZ s, push the newest telemetry
    frame of each agent that sent one as ``{"type": "telemetry", "agents": {id: frame}}``;
    every 1/SCOPE_HZ s (while a WebSocket is open), the new scopes and spectra as one
    binary message (:mod:`hub.scopes`)."""
    hub = app[HUB]

    async def run() -> None:
        while True:
            await asyncio.sleep(1.0 / TELEMETRY_HZ)
            frames = hub.telemetry.take()
            if frames:
                hub.broadcast({"type": "telemetry", "agents": frames})

    async def scopes() -> None:
        while True:
            await asyncio.sleep(1.0 / SCOPE_HZ)
            if hub.scopes is not None and app[SOCKETS]:
                data = hub.scopes.take()
                if data:
                    hub.broadcast(data)

    tasks = [asyncio.create_task(run(), name="hub-telemetry-push"),
             asyncio.create_task(scopes(), name="hub-scope-push")]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS]):
        await ws.close(code=1001, message=b"hub shutting down")


# ---------------------------------------------------------------------------
# The route table and its OpenAPI description
# ---------------------------------------------------------------------------


ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/api/health", health),
    ("GET", "/api/installation", installation),
    ("GET", "/api/agents", list_agents),
    ("GET", "/api/agents/{agent_id}", get_agent),
    ("PATCH", "/api/agents/{agent_id}", patch_agent),
    ("POST", "/api/agents/{agent_id}/adopt", adopt_agent),
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
    ("GET", "/api/openapi.json", openapi),
    ("GET", "/ws", websocket),
    ("GET", "/", index),
]


def openapi_document(app: web.Application) -> dict[str, Any]:
    """OpenAPI 3.0 of every ``/api`` route in ``app``'s router (so new routes appear)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith("/api") or route.method == "HEAD":
            continue
        doc = inspect.getdoc(route.handler) or ""
        op: dict[str, Any] = {
            "summary": doc.splitlines()[0] if doc else route.handler.__name__,
            "operationId": route.handler.__name__,
            "responses": {"200": {"description": "JSON"},
                          "400": {"description": "bad request ({\"error\": ...})"}},
        }
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        if route.method not in READ_METHODS and path not in OPEN_PATHS:
            op["security"] = [{"bearer": []}, {"cookie": []}]
            op["responses"]["401"] = {"description": "missing or wrong token"}
            op["requestBody"] = {"required": False,
                                 "content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {"openapi": "3.0.3",
            "info": {"title": "anamnesis hub", "version": "1"},
            "components": {"securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE}}},
            "paths": paths}


def create_app(hub: Hub) -> web.Application:
    """The aiohttp application in front of a started :class:`Hub` (see the module docstring)."""
    app = web.Application(middlewares=[_access], client_max_size=MAX_BODY)
    app[HUB] = hub
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_telemetry_pusher)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


__all__ = ["COOKIE", "HUB", "ROUTES", "create_app", "openapi_document", "token_ok"]
