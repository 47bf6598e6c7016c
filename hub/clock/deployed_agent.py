"""The hub's RTP side of one agent in the deployed mode (agents on their own sound cards).

DESIGN "Clocking", deployed: every agent runs on its own sound-card clock; the
hub routes the electrical rings between them with jitter buffers. For each
agent the hub

* holds listen-in leases on the agent's ``out`` and ``mic`` streams (``GET
  /streams/NAME.sdp?port=P`` on the agent's HTTP port, renewed every
  :data:`RENEW_S`), received into drift-absorbing, adaptive jitter buffers that
  the hub's own clock reads block by block (:meth:`DeployedAgent.read`): the
  two sound cards' clocks differ by some ppm, and counted slips with a
  crossfade absorb it;
* sends the agent its ``in`` block (:meth:`DeployedAgent.send_in`) to the
  agent's RTP port, from the hub's address (the agent's ``--hub``), where the
  agent's own jitter buffer absorbs the drift the other way.

Everything runs on the event loop except :meth:`DeployedAgent.read`, which is
safe from the hub's clock thread (allocation-free; the buffers' kernels hold
the GIL).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import numpy as np

from anamnesis.agents.dsp.jitter import JitterBuffer
from anamnesis.agents.net.link import LEASE_S, warm_up
from anamnesis.agents.net.rtp_session import RtpReceiver, RtpSender, open_udp
from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.errors import ProtocolError
from anamnesis.agents.protocol.pcm import SAMPLE_BYTES, encode_into
from anamnesis.agents.protocol.rtp import DEFAULT_PAYLOAD_TYPE, HEADER_SIZE
from anamnesis.agents.protocol.sdp import parse_sdp
from anamnesis.hub.clock.rtp_port import SharedRtpPort

log = logging.getLogger(__name__)

#: Seconds between lease renewals (a third of the lease, so two may fail).
RENEW_S = LEASE_S / 3


class DeployedAgent:
    """RTP plumbing between the hub and one agent at ``host`` (HTTP ``http_port``,
    RTP ``rtp_port``). ``interface`` is the hub's address (the agent's ``--hub``);
    ``streams`` the agent streams to receive (``out``, ``mic``, also ``in`` to
    monitor what the agent got); ``target_ms`` the initial jitter-buffer depth. With
    ``rtp`` (the router's :class:`~anamnesis.hub.clock.rtp_port.SharedRtpPort`, open) the
    one stream is received, and ``in`` sent, on that port instead of sockets of its own.
    """

    def __init__(self, *, host: str, http_port: int, rtp_port: int, block: int = 256,
                 sample_rate: int = 48000, interface: str = "127.0.0.1",
                 streams: tuple[str, ...] = ("out", "mic"), target_ms: float = 40.0,
                 encoding: str = "L24", payload_type: int = DEFAULT_PAYLOAD_TYPE,
                 rtp: SharedRtpPort | None = None) -> None:
        if rtp is not None and len(streams) != 1:
            raise ValueError("a shared RTP port tells streams apart by their source "
                             f"address: one stream per agent; got {', '.join(streams)}")
        self.rtp = rtp
        self.host = host
        self.http_port = http_port
        self.rtp_port = rtp_port
        self.block = block
        self.sample_rate = sample_rate
        self.interface = interface
        self.encoding = encoding
        self.payload_type = payload_type
        self.streams = streams
        self.buffers = {name: JitterBuffer(sample_rate=sample_rate, block=block,
                                           target_ms=target_ms, adaptive=True, absorb_drift=True)
                        for name in streams}
        # lease copies come from the agent's RTP socket: that is the only peer accepted
        self.receivers = {name: RtpReceiver(self.buffers[name], peer_host=host,
                                            peer_port=rtp_port, payload_type=payload_type,
                                            encoding=encoding, name=f"{host}:{rtp_port} {name}")
                          for name in streams}
        self.ports: dict[str, int] = {}
        self._transports: dict[str, asyncio.DatagramTransport] = {}
        self._sender = RtpSender(payload_type=payload_type)
        # one packet: the header, then the payload encoded in place
        self._packet = np.zeros(HEADER_SIZE + block * SAMPLE_BYTES[encoding] + 16, dtype=np.uint8)
        self._payload = self._packet[HEADER_SIZE:]
        self._clock = 0
        self._session: aiohttp.ClientSession | None = None
        self._renewer: asyncio.Task | None = None
        self.lease_failures = 0
        self.sent = 0

    async def open(self) -> None:
        """Bind one UDP port per received stream, take the leases, start renewing them.
        Raises ``OSError`` / ``aiohttp.ClientError`` / :class:`ProtocolError` if the
        agent cannot be reached or describes a stream we cannot play."""
        warm_up()
        for name, receiver in self.receivers.items():
            if self.rtp is not None:
                self.ports[name] = self.rtp.port
                self.rtp.add((self.host, self.rtp_port), receiver)
                continue
            transport, _ = await open_udp(lambda r=receiver: r, self.interface)
            self._transports[name] = transport
            self.ports[name] = int(transport.get_extra_info("sockname")[1])
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        await self._lease_all()
        self._renewer = asyncio.create_task(self._renew_loop(), name=f"leases {self.host}")

    async def _lease_all(self) -> None:
        assert self._session is not None
        for name in self.streams:
            url = f"http://{self.host}:{self.http_port}/streams/{name}.sdp"
            async with self._session.get(url, params={"port": str(self.ports[name])}) as r:
                text = await r.text()
                if r.status != 200:
                    raise ProtocolError(f"agent {self.host} refused the {name} stream: "
                                        f"{r.status} {text.strip()[:200]}")
            desc = parse_sdp(text)
            if (desc.encoding, desc.sample_rate, desc.channels, desc.payload_type) != \
                    (self.encoding, self.sample_rate, 1, self.payload_type):
                raise ProtocolError(f"agent {self.host} {name}: {desc.encoding}/"
                                    f"{desc.sample_rate}/{desc.channels} PT {desc.payload_type}, "
                                    f"expected {self.encoding}/{self.sample_rate}/1 PT "
                                    f"{self.payload_type}")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                await self._lease_all()
            except (OSError, aiohttp.ClientError, ProtocolError, TimeoutError) as exc:
                self.lease_failures += 1
                log.warning("cannot renew the listen-in leases of agent %s (%d in a row): %s",
                            self.host, self.lease_failures, exc)

    async def close(self) -> None:
        """Stop renewing (the agent ends the copies when the leases run out) and close."""
        await cancel_and_wait(self._renewer)
        if self._session is not None:
            await self._session.close()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        if self.rtp is not None:
            for receiver in self.receivers.values():
                self.rtp.remove((self.host, self.rtp_port), receiver)

    # -- the hub's clock --------------------------------------------------------------
    def read(self, name: str, out: np.ndarray) -> None:
        """Fill ``out`` (float64) with the next block of stream ``name``; concealed
        where packets are missing. Safe from the hub's clock thread."""
        self.buffers[name].read(out)

    def send_in(self, block: np.ndarray) -> None:
        """Send the agent its next ``in`` block (float64, ≤ ``block`` frames; contiguous
        saves a copy). Loop only."""
        transport = next(iter(self._transports.values()), None)
        if transport is None and self.rtp is None:
            raise RuntimeError("DeployedAgent.open() first")
        n = block.shape[0]
        if n > self.block:
            raise ValueError(f"in block of {n} frames; at most {self.block}")
        head = self._sender.header_into(self._packet, self._clock)
        nbytes = encode_into(np.ascontiguousarray(block, dtype=np.float64), n, self._payload,
                             self.encoding)
        packet = memoryview(self._packet)[:head + nbytes]
        if self.rtp is not None:
            self.rtp.sendto(packet, (self.host, self.rtp_port))
        else:
            transport.sendto(packet, (self.host, self.rtp_port))
        self._clock += n
        self.sent += 1

    def stats(self) -> dict[str, Any]:
        """Per received stream the receiver and jitter-buffer counters; ``in`` sent."""
        out: dict[str, Any] = {name: r.stats() for name, r in self.receivers.items()}
        out["in_sent"] = self.sent
        out["lease_failures"] = self.lease_failures
        return out


__all__ = ["RENEW_S", "DeployedAgent"]
