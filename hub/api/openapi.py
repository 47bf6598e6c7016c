"""The OpenAPI 3.1 document of the REST API (``GET /api/openapi.json``, open).

Built from the application's router when asked, so every ``/api`` route appears: the
summary is the first line of the handler's docstring, the description the rest of it,
the operation id its name, path parameters come from the path, and writes say they need
the token (bearer or cookie, as :mod:`anamnesis.hub.api.access` checks it). A docstring
line ``409: why`` (any status; indented lines continue it) documents one more answer of
that operation; a documented 2xx or 3xx answer (``201: the route added``) replaces the
default 200. Every answer but a redirect is JSON (errors: ``{"error": ...}``), and each
success answer has the schema :data:`anamnesis.hub.api.schemas.ANSWERS` gives its
operation (the named objects in ``components.schemas``). A write may also be refused
413 (a body over ``MAX_BODY``); ``default`` covers what the server itself answers for
a path no operation has (405, a method the path does not take).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from anamnesis.hub.api.keys import COOKIE, MAX_BODY, OPEN_PATHS, READ_METHODS
from anamnesis.hub.api.schemas import ANSWERS, SCHEMAS


async def openapi(request: web.Request) -> web.Response:
    """This document: the REST API as OpenAPI 3.1."""
    return web.json_response(openapi_document(request.app))


def openapi_document(app: web.Application) -> dict[str, Any]:
    """OpenAPI 3.1 of every ``/api`` route in ``app``'s router (so new routes appear)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith("/api") or route.method == "HEAD":
            continue
        doc = inspect.getdoc(route.handler) or ""
        summary, description, answers = _read_doc(doc)
        succeeded = {code: why for code, why in answers.items() if code[0] in "23"} or {
            "200": "the answer"}
        schema = ANSWERS.get(route.handler.__name__, {})
        responses: dict[str, Any] = {}
        for code, why in succeeded.items():
            responses[code] = {"description": why} if code[0] == "3" else _json(why, schema)
        responses["400"] = _json("bad request", error=True)
        for code, why in answers.items():
            if code not in succeeded:
                responses[code] = _json(why, error=True)
        op: dict[str, Any] = {"summary": summary or route.handler.__name__,
                              "operationId": route.handler.__name__, "responses": responses}
        if description:
            op["description"] = description
        params = _PARAM.findall(path)
        if params:
            responses.setdefault("404", _json(f"no such {params[-1]}", error=True))
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        if route.method not in READ_METHODS and path not in OPEN_PATHS:
            op["security"] = [{"bearer": []}, {"cookie": []}]
            op["responses"]["401"] = _json("missing or wrong token", error=True)
            op["responses"]["503"] = _json("done, but the disk refused to store it", error=True)
            op["responses"]["413"] = _json(f"the body is over {MAX_BODY} bytes", error=True)
            op["requestBody"] = {"required": False,
                                 "content": {"application/json": {"schema": {"type": "object"}}}}
        responses["default"] = _json("another refusal (405: a method this path does not "
                                     "take)", error=True)
        paths.setdefault(path, {})[route.method.lower()] = op
    return {"openapi": "3.1.0",
            "info": {"title": "anamnesis hub", "version": "1"},
            "components": {"schemas": {**SCHEMAS, "Error": _ERROR}, "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE}}},
            "paths": paths}


_ANSWER = re.compile(r"^([1-5][0-9][0-9]): (.+)$")
#: A path parameter, also inside a segment (``{name}.sdp``), without its regex (``{p:.+}``).
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}")
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}


def _json(description: str, schema: dict[str, Any] | None = None, *,
          error: bool = False) -> dict[str, Any]:
    """A JSON answer: the refusal's ``{"error": ...}`` (``Error``), or ``schema``."""
    schema = {"$ref": "#/components/schemas/Error"} if error else (schema or {})
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _read_doc(doc: str) -> tuple[str, str, dict[str, str]]:
    """A handler's docstring as (summary, description, {status: why}): the first line,
    the rest, and its ``409: why`` lines (indented lines continue one)."""
    lines = doc.splitlines()
    rest: list[str] = []
    answers: dict[str, str] = {}
    last: str | None = None
    for line in lines[1:]:
        m = _ANSWER.match(line)
        if m:
            last = m.group(1)
            answers[last] = m.group(2).strip()
        elif last is not None and line.startswith(" ") and line.strip():
            answers[last] += " " + line.strip()
        else:
            last = None
            rest.append(line)
    return (lines[0] if lines else "", "\n".join(rest).strip(), answers)


__all__ = ["openapi", "openapi_document"]
