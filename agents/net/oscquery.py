"""OSCQuery for one agent: its OSC address space as JSON over HTTP, and LISTEN over WebSocket.

Follows the OSCQuery proposal (Vidvox): ``GET /`` returns the whole namespace,
``GET /lr`` one node, ``GET /lr?VALUE`` one attribute, ``GET /?HOST_INFO`` the
server's description. The WebSocket on the same port takes the text commands
``{"COMMAND": "LISTEN", "DATA": "/lr"}`` and ``IGNORE``, and pushes every change of
a listened value as a binary OSC message, whoever made the change (the facade's
listeners fire for OSC, WebSocket, the hub and the process itself). Binary OSC
frames sent by a client over the WebSocket are handled like UDP datagrams
(replies come back as binary frames) — but only from non-browser clients: a
request carrying an ``Origin`` header (a web page) may LISTEN, not steer, so a
page visited on the studio machine cannot play with the speakers.

The namespace holds the parameters and the steering commands (``/panic``,
``/unpanic``, ``/reset``, ``/weights``, ``/snapshot``, ``/recall``); the plain-OSC
protocol verbs (``/ping``, ``/state``, ``/subscribe``) are left out, since OSCQuery
clients have LISTEN and HTTP for that. Choices made where the proposal leaves room:

* VALUEs are read live from the control facade on every request.
* ``/panic`` and ``/unpanic`` take no argument and have no value: ACCESS 0, no TYPE.
* The write-only commands (``/reset i``, ``/snapshot s``, ``/recall s``; ACCESS 2)
  report their default argument as VALUE (``0``, ``""``), because strict clients
  (python-oscquery 0.4) reject a node with ACCESS != 0 and no VALUE. ``/recall``
  lists the known snapshot names in ``RANGE[0].VALS``.
* Values outside RANGE are rejected, not clipped: CLIPMODE is ``"none"``.
* UNIT uses the proposal's names where one exists (``dB`` -> ``gain.db``, ``Hz`` ->
  ``time.hz``, ``s`` -> ``time.second``, ``ms`` -> ``time.ms``), else the spec's unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web

from anamnesis.agents.models.base import ParamSpec
from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.protocol.oscmap import (
    ACCESS_NONE,
    ACCESS_READWRITE,
    ACCESS_WRITE,
    COMMANDS,
    OscAddressSpace,
    address_of,
    build_message,
)

log = logging.getLogger(__name__)

#: Node attributes a client may ask for with ``GET /path?ATTRIBUTE``.
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "VALUE", "RANGE", "ACCESS", "DESCRIPTION",
              "UNIT", "CLIPMODE")
#: Commands served in the OSCQuery namespace (the rest are plain-OSC protocol verbs).
OSCQUERY_COMMANDS = ("/panic", "/unpanic", "/reset", "/weights", "/snapshot", "/recall")
UNITS = {"dB": "gain.db", "Hz": "time.hz", "s": "time.second", "ms": "time.ms"}
#: WebSocket clients served at once; queued pushes per client before the oldest is dropped.
MAX_WS_CLIENTS = 64
WS_QUEUE = 256
#: Seconds to wait for the weight vector when serving ``/weights``.
WEIGHTS_TIMEOUT = 2.0

OscHandler = Callable[[bytes, Any, Callable[[bytes], None]], None]


# ---------------------------------------------------------------------------
# Pure: JSON of nodes
# ---------------------------------------------------------------------------


def _range(spec: ParamSpec) -> dict[str, object]:
    if spec.kind == "choice":
        return {"VALS": list(spec.choices)}
    out: dict[str, object] = {}
    lo, hi = spec.minimum, spec.maximum
    if spec.kind == "bool":
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    if math.isfinite(lo):
        out["MIN"] = int(lo) if spec.kind in ("int", "bool") else float(lo)
    if math.isfinite(hi):
        out["MAX"] = int(hi) if spec.kind in ("int", "bool") else float(hi)
    return out


def _json_value(space: OscAddressSpace, name: str, value: object) -> list[object]:
    values = space.encode_value(name, value)
    # JSON has no NaN/inf: a parameter is validated finite, so this is belt and braces.
    return [v if not isinstance(v, float) or math.isfinite(v) else None for v in values]


def param_node(space: OscAddressSpace, name: str, value: object,
               address: str | None = None) -> dict[str, object]:
    """The OSCQuery node of parameter ``name`` with its live ``value``; at ``address``
    when that is one of its aliases (``/lr`` of Unlearn's λ), which the DESCRIPTION
    names."""
    spec = space.specs[name]
    n = len(space.type_tag(name)) if spec.kind == "array" else 1
    own = address_of(name)
    description = spec.description or name
    if address is not None and address != own:
        description = f"alias of {own}: {description}"
    node: dict[str, object] = {
        "FULL_PATH": address or own,
        "TYPE": space.type_tag(name),
        "ACCESS": ACCESS_READWRITE,
        "VALUE": _json_value(space, name, value),
        "RANGE": [_range(spec)] * n,
        "CLIPMODE": ["none"] * n,
        "DESCRIPTION": description,
    }
    if spec.unit:
        node["UNIT"] = [UNITS.get(spec.unit, spec.unit)] * n
    return node


def command_node(address: str, *, weights: np.ndarray | None = None,
                 snapshots: list[str] | None = None) -> dict[str, object]:
    """The OSCQuery node of a fixed command (see the module docstring)."""
    command = COMMANDS[address]
    node: dict[str, object] = {"FULL_PATH": address, "ACCESS": command.access,
                               "DESCRIPTION": command.description}
    if address == "/weights":
        if weights is None:            # could not be read in time: say so, offer write
            node["ACCESS"] = ACCESS_WRITE
            node["TYPE"] = "f"
            node["VALUE"] = [0.0]
        else:
            node["TYPE"] = "f" * len(weights)
            node["VALUE"] = [float(w) if math.isfinite(w) else None for w in weights]
    elif command.type_tag:
        node["TYPE"] = command.type_tag
        # An impulse (a button: /panic) has no value; VALUE [null] for clients that want
        # one on every writable node (python-oscquery refuses a node without).
        node["VALUE"] = {"i": [0], "I": [None]}.get(command.type_tag, [""])
        if address == "/reset":
            node["RANGE"] = [{"MIN": 0}]
        if address == "/recall":
            node["RANGE"] = [{"VALS": list(snapshots or [])}]
    return node


def namespace(space: OscAddressSpace, values: Mapping[str, object], *, description: str,
              weights: np.ndarray | None = None,
              snapshots: list[str] | None = None) -> dict[str, object]:
    """The root node: every parameter and command under ``CONTENTS``."""
    contents: dict[str, object] = {}
    for name in space.specs:
        contents[address_of(name)[1:]] = param_node(space, name, values[name])
    for alias, name in space.aliases().items():
        contents[alias[1:]] = param_node(space, name, values[name], alias)
    for address in OSCQUERY_COMMANDS:
        contents[address[1:]] = command_node(address, weights=weights, snapshots=snapshots)
    return {"FULL_PATH": "/", "ACCESS": ACCESS_NONE, "DESCRIPTION": description,
            "CONTENTS": contents}


def host_info(name: str, *, osc_ip: str, osc_port: int, ws_ip: str | None,
              ws_port: int | None) -> dict[str, object]:
    """The ``HOST_INFO`` reply: name, supported extensions, OSC and WebSocket endpoints."""
    info: dict[str, object] = {
        "NAME": name,
        "EXTENSIONS": {
            "ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
            "EXTENDED_TYPE": False, "UNIT": True, "CRITICAL": False, "CLIPMODE": True,
            "LISTEN": True, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False,
            "PATH_REMOVED": False, "HTML": False, "ECHO": False,
        },
        "OSC_IP": osc_ip,
        "OSC_PORT": osc_port,
        "OSC_TRANSPORT": "UDP",
    }
    if ws_ip is not None and ws_port is not None:
        info["WS_IP"] = ws_ip
        info["WS_PORT"] = ws_port
    return info


# ---------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------


@dataclass
class OscQueryConfig:
    """What the app needs besides the control facade."""

    name: str                      # HOST_INFO NAME, e.g. "anamnesis a3"
    osc_ip: str                    # where the OSC UDP server listens
    osc_port: int
    osc_handler: OscHandler | None = None   # OSC over the WebSocket (OscServer.handle_packet)
    allows: Callable[[str], bool] | None = None   # hosts that may write OSC over it (None: all)


@dataclass(eq=False)   # hashed by identity: kept in a set
class _WsClient:
    ws: web.WebSocketResponse
    may_write: bool
    peer: str
    refused: str | None = None     # why it may not write OSC (a browser origin, a host)
    listening: set[str] = field(default_factory=set)
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(WS_QUEUE))
    dropped: int = 0


@dataclass
class OscQueryState:
    """Live state of one OSCQuery app (clients, counters)."""

    control: Any
    space: OscAddressSpace
    config: OscQueryConfig
    clients: set[_WsClient] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {
        "requests": 0, "not_found": 0, "bad_requests": 0, "ws_clients": 0,
        "ws_bad_commands": 0, "ws_pushes": 0, "ws_dropped": 0, "ws_refused": 0})
    weights_size: int | None = None
    problems: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log, prefix="OSCQuery"))

    def push(self, name: str, value: object) -> None:
        """Listener of the control facade: queue ``/PARAM value`` for every listening client."""
        if name not in self.space.specs or not self.clients:
            return
        for address in (address_of(name), *self.space.addresses_of(name)):
            data: bytes | None = None
            for client in self.clients:
                if address not in client.listening:
                    continue
                if data is None:
                    data = self.space.value_message(name, value, address)
                _enqueue(self, client, data)


def _enqueue(state: OscQueryState, client: _WsClient, data: bytes) -> None:
    if client.queue.full():        # a slow client loses its oldest pushes, never the loop
        with contextlib.suppress(asyncio.QueueEmpty):
            client.queue.get_nowait()
        client.dropped += 1
        state.counts["ws_dropped"] += 1
    client.queue.put_nowait(data)
    state.counts["ws_pushes"] += 1


STATE_KEY = web.AppKey("oscquery_state", OscQueryState)


def create_oscquery_app(control: Any, config: OscQueryConfig,
                        space: OscAddressSpace | None = None,
                        extra_routes: Callable[[web.Application], None] | None = None
                        ) -> web.Application:
    """The OSCQuery aiohttp application of one agent (STYLE 10).

    ``control`` is the agent's control facade; ``config`` names the server and
    its OSC endpoint. The app registers a value listener on the facade while it
    runs and closes every WebSocket on shutdown. ``extra_routes(app)`` adds
    routes that take precedence over the namespace (the RTP link's ``/streams``).
    """
    app = web.Application()
    state = OscQueryState(control, space or OscAddressSpace(control.specs()), config)
    app[STATE_KEY] = state

    async def listen_ctx(app: web.Application) -> AsyncIterator[None]:
        unsubscribe = control.add_listener(state.push)
        try:
            yield
        finally:
            unsubscribe()

    async def close_websockets(app: web.Application) -> None:
        for client in list(state.clients):
            await client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"agent shutting down")

    app.cleanup_ctx.append(listen_ctx)
    app.on_shutdown.append(close_websockets)
    if extra_routes is not None:
        extra_routes(app)
    app.router.add_get("/{path:.*}", _handle)
    return app


async def _handle(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.counts["requests"] += 1
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request, state)
    query = list(request.query.keys())
    peer = request.remote or "?"
    if len(query) > 1:
        state.counts["bad_requests"] += 1
        state.problems(peer, "bad HTTP query", f"several attributes: {request.query_string[:80]}")
        raise web.HTTPBadRequest(text=f"one attribute per query; got {', '.join(query)}")
    attribute = query[0] if query else None
    if attribute == "HOST_INFO":
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        ws_ip, ws_port = (str(sockname[0]), int(sockname[1])) if sockname else (None, None)
        return _json(host_info(state.config.name, osc_ip=state.config.osc_ip,
                               osc_port=state.config.osc_port, ws_ip=ws_ip, ws_port=ws_port))
    if attribute is not None and attribute not in ATTRIBUTES:
        state.counts["bad_requests"] += 1
        state.problems(peer, "bad HTTP query", f"unknown attribute {attribute[:40]!r}")
        raise web.HTTPBadRequest(
            text=f"unknown attribute {attribute!r}; known: HOST_INFO, {', '.join(ATTRIBUTES)}")
    path = request.path.rstrip("/") or "/"
    node = await _node(state, path)
    if node is None:
        state.counts["not_found"] += 1
        raise web.HTTPNotFound(text=f"no OSC node at {path}")
    if attribute is None:
        return _json(node)
    if attribute not in node or (attribute == "VALUE" and (node.get("ACCESS") == ACCESS_NONE
                                                           or node.get("TYPE") == "I")):
        return web.Response(status=204)
    return _json({attribute: node[attribute]})


async def _node(state: OscQueryState, path: str) -> dict[str, object] | None:
    control, space = state.control, state.space
    if path == "/":
        weights = await _weights(state)
        return namespace(space, control.values(), weights=weights,
                         snapshots=control.snapshot_names(),
                         description=f"anamnesis agent {control.agent_id} ({control.model_kind})")
    name = space.param_of(path)
    if name is not None:
        return param_node(space, name, control.values()[name], path)
    if path in OSCQUERY_COMMANDS:
        weights = await _weights(state) if path == "/weights" else None
        return command_node(path, weights=weights, snapshots=control.snapshot_names())
    return None


async def _weights(state: OscQueryState) -> np.ndarray | None:
    try:
        flat = await asyncio.wait_for(state.control.get_weights(), WEIGHTS_TIMEOUT)
    except TimeoutError:
        log.warning("OSCQuery: weights not available within %.1f s", WEIGHTS_TIMEOUT)
        return None
    weights = np.asarray(flat, dtype=np.float64).ravel()
    state.weights_size = len(weights)
    return weights


def _json(payload: object) -> web.Response:
    return web.Response(text=json.dumps(payload, allow_nan=False),
                        content_type="application/json")


async def _websocket(request: web.Request, state: OscQueryState) -> web.StreamResponse:
    if len(state.clients) >= MAX_WS_CLIENTS:
        state.counts["ws_refused"] += 1
        raise web.HTTPServiceUnavailable(text=f"at most {MAX_WS_CLIENTS} WebSocket clients")
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=65_536)
    await ws.prepare(request)
    peer = request.remote or "websocket"
    allows = state.config.allows
    refused = ("browser origin" if "Origin" in request.headers else
               "a host that may not steer this agent" if allows is not None and not allows(peer)
               else None)
    client = _WsClient(ws, may_write=refused is None, peer=peer, refused=refused)
    state.clients.add(client)
    state.counts["ws_clients"] += 1
    writer = asyncio.create_task(_ws_writer(client), name=f"oscquery-ws-{peer}")
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                _ws_command(state, client, message.data)
            elif message.type == WSMsgType.BINARY:
                handler = state.config.osc_handler
                if handler is None or not client.may_write:
                    state.counts["ws_bad_commands"] += 1
                    _enqueue(state, client, build_message(
                        "/error", [f"OSC over this WebSocket is not accepted ({client.refused})"]))
                    continue
                handler(message.data, None, lambda data: _enqueue(state, client, data))
    finally:
        state.clients.discard(client)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
    return ws


async def _ws_writer(client: _WsClient) -> None:
    while True:
        data = await client.queue.get()
        try:
            await client.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):  # closing: the reader loop ends it
            return


def _ws_command(state: OscQueryState, client: _WsClient, text: str) -> None:
    """Apply a LISTEN/IGNORE command; malformed ones are counted and ignored (no error channel)."""
    try:
        command = json.loads(text)
        verb, path = command["COMMAND"], command["DATA"]
        if not isinstance(path, str) or verb not in ("LISTEN", "IGNORE"):
            raise ValueError(f"bad command {verb!r}")
    except (ValueError, KeyError, TypeError):
        state.counts["ws_bad_commands"] += 1
        state.problems(client.peer, "bad WebSocket command", text[:80])
        return
    if state.space.param_of(path) is None:  # only parameters have values that change
        state.counts["ws_bad_commands"] += 1
        state.problems(client.peer, "bad WebSocket command", f"cannot LISTEN to {path[:80]}")
        return
    if verb == "LISTEN":
        client.listening.add(path)
    else:
        client.listening.discard(path)


__all__ = ["OscQueryConfig", "STATE_KEY", "command_node", "create_oscquery_app", "host_info",
           "namespace", "param_node"]
