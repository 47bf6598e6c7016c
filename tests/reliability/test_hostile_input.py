"""Input is checked at the edge and every handler is total (issue 14, item 13).

A real hub and its REST API and WebSocket on 127.0.0.1, fed what a fuzzer and a hostile
visitor send: requests generated from the hub's own OpenAPI document
(:mod:`support.apifuzz`: every operation, hostile path parameters, bodies of the API's own
field names with values at and past every range, raw bodies that are not JSON objects),
and the bodies the probe found answered 500 (``POST /api/routes {}``, JSON nested 1,000
deep, integers of 4,300 digits and numbers past 1e308, a 1e-300 m room). Not one is
answered 500; each is a 4xx with a JSON error; the hub answers normally afterwards; a
WebSocket given the same lives on. ``bench/fuzz_api.py`` runs the 10k version.
"""

from __future__ import annotations

import asyncio
import collections

import aiohttp
import pytest
from support.apifuzz import AnswerChecker, checked_answers, requests
from support.hubs import running_hub

from anamnesis.hub.api.bodies import MAX_DEPTH, decode_json
from anamnesis.hub.core.errors import HubError
from anamnesis.hub.installation.check import parse_config

CONFIG = """
[installation]
name = "hostile"

[[agent]]
id = "k1"
model = "autoregnn"
speaker = [1.0, 1.0, 1.5]
mic = [1.5, 1.0, 1.5]

[[agent]]
id = "k2"
model = "autoregnn"
speaker = [3.0, 2.0, 1.5]
mic = [3.5, 2.0, 1.5]

[[route]]
from = "k1"
to = "k2"
"""

#: Requests the fuzz of a seed sends here (the 10k run: bench/fuzz_api.py).
FUZZ_REQUESTS = 3000
NAMES = ["k1", "k2", "k1->k2"]

#: (method, path, raw body): each was answered 500 before.
HOSTILE = [
    ("POST", "/api/routes", b"{}"),
    ("POST", "/api/routes", b'{"gain": 1}'),
    ("POST", "/api/routes", b'{"from": "k1", "to": "k2", "gain": ' + b"[" * 1000 + b"]" * 1000
     + b"}"),
    ("POST", "/api/routes", b"[" * 100_000),
    ("PATCH", "/api/routes/k1->k2", b'{"gain": ' + b"9" * 4300 + b"}"),
    ("PATCH", "/api/routes/k1->k2", b'{"gain": 1e309}'),
    ("PATCH", "/api/routes/k1->k2", b'{"gain": NaN}'),
    ("PATCH", "/api/routes/k1->k2", b'{"gain": -Infinity}'),
    ("POST", "/api/scenes", b'{"name": "\\ud800"}'),
    ("POST", "/api/agents/k1/snapshot", b'{"name": "\\udfff"}'),
    ("PUT", "/api/room", b'{"size": [1e-300, 1e-300, 1e-300], "rt60": 0.5}'),
    ("PUT", "/api/room", b'{"size": [1e308, 1e308, 1e308], "rt60": 1e308}'),
    ("PUT", "/api/room", b'{"size": "big"}'),
    ("POST", "/api/scenes/interpolate", b'{"a": [], "b": {}, "t": 1e308}'),
    ("PUT", "/api/agents/k1/weights", b'{"weights": [[[[1]]]]}'),
    ("POST", "/api/record/start", b'{"name": ["x"]}'),
]


def test_decode_json_says_which_limit():
    for raw, said in [(b"NaN", "NaN is not a JSON number"), (b"1e999", "beyond float64"),
                      (b"9" * 400, "digits"), (b"[" * 5000 + b"]" * 5000, "nested"),
                      (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested"),
                      (b"\xff", "not UTF-8"), (b'"\\ud800"', "lone surrogate"),
                      (b'{"\\ud800": 1}', "lone surrogate"), (b"{", "Expecting")]:
        with pytest.raises(HubError, match=said):
            decode_json(raw)
    assert decode_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert decode_json(b'{"gain": -1e308, "n": ' + b"9" * 300 + b"}")["gain"] == -1e308


async def _answer(http, base, method, url, body) -> tuple[int, object]:
    async with http.request(method, base + url, data=body, allow_redirects=False,
                            headers={"Content-Type": "application/json"}) as r:
        payload = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, payload


async def test_no_request_is_answered_500(tmp_path):
    async with running_hub(tmp_path / "hub", config=parse_config(CONFIG, "c.toml")) \
            as (hub, base):
        headers = {"Authorization": f"Bearer {hub.token}"}
        async with aiohttp.ClientSession(headers=headers) as http, \
                http.get(base + "/api/openapi.json") as r:
            doc = await r.json()
        checker = AnswerChecker(doc)
        broken: list[str] = []     # answers the document does not describe
        async with aiohttp.ClientSession(headers=headers, trace_configs=[
                checked_answers(checker, broken)]) as http:
            for method, url, body in HOSTILE:
                status, payload = await _answer(http, base, method, url, body)
                assert 400 <= status < 500, (method, url, body[:60], status, payload)
                assert isinstance(payload, dict) and payload.get("error"), payload
            statuses: collections.Counter[int] = collections.Counter()
            server_errors = []
            for request in requests(doc, FUZZ_REQUESTS, seed=1, names=NAMES):
                status, payload = await _answer(http, base, request.method, request.url,
                                                request.body)
                statuses[status] += 1
                if status >= 500:
                    server_errors.append((request, payload))
            print(f"\n{FUZZ_REQUESTS} fuzzed requests: {dict(sorted(statuses.items()))}, "
                  f"{checker.checked} answers checked against the document")
            assert server_errors == [], server_errors[:5]
            assert broken == [], broken[:5]
            assert checker.checked >= 0.8 * (FUZZ_REQUESTS + len(HOSTILE)), checker.checked
            assert hub.counts["handler_errors"] == 0
            assert statuses[200] + statuses[201] > 200, statuses   # it did real work too
            async with http.get(base + "/api/health") as r:
                assert r.status == 200 and (await r.json())["ok"] is True


async def test_a_websocket_lives_through_hostile_messages(tmp_path):
    async with running_hub(tmp_path / "hub", config=parse_config(CONFIG, "c.toml")) \
            as (hub, base):
        async with aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {hub.token}"}) as http:
            async with http.ws_connect(base + "/ws") as ws:
                hostile = ["[" * 100_000, '{"cmd": "route_gain", "gain": ' + "9" * 5000 + "}",
                           '{"cmd": "add_route", "route": {"from": NaN}}', '{"cmd": "\\ud800"}',
                           '{"cmd": "add_route"}', '{"cmd": "add_route", "route": {}}',
                           '{"cmd": "add_route", "route": [1]}', '{"cmd": ["x"]}', "[]", "{",
                           '{"cmd": "update_route", "route_id": {}, "route": {}}',
                           '{"cmd": "set_params", "agent": "k1", "params": "x"}']
                for message in hostile:
                    await ws.send_str(message)
                await ws.send_json({"cmd": "add_route", "id": 99,
                                    "route": {"from": "k2", "to": "k1"}})
                replies = []
                while len(replies) < len(hostile) + 1:
                    msg = await ws.receive_json(timeout=30)
                    if msg.get("type") == "reply":
                        replies.append(msg)
                assert [r["ok"] for r in replies] == [False] * len(hostile) + [True], replies
                assert all("error" in r and "hub's" not in r["error"] for r in replies[:-1])
                assert replies[-1]["id"] == 99
        assert hub.counts["handler_errors"] == 0
        assert "k2->k1" in hub.routes


#: Datagrams of arrays nested 1,000 deep sent to an agent.
HOSTILE_DATAGRAMS = 30


def _osc(address: str, tags: str) -> bytes:
    def padded(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return raw + b"\0" * (-len(raw) % 4)
    return padded(address) + padded("," + tags)


def test_osc_arrays_nest_at_most_four_deep():
    from anamnesis.agents.protocol.errors import ProtocolError
    from anamnesis.agents.protocol.oscmap import MAX_ARRAY_DEPTH, parse_packet

    assert parse_packet(_osc("/w", "[" * MAX_ARRAY_DEPTH + "]" * MAX_ARRAY_DEPTH)) == \
        [("/w", [[[[[]]]]])]
    for tags in ["[" * 1000 + "]" * 1000, "[" * 5 + "]" * 5, "][", "[[]", "]"]:
        with pytest.raises(ProtocolError, match="balanced and nested at most 4 deep"):
            parse_packet(_osc("/w", tags))


def test_floats_past_float32_go_as_doubles():
    from anamnesis.agents.protocol.oscmap import build_message, parse_packet

    weights = [1e39, -3.5e38, 0.25, 1e308, float("inf")]
    assert parse_packet(build_message("/weights", weights)) == [("/weights", weights)]


async def test_an_agent_counts_deep_osc_arrays_and_answers_on(tmp_path, caplog):
    from support.controlplane import OscTestClient, served_agent

    async with served_agent(tmp_path / "state") as (_control, services, client):
        hostile = await OscTestClient.open(services.osc_port)
        try:
            for _ in range(HOSTILE_DATAGRAMS):   # (a socket buffer holds about 50)
                hostile.send_raw(_osc("/lr", "[" * 1000 + "]" * 1000))
            client.send("/lr", 0.25)
            messages = dict(await client.request_all("/state"))
            assert messages["/lr"] == [pytest.approx(0.25)]
            for _ in range(200):        # (two sockets: their datagrams may interleave)
                if services.osc.stats()["malformed"] >= HOSTILE_DATAGRAMS:
                    break
                await asyncio.sleep(0.05)
            stats = services.osc.stats()
            assert stats["malformed"] == HOSTILE_DATAGRAMS and stats["internal_errors"] == 0, stats
        finally:
            hostile.close()
    assert "RecursionError" not in caplog.text and "Traceback" not in caplog.text
