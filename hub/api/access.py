"""Who may do what over HTTP, and how errors and headers look.

Access: every write (any method but GET/HEAD/OPTIONS) and both WebSockets need the
installation's token, as ``Authorization: Bearer TOKEN`` or the ``anamnesis_token``
cookie, which ``GET /?token=TOKEN`` sets once (:func:`anamnesis.hub.api.static.index`,
then redirects to ``/`` so the token leaves the address bar; HttpOnly,
SameSite=Strict: the page's own requests carry it). Tokens are compared with
``hmac.compare_digest`` (:func:`token_ok`); the token is never logged (the access log
is off; requests are not logged with their query). Reads are open (``GET
/api/health``, the other ``/api`` reads, the dashboard's files: the server binds
127.0.0.1 unless told otherwise). A WebSocket whose ``Origin`` is another site is
refused (403), so a foreign page cannot ride on the cookie.

A write is answered when what it changed is on disk (a 200 or 201 survives ``kill -9``;
a change the disk refused is answered 503, :data:`~anamnesis.hub.core.events.NOT_STORED`).
Errors are JSON ``{"error": "..."}`` with a 4xx status: the middleware turns a
:class:`~anamnesis.hub.core.errors.HubError` into its status and a ``TimeoutError``
into a 504. Every response carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and the content security
policy :data:`CSP` (scripts and worklets of this origin, WebSockets to this host).
"""

from __future__ import annotations

import hmac

from aiohttp import web

from anamnesis.hub.api.keys import COOKIE, HUB, OPEN_PATHS, READ_METHODS, WS_PATHS, Handler
from anamnesis.hub.core.errors import Conflict, HubError, NotFound, Unavailable
from anamnesis.hub.core.events import NOT_STORED
from anamnesis.hub.core.hub import Hub

#: What the dashboard's pages may load: scripts and worklets of this origin only,
#: WebSockets to this host, images and audio from blobs (an exported PNG, a recording).
CSP = ("default-src 'self'; script-src 'self'; worker-src 'self' blob:; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
       "connect-src 'self' ws://{host} wss://{host}; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


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
    errors = hub.counts["store_errors"]
    try:
        response = await handler(request)
    except HubError as exc:
        return _error(str(exc), status_of(exc))
    except TimeoutError as exc:
        return _error(str(exc), 504)
    # A write is answered once it is on disk: a 200 or 201 survives a kill -9.
    if request.method not in READ_METHODS and not websocket_path and response.status < 400 \
            and not await hub.event_log.on_disk(errors):
        return _error(NOT_STORED, 503)
    return response


#: The HTTP status of each kind of refusal (anamnesis.hub.core.errors); others: 400.
STATUS = {NotFound: 404, Conflict: 409, Unavailable: 502}


def status_of(exc: HubError) -> int:
    """The HTTP status a refusal is answered with."""
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 400)


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


__all__ = ["CSP", "token_ok"]
