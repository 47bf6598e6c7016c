"""OSC for the whole installation: a UDP server that steers the hub like its REST API.

For controllers that speak OSC (TouchOSC, SuperCollider, Max, ossia score).
Addresses (replies go to the sender: ``/hub/ok s`` naming the address done, or
``/hub/error s`` saying what was wrong):

=================================  ====================================================
``/hub/ping``                      reply ``/hub/pong``
``/hub/panic``, ``/hub/unpanic``   every agent's output faded to silence / back, at
                                   once, never queued: a panic whatever it carries; an
                                   unpanic on a button's press (none, ``T``, ``I``, a
                                   number >= 1), its release (``F``, 0) counted, ignored
``/hub/scene/save s``              save a scene (every online agent's parameters, weights)
``/hub/scene/recall s``            recall a scene
``/hub/scene/interpolate s s f``   blend scenes a and b at t in [0, 1]
``/hub/route s s f``               gain (linear) of the route from -> to (added if missing)
``/hub/coupling s s f``            kappa of the weight coupling from ~> to (a 20 Hz blend
                                   added if missing)
``/hub/agent/ID/PARAM value...``   set one parameter of an agent (as ``PATCH /api/agents``)
``/hub/agent/ID/PARAM``            (no argument) reply ``/hub/agent/ID/PARAM value...``
``/hub/agents``                    reply ``/hub/agents ID...``: every agent the hub lists
=================================  ====================================================

A query is answered at once with what the hub knows (an agent's parameters as it last
reported them); everything else is queued and answered ``/hub/ok`` when done and on
disk. The installation's namespace, with types and ranges, is its OSCQuery server's
(:mod:`anamnesis.hub.api.oscquery`).

Access: OSC carries no token. The server binds 127.0.0.1 unless told otherwise
(``--osc``); binding it to a LAN address lets anyone on that LAN steer the piece,
and the hub says so in its log. Commands are served in order by one task from a
bounded queue (a flood is answered with ``/hub/error`` and counted); problems are
logged once per peer and kind (STYLE 13).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from typing import Any

from anamnesis.agents.net.ratelimit import RateLimitedLog
from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.oscmap import build_message, parse_packet, pressed
from anamnesis.hub.api.access import report_bug
from anamnesis.hub.core.commands import run_command
from anamnesis.hub.core.errors import HubError
from anamnesis.hub.core.events import NOT_STORED
from anamnesis.hub.core.store import StoreError

log = logging.getLogger(__name__)

#: Commands waiting to be served before new ones are refused.
QUEUE = 64

Peer = tuple[str, int]

#: OSC address -> (hub command, OSC type tags, the command's fields in argument order).
ADDRESSES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "/hub/panic": ("panic", "I", ()),
    "/hub/unpanic": ("unpanic", "I", ()),
    "/hub/scene/save": ("save_scene", "s", ("name",)),
    "/hub/scene/recall": ("recall_scene", "s", ("name",)),
    "/hub/scene/interpolate": ("interpolate", "ssf", ("a", "b", "t")),
    "/hub/route": ("route_gain", "ssf", ("from", "to", "gain")),
    "/hub/coupling": ("coupling_kappa", "ssf", ("from", "to", "kappa")),
}


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, server: HubOscServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.server._datagram(data, (str(addr[0]), int(addr[1])))


class HubOscServer:
    """The installation's OSC server in front of a :class:`anamnesis.hub.core.hub.Hub`."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.counts: Counter[str] = Counter()
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[tuple[str, list[object], Peer]] = asyncio.Queue(QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log, prefix="hub OSC API")

    async def start(self, host: str, port: int = 0) -> int:
        """Bind ``host:port`` (0: a free port); returns the port."""
        if not ipaddress.ip_address(host).is_loopback:
            log.warning("the installation's OSC API is open to anyone who can reach %s:%d "
                        "(OSC has no token)", host, port)
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(  # type: ignore[assignment]
            lambda: _Protocol(self), local_addr=(host, port))
        self._task = asyncio.create_task(self._serve(), name="hub-osc-api")
        return self.port

    @property
    def port(self) -> int:
        """The bound UDP port (0 before start)."""
        return 0 if self._transport is None else int(self._transport.get_extra_info("sockname")[1])

    async def close(self) -> None:
        """Stop serving and close the socket."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _reply(self, peer: Peer, address: str, *args: object) -> None:
        if self._transport is not None:
            self._transport.sendto(build_message(address, args), peer)

    def _error(self, peer: Peer, kind: str, message: str) -> None:
        self.counts[kind] += 1
        self._log(peer[0], kind, message)
        self._reply(peer, "/hub/error", message[:1000])

    def _datagram(self, data: bytes, peer: Peer) -> None:
        try:
            messages = parse_packet(data)
        except ProtocolError as exc:
            self._error(peer, "malformed", str(exc))
            return
        for address, args in messages:
            if address == "/hub/ping":
                self._reply(peer, "/hub/pong")
                continue
            if address in ("/hub/panic", "/hub/unpanic"):
                self._button(peer, address, args)
                continue
            if not args and (address == "/hub/agents" or _is_agent_param(address)):
                self._query(peer, address)      # a read: answered at once, not queued
                continue
            try:
                self._queue.put_nowait((address, [a for a in args if a is not None], peer))
            except asyncio.QueueFull:
                self._error(peer, "busy", f"{address}: too many commands waiting; try again")

    def _button(self, peer: Peer, address: str, args: list[object]) -> None:
        """A panic button: the hub's panic at once (silence within the agents' 50 ms,
        whatever is queued) whatever ``/hub/panic`` carries; ``/hub/unpanic`` on a press
        only (:func:`~anamnesis.agents.protocol.oscmap.pressed`), its release counted."""
        if address == "/hub/unpanic":
            try:
                press = pressed(address, args)
            except ProtocolError as exc:
                self._error(peer, "rejected", str(exc))
                return
            if not press:
                self.counts["button_releases"] += 1
                return
        self.hub.panic(address == "/hub/panic")
        self.counts["done"] += 1
        self._reply(peer, "/hub/ok", address)

    def _query(self, peer: Peer, address: str) -> None:
        """Answer ``/hub/agents`` (the ids the hub lists) or ``/hub/agent/ID/PARAM``
        without arguments (its value as the hub knows it: what the agent last reported,
        else what the hub last asked for)."""
        self.counts["queries"] += 1
        if address == "/hub/agents":
            self._reply(peer, address, *[e.agent_id for e in self.hub.registry.entries()])
            return
        _, _, _, agent_id, name = address.split("/")
        entry = self.hub.registry.get(agent_id)
        if entry is None:
            self._error(peer, "rejected", f"{address}: no agent {agent_id!r}")
            return
        known = {**self.hub.params.get(agent_id, {}), **entry.params}
        value = known.get(name)
        if value is None:          # an alias (``lr`` of Unlearn's λ): the value of its parameter
            specs = self.hub.agent_json(entry)["specs"]
            value = next((known.get(own) for own, spec in specs.items()
                          if name in spec.get("aliases", ())), None)
        if value is None:
            self._error(peer, "rejected", f"{address}: agent {agent_id} has reported no "
                                          f"parameter {name!r}")
            return
        self._reply(peer, address, *(value if isinstance(value, list) else [value]))

    async def _serve(self) -> None:
        while True:
            address, args, peer = await self._queue.get()
            try:
                errors = self.hub.counts["store_errors"]
                await self._command(address, args)
                if not await self.hub.event_log.on_disk(errors):   # acknowledged: on disk
                    raise HubError(NOT_STORED)
                self.counts["done"] += 1
                self._reply(peer, "/hub/ok", address)
            except (HubError, TimeoutError, ProtocolError) as exc:
                self._error(peer, "rejected", f"{address}: {exc}")
            except StoreError as exc:
                self._error(peer, "rejected", f"{address}: "
                            f"{self.hub.event_log.store_refused(exc)}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not stop the server: answer, count, log
                report_bug(f"OSC {address}", exc)   # its traceback once a kind
                self._error(peer, "internal_errors", f"{address}: internal error: {exc}")

    async def _command(self, address: str, args: list[object]) -> None:
        """Run the command of ``address`` (:data:`ADDRESSES`; ``/hub/agent/ID/PARAM``
        sets one parameter) through the hub's command table."""
        def want(types: str) -> list[object]:
            ok = len(args) == len(types) and all(
                isinstance(a, str) if t == "s" else
                (isinstance(a, (int, float)) and not isinstance(a, bool))
                for a, t in zip(args, types, strict=False))
            if not ok:
                raise ProtocolError(f"expected arguments {types or 'none'}; got {len(args)} "
                                    "argument(s) of other types")
            return args

        if address in ADDRESSES:
            command, types, fields = ADDRESSES[address]
            values = want(types)
            await run_command(self.hub, command, {
                f: float(v) if t == "f" else v  # type: ignore[arg-type]
                for f, t, v in zip(fields, types, values, strict=True)})
        elif _is_agent_param(address):
            _, _, _, agent_id, name = address.split("/")
            if not args:
                raise ProtocolError("give the value")
            value: object = args[0] if len(args) == 1 else list(args)
            await run_command(self.hub, "set_params", {"agent": agent_id, "params": {name: value}})
        else:
            raise ProtocolError("unknown address; see /hub/ping, /hub/panic, /hub/unpanic, "
                                "/hub/scene/{save,recall,interpolate}, /hub/route, "
                                "/hub/agent/ID/PARAM")


def _is_agent_param(address: str) -> bool:
    return address.startswith("/hub/agent/") and address.count("/") == 4


__all__ = ["HubOscServer"]
