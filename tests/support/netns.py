"""A LAN of network namespaces for tests that need real hosts (TESTING.md, "zeroconf across
hosts"): one bridge namespace and ``hosts`` host namespaces, each with an ``eth0`` on the
bridge at ``10.99.0.N/24`` (N from 1). Traffic between them never leaves the namespaces
this module creates; the root namespace gets no interface, route or address.

Namespace names carry this process's id (``anm<pid>-h1`` …): parallel runs and a run
that was killed half-way do not meet. :meth:`Lan.close` deletes them all; a process
still running in a deleted namespace keeps it alive until it exits, so stop the hosts'
processes first.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SUBNET = "10.99.0"


def _ip(*args: str) -> None:
    """``ip ARGS``; raises ``RuntimeError`` with ip's own message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")


def require_namespaces() -> None:
    """Skip where network namespaces cannot be made (not root, no ``ip``, a container
    without CAP_SYS_ADMIN); in CI, which runs as root, that is a failure instead."""
    reason = None
    if shutil.which("ip") is None:
        reason = "the ip program (iproute2) is not installed"
    elif os.geteuid() != 0:
        reason = "network namespaces need root"
    else:
        probe = f"anm{os.getpid()}-probe"
        try:
            _ip("netns", "add", probe)
        except RuntimeError as exc:
            reason = f"network namespaces not permitted here ({exc})"
        else:
            _ip("netns", "del", probe)
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI runs as root and must make network namespaces: {reason}")
        pytest.skip(reason)


class Lan:
    """``hosts`` namespaces on one bridge. Host ``i`` (from 1) is :meth:`ns` ``i`` at
    :meth:`address` ``i``; :meth:`exec` prefixes an argv to run there; :meth:`link`
    pulls or plugs its cable (the bridge side of its veth pair)."""

    def __init__(self, hosts: int) -> None:
        if not 1 <= hosts <= 200:
            raise ValueError(f"hosts must be in [1, 200]; got {hosts}")
        self.hosts = hosts
        self.prefix = f"anm{os.getpid()}"
        self.bridge = f"{self.prefix}-br"
        self._made: list[str] = []

    def ns(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    def address(self, i: int) -> str:
        return f"{SUBNET}.{i}"

    def exec(self, i: int) -> tuple[str, ...]:
        """The argv prefix that runs a program in host ``i`` (``ip netns exec`` execs it:
        the child's pid is the program's, and signals reach it)."""
        return ("ip", "netns", "exec", self.ns(i))

    def open(self) -> Lan:
        try:
            _ip("netns", "add", self.bridge)
            self._made.append(self.bridge)
            _ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.bridge, "link", "set", "br0", "up")
            for i in range(1, self.hosts + 1):
                ns = self.ns(i)
                _ip("netns", "add", ns)
                self._made.append(ns)
                # the veth is made in the host namespace and its peer moved to the bridge's
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{i}")
                _ip("-n", ns, "link", "set", f"port{i}", "netns", self.bridge)
                _ip("-n", self.bridge, "link", "set", f"port{i}", "master", "br0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def link(self, i: int, up: bool) -> None:
        """Plug (``up``) or pull host ``i``'s cable: its port on the bridge."""
        _ip("-n", self.bridge, "link", "set", f"port{i}", "up" if up else "down")

    def close(self) -> None:
        """Delete every namespace made (idempotent)."""
        while self._made:
            name = self._made.pop()
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)

    def __enter__(self) -> Lan:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
