"""Weights on watch and parameter specs, on a real simulated hub with two real agent
processes (an autoregnn and an unlearn) on 127.0.0.1: ``watch_weights`` pushes each
watched agent's weights about 3 times a second to every socket that watches it, reading
each agent once per period however many sockets watch, and stops on ``[]``; the agents'
``specs`` describe their models' parameters."""

from __future__ import annotations

import asyncio
import itertools

import aiohttp
import pytest
import pytest_asyncio
from support.hubs import live_hub

from anamnesis.hub.api.weights_watch import WATCH_PERIOD_S
from anamnesis.hub.fleet.specs import model_specs

on_the_live_loop = pytest.mark.asyncio(loop_scope="module")

TWO = """
[installation]
name = "watch2"
block = 256
mode = "simulated"

[[agent]]
id = "wa1"
model = "autoregnn"
params = { hidden_size = 6, lr = 0.5, ridge = 1e-4 }
spawn = true
seed = 1

[[agent]]
id = "wu1"
model = "unlearn"
params = { n_neurons = 8, n_inputs = 2 }
spawn = true
seed = 2

[[route]]
from = "wa1"
to = "wu1"
gain = 0.5
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(tmp_path_factory):
    async with live_hub(tmp_path_factory.mktemp("hub"), TWO, "watch2.toml") as running:
        yield running


async def _next(ws, kind: str, timeout: float = 3.0) -> dict:
    while True:
        msg = await ws.receive_json(timeout=timeout)
        if msg.get("type") == kind:
            return msg


async def _command(ws, msg_id: int, cmd: str, **args) -> dict:
    await ws.send_json({"id": msg_id, "cmd": cmd, **args})
    while True:
        reply = await _next(ws, "reply")
        if reply["id"] == msg_id:
            return reply


async def _weights_for(ws, seconds: float) -> list[dict]:
    loop = asyncio.get_running_loop()
    got, end = [], loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            msg = await ws.receive_json(timeout=left)
        except TimeoutError:
            break
        if msg.get("type") == "weights":
            got.append(msg)
    return got


@on_the_live_loop
async def test_watched_weights_arrive_at_about_3_hz_and_stop(live):
    hub, base = live
    reads: dict[str, int] = {}
    real = hub.get_weights

    async def counted(agent_id: str):      # the real read, counted
        reads[agent_id] = reads.get(agent_id, 0) + 1
        return await real(agent_id)

    hub.get_weights = counted
    auth = {"Authorization": f"Bearer {hub.token}"}
    try:
        async with aiohttp.ClientSession(headers=auth) as http, \
                http.ws_connect(base + "/ws") as one, http.ws_connect(base + "/ws") as two:
            await _next(one, "hello")
            await _next(two, "hello")
            assert (await _command(one, 1, "watch_weights", agents=["wa1", "wu1"]))["result"] \
                == ["wa1", "wu1"]
            assert (await _command(two, 1, "watch_weights", agents=["wa1"]))["result"] == ["wa1"]
            t0 = asyncio.get_running_loop().time()
            got_one, got_two = await asyncio.gather(_weights_for(one, 2.0), _weights_for(two, 2.0))
            elapsed = asyncio.get_running_loop().time() - t0
            by_agent = {a: [m for m in got_one if m["agent"] == a] for a in ("wa1", "wu1")}
            print(f"\nweights pushes in {elapsed:.2f} s: {[len(v) for v in by_agent.values()]}, "
                  f"second socket {len(got_two)}; reads {reads}")
            # About 3 a second each: 2 s give 6 (4..8 allows for the machine's load).
            for agent_id, pushes in by_agent.items():
                assert 4 <= len(pushes) <= 8, (agent_id, len(pushes))
                times = [m["t"] for m in pushes]
                assert all(b > a for a, b in itertools.pairwise(times))
            assert {m["agent"] for m in got_two} == {"wa1"} and 4 <= len(got_two) <= 8
            # The real vectors: autoregnn 12 inputs, 6 hidden: 12*6 + 6 + 6 + 1 = 85 weights.
            assert all(len(m["weights"]) == 85 for m in by_agent["wa1"])
            assert all(isinstance(x, float) for x in by_agent["wa1"][-1]["weights"])
            assert len(by_agent["wu1"][0]["weights"]) == 8 * 2
            # One read per period however many sockets watch (not one per socket). (The
            # replies, and so the pushes' "t", may bunch on a busy machine; the reads not.)
            assert reads["wa1"] <= reads["wu1"] + 2
            assert reads["wa1"] <= elapsed / WATCH_PERIOD_S + 2
            # [] stops it; the other socket's watch goes on.
            assert (await _command(one, 2, "watch_weights", agents=[]))["result"] == []
            await asyncio.sleep(WATCH_PERIOD_S)       # a read in flight may still land
            await _weights_for(one, 0.1)
            late_one, late_two = await asyncio.gather(_weights_for(one, 1.2),
                                                      _weights_for(two, 1.2))
            assert late_one == [] and len(late_two) >= 2
            # Refusals: an unknown agent, a bad list.
            reply = await _command(one, 3, "watch_weights", agents=["wa1", "ghost"])
            assert not reply["ok"] and "'ghost'" in reply["error"]
            reply = await _command(one, 4, "watch_weights", agents="wa1")
            assert not reply["ok"] and "agents" in reply["error"]
        # Closed sockets watch nothing: the reads stop.
        await asyncio.sleep(WATCH_PERIOD_S)
        before = dict(reads)
        await asyncio.sleep(1.0)
        assert reads == before
    finally:
        hub.get_weights = real
    assert hub.counts["weights_watch_errors"] == 0


@on_the_live_loop
async def test_agents_carry_their_models_parameter_specs(live):
    hub, base = live
    async with aiohttp.ClientSession() as http, http.get(base + "/api/agents") as r:
        agents = {a["id"]: a for a in await r.json()}
    nn, un = agents["wa1"]["specs"], agents["wu1"]["specs"]
    assert nn["lr"]["scale"] == "log" and nn["ridge"]["scale"] == "log"
    assert nn["lr"]["min"] == 0.0 and nn["lr"]["max"] == 50.0 and nn["lr"]["default"] == 0.1
    assert nn["lr"]["kind"] == "float" and "learning rate" in nn["lr"]["description"]
    assert nn["learn"]["kind"] == "bool"
    assert nn["act_mix"]["kind"] == "array" and nn["act_mix"]["size"] == 6   # hidden_size
    # Keyed and named as OSC and set_params name them (the model's lambda_ is /lambda).
    assert un["lambda"]["name"] == "lambda" and un["lambda"]["scale"] == "lin"
    assert "lambda_" not in un
    # Every agent's own controls too.
    assert nn["gain"]["unit"] == "dB" and (nn["gain"]["min"], nn["gain"]["max"]) == (-60, 12)
    assert un["mute"]["kind"] == "bool" and "doc" not in nn["lr"]
    assert un["lambda"]["unit"] == "rad/time unit"
    assert un["activation"]["kind"] == "choice" and "tanh" in un["activation"]["choices"]
    assert un["delays"]["size"] == 8 * 2 and un["time_scale"]["scale"] == "log"
    # The WebSocket hello carries the same.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http, \
            http.ws_connect(base + "/ws") as ws:
        hello = await _next(ws, "hello")
    assert {a["id"]: a["specs"] for a in hello["agents"]}["wa1"] == nn


def test_unknown_models_have_no_specs():
    assert model_specs("theremin") == {} and model_specs(None) == {}
    assert model_specs("autoregnn", {"hidden_size": -3}) == {}     # refused arguments
    assert model_specs("autoregnn")["act_mix"]["size"] == 8         # the defaults
    assert model_specs("autoregnn2")["interp"]["kind"]


@on_the_live_loop
async def test_a_hung_agent_is_counted_logged_once_skipped_and_resumed(live, caplog):
    """SIGSTOP the unlearn agent: its reads time out (counted, one log line), the liveness
    check marks it offline (skipped), and after SIGCONT its weights come again."""
    import logging
    import os
    import signal

    hub, base = live
    pid = hub.supervisor.children["wu1"].pid
    errors_before = hub.counts["weights_watch_errors"]
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.WARNING, logger="anamnesis.hub.api.weights_watch")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {hub.token}"}) as http, \
            http.ws_connect(base + "/ws") as ws:
        await _next(ws, "hello")
        assert (await _command(ws, 1, "watch_weights", agents=["wu1", "wa1"]))["ok"]
        assert any(m["agent"] == "wu1" for m in await _weights_for(ws, 1.0))
        os.kill(pid, signal.SIGSTOP)
        try:
            deadline = loop.time() + 15
            while hub.registry.get("wu1").online:
                assert loop.time() < deadline, "the hung agent never went offline"
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.5)           # reads in flight time out (2 s)
            errors = hub.counts["weights_watch_errors"] - errors_before
            # Offline: skipped (no more reads, no more errors), and the other agent goes on.
            during = await _weights_for(ws, 1.5)
            assert hub.counts["weights_watch_errors"] - errors_before == errors
            assert {m["agent"] for m in during} == {"wa1"}
        finally:
            os.kill(pid, signal.SIGCONT)
        assert errors >= 1
        logged = [r for r in caplog.records if "wu1" in r.getMessage()]
        assert len(logged) == 1 and "logged once" in logged[0].getMessage()
        deadline = loop.time() + 15
        while not any(m["agent"] == "wu1" for m in await _weights_for(ws, 0.5)):
            assert loop.time() < deadline, "the agent's weights never came back"
