"""The shapes of the REST API's answers, as JSON Schema (OpenAPI 3.1's dialect).

:data:`SCHEMAS` are the named objects (``#/components/schemas/...`` of the OpenAPI
document): an agent (and one of another installation), a route, a coupling, a scene, a snapshot, an event, the room's
layout. :data:`ANSWERS` maps each handler (its operation id) to the schema of its
success answer. Every field an answer always carries is required; objects stay open
(``additionalProperties`` is not closed), so a field added later breaks no client.
``tests/reliability/test_hostile_input.py`` checks every answer of a 3,000-request fuzz
against these, and ``tests/hub/api/test_openapi_contract.py`` the answers about real
agents.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

NUMBER: Schema = {"type": "number"}
INTEGER: Schema = {"type": "integer"}
STRING: Schema = {"type": "string"}
BOOLEAN: Schema = {"type": "boolean"}
MAYBE_NUMBER: Schema = {"type": ["number", "null"]}
MAYBE_STRING: Schema = {"type": ["string", "null"]}
MAYBE_INTEGER: Schema = {"type": ["integer", "null"]}
VEC3: Schema = {"type": "array", "items": NUMBER, "minItems": 3, "maxItems": 3}
STRINGS: Schema = {"type": "array", "items": STRING}
NUMBERS: Schema = {"type": "array", "items": NUMBER}
ANY_OBJECT: Schema = {"type": "object"}


def ref(name: str) -> Schema:
    """A reference to one of :data:`SCHEMAS`."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """An object whose ``properties`` are all required but the ``optional`` ones."""
    return {"type": "object", "properties": properties,
            "required": [k for k in properties if k not in optional]}


def array_of(item: Schema) -> Schema:
    return {"type": "array", "items": item}


#: What one agent's answer to ``/weights`` is, and what a blend reports per agent.
WEIGHTS = obj({"weights": NUMBERS})
#: Per agent id: "ok", "offline" or the error (a scene's recall or blend).
PER_AGENT_RESULT: Schema = {"type": "object", "additionalProperties": STRING}

SCHEMAS: dict[str, Schema] = {
    "Agent": obj({
        "id": STRING, "model": MAYBE_STRING,
        "status": {"enum": ["pending", "online", "offline"]},
        "adopted": BOOLEAN, "online": BOOLEAN, "signed": BOOLEAN, "host": MAYBE_STRING,
        "osc_port": MAYBE_INTEGER, "http_port": MAYBE_INTEGER, "rtp_port": MAYBE_INTEGER,
        "installation": MAYBE_STRING, "seen_ago_s": MAYBE_NUMBER, "params": ANY_OBJECT,
        "desired": ANY_OBJECT, "specs": {"type": ["object", "array", "null"]}},
        optional=("desired", "specs")),
    "Route": obj({
        "id": STRING, "from": STRING, "to": STRING, "gain": NUMBER, "delay_ms": NUMBER,
        "lowpass_hz": MAYBE_NUMBER, "highpass_hz": MAYBE_NUMBER,
        "shape": {"enum": ["none", "tanh"]}}),
    "Coupling": obj({
        "id": STRING, "from": STRING, "to": STRING, "mode": STRING, "kappa": NUMBER,
        "rate_hz": NUMBER, "gain": NUMBER, "noise": NUMBER,
        "mask": {"type": ["array", "null"], "items": INTEGER}}),
    "OtherAgent": obj({"id": STRING, "installation": STRING, "model": MAYBE_STRING,
                       "host": STRING, "signed": BOOLEAN, "seen": NUMBER,
                       "status": {"const": "elsewhere"}}),
    "SceneSummary": obj({"name": STRING, "saved": NUMBER, "agents": STRINGS}),
    "Scene": obj({"name": STRING, "saved": NUMBER,
                  "agents": {"type": "object", "additionalProperties": obj(
                      {"params": ANY_OBJECT, "weights": {"type": ["array", "null"],
                                                         "items": NUMBER}},
                      optional=("weights",))},
                  "couplings": array_of(ANY_OBJECT)}, optional=("couplings",)),
    "Snapshot": obj({"id": INTEGER, "name": STRING, "model": STRING, "created": NUMBER,
                     "size": INTEGER, "sha256": STRING}),
    "Event": obj({"id": INTEGER, "t": NUMBER, "kind": STRING, "agent": MAYBE_STRING,
                  "message": STRING}),
    "Layout": obj({
        "room": {"type": ["object", "null"]},
        "agents": {"type": "object", "additionalProperties": obj(
            {"speaker": {"type": ["array", "null"], "items": NUMBER},
             "mic": {"type": ["array", "null"], "items": NUMBER}})},
        "recomputing": BOOLEAN, "responses_ms": MAYBE_NUMBER}),
    "Recording": obj({"path": MAYBE_STRING, "frames": INTEGER, "seconds": NUMBER,
                      "dropped_blocks": INTEGER, "error": MAYBE_STRING}),
}

#: The success answer of each handler (by name, the operation id).
ANSWERS: dict[str, Schema] = {
    "health": obj({
        "ok": BOOLEAN, "problems": STRINGS, "name": STRING, "agents": INTEGER,
        "online": INTEGER,
        "discovery": {"type": "object", "additionalProperties": INTEGER},
        "http": obj({"connections": INTEGER, "connection_hosts": INTEGER,
                     "connections_refused": INTEGER})}),
    "installation": obj({
        "name": STRING, "mode": {"enum": ["simulated", "deployed"]}, "interface": STRING,
        "started": NUMBER, "config": {"type": ["object", "null"]},
        "clock": {"type": ["object", "null"]}, "local_agents": array_of(ANY_OBJECT)}),
    "list_agents": array_of({"anyOf": [ref("Agent"), ref("OtherAgent")]}),
    "get_agent": ref("Agent"),
    "patch_agent": obj({"params": ANY_OBJECT}),
    "adopt_agent": ref("Agent"),
    "forget_agent": obj({"forgotten": STRING, "routes": STRINGS}),
    "get_weights": WEIGHTS,
    "put_weights": WEIGHTS,
    "snapshot_agent": obj({"agent": STRING, "snapshot": STRING}),
    "recall_agent": obj({"agent": STRING, "recall": STRING}),
    "list_snapshots": array_of(ref("Snapshot")),
    "save_snapshot": {"allOf": [ref("Snapshot"),
                                obj({"params": ANY_OBJECT, "weights": INTEGER})]},
    "recall_snapshot": obj({"agent": STRING, "snapshot": STRING, "params": ANY_OBJECT,
                            "weights": INTEGER}),
    "list_routes": array_of(ref("Route")),
    "add_route": ref("Route"),
    "get_route": ref("Route"),
    "patch_route": ref("Route"),
    "delete_route": obj({"deleted": STRING}),
    "add_ring": array_of(ref("Route")),
    "delete_ring": obj({"deleted": STRINGS}),
    "list_couplings": array_of(ref("Coupling")),
    "add_coupling": ref("Coupling"),
    "get_coupling": ref("Coupling"),
    "patch_coupling": ref("Coupling"),
    "delete_coupling": obj({"deleted": STRING}),
    "get_room": {"type": ["object", "null"]},
    "put_room": {"type": ["object", "null"]},
    "panic": obj({"panic": STRINGS}),
    "unpanic": obj({"unpanic": STRINGS}),
    "list_scenes": array_of(ref("SceneSummary")),
    "save_scene": ref("Scene"),
    "get_scene": ref("Scene"),
    "delete_scene": obj({"deleted": STRING}),
    "recall_scene": PER_AGENT_RESULT,
    "interpolate_scenes": PER_AGENT_RESULT,
    "record_start": obj({"recording": STRING}),
    "record_stop": ref("Recording"),
    "list_events": array_of(ref("Event")),
    "get_room_layout": ref("Layout"),
    "put_room_layout": ref("Layout"),
    "list_listen_sources": array_of(obj({"source": STRING, "channels": INTEGER,
                                         "sample_rate": INTEGER})),
    "openapi": obj({"openapi": STRING, "info": ANY_OBJECT, "paths": ANY_OBJECT}),
}

__all__ = ["ANSWERS", "SCHEMAS", "Schema"]
