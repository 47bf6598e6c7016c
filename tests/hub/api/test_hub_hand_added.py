"""An agent added by hand to a simulated installation (JOURNEYS 3 on a laptop): the hub
cannot clock an agent its config does not place, so a route or a ring to it is refused
with a message that says what to do, instead of a ring whose new member stays silent.

A real hub (simulated, its config's agents not spawned) and a real agent process
started by hand with ``--audio null``, discovered over zeroconf on 127.0.0.1."""

from __future__ import annotations

import aiohttp
import pytest
from support.controlplane import AgentProcess
from support.hubs import running_hub
from support.waiting import wait_for

from anamnesis.hub.installation.check import parse_config

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_watchdog")]

SIMULATED = """
[installation]
name = "handadd"
mode = "simulated"

[[agent]]
id = "a"
model = "autoregnn"

[[agent]]
id = "b"
model = "autoregnn"
"""


async def test_a_ring_with_an_agent_the_config_does_not_place_is_refused_with_what_to_do(
        tmp_path):
    config = parse_config(SIMULATED, "handadd.toml")
    x9 = await AgentProcess.start(tmp_path / "x9", agent_id="x9", model="unlearn",
                                  extra=("--installation", "handadd", "--preset", "unlearn3"))
    try:
        async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
                aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {hub.token}"}

            async def pending():
                entry = hub.registry.get("x9")
                return entry is not None and entry.online
            await wait_for(pending, 15.0, "x9 discovered")
            async with http.post(base + "/api/agents/x9/adopt", headers=auth) as r:
                assert r.status == 200 and (await r.json())["adopted"] is True

            ring = {"name": "trio", "agents": ["a", "b", "x9"], "gain": 0.3}
            async with http.post(base + "/api/rings", json=ring, headers=auth) as r:
                assert r.status == 400
                message = (await r.json())["error"]
            assert "agent 'x9' is not part of this simulated installation" in message
            assert 'Add an [[agent]] with id = "x9"' in message
            assert "--audio hub" in message
            async with http.post(base + "/api/routes", json={"from": "a", "to": "x9"},
                                 headers=auth) as r:
                assert r.status == 400
                assert "to: agent 'x9' is not part of" in (await r.json())["error"]
            # nothing half-made: no edge of the ring, no route, and the config's own
            # agents still take a ring
            assert not any(rid.startswith("trio:") or "x9" in rid for rid in hub.routes)
            ring["agents"] = ["a", "b"]
            async with http.post(base + "/api/rings", json=ring, headers=auth) as r:
                assert r.status == 201, await r.text()
    finally:
        assert await x9.stop() == 0
