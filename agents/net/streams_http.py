"""The link's HTTP routes: ``GET /streams`` (the port, the listen-in leases and the
receiver's statistics as JSON) and ``GET /streams/NAME.sdp?port=P`` (a listen-in lease
to the requester's own address, answered with the stream's SDP, so ffmpeg, GStreamer or
PipeWire can listen to any agent), added to the agent's OSCQuery server."""

from __future__ import annotations

from typing import Any

from anamnesis.agents.net.link import AgentLink, LeaseError


def add_stream_routes(app: Any, link: AgentLink) -> None:
    """Add ``GET /streams`` (JSON: port, leases, receiver stats) and ``GET
    /streams/{name}.sdp?port=P`` (start or renew a listen-in lease to the
    requester's own address; returns the SDP) to an aiohttp application.
    Must run before a catch-all route is added."""
    from aiohttp import web

    async def sdp_handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        host = request.remote or ""
        text = request.query.get("port")
        if text is None:
            raise web.HTTPBadRequest(text=f"add ?port=P: the UDP port on your machine to send "
                                          f"the {name} stream to, e.g. /streams/{name}.sdp?port=5004")
        try:
            port = int(text)
        except ValueError:
            raise web.HTTPBadRequest(text=f"port must be a number; got {text[:20]!r}") from None
        try:
            lease = link.lease(name, host, port)
        except LeaseError as exc:
            raise _http_error(exc) from None
        return web.Response(text=link.sdp(name, host, port, lease), content_type="application/sdp",
                            headers={"Cache-Control": "no-store"})

    async def index_handler(request: web.Request) -> web.Response:
        return web.json_response(link.stats())

    app.router.add_get("/streams", index_handler)
    app.router.add_get(r"/streams/{name}.sdp", sdp_handler)


def _http_error(exc: LeaseError) -> Exception:
    from aiohttp import web

    classes = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}
    return classes.get(exc.status, web.HTTPBadRequest)(text=str(exc))


__all__ = ["add_stream_routes"]
