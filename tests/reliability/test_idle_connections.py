"""2,000 idle connections from one host leave the hub's API answering (issue 14, item 13).

A real ``anamnesis hub`` process started under systemd's default soft descriptor limit
(``prlimit --nofile=1024:8192``: 1,100 idle connections used to exhaust it). A "visitor"
on 127.0.0.2 opens 2,000 TCP connections and sends nothing; the hub holds
``PER_HOST`` (64) of them and closes the rest at once, so its descriptors stay few, and
``/api/health`` answers the installation's own browser on 127.0.0.1 with the counts. The
hub has lifted its soft limit to the hard one, and logged the refusals once, without a
traceback.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import shutil
import signal
import socket
import time

import aiohttp
import pytest
from support.hubs import hub_cli

from anamnesis.hub.api.connections import PER_HOST, ConnectionCap

VISITOR = "127.0.0.2"
CONNECTIONS = 2000
BATCH = 100
#: One agent on the LAN that never comes: the hub only serves.
CONFIG = """
[installation]
name = "crowded"

[[agent]]
id = "c1"
model = "autoregnn"
"""


def test_the_cap_counts_per_host_and_in_all():
    class Transport:
        def __init__(self, host: str) -> None:
            self.host = host

        def get_extra_info(self, name: str) -> object:
            return (self.host, 40000) if name == "peername" else None

    cap = ConnectionCap(per_host=2, total=3)
    handlers = [object() for _ in range(5)]
    assert [cap.admit(h, Transport("10.0.0.9")) for h in handlers[:3]] == [True, True, False]
    assert cap.admit(handlers[3], Transport("10.0.0.1"))
    assert not cap.admit(handlers[4], Transport("10.0.0.2"))           # 3 in all
    assert cap.counts() == {"connections": 3, "connection_hosts": 2, "connections_refused": 2}
    cap.release(handlers[2])                                            # a refused one: no-op
    cap.release(handlers[0])
    assert cap.admit(handlers[4], Transport("10.0.0.2"))
    assert cap.counts()["connections"] == 3
    with pytest.raises(ValueError):
        ConnectionCap(per_host=5, total=4)


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _settled_open_files(pid: int) -> int:
    """The hub's open descriptors once two readings 0.1 s apart agree (a refused
    connection is closed on the loop's next turn, not at once)."""
    last = _open_files(pid)
    for _ in range(50):
        await asyncio.sleep(0.1)
        now = _open_files(pid)
        if now == last:
            return now
        last = now
    raise AssertionError(f"the hub's descriptors never settled (last {last})")


def _soft_file_limit(pid: int) -> int:
    limits = open(f"/proc/{pid}/limits").read()
    return int(re.search(r"Max open files\s+(\d+)", limits).group(1))


@pytest.mark.slow
async def test_two_thousand_idle_connections_leave_the_api_answering(tmp_path):
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < CONNECTIONS + 500:
        pytest.skip(f"this process may open {hard} files; the test needs {CONNECTIONS + 500}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, CONNECTIONS + 500), hard))
    (tmp_path / "install.toml").write_text(CONFIG)
    hub = await hub_cli(tmp_path / "install.toml", tmp_path / "state",
                        prefix=("prlimit", "--nofile=1024:8192", "--"))
    visitors: list[socket.socket] = []
    try:
        line = (await asyncio.wait_for(hub.stdout.readline(), 60)).decode()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        assert _soft_file_limit(hub.pid) == 8192          # lifted from 1,024 to the hard limit
        async with aiohttp.ClientSession() as http:
            async def health() -> dict:
                async with http.get(f"http://127.0.0.1:{port}/api/health") as r:
                    assert r.status == 200
                    return (await r.json())["http"]

            # In batches the listen queue (128) holds, each until the hub has seen it:
            # a connection the kernel drops from a full queue never reaches the hub.
            answered_s = 0.0
            for _ in range(0, CONNECTIONS, BATCH):
                for _ in range(BATCH):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.bind((VISITOR, 0))
                    s.connect_ex(("127.0.0.1", port))
                    visitors.append(s)

                def seen(counts: dict) -> bool:
                    return counts["connections_refused"] + counts["connections"] - 1 >= len(visitors)
                started = time.monotonic()
                counts = await health()
                answered_s = max(answered_s, time.monotonic() - started)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while not seen(counts):
                    assert loop.time() < deadline, (len(visitors), counts)
                    await asyncio.sleep(0.05)
                    counts = await health()
            # The visitor holds PER_HOST; the health request's own connection is the other.
            assert counts["connections"] == PER_HOST + 1 and counts["connection_hosts"] == 2
            assert counts["connections_refused"] == CONNECTIONS - PER_HOST, counts
            during = await _settled_open_files(hub.pid)
            for s in visitors:           # the visitor leaves: what it held is given back
                s.close()
            visitors.clear()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while (await health())["connections"] > 1:
                assert loop.time() < deadline, "the visitor's connections were not closed"
                await asyncio.sleep(0.05)
            held = during - await _settled_open_files(hub.pid)
        # The hub started (zeroconf, the store, its threads) before the flood; what it
        # held during it beyond that is the visitor's connections, and no more.
        assert PER_HOST - 2 <= held <= PER_HOST + 2, f"the hub held {held} descriptors"
        print(f"\n{CONNECTIONS} idle connections: {counts['connections']} held, "
              f"{counts['connections_refused']} refused, the hub +{held} descriptors, "
              f"/api/health answered in at most {answered_s * 1000:.0f} ms")
    finally:
        for s in visitors:
            s.close()
        if hub.returncode is None:
            hub.send_signal(signal.SIGTERM)
        await asyncio.wait_for(hub.wait(), 30)
    stderr = (await hub.stderr.read()).decode()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.count(f"{VISITOR}") == 1 and "connection refused" in stderr, stderr[-3000:]
