"""The dashboard's files, served from ``web/``.

``GET /`` is ``web/index.html`` (:func:`anamnesis.hub.resources.web_dir`; a short page when the
dashboard is not installed; ``?token=TOKEN`` sets the access cookie once and redirects
to ``/``), and ``GET /PATH`` any other file below ``web/`` whose type is in
:data:`CONTENT_TYPES` (``.js`` as ``text/javascript``, as ES modules and AudioWorklets
need): no listings, no hidden files, nothing outside ``web/`` (``..``, symlinks),
``Cache-Control: no-cache``. A path below ``api/`` or ``ws/`` that no route took is a
404 pointing at the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

from aiohttp import web

from anamnesis.hub.api.access import check_token
from anamnesis.hub.api.keys import COOKIE, HUB, WEB_ROOT
from anamnesis.hub.core.errors import NotFound

#: The dashboard's files the hub serves, by extension (anything else is a 404).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
    ".png": "image/png", ".ico": "image/x-icon", ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8", ".wasm": "application/wasm",
    ".woff2": "font/woff2", ".wav": "audio/wav",
}


async def index(request: web.Request) -> web.StreamResponse:
    """The dashboard; ?token=TOKEN sets the access cookie once and redirects to /."""
    hub = request.app[HUB]
    given = request.query.get("token")
    if given is not None:
        refused = check_token(request, given)
        if refused is not None:
            return refused
        response = web.HTTPFound("/")
        response.set_cookie(COOKIE, hub.token, httponly=True, samesite="Strict", path="/")
        raise response
    page = await _web_file(request.app, "index.html")
    if page is not None:
        return _file_response(page)
    return web.Response(text=f"<!doctype html><title>{html.escape(hub.name)}</title>"
                             "<p>anamnesis hub: the dashboard is not installed; "
                             "the API is at /api.</p>", content_type="text/html",
                        headers={"Cache-Control": "no-cache"})


def _resolve_web_file(root: Path, relative: str) -> Path | None:
    """The file ``relative`` (a URL path below ``/``) names under ``root``, or None: no
    empty, ``.`` or ``..`` parts, no hidden files, no backslashes, only the types of
    :data:`CONTENT_TYPES`, and nothing that resolves (symlinks) outside ``root``."""
    parts = relative.split("/")
    if not relative or "\\" in relative or "\0" in relative or any(
            not part or part.startswith(".") for part in parts):
        return None
    path = root.joinpath(*parts)
    if path.suffix.lower() not in CONTENT_TYPES:
        return None
    try:
        resolved = path.resolve(strict=True)
        resolved.relative_to(root)
    except (OSError, ValueError, RuntimeError):
        return None
    return resolved if resolved.is_file() else None


async def _web_file(app: web.Application, relative: str) -> Path | None:
    root = app[WEB_ROOT]
    if root is None:
        return None
    return await asyncio.get_running_loop().run_in_executor(
        None, _resolve_web_file, root, relative)


def _file_response(path: Path) -> web.FileResponse:
    return web.FileResponse(path, headers={
        "Content-Type": CONTENT_TYPES[path.suffix.lower()], "Cache-Control": "no-cache"})


async def web_static(request: web.Request) -> web.StreamResponse:
    """A file of the dashboard (``web/``): open to read, no listings, no way out of web/."""
    relative = request.match_info["path"]
    if relative.startswith(("api/", "ws/")):
        raise NotFound(f"no route GET /{relative[:200]} (see /api/openapi.json)")
    page = await _web_file(request.app, relative)
    if page is None:
        raise NotFound(f"no file /{relative[:200]}")
    return _file_response(page)


__all__ = ["CONTENT_TYPES", "index", "web_static"]
