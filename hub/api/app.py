"""The hub's HTTP API: REST under ``/api``, WebSockets at ``/ws`` and ``/ws/listen``, the
dashboard at ``/``.

``create_app(hub)`` (STYLE 10) builds the aiohttp application around a running
:class:`anamnesis.hub.core.hub.Hub`: typed ``web.AppKey``s (:mod:`anamnesis.hub.api.keys`),
the access middleware and the security headers (:mod:`anamnesis.hub.api.access`), the
WebSocket pusher and the weights poller in ``cleanup_ctx``, every open WebSocket
closed on shutdown (:mod:`anamnesis.hub.api.ws`), and the route table :data:`ROUTES`:
the REST API (:mod:`anamnesis.hub.api.rest`), its OpenAPI document
(:mod:`anamnesis.hub.api.openapi`), the WebSockets, then the dashboard's files
(:mod:`anamnesis.hub.api.static`).

In short: every write and both WebSockets need the installation's token (``Authorization:
Bearer TOKEN`` or the ``anamnesis_token`` cookie that ``GET /?token=TOKEN`` sets); reads
are open; errors are JSON ``{"error": "..."}`` with a 4xx status. Each module's
docstring has the details.
"""

from __future__ import annotations

import logging
import os
import weakref

from aiohttp import web

from anamnesis.hub.api.access import TokenGuard, _access, _security_headers, allowed_host_names
from anamnesis.hub.api.connections import ConnectionCap
from anamnesis.hub.api.keys import (
    ALLOWED_HOSTS,
    CONNECTIONS,
    GUARD,
    HUB,
    MAX_BODY,
    SCOPE_SOCKETS,
    SOCKETS,
    WATCH,
    WEB_ROOT,
    Handler,
)
from anamnesis.hub.api.openapi import openapi
from anamnesis.hub.api.rest import REST_ROUTES
from anamnesis.hub.api.static import index, web_static
from anamnesis.hub.api.weights_watch import WeightsWatch
from anamnesis.hub.api.ws import _close_sockets, _telemetry_pusher, listen, websocket
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.resources import web_dir

log = logging.getLogger(__name__)

#: Every route of the application, in the order the router tries them: the REST API
#: (:data:`anamnesis.hub.api.rest.REST_ROUTES`), its OpenAPI document, the WebSockets,
#: then the dashboard (its catch-all last).
ROUTES: list[tuple[str, str, Handler]] = [
    *REST_ROUTES,
    ("GET", "/api/openapi.json", openapi),
    ("GET", "/ws", websocket),
    ("GET", "/ws/listen", listen),
    ("GET", "/", index),
    ("GET", "/{path:.+}", web_static),     # last: the dashboard's files
]


def create_app(hub: Hub) -> web.Application:
    """The aiohttp application in front of a started :class:`Hub` (see the module docstring)."""
    app = web.Application(middlewares=[_access], client_max_size=MAX_BODY)
    app[HUB] = hub
    app[SOCKETS] = weakref.WeakSet()
    app[SCOPE_SOCKETS] = weakref.WeakSet()
    app[WATCH] = WeightsWatch(hub)
    app[GUARD] = TokenGuard()
    app[CONNECTIONS] = ConnectionCap()
    app[ALLOWED_HOSTS] = allowed_host_names(os.environ.get("ANAMNESIS_ALLOWED_HOSTS", ""))
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


__all__ = ["ROUTES", "create_app"]
