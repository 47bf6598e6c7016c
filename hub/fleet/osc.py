"""The hub's OSC socket: one UDP endpoint from which the hub talks to every agent.

Agents reply to the sender's address (agents/osc.py), so one socket bound to the
hub's interface carries pings, parameter changes, state queries and weights for
the whole installation. Incoming datagrams are routed by the sender's
``(host, port)``: ``/pong`` goes to :attr:`HubOsc.on_pong`, everything else to
whoever is waiting for a reply from that peer (:meth:`HubOsc.collect`).

Datagrams from peers nobody waits for are counted and dropped (an agent's late
reply, or a stranger); malformed ones are counted and logged once per host
(STYLE 13). Nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscmap import build_message, parse_packet

log = logging.getLogger(__name__)

Peer = tuple[str, int]
Messages = list[tuple[str, list[object]]]
#: A waiter returns True when it has what it waited for (it is then removed).
Waiter = Callable[[Messages], bool]
#: Most peers with pending waiters at once (a bound on a peer-keyed table).
MAX_WAITING_PEERS = 1024


class TooBusy(RuntimeError):
    """:meth:`HubOsc.collect` refused: too many agents have requests in flight."""


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: HubOsc) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable: the agent is gone
        self.owner.counts["send_errors"] += 1


class HubOsc:
    """The hub's OSC client socket (see the module docstring).

    ``on_pong(peer)`` is called on the loop for every ``/pong``.
    """

    def __init__(self, on_pong: Callable[[Peer], None] | None = None) -> None:
        self.on_pong = on_pong
        self.counts: Counter[str] = Counter()
        self._transport: asyncio.DatagramTransport | None = None
        self._waiters: dict[Peer, list[Waiter]] = {}
        self._log = RateLimitedLog(log, prefix="hub OSC")

    async def start(self, host: str) -> int:
        """Bind to ``host`` (an interface address) on a free port; returns the port."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(host, 0))
        self._transport = transport  # type: ignore[assignment]
        return self.port

    @property
    def port(self) -> int:
        """The local UDP port (0 before :meth:`start`)."""
        if self._transport is None:
            return 0
        return int(self._transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        """Close the socket; pending waiters time out."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def send(self, peer: Peer, address: str, *args: object) -> None:
        """Send one message to ``peer`` (dropped, and counted, when closed)."""
        self.send_raw(peer, build_message(address, args))

    def send_raw(self, peer: Peer, data: bytes) -> None:
        """Send an encoded datagram to ``peer``."""
        if self._transport is None:
            self.counts["send_dropped"] += 1
            return
        self._transport.sendto(data, peer)
        self.counts["sent"] += 1

    def _received(self, data: bytes, peer: Peer) -> None:
        self.counts["received"] += 1
        try:
            messages = parse_packet(data)
        except ProtocolError as exc:
            self.counts["malformed"] += 1
            self._log(peer[0], "malformed", str(exc))
            return
        if any(address == "/pong" for address, _ in messages):
            if self.on_pong is not None:
                self.on_pong(peer)
            messages = [m for m in messages if m[0] != "/pong"]
            if not messages:
                return
        waiters = self._waiters.get(peer)
        if not waiters:
            self.counts["unexpected"] += 1
            return
        for waiter in list(waiters):
            if waiter(messages):
                waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(peer, None)

    async def collect(self, peer: Peer, outgoing: Iterable[bytes], done: Callable[[Messages], bool],
                      timeout: float) -> Messages:
        """Send ``outgoing`` to ``peer`` and gather its replies until ``done(all so far)``.

        Returns every message received from ``peer`` meanwhile (``/pong`` excluded).
        Raises ``TimeoutError`` after ``timeout`` s without completion.
        """
        if peer not in self._waiters and len(self._waiters) >= MAX_WAITING_PEERS:
            raise TooBusy(f"too many agents with requests in flight (at most "
                          f"{MAX_WAITING_PEERS}); try again")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Messages] = loop.create_future()
        gathered: Messages = []

        def waiter(messages: Messages) -> bool:
            if future.done():
                return True
            gathered.extend(messages)
            if done(gathered):
                future.set_result(gathered)
                return True
            return False

        self._waiters.setdefault(peer, []).append(waiter)
        try:
            for data in outgoing:
                self.send_raw(peer, data)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"no reply from {peer[0]}:{peer[1]} within {timeout:g} s") from None
        finally:
            waiters = self._waiters.get(peer)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(peer, None)


__all__ = ["TooBusy", "HubOsc", "Messages", "Peer"]
