"""The hub's telemetry receiver on real UDP sockets: an agent (here a plain socket that
takes the ``/subscribe``) sends frames; the newest is parsed when taken, and only then;
datagrams that are not OSC are counted on arrival, malformed OSC when taken."""

from __future__ import annotations

import asyncio
import socket

from support.waiting import wait_for

from anamnesis.agents.protocol.oscmap import (
    build_bundle,
    build_message,
    parse_packet,
    telemetry_messages,
)
from anamnesis.hub.fleet.osc import HubOsc
from anamnesis.hub.fleet.telemetry import AgentTelemetry

LOOPBACK = "127.0.0.1"


async def test_frames_are_parsed_when_taken_and_bad_ones_counted():
    osc = HubOsc()
    await osc.start(LOOPBACK)
    telemetry = AgentTelemetry(osc, LOOPBACK)
    agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    agent.bind((LOOPBACK, 0))
    agent.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await telemetry.subscribe("a1", agent.getsockname())
        data, _ = await asyncio.wait_for(loop.sock_recvfrom(agent, 2048), 5)
        [(address, [port])] = parse_packet(data)
        assert address == "/subscribe"
        target = (LOOPBACK, port)

        def frame(rms: float) -> bytes:
            return build_bundle(telemetry_messages({"rms": rms, "peak": 0.5, "xruns": 2},
                                                   agent_id="a1"))

        for rms in (0.125, 0.25, 0.375):      # exact in float32
            agent.sendto(frame(rms), target)
        agent.sendto(b"not osc at all!!", target)                    # counted on arrival
        await wait_for(lambda: telemetry.counts["frames"] == 3
                       and telemetry.counts["malformed"] == 1, 5, what="three frames")
        assert telemetry.take() == {"a1": {"rms": 0.375, "peak": 0.5, "xruns": 2.0}}
        assert telemetry.take() == {}                                 # nothing new since
        agent.sendto(build_message("/level", [0.25])[:-4], target)   # cut off: OSC-shaped
        await wait_for(lambda: telemetry.counts["frames"] == 4, 5, what="the cut-off frame")
        assert telemetry.counts["malformed"] == 1                     # not parsed yet
        assert telemetry.take() == {}
        assert telemetry.counts["malformed"] == 2
    finally:
        agent.close()
        await telemetry.close()
        osc.close()
