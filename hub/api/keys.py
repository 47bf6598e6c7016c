"""The application's typed keys and the constants the API's modules share.

``web.AppKey``s (STYLE 10) of what :func:`anamnesis.hub.api.app.create_app` stores on
the application: the :class:`~anamnesis.hub.core.hub.Hub` (:data:`HUB`), every open
WebSocket (:data:`SOCKETS`, closed on shutdown), the ones that asked for scopes
(:data:`SCOPE_SOCKETS`), the weights watcher (:data:`WATCH`) and the dashboard's
``web/`` directory (:data:`WEB_ROOT`, None when it is not installed), the connection counts
(:data:`CONNECTIONS`). Then the access
rules' constants: the token cookie's name (:data:`COOKIE`), the methods that read
(:data:`READ_METHODS`), the paths open without a token (:data:`OPEN_PATHS`), the
WebSockets' paths (:data:`WS_PATHS`, which need the token although they are GETs) and
the largest request body (:data:`MAX_BODY`).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from anamnesis.hub.api.connections import ConnectionCap
from anamnesis.hub.api.weights_watch import WeightsWatch
from anamnesis.hub.core.hub import Hub

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("sockets", weakref.WeakSet)
#: The sockets that asked for scopes (``/ws?scopes=1``): none, no spectra computed.
SCOPE_SOCKETS: web.AppKey[weakref.WeakSet] = web.AppKey("scope_sockets", weakref.WeakSet)
WATCH: web.AppKey[WeightsWatch] = web.AppKey("weights_watch", WeightsWatch)
WEB_ROOT: web.AppKey[Path | None] = web.AppKey("web_root", object)  # type: ignore[arg-type]
#: Wrong tokens per client address (anamnesis.hub.api.access.TokenGuard).
GUARD: web.AppKey[Any] = web.AppKey("token_guard", object)
#: The host names the API answers to besides IP addresses (anamnesis.hub.api.access.host_ok).
ALLOWED_HOSTS: web.AppKey[frozenset[str]] = web.AppKey("allowed_hosts", frozenset)
#: Open connections per client host (anamnesis.hub.api.connections; installed by the CLI).
CONNECTIONS: web.AppKey[ConnectionCap] = web.AppKey("connections", ConnectionCap)

COOKIE = "anamnesis_token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS = frozenset({"/api/health", "/api/openapi.json", "/"})
#: Largest request body (bytes): a scene of many agents' weights fits.
MAX_BODY = 4 * 1024 * 1024
#: Paths of the WebSockets (they need the token although they are GETs).
WS_PATHS = frozenset({"/ws", "/ws/listen"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


__all__ = ["ALLOWED_HOSTS", "CONNECTIONS", "COOKIE", "GUARD", "HUB", "MAX_BODY", "OPEN_PATHS", "READ_METHODS", "SCOPE_SOCKETS",
           "SOCKETS", "WATCH", "WEB_ROOT", "WS_PATHS", "Handler"]
