"""The deployed router's one RTP socket, on real UDP sockets on 127.0.0.1: every agent's
``out`` packets reach that agent's own receiver (told apart by source address), a
stranger's and an oversized datagram are counted and dropped, a flood is drained in
bounded bites, and ``in`` packets go out from the port itself."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
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
        for k in range(20):          # 62 datagrams: any receive buffer holds them
            for sock, sender in zip(agents, senders, strict=True):
                sock.sendto(sender.packet(payload, k * BLOCK), ("127.0.0.1", port.port))
        stranger.sendto(RtpSender().packet(payload, 0), (LOOPBACK, port.port))
        agents[0].sendto(bytes(MAX_DATAGRAM + 1), (LOOPBACK, port.port))
        await wait_for(lambda: port.datagrams == 3 * 20 + 2, 5, what="every datagram read")
        assert [r.received for r in receivers] == [20, 20]
        assert port.foreign == 20 + 1          # the unregistered agent's and the stranger's
        assert port.oversized == 1
        assert port.stats()["streams"] == 2

        port.remove(agents[1].getsockname())   # gone: its packets are foreign now
        agents[1].sendto(senders[1].packet(payload, 20 * BLOCK), (LOOPBACK, port.port))
        await wait_for(lambda: port.foreign == 22, 5, what="the removed agent's packet")
        assert receivers[1].received == 20

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
    """A flood queued while the loop is busy (as many datagrams as the socket's receive
    buffer surely holds, up to 3 × DRAIN_MAX) is read in several wake-ups, so the loop's
    other work runs between them, and none is lost."""
    port = SharedRtpPort(LOOPBACK)
    port.open()
    # a 64-byte datagram takes well under 2 KiB of the buffer (its kernel bookkeeping)
    flood = min(3 * DRAIN_MAX, port._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2048)
    if flood <= DRAIN_MAX:
        port.close()
        pytest.skip(f"the receive buffer holds only {flood} datagrams surely "
                    "(net.core.rmem_max is small)")
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
        for _ in range(flood):                  # sent without yielding: all queued at once
            sock.sendto(bytes(64), (LOOPBACK, port.port))
        await wait_for(lambda: port.datagrams == flood, 5, what="the flood read")
        assert wakeups >= -(-flood // DRAIN_MAX)
        assert port.foreign == flood
    finally:
        sock.close()
        port.close()


def test_removing_a_replaced_receiver_keeps_the_new_one():
    """An agent that moved and came back at the same RTP address: the old stream's close
    (a task that may finish late) must not unregister the new stream."""
    port = SharedRtpPort(LOOPBACK)
    old, new = (RtpReceiver(JitterBuffer(block=BLOCK), peer_host=LOOPBACK) for _ in range(2))
    peer = (LOOPBACK, 40000)
    port.add(peer, old)
    port.add(peer, new)
    port.remove(peer, old)
    assert port.stats()["streams"] == 1
    port.remove(peer, new)
    assert port.stats()["streams"] == 0


def test_a_header_written_in_place_is_the_header():
    """The router's in packets: ``header_into`` writes what ``header`` returns (the marker
    on the first packet only, sequence and timestamp wrapping alike)."""
    a, b = (RtpSender(ssrc=0x1234, sequence=0xFFFE, ts_offset=2**32 - 300) for _ in range(2))
    buffer = np.zeros(16, dtype=np.uint8)
    for k in range(4):
        assert b.header_into(buffer, k * BLOCK) == 12
        assert bytes(buffer[:12]) == a.header(k * BLOCK)
    assert a.sequence == b.sequence == 2 and a.packets == b.packets == 4
