"""A fleet of lightweight fake agents for the hub's scaling benchmark: real zeroconf, OSC,
HTTP and RTP on 127.0.0.1, no models.

One process plays ``--agents`` agents. Each has what a hub in deployed mode talks to:

* a signed ``_anamnesis._udp`` record (one zeroconf instance on 127.0.0.1 for the fleet);
* an OSC socket answering ``/ping`` with ``/pong`` and ``/state`` with ``/panicked 0``,
  taking ``/subscribe PORT`` leases, and sending each subscriber a telemetry frame of
  the size a real agent sends (``/agent``, ``/level`` and 34 figures) at 30 Hz;
* an HTTP port answering ``GET /streams/out.sdp?port=P`` (a listen-in lease, as
  :mod:`anamnesis.agents.net.streams_http`) with the stream's SDP;
* an RTP socket that sends the ``out`` stream (L24, one 256-frame packet per block) to
  every leaseholder and receives the hub's ``in`` stream.

Every agent plays the same thing: block ``k`` holds the constant ``(k mod 4096 + 1) /
8192``, exact in L24. The hub's routes form a ring with gain 1, so the last sample of an
``in`` packet names the block of the previous agent it carries: the time between that
block's sending and the packet's arrival is the routing latency (the hub's jitter buffer,
its block clock and two trips through loopback; f00, which hears the ring's delayed
return, is not counted). SIGUSR1 starts the figures afresh;
SIGUSR2 writes them (JSON) to ``--report`` and ends the fleet.

    python bench/fake_agents.py --agents 64 --installation scale --key-file K \\
        --ready READY.json --report REPORT.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from aiohttp import web  # noqa: E402

from anamnesis.agents.protocol.errors import ProtocolError  # noqa: E402
from anamnesis.agents.protocol.key import load_key  # noqa: E402
from anamnesis.agents.protocol.oscmap import (  # noqa: E402
    build_bundle,
    build_message,
    parse_packet,
    telemetry_messages,
)
from anamnesis.agents.protocol.sdp import StreamDescription, build_sdp  # noqa: E402
from anamnesis.agents.protocol.txt import (  # noqa: E402
    ANAMNESIS_SERVICE,
    PROTOCOL_VERSION,
    build_txt,
    instance_name,
)

LOOPBACK = "127.0.0.1"
SAMPLE_RATE = 48000
BLOCK = 256
TELEMETRY_HZ = 30.0
LEASE_S = 60.0
#: Blocks told apart by the value they carry (4096 blocks = 21.8 s: far above any latency).
MARKS = 4096
_HEAD = struct.Struct("!BBHII")

#: A real agent's telemetry frame (AutoRegNN on a hub link), figures set to plausible values.
FRAME = {
    "rms": 0.05, "peak": 0.2, "in_rms": 0.05, "in_peak": 0.2, "error_rms": 0.01,
    "blowups": 0, "resets": 0, "lr": 0.8, "weights_norm": 3.2, "xruns": 0,
    "callback_p50_ms": 0.02, "callback_p99_ms": 0.05, "callback_max_ms": 0.1,
    "safety_nonfinite": 0, "safety_limited": 0, "safety_dc": 0, "safety_muted_blocks": 0,
    "safety_ceiling_hits": 0, "panicked": 0, "muted": 0, "rtp_in_received": 1000,
    "rtp_in_lost": 0, "rtp_in_late": 0, "rtp_in_duplicates": 0, "rtp_in_reordered": 0,
    "rtp_in_concealed": 0, "rtp_in_underruns": 0, "rtp_in_slips": 0,
    "rtp_in_jitter_ms": 0.1, "rtp_in_depth_ms": 20.0, "rtp_sent": 1000, "rtp_leases": 1,
    "osc_malformed": 0, "osc_errors": 0,
}


def mark_payload(k: int) -> bytes:
    """256 L24 samples of block ``k``'s value, ``(k mod MARKS + 1) / 8192``."""
    code = ((k % MARKS) + 1) * 1024            # the value times 2^23
    return code.to_bytes(3, "big") * BLOCK


def read_mark(payload: bytes) -> int | None:
    """The block number (mod MARKS) the last sample of an L24 payload names, or None."""
    if len(payload) < 3:
        return None
    code = int.from_bytes(payload[-3:], "big")
    if code & 0x800000 or code % 1024:
        return None
    k = code // 1024 - 1
    return k if 0 <= k < MARKS else None


class FakeAgent:
    """One agent's sockets and counters (see the module docstring)."""

    def __init__(self, fleet: Fleet, agent_id: str, ssrc: int) -> None:
        self.fleet, self.agent_id, self.ssrc = fleet, agent_id, ssrc
        self.osc: asyncio.DatagramTransport | None = None
        self.rtp: asyncio.DatagramTransport | None = None
        self.http: web.AppRunner | None = None
        self.ports = {"osc": 0, "http": 0, "rtp": 0}
        self.leases: dict[tuple[str, int], float] = {}          # RTP destination -> expiry
        self.subscribers: dict[tuple[str, int], float] = {}     # telemetry -> expiry
        self.sequence = 0
        self.received = 0
        self.counts = {"pings": 0, "states": 0, "subscribes": 0, "malformed": 0}

    # -- OSC ---------------------------------------------------------------------------
    def osc_received(self, data: bytes, peer: tuple[str, int]) -> None:
        try:
            messages = parse_packet(data)
        except ProtocolError:
            self.counts["malformed"] += 1
            return
        replies = []
        for address, args in messages:
            if address == "/ping":
                self.counts["pings"] += 1
                replies.append(build_message("/pong"))
            elif address == "/state":
                self.counts["states"] += 1
                replies.append(build_message("/panicked", [0]))
            elif address == "/subscribe" and args and isinstance(args[0], int):
                self.counts["subscribes"] += 1
                self.subscribers[(peer[0], int(args[0]))] = time.monotonic() + LEASE_S
            elif address == "/unsubscribe" and args and isinstance(args[0], int):
                self.subscribers.pop((peer[0], int(args[0])), None)
        if replies and self.osc is not None:
            self.osc.sendto(replies[0] if len(replies) == 1 else build_bundle(replies), peer)

    # -- RTP ---------------------------------------------------------------------------
    def rtp_received(self, data: bytes) -> None:
        self.received += 1
        k = read_mark(data[_HEAD.size:])
        if k is not None and self is not self.fleet.agents[0]:   # f00 hears the delayed return
            self.fleet.arrived(k)

    def send_block(self, k: int, payload: bytes, now: float) -> None:
        if not self.leases or self.rtp is None:
            return
        packet = _HEAD.pack(0x80, 97, self.sequence & 0xFFFF, (k * BLOCK) & 0xFFFFFFFF,
                            self.ssrc) + payload
        self.sequence += 1
        for target, expires in list(self.leases.items()):
            if now > expires:
                del self.leases[target]
            else:
                self.rtp.sendto(packet, target)

    # -- HTTP --------------------------------------------------------------------------
    async def sdp(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != "out":
            raise web.HTTPNotFound(text="a fake agent offers its out stream only")
        host = request.remote or LOOPBACK
        port = int(request.query["port"])
        self.leases[(host, port)] = time.monotonic() + LEASE_S
        text = build_sdp(StreamDescription(
            name=f"anamnesis agent {self.agent_id} out", address=host, port=port,
            sample_rate=SAMPLE_RATE, frames=BLOCK, origin=LOOPBACK, session_id=self.ssrc))
        return web.Response(text=text, content_type="application/sdp")


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_datagram) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr) -> None:
        self.on_datagram(data, addr)


class Fleet:
    """``n`` fake agents of installation ``installation``, signed with ``key``."""

    def __init__(self, n: int, installation: str, key: bytes) -> None:
        self.installation, self.key = installation, key
        self.agents = [FakeAgent(self, f"f{i:02d}", 0x1000 + i) for i in range(n)]
        self.sent_at = np.zeros(MARKS)
        self.latencies: list[float] = []
        self.late_ticks = 0
        self.ticks = 0
        self.since = time.monotonic()      # the figures' start (SIGUSR1 restarts them)

    def arrived(self, k: int) -> None:
        sent = self.sent_at[k]
        if sent > 0.0:
            self.latencies.append(time.monotonic() - sent)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        for agent in self.agents:
            agent.osc, _ = await loop.create_datagram_endpoint(
                lambda a=agent: _Datagrams(a.osc_received), local_addr=(LOOPBACK, 0))
            agent.rtp, _ = await loop.create_datagram_endpoint(
                lambda a=agent: _Datagrams(lambda data, _addr, a=a: a.rtp_received(data)),
                local_addr=(LOOPBACK, 0))
            app = web.Application()
            app.router.add_get(r"/streams/{name}.sdp", agent.sdp)
            agent.http = web.AppRunner(app, access_log=None)
            await agent.http.setup()
            site = web.TCPSite(agent.http, LOOPBACK, 0)
            await site.start()
            agent.ports = {"osc": agent.osc.get_extra_info("sockname")[1],
                           "http": site._server.sockets[0].getsockname()[1],
                           "rtp": agent.rtp.get_extra_info("sockname")[1]}

    async def announce(self) -> None:
        from zeroconf import ServiceInfo
        from zeroconf.asyncio import AsyncZeroconf

        self.zeroconf = AsyncZeroconf(interfaces=[LOOPBACK])
        stamp = int(time.time())
        infos = []
        for agent in self.agents:
            txt = build_txt({"id": agent.agent_id, "model": "autoregnn", "v": PROTOCOL_VERSION,
                             "osc": agent.ports["osc"], "http": agent.ports["http"],
                             "rtp": agent.ports["rtp"], "inst": self.installation,
                             "addr": LOOPBACK, "ts": stamp}, self.key)
            name = instance_name(agent.agent_id, self.installation)
            infos.append(ServiceInfo(ANAMNESIS_SERVICE, f"{name}.{ANAMNESIS_SERVICE}",
                                     port=agent.ports["osc"], properties=txt,
                                     server=f"fake-{self.installation}-{agent.agent_id}.local.",
                                     parsed_addresses=[LOOPBACK]))
        tasks = await asyncio.gather(*(self.zeroconf.async_register_service(i) for i in infos))
        await asyncio.gather(*tasks)

    async def play(self) -> None:
        """Send every agent's blocks and telemetry on a drift-free block clock."""
        loop = asyncio.get_running_loop()
        period = BLOCK / SAMPLE_RATE
        frame = build_bundle(telemetry_messages(FRAME, agent_id="fake"))
        start = loop.time()
        next_telemetry = start
        k = 0
        while True:
            now = time.monotonic()
            payload = mark_payload(k)
            self.sent_at[k % MARKS] = now
            for agent in self.agents:
                agent.send_block(k, payload, now)
            if loop.time() >= next_telemetry:
                next_telemetry += 1.0 / TELEMETRY_HZ
                for agent in self.agents:
                    for target, expires in list(agent.subscribers.items()):
                        if now < expires and agent.osc is not None:
                            agent.osc.sendto(frame, target)
            k += 1
            self.ticks = k
            delay = start + k * period - loop.time()
            if delay < -period:
                self.late_ticks += 1
            await asyncio.sleep(max(0.0, delay))

    def reset_figures(self) -> None:
        self.since = time.monotonic()
        self.latencies.clear()
        for agent in self.agents:
            agent.received = 0

    def report(self) -> dict[str, object]:
        seconds = time.monotonic() - self.since
        lat = np.array(self.latencies) * 1000.0
        return {
            "agents": len(self.agents), "ticks": self.ticks, "late_ticks": self.late_ticks,
            "in_packets_per_agent_s": (sum(a.received for a in self.agents)
                                       / len(self.agents) / seconds),
            "leased": sum(1 for a in self.agents if a.leases),
            "subscribed": sum(1 for a in self.agents if a.subscribers),
            "osc": {kind: sum(a.counts[kind] for a in self.agents)
                    for kind in ("pings", "states", "subscribes", "malformed")},
            "latency_ms": {"n": int(lat.size),
                           **({"p50": float(np.percentile(lat, 50)),
                               "p99": float(np.percentile(lat, 99)),
                               "max": float(lat.max())} if lat.size else {})},
        }

    async def close(self) -> None:
        if getattr(self, "zeroconf", None) is not None:
            await self.zeroconf.async_close()
        for agent in self.agents:
            for transport in (agent.osc, agent.rtp):
                if transport is not None:
                    transport.close()
            if agent.http is not None:
                await agent.http.cleanup()


async def main(args: argparse.Namespace) -> int:
    fleet = Fleet(args.agents, args.installation, load_key(args.key_file))
    await fleet.open()
    await fleet.announce()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, fleet.reset_figures)
    loop.add_signal_handler(signal.SIGUSR2, done.set)
    player = asyncio.create_task(fleet.play())
    Path(args.ready).write_text(json.dumps({a.agent_id: a.ports for a in fleet.agents}))
    try:
        await done.wait()
        Path(args.report).write_text(json.dumps(fleet.report()))
    finally:
        player.cancel()
        await fleet.close()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--installation", required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--ready", required=True, help="JSON file written once announced")
    parser.add_argument("--report", required=True, help="JSON file of the fleet's figures")
    sys.exit(asyncio.run(main(parser.parse_args())))
