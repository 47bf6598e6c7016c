"""Requests a hostile client would send, generated from the hub's own OpenAPI document.

:func:`requests` walks ``GET /api/openapi.json``: every operation (method and path), its
path parameters filled with the installation's real names and with hostile strings, and a
body (for writes) that is one of: an object of the API's own field names
(:func:`field_names`, read from the modules that take bodies) with values a fuzzer would
try — numbers at and past float64's range, integers of 4,300+ digits, 1e-300, strings of
10k characters or with NUL, nesting 1,000 deep, wrong types — or a raw body that is not
an object at all (broken JSON, NaN, a bare number, invalid UTF-8). Seeded: the same seed
gives the same requests.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Modules whose string literals name the fields of the API's bodies.
BODY_MODULES = ("hub/api/rest.py", "hub/core/routes.py", "hub/core/couplings.py",
                "hub/core/scenes.py", "hub/core/layout.py", "hub/core/commands.py",
                "hub/installation/config.py")
ROOT = Path(__file__).resolve().parents[2]


def field_names() -> list[str]:
    """Identifier-like string literals of :data:`BODY_MODULES` (the API's field names)."""
    names: set[str] = set()
    for module in BODY_MODULES:
        path = ROOT / module
        if path.exists():
            names.update(re.findall(r'"([a-z][a-z0-9_]{0,23})"', path.read_text()))
    return sorted(names)


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def hostile_values(known: list[str]) -> list[Any]:
    """Values to put in a body's fields (JSON-encodable, as ``json.dumps`` writes them)."""
    return [0, 1, -1, 2, 7, 2 ** 31, -(2 ** 63), 10 ** 30, 0.5, -0.0, 1e-300, 5e-324, 1e308,
            -1e308, 3.4e38, 1e39, True, False, None, "", "x" * 10_000, "a\u0000b", "..",
            "../../etc/passwd", "<script>", "k1", "->", *known, [], {}, [1, 2, 3],
            [0.1] * 300, ["k1", "k2"], ["k1", "k1"], {"x": 1.0, "y": 2.0},
            {"a": {"b": {"c": None}}}, _deep(50), [float("nan")]]


#: Raw bodies that are not a well-formed object (sent as bytes, JSON content type).
RAW_BODIES = [b"", b"{", b"null", b"[]", b"1", b'"s"', b"NaN", b'{"gain": NaN}',
              b'{"gain": Infinity}', b'{"gain": 1e999}', b'{"gain": -1e999}',
              b'{"lr": ' + b"9" * 4400 + b"}", b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}",
              b"[" * 100_000, b"\xff\xfe\x00", b'{"from": "k1", "to": "k2", "gain": ' +
              b"1" * 5000 + b"}", b'{"name": "\\ud800"}', b'{"a": 1, "a": 2}']


@dataclass(frozen=True)
class Request:
    method: str
    path: str        # the document's path (for the report)
    url: str         # with its parameters filled
    body: bytes | None


def requests(doc: dict[str, Any], count: int, *, seed: int = 0, names: list[str] = (),
             ) -> Iterator[Request]:
    """``count`` requests against the operations of ``doc`` (OpenAPI 3.0), path
    parameters from ``names`` (the installation's ids, routes, scenes) and hostile strings."""
    rng = random.Random(seed)
    fields = field_names()
    values = hostile_values(list(names))
    params = [*names, "nope", "..", "%00", "a" * 3000, "k1->", "->k2", "%E2%82", "1e308"]
    operations = [(method.upper(), path) for path, item in doc["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")]
    for _ in range(count):
        method, path = rng.choice(operations)
        url = re.sub(r"\{[^}]+\}", lambda _m: rng.choice(params), path)
        if rng.random() < 0.2:
            url += "?" + rng.choice(["limit=", "limit=-1", "limit=1e9", "limit=" + "9" * 5000,
                                     "since=x", "others=2", "kind=%00", "limit=10"])
        body = None
        if method != "GET":
            if rng.random() < 0.25:
                body = rng.choice(RAW_BODIES)
            else:
                chosen = rng.sample(fields, k=min(len(fields), rng.randint(0, 5)))
                body = json.dumps({f: rng.choice(values) for f in chosen}).encode()
        yield Request(method, path, url, body)


__all__ = ["RAW_BODIES", "Request", "field_names", "hostile_values", "requests"]
