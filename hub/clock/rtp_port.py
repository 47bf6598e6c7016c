"""One UDP port for the RTP of every agent the deployed router plays.

The router receives each agent's ``out`` stream and sends each its ``in`` stream: with a
socket per agent and asyncio's datagram transports, every packet is one callback of the
event loop (~5 µs of Python around the ~10 µs of RTP work), and at 64 agents × 187.5
packets/s each way that overhead alone was a tenth of a core. :class:`SharedRtpPort` is
one non-blocking socket on the hub's interface: its reader drains every datagram queued
(up to :data:`DRAIN_MAX` per wake-up) and hands each to the receiver registered for its
source address — an agent's copies come from its RTP socket, ``(host, rtp_port)``, so
the address names the stream — and it sends the ``in`` packets straight from the
socket. A datagram from an address nobody registered is counted (``foreign``) and
dropped; one longer than :data:`MAX_DATAGRAM` is counted (``oversized``); a send the
kernel refuses (a full buffer, an unreachable host) is counted (``send_errors``), never
raised into the block clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from anamnesis.agents.net.rtp_session import RCVBUF

#: Datagrams read per wake-up at most (the loop's other work must not wait for a flood).
DRAIN_MAX = 256
#: Largest datagram read (bytes): a receiver's own limit (2,048 L24 frames and the most a
#: header may carry) is below it.
MAX_DATAGRAM = 8192

Peer = tuple[str, int]


class SharedRtpPort:
    """The router's RTP socket (see the module docstring). ``interface`` is the hub's
    address; :meth:`open` binds a free port there."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.port = 0
        self._sock: socket.socket | None = None
        self._receivers: dict[Peer, Any] = {}     # anamnesis.agents.net.rtp_session.RtpReceiver
        self._buffer = bytearray(MAX_DATAGRAM)
        self._view = memoryview(self._buffer)
        self.datagrams = 0
        self.foreign = 0
        self.oversized = 0
        self.send_errors = 0

    def open(self) -> int:
        """Bind the socket and start reading (on the running loop); the port."""
        if self._sock is not None:
            return self.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):    # the kernel's default then; bursts may be lost
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF * 4)
        try:
            sock.bind((self.interface, 0))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._drain)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        return self.port

    def add(self, peer: Peer, receiver: Any) -> None:
        """Hand the datagrams from ``peer`` (an agent's ``(host, rtp_port)``) to ``receiver``."""
        self._receivers[peer] = receiver

    def remove(self, peer: Peer, receiver: Any = None) -> None:
        """Forget ``peer``'s receiver (its datagrams are foreign from now on); with
        ``receiver``, only if it is still that one (an agent that moved and came back at
        the same address may have registered a new one meanwhile)."""
        if receiver is None or self._receivers.get(peer) is receiver:
            self._receivers.pop(peer, None)

    def sendto(self, packet: Any, peer: Peer) -> None:
        """Send ``packet`` (bytes-like) to ``peer``; a refusal is counted, never raised."""
        if self._sock is None:
            raise RuntimeError("SharedRtpPort.open() first")
        try:
            self._sock.sendto(packet, peer)
        except OSError:
            self.send_errors += 1

    def _drain(self) -> None:
        sock, view, receivers = self._sock, self._view, self._receivers
        if sock is None:
            return
        for _ in range(DRAIN_MAX):
            try:
                n, peer = sock.recvfrom_into(self._buffer, MAX_DATAGRAM, socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:               # e.g. an ICMP error queued on the socket
                continue
            self.datagrams += 1
            receiver = receivers.get(peer)
            if receiver is None:
                self.foreign += 1
            elif n > MAX_DATAGRAM:
                self.oversized += 1
            else:
                receiver.datagram_received(bytes(view[:n]), peer)

    def stats(self) -> dict[str, int]:
        """The port, datagrams read, foreign, oversized, refused sends, streams."""
        return {"port": self.port, "datagrams": self.datagrams, "foreign": self.foreign,
                "oversized": self.oversized, "send_errors": self.send_errors,
                "streams": len(self._receivers)}

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._sock is not None:
            with contextlib.suppress(RuntimeError):      # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None


__all__ = ["DRAIN_MAX", "MAX_DATAGRAM", "SharedRtpPort"]
