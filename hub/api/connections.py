"""How many TCP connections the hub's HTTP server holds, per client host and in all.

A visitor's laptop opening connections and sending nothing (1,100 of them exhausted a
hub's 1,024 descriptors: issue 14) must not take the API from the installation's own
browser. :class:`ConnectionCap` admits at most :data:`PER_HOST` open connections from one
client address and :data:`TOTAL` in all; the one past a cap is closed at once
(``transport.abort()`` on the loop's next turn: its descriptor is freed before it reads
a byte), counted
(:meth:`ConnectionCap.counts`, in ``/api/health``) and logged once per host. A
connection that sends no request for :data:`IDLE_S` is closed by aiohttp's keep-alive
timer (its default is an hour), so the held places turn over.

:func:`raise_descriptor_limit` lifts the process's soft ``RLIMIT_NOFILE`` towards its
hard limit (systemd's default soft limit is 1,024; the shipped unit sets
``LimitNOFILE=65536``), so the cap, not the kernel, is what a flood meets.

:func:`cap_connections` installs a cap on an ``aiohttp.web.AppRunner`` after its
``setup()``: it wraps the server's ``connection_made`` / ``connection_lost``, the hooks
aiohttp's request handlers call on their manager.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from typing import Any

from aiohttp import web

from anamnesis.agents.net.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)

#: Open connections one client address may hold (a browser opens 6 per host, plus the
#: dashboard's two WebSockets, per tab).
PER_HOST = 64
#: Open connections in all.
TOTAL = 1024
#: Seconds a connection may stay open without a request (aiohttp's keep-alive timer).
IDLE_S = 75.0
#: The soft descriptor limit the hub asks for (at most the hard limit).
WANTED_DESCRIPTORS = 65536


def raise_descriptor_limit(wanted: int = WANTED_DESCRIPTORS) -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to ``min(wanted, hard)``; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


class ConnectionCap:
    """Counts open connections per client host and refuses those past the caps."""

    def __init__(self, per_host: int = PER_HOST, total: int = TOTAL) -> None:
        if per_host < 1 or total < per_host:
            raise ValueError(f"need 1 <= per_host <= total; got {per_host}, {total}")
        self.per_host = int(per_host)
        self.total = int(total)
        self._open: Counter[str] = Counter()
        self._admitted: dict[int, str] = {}      # id(handler) -> its host
        self._refused = 0
        self._log = RateLimitedLog(log, prefix="hub HTTP")

    def admit(self, handler: object, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection; False (and counted, logged once per host) past a cap."""
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else "?"
        host_full = self._open[host] >= self.per_host
        if host_full or len(self._admitted) >= self.total:
            self._refused += 1
            which = f"{self.per_host} from one host" if host_full else f"{self.total} in all"
            self._log(host, "connections", f"connection refused: {which} are open")
            return False
        self._open[host] += 1
        self._admitted[id(handler)] = host
        return True

    def release(self, handler: object) -> None:
        """A connection closed (refused ones were never counted)."""
        host = self._admitted.pop(id(handler), None)
        if host is not None:
            self._open[host] -= 1
            if self._open[host] <= 0:
                del self._open[host]

    def counts(self) -> dict[str, int]:
        """``connections`` open now, ``connection_hosts``, ``connections_refused`` so far."""
        return {"connections": len(self._admitted), "connection_hosts": len(self._open),
                "connections_refused": self._refused}


def cap_connections(runner: web.AppRunner, cap: ConnectionCap) -> None:
    """Install ``cap`` on a set-up runner's server (see the module docstring)."""
    server: Any = runner.server
    if server is None:
        raise RuntimeError("cap_connections needs a runner after setup()")
    made, lost = server.connection_made, server.connection_lost

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        made(handler, transport)
        if not cap.admit(handler, transport):
            # After the handler's task has begun (it is created after this hook; its
            # first step asserts the connection is still there), before it reads.
            asyncio.get_running_loop().call_soon(transport.abort)

    def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
        cap.release(handler)
        lost(handler, exc)

    server.connection_made = connection_made
    server.connection_lost = connection_lost


__all__ = ["IDLE_S", "PER_HOST", "TOTAL", "ConnectionCap", "cap_connections",
           "raise_descriptor_limit"]
