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
    """``count`` requests against the operations of ``doc`` (OpenAPI 3.1), path
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


class AnswerChecker:
    """Checks answers against ``doc``: the operation is the one whose path the URL the
    server saw matches (literal paths before templated ones, as the router tries them),
    the status one it documents (else its ``default``, which must not be a success),
    and a JSON body valid against that status's schema (JSON Schema 2020-12, as
    OpenAPI 3.1 writes it, ``$ref`` into the document's components)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._paths = sorted(doc["paths"], key=lambda p: (p.count("{"), -len(p)))
        self._regexes = {p: re.compile("^" + re.sub(r"\\\{[A-Za-z_]+\\\}", "[^/]+",
                                                    re.escape(p)) + "$") for p in self._paths}
        self._validators: dict[tuple[str, str, str], Any] = {}
        self.checked = 0

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """(path template, operation) the server routes ``method path`` to, or None."""
        for template in self._paths:
            op = self.doc["paths"][template].get(method.lower())
            if op is not None and self._regexes[template].match(path):
                return template, op
        return None

    def problem(self, method: str, path: str, status: int, body: Any) -> str | None:
        """Why the answer breaks the document (None: it keeps it, or no operation has
        that path: the dashboard's files, a path the fuzz broke)."""
        from jsonschema import Draft202012Validator

        found = self.operation(method, path)
        if found is None:
            return None
        template, op = found
        code = str(status)
        if code not in op["responses"]:
            if 200 <= status < 400:
                return f"{method} {template}: {status} is not documented"
            code = "default"
        content = op["responses"][code].get("content")
        if content is None:
            return None
        key = (template, method, code)
        if key not in self._validators:
            schema = dict(content["application/json"]["schema"],
                          components=self.doc["components"])
            self._validators[key] = Draft202012Validator(schema)
        self.checked += 1
        error = next(iter(self._validators[key].iter_errors(body)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path)
        return f"{method} {template} {status}: {error.message[:200]} at /{where}"


def checked_answers(checker: AnswerChecker, problems: list[str]) -> Any:
    """An ``aiohttp.TraceConfig`` for a test's ``ClientSession``: every answer of
    ``/api`` the session receives is checked (:meth:`AnswerChecker.problem`; a body that
    is not JSON is checked as its text) and what breaks the document appended to
    ``problems`` (the body stays readable: aiohttp keeps it)."""
    import aiohttp

    async def on_request_end(session: Any, context: Any, params: Any) -> None:
        r = params.response
        if r.url.raw_path.startswith("/api/"):
            raw = await r.read()
            body = (json.loads(raw) if r.content_type == "application/json"
                    else raw.decode(errors="replace"))
            problem = checker.problem(params.method, r.url.raw_path, r.status, body)
            if problem:
                problems.append(problem)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


__all__ = ["RAW_BODIES", "AnswerChecker", "checked_answers", "Request", "field_names", "hostile_values",
           "requests"]
