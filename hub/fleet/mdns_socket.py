"""The hub's mDNS listening socket, held to its one interface (Linux).

python-zeroconf bound to one interface still listens on ``0.0.0.0:5353`` (to receive
the multicast group it joins there), so a hub bound to loopback took unicast mDNS sent
to its LAN address — fake announcements from any host that can reach it — and, like
every socket on Linux by default, multicast that arrived on other interfaces where
some other program had joined the group. :func:`hold_to_interface` closes both on
zeroconf's listening socket:

* ``IP_MULTICAST_ALL`` off: only multicast of the groups this socket joined, on the
  interface it joined them on (the configured one);
* a classic BPF socket filter: only datagrams addressed to the mDNS group
  224.0.0.251. Unicast to the configured address itself reaches zeroconf's socket
  bound to that address, which this leaves alone (answers to its own queries).

Elsewhere than Linux (or with a zeroconf that no longer exposes the socket) it says
once that the hub's zeroconf listens on every address, and changes nothing.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct
import sys

log = logging.getLogger(__name__)

#: Linux socket option numbers (not all in Python's socket module).
_SO_ATTACH_FILTER = 26
_IP_MULTICAST_ALL = 49
#: Classic BPF: offset of the network header for a socket filter (``SKF_NET_OFF``).
_SKF_NET_OFF = -0x100000
_MDNS_GROUP = 0xE00000FB      # 224.0.0.251


def _filter_program() -> bytes:
    """``ld [net + 16]`` (the IPv4 destination); accept if it is the mDNS group, else drop."""
    ld_w_abs, jeq_k, ret_k = 0x20, 0x15, 0x06
    instructions = [
        (ld_w_abs, 0, 0, (_SKF_NET_OFF + 16) & 0xFFFFFFFF),
        (jeq_k, 0, 1, _MDNS_GROUP),
        (ret_k, 0, 0, 0xFFFFFFFF),
        (ret_k, 0, 0, 0),
    ]
    return b"".join(struct.pack("HBBI", *i) for i in instructions)


def hold_to_interface(sock: socket.socket) -> bool:
    """Restrict zeroconf's IPv4 listening ``sock`` as the module docstring says; True if
    both restrictions hold (OSError or another OS: False, logged)."""
    if not sys.platform.startswith("linux") or sock.family != socket.AF_INET:
        log.warning("zeroconf: the mDNS socket is held to its interface on Linux over IPv4 "
                    "only: the hub takes announcements sent to any of this host's addresses")
        return False
    program = _filter_program()
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    try:
        sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        log.warning("zeroconf: cannot hold the mDNS socket to its interface (%s): the hub "
                    "takes announcements sent to any of this host's addresses", exc)
        return False
    return True


def hold_zeroconf(zc) -> bool:
    """:func:`hold_to_interface` on an (Async)Zeroconf's listening socket."""
    inner = getattr(zc, "zeroconf", zc)
    sock = getattr(getattr(inner, "engine", None), "_listen_socket", None)
    if not isinstance(sock, socket.socket):
        log.warning("zeroconf: its listening socket is not reachable (a newer zeroconf?): "
                    "the hub takes announcements sent to any of this host's addresses")
        return False
    return hold_to_interface(sock)


__all__ = ["hold_to_interface", "hold_zeroconf"]
