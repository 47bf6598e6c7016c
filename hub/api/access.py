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
refused (403), so a foreign page cannot ride on the cookie, and so is a write that
carries only the cookie from another origin (another port of the same host included:
SameSite does not separate ports). An address that presents :data:`MAX_WRONG_TOKENS`
wrong tokens in a row waits (429, :class:`TokenGuard`). A request whose ``Host`` is not
an IP address, localhost or this machine's name is refused (421; DNS rebinding), unless
``ANAMNESIS_ALLOWED_HOSTS`` lists it (a reverse proxy's name).

A write is answered when what it changed is on disk (a 200 or 201 survives ``kill -9``;
a change the disk refused is answered 503, :data:`~anamnesis.hub.core.events.NOT_STORED`,
with what it did as ``result``).
Errors are JSON ``{"error": "..."}`` with a 4xx status: the middleware turns a
:class:`~anamnesis.hub.core.errors.HubError` into its status and a ``TimeoutError``
into a 504, a :class:`~anamnesis.hub.core.store.StoreError` (a disk that refuses)
into a 503; any other exception is a bug of the hub's: a JSON 500, counted
(``handler_errors``), its traceback logged once per route and kind. Every response carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and the content security
policy :data:`CSP` (scripts and worklets of this origin, WebSockets to this host).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import socket
import time
from collections.abc import Callable

from aiohttp import web

from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.hub.api.keys import (
    ALLOWED_HOSTS,
    COOKIE,
    GUARD,
    HUB,
    OPEN_PATHS,
    READ_METHODS,
    WS_PATHS,
    Handler,
)
from anamnesis.hub.core.errors import Conflict, HubError, NotFound, Unavailable
from anamnesis.hub.core.events import NOT_STORED
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.core.store import StoreError

log = logging.getLogger(__name__)

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


#: Wrong tokens in a row one address may present before it must wait (429).
MAX_WRONG_TOKENS = 10
#: Seconds such an address then waits; each further wrong token doubles it, up to
#: :data:`MAX_WAIT_S` (short enough that a local script with a stale token does not
#: lock the dashboard on the same machine out for long; the token has 240 bits).
WRONG_TOKEN_WAIT_S = 30.0
MAX_WAIT_S = 300.0
#: Addresses whose wrong tokens are remembered (the oldest forgotten first).
MAX_GUARDED = 4096


class TokenGuard:
    """Wrong tokens counted per client address: after :data:`MAX_WRONG_TOKENS` in a row
    the address is answered 429 for :data:`WRONG_TOKEN_WAIT_S` (doubling, at most
    :data:`MAX_WAIT_S`); the right
    token clears its count. ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._wrong: dict[str, tuple[int, float]] = {}    # address -> (in a row, until)

    def wait_s(self, address: str) -> float:
        """Seconds ``address`` must still wait before its token is looked at (0: none)."""
        _, until = self._wrong.get(address, (0, 0.0))
        return max(0.0, until - self._clock())

    def wrong(self, address: str) -> None:
        count = self._wrong.pop(address, (0, 0.0))[0] + 1
        until = 0.0
        if count >= MAX_WRONG_TOKENS:
            doublings = min(count - MAX_WRONG_TOKENS, 16)
            until = self._clock() + min(MAX_WAIT_S, WRONG_TOKEN_WAIT_S * 2 ** doublings)
        if len(self._wrong) >= MAX_GUARDED:
            self._wrong.pop(next(iter(self._wrong)))
        self._wrong[address] = (count, until)

    def right(self, address: str) -> None:
        self._wrong.pop(address, None)


def check_token(request: web.Request, given: str | None) -> web.Response | None:
    """None if ``given`` is the installation's token, else the answer: 401, or 429 for
    an address that has presented too many wrong ones (:class:`TokenGuard`)."""
    hub, guard = request.app[HUB], request.app[GUARD]
    address = request.remote or "?"
    wait = guard.wait_s(address)
    if wait > 0:
        hub.counts["token_rate_limited"] += 1
        response = _error(f"too many wrong tokens from {address}; try again in {wait:.0f} s",
                          429)
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if token_ok(hub, given):
        guard.right(address)
        return None
    guard.wrong(address)
    hub.counts["unauthorized"] += 1
    return _error("missing or wrong token (Authorization: Bearer TOKEN)", 401)


def host_ok(request: web.Request) -> bool:
    """Whether the request's ``Host`` names this hub: an IP address, ``localhost``, this
    machine's name (and its ``.local`` mDNS name) or one of :data:`ALLOWED_HOSTS`'s —
    not a domain that a page could have re-pointed at us (DNS rebinding)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    host = host.strip("[]").lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return host in request.app[ALLOWED_HOSTS]


def allowed_host_names(extra: str = "") -> frozenset[str]:
    """The names :func:`host_ok` accepts: localhost, this machine's (with ``.local``), and
    ``extra``'s comma-separated ones (``ANAMNESIS_ALLOWED_HOSTS``: a proxy's name)."""
    name = socket.gethostname().lower().rstrip(".")
    names = {"localhost", name, name.split(".")[0] + ".local"}
    names.update(n.strip().lower().rstrip(".") for n in extra.split(",") if n.strip())
    return frozenset(names)


def _cookie_write_from_elsewhere(request: web.Request) -> bool:
    """A write carrying only the cookie (no ``Authorization``) from a page that is not
    the dashboard's own origin — scheme, host *and port* (SameSite=Strict lets another
    port of the same host send the cookie)."""
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return False
    origin = request.headers.get("Origin")
    if origin is None:    # browsers send Origin with every write; Sec-Fetch-Site if not
        return request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin"
    return origin.rstrip("/") != f"{request.scheme}://{request.host}"


@web.middleware
async def _access(request: web.Request, handler: Handler) -> web.StreamResponse:
    hub = request.app[HUB]
    if not host_ok(request):
        hub.counts["foreign_host"] += 1
        return _error(f"this hub answers to its own address (an IP address, localhost or "
                      f"{socket.gethostname()}), not to Host {request.host[:80]!r}", 421)
    websocket_path = request.path in WS_PATHS
    needs_token = websocket_path or (
        request.method not in READ_METHODS and request.path not in OPEN_PATHS)
    if needs_token:
        refused = check_token(request, _token_of(request))
        if refused is not None:
            return refused
        if not websocket_path and _cookie_write_from_elsewhere(request):
            hub.counts["foreign_origin"] += 1
            return _error("a write with the dashboard's cookie must come from the dashboard's "
                          "own page (or send Authorization: Bearer TOKEN)", 403)
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
    except StoreError as exc:    # the disk refused what this request had to store
        return _error(hub.event_log.store_refused(exc), 503)
    except web.HTTPException:
        raise
    except Exception as exc:   # a bug: answered, counted, its traceback logged once a kind
        hub.counts["handler_errors"] += 1
        report_bug(request.method + " " + _route_of(request), exc)
        return _error("the hub could not answer this request (an error of the hub's, "
                      "logged)", 500)
    # A write is answered once it is on disk: a 200 or 201 survives a kill -9.
    if request.method not in READ_METHODS and not websocket_path and response.status < 400 \
            and not await hub.event_log.on_disk(errors):
        refused = {"error": NOT_STORED}
        if isinstance(response, web.Response) and response.content_type == "application/json":
            refused["result"] = json.loads(response.body)   # done all the same: what it did
        return web.json_response(refused, status=503)
    return response


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path[:80]


#: Bugs said once per place and kind of exception, with their traceback, then counted.
_BUGS = RateLimitedLog(log, prefix="hub")


def report_bug(where: str, exc: BaseException) -> None:
    """Log ``exc`` with its traceback the first time it happens ``where`` (then only the
    counters say it), so a client repeating a request cannot flood the log."""
    _BUGS(where, type(exc).__name__, "a request failed", exc=exc)


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


__all__ = ["CSP", "MAX_WRONG_TOKENS", "TokenGuard", "allowed_host_names", "check_token",
           "host_ok", "report_bug", "token_ok"]
