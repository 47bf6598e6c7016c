"""The control plane of one agent: OSC, OSCQuery and zeroconf, started and stopped together.

The agent process calls :func:`start_control_services` once its
:class:`~anamnesis.agents.control.AgentControl` exists, and ``await services.close()`` on
shutdown (which unregisters from zeroconf first, so the hub sees the agent
leave before its ports close).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from anamnesis.agents.net.access import HostFilter
from anamnesis.agents.net.announce import AgentAnnouncer
from anamnesis.agents.net.osc import OscServer
from anamnesis.agents.net.oscquery import STATE_KEY, OscQueryConfig, create_oscquery_app
from anamnesis.agents.net.streams_http import add_stream_routes
from anamnesis.agents.protocol.oscmap import OscAddressSpace

log = logging.getLogger(__name__)


@dataclass
class ControlServices:
    """Running control services of one agent (see :func:`start_control_services`)."""

    osc: OscServer
    runner: web.AppRunner
    announcer: AgentAnnouncer | None
    interface: str
    osc_port: int           # actual UDP port (also when 0 was asked)
    http_port: int          # actual OSCQuery HTTP/WebSocket port

    def stats(self) -> dict[str, object]:
        """Counters of OSC (malformed, errors, subscribers, ...), OSCQuery and zeroconf."""
        app = self.runner.app
        oscquery = dict(app[STATE_KEY].counts) if app is not None else {}
        return {
            "osc": self.osc.stats(),
            "oscquery": oscquery,
            "zeroconf": {
                "enabled": self.announcer is not None,
                "registered": bool(self.announcer and self.announcer.registered),
                "failures": self.announcer.failures if self.announcer else 0,
            },
        }

    async def update_announcement(self, *, rtp_port: int | None = None) -> None:
        """Re-publish the signed TXT record (fresh timestamp; e.g. after a recall,
        or with the RTP port once the audio link is up)."""
        if self.announcer is not None:
            await self.announcer.update(rtp_port=rtp_port)

    async def close(self) -> None:
        """Unregister from zeroconf, then stop OSCQuery (closing WebSockets) and OSC."""
        if self.announcer is not None:
            await self.announcer.close()
        await self.runner.cleanup()
        await self.osc.close()


async def start_control_services(control: Any, *, interface: str, osc_port: int,
                                 http_port: int, installation: str, key: bytes | None,
                                 announce: bool = True, rtp_port: int = 0,
                                 link: Any = None, access: HostFilter | None = None
                                 ) -> ControlServices:
    """Start OSC (UDP), OSCQuery (HTTP + WebSocket) and, if ``announce``, zeroconf.

    ``interface`` is the IP address every socket binds to and zeroconf announces
    (127.0.0.1 for tests and the demo; a LAN address on a Pi). Ports 0 pick free
    ones; the actual ports are on the result. ``link`` (an
    :class:`anamnesis.agents.net.link.AgentLink`) adds ``GET /streams`` and
    ``GET /streams/NAME.sdp?port=P`` (listen-in) to the HTTP app, and
    ``rtp_port`` goes into the TXT record. ``installation`` and ``key`` go
    into the signed TXT record (``key`` None: unsigned, the hub holds the agent
    as pending); the record is re-published after every ``/recall``. Zeroconf
    registration runs in the background and retries on failure; OSC or HTTP
    ports that cannot be bound raise ``OSError`` at once, and an agent id or
    installation name the TXT record cannot carry raises ``ValueError``
    (check it at the edge with :func:`anamnesis.agents.protocol.txt.check_token`).
    ``access`` (:class:`anamnesis.agents.net.access.HostFilter`): who may steer it over OSC
    and take its streams (None: anyone, as a test's in-process agent).
    """
    space = OscAddressSpace(control.specs())
    announcer: AgentAnnouncer | None = None

    async def after_recall(name: str) -> None:
        if announcer is not None:        # the state changed: a freshly signed record
            await announcer.update()

    allows = access.allows if access is not None else None
    osc = OscServer(control, space=space, after_recall=after_recall, allows=allows)
    bound_osc = await osc.start(interface, osc_port)
    runner: web.AppRunner | None = None
    try:
        app = create_oscquery_app(control, OscQueryConfig(
            name=f"anamnesis {control.agent_id}", osc_ip=interface, osc_port=bound_osc,
            osc_handler=osc.handle_packet, allows=allows), space=space,
            extra_routes=(lambda app: add_stream_routes(app, link, access))
            if link is not None else None)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, interface, http_port)
        await site.start()
        bound_http = _bound_port(runner)
        if announce:
            announcer = AgentAnnouncer(
                agent_id=control.agent_id, model=control.model_kind, interface=interface,
                osc_port=bound_osc, http_port=bound_http, rtp_port=rtp_port,
                installation=installation, key=key)
            await announcer.start()
    except BaseException:
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        await osc.close()
        raise
    log.info("agent %s control: osc udp://%s:%d, oscquery http://%s:%d%s", control.agent_id,
             interface, bound_osc, interface, bound_http,
             "" if announce else " (not announced)")
    return ControlServices(osc=osc, runner=runner, announcer=announcer, interface=interface,
                           osc_port=bound_osc, http_port=bound_http)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("OSCQuery HTTP server has no bound address")


__all__ = ["ControlServices", "start_control_services"]
