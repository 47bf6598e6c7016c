"""Running hubs for the tests: the real :class:`~anamnesis.hub.core.hub.Hub` started on a
loop, its aiohttp app (the factory the CLI uses) on a real 127.0.0.1 port.

* :func:`running_hub` — a hub that starts no agents (discovered ones only, or a
  config's routes and room), for the API's own behaviour;
* :func:`live_hub` — a simulated hub that spawns its config's agents (its own
  installation key, so they are adopted) and yields once its clock has run.

The threaded variant for the synchronous browser tests is
:class:`support.web.HubThread`. :data:`DEPLOYED` is a small deployed installation (a
ring of three agents, 5 ms per edge) several test modules share.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer

from anamnesis.hub.api.app import create_app
from anamnesis.hub.core.hub import Hub
from support.agents import REPO

LOOPBACK = "127.0.0.1"
#: Seconds a live hub may take for its clock's first steps (a guard for a loaded CI).
CLOCK_GUARD_S = 120.0

DEPLOYED = """
[installation]
name = "dep"
mode = "deployed"

[[agent]]
id = "a"
model = "autoregnn"

[[agent]]
id = "b"
model = "autoregnn"

[[agent]]
id = "c"
model = "autoregnn"

[[ring]]
name = "loop"
agents = ["a", "b", "c"]
delay_ms = 5.0
gain = 0.5
"""


@contextlib.asynccontextmanager
async def running_hub(state_dir: Path, key: bytes | None = None, config: Any = None
                      ) -> AsyncIterator[tuple[Hub, str]]:
    """A started hub that spawns nothing, with its app on a real port; (hub, base URL)."""
    hub = Hub(state_dir=state_dir, interface=LOOPBACK, key=key, config=config, spawn=False)
    await hub.start()
    server = TestServer(create_app(hub), host=LOOPBACK, port=0)
    await server.start_server()
    try:
        yield hub, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await hub.close()


@contextlib.asynccontextmanager
async def live_hub(state_dir: Path, toml: str, name: str, *, steps: int = 20
                   ) -> AsyncIterator[tuple[Hub, str]]:
    """A started simulated hub of config ``toml`` that spawns its agents, its app on a
    real port, yielded once its clock has made ``steps`` blocks; (hub, base URL)."""
    from anamnesis.hub.installation.check import parse_config

    hub = Hub(state_dir=state_dir, interface=LOOPBACK, config=parse_config(toml, name))
    await hub.start()
    server = TestServer(create_app(hub), host=LOOPBACK, port=0)
    await server.start_server()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOCK_GUARD_S
        while hub.driver.steps < steps:
            assert loop.time() < deadline, f"the clock never ran: {hub.driver.stats()}"
            await asyncio.sleep(0.05)
        yield hub, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await hub.close()


async def hub_cli(config: Path, state: Path, *, prefix: Sequence[str] = (),
                  env: dict[str, str] | None = None,
                  stderr: int = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
    """A real ``anamnesis hub CONFIG`` process on 127.0.0.1 (free HTTP and OSC ports, its
    state in ``state``), stdout piped (its first line is the dashboard's); ``prefix`` runs
    it inside something (``unshare ...``, ``ip netns exec ...``)."""
    return await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "anamnesis.hub.cli", "hub", str(config),
        "--http", "127.0.0.1:0", "--osc", "127.0.0.1:0", "--state-dir", str(state),
        "--interface", "127.0.0.1", cwd=REPO, stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env)
