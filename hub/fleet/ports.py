"""The ports of the agents a hub starts, kept across restarts.

An ossia score, a Chataigne device or a Max patch addresses an agent by host and
port; an agent that picks new random ports at every start breaks them after the
first restart of the hub. So the hub gives each local agent its OSC (UDP), OSCQuery
(TCP) and RTP (UDP) ports, remembers them in its store, and gives the same ones
again next time — unless one of them is taken meanwhile, when the agent gets three
new ones (and the change is said in the log). One taken in the instant between the
hub's check and the agent's bind gives way too (``--prefer-ports``): the agent takes a
free one, and the hub remembers what the agent announces. An agent restarted on the
same ports is seen to go (its supervisor tells the registry) and to come back, so the
hub gives it its parameters and telemetry subscription again.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

#: (osc, http, rtp) ports of one agent.
Ports = tuple[int, int, int]
_KINDS = (socket.SOCK_DGRAM, socket.SOCK_STREAM, socket.SOCK_DGRAM)


def is_free(host: str, port: int, kind: int) -> bool:
    """True if ``port`` can be bound on ``host`` now (``kind`` SOCK_DGRAM or SOCK_STREAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as aiohttp binds
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _new_ports(host: str, taken: set[int]) -> Ports:
    """Three ports the system picks as free on ``host`` (none of ``taken``)."""
    out = []
    for kind in _KINDS:
        for _ in range(32):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((host, 0))
                port = int(s.getsockname()[1])
            if port not in taken and port not in out:
                break
        out.append(port)
    return out[0], out[1], out[2]


def choose_ports(host: str, agent_ids: Iterable[str], remembered: Mapping[str, Ports]
                 ) -> tuple[dict[str, Ports], dict[str, Ports]]:
    """The ports each agent gets on ``host``: its ``remembered`` ones when all three are
    free, else three new ones; and the new or changed ones (to remember)."""
    chosen: dict[str, Ports] = {}
    changed: dict[str, Ports] = {}
    taken: set[int] = set()
    for agent_id in agent_ids:
        ports = remembered.get(agent_id)
        usable = ports is not None and not taken & set(ports) and all(
            is_free(host, p, k) for p, k in zip(ports, _KINDS, strict=True))
        if not usable:
            new = _new_ports(host, taken)
            if ports is not None:
                log.warning("agent %s: its ports %s are taken on %s; it gets %s (update any "
                            "controller addressing it)", agent_id, "/".join(map(str, ports)),
                            host, "/".join(map(str, new)))
            ports = changed[agent_id] = new
        chosen[agent_id] = ports
        taken.update(ports)
    return chosen, changed


def port_args(ports: Ports) -> list[str]:
    """The agent options that give it ``ports`` — as wishes (``--prefer-ports``): a port
    another program took between the hub's check and the agent's start is replaced by a
    free one, never a restart loop; the hub then remembers the ports the agent announced."""
    osc, http, rtp = ports
    return ["--osc-port", str(osc), "--http-port", str(http), "--rtp-port", str(rtp),
            "--prefer-ports"]


__all__ = ["Ports", "choose_ports", "is_free", "port_args"]
