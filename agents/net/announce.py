"""The agent's zeroconf announcer (async; STYLE 12).

:class:`AgentAnnouncer` registers ``_anamnesis._udp`` (with the signed TXT record of
:mod:`anamnesis.agents.protocol.txt`), ``_oscjson._tcp`` and ``_osc._udp`` with
``AsyncZeroconf(interfaces=[interface])`` — one interface, never all of them —
re-publishes the TXT record when the ports or the state change and every
:data:`REFRESH_S` s, retries a failed publish with a back-off, logging each failure,
and unregisters on close.

The record's ``ts`` only grows (Unix seconds, or one more than the last when two
records fall in one second): the hub refuses a signed record older than the newest it
has taken, so a captured one cannot be replayed. The refresh re-signs the record with
a fresh ``ts``, so a hub that took a replay while the agent was away is put right.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

from anamnesis.agents.net.tasks import cancel_and_wait
from anamnesis.agents.protocol.txt import (
    ANAMNESIS_SERVICE,
    OSC_SERVICE,
    OSCQUERY_SERVICE,
    PROTOCOL_VERSION,
    build_txt,
    instance_name,
)

log = logging.getLogger(__name__)
#: Seconds between re-signed announcements of an unchanged record.
REFRESH_S = 300.0


class AgentAnnouncer:
    """Announces one agent with zeroconf on one interface (see the module docstring).

    ``interface`` is the concrete IP address to announce and to send mDNS on
    (127.0.0.1 in tests and the demo). Ports are the agent's OSC, OSCQuery
    HTTP and RTP ports (``rtp_port`` 0 = none yet). ``retry`` is the first
    delay (s) before a failed publish is retried; it doubles up to 60 s. ``refresh``
    (s) is the period of the re-signed announcement.
    """

    def __init__(self, *, agent_id: str, model: str, interface: str, osc_port: int,
                 http_port: int, installation: str, key: bytes | None, rtp_port: int = 0,
                 retry: float = 2.0, refresh: float = REFRESH_S) -> None:
        address = ipaddress.ip_address(interface)  # ValueError for a bad address
        if address.is_unspecified:
            raise ValueError(
                f"announce needs a concrete interface address, not {interface}; "
                "pass the LAN address with --interface")
        self.interface = str(address)
        self.agent_id, self.model, self.installation = agent_id, model, installation
        self.ports = {"osc": int(osc_port), "http": int(http_port), "rtp": int(rtp_port)}
        self._key = key
        self._retry = float(retry)
        self._refresh = float(refresh)
        self._refresher: asyncio.Task[None] | None = None
        self._stamp = 0        # the last record's ts
        self._zc = None  # AsyncZeroconf, created in start()
        self._infos: dict[str, Any] = {}   # type -> zeroconf ServiceInfo as registered
        self._registered = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.failures = 0
        self.txt: dict[str, str] = self._make_txt()   # checks the fields at once

    @property
    def name(self) -> str:
        """The DNS-SD instance name used for all three services."""
        return instance_name(self.agent_id, self.installation)

    def _make_txt(self) -> dict[str, str]:
        self._stamp = max(int(time.time()), self._stamp + 1)
        return build_txt({
            "id": self.agent_id, "model": self.model, "v": PROTOCOL_VERSION,
            "osc": self.ports["osc"], "http": self.ports["http"], "rtp": self.ports["rtp"],
            "inst": self.installation, "addr": self.interface, "ts": self._stamp,
        }, self._key)

    def _service_infos(self) -> dict[str, Any]:
        from zeroconf import ServiceInfo

        host = re.sub(r"[^A-Za-z0-9-]", "-", f"anamnesis-{self.installation}-{self.agent_id}")
        server = f"{host}.local."
        plain = {"txtvers": "1", "id": self.agent_id}

        def info(type_: str, port: int, properties: Mapping[str, str]) -> ServiceInfo:
            # Keep the name zeroconf settled on (it may have renamed us on a conflict).
            registered = self._infos.get(type_)
            full_name = registered.name if registered is not None else f"{self.name}.{type_}"
            return ServiceInfo(type_, full_name, port=port,
                               properties=dict(properties), server=server,
                               parsed_addresses=[self.interface])

        return {
            ANAMNESIS_SERVICE: info(ANAMNESIS_SERVICE, self.ports["osc"], self.txt),
            OSCQUERY_SERVICE: info(OSCQUERY_SERVICE, self.ports["http"], plain),
            OSC_SERVICE: info(OSC_SERVICE, self.ports["osc"], plain),
        }

    async def start(self) -> None:
        """Open zeroconf on the interface and register in the background (never raises
        for network trouble: failures are logged and retried)."""
        if self._task is None:
            self._task = asyncio.create_task(self._publish_loop(), name="zeroconf-announce")
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="zeroconf-refresh")

    async def wait_registered(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s until all three services are registered."""
        try:
            await asyncio.wait_for(self._registered.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def registered(self) -> bool:
        """True once the three services are announced."""
        return self._registered.is_set()

    async def _publish_loop(self) -> None:
        from zeroconf.asyncio import AsyncZeroconf

        delay = self._retry
        while True:
            try:
                async with self._lock:
                    if self._zc is None:
                        self._zc = AsyncZeroconf(interfaces=[self.interface])
                    infos = self._service_infos()
                    # Probe all three names at once (each probe takes ~1.5 s), then
                    # wait for the announcements.
                    waiters = await asyncio.gather(*(
                        self._zc.async_register_service(i, allow_name_change=True)
                        for i in infos.values()))
                    await asyncio.gather(*waiters)
                    self._infos = infos
                self._registered.set()
                log.info("zeroconf: announced %s on %s (osc %d, http %d)", self.name,
                         self.interface, self.ports["osc"], self.ports["http"])
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # network trouble: fail soft, loudly, and retry
                self.failures += 1
                log.warning("zeroconf: announcing %s on %s failed (%s: %s); retrying in %.0f s",
                            self.name, self.interface, type(exc).__name__, exc, delay)
                await self._drop_zeroconf()
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, 60.0)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            if self.registered:
                await self.update()

    async def _drop_zeroconf(self) -> None:
        async with self._lock:
            zc, self._zc = self._zc, None
            self._infos = {}
            if zc is not None:
                with contextlib.suppress(Exception):  # already broken: closing is best effort
                    await zc.async_close()

    async def update(self, *, osc_port: int | None = None, http_port: int | None = None,
                     rtp_port: int | None = None) -> None:
        """Re-sign and re-publish the TXT record (fresh ``ts``), with changed ports if given.

        Call it after a recall or when the RTP link comes up. Before the first
        registration this only changes what will be announced. A failed update
        is logged, and the services are registered again from scratch in the
        background (fail soft, retried like the first publish).
        """
        for name, port in (("osc", osc_port), ("http", http_port), ("rtp", rtp_port)):
            if port is not None:
                self.ports[name] = int(port)
        self.txt = self._make_txt()
        async with self._lock:
            if self._zc is None or not self._infos:
                return
            infos = self._service_infos()
            try:
                waiters = await asyncio.gather(*(
                    self._zc.async_update_service(info) for info in infos.values()))
                await asyncio.gather(*waiters)
                self._infos = infos
                return
            except Exception as exc:
                self.failures += 1
                log.warning("zeroconf: updating %s failed (%s: %s); registering it again",
                            self.name, type(exc).__name__, exc)
        # Fail soft: start over (a fresh zeroconf, the current record, retried until it works).
        self._registered.clear()
        await cancel_and_wait(self._task)
        await self._drop_zeroconf()
        self._task = asyncio.create_task(self._publish_loop(), name="zeroconf-announce")

    async def close(self) -> None:
        """Unregister (goodbye packets) and close zeroconf."""
        await cancel_and_wait(self._refresher)
        await cancel_and_wait(self._task)
        self._task = self._refresher = None
        async with self._lock:
            zc, self._zc = self._zc, None
            if zc is None:
                return
            try:
                if self._infos:
                    await zc.async_unregister_all_services()
            except Exception as exc:
                log.warning("zeroconf: unregistering %s failed (%s)", self.name, exc)
            finally:
                self._infos = {}
                self._registered.clear()
                await zc.async_close()


__all__ = ["REFRESH_S", "AgentAnnouncer"]
