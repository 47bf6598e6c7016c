"""The OpenAPI 3.0 document of the REST API (``GET /api/openapi.json``, open).

Built from the application's router when asked, so every ``/api`` route appears: the
summary is the first line of the handler's docstring, the description the rest of it,
the operation id its name, path parameters come from the path, and writes say they need
the token (bearer or cookie, as :mod:`anamnesis.hub.api.access` checks it). A docstring
line ``409: why`` (any status; indented lines continue it) documents one more answer of
that operation.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from anamnesis.hub.api.keys import COOKIE, OPEN_PATHS, READ_METHODS


async def openapi(request: web.Request) -> web.Response:
    """This document: the REST API as OpenAPI 3.0."""
    return web.json_response(openapi_document(request.app))


def openapi_document(app: web.Application) -> dict[str, Any]:
    """OpenAPI 3.0 of every ``/api`` route in ``app``'s router (so new routes appear)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if not path or not path.startswith("/api") or route.method == "HEAD":
            continue
        doc = inspect.getdoc(route.handler) or ""
        summary, description, answers = _read_doc(doc)
        op: dict[str, Any] = {
            "summary": summary or route.handler.__name__,
            "operationId": route.handler.__name__,
            "responses": {"200": {"description": "JSON"},
                          "400": {"description": "bad request ({\"error\": ...})"},
                          **{code: {"description": f"{why} ({{\"error\": ...}})"}
                             for code, why in answers.items()}},
        }
        if description:
            op["description"] = description
        params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        if route.method not in READ_METHODS and path not in OPEN_PATHS:
            op["security"] = [{"bearer": []}, {"cookie": []}]
            op["responses"]["401"] = {"description": "missing or wrong token"}
            op["requestBody"] = {"required": False,
                                 "content": {"application/json": {"schema": {"type": "object"}}}}
        paths.setdefault(path, {})[route.method.lower()] = op
    return {"openapi": "3.0.3",
            "info": {"title": "anamnesis hub", "version": "1"},
            "components": {"securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": COOKIE}}},
            "paths": paths}


_ANSWER = re.compile(r"^([1-5][0-9][0-9]): (.+)$")


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
