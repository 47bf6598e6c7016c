"""The hub's REST/WebSocket API on real sockets: access control (every write route of the
app's table), the OpenAPI document, malformed bodies, and a live installation of three
real agent processes (zeroconf and OSC on 127.0.0.1): adoption, parameters, routes,
scenes, kill -9, and a hub restart that restores everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from support.apifuzz import AnswerChecker, checked_answers
from support.controlplane import (
    AgentProcess,
    OscTestClient,
)
from support.hubs import DEPLOYED, running_hub
from support.waiting import wait_for

from anamnesis.agents.protocol.key import generate_key
from anamnesis.hub.api.app import create_app
from anamnesis.hub.api.keys import COOKIE, READ_METHODS
from anamnesis.hub.api.openapi import openapi_document
from anamnesis.hub.api.ws import TELEMETRY_HZ
from anamnesis.hub.core.hub import Hub

LOOPBACK = "127.0.0.1"




def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def app_routes(hub: Hub) -> list[tuple[str, str]]:
    """(method, path) of every route in the router of an app made by the factory, so a
    route added to the app in any way is covered."""
    app = create_app(hub)
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                   if r.method != "HEAD"})


async def test_every_write_route_refuses_missing_or_wrong_token(tmp_path):
    async with running_hub(tmp_path / "hub") as (hub, base), aiohttp.ClientSession() as http:
        writes = []
        for method, path in app_routes(hub):
            if method in READ_METHODS and path != "/ws":
                continue
            writes.append((method, path))
            url = base + _concrete(path)
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": "Bearer " + hub.token + "x"},
                            {"Cookie": f"{COOKIE}=wrong"}):
                async with http.request(method, url, headers=headers, json={}) as r:
                    assert r.status == 401, (method, path, headers, r.status)
                    assert "token" in (await r.json())["error"]
            # With the token the same request gets past the door (404/400/409, not 401).
            async with http.request(method, url, json={},
                                    headers={"Authorization": "Bearer " + hub.token}) as r:
                assert r.status != 401, (method, path)
        assert len(writes) >= 12 and ("GET", "/ws") in writes
        # Health is open, and reads are too.
        async with http.get(base + "/api/health") as r:
            assert r.status == 200 and (await r.json())["ok"] is True
        assert hub.counts["unauthorized"] == 4 * len(writes)


async def test_token_file_cookie_openapi_and_malformed_json(tmp_path):
    async with running_hub(tmp_path / "hub") as (hub, base):
        token_file = tmp_path / "hub" / "token"
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert token_file.read_text().strip() == hub.token and len(hub.token) >= 40
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            async with http.get(base + "/?token=nope", allow_redirects=False) as r:
                assert r.status == 401
            async with http.get(base + f"/?token={hub.token}", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/"
                assert "HttpOnly" in r.headers["Set-Cookie"]
            # The cookie now opens writes.
            async with http.post(base + "/api/panic") as r:
                assert r.status == 200 and (await r.json()) == {"panic": []}
            async with http.post(base + "/api/routes", data=b"{not json",
                                 headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400
                assert (await r.json())["error"].startswith("malformed JSON body:")
            assert hub.counts["malformed_json"] == 1
            async with http.post(base + "/api/routes", json={"from": "a", "to": "b", "gian": 1}) as r:
                body = await r.json()
                assert r.status == 400 and "unknown field(s) gian" in body["error"]
                assert "unknown agent 'a'" in body["error"]   # every problem at once
            async with http.get(base + "/api/openapi.json") as r:
                doc = await r.json()
        for method, path in app_routes(hub):
            if path.startswith("/api"):
                assert method.lower() in doc["paths"][path], (method, path)
        assert doc["paths"]["/api/panic"]["post"]["security"]
        assert "security" not in doc["paths"]["/api/health"]["get"]
        await hub.flush()
        stored = b"".join(p.read_bytes() for p in (tmp_path / "hub").glob("hub.sqlite3*"))
        assert len(stored) > 0 and hub.token.encode() not in stored


# ---------------------------------------------------------------------------
# A live installation: three real agent processes
# ---------------------------------------------------------------------------




async def _osc_value(port: int, address: str) -> object:
    """The arguments of the agent's own reply to an OSC query of ``address``."""
    client = await OscTestClient.open(port)
    try:
        client.send(address)
        return await client.expect(address, timeout=2.0)
    finally:
        client.close()


@pytest.mark.usefixtures("loop_watchdog")
async def test_live_installation_and_restart(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "installation.key"
    key = generate_key(key_file)
    signed = ("--installation", "test", "--key-file", str(key_file))
    agents = list(await asyncio.gather(
        AgentProcess.start(tmp_path / "s1", agent_id="s1", extra=signed),
        AgentProcess.start(tmp_path / "s2", agent_id="s2", extra=signed),
        AgentProcess.start(tmp_path / "u1", agent_id="u1", extra=("--installation", "test"))))
    s1, s2, _u1 = agents
    OURS = {"s1", "s2", "u1"}
    auth = {"Authorization": "Bearer PLACEHOLDER"}
    broken: list[str] = []     # answers about real agents that the OpenAPI document misstates
    try:
        async with running_hub(tmp_path / "hub", key=key) as (hub, base), \
                aiohttp.ClientSession(trace_configs=[checked_answers(
                    AnswerChecker(openapi_document(create_app(hub))), broken)]) as http:
            auth = {"Authorization": f"Bearer {hub.token}"}

            async def statuses():
                # Only this test's agents: a hub without a config lists every agent it
                # hears (a demo running beside the tests shows up as pending).
                async with http.get(base + "/api/agents") as r:
                    return {a["id"]: a["status"] for a in await r.json() if a["id"] in OURS}

            async def discovered():
                return await statuses() == {"s1": "online", "s2": "online", "u1": "pending"}

            await wait_for(discovered, 15.0, "s1, s2 adopted and u1 pending")
            async with http.post(base + "/api/agents/u1/adopt", headers=auth) as r:
                assert r.status == 200 and (await r.json())["adopted"] is True

            async def u1_online():
                return (await statuses())["u1"] == "online"

            await wait_for(u1_online, 3.0, "u1 online")

            # Parameters: PATCH -> OSC to the agent, as its own OSC /lr query shows.
            async with http.patch(base + "/api/agents/s1", headers=auth,
                                  json={"params": {"lr": 0.3125, "ridge": 0.001}}) as r:
                body = await r.json()
                assert r.status == 200, body
                assert body["params"]["lr"] == pytest.approx(0.3125, rel=1e-6)
            assert (await _osc_value(s1.osc_port, "/lr"))[0] == pytest.approx(0.3125, rel=1e-6)
            assert (await _osc_value(s1.osc_port, "/ridge"))[0] == pytest.approx(0.001, rel=1e-6)
            async with http.patch(base + "/api/agents/s1", headers=auth,
                                  json={"params": {"lr": -1.0}}) as r:
                body = await r.json()
                assert r.status == 400 and "refused" in body["error"] and "/lr" in body["error"]
            async with http.patch(base + "/api/agents/u1", headers=auth,
                                  json={"params": {"lr": 0.25}}) as r:
                assert r.status == 200

            # Weights: read, write (float32 over OSC), read back; a snapshot and its recall.
            async with http.get(base + "/api/agents/s1/weights") as r:
                weights = (await r.json())["weights"]
            assert len(weights) > 50 and all(abs(w) < 100 for w in weights)
            frozen = {"params": {"learn": 0}}        # so the written weights stay put
            async with http.patch(base + "/api/agents/s2", headers=auth, json=frozen) as r:
                assert r.status == 200
            async with http.get(base + "/api/agents/s2/weights") as r:
                n2 = len((await r.json())["weights"])
            new = [0.001 * i for i in range(n2)]
            async with http.put(base + "/api/agents/s2/weights", headers=auth,
                                json={"weights": new}) as r:
                body = await r.json()
                assert r.status == 200, body
            assert body["weights"] == pytest.approx(new, abs=1e-6)
            async with http.put(base + "/api/agents/s2/weights", headers=auth,
                                json={"weights": [1.0, 2.0]}) as r:
                assert r.status == 400 and "refused" in (await r.json())["error"]
            async with http.post(base + "/api/agents/s2/snapshot", headers=auth,
                                 json={"name": "ramp"}) as r:
                assert (await r.json()) == {"agent": "s2", "snapshot": "ramp"}
            async with http.post(base + "/api/agents/s2/recall", headers=auth,
                                 json={"name": "nope"}) as r:
                assert r.status == 400 and "nope" in (await r.json())["error"]
            async with http.patch(base + "/api/agents/s2", headers=auth,
                                  json={"params": {"learn": 1}}) as r:
                assert r.status == 200

            # Routes and scenes.
            for src, dst in (("s1", "s2"), ("s2", "u1"), ("u1", "s1")):
                async with http.post(base + "/api/routes", headers=auth,
                                     json={"from": src, "to": dst, "gain": 0.5,
                                           "delay_ms": 10.0}) as r:
                    assert r.status == 201, await r.text()
            async with http.patch(base + "/api/routes/s1->s2", headers=auth,
                                  json={"gain": 0.25, "shape": "tanh"}) as r:
                assert (await r.json())["gain"] == 0.25
            async with http.post(base + "/api/scenes", headers=auth, json={"name": "calm"}) as r:
                calm = await r.json()
                assert r.status == 201 and sorted(calm["agents"]) == ["s1", "s2", "u1"]
                assert calm["agents"]["s1"]["params"]["lr"] == pytest.approx(0.3125, rel=1e-6)
                assert len(calm["agents"]["s1"]["weights"]) > 50
            async with http.patch(base + "/api/agents/s1", headers=auth,
                                  json={"params": {"lr": 0.9}}) as r:
                assert r.status == 200
            async with http.post(base + "/api/scenes", headers=auth, json={"name": "wild"}) as r:
                assert r.status == 201
            async with http.post(base + "/api/scenes/interpolate", headers=auth,
                                 json={"a": "calm", "b": "wild", "t": 0.5}) as r:
                assert (await r.json())["s1"] == "ok"
            expected_mid = 0.5 * (0.3125 + 0.9)
            assert (await _osc_value(s1.osc_port, "/lr"))[0] == pytest.approx(expected_mid, rel=1e-6)
            async with http.post(base + "/api/scenes/calm/recall", headers=auth) as r:
                assert (await r.json()) == {"s1": "ok", "s2": "ok", "u1": "ok"}
            assert (await _osc_value(s1.osc_port, "/lr"))[0] == pytest.approx(0.3125, rel=1e-6)

            # A WebSocket sees s2 die (kill -9: no goodbye) within 3 s.
            async with http.ws_connect(base + "/ws", headers=auth) as ws:
                hello = await ws.receive_json(timeout=2)
                assert hello["type"] == "hello"
                assert sorted(a["id"] for a in hello["agents"] if a["id"] in OURS) == sorted(OURS)
                # Telemetry: every online agent's levels, at most TELEMETRY_HZ pushes a second.
                loop = asyncio.get_running_loop()
                t0, pushes, seen = loop.time(), 0, set()
                while loop.time() - t0 < 1.0:
                    msg = await ws.receive_json(timeout=2)
                    if msg["type"] == "telemetry":
                        pushes += 1
                        for agent_id, frame in msg["agents"].items():
                            assert 0.0 <= frame["rms"] <= frame["peak"] <= 1.0
                            seen.add(agent_id)
                print(f"telemetry: {pushes} pushes in 1 s")
                # At most TELEMETRY_HZ (30) a second: 31 pushes fit in a second's edges.
                assert seen == {"s1", "s2", "u1"} and 5 <= pushes <= TELEMETRY_HZ + 1
                await ws.send_json({"id": 7, "cmd": "routes"})
                s2.proc.kill()
                killed = time.monotonic()
                offline_after = None
                got_reply = False
                while offline_after is None:
                    msg = await ws.receive_json(timeout=5)
                    if msg["type"] == "reply" and msg["id"] == 7:
                        got_reply = msg["ok"] and len(msg["result"]) == 3
                    if msg["type"] == "agent" and msg["change"] == "offline":
                        assert msg["agent"]["id"] == "s2"
                        offline_after = time.monotonic() - killed
                assert got_reply
                print(f"s2 offline {offline_after:.2f} s after kill -9")
                assert offline_after <= 3.0
            assert (await statuses())["s1"] == "online"   # the others play on
        # -- the hub restarts: state restored from disk, agents re-adopted ----------
        async with running_hub(tmp_path / "hub", key=key) as (hub2, base2), \
                aiohttp.ClientSession() as http:
            async def back():
                async with http.get(base2 + "/api/agents") as r:
                    got = {a["id"]: a["status"] for a in await r.json()}
                return got.get("s1") == "online" and got.get("u1") == "online"

            await wait_for(back, 15.0, "s1 and u1 re-adopted (u1 without asking)")
            async with http.get(base2 + "/api/routes") as r:
                routes = {x["id"]: x for x in await r.json()}
            assert set(routes) == {"s1->s2", "s2->u1", "u1->s1"}
            assert routes["s1->s2"]["gain"] == 0.25 and routes["s1->s2"]["shape"] == "tanh"
            async with http.get(base2 + "/api/scenes") as r:
                assert sorted(s["name"] for s in await r.json()) == ["calm", "wild"]
            s1_json = {}

            async def s1_read():    # online first; its /state is read by the resume after
                nonlocal s1_json
                async with http.get(base2 + "/api/agents/s1") as r:
                    s1_json = await r.json()
                return "lr" in s1_json["params"]

            await wait_for(s1_read, 10.0, "s1's parameters read back after the restart")
            assert s1_json["desired"]["lr"] == pytest.approx(0.3125, rel=1e-6)
            assert s1_json["params"]["lr"] == pytest.approx(0.3125, rel=1e-6)
            async with http.get(base2 + "/api/events?limit=1000") as r:
                kinds = [e["kind"] for e in await r.json()]
            assert "scene_saved" in kinds and kinds.count("hub_started") == 2
            assert hub2.token == hub.token and hub.token not in caplog.text
        assert broken == [], broken[:5]
    finally:
        await asyncio.gather(*(a.stop() for a in agents))




async def test_config_rings_seed_routes_and_deployed_cycles_need_delay(tmp_path):
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(DEPLOYED, "dep.toml")
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http:
        async with http.get(base + "/api/routes") as r:
            routes = {x["id"]: x for x in await r.json()}
        assert set(routes) == {"loop:a->b", "loop:b->c", "loop:c->a"}
        assert routes["loop:b->c"]["gain"] == 0.5 and routes["loop:b->c"]["delay_ms"] == 5.0
        async with http.get(base + "/api/installation") as r:
            cfg = (await r.json())["config"]
        assert cfg["ring"] == [{"agents": ["a", "b", "c"], "name": "loop", "gain": 0.5,
                                "delay_ms": 5.0, "shape": "none"}] and "route" not in cfg
        async with http.post(base + "/api/routes", json={"from": "a", "to": "c"}) as r:
            assert r.status == 201
        async with http.post(base + "/api/routes", json={"from": "c", "to": "a"}) as r:
            body = await r.json()
            assert r.status == 400 and "feedback cycle a -> c -> a has no delay" in body["error"]
        async with http.post(base + "/api/routes", json={"from": "c", "to": "a",
                                                          "delay_ms": 1.0}) as r:
            assert r.status == 201
        async with http.patch(base + "/api/routes/a->c", json={"gain": 99}) as r:
            assert r.status == 400 and "gain must be a number in [-16, 16]" in (await r.json())["error"]
        async with http.delete(base + "/api/routes/loop:c->a") as r:
            assert r.status == 200
        async with http.post(base + "/api/rings", json={"name": "tri", "agents": ["a", "b", "c"],
                                                         "delay_ms": 3.0, "gain": 0.7}) as r:
            ring = await r.json()
            assert r.status == 201 and [e["id"] for e in ring] == ["tri:a->b", "tri:b->c",
                                                                   "tri:c->a"]
            assert hub.routes["tri:c->a"]["gain"] == 0.7
        async with http.post(base + "/api/rings", json={"name": "bad", "agents": ["a", "q"]}) as r:
            assert r.status == 400 and "unknown agent 'q'" in (await r.json())["error"]
        async with http.delete(base + "/api/rings/tri") as r:
            assert len((await r.json())["deleted"]) == 3 and "tri:a->b" not in hub.routes
        async with http.post(base + "/api/record/start", json={"name": "take"}) as r:
            assert r.status == 409 and "needs simulated mode" in (await r.json())["error"]
        async with http.get(base + "/api/routes/loop:c->a") as r:
            assert r.status == 404
        # The config as edited: the loop lost an edge, so its other two are routes now.
        async with http.get(base + "/api/installation") as r:
            edited = (await r.json())["config"]
        assert "ring" not in edited
        assert sorted((e["from"], e["to"], e["gain"], e["delay_ms"]) for e in edited["route"]) \
            == [("a", "b", 0.5, 5.0), ("a", "c", 1.0, 0.0), ("b", "c", 0.5, 5.0),
                ("c", "a", 1.0, 1.0)]
    # A restarted hub (same config file) serves the edited routes and config.
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession() as http:
        async with http.get(base + "/api/routes") as r:
            assert {x["id"] for x in await r.json()} == {"loop:a->b", "loop:b->c", "a->c", "c->a"}
        async with http.get(base + "/api/installation") as r:
            assert (await r.json())["config"] == edited
        stored = await hub.store.config()
        assert 'from = "c"' in stored and "[[ring]]" not in stored


ROOMY = """
[installation]
name = "roomy"

[room]
size = [6.0, 4.0, 3.0]
rt60 = 0.6

[[agent]]
id = "a"
model = "autoregnn"
speaker = [1.0, 1.0, 1.0]
mic = [1.5, 1.0, 1.0]

[[agent]]
id = "b"
model = "autoregnn"
speaker = [5.0, 3.0, 1.0]
mic = [4.5, 3.0, 1.0]
"""


async def test_room_get_put_checked_stored_pushed_and_restored(tmp_path):
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(ROOMY, "roomy.toml")
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http, \
            http.ws_connect(base + "/ws") as ws:
        assert (await ws.receive_json(timeout=2))["type"] == "hello"
        async with http.get(base + "/api/room") as r:
            room = await r.json()
        assert room["size"] == [6.0, 4.0, 3.0] and room["rt60"] == 0.6
        assert room["listener"] == [3.0, 2.0, 1.5]
        # Every problem at once: a room too small for b, too dry, its listener outside.
        async with http.put(base + "/api/room", json={"size": [4.0, 4.0, 3.0], "rt60": 0.01,
                                                      "listener": [9.0, 1.0, 1.0]}) as r:
            error = (await r.json())["error"]
            assert r.status == 400
        for part in ("rt60 0.01 s is too short", "listener [9.0, 1.0, 1.0] is outside the room",
                     "speaker [5.0, 3.0, 1.0] is outside the room [4.0, 4.0, 3.0] m",
                     "mic [4.5, 3.0, 1.0] is outside the room"):
            assert part in error, (part, error)
        async with http.put(base + "/api/room", json={"size": [6, 4, 3], "rt60": 0.5,
                                                      "sise": 1}) as r:
            assert r.status == 400 and "unknown key 'sise'; did you mean 'size'?" in \
                (await r.json())["error"]
        assert hub.room == config.room
        async with http.put(base + "/api/room", json={"size": [8.0, 5.0, 3.0],
                                                      "absorption": 0.3}) as r:
            assert r.status == 200
            put = await r.json()
        assert put["size"] == [8.0, 5.0, 3.0] and put["absorption"] == 0.3 and put["rt60"] is None
        while (msg := await ws.receive_json(timeout=2))["type"] != "event":
            pass
        assert msg["event"]["kind"] == "room_changed" and msg["event"]["room"] == put
        async with http.get(base + "/api/installation") as r:
            assert (await r.json())["config"]["room"] == {k: v for k, v in put.items()
                                                          if v is not None}
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession() as http, http.get(base + "/api/room") as r:
        assert await r.json() == put


async def test_osc_api_routes_panic_and_errors(tmp_path):
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(DEPLOYED, "dep.toml")
    from anamnesis.hub.api.osc import HubOscServer

    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, config=config, spawn=False)
    await hub.start()
    osc_api = HubOscServer(hub)           # attached as anamnesis.hub.cli.hub does
    await osc_api.start(LOOPBACK, 0)
    client = await OscTestClient.open(osc_api.port)
    try:
        assert await client.request("/hub/ping") == ("/hub/pong", [])
        assert await client.request("/hub/route", "a", "c", 0.25) == ("/hub/ok", ["/hub/route"])
        assert hub.routes["a->c"]["gain"] == 0.25 and hub.routes["a->c"]["delay_ms"] == 0.0
        assert await client.request("/hub/route", "a", "c", 0.5) == ("/hub/ok", ["/hub/route"])
        assert hub.routes["a->c"]["gain"] == 0.5
        assert await client.request("/hub/panic") == ("/hub/ok", ["/hub/panic"])
        assert [e["kind"] for e in hub.events][-1] == "panic"
        for args, expected in [
            (("/hub/route", "a", "zz", 1.0), "unknown agent 'zz'"),
            (("/hub/route", "a", 1.0), "expected arguments ssf"),
            (("/hub/scene/recall", "nope"), "no scene 'nope'"),
            (("/hub/agent/zz/lr", 0.1), "no agent 'zz'"),
            (("/hub/nonsense",), "unknown address"),
        ]:
            address, reply = await client.request(*args)
            assert address == "/hub/error" and expected in reply[0], (args, reply)
        client.send_raw(b"not osc at all")
        address, reply = await client.recv_one()
        assert address == "/hub/error" and osc_api.counts["malformed"] == 1
    finally:
        client.close()
        await osc_api.close()
        await hub.close()


async def test_websocket_commands_mirror_the_rest_writes(tmp_path):
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(DEPLOYED, "dep.toml")
    async with running_hub(tmp_path / "hub", config=config) as (hub, base), \
            aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError, match="401"):
            await http.ws_connect(base + "/ws")        # no token: refused
    async with running_hub(tmp_path / "hub2", config=config) as (hub, base), \
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http, \
            http.ws_connect(base + "/ws") as ws:
        assert (await ws.receive_json(timeout=2))["type"] == "hello"

        async def command(**msg):
            await ws.send_json(msg)
            while True:
                reply = await ws.receive_json(timeout=2)
                if reply["type"] == "reply":
                    return reply

        reply = await command(id=1, cmd="add_route", route={"from": "a", "to": "c", "delay_ms": 2})
        assert reply["ok"] and reply["result"]["id"] == "a->c" and "a->c" in hub.routes
        reply = await command(id=2, cmd="update_route", route_id="a->c", route={"gain": 0.1})
        assert reply["ok"] and hub.routes["a->c"]["gain"] == 0.1
        reply = await command(id=3, cmd="adopt", agent="ghost")
        assert reply == {"type": "reply", "id": 3, "ok": False, "error": "no agent 'ghost'"}
        reply = await command(id=4, cmd="fly")
        assert not reply["ok"] and "unknown command 'fly'" in reply["error"]
        await ws.send_str("{oops")
        reply = await ws.receive_json(timeout=2)
        assert not reply["ok"] and reply["error"].startswith("malformed JSON")
        reply = await command(id=5, cmd="events")
        assert reply["ok"] and [e["kind"] for e in reply["result"]][-2:] == \
            ["route_added", "route_changed"]
        reply = await command(id=6, cmd="delete_route", route_id="a->c")
        assert reply["ok"] and "a->c" not in hub.routes


async def test_hub_snapshots_keep_weights_and_params_and_write_them_back(tmp_path):
    from numpy.testing import assert_allclose

    key = generate_key(tmp_path / "installation.key")
    agent = await AgentProcess.start(tmp_path / "k1", agent_id="k1", extra=(
        "--installation", "test", "--key-file", str(tmp_path / "installation.key")))
    broken: list[str] = []     # answers the OpenAPI document misstates
    try:
        async with running_hub(tmp_path / "hub", key=key) as (hub, base), \
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"},
                                      trace_configs=[checked_answers(AnswerChecker(
                                          openapi_document(create_app(hub))), broken)]) as http:
            async def online():
                entry = hub.registry.get("k1")
                return entry is not None and entry.online

            await wait_for(online, 15.0, "k1 adopted")
            # Listening in through the hub: a redirect to the agent's own SDP URL, so the
            # agent streams to the asking client's address (never reflected by the hub).
            async with http.get(base + "/api/agents/k1/streams/out.sdp?port=5999") as r:
                sdp = await r.text()
                assert r.status == 200, sdp
                assert str(r.url) == (f"http://127.0.0.1:{agent.http_port}"
                                      "/streams/out.sdp?port=5999")
            assert "m=audio 5999 RTP/AVP 97" in sdp and "a=rtpmap:97 L24/48000/1" in sdp
            async with http.get(base + "/api/agents/k1/streams/bogus.sdp?port=5999") as r:
                assert r.status == 404 and "no stream 'bogus'" in (await r.json())["error"]
            async with http.get(base + "/api/agents/zz/streams/out.sdp?port=5999") as r:
                assert r.status == 404
            async with http.patch(base + "/api/agents/k1",   # frozen: the weights stay put
                                  json={"params": {"learn": 0, "lr": 0.375}}) as r:
                assert r.status == 200
            async with http.get(base + "/api/agents/k1/weights") as r:
                kept = (await r.json())["weights"]
            async with http.post(base + "/api/agents/k1/snapshots", json={"name": "a/b"}) as r:
                assert r.status == 400 and "no '/'" in (await r.json())["error"]
            async with http.post(base + "/api/agents/k1/snapshots", json={"name": "one"}) as r:
                saved = await r.json()
                assert r.status == 201, saved
            assert saved["name"] == "one" and saved["model"] == "autoregnn"
            assert saved["weights"] == len(kept) == 8 * 12 + 8 + 8 + 1
            assert saved["params"]["lr"] == pytest.approx(0.375, rel=1e-6)
            async with http.put(base + "/api/agents/k1/weights",
                                json={"weights": [0.0] * len(kept)}) as r:
                assert r.status == 200
            async with http.patch(base + "/api/agents/k1", json={"params": {"lr": 0.125}}) as r:
                assert r.status == 200
            async with http.post(base + "/api/agents/k1/snapshots/one/recall") as r:
                recalled = await r.json()
                assert r.status == 200, recalled
            assert recalled["params"]["lr"] == pytest.approx(0.375, rel=1e-6)
            assert (await _osc_value(agent.osc_port, "/lr"))[0] == pytest.approx(0.375, rel=1e-6)
            async with http.get(base + "/api/agents/k1/weights") as r:
                assert_allclose((await r.json())["weights"], kept, rtol=0, atol=1e-7)
            async with http.post(base + "/api/agents/k1/snapshots/nope/recall") as r:
                assert r.status == 404 and "no snapshot 'nope'" in (await r.json())["error"]
            async with http.get(base + "/api/agents/k1/snapshots") as r:
                assert [x["name"] for x in await r.json()] == ["one"]
        assert broken == [], broken[:5]
        async with running_hub(tmp_path / "hub", key=key) as (hub, base), \
                aiohttp.ClientSession() as http:
            async with http.get(base + "/api/agents/k1/snapshots") as r:
                listed = await r.json()
            assert [(x["name"], x["sha256"]) for x in listed] == [("one", saved["sha256"])]
            async with http.get(base + "/api/agents/zz/snapshots") as r:
                assert r.status == 404
    finally:
        await agent.stop()


async def test_a_burst_of_adoptions_is_persisted_whole(tmp_path):
    import json

    from anamnesis.agents.protocol.txt import PROTOCOL_VERSION, build_txt, parse_txt

    async with running_hub(tmp_path / "hub") as (hub, _base):
        for i in range(20):
            txt = build_txt({"id": f"x{i}", "model": "autoregnn", "v": PROTOCOL_VERSION,
                             "osc": 9000 + i, "http": 9100 + i, "rtp": 0, "inst": "t",
                             "addr": LOOPBACK, "ts": 1}, None)
            hub.registry.announce(parse_txt(txt), verified=False)
        for i in range(20):
            hub.adopt(f"x{i}")
        await hub.flush()
        saved = json.loads((tmp_path / "hub" / "adopted.json").read_text())
        assert saved == {f"x{i}": LOOPBACK for i in range(20)}   # each pinned to its host
        assert hub.counts["store_errors"] == 0


# ---------------------------------------------------------------------------
# The dashboard's files
# ---------------------------------------------------------------------------


async def test_the_dashboard_files_are_served_with_their_types_and_nothing_else(tmp_path):
    from anamnesis.hub.api.keys import WEB_ROOT
    from anamnesis.hub.resources import web_dir

    web = tmp_path / "web"
    (web / "ui").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>dash</title>")
    (web / "app.js").write_text("export const x = 1;\n")
    (web / "worklet.js").write_text("registerProcessor('p', class {});\n")
    (web / "style.css").write_text("body { color: red }\n")
    (web / "ui" / "matrix.js").write_text("export const m = 2;\n")
    (web / ".secret.js").write_text("hidden")
    (web / "notes.py").write_text("print('no')")
    (tmp_path / "outside.js").write_text("outside")
    (web / "link.js").symlink_to(tmp_path / "outside.js")
    (tmp_path / "hub").mkdir()
    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, spawn=False)
    await hub.start()
    app = create_app(hub)
    assert app[WEB_ROOT] == web_dir().resolve()      # the checkout's (or the wheel's) web/
    app[WEB_ROOT] = web.resolve()
    server = TestServer(app, host=LOOPBACK, port=0)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as http:   # no token: the files are open reads
            want = {"/": ("text/html", "<!doctype html><title>dash</title>"),
                    "/index.html": ("text/html", "<!doctype html><title>dash</title>"),
                    "/app.js": ("text/javascript", "export const x = 1;\n"),
                    "/worklet.js": ("text/javascript", "registerProcessor('p', class {});\n"),
                    "/style.css": ("text/css", "body { color: red }\n"),
                    "/ui/matrix.js": ("text/javascript", "export const m = 2;\n")}
            for path, (ctype, body) in want.items():
                async with http.get(base + path) as r:
                    assert r.status == 200, path
                    assert r.content_type == ctype and await r.text() == body, path
                    assert r.headers["Cache-Control"] == "no-cache"
                    assert r.headers["X-Content-Type-Options"] == "nosniff"
                    csp = r.headers["Content-Security-Policy"]
                    assert "script-src 'self'" in csp and "object-src 'none'" in csp
                    assert f"ws://{server.host}:{server.port}" in csp
            refused = ["/ui", "/ui/", "/.secret.js", "/notes.py", "/link.js", "/missing.js",
                       "/../outside.js", "/%2e%2e/outside.js", "/ui/%2e%2e/%2e%2e/outside.js",
                       "/ui/..%2f..%2foutside.js", "/%2e%2e%5coutside.js", "//etc/passwd",
                       "/ui//matrix.js"]
            for path in refused:
                async with http.get(base + path) as r:
                    assert r.status == 404, (path, r.status)
                    assert (await r.json())["error"].startswith("no file")
            async with http.post(base + "/app.js") as r:
                assert r.status == 401              # writes need the token, files or not
        # The real dashboard's modules pass the same resolver.
        from anamnesis.hub.api.static import _resolve_web_file

        real = web_dir().resolve()
        for js in sorted(real.rglob("*.js"))[:5]:
            assert _resolve_web_file(real, str(js.relative_to(real))) == js
    finally:
        await server.close()
        await hub.close()


async def test_another_installations_agents_are_listed_only_on_request(tmp_path):
    """Two pieces in one building: the hub of installation "dep" lists its own unsigned
    agent as pending, and a next-door installation's agent only with ``?others=1``."""
    from anamnesis.hub.installation.check import parse_config

    agents = list(await asyncio.gather(
        AgentProcess.start(tmp_path / "p1", agent_id="p1", extra=("--installation", "dep")),
        AgentProcess.start(tmp_path / "n1", agent_id="n1",
                           extra=("--installation", "next-door"))))
    try:
        async with running_hub(tmp_path / "hub", config=parse_config(DEPLOYED, "dep.toml")) \
                as (hub, base), aiohttp.ClientSession() as http:
            async def listed(query: str = "") -> dict[str, str]:
                async with http.get(base + "/api/agents" + query) as r:
                    assert r.status == 200
                    return {a["id"]: a["status"] for a in await r.json()
                            if a["id"] in ("p1", "n1")}

            async def both_heard() -> bool:
                return "p1" in await listed() and ("next-door", "n1") in hub.browser.others

            await wait_for(both_heard, 15.0, "p1 and the next-door n1 announced")
            assert await listed() == {"p1": "pending"}
            assert await listed("?others=1") == {"p1": "pending", "n1": "elsewhere"}
            async with http.get(base + "/api/agents?others=2") as r:
                assert r.status == 400 and "others must be 0 or 1" in (await r.json())["error"]
    finally:
        await asyncio.gather(*(a.stop() for a in agents))
