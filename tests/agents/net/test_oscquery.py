"""OSCQuery over real HTTP and WebSocket on 127.0.0.1, and python-oscquery (PyPI) as a client."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from numpy.testing import assert_allclose
from support.controlplane import (
    LOOPBACK,
    MODEL_KINDS,
    AgentProcess,
    OscTestClient,
    running_agent,
)
from support.oscquery import browse_with_python_oscquery, validate_node

from anamnesis.agents.net.services import start_control_services
from anamnesis.agents.protocol.key import generate_key
from anamnesis.agents.protocol.oscmap import address_of, build_message, parse_packet

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("loop_watchdog")]

@pytest_asyncio.fixture
async def agent(tmp_path):
    """A real autoregnn agent (null clock) with its control services, and an HTTP session."""
    async with running_agent(tmp_path / "state") as control:
        services = await start_control_services(
            control, interface=LOOPBACK, osc_port=0, http_port=0, installation="test",
            key=None, announce=False)
        async with aiohttp.ClientSession(
                base_url=f"http://{LOOPBACK}:{services.http_port}") as http:
            try:
                yield control, services, http
            finally:
                await services.close()


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, object]:
    async with http.get(url) as response:
        if response.status == 200:
            return 200, await response.json()
        return response.status, await response.text()


async def test_namespace_validates_and_is_live(agent):
    control, _, http = agent
    status, root = await _get(http, "/")
    assert status == 200
    specs = control.specs()
    n_nodes = validate_node(root, "/")
    assert n_nodes == 1 + len(specs) + 6
    contents = root["CONTENTS"]
    for name in specs:
        node = contents[address_of(name)[1:]]
        assert node["ACCESS"] == 3
        assert node["DESCRIPTION"]
    assert contents["gain"]["UNIT"] == ["gain.db"]
    assert contents["gain"]["RANGE"] == [{"MIN": -60.0, "MAX": 12.0}]
    assert contents["mute"]["TYPE"] == "i" and contents["mute"]["RANGE"] == [{"MIN": 0, "MAX": 1}]
    # A button (an impulse) for controllers that build their surface from OSCQuery.
    assert contents["panic"] == {"FULL_PATH": "/panic", "ACCESS": 2, "TYPE": "I",
                                 "VALUE": [None],
                                 "DESCRIPTION": contents["panic"]["DESCRIPTION"]}
    assert (await _get(http, "/panic?VALUE"))[0] == 204
    control.set("learn", 0)
    weights = await control.get_weights()          # a block later: learning has stopped
    status, root = await _get(http, "/")
    contents = root["CONTENTS"]
    assert contents["weights"]["TYPE"] == "f" * len(weights)
    assert_allclose(contents["weights"]["VALUE"], weights, rtol=0, atol=0)
    # Live: a change made through the facade shows at once.
    control.set("gain", -12.0)
    status, node = await _get(http, "/gain")
    assert status == 200 and node["VALUE"] == [-12.0]
    status, root = await _get(http, "/")
    assert root["CONTENTS"]["gain"]["VALUE"] == [-12.0]


@pytest.mark.parametrize("kind", MODEL_KINDS)
async def test_namespace_of_every_model_validates(tmp_path, kind):
    """Every model's namespace follows the field list, each node alone matches the tree,
    and every parameter's VALUE equals the facade's live value."""
    async with running_agent(tmp_path / "state", kind) as control:
        services = await start_control_services(
            control, interface=LOOPBACK, osc_port=0, http_port=0, installation="test",
            key=None, announce=False)
        try:
            async with aiohttp.ClientSession(
                    base_url=f"http://{LOOPBACK}:{services.http_port}") as http:
                status, root = await _get(http, "/")
                assert status == 200
                aliases = sum(len(s.aliases) for s in control.specs().values())
                assert validate_node(root, "/") == 1 + len(control.specs()) + aliases + 6
                values = control.values()
                for name, spec in control.specs().items():
                    address = address_of(name)
                    status, node = await _get(http, address)
                    assert status == 200 and validate_node(node, address) == 1
                    expected = np.asarray(values[name]).ravel().tolist()
                    if spec.kind in ("float", "array"):
                        assert_allclose(node["VALUE"], expected, rtol=1e-12)
                    else:
                        assert node["VALUE"] == [int(v) if spec.kind != "choice" else v
                                                 for v in expected]
        finally:
            await services.close()


async def test_attribute_queries_and_errors(agent):
    control, _, http = agent
    status, body = await _get(http, "/lr?VALUE")
    assert status == 200 and body == {"VALUE": [pytest.approx(control.values()["lr"])]}
    status, body = await _get(http, "/lr?RANGE")
    assert status == 200 and set(body) == {"RANGE"}
    status, body = await _get(http, "/gain?UNIT")
    assert body == {"UNIT": ["gain.db"]}
    status, _ = await _get(http, "/panic?VALUE")
    assert status == 204                      # no value at this node
    status, _ = await _get(http, "/lr?RANGE&VALUE")
    assert status == 400
    status, text = await _get(http, "/lr?COLOR")
    assert status == 400 and "unknown attribute 'COLOR'" in text
    status, text = await _get(http, "/nothing/here")
    assert status == 404 and "no OSC node at /nothing/here" in text
    status, _ = await _get(http, "/ping")      # plain-OSC verb: not in the namespace
    assert status == 404


async def test_host_info(agent):
    _, services, http = agent
    status, info = await _get(http, "/?HOST_INFO")
    assert status == 200
    assert info["NAME"] == "anamnesis t1" or info["NAME"].startswith("anamnesis ")
    assert info["OSC_IP"] == LOOPBACK and info["OSC_PORT"] == services.osc_port
    assert info["OSC_TRANSPORT"] == "UDP"
    assert info["WS_IP"] == LOOPBACK and info["WS_PORT"] == services.http_port
    extensions = info["EXTENSIONS"]
    for key in ("ACCESS", "VALUE", "RANGE", "DESCRIPTION", "LISTEN", "UNIT", "CLIPMODE"):
        assert extensions[key] is True
    assert extensions["PATH_CHANGED"] is False


async def _next_binary(ws: aiohttp.ClientWebSocketResponse, timeout: float = 2.0):
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type == aiohttp.WSMsgType.BINARY, message
    return parse_packet(message.data)


async def test_websocket_listen_pushes_changes_from_anyone(agent):
    control, services, http = agent
    osc = await OscTestClient.open(services.osc_port)
    try:
        async with http.ws_connect("/") as ws:
            await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/lr"}))
            await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/act_mix"}))
            await asyncio.sleep(0.05)
            osc.send("/lr", 0.625)                         # change over UDP OSC
            assert await _next_binary(ws) == [("/lr", [0.625])]
            control.set("act_mix", 0.5, index=1)          # change through the facade
            [(address, args)] = await _next_binary(ws)
            assert address == "/act_mix" and args[1] == 0.5
            control.set("gain", -3.0)                      # not listened: no push
            await ws.send_str(json.dumps({"COMMAND": "IGNORE", "DATA": "/lr"}))
            await ws.send_str("not json")                  # counted, ignored
            await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/nope"}))
            await asyncio.sleep(0.05)
            osc.send("/lr", 0.25)
            control.set("act_mix", 0.75, index=0)
            [(address, args)] = await _next_binary(ws)     # only act_mix arrives
            assert address == "/act_mix" and args[0] == 0.75
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.2)
        counts = services.stats()["oscquery"]
        assert counts["ws_bad_commands"] == 2 and counts["ws_pushes"] == 3
    finally:
        osc.close()


async def test_websocket_osc_steers_except_from_browsers(agent):
    control, _, http = agent
    async with http.ws_connect("/") as ws:
        await ws.send_bytes(build_message("/gain", [-9.0]))
        await ws.send_bytes(build_message("/gain", []))
        assert await _next_binary(ws) == [("/gain", [-9.0])]
        await ws.send_bytes(build_message("/gain", [99.0]))
        [(address, args)] = await _next_binary(ws)
        assert address == "/error" and "gain must be in" in args[0]
    assert control.values()["gain"] == -9.0
    async with http.ws_connect("/", headers={"Origin": "http://evil.example"}) as ws:
        await ws.send_bytes(build_message("/gain", [0.0]))
        [(address, args)] = await _next_binary(ws)
        assert address == "/error" and "browser origin" in args[0]
    assert control.values()["gain"] == -9.0


async def test_websockets_closed_on_shutdown(tmp_path):
    async with running_agent(tmp_path / "state") as control:
        services = await start_control_services(
            control, interface=LOOPBACK, osc_port=0, http_port=0, installation="test",
            key=None, announce=False)
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"http://{LOOPBACK}:{services.http_port}/") as ws:
                started = time.monotonic()
                closing = asyncio.create_task(services.close())
                message = await asyncio.wait_for(ws.receive(), 3.0)
                assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
                await closing
                assert time.monotonic() - started < 3.0


async def test_python_oscquery_browses_an_agent_process(tmp_path):
    """python-oscquery (PyPI) finds a real agent process by zeroconf on 127.0.0.1,
    reads HOST_INFO, parses the whole namespace, and sees a value set over OSC."""
    key_file = tmp_path / "installation.key"
    generate_key(key_file)
    agent = await AgentProcess.start(
        tmp_path / "state", agent_id="pq1",
        extra=("--fresh", "--installation", "pyosq", "--key-file", str(key_file)))
    client = await OscTestClient.open(agent.osc_port)
    try:
        client.send("/lr", 0.5)
        assert await client.request("/lr") == ("/lr", [0.5])
        result = await asyncio.to_thread(browse_with_python_oscquery,
                                         "anamnesis pq1 (pyosq)", 15.0)
        host_info = result["host_info"]
        assert host_info.name == "anamnesis pq1"
        assert host_info.osc_port == agent.osc_port and host_info.osc_transport == "UDP"
        root = result["root"]
        paths = {node.full_path for node in root}
        assert {"/lr", "/ridge", "/learn", "/act_mix", "/gain", "/mute"} <= paths
        assert {"/panic", "/unpanic", "/reset", "/weights", "/snapshot", "/recall"} <= paths
        assert result["lr"].value == [0.5]
        assert any("(pyosq)" in n for n in result["osc_services"])
        print(f"\npython-oscquery found the agent {result['found_after']:.2f} s "
              "after browsing began")
    finally:
        client.close()
        assert await agent.stop() == 0


async def test_slow_websocket_client_cannot_grow_memory(agent):
    """Pushes to a client that never reads are capped (oldest dropped), the loop stays free."""
    control, services, http = agent
    async with http.ws_connect("/") as ws:
        await ws.send_str(json.dumps({"COMMAND": "LISTEN", "DATA": "/gain"}))
        await asyncio.sleep(0.05)
        for i in range(2000):
            control.set("gain", -float(i % 60))
        await asyncio.sleep(0.1)
        counts = services.stats()["oscquery"]
        assert counts["ws_pushes"] == 2000
        received = 0
        while True:
            try:
                message = await asyncio.wait_for(ws.receive(), 0.3)
            except TimeoutError:
                break
            assert message.type == aiohttp.WSMsgType.BINARY
            received += 1
        # Every push was either delivered or dropped from the bounded queue.
        assert received + counts["ws_dropped"] >= 2000 - 1
        assert received <= 2000
    assert math.isfinite(float(np.float64(control.values()["gain"])))


async def test_bad_http_queries_are_logged_once_per_peer(agent, caplog):
    _, services, http = agent
    with caplog.at_level(logging.WARNING, logger="anamnesis.agents.net.oscquery"):
        for _ in range(10):
            assert (await _get(http, "/lr?COLOR"))[0] == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "anamnesis.agents.net.oscquery"]
    assert len(lines) == 1 and "unknown attribute 'COLOR'" in lines[0]
    assert services.stats()["oscquery"]["bad_requests"] == 10
