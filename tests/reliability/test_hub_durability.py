"""An acknowledged write is on disk (issue 14, item 1).

A real ``anamnesis hub`` process takes a burst of route writes (creations, gain changes,
deletions; six clients at once) over REST, the WebSocket and OSC, and is killed with
SIGKILL the moment the last answer arrives: its database, opened again, holds every
change it acknowledged — the hub answers a write once it is committed (WAL,
``synchronous=FULL``), not when it is queued.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess

import aiohttp
import pytest
from support.controlplane import OscTestClient
from support.hubs import hub_cli

from anamnesis.hub.core.store import Store

CONFIG = """
[installation]
name = "durable"
mode = "simulated"
""" + "".join(f'\n[[agent]]\nid = "d{i}"\nmodel = "autoregnn"\n' for i in range(4))

DASHBOARD = re.compile(r"^Dashboard: http://127\.0\.0\.1:(\d+)/\?token=(\S+)$")
OSC = re.compile(r"^OSC: 127\.0\.0\.1:(\d+)$")
PAIRS = [(f"d{a}", f"d{b}") for a, b in itertools.permutations(range(4), 2)]   # 12 routes


async def kill_during_burst(tmp_path) -> tuple[dict[str, float], dict[str, float], str]:
    """One round (a real hub, the burst, SIGKILL at its last answer, the database opened
    again): the standing routes acknowledged, those stored, and the integrity check.
    ``bench/soak_durability.py`` runs it 20 times."""
    (tmp_path / "install.toml").write_text(CONFIG)
    state = tmp_path / "state"
    hub = await hub_cli(tmp_path / "install.toml", state, stderr=subprocess.DEVNULL)
    acked: dict[str, float | None] = {}      # route id -> the last acknowledged gain (None: deleted)
    try:
        match = DASHBOARD.match((await asyncio.wait_for(hub.stdout.readline(), 60)).decode())
        assert match
        port, token = match.groups()
        osc_port = int(OSC.match((await hub.stdout.readline()).decode()).group(1))
        base = f"http://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=auth) as http:
            async def rest_writer(pairs: list[tuple[str, str]]) -> None:
                for n, (a, b) in enumerate(pairs * 4):
                    route_id, gain = f"{a}->{b}", round(0.01 * (n + 1), 3)
                    if acked.get(route_id) is None:
                        async with http.post(base + "/api/routes",
                                             json={"from": a, "to": b, "gain": gain}) as r:
                            assert r.status == 201, await r.text()
                    elif n % 5 == 4:
                        async with http.delete(base + f"/api/routes/{route_id}") as r:
                            assert r.status in (200, 204), await r.text()
                        acked[route_id] = None
                        continue
                    else:
                        async with http.patch(base + f"/api/routes/{route_id}",
                                              json={"gain": gain}) as r:
                            assert r.status == 200, await r.text()
                    acked[route_id] = gain

            async def ws_writer(pairs: list[tuple[str, str]]) -> None:
                async with http.ws_connect(base + "/ws") as ws:
                    for n, (a, b) in enumerate(pairs * 6):
                        route_id, gain = f"{a}->{b}", round(0.5 + 0.01 * n, 3)
                        await ws.send_json({"id": n, "cmd": "route_gain", "from": a, "to": b,
                                            "gain": gain})
                        while (reply := await ws.receive_json(timeout=30))["type"] != "reply":
                            pass
                        assert reply["ok"], reply
                        acked[route_id] = gain

            async def osc_writer(pairs: list[tuple[str, str]]) -> None:
                client = await OscTestClient.open(osc_port)
                try:
                    for n, (a, b) in enumerate(pairs * 6):
                        gain = round(0.2 + 0.01 * n, 3)
                        reply = await client.request("/hub/route", a, b, gain, timeout=30)
                        assert reply == ("/hub/ok", ["/hub/route"]), reply
                        acked[f"{a}->{b}"] = gain
                finally:
                    client.close()

            await asyncio.gather(rest_writer(PAIRS[0:2]), rest_writer(PAIRS[2:4]),
                                 rest_writer(PAIRS[4:6]), ws_writer(PAIRS[6:8]),
                                 osc_writer(PAIRS[8:10]), osc_writer(PAIRS[10:12]))
        os.kill(hub.pid, signal.SIGKILL)       # at once: no shutdown, no last flush
        await asyncio.wait_for(hub.wait(), 30)
    finally:
        if hub.returncode is None:
            hub.kill()
            await hub.wait()
    store = Store.in_state_dir(state)
    try:
        integrity = store._db.execute("PRAGMA integrity_check").fetchone()[0]
        stored = {route_id: spec["gain"] for route_id, spec in store.routes().items()}
    finally:
        store.close()
    want = {route_id: gain for route_id, gain in acked.items() if gain is not None}
    return want, stored, integrity


@pytest.mark.slow
async def test_every_acknowledged_route_write_survives_a_kill_9(tmp_path):
    want, stored, integrity = await kill_during_burst(tmp_path)
    assert integrity == "ok"
    print(f"\n{len(want)} routes standing; all on disk after kill -9: "
          f"{stored == pytest.approx(want)}")
    assert stored == pytest.approx(want)
