"""The OpenAPI 3.0 document of the REST API (``GET /api/openapi.json``, open).

Built from the application's router when asked, so every ``/api`` route appears: the
summary is the first line of the handler's docstring, the operation id its name, path
parameters come from the path, and writes say they need the token (bearer or cookie,
as :mod:`anamnesis.hub.api.access` checks it).
"""

from __future__ import annotations

import inspect
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
        op: dict[str, Any] = {
            "summary": doc.splitlines()[0] if doc else route.handler.__name__,
            "operationId": route.handler.__name__,
            "responses": {"200": {"description": "JSON"},
                          "400": {"description": "bad request ({\"error\": ...})"}},
        }
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


__all__ = ["openapi", "openapi_document"]
