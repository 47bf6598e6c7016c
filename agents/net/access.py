"""Who may steer an agent and take its streams: the hub, loopback, and ``--allow`` networks.

An agent in a public room sits on a network visitors share. OSC from any other host (a
parameter, ``/snapshot``, ``/panic``, a query) is dropped **without an answer** — an
answer to an unverified source would let a spoofed 12-byte ``/state`` draw a 200-byte
reply at a victim — counted (``refused_hosts``) and logged once per host. The same hosts
alone may write OSC over the OSCQuery WebSocket, list the streams (``GET /streams``: who
listens, from where) and take a listen-in lease; the microphone stream is offered to the
hub only, unless the agent is started with ``--offer-mic``. Reading the OSCQuery tree
(HTTP GET, ``LISTEN``) stays open: it is what a controller needs to find the agent, and
TCP cannot be spoofed.

Allowed: the hub's address (``--hub``, by default ``--interface``), loopback (127.0.0.0/8,
::1: the agent's own host) and every network of ``--allow`` (an address or CIDR
network, repeatable: ``--allow 10.0.0.0/24``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),
                                 ipaddress.ip_network("::1/128"))


def parse_networks(values: Iterable[str]) -> list[Network]:
    """``--allow`` values (addresses or CIDR networks) as networks; ``ValueError`` naming
    the first that is neither."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"--allow takes an IP address or a network such as "
                             f"10.0.0.0/24; got {value!r}") from None
    return out


class HostFilter:
    """The hosts that may steer one agent (see the module docstring)."""

    def __init__(self, hub: str, allow: Iterable[str] = (), *, offer_mic: bool = False) -> None:
        self.hub = str(ipaddress.ip_address(hub))
        self.networks = [*LOOPBACK, *parse_networks(allow)]
        self.offer_mic = bool(offer_mic)

    def allows(self, host: str) -> bool:
        """True for the hub, loopback and the ``--allow`` networks (``host`` an address;
        an IPv4-mapped IPv6 address counts as its IPv4 address)."""
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return str(address) == self.hub or any(address in net for net in self.networks)

    def may_take(self, stream: str, host: str) -> bool:
        """Whether ``host`` may lease ``stream``: an allowed host; the mic only the hub's
        (or an allowed host's with ``offer_mic``)."""
        if not self.allows(host):
            return False
        return stream != "mic" or self.offer_mic or host == self.hub or self._loopback(host)

    def _loopback(self, host: str) -> bool:
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def describe(self) -> str:
        """One line for the agent's log."""
        extra = [str(n) for n in self.networks[len(LOOPBACK):]]
        return (f"steered by the hub {self.hub}, loopback" +
                (f" and {', '.join(extra)}" if extra else "") +
                ("; the mic offered to them" if self.offer_mic else "; the mic offered to the hub"))


__all__ = ["HostFilter", "LOOPBACK", "parse_networks"]
