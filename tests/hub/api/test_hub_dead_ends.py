"""Issue 15's dead ends over the REST API of a real hub (real SQLite, real sockets on
127.0.0.1, a real agent process where one is needed):

* the floor plan and the room stay editable whatever edges exist: a ring naming an
  agent added on the LAN (``move: [[ring]] #3: agents names unknown agent 'a9'`` until
  the ring was deleted), a ring's edge edited apart beside a route between the same two
  agents (``route a -> b is given twice``), a stored config an earlier hub wrote with
  such a ring; and the stored config reads back, so a restart keeps the moves;
* an agent gone for good is forgotten (``DELETE /api/agents/ID``): refused with what to
  do while it plays or when the config lists it, its ring edges, adoption and stored
  parameters go, browsers are told, the event log says so, a restart agrees, and the
  OpenAPI document says what each answer means.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from support.controlplane import AgentProcess
from support.hubs import running_hub
from support.waiting import wait_for

from anamnesis.hub.installation.check import parse_config

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_watchdog")]

#: Seconds a real agent may take to be discovered or to be seen gone (a guard for a
#: loaded 2-core machine; liveness marks an agent offline after 3 missed 1 s pings).
AGENT_GUARD_S = 30.0

DEPLOYED = """
[installation]
name = "deadends"
mode = "deployed"

[room]
size = [6.0, 5.0, 3.0]
rt60 = 0.4
listener = [3.0, 2.5, 1.6]

[[agent]]
id = "a3"
model = "autoregnn"
speaker = [1.0, 1.0, 1.5]
mic = [1.5, 1.0, 1.5]

[[agent]]
id = "a4"
model = "autoregnn"
speaker = [5.0, 1.0, 1.5]
mic = [4.5, 1.0, 1.5]

[[agent]]
id = "a5"
model = "autoregnn"
speaker = [3.0, 4.0, 1.5]
mic = [3.0, 3.5, 1.5]
"""

MOVES = {"listener": [2.0, 2.0, 1.6],
         "agents": {"a3": {"speaker": [1.25, 1.5, 1.5], "mic": [1.75, 1.5, 1.5]},
                    "a4": {"speaker": [4.75, 2.0, 1.5]}}}


def auth(hub) -> dict[str, str]:
    return {"Authorization": f"Bearer {hub.token}"}


async def move_everything(http, base, hub) -> dict:
    """PUT /api/room/layout (listener, a speaker and a mic) and PUT /api/room; both 200."""
    async with http.put(base + "/api/room/layout", json=MOVES, headers=auth(hub)) as r:
        assert r.status == 200, await r.text()
        layout = await r.json()
    assert layout["room"]["listener"] == MOVES["listener"]
    assert layout["agents"]["a3"] == MOVES["agents"]["a3"]
    assert layout["agents"]["a4"]["speaker"] == MOVES["agents"]["a4"]["speaker"]
    room = {"size": layout["room"]["size"], "rt60": 0.6, "listener": MOVES["listener"]}
    async with http.put(base + "/api/room", json=room, headers=auth(hub)) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["rt60"] == 0.6
    return layout


def assert_moves_kept(hub) -> None:
    """The moves of :data:`MOVES` (and RT60 0.6 s) are the hub's."""
    positions = {a.id: a for a in hub.layout_agents}
    assert list(hub.room.listener) == MOVES["listener"]
    assert hub.room.rt60 == 0.6
    assert list(positions["a3"].speaker) == MOVES["agents"]["a3"]["speaker"]
    assert list(positions["a3"].mic) == MOVES["agents"]["a3"]["mic"]
    assert list(positions["a4"].speaker) == MOVES["agents"]["a4"]["speaker"]


async def stored_config(hub):
    """The config the hub stored (after its queued writes), read back by the config's own
    parser: it must check."""
    await hub.flush()
    return parse_config(await hub.store.config(), "stored config")


async def test_the_floor_plan_stays_editable_beside_a_ring_edited_apart(tmp_path, caplog):
    """A route a3 -> a4 and ring trio's edge a3 -> a4 edited apart (two edges between the
    same agents, which a config cannot list as two [[route]]s) left every drag failing
    with 'route a3 -> a4 is given twice'. Now the moves land, the stored config reads
    back (without the second edge, which the store's routes keep) and a restart has
    both the moves and every edge."""
    config = parse_config(DEPLOYED, "deadends.toml")
    caplog.set_level(logging.WARNING)
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession() as http:
        async with http.post(base + "/api/routes", headers=auth(hub),
                             json={"from": "a3", "to": "a4", "delay_ms": 5.0}) as r:
            assert r.status == 201, await r.text()
        async with http.post(base + "/api/rings", headers=auth(hub), json={
                "name": "trio", "agents": ["a3", "a4", "a5"], "gain": 0.5,
                "delay_ms": 5.0}) as r:
            assert r.status == 201, await r.text()
        async with http.patch(base + "/api/routes/trio:a3->a4", headers=auth(hub),
                              json={"gain": 0.25}) as r:
            assert r.status == 200, await r.text()
        # a ring name the config could not write back is refused when it is made
        async with http.post(base + "/api/rings", headers=auth(hub), json={
                "name": "chœur", "agents": ["a4", "a5"], "delay_ms": 5.0}) as r:
            assert r.status == 400
            assert "starting with a letter or digit" in (await r.json())["error"]
        await move_everything(http, base, hub)
        edges = dict(hub.routes)
        async with http.get(base + "/api/openapi.json") as r:
            forget = (await r.json())["paths"]["/api/agents/{agent_id}"]["delete"]
        assert forget["operationId"] == "forget_agent"
        assert "stop its process first" in forget["responses"]["409"]["description"]
        assert "[[agent]] of the installation's config" in forget["responses"]["409"][
            "description"]
        assert forget["responses"]["404"]["description"].startswith("no agent of that id")
        assert "agent_forgotten" in forget["description"] and "409" not in forget["description"]
        stored = await stored_config(hub)
        assert [(r.source, r.target, r.gain) for r in stored.routes] == [
            ("a3", "a4", 1.0), ("a4", "a5", 0.5), ("a5", "a3", 0.5)]
        assert list(stored.room.listener) == MOVES["listener"]
    async with running_hub(tmp_path / "hub", config=config) as (hub, base):
        assert hub.routes == edges
        assert set(edges) == {"a3->a4", "trio:a3->a4", "trio:a4->a5", "trio:a5->a3"}
        assert edges["trio:a3->a4"]["gain"] == 0.25
        assert_moves_kept(hub)
    assert "no longer checks" not in caplog.text


async def test_a_ring_with_an_agent_added_on_the_lan_then_forgetting_it(tmp_path, caplog):
    """JOURNEYS 3 then issue 15: x9, which the config does not list, is adopted and put
    in a ring with a3 and a4 (deployed: the hub routes it). Every floor-plan and room
    edit answers 200 with that ring; the stored config reads back. Forget is refused
    while x9 plays and for the config's own a3; once x9 is gone it goes with its ring
    edges, adoption and stored parameters, browsers (WebSocket clients) are told, the
    event log says so, and a restarted hub agrees."""
    config = parse_config(DEPLOYED, "deadends.toml")
    caplog.set_level(logging.WARNING)
    x9 = await AgentProcess.start(tmp_path / "x9", agent_id="x9", model="unlearn",
                                  extra=("--installation", "deadends", "--preset", "unlearn3"))
    try:
        async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
                aiohttp.ClientSession() as http:
            async def online():
                entry = hub.registry.get("x9")
                return entry is not None and entry.online
            await wait_for(online, AGENT_GUARD_S, "x9 discovered")
            async with http.post(base + "/api/agents/x9/adopt", headers=auth(hub)) as r:
                assert r.status == 200, await r.text()
            async with http.patch(base + "/api/agents/x9", headers=auth(hub),
                                  json={"params": {"mu": 0.5}}) as r:
                assert r.status == 200, await r.text()
            async with http.post(base + "/api/rings", headers=auth(hub), json={
                    "name": "hand", "agents": ["x9", "a3", "a4"], "gain": 0.3,
                    "delay_ms": 10.0}) as r:
                assert r.status == 201, await r.text()
            await move_everything(http, base, hub)
            stored = await stored_config(hub)     # only what a config can say: a3 -> a4
            assert [(r.source, r.target) for r in stored.routes] == [("a3", "a4")]
            assert stored.rings == ()
            await hub.flush()
            assert "x9" in await hub.store.params()
            ws = await http.ws_connect(base + "/ws", headers=auth(hub))
            try:
                hello = await ws.receive_json(timeout=10.0)
                assert hello["type"] == "hello"
                for agent_id, status, words in (
                        ("x9", 409, "is online: stop its process"),
                        ("a3", 409, "part of the installation config"),
                        ("zz", 404, "no agent 'zz'")):
                    async with http.delete(base + f"/api/agents/{agent_id}",
                                           headers=auth(hub)) as r:
                        assert r.status == status
                        assert words in (await r.json())["error"]
                assert await x9.stop() == 0

                async def offline():
                    return not hub.registry.get("x9").online
                await wait_for(offline, AGENT_GUARD_S, "x9 seen gone")
                async with http.delete(base + "/api/agents/x9", headers=auth(hub)) as r:
                    assert r.status == 200, await r.text()
                    assert await r.json() == {"forgotten": "x9",
                                              "routes": ["hand:x9->a3", "hand:a4->x9"]}
                told: list[dict] = []

                async def removed():
                    while not any(m.get("type") == "agent_removed" for m in told):
                        told.append(await ws.receive_json(timeout=10.0))
                    return True
                await asyncio.wait_for(removed(), 15.0)
                assert {"type": "agent_removed", "agent": "x9"} in told
            finally:
                await ws.close()
            assert set(hub.routes) == {"hand:a3->a4"}
            async with http.get(base + "/api/agents/x9") as r:
                assert r.status == 404
            async with http.get(base + "/api/events?limit=20") as r:
                events = await r.json()
            forgotten = [e for e in events if e["kind"] == "agent_forgotten"]
            assert len(forgotten) == 1 and forgotten[0]["agent"] == "x9"
            assert "hand:x9->a3" in forgotten[0]["message"]
            await hub.flush()
            assert "x9" not in await hub.store.params()
            assert not any("x9" in rid for rid in await hub.store.routes())
            # the floor plan still moves (the last edge of the ring is the config's)
            async with http.put(base + "/api/room/layout", headers=auth(hub),
                                json={"listener": [2.5, 2.0, 1.6]}) as r:
                assert r.status == 200, await r.text()
        async with running_hub(tmp_path / "hub", config=config) as (hub, base):
            assert hub.registry.get("x9") is None and "x9" not in hub.registry.adopted_ids
            assert "x9" not in hub.params
            assert set(hub.routes) == {"hand:a3->a4"}
            assert list(hub.room.listener) == [2.5, 2.0, 1.6]
        assert "no longer checks" not in caplog.text
    finally:
        if x9.proc.returncode is None:
            assert await x9.stop() == 0


async def test_a_stored_config_with_a_ring_naming_an_unlisted_agent_restores_its_room(
        tmp_path, caplog):
    """A hub before this fix stored its edited config with the ring naming the agent
    added on the LAN ([[ring]] agents = ["a9", "a3", "a4"]): the next start read the room
    and positions back through the whole config's check, failed, and fell back to the
    config file's. Now the moves come back (the edges come from the store's routes)."""
    config = parse_config(DEPLOYED, "deadends.toml")
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession() as http:
        await move_everything(http, base, hub)
        await hub.flush()
        earlier = (await hub.store.config()) + (
            '\n[[ring]]\nname = "hand"\nagents = ["a9", "a3", "a4"]\ndelay_ms = 10.0\n')
        with pytest.raises(Exception, match="names unknown agent 'a9'"):
            parse_config(earlier, "stored config")
        await hub.store.set_config(earlier)
    caplog.set_level(logging.WARNING)
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession() as http:
        assert_moves_kept(hub)
        async with http.put(base + "/api/room/layout", headers=auth(hub),
                            json={"agents": {"a5": {"mic": [3.0, 3.0, 1.5]}}}) as r:
            assert r.status == 200, await r.text()
        stored = await stored_config(hub)      # written again: it reads back
        assert list({a.id: a for a in stored.agents}["a5"].mic) == [3.0, 3.0, 1.5]
    # (the couplings' own restore, hub/core/couplings.py, still reads that old text whole)
    assert "the room comes from the config file" not in caplog.text
