"""The hub's HTTP API: REST under ``/api``, WebSockets at ``/ws`` and ``/ws/listen``, the
dashboard at ``/``.

``create_app(hub)`` (STYLE 10) builds the aiohttp application around a running
:class:`anamnesis.hub.core.hub.Hub`: typed ``web.AppKey``s, the WebSocket pusher and the
weights poller in ``cleanup_ctx``, every open WebSocket closed on shutdown.

Access: every write (any method but GET/HEAD/OPTIONS) and both WebSockets need the
installation's token, as ``Authorization: Bearer TOKEN`` or the ``anamnesis_token``
cookie, which ``GET /?token=TOKEN`` sets once (then redirects to ``/`` so the
token leaves the address bar; HttpOnly, SameSite=Strict: the page's own requests
carry it). Tokens are compared with ``hmac.compare_digest``; the token is never
logged (the access log is off; requests are not logged with their query). Reads are
open (``GET /api/health``, the other ``/api`` reads, the dashboard's files: the
server binds 127.0.0.1 unless told otherwise). A WebSocket whose ``Origin`` is
another site is refused (403), so a foreign page cannot ride on the cookie.

The dashboard: ``GET /`` is ``web/index.html`` (:func:`hub.resources.web_dir`), and
``GET /PATH`` any other file below ``web/`` whose type is in :data:`CONTENT_TYPES`
(``.js`` as ``text/javascript``, as ES modules and AudioWorklets need): no listings,
no hidden files, nothing outside ``web/`` (``..``, symlinks), ``Cache-Control:
no-cache``. Every response carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and the content security
policy :data:`CSP` (scripts and worklets of this origin, WebSockets to this host).

Errors are JSON ``{"error": "..."}`` with a 4xx status; a body that is not JSON
is a 400 naming the parse error, and is counted (``hub.counts["malformed_json"]``).

``/ws`` messages (JSON text): the server pushes ``{"type": "hello", "name", "agents":
[...], "routes": [...], "scope": ..., "listen": [...], "room": LAYOUT|null,
"telemetry_hz": 30}`` once, then ``{"type": "agent", ...}`` on every agent change,
``{"type": "event", ...}`` for every event, ``{"type": "room", "layout": ...}`` when
the room changes, and ``{"type": "telemetry", "agents": {id: {"rms": .., "peak": ..,
"error_rms": .., ...}}}`` at most :data:`TELEMETRY_HZ` (30) times a second (levels
linear, full scale 1). Each agent of ``agents`` has ``specs``: its parameters'
ranges, scales (``"log"``/``"linear"``), units and docs (:mod:`anamnesis.hub.fleet.specs`). A client
that connects to ``/ws?scopes=1`` also gets binary messages: scopes and spectra of
the agents' outputs (at most 30 a second, when the hub has them: every block in
simulated mode, the ``out`` stream of each routed agent in deployed mode); their
frame layout is :mod:`anamnesis.hub.monitor.scopes`'s, and ``hello`` has ``"scope": {"agents": [ids by
index], "frames": N, "hz": 30}`` (null without a config). Clients send commands
``{"id": N, "cmd": NAME, ...args}`` and get ``{"type": "reply", "id": N, "ok": true,
"result": ...}`` or ``{"type": "reply", "id": N, "ok": false, "error": "..."}``.
Commands mirror the REST writes: ``adopt {agent}``, ``set_params {agent, params}``,
``set_weights {agent, weights}``,
``panic``, ``unpanic``, ``add_route {route}``, ``update_route {route_id, route}``,
``delete_route {route_id}``, ``add_ring {ring}``, ``delete_ring {name}``,
``put_room {room}``, ``put_room_layout {layout}``, ``save_snapshot {agent, name}``,
``recall_snapshot {agent, name}``, ``save_scene {name}``, ``recall_scene {name}``,
``interpolate {a, b, t}``, ``delete_scene {name}``, ``record_start {name}``,
``record_stop``, and the reads ``agents``, ``routes``, ``room``, ``room_layout``,
``snapshots {agent}``, ``scenes``, ``events``, ``listen_sources``. One command is the
socket's own: ``watch_weights {agents: [ids]}`` replaces the set of agents whose
weights this socket watches ([] stops; the reply's result is the set) and then
pushes ``{"type": "weights", "agent": ID, "weights": [...], "t": UNIX_S}`` about 3
times a second per watched online agent (:mod:`anamnesis.hub.api.weights_watch`).

``/ws/listen?source=AGENT_ID`` (or ``listener``: the stereo preview at the simulated
room's listener) streams live audio: a text message ``{"type": "listen", "source",
"channels", "sample_rate", "frames_per_message"}``, then binary PCM16 messages of
about 20 ms whose layout is :mod:`anamnesis.hub.monitor.listen`'s; an unknown source closes with code
4404 and the reason. ``GET /api/listen`` (and ``listen_sources``) list the sources.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import inspect
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from anamnesis.hub.api.weights_watch import WeightsWatch
from anamnesis.hub.core.commands import listen_sources, run_command
from anamnesis.hub.core.errors import HubError
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.monitor.listen import ListenStream
from anamnesis.hub.monitor.scopes import SCOPE_HZ
from anamnesis.hub.resources import web_dir

log = logging.getLogger(__name__)

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("sockets", weakref.WeakSet)
#: The sockets that asked for scopes (``/ws?scopes=1``): none, no spectra computed.
SCOPE_SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("scope_sockets", weakref.WeakSet)
WATCH: web.AppKey[WeightsWatch] = web.AppKey("weights_watch", WeightsWatch)
WEB_ROOT: web.AppKey[Path | None] = web.AppKey("web_root", object)  # type: ignore[arg-type]

COOKIE = "anamnesis_token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/api/health", "/api/openapi.json", "/"})
#: Largest request body (bytes): a scene of many agents' weights fits.
MAX_BODY = 4 * 1024 * 1024
#: Messages queued per WebSocket before the slowest client is dropped.
WS_QUEUE = 256
#: Seconds a WebSocket client gets to answer the hub's close on shutdown.
CLOSE_WAIT_S = 2.0
#: Telemetry pushes per second to WebSocket clients (at most; as often as agents send).
TELEMETRY_HZ = 30.0
#: Paths of the WebSockets (they need the token although they are GETs).
WS_PATHS = frozenset({"/ws", "/ws/listen"})
#: The dashboard's files the hub serves, by extension (anything else is a 404).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
    ".png": "image/png", ".ico": "image/x-icon", ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8", ".wasm": "application/wasm",
    ".woff2": "font/woff2", ".wav": "audio/wav",
}
#: What the dashboard's pages may load: scripts and worklets of this origin only,
#: WebSockets to this host, images and audio from blobs (an exported PNG, a recording).
CSP = ("default-src 'self'; script-src 'self'; worker-src 'self' blob:; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
       "connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

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
    websocket_path = request.path in WS_PATHS
    needs_token = websocket_path or (
        request.method not in READ_METHODS and request.path not in OPEN_PATHS)
    if needs_token and not token_ok(hub, _token_of(request)):
        hub.counts["unauthorized"] += 1
        return _error("missing or wrong token (Authorization: Bearer TOKEN)", 401)
    if websocket_path and not _same_origin(request):
        # A page of another site cannot use the browser's cookie to open our sockets.
        hub.counts["foreign_origin"] += 1
        return _error("WebSocket from another origin refused", 403)
    try:
        return await handler(request)
    except HubError as exc:
        return _error(str(exc), exc.status)
    except TimeoutError as exc:
        return _error(str(exc), 504)


def _same_origin(request: web.Request) -> bool:
    """True without an ``Origin`` header (not a browser) or when it names this host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    _, sep, rest = origin.partition("://")
    return bool(sep) and rest.rstrip("/") == request.host


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: no MIME sniffing, no framing, no referrer, and the
    dashboard's content security policy (:data:`CSP`) on every response."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    host = request.host if all(c.isalnum() or c in ".-:[]" for c in request.host) else "127.0.0.1"
    headers.setdefault("Content-Security-Policy", CSP.format(host=host))


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
    reflects a stream to another host (anamnesis.agents.net.link). ``?port=P`` is passed on.
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
    page = await _web_file(request.app, "index.html")
    if page is not None:
        return _file_response(page)
    return web.Response(text=f"<!doctype html><title>{html.escape(hub.name)}</title>"
                             "<p>anamnesis hub: the dashboard is not installed; "
                             "the API is at /api.</p>", content_type="text/html",
                        headers={"Cache-Control": "no-cache"})


def _resolve_web_file(root: Path, relative: str) -> Path | None:
    """The file ``relative`` (a URL path below ``/``) names under ``root``, or None: no
    empty, ``.`` or ``..`` parts, no hidden files, no backslashes, only the types of
    :data:`CONTENT_TYPES`, and nothing that resolves (symlinks) outside ``root``."""
    parts = relative.split("/")
    if not relative or "\\" in relative or "\0" in relative or any(
            not part or part.startswith(".") for part in parts):
        return None
    path = root.joinpath(*parts)
    if path.suffix.lower() not in CONTENT_TYPES:
        return None
    try:
        resolved = path.resolve(strict=True)
        resolved.relative_to(root)
    except (OSError, ValueError, RuntimeError):
        return None
    return resolved if resolved.is_file() else None


async def _web_file(app: web.Application, relative: str) -> Path | None:
    root = app[WEB_ROOT]
    if root is None:
        return None
    return await asyncio.get_running_loop().run_in_executor(
        None, _resolve_web_file, root, relative)


def _file_response(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={
        "Content-Type": CONTENT_TYPES[path.suffix.lower()], "Cache-Control": "no-cache"})


async def web_static(request: web.Request) -> web.StreamResponse:
    """A file of the dashboard (``web/``): open to read, no listings, no way out of web/."""
    relative = request.match_info["path"]
    if relative.startswith(("api/", "ws/")):
        raise HubError(f"no route GET /{relative[:200]} (see /api/openapi.json)", 404)
    page = await _web_file(request.app, relative)
    if page is None:
        raise HubError(f"no file /{relative[:200]}", 404)
    return _file_response(page)


# ---------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------


def _hello(hub: Hub) -> dict[str, Any]:
    scopes = hub.scopes
    room = hub.room_layout()
    return {"type": "hello", "name": hub.name, "agents": hub.agents_json(),
            "routes": list(hub.routes.values()),
            "scope": None if scopes is None else {"agents": list(scopes.agent_ids),
                                                  "frames": scopes.frames, "hz": SCOPE_HZ},
            "telemetry_hz": TELEMETRY_HZ, "listen": listen_sources(hub), "room": room}


def _watch_weights(request: web.Request, key: object, msg: dict[str, Any],
                   push: Callable[[dict[str, Any]], None]) -> list[str]:
    hub = request.app[HUB]
    agents = msg.get("agents")
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        raise HubError('watch_weights needs "agents": [agent ids] ([] stops watching)')
    unknown = sorted(set(agents) - hub.known_agent_ids())
    if unknown:
        raise HubError(f"no agent {', '.join(map(repr, unknown))}"[:300], 404)
    try:
        return request.app[WATCH].watch(key, agents, push)
    except ValueError as exc:
        raise HubError(str(exc)) from None


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Live agent state and events; takes the same commands as the REST writes."""
    hub = request.app[HUB]
    # No permessage-deflate: scopes are float32 noise to zlib, and compressing ~1.5 MB/s
    # per client would cost the hub more CPU than everything else the dashboard asks.
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=MAX_BODY, compress=False)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    queue: asyncio.Queue[dict[str, Any] | bytes | None] = asyncio.Queue(maxsize=WS_QUEUE)
    wants_scopes = request.query.get("scopes") == "1"
    if wants_scopes:
        request.app[SCOPE_SOCKETS].add(ws)

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
    push(_hello(hub))
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
                if data.get("cmd") == "watch_weights":   # this socket's own watch set
                    result = _watch_weights(request, ws, data, push)
                else:
                    result = await run_command(hub, data.get("cmd"), data)
                push({"type": "reply", "id": data.get("id"), "ok": True, "result": result})
            except (HubError, TimeoutError) as exc:
                push({"type": "reply", "id": data.get("id"), "ok": False, "error": str(exc)})
    finally:
        request.app[WATCH].unwatch(ws)
        request.app[SCOPE_SOCKETS].discard(ws)
        unsubscribe()
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await send_task
    return ws


async def listen(request: web.Request) -> web.WebSocketResponse:
    """Live audio of one source (``?source=AGENT_ID`` or ``listener``) as PCM16 messages.

    First a text message ``{"type": "listen", "source", "channels", "sample_rate",
    "frames_per_message"}``, then binary messages of about 20 ms (:mod:`anamnesis.hub.monitor.listen`).
    An unknown source closes the socket with code 4404 and the reason. A client too
    slow to take them loses the oldest (counted in ``hub.counts["listen_dropped"]``;
    the sequence numbers show the gap); the hub's clock never waits for it.
    """
    hub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=64 * 1024, compress=False)
    await ws.prepare(request)
    source = request.query.get("source", "")
    tap = hub.listen
    try:
        if tap is None:
            raise KeyError("nothing to listen to: the hub runs without a config")
        channels = tap.channels(source)
    except KeyError as exc:
        hub.counts["listen_unknown_source"] += 1
        reason = str(exc.args[0] if exc.args else exc).encode("utf-8")[:120]
        await ws.close(code=4404, message=reason)
        return ws
    request.app[SOCKETS].add(ws)

    def dropped() -> None:
        hub.counts["listen_dropped"] += 1

    stream = ListenStream(channels, tap.sample_rate, on_drop=dropped)
    await ws.send_json({"type": "listen", "source": source, "channels": channels,
                        "sample_rate": tap.sample_rate, "frames_per_message": stream.target})

    async def sender() -> None:
        while True:
            seq, pcm = await stream.next()
            await ws.send_bytes(stream.encode(seq, pcm))

    unsubscribe = tap.subscribe(source, stream.add)
    hub.counts["listen_opened"] += 1
    send_task = asyncio.create_task(sender(), name=f"hub-listen-{source}")
    try:
        async for _ in ws:   # the client has nothing to say; this waits for the close
            pass
    finally:
        unsubscribe()
        send_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await send_task
    return ws


async def _telemetry_pusher(app: web.Application) -> AsyncIterator[None]:
    """Background tasks (cleanup_ctx): every 1/TELEMETRY_HZ s, push the newest telemetry
    frame of each agent that sent one as ``{"type": "telemetry", "agents": {id: frame}}``;
    every 1/SCOPE_HZ s (while a ``/ws?scopes=1`` is open), the new scopes and spectra as one
    binary message (:mod:`anamnesis.hub.monitor.scopes`)."""
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
            if hub.scopes is not None and app[SCOPE_SOCKETS]:
                data = hub.scopes.take()
                if data:
                    hub.broadcast(data)

    tasks = [asyncio.create_task(run(), name="hub-telemetry-push"),
             asyncio.create_task(scopes(), name="hub-scope-push")]
    yield
    await app[WATCH].close()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _close_sockets(app: web.Application) -> None:
    """Close every WebSocket at once, giving each client :data:`CLOSE_WAIT_S` to answer
    (one that stopped reading must not hold the shutdown up)."""
    async def close(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await ws.close(code=1001, message=b"hub shutting down")
    await asyncio.gather(*(close(ws) for ws in list(app[SOCKETS])))


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
    ("GET", "/api/room/layout", get_room_layout),
    ("PUT", "/api/room/layout", put_room_layout),
    ("GET", "/api/listen", list_listen_sources),
    ("GET", "/api/openapi.json", openapi),
    ("GET", "/ws", websocket),
    ("GET", "/ws/listen", listen),
    ("GET", "/", index),
    ("GET", "/{path:.+}", web_static),     # last: the dashboard's files
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
    app[SCOPE_SOCKETS] = weakref.WeakSet()
    app[WATCH] = WeightsWatch(hub)
    try:
        app[WEB_ROOT] = web_dir().resolve()
    except FileNotFoundError:
        app[WEB_ROOT] = None
    app.on_response_prepare.append(_security_headers)
    app.on_shutdown.append(_close_sockets)
    app.cleanup_ctx.append(_telemetry_pusher)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app


__all__ = ["COOKIE", "HUB", "ROUTES", "create_app", "openapi_document", "token_ok"]
