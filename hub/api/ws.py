"""The WebSockets: ``/ws`` (state, events, commands) and ``/ws/listen`` (live audio).

Both need the token and a same-origin ``Origin`` (:mod:`anamnesis.hub.api.access`);
every open socket is in :data:`~anamnesis.hub.api.keys.SOCKETS` and is closed on
shutdown (:func:`_close_sockets`, giving each client :data:`CLOSE_WAIT_S`).

``/ws`` messages (JSON text): the server pushes ``{"type": "hello", "name", "agents":
[...], "routes": [...], "couplings": [...], "scope": ..., "listen": [...], "room": LAYOUT|null,
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
``add_coupling {coupling}``, ``update_coupling {coupling_id, coupling}``,
``delete_coupling {coupling_id}``,
``put_room {room}``, ``put_room_layout {layout}``, ``save_snapshot {agent, name}``,
``recall_snapshot {agent, name}``, ``save_scene {name}``, ``recall_scene {name}``,
``interpolate {a, b, t}``, ``delete_scene {name}``, ``record_start {name}``,
``record_stop``, and the reads ``agents``, ``routes``, ``couplings``, ``room``, ``room_layout``,
``snapshots {agent}``, ``scenes``, ``events``, ``listen_sources``. One command is the
socket's own: ``watch_weights {agents: [ids]}`` replaces the set of agents whose
weights this socket watches ([] stops; the reply's result is the set) and then
pushes ``{"type": "weights", "agent": ID, "weights": [...], "t": UNIX_S}`` about 3
times a second per watched online agent (:mod:`anamnesis.hub.api.weights_watch`).
The telemetry and scope pushers run in ``cleanup_ctx`` (:func:`_telemetry_pusher`).

``/ws/listen?source=AGENT_ID`` (or ``listener``: the stereo preview at the simulated
room's listener) streams live audio: a text message ``{"type": "listen", "source",
"channels", "sample_rate", "frames_per_message"}``, then binary PCM16 messages of
about 20 ms whose layout is :mod:`anamnesis.hub.monitor.listen`'s; an unknown source closes with code
4404 and the reason. ``GET /api/listen`` (and ``listen_sources``) list the sources.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import WSMsgType, web

from anamnesis.hub.api.access import report_bug
from anamnesis.hub.api.bodies import decode_json
from anamnesis.hub.api.keys import HUB, MAX_BODY, SCOPE_SOCKETS, SOCKETS, WATCH
from anamnesis.hub.core.commands import listen_sources, run_command
from anamnesis.hub.core.errors import HubError, NotFound
from anamnesis.hub.core.events import NOT_STORED
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.core.store import StoreError
from anamnesis.hub.monitor.listen import ListenStream
from anamnesis.hub.monitor.scopes import SCOPE_HZ

#: Messages queued per WebSocket before the slowest client is dropped.
WS_QUEUE = 256
#: Seconds a WebSocket client gets to answer the hub's close on shutdown.
CLOSE_WAIT_S = 2.0
#: Telemetry pushes per second to WebSocket clients (at most; as often as agents send).
TELEMETRY_HZ = 30.0


# ---------------------------------------------------------------------------
# WebSocket
# ---------------------------------------------------------------------------


def _hello(hub: Hub) -> dict[str, Any]:
    scopes = hub.scopes
    room = hub.room_layout()
    return {"type": "hello", "name": hub.name, "agents": hub.agents_json(),
            "routes": list(hub.routes.values()),
            "couplings": hub.couplings_json(),
            "scope": None if scopes is None else {"agents": list(scopes.agent_ids),
                                                  "frames": scopes.frames, "hz": SCOPE_HZ},
            "telemetry_hz": TELEMETRY_HZ, "listen": listen_sources(hub), "room": room,
            "description": (hub.config.installation.description
                            if hub.config is not None else None),
            "overloaded": hub.overloaded, "store_failing": hub.event_log.store_failing}


def _watch_weights(request: web.Request, key: object, msg: dict[str, Any],
                   push: Callable[[dict[str, Any]], None]) -> list[str]:
    hub = request.app[HUB]
    agents = msg.get("agents")
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        raise HubError('watch_weights needs "agents": [agent ids] ([] stops watching)')
    unknown = sorted(set(agents) - hub.known_agent_ids())
    if unknown:
        raise NotFound(f"no agent {', '.join(map(repr, unknown))}"[:300])
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
                data = decode_json(msg.data)
            except HubError as exc:
                hub.counts["malformed_json"] += 1
                push({"type": "reply", "id": None, "ok": False, "error": str(exc)})
                continue
            if not isinstance(data, dict):
                push({"type": "reply", "id": None, "ok": False, "error": "send a JSON object"})
                continue
            try:
                if data.get("cmd") == "watch_weights":   # this socket's own watch set
                    result = _watch_weights(request, ws, data, push)
                else:
                    errors = hub.counts["store_errors"]
                    result = await run_command(hub, data.get("cmd"), data)
                    if not await hub.event_log.on_disk(errors):   # acknowledged: on disk
                        raise HubError(NOT_STORED)
                push({"type": "reply", "id": data.get("id"), "ok": True, "result": result})
            except (HubError, TimeoutError) as exc:
                push({"type": "reply", "id": data.get("id"), "ok": False, "error": str(exc)})
            except StoreError as exc:
                push({"type": "reply", "id": data.get("id"), "ok": False,
                      "error": hub.event_log.store_refused(exc)})
            except Exception as exc:   # a bug: this socket lives on; logged once a kind
                hub.counts["handler_errors"] += 1
                report_bug(f"WebSocket command {str(data.get('cmd'))[:40]!r}", exc)
                push({"type": "reply", "id": data.get("id"), "ok": False,
                      "error": "the hub could not run this command (an error of the hub's, "
                               "logged)"})
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

    unsubscribe = tap.subscribe(source, stream.add, on_panic=stream.panic)
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
    """Background tasks (cleanup_ctx): every 1/TELEMETRY_HZ s while a WebSocket is open,
    push the newest telemetry frame of each agent that sent one as
    ``{"type": "telemetry", "agents": {id: frame}}``; every 1/SCOPE_HZ s (while a ``/ws?scopes=1`` is open), the new scopes and spectra as one
    binary message (:mod:`anamnesis.hub.monitor.scopes`)."""
    hub = app[HUB]

    async def run() -> None:
        while True:      # an overloaded hub sheds three pushes in four
            await asyncio.sleep((4.0 if hub.overloaded else 1.0) / TELEMETRY_HZ)
            if not app[SOCKETS]:     # nobody watches: the frames are not even parsed
                continue
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


__all__ = ["CLOSE_WAIT_S", "TELEMETRY_HZ", "WS_QUEUE", "listen", "websocket"]
