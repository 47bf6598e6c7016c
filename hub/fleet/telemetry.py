"""Telemetry from agents to the hub: one UDP socket per online agent, latest frame kept.

An agent sends telemetry (30 Hz: ``/level rms peak``, ``/error_rms``, ``/xruns``
...; agents/osc.py) to a UDP port it was told with ``/subscribe PORT``, from a
socket of its own, so frames cannot be told apart by their source port: the hub
opens one receiving socket per agent (on its interface) and subscribes the
agent to that port from its OSC socket. The subscription is renewed every
``renew_s`` s (the agent's lease is 60 s) and dropped when the agent goes
offline. :meth:`AgentTelemetry.take` hands over the newest frame of every agent
that sent one since the last call — the API pushes those at most 30 times a
second while a dashboard is open, so a burst of frames never backs up anywhere, and
a frame is parsed only when it is taken (64 agents' frames cost ~15 % of a core to
parse, for nobody when nobody watches).

The number of sockets is bounded by the registry's cap on agents (STYLE 13);
malformed datagrams are counted and dropped (those that are not OSC at all on arrival,
the rest when taken).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscmap import parse_packet

log = logging.getLogger(__name__)

Peer = tuple[str, int]


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, owner: AgentTelemetry, agent_id: str) -> None:
        self.owner, self.agent_id = owner, agent_id

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._received(self.agent_id, data)


class AgentTelemetry:
    """Receives every online agent's telemetry (see the module docstring).

    ``osc`` is the hub's :class:`anamnesis.hub.fleet.osc.HubOsc` (subscriptions are sent from it);
    ``interface`` the address the receiving sockets bind to.
    """

    def __init__(self, osc: Any, interface: str, *, renew_s: float = 30.0) -> None:
        self.osc = osc
        self.interface = interface
        self.renew_s = float(renew_s)
        self.counts: Counter[str] = Counter()
        self._subs: dict[str, tuple[asyncio.DatagramTransport, Peer]] = {}
        self._latest: dict[str, bytes] = {}      # the newest datagram of each agent
        self._task: asyncio.Task[None] | None = None

    def _received(self, agent_id: str, data: bytes) -> None:
        """Keep the datagram; it is parsed by :meth:`take`, if anyone takes it (a hub
        that nobody watches never reads its agents' 30 Hz frames: ~80 µs each)."""
        if not data or len(data) % 4 or data[0] not in b"#/":
            self.counts["malformed"] += 1
            return
        self.counts["frames"] += 1
        self._latest[agent_id] = data

    def _frame(self, data: bytes) -> dict[str, float | list[float]] | None:
        try:
            messages = parse_packet(data)
        except ProtocolError:
            self.counts["malformed"] += 1
            return None
        frame: dict[str, float | list[float]] = {}
        for address, args in messages[:64]:
            numbers = [float(a) for a in args if isinstance(a, (int, float))]
            if not numbers:
                continue
            if address == "/level" and len(numbers) == 2:
                frame["rms"], frame["peak"] = numbers
            else:
                frame[address.lstrip("/")[:40]] = numbers[0] if len(numbers) == 1 else numbers
        return frame

    async def subscribe(self, agent_id: str, peer: Peer) -> int:
        """Open a socket for ``agent_id`` (OSC at ``peer``) and subscribe it; the local port."""
        current = self._subs.get(agent_id)
        if current is not None and current[1] == peer:
            return int(current[0].get_extra_info("sockname")[1])
        await self.unsubscribe(agent_id)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self, agent_id), local_addr=(self.interface, 0))
        port = int(transport.get_extra_info("sockname")[1])
        self._subs[agent_id] = (transport, peer)  # type: ignore[assignment]
        self.osc.send(peer, "/subscribe", port)
        if self._task is None:
            self._task = asyncio.create_task(self._renew(), name="hub-telemetry-renew")
        return port

    async def unsubscribe(self, agent_id: str) -> None:
        """Stop receiving from ``agent_id`` (tells the agent, in case it is still there)."""
        sub = self._subs.pop(agent_id, None)
        self._latest.pop(agent_id, None)
        if sub is None:
            return
        transport, peer = sub
        self.osc.send(peer, "/unsubscribe", int(transport.get_extra_info("sockname")[1]))
        transport.close()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            for transport, peer in list(self._subs.values()):
                self.osc.send(peer, "/subscribe", int(transport.get_extra_info("sockname")[1]))

    def take(self) -> dict[str, dict[str, float | list[float]]]:
        """The newest frame of each agent that sent one since the last call (parsed now;
        a malformed one is counted and left out)."""
        latest, self._latest = self._latest, {}
        frames = {agent_id: self._frame(data) for agent_id, data in latest.items()}
        return {agent_id: frame for agent_id, frame in frames.items() if frame is not None}

    async def close(self) -> None:
        """Unsubscribe everything and close the sockets."""
        await cancel_and_wait(self._task)
        self._task = None
        for agent_id in list(self._subs):
            await self.unsubscribe(agent_id)


__all__ = ["AgentTelemetry"]
