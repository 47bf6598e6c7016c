"""The programs of a test's LAN (:mod:`support.netns`): started in their hosts, the hub's
REST API read with curl on the hub's own host (the root namespace has no way in, by
design), and a poll that says what it waited for."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from support.agents import AgentProcess, spawn
from support.netns import Lan


class Hosts:
    """The programs on ``lan``; the hub at host ``hub`` serves HTTP on ``http_port``."""

    def __init__(self, lan: Lan, tmp: Path, *, hub: int, http_port: int) -> None:
        self.lan = lan
        self.tmp = tmp
        self.hub = hub
        self.http_port = http_port
        self.procs: list[AgentProcess] = []
        self.token = ""

    async def run(self, host: int, *args: str, module: str = "anamnesis.agents") -> AgentProcess:
        proc = await spawn(*args, module=module, prefix=self.lan.exec(host))
        self.procs.append(proc)
        return proc

    async def curl(self, host: int, url: str, *extra: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            *self.lan.exec(host), "curl", "-sS", "--fail-with-body", "--max-time", "5", *extra,
            url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, f"curl {url}: {err.decode()} {out.decode()}"
        return out

    async def api(self, path: str, method: str = "GET") -> object:
        url = f"http://{self.lan.address(self.hub)}:{self.http_port}{path}"
        return json.loads(await self.curl(self.hub, url, "-X", method,
                                          "-H", f"Authorization: Bearer {self.token}"))

    async def agents(self) -> dict[str, dict]:
        return {a["id"]: a for a in await self.api("/api/agents")}

    async def until(self, check, what: str, timeout: float) -> object:
        """Poll ``await check()`` until it returns something true (its value)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = await check()
            if last:
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what}: not within {timeout:g} s (last {last!r})")

    async def close(self) -> None:
        await asyncio.gather(*(p.stop(20) for p in self.procs))
