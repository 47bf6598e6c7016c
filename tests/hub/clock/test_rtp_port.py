"""The deployed router's one RTP socket, on real UDP sockets on 127.0.0.1: every agent's
``out`` packets reach that agent's own receiver (told apart by source address), a
stranger's and an oversized datagram are counted and dropped, a flood is drained in
bounded bites, and ``in`` packets go out from the port itself."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
from support.waiting import wait_for

from anamnesis.agents.dsp.jitter import JitterBuffer
from anamnesis.agents.net.rtp_session import RtpReceiver, RtpSender
from anamnesis.agents.protocol.pcm import encode
from anamnesis.hub.clock.rtp_port import DRAIN_MAX, MAX_DATAGRAM, SharedRtpPort

LOOPBACK = "127.0.0.1"
BLOCK = 256


def agent_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    return sock


async def test_packets_reach_their_agents_receiver_and_strangers_are_counted():
    port = SharedRtpPort(LOOPBACK)
    port.open()
    agents = [agent_socket() for _ in range(3)]
    stranger = agent_socket()
    receivers = []
    for sock in agents[:2]:        # the third agent is not registered: a stranger too
        receiver = RtpReceiver(JitterBuffer(block=BLOCK), peer_host=LOOPBACK,
                               peer_port=sock.getsockname()[1])
        port.add(sock.getsockname(), receiver)
        receivers.append(receiver)
    try:
        senders = [RtpSender() for _ in agents]
        payload = encode(np.full(BLOCK, 0.25), "L24")
        for k in range(50):
            for sock, sender in zip(agents, senders):
                sock.sendto(sender.packet(payload, k * BLOCK), ("127.0.0.1", port.port))
        stranger.sendto(RtpSender().packet(payload, 0), (LOOPBACK, port.port))
        agents[0].sendto(bytes(MAX_DATAGRAM + 1), (LOOPBACK, port.port))
        await wait_for(lambda: port.datagrams == 3 * 50 + 2, 5, what="every datagram read")
        assert [r.received for r in receivers] == [50, 50]
        assert port.foreign == 50 + 1          # the unregistered agent's and the stranger's
        assert port.oversized == 1
        assert port.stats()["streams"] == 2

        port.remove(agents[1].getsockname())   # gone: its packets are foreign now
        agents[1].sendto(senders[1].packet(payload, 50 * BLOCK), (LOOPBACK, port.port))
        await wait_for(lambda: port.foreign == 52, 5, what="the removed agent's packet")
        assert receivers[1].received == 50

        # in packets leave from the port itself (an agent's --hub address and this port)
        port.sendto(b"\x80\x61" + bytes(10), agents[0].getsockname())
        loop = asyncio.get_running_loop()
        data, source = await asyncio.wait_for(loop.sock_recvfrom(agents[0], 64), 5)
        assert source == (LOOPBACK, port.port) and len(data) == 12
        port.sendto(b"x", ("127.0.0.1", 0))     # port 0: the kernel refuses; counted
        assert port.send_errors == 1
    finally:
        for sock in (*agents, stranger):
            sock.close()
        port.close()


async def test_a_flood_is_drained_in_bites_of_at_most_drain_max():
    """3 × DRAIN_MAX datagrams queued while the loop is busy are read in several wake-ups
    (the loop's other work runs between them), none lost (the receive buffer holds them)."""
    port = SharedRtpPort(LOOPBACK)
    port.open()
    sock = agent_socket()
    wakeups = 0
    drain = port._drain

    def counted() -> None:
        nonlocal wakeups
        wakeups += 1
        drain()

    loop = asyncio.get_running_loop()
    loop.remove_reader(port._sock.fileno())
    loop.add_reader(port._sock.fileno(), counted)
    try:
        for _ in range(3 * DRAIN_MAX):          # sent without yielding: all queued at once
            sock.sendto(bytes(64), (LOOPBACK, port.port))
        await wait_for(lambda: port.datagrams == 3 * DRAIN_MAX, 5, what="the flood read")
        assert wakeups >= 3
        assert port.foreign == 3 * DRAIN_MAX
    finally:
        sock.close()
        port.close()
