"""The installation seen from a controller: ``anamnesis hub`` as a real process announces
its OSCQuery namespace and OSC API by zeroconf on 127.0.0.1; python-zeroconf and
python-oscquery (PyPI) find it and read ``/hub/agent/ID/PARAM`` with types, ranges and
live values; the OSC API answers queries (no argument: the value) over real UDP."""

from __future__ import annotations

import asyncio
import re
import sys
import time

import aiohttp
import pytest
from support.agents import REPO
from support.controlplane import OscTestClient
from support.oscquery import browse_with_python_oscquery, validate_node
from zeroconf import ServiceBrowser, Zeroconf

from anamnesis.agents.protocol.key import generate_key

LOOPBACK = "127.0.0.1"

CONFIG = """
[installation]
name = "oqhub"
key_file = "inst.key"

[[agent]]
id = "q1"
model = "autoregnn"
params = { lr = 0.25 }
spawn = true

[[agent]]
id = "q2"
model = "unlearn"
spawn = true
"""


class _Seen:
    """A python-zeroconf listener keeping the names it was told of."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def add_service(self, zc, type_, name):
        self.names.add(name)

    def update_service(self, zc, type_, name):
        self.names.add(name)

    def remove_service(self, zc, type_, name):
        self.names.discard(name)


def _browse_hub(timeout: float) -> dict[str, tuple[int, list[str]]]:
    """python-zeroconf on 127.0.0.1: the hub's two services, resolved (port, addresses)."""
    zc = Zeroconf(interfaces=[LOOPBACK])
    try:
        seen = _Seen()
        types = ["_oscjson._tcp.local.", "_osc._udp.local."]
        browser = ServiceBrowser(zc, types, seen)
        wanted = {f"anamnesis hub oqhub.{t}" for t in types}
        deadline = time.monotonic() + timeout
        while not wanted <= seen.names and time.monotonic() < deadline:
            time.sleep(0.05)
        browser.cancel()
        out = {}
        for type_ in types:
            info = zc.get_service_info(type_, f"anamnesis hub oqhub.{type_}", timeout=3000)
            if info is not None:
                out[info.name] = (info.port, info.parsed_addresses())
        return out
    finally:
        zc.close()


@pytest.mark.usefixtures("loop_watchdog")
async def test_a_controller_finds_the_hub_and_reads_the_installation(tmp_path):
    generate_key(tmp_path / "inst.key")
    (tmp_path / "oq.toml").write_text(CONFIG)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anamnesis.hub.cli", "hub", str(tmp_path / "oq.toml"),
        "--http", "127.0.0.1:0", "--osc", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
        "--interface", LOOPBACK, "--log-level", "info", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stderr: list[str] = []

    async def drain() -> None:
        while line := await proc.stderr.readline():
            stderr.append(line.decode(errors="replace"))

    reader = asyncio.create_task(drain())
    try:
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
                 for _ in range(3)]
        http_port = int(re.match(r"Dashboard: http://127\.0\.0\.1:(\d+)/", lines[0]).group(1))
        osc_port = int(re.fullmatch(r"OSC: 127\.0\.0\.1:(\d+)", lines[1]).group(1))
        query_port = int(re.fullmatch(r"OSCQuery: http://127\.0\.0\.1:(\d+)/", lines[2]).group(1))
        async with aiohttp.ClientSession() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:      # both agents adopted, their state read (their params known)
                async with http.get(f"http://{LOOPBACK}:{http_port}/api/agents") as r:
                    agents = {a["id"]: a for a in await r.json()}
                if all(agents.get(i, {}).get("status") == "online" and agents[i]["params"]
                       for i in ("q1", "q2")):
                    break
                assert loop.time() < deadline, f"{agents}\n{''.join(stderr)}"
                await asyncio.sleep(0.2)

            # python-zeroconf finds both of the hub's services at their ports
            found = await asyncio.to_thread(_browse_hub, 15.0)
            assert found == {"anamnesis hub oqhub._oscjson._tcp.local.": (query_port, [LOOPBACK]),
                             "anamnesis hub oqhub._osc._udp.local.": (osc_port, [LOOPBACK])}

            # the namespace over HTTP: valid OSCQuery, every agent's parameters live
            async with http.get(f"http://{LOOPBACK}:{query_port}/") as r:
                root = await r.json()
            n_nodes = validate_node(root, "/")
            q1 = root["CONTENTS"]["hub"]["CONTENTS"]["agent"]["CONTENTS"]["q1"]["CONTENTS"]
            q2 = root["CONTENTS"]["hub"]["CONTENTS"]["agent"]["CONTENTS"]["q2"]["CONTENTS"]
            assert q1["lr"]["VALUE"] == [pytest.approx(0.25)] and q1["lr"]["TYPE"] == "f"
            assert q1["lr"]["FULL_PATH"] == "/hub/agent/q1/lr" and q1["lr"]["ACCESS"] == 3
            assert q1["gain"]["UNIT"] == ["gain.db"]
            assert {"lr", "ridge", "gain", "mute"} <= set(q1)
            reported = agents["q2"]["params"]       # Unlearn's own parameters, as reported
            assert set(reported) <= set(q2) and {"gain", "mute"} <= set(q2)
            for name, value in reported.items():
                expect = value if isinstance(value, list) else [value]
                assert q2[name]["VALUE"] == [pytest.approx(v) if isinstance(v, float) else v
                                             for v in expect], name
            print(f"\nthe hub's namespace: {n_nodes} nodes")
            async with http.get(f"http://{LOOPBACK}:{query_port}/hub/agent/q1/lr?RANGE") as r:
                assert r.status == 200 and set(await r.json()) == {"RANGE"}
            async with http.get(f"http://{LOOPBACK}:{query_port}/hub/agent/zz/lr") as r:
                assert r.status == 404
            async with http.get(f"http://{LOOPBACK}:{query_port}/hub?COLOR") as r:
                assert r.status == 400

            # OSC over UDP: set through the hub, then ask (no argument: the value)
            client = await OscTestClient.open(osc_port)
            try:
                assert await client.request("/hub/agent/q1/lr", 0.5) == \
                    ("/hub/ok", ["/hub/agent/q1/lr"])
                deadline = loop.time() + 10
                while True:        # the agent reports the change; the hub then knows it
                    address, args = await client.request("/hub/agent/q1/lr")
                    if args == [pytest.approx(0.5)]:
                        break
                    assert loop.time() < deadline, (address, args)
                    await asyncio.sleep(0.1)
                assert address == "/hub/agent/q1/lr"
                # /lr reaches Unlearn's λ (the seeds' learning rate) through the hub too
                assert q2["lr"]["DESCRIPTION"].startswith("alias of /hub/agent/q2/lambda")
                assert await client.request("/hub/agent/q2/lr", 0.4) == \
                    ("/hub/ok", ["/hub/agent/q2/lr"])
                deadline = loop.time() + 10
                while True:
                    _, args = await client.request("/hub/agent/q2/lambda")
                    if args == [pytest.approx(0.4)]:
                        break
                    assert loop.time() < deadline, args
                    await asyncio.sleep(0.1)
                assert await client.request("/hub/agent/q2/lr") == \
                    ("/hub/agent/q2/lr", [pytest.approx(0.4)])
                address, args = await client.request("/hub/agents")
                assert address == "/hub/agents" and sorted(args) == ["q1", "q2"]
                address, args = await client.request("/hub/agent/zz/lr")
                assert address == "/hub/error" and "no agent 'zz'" in args[0]
                address, args = await client.request("/hub/agent/q1/nothing")
                assert address == "/hub/error" and "'nothing'" in args[0]
            finally:
                client.close()

            # python-oscquery reads the same namespace, found by its own browsing
            result = await asyncio.to_thread(browse_with_python_oscquery, "anamnesis hub oqhub",
                                             15.0, "/hub/agent/q1/lr")
            assert result["host_info"].name == "anamnesis hub oqhub"
            assert result["host_info"].osc_port == osc_port
            paths = {node.full_path for node in result["root"]}
            assert {"/hub/agent/q1/lr", "/hub/agent/q2/gain", "/hub/panic",
                    "/hub/scene/recall"} <= paths
            assert result["lr"].value == [pytest.approx(0.5)]
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0, "".join(stderr)
        await reader
