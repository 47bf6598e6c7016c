"""OSC over UDP for one agent: an asyncio datagram server around :mod:`anamnesis.agents.protocol.oscmap`.

Why not python-osc's ``AsyncIOOSCUDPServer``: it drops malformed packets silently,
its dispatcher may ``time.sleep`` on a future-dated bundle (blocking the event
loop), and it logs every unknown type tag through the root logger. Here every
datagram is parsed by :func:`anamnesis.agents.protocol.oscmap.parse_packet` (python-osc's
``OscMessage`` underneath), bundle contents are dispatched at once, and every
problem is counted, answered with ``/error s`` to the sender, and logged once per
peer and kind (STYLE 13). Replies to one host are limited to a budget (200 per
second, bursts of 1000, by default) so an agent cannot be used to amplify spoofed
traffic.

Replies go from the agent's OSC port to the sender's address, or to the port a host
chose with ``/reply_port`` (Max's ``[udpsend]`` and Pd's ``[netsend]`` send from a
throw-away port). Telemetry subscribers (``/subscribe [port [prefix]]``) get one bundle
per tick (30 Hz by default: ``/agent s ID``, ``/level rms peak``, ``/error_rms``, ...
every figure of ``control.telemetry()``, plus ``/osc_malformed i`` and ``/osc_errors
i``, this server's counters; every address after the subscriber's prefix) from the
agent's OSC port too, so SuperCollider's source-filtered ``OSCdef`` and a patch telling
two agents apart both work. The socket asks the kernel for its send errors
(``IP_RECVERR``, Linux): an ICMP "port unreachable" names the vanished destination, and
a subscriber is dropped after ``max_failures`` of them; a subscription also lapses when
it is not renewed within its lease (60 s). Every table keyed by peers is capped, and one
host holds at most :data:`MAX_SUBSCRIBERS_PER_HOST` subscriptions (a hub and a
controller or two on one machine), so a ``/subscribe`` forged with an allowed host's
address adds at most that many streams towards it.

Bundles are dispatched at their time tag: "immediately" or a past time at once, a
future time (at most :data:`MAX_AHEAD_S` ahead, at most :data:`MAX_SCHEDULED` waiting)
by ``loop.call_later`` — the loop never sleeps on a bundle.

Slow commands (``/weights``, ``/snapshot``, ``/recall``, ``/subscribe``) go through
one bounded queue served by one task, so they keep their order; parameter
changes, ``/panic`` and queries are handled immediately in the datagram callback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscmap import (
    MAX_DATAGRAM,
    OscAddressSpace,
    Request,
    build_bundle,
    build_message,
    parse_packet_timed,
    telemetry_messages,
    timetag_to_unix,
)

log = logging.getLogger(__name__)

#: Latest a bundle's time tag may lie in the future (s); later ones are refused.
MAX_AHEAD_S = 60.0
#: Messages waiting for their time tag at once; more are refused (busy).
MAX_SCHEDULED = 1024
#: Hosts whose ``/reply_port`` is remembered.
MAX_REPLY_PORTS = 256
#: Lowest UDP port telemetry is sent to (below: the system's services, which a spoofed
#: ``/subscribe`` would otherwise have the agent flood).
MIN_SUBSCRIBER_PORT = 1024
#: Subscriptions one host may hold at once (its ports): the hub, a controller or two.
MAX_SUBSCRIBERS_PER_HOST = 4
#: Linux's IP_RECVERR (not exported by the socket module): queue send errors with the
#: destination they were for.
IP_RECVERR = 11

Reply = Callable[[bytes], None]
Peer = tuple[str, int]


class ReplyBudget:
    """Token bucket per peer host for replies (``rate`` per s, bursts of ``burst``).

    A reply is bigger than the datagram that asked for it (an ``/error`` line, a
    ``/state`` bundle), so without a budget an agent could be used to reflect
    and amplify traffic towards a spoofed source. At most ``max_hosts`` hosts
    are tracked; past that the least recently seen one is forgotten.
    """

    def __init__(self, rate: float = 200.0, burst: float = 1000.0, max_hosts: int = 256) -> None:
        self.rate, self.burst, self.max_hosts = float(rate), float(burst), int(max_hosts)
        self._buckets: dict[str, tuple[float, float]] = {}   # host -> (tokens, time s)

    def allow(self, host: str, now: float) -> bool:
        """Take one token for ``host`` at time ``now`` (s); False if none is left."""
        tokens, last = self._buckets.pop(host, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= self.max_hosts:          # dicts keep insertion order:
            self._buckets.pop(next(iter(self._buckets)))  # drop the least recent host
        self._buckets[host] = (tokens, now)
        return allowed


@dataclass
class Subscriber:
    """One telemetry destination."""

    peer: Peer
    expires: float          # loop time (s) when the lease runs out
    prefix: str = ""        # put before every telemetry address
    failures: int = 0       # send errors reported for it since the last renewal


class _ServerProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: OscServer, sock: socket.socket) -> None:
        self._server = server
        self._sock = sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        transport = self.transport
        if transport is None:
            return
        peer = (str(addr[0]), int(addr[1]))
        server = self._server
        if server.allows is not None and not server.allows(peer[0]):
            server.refuse(peer[0])     # no answer: not even an /error (amplification)
            return

        def reply(message: bytes) -> None:
            if server.budget.allow(peer[0], time.monotonic()):
                transport.sendto(message, (peer[0], server.reply_ports.get(peer[0], peer[1])))
            else:
                server.count("replies_suppressed")
                server.log_problem(peer[0], "reply budget",
                                   f"more than {server.budget.rate:.0f} replies/s; "
                                   "replies held back (subscribe instead of polling)")

        server.handle_packet(data, peer, reply)

    def error_received(self, exc: Exception) -> None:
        """A send failed: read the kernel's error queue for whom each error was."""
        server = self._server
        while True:
            try:
                _, _, _, addr = self._sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:               # no error queue here (not Linux): count only
                server.count("send_errors")
                return
            server.count("send_errors")
            if addr:
                server.send_failed((str(addr[0]), int(addr[1])))


def _osc_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking UDP socket that queues its send errors (Linux)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET and sys.platform.startswith("linux"):
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class OscServer:
    """The UDP OSC control surface of one agent (see the module docstring).

    ``control`` is the agent's :class:`~anamnesis.agents.control.AgentControl` (or anything
    with its interface). ``telemetry_hz`` is the subscriber rate (Hz),
    ``lease`` the subscription lease (s), ``max_subscribers`` and
    ``max_failures`` cap the subscriber table and the failed sends tolerated
    before a subscriber is dropped; ``queue_size`` bounds pending slow commands.
    ``after_recall(name)`` is awaited after a successful ``/recall`` (the services
    re-publish the zeroconf record with it). ``replies_per_s`` and ``reply_burst``
    are the reply budget of one peer host (replies and ``/error`` beyond it are
    counted and logged once, not sent). ``allows(host)`` (an agent's
    :class:`~anamnesis.agents.net.access.HostFilter`) drops every datagram of a host it
    refuses, unanswered (``refused_hosts``).
    """

    def __init__(self, control: Any, *, space: OscAddressSpace | None = None,
                 telemetry_hz: float = 30.0, lease: float = 60.0,
                 max_subscribers: int = 32, max_failures: int = 10,
                 queue_size: int = 64, logger: logging.Logger | None = None,
                 after_recall: Callable[[str], Awaitable[None]] | None = None,
                 replies_per_s: float = 200.0, reply_burst: float = 1000.0,
                 allows: Callable[[str], bool] | None = None) -> None:
        if not 0.1 <= telemetry_hz <= 200.0:
            raise ValueError(f"telemetry_hz must be in [0.1, 200] Hz; got {telemetry_hz}")
        self.control = control
        #: ``allows(host)``: whether a host may send this server anything (None: all).
        self.allows = allows
        self.space = space or OscAddressSpace(control.specs())
        self.telemetry_period = 1.0 / telemetry_hz
        self.lease = float(lease)
        self.max_subscribers = int(max_subscribers)
        self.max_failures = int(max_failures)
        self._after_recall = after_recall
        self.budget = ReplyBudget(rate=replies_per_s, burst=reply_burst)
        self._counts: Counter[str] = Counter()
        self._log = RateLimitedLog(logger or log)
        self._subscribers: dict[Peer, Subscriber] = {}
        #: host -> the UDP port its replies go to (``/reply_port``).
        self.reply_ports: dict[str, int] = {}
        #: Messages waiting for their time tag: key -> the loop's timer (cancelled at close).
        self._waiting: dict[int, asyncio.TimerHandle] = {}
        self._waiting_keys = itertools.count()
        self._queue: asyncio.Queue[tuple[Request, Peer | None, Reply]] = asyncio.Queue(queue_size)
        self._protocol: _ServerProtocol | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.host: str | None = None
        self.port: int | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self, host: str, port: int = 0) -> int:
        """Bind the UDP socket to ``host:port`` (0 = any free port); return the port."""
        loop = asyncio.get_running_loop()
        sock = _osc_socket(host, port)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _ServerProtocol(self, sock), sock=sock)
        self._protocol = protocol
        sockname = transport.get_extra_info("sockname")
        self.host, self.port = str(sockname[0]), int(sockname[1])
        self._tasks = [
            asyncio.create_task(self._command_worker(), name="osc-commands"),
            asyncio.create_task(self._telemetry_loop(), name="osc-telemetry"),
        ]
        log.info("OSC listening on udp://%s:%d", self.host, self.port)
        return self.port

    async def close(self) -> None:
        """Stop the tasks, close every subscriber socket and the server socket."""
        await cancel_and_wait(*self._tasks)
        self._tasks = []
        for timer in self._waiting.values():     # timed bundles never due: dropped
            timer.cancel()
        self._waiting.clear()
        self._subscribers.clear()
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    # -- accounting ---------------------------------------------------------------

    def log_problem(self, host: str, kind: str, message: str) -> None:
        """Log a problem with ``host`` once per kind (then only count it)."""
        self._log(host, kind, message)

    def refuse(self, host: str) -> None:
        """A datagram from a host that may not steer this agent: counted, logged once."""
        self._counts["refused_hosts"] += 1
        self._log(host, "refused", "OSC from a host that may not steer this agent (not its "
                  "hub, loopback or --allow): dropped, not answered")

    def send_failed(self, peer: Peer) -> None:
        """The kernel reported a failed send to ``peer`` (ICMP port unreachable)."""
        subscriber = self._subscribers.get(peer)
        if subscriber is not None:
            subscriber.failures += 1

    def count(self, kind: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``kind`` (shown by :meth:`stats`)."""
        self._counts[kind] += n

    def stats(self) -> dict[str, int]:
        """Counters: datagrams, messages, malformed, unknown_address, refused_hosts
        (datagrams from hosts that may not steer it), bad_args, rejected,
        busy, internal_errors, errors_sent, replies, replies_suppressed (over the
        per-host reply budget), send_errors, subscribers, subscribers_dropped,
        telemetry_frames, scheduled (messages that waited for their time tag), log_suppressed."""
        out = {k: 0 for k in ("datagrams", "messages", "malformed", "unknown_address",
                              "refused_hosts",
                              "bad_args", "rejected", "busy", "internal_errors",
                              "errors_sent", "replies", "replies_suppressed", "send_errors",
                              "subscribers_dropped", "telemetry_frames", "scheduled")}
        out.update(self._counts)
        out["subscribers"] = len(self._subscribers)
        out["log_suppressed"] = sum(self._log.suppressed.values())
        return out

    def subscribers(self) -> list[Peer]:
        """The current telemetry destinations (host, port)."""
        return list(self._subscribers)

    # -- dispatch -----------------------------------------------------------------

    def handle_packet(self, data: bytes, peer: Peer | None, reply: Reply) -> None:
        """Handle one datagram (or WebSocket binary frame) from ``peer``; never raises.

        ``reply`` sends bytes back to the sender. ``peer`` is None for transports
        without a UDP return path (then ``/subscribe`` is refused).
        """
        self._counts["datagrams"] += 1
        host = peer[0] if peer else "websocket"
        try:
            messages = parse_packet_timed(data)
        except ProtocolError as exc:
            self._reject("malformed", host, reply, str(exc))
            return
        now = time.time()
        for timetag, address, args in messages:
            self._counts["messages"] += 1
            at = timetag_to_unix(timetag)
            if at is None or at <= now + 0.001:        # immediately, or already due
                self._dispatch(address, args, peer, host, reply)
            elif at > now + MAX_AHEAD_S:
                self._reject("rejected", host, reply, f"{address}: time tag {at - now:.0f} s "
                             f"ahead; at most {MAX_AHEAD_S:g} s")
            elif len(self._waiting) >= MAX_SCHEDULED:
                self._reject("busy", host, reply, f"{address}: {MAX_SCHEDULED} messages "
                             "already wait for their time tags; try again")
            else:
                self._counts["scheduled"] += 1
                key = next(self._waiting_keys)
                self._waiting[key] = asyncio.get_running_loop().call_later(
                    at - now, self._dispatch_later, key, address, args, peer, host, reply)

    def _dispatch_later(self, key: int, address: str, args: list[object], peer: Peer | None,
                        host: str, reply: Reply) -> None:
        del self._waiting[key]
        self._dispatch(address, args, peer, host, reply)

    def _dispatch(self, address: str, args: list[object], peer: Peer | None, host: str,
                  reply: Reply) -> None:
        try:
            request = self.space.decode(address, args)
        except ProtocolError as exc:
            kind = "unknown_address" if "unknown address" in str(exc) else "bad_args"
            self._reject(kind, host, reply, str(exc))
            return
        self._handle_request(request, peer, host, reply)

    def _handle_request(self, request: Request, peer: Peer | None, host: str,
                        reply: Reply) -> None:
        control = self.control
        try:
            action = request.action
            if action == "set":
                value = request.value
                if isinstance(value, tuple):
                    value = np.asarray(value, dtype=np.float64)
                control.set(str(request.name), value, index=request.index)
            elif action == "get":
                name = str(request.name)
                self._send(reply, self.space.value_message(name, control.values()[name],
                                                           request.address))
            elif action == "panic":
                control.panic()
            elif action == "unpanic":
                control.unpanic()
            elif action == "release":      # a panic button let go: nothing to do
                self._counts["button_releases"] += 1
            elif action == "reset":
                control.reset(request.value)
            elif action == "state":
                self._send(reply, self.space.state_bundle(control.values(),
                                                          panicked=bool(control.panicked)))
            elif action == "ping":
                self._send(reply, build_message("/pong"))
            elif action == "unsubscribe":
                self._unsubscribe(request, peer, reply)
            elif action == "reply_port":
                self._reply_port(request, peer, reply)
            else:  # slow: weights, snapshot, recall, subscribe
                if action == "subscribe" and peer is None:
                    raise ProtocolError(f"{request.address}: only over UDP")
                try:
                    self._queue.put_nowait((request, peer, reply))
                except asyncio.QueueFull:
                    self._reject("busy", host, reply,
                                 f"{request.address}: too many pending commands; try again")
        except ProtocolError as exc:
            self._reject("bad_args", host, reply, str(exc))
        except ValueError as exc:  # out of range, unknown snapshot, ...: from the control facade
            self._reject("rejected", host, reply, f"{request.address}: {exc}")
        except Exception as exc:  # a bug behind the facade: answer, count, log; never crash
            log.exception("OSC %s from %s failed", request.address, host)
            self._reject("internal_errors", host, reply,
                         f"{request.address}: internal error: {exc}")

    def _send(self, reply: Reply, data: bytes) -> None:
        if len(data) > MAX_DATAGRAM:
            data = build_message("/error", [
                f"reply of {len(data)} bytes exceeds one UDP datagram; use OSCQuery over HTTP"])
            self._counts["errors_sent"] += 1
        else:
            self._counts["replies"] += 1
        reply(data)

    def _reject(self, kind: str, host: str, reply: Reply, message: str) -> None:
        self._counts[kind] += 1
        self._counts["errors_sent"] += 1
        self._log(host, kind, message)
        try:
            reply(build_message("/error", [message[:1000]]))
        except Exception:  # reply path broken (closed transport): count it, keep serving
            self._counts["send_errors"] += 1

    # -- slow commands --------------------------------------------------------------

    async def _command_worker(self) -> None:
        while True:
            request, peer, reply = await self._queue.get()
            host = peer[0] if peer else "websocket"
            try:
                await self._slow(request, peer, reply)
            except ProtocolError as exc:
                self._reject("bad_args", host, reply, str(exc))
            except ValueError as exc:
                self._reject("rejected", host, reply, f"{request.address}: {exc}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("OSC %s from %s failed", request.address, host)
                self._reject("internal_errors", host, reply,
                             f"{request.address}: internal error: {exc}")

    async def _slow(self, request: Request, peer: Peer | None, reply: Reply) -> None:
        control = self.control
        if request.action == "get_weights":
            weights = np.asarray(await control.get_weights(), dtype=np.float64).ravel()
            self._send(reply, build_message("/weights", [float(w) for w in weights]))
        elif request.action == "set_weights":
            await control.set_weights(np.asarray(request.value, dtype=np.float64))
        elif request.action == "snapshot":
            await control.snapshot(str(request.value))
            self._send(reply, build_message("/snapshot", [str(request.value)]))
        elif request.action == "recall":
            await control.recall(str(request.value))
            self._send(reply, build_message("/recall", [str(request.value)]))
            if self._after_recall is not None:
                await self._after_recall(str(request.value))
        elif request.action == "subscribe" and peer is not None:
            await self._subscribe(request, peer, reply)

    async def _subscribe(self, request: Request, peer: Peer, reply: Reply) -> None:
        port = int(request.value) if request.value is not None else peer[1]  # type: ignore[arg-type]
        if port < MIN_SUBSCRIBER_PORT:   # a system service's port: telemetry would flood it
            raise ValueError(f"telemetry goes to ports >= {MIN_SUBSCRIBER_PORT} only; got {port}")
        target = (peer[0], port)
        prefix = request.name or ""
        loop = asyncio.get_running_loop()
        existing = self._subscribers.get(target)
        if existing is not None:
            existing.expires = loop.time() + self.lease
            existing.failures = 0
            existing.prefix = prefix
        else:
            if len(self._subscribers) >= self.max_subscribers:
                raise ValueError(
                    f"at most {self.max_subscribers} subscribers; /unsubscribe one first")
            if sum(host == peer[0] for host, _ in self._subscribers) >= MAX_SUBSCRIBERS_PER_HOST:
                raise ValueError(f"at most {MAX_SUBSCRIBERS_PER_HOST} subscriptions per host; "
                                 f"/unsubscribe one of {peer[0]}'s first")
            self._subscribers[target] = Subscriber(target, loop.time() + self.lease, prefix)
            log.info("OSC telemetry subscriber %s:%d%s (lease %.0f s)", target[0], port,
                     f" as {prefix}" if prefix else "", self.lease)
        self._send(reply, build_message("/subscribed", [port, float(self.lease)]))

    def _reply_port(self, request: Request, peer: Peer | None, reply: Reply) -> None:
        if peer is None:
            raise ProtocolError(f"{request.address}: only over UDP")
        port = int(request.value)  # type: ignore[arg-type]
        self.reply_ports.pop(peer[0], None)
        if port:
            if len(self.reply_ports) >= MAX_REPLY_PORTS:   # forget the oldest host
                self.reply_ports.pop(next(iter(self.reply_ports)))
            self.reply_ports[peer[0]] = port
        self._send(reply, build_message("/reply_port", [port]))

    def _unsubscribe(self, request: Request, peer: Peer | None, reply: Reply) -> None:
        if peer is None:
            raise ProtocolError(f"{request.address}: only over UDP")
        port = int(request.value) if request.value is not None else peer[1]  # type: ignore[arg-type]
        if self._subscribers.pop((peer[0], port), None) is None:
            raise ValueError(f"{peer[0]}:{port} is not subscribed")
        self._send(reply, build_message("/unsubscribed", [port]))

    # -- telemetry ------------------------------------------------------------------

    async def _telemetry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += self.telemetry_period
            delay = next_tick - loop.time()
            if delay < -self.telemetry_period:  # fell behind (suspended loop): resync
                next_tick = loop.time()
                delay = 0.0
            await asyncio.sleep(max(0.0, delay))
            if self._subscribers:
                self._send_telemetry(loop.time())

    def _send_telemetry(self, now: float) -> None:
        for peer, subscriber in list(self._subscribers.items()):
            if now > subscriber.expires or subscriber.failures >= self.max_failures:
                reason = "lease expired" if now > subscriber.expires else "unreachable"
                log.info("OSC telemetry subscriber %s:%d dropped (%s)", peer[0], peer[1], reason)
                del self._subscribers[peer]
                self._counts["subscribers_dropped"] += 1
        if not self._subscribers:
            return
        try:
            frame = dict(self.control.telemetry())
            # The control plane's own health, so a hub sees a misbehaving peer.
            frame["osc_malformed"] = self._counts["malformed"]
            frame["osc_errors"] = self._counts["errors_sent"]
            agent_id = str(getattr(self.control, "agent_id", "")) or None
            bundles: dict[str, bytes] = {}     # one encoding per prefix in use
            for subscriber in self._subscribers.values():
                if subscriber.prefix not in bundles:
                    bundles[subscriber.prefix] = build_bundle(telemetry_messages(
                        frame, agent_id=agent_id, prefix=subscriber.prefix))
        except Exception:  # a telemetry bug must not kill the loop: log it (rate-limited)
            self._counts["internal_errors"] += 1
            self._log("self", "telemetry", "telemetry frame could not be built")
            return
        self._counts["telemetry_frames"] += 1
        transport = self._protocol.transport if self._protocol is not None else None
        if transport is None:
            return
        for peer, subscriber in self._subscribers.items():
            transport.sendto(bundles[subscriber.prefix], peer)


__all__ = ["OscServer", "ReplyBudget", "Subscriber"]
