"""Weight couplings live: a real deployed hub on 127.0.0.1 and three real agent processes on
their own (null) clocks, two AutoRegNN (ca learning a 200 Hz sine, cb a glide, both slowly: their preset inputs are at full scale)
and one Unlearn (cu). The config's blend ca ~> cb draws cb's weights towards ca's over
OSC while both play; the REST API and the WebSocket commands add, change, refuse and
delete couplings; a scene keeps them; the config as edited (what the store holds) has
them; and a SIGSTOPped agent makes its coupling count stale reads while the other agent
plays on without an xrun."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from support.controlplane import AgentProcess

from anamnesis.agents.protocol.key import generate_key
from anamnesis.hub.api.app import create_app
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.engine.weight_couplings import distance
from anamnesis.hub.installation.check import parse_config

LOOPBACK = "127.0.0.1"
on_the_live_loop = pytest.mark.asyncio(loop_scope="module")

CONFIG = """
[installation]
name = "cpl"
mode = "deployed"

[[agent]]
id = "ca"
preset = "sine200"
params = { lr = 0.004 }

[[agent]]
id = "cb"
preset = "fm"
params = { lr = 0.004 }

[[agent]]
id = "cu"
model = "unlearn"

[[coupling]]
from = "ca"
to = "cb"
kappa = 0.0
rate_hz = 20
"""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cpl")
    key_file = tmp / "k"
    key = generate_key(key_file)
    extra = ("--installation", "cpl", "--key-file", str(key_file), "--hub", LOOPBACK)
    agents = dict(zip(("ca", "cb", "cu"), await asyncio.gather(
        AgentProcess.start(tmp / "ca", agent_id="ca", extra=(*extra, "--preset", "sine200")),
        AgentProcess.start(tmp / "cb", agent_id="cb", extra=(*extra, "--preset", "fm")),
        AgentProcess.start(tmp / "cu", agent_id="cu", model="unlearn", extra=extra)),
        strict=True))
    hub = Hub(state_dir=tmp / "hub", interface=LOOPBACK, key=key,
              config=parse_config(CONFIG, "cpl.toml"))
    await hub.start()
    server = TestServer(create_app(hub), host=LOOPBACK, port=0)
    await server.start_server()
    try:
        loop = asyncio.get_running_loop()
        end = loop.time() + 30
        while not all(hub._online_peer(a) for a in agents):
            assert loop.time() < end, [(e.agent_id, e.status) for e in hub.registry.entries()]
            await asyncio.sleep(0.1)
        yield hub, str(server.make_url("")).rstrip("/"), agents
    finally:
        await server.close()
        await hub.close()
        for agent in agents.values():      # one may still be stopped (SIGSTOP test)
            if agent.proc.returncode is None:
                os.kill(agent.proc.pid, signal.SIGCONT)
        await asyncio.gather(*(a.stop() for a in agents.values()))


async def _weights(hub, agent_id):
    return np.array(await hub.get_weights(agent_id))


async def _levels(hub, ids, timeout: float = 5.0) -> dict:
    """The next telemetry frame of each of ``ids`` (they arrive at 20-30 Hz per agent)."""
    loop = asyncio.get_running_loop()
    frames: dict = {}
    hub.telemetry.take()
    end = loop.time() + timeout
    while not set(ids) <= set(frames) and loop.time() < end:
        await asyncio.sleep(0.1)
        frames.update(hub.telemetry.take())
    return frames


@on_the_live_loop
async def test_the_configs_blend_draws_cb_towards_ca_while_both_play(live):
    """The config's coupling has kappa 0: the two learn apart. Set to 0.2 (at 20 Hz over
    OSC), the distance falls below half of what it was within 20 s while both play.
    (Live, every agent learns between a read and its write, at its own pace; the exact
    figures of kappa 0.05 are the rehearsal's, tests/hub/clock/test_rehearse_couplings.py.)"""
    hub, _, _ = live
    loop = asyncio.get_running_loop()
    await asyncio.sleep(2.0)
    start = distance(await _weights(hub, "ca"), await _weights(hub, "cb"))
    await hub.update_coupling("ca~>cb", {"kappa": 0.2})
    task = hub.coupling_driver.tasks["ca~>cb"]
    t0, applied0 = loop.time(), task.applied
    ratio = 1.0
    while loop.time() - t0 < 20.0 and ratio >= 0.5:
        await asyncio.sleep(0.5)
        ratio = distance(await _weights(hub, "ca"), await _weights(hub, "cb")) / start
    elapsed = loop.time() - t0
    print(f"\nblend ca ~> cb: distance {ratio:.3f} of its start after {elapsed:.1f} s; "
          f"applied {task.applied - applied0}, stale {task.stale}")
    assert ratio < 0.5
    # the task's own clock: about 20 a second (a loaded machine skips late times)
    assert 5 * elapsed <= task.applied - applied0 <= 20 * elapsed + 2
    levels = await _levels(hub, ("ca", "cb"))
    for agent_id in ("ca", "cb"):
        assert levels.get(agent_id, {}).get("rms", 0.0) > 1e-4, levels   # both sound


@on_the_live_loop
async def test_rest_and_commands_add_change_refuse_and_delete(live):
    hub, base, _ = live
    auth = {"Authorization": f"Bearer {hub.token}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(base + "/api/couplings") as r:
            listing = await r.json()
        assert [c["id"] for c in listing] == ["ca~>cb"]
        assert listing[0]["stats"]["applied"] > 0 and listing[0]["mask"] is None
        # different shapes: refused with the reason, nothing kept
        async with http.post(base + "/api/couplings", json={"from": "ca", "to": "cu"}) as r:
            assert r.status == 400
            assert "ca has 113 weights and cu 48" in (await r.json())["error"]
        async with http.post(base + "/api/couplings",
                             json={"from": "cb", "to": "ca", "mode": "exchange"}) as r:
            assert r.status == 409                       # the pair is coupled already
        async with http.post(base + "/api/couplings",
                             json={"from": "ca", "to": "cb", "mode": "swap"}) as r:
            assert r.status in (400, 409)
        async with http.patch(base + "/api/couplings/ca~>cb",
                              json={"kappa": 0.2, "mask": [0, 1, 2]}) as r:
            body = await r.json()
            assert r.status == 200, body
        assert body["kappa"] == 0.2 and body["mask"] == [0, 1, 2]
        async with http.patch(base + "/api/couplings/ca~>cb", json={"kappa": 2}) as r:
            assert r.status == 400 and "kappa must be in [0, 1]" in (await r.json())["error"]
        async with http.patch(base + "/api/couplings/ca~>cb", json={"to": "cu"}) as r:
            assert r.status == 400 and "cannot change" in (await r.json())["error"]
        async with http.ws_connect(base + "/ws") as ws:
            hello = await ws.receive_json(timeout=5)
            assert [c["id"] for c in hello["couplings"]] == ["ca~>cb"]
            await ws.send_json({"id": 1, "cmd": "coupling_kappa", "from": "ca", "to": "cb",
                                "kappa": 0.05})
            while (reply := await ws.receive_json(timeout=5)).get("type") != "reply":
                pass
            assert reply["ok"] and reply["result"]["kappa"] == 0.05, reply
        async with http.patch(base + "/api/couplings/ca~>cb", json={"mask": None}) as r:
            assert (await r.json())["mask"] is None
    assert [k.id for k in hub.edited_config().couplings] == ["ca~>cb"]
    stored = parse_config(hub.edited_config().to_toml())
    assert stored.couplings == hub.edited_config().couplings


@on_the_live_loop
async def test_a_scene_keeps_the_couplings(live):
    hub, _, _ = live
    await hub.save_scene("paired")
    await hub.delete_coupling("ca~>cb")
    assert "ca~>cb" not in hub.coupling_driver.tasks
    await hub.recall_scene("paired")
    assert list(hub.coupling_book.couplings) == ["ca~>cb"]
    assert hub.coupling_book.couplings["ca~>cb"].kappa == 0.05
    assert "ca~>cb" in hub.coupling_driver.tasks


@on_the_live_loop
async def test_a_stopped_agent_makes_its_coupling_stale_and_the_other_plays_on(live):
    hub, _, agents = live
    task = hub.coupling_driver.tasks["ca~>cb"]
    loop = asyncio.get_running_loop()
    before = await _levels(hub, ("ca",))
    stale0, applied0 = task.stale, task.applied
    os.kill(agents["cb"].proc.pid, signal.SIGSTOP)
    try:
        t0 = loop.time()
        await asyncio.sleep(2.0)
        stopped_for = loop.time() - t0
        applied_while = task.applied - applied0
        stale_while = task.stale - stale0
    finally:
        os.kill(agents["cb"].proc.pid, signal.SIGCONT)
    frames = await _levels(hub, ("ca",))
    print(f"\ncb stopped {stopped_for:.1f} s: stale {stale_while}, applied {applied_while}; "
          f"ca {frames.get('ca')}")
    # every time while cb is stopped waits out its reply window (0.04 s) and counts stale
    assert stale_while >= 10 and applied_while <= 2
    assert frames["ca"]["rms"] > 1e-3
    assert frames["ca"]["xruns"] == before["ca"]["xruns"]
    # cb back: the coupling writes again
    applied1 = task.applied
    end = loop.time() + 10
    while task.applied == applied1:
        assert loop.time() < end, task.stats()
        await asyncio.sleep(0.1)
