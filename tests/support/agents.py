"""Helpers for tests that run real agent processes (``python -m anamnesis.agents``)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def project_modules() -> dict[str, Path]:
    """Every module of the checkout by its installed name (``anamnesis.hub.core.hub``)."""
    out = {}
    for folder in ("agents", "hub"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            out[".".join(["anamnesis", *(p for p in rel.parts if p != "__init__")])] = path
    return out


READY = re.compile(r"^agent (\S+) ready osc=(\d+) http=(\d+)$")


class AgentProcess:
    """One ``python -m anamnesis.agents`` child with its stderr collected."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr: list[str] = []
        self.osc_port = self.http_port = 0
        self._reader = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        while line := await self.proc.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.stderr)

    async def ready(self, timeout: float = 60.0) -> None:
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        match = READY.match(line.decode().strip())
        if match is None:
            await asyncio.wait_for(self.proc.wait(), 10)
            await self._reader
            raise AssertionError(f"no ready line; got {line!r}; stderr:\n{self.log}")
        self.osc_port, self.http_port = int(match.group(2)), int(match.group(3))

    async def wait(self, timeout: float = 20.0) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await self._reader
        return code

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not exit in ``timeout`` s. Returns the exit code."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader
        return int(self.proc.returncode or 0)


async def spawn(*args: str, module: str = "anamnesis.agents",
                env: dict[str, str] | None = None, prefix: tuple[str, ...] = (),
                factory: type[AgentProcess] = AgentProcess) -> AgentProcess:
    """Start ``python -m MODULE ARGS`` with stdout and stderr piped, as a ``factory``;
    ``prefix`` runs it through another program that execs it (``ip netns exec NS``)."""
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", module, *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return factory(proc)
