"""The link's HTTP routes: ``GET /streams`` (the port, the listen-in leases and the
receiver's statistics as JSON) and ``GET /streams/NAME.sdp?port=P`` (a listen-in lease
to the requester's own address, answered with the stream's SDP, so ffmpeg, GStreamer or
PipeWire can listen to any agent), added to the agent's OSCQuery server. With an
:class:`~anamnesis.agents.net.access.HostFilter`, only the hosts it allows may list or
lease (403 for the others, counted in the link's ``refused_hosts``), and the microphone
only the hub (or, with ``--offer-mic``, every allowed host)."""

from __future__ import annotations

from typing import Any

from anamnesis.agents.net.access import HostFilter
from anamnesis.agents.net.link import AgentLink, LeaseError


def add_stream_routes(app: Any, link: AgentLink, access: HostFilter | None = None) -> None:
    """Add ``GET /streams`` (JSON: port, leases, receiver stats) and ``GET
    /streams/{name}.sdp?port=P`` (start or renew a listen-in lease to the
    requester's own address; returns the SDP) to an aiohttp application.
    Must run before a catch-all route is added."""
    from aiohttp import web

    def refuse(host: str, why: str) -> Exception:
        link.refused_hosts += 1
        link.problems(host, "refused stream request", why)
        return web.HTTPForbidden(text=why)

    async def sdp_handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        host = request.remote or ""
        if access is not None and not access.may_take(name, host):
            raise refuse(host, f"the {name} stream is not offered to {host}: "
                         + ("the microphone goes to the hub only (start the agent with "
                            "--offer-mic to offer it to its allowed hosts)"
                            if name == "mic" and access.allows(host) else
                            "start the agent with --allow for this host or its network"))
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
        host = request.remote or ""
        if access is not None and not access.allows(host):   # who listens, from where
            raise refuse(host, f"the stream list is not shown to {host} (--allow it)")
        return web.json_response(link.stats())

    app.router.add_get("/streams", index_handler)
    app.router.add_get(r"/streams/{name}.sdp", sdp_handler)


def _http_error(exc: LeaseError) -> Exception:
    from aiohttp import web

    classes = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 503: web.HTTPServiceUnavailable}
    return classes.get(exc.status, web.HTTPBadRequest)(text=str(exc))


__all__ = ["add_stream_routes"]
