"""An agent added by hand (JOURNEYS 3). In a simulated installation the hub cannot clock
an agent its config does not place, so a route or a ring to it is refused with a
message that says what to do, instead of a ring whose new member stays silent; in a
deployed one the agent joins the routes like any other.

Real hubs and real agent processes started by hand with ``--audio null``, discovered
over zeroconf on 127.0.0.1."""

from __future__ import annotations

import asyncio

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

            # Forget: refused while x9 plays, for the config's own agents and unknown
            # ids; once x9 is gone it goes, with its adoption, and browsers are told.
            for agent_id, status, words in (("x9", 409, "is online: stop its process"),
                                            ("a", 409, "part of the installation config"),
                                            ("zz", 404, "no agent 'zz'")):
                async with http.delete(base + f"/api/agents/{agent_id}", headers=auth) as r:
                    assert r.status == status and words in (await r.json())["error"]
            pushed: list = []
            hub.add_listener(pushed.append)
            assert await x9.stop() == 0

            async def offline():
                return not hub.registry.get("x9").online
            await wait_for(offline, 20.0, "x9 offline")
            async with http.delete(base + "/api/agents/x9", headers=auth) as r:
                assert r.status == 200 and (await r.json()) == {"forgotten": "x9", "routes": []}
            assert hub.registry.get("x9") is None and "x9" not in hub.registry.adopted_ids
            assert {"type": "agent_removed", "agent": "x9"} in pushed
            assert any(isinstance(m, dict) and m.get("type") == "event"
                       and m["event"]["kind"] == "agent_forgotten" for m in pushed)
            async with http.get(base + "/api/agents") as r:
                assert "x9" not in {a["id"] for a in await r.json()}
    finally:
        if x9.proc.returncode is None:
            assert await x9.stop() == 0


DEPLOYED_ONE = """
[installation]
name = "handdep"
mode = "deployed"

[room]
size = [6.0, 5.0, 3.0]
listener = [3.0, 2.5, 1.6]

[[agent]]
id = "d1"
model = "autoregnn"
speaker = [1.0, 1.0, 1.5]
mic = [1.5, 1.0, 1.5]

[[source]]
name = "hiss"
kind = "noise"
args = { amp = 0.2, seed = 1 }
targets = ["d1"]
"""


async def _x9_hears_d1(hub, *, first: bool) -> None:
    """Wait until x9 (no preset, a null clock: it hears nothing but what the hub sends)
    hears d1 through the hub; on the first run adopt both and add the route."""
    levels: dict[str, dict[str, float]] = {}

    def level(agent_id: str, key: str) -> float:
        return levels.get(agent_id, {}).get(key, 0.0)

    async def reported(what: str) -> bool:
        for agent_id, frame in hub.telemetry.take().items():
            levels[agent_id] = frame
        if what == "telemetry":
            return "x9" in levels
        return level("x9", "in_rms") > 1e-3 and hub.driver.stats()["routed"] == ["d1", "x9"]

    if first:
        async def both_known():
            return all(hub.registry.get(a) is not None and hub.registry.get(a).online
                       for a in ("d1", "x9"))
        await wait_for(both_known, 20.0, "d1 and x9 discovered")
        for agent_id in ("d1", "x9"):
            hub.adopt(agent_id)
        await wait_for(lambda: reported("telemetry"), 20.0, "x9's telemetry")
        assert level("x9", "in_rms") < 1e-6                    # silence before the route
        hub.add_route({"from": "d1", "to": "x9", "gain": 1.0, "delay_ms": 5.0})
        hub.add_ring({"name": "pair", "agents": ["d1", "x9"], "gain": 0.2, "delay_ms": 5.0})
        # the floor plan stays editable with edges to an agent the config does not list
        # (they live in the store; the edited config keeps the config's own agents' edges)
        moved = hub.layout.put_room_layout({"agents": {"d1": {"speaker": [1.2, 1.0, 1.5]}}})
        assert moved["agents"]["d1"]["speaker"] == [1.2, 1.0, 1.5]
        edited = hub.edited_config()
        assert edited.routes == () and edited.rings == ()
    await wait_for(lambda: reported("route"), 30.0, f"x9 hearing d1 (first run: {first})")
    assert hub.driver.graph.agent_ids == ("d1", "x9")


async def test_a_deployed_installation_routes_an_agent_added_on_the_lan(tmp_path, caplog):
    """JOURNEYS 3 on the real LAN: an agent the config does not list, adopted by hand,
    joins a route from a configured agent and hears it; after a hub restart the stored
    route plays again once the agent is back."""
    from anamnesis.hub.core.hub import Hub

    config = parse_config(DEPLOYED_ONE, "handdep.toml")
    extra = ("--installation", "handdep", "--hub", "127.0.0.1")
    d1, x9 = (await AgentProcess.start(tmp_path / "d1", agent_id="d1", extra=extra),
              await AgentProcess.start(tmp_path / "x9", agent_id="x9", extra=extra))
    try:
        for first in (True, False):
            hub = Hub(state_dir=tmp_path / "hub", interface="127.0.0.1", config=config)
            await hub.start()
            try:
                await _x9_hears_d1(hub, first=first)
                assert set(hub.routes) == {"d1->x9", "pair:d1->x9", "pair:x9->d1"}
            finally:
                await hub.close()
        assert "no longer checks" not in caplog.text
    finally:
        await asyncio.gather(d1.stop(), x9.stop())
