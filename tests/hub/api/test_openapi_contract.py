"""The REST API keeps its own contract (issue 14, item 10).

``GET /api/openapi.json`` passes an independent validator (openapi-spec-validator), every
success answer has a schema (the answers themselves are checked against them by the
fuzz of ``tests/reliability/test_hostile_input.py`` and the live tests of
``test_hub_api.py``), its
path parameters are the paths' own (``{name}.sdp`` included), and the status a real
hub answers with is the one documented for that operation (201 for what is created,
307 for the stream redirect). A scene blend's event keeps its own timestamp.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp
import pytest
from support.hubs import running_hub

from anamnesis.hub.installation.check import parse_config

pytest.importorskip("openapi_spec_validator")

#: The validator, run in its own process: it is pure Python and holds the GIL for most
#: of a second, which a thread of the test's (watched) event loop would not share.
VALIDATE = ("import json, sys\n"
            "from openapi_spec_validator import validate\n"
            "validate(json.load(sys.stdin))\n")


async def validate(doc: dict) -> None:
    """Raise ``AssertionError`` with the validator's words on any violation of OpenAPI 3.1."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VALIDATE, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(json.dumps(doc).encode()), 120)
    assert proc.returncode == 0, err.decode()[-3000:]

CONFIG = """
[installation]
name = "contract"

[[agent]]
id = "k1"
model = "autoregnn"

[[agent]]
id = "k2"
model = "autoregnn"
"""


async def test_the_document_validates_and_says_what_the_hub_answers(tmp_path):
    async with running_hub(tmp_path / "hub", config=parse_config(CONFIG, "c.toml")) \
            as (hub, base):
        headers = {"Authorization": f"Bearer {hub.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(base + "/api/openapi.json") as r:
                doc = await r.json()
            await validate(doc)
            # Every success answer has its schema (the redirect has no body).
            for path, ops in doc["paths"].items():
                for method, op in ops.items():
                    for code, answer in op["responses"].items():
                        if code[0] == "2":
                            schema = answer["content"]["application/json"]["schema"]
                            assert schema, (method, path, code, "no schema")
            stream = doc["paths"]["/api/agents/{agent_id}/streams/{name}.sdp"]["get"]
            assert [p["name"] for p in stream["parameters"]] == ["agent_id", "name"]
            assert set(stream["responses"]) >= {"307", "404"} and "200" not in stream["responses"]
            calls = [("post", "/api/routes", "/api/routes", {"from": "k1", "to": "k2"}),
                     ("patch", "/api/routes/k1->k2", "/api/routes/{route_id}", {"gain": 0.5}),
                     ("get", "/api/routes/k1->k2", "/api/routes/{route_id}", None),
                     ("delete", "/api/routes/k1->k2", "/api/routes/{route_id}", None),
                     ("post", "/api/rings", "/api/rings", {"name": "r", "agents": ["k1", "k2"]}),
                     ("post", "/api/panic", "/api/panic", None),
                     ("get", "/api/routes/nope", "/api/routes/{route_id}", None),
                     ("get", "/api/health", "/api/health", None)]
            for method, url, path, body in calls:
                async with http.request(method, base + url, json=body) as r:
                    status = r.status
                documented = doc["paths"][path][method]["responses"]
                assert str(status) in documented, (method, url, status, sorted(documented))
            # The blend's own t does not hide the event's time.
            for name in ("a", "b"):
                async with http.post(base + "/api/scenes", json={"name": name}) as r:
                    assert r.status == 201, await r.text()
            before = time.time()
            async with http.post(base + "/api/scenes/interpolate",
                                 json={"a": "a", "b": "b", "t": 0.25}) as r:
                assert r.status == 200, await r.text()
        await hub.flush()
        live = [e for e in hub.events if e["kind"] == "scene_interpolated"][-1]
        stored = [e for e in await hub.stored_events(100) if e["kind"] == "scene_interpolated"][-1]
        for event in (live, stored):
            assert event["t"] >= before - 1.0 and event["blend"] == 0.25, event
