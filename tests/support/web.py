"""Helpers for the dashboard's browser tests: a real hub in a thread of its own, and
Debian's Chromium driven by Playwright with TESTING.md's launch flags.

The hub (with its spawned agent processes, zeroconf, OSC and RTP on 127.0.0.1) runs
on an asyncio loop in a background thread, so the tests can use Playwright's sync API
on the main thread; :meth:`HubThread.call` runs a coroutine on the hub's loop and
returns its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"
#: Seconds the app gives its open handlers when the test hub stops (aiohttp's default
#: is 60: a test must not wait that long for a socket the browser already left).
SHUTDOWN_S = 5.0
CHROMIUM = "/usr/bin/chromium"
#: Exactly TESTING.md's flags ("The browser"): no sandbox (root in CI), no GPU, nothing
#: that phones home, every host name but 127.0.0.1 unresolvable.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--autoplay-policy=no-user-gesture-required"]


def require_browser() -> None:
    """Skip (locally) or fail (in CI, ``CI=true``) when Playwright or Chromium is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install --no-install-recommends chromium)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide the browser: {message}")
        pytest.skip(message)


def require_node() -> str:
    """Path of ``node`` (the reducer's unit tests); skip locally, fail in CI."""
    path = shutil.which("node")
    if path is None:
        message = "node not installed (Debian: apt-get install --no-install-recommends nodejs)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide node: {message}")
        pytest.skip(message)
    return path


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium, headless, with :data:`CHROMIUM_ARGS` (a fresh temporary
    profile every launch: Playwright keeps the user-data-dir under the system tmp)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class HubThread:
    """A started :class:`anamnesis.hub.core.hub.Hub` and its app on ``127.0.0.1:PORT``, on an event
    loop in a daemon thread. ``config`` is TOML text; the hub spawns its agents."""

    def __init__(self, state_dir: Path, config_toml: str, *, name: str = "web.toml") -> None:
        self.state_dir = Path(state_dir)
        self.config_toml = config_toml
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-hub-loop", daemon=True)
        self.hub: Any = None
        self.runner: Any = None
        self.base = ""
        self._extra: list[Any] = []

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run ``coro`` on the hub's loop; its result (or its exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> HubThread:
        self.thread.start()
        self.call(self._start(), timeout=60.0)
        return self

    async def _start(self) -> None:
        from aiohttp import web

        from anamnesis.hub.api.app import create_app
        from anamnesis.hub.core.hub import Hub
        from anamnesis.hub.installation.check import parse_config

        config = parse_config(self.config_toml, self.name)
        self.hub = Hub(state_dir=self.state_dir, interface=LOOPBACK, config=config)
        await self.hub.start()
        self.runner = web.AppRunner(create_app(self.hub), access_log=None,
                                    shutdown_timeout=SHUTDOWN_S)
        await self.runner.setup()
        site = web.TCPSite(self.runner, LOOPBACK, 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base = f"http://{LOOPBACK}:{port}"

    @property
    def token(self) -> str:
        return self.hub.token

    def start_agent(self, state_dir: Path, agent_id: str, *, signed: bool) -> Any:
        """Start one more agent process (``--audio null``, announced on 127.0.0.1);
        ``signed``: with the installation's key (adopted at once), else pending."""
        from support.controlplane import AgentProcess

        extra: tuple[str, ...] = ("--installation", self.hub.name)
        if signed:
            extra += ("--key-file", str(self.hub.key_file))

        async def start() -> Any:
            return await AgentProcess.start(state_dir, agent_id=agent_id, extra=extra)

        agent = self.call(start(), timeout=90.0)
        self._extra.append(agent)
        return agent

    def wait(self, predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
        """Poll ``predicate()`` (on the hub's loop) until it returns a truthy value."""
        async def poll() -> Any:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                value = predicate()
                if value:
                    return value
                if loop.time() > deadline:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                await asyncio.sleep(interval)
        return self.call(poll(), timeout=timeout + 5.0)

    def _kill_children(self) -> None:
        """Last resort when the orderly stop failed: SIGKILL every agent process this
        hub and test started (by PID), so none outlives the test."""
        procs = [a.proc for a in self._extra]
        if self.hub is not None:
            procs += list(getattr(self.hub.supervisor, "_procs", {}).values())
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the extra agents, the app (open sockets closed, handlers given
        ``SHUTDOWN_S``) and the hub (its agents: SIGTERM, SIGKILL after 10 s)."""
        phases: list[tuple[str, float]] = []

        async def stop() -> None:
            loop = asyncio.get_running_loop()
            t = loop.time()
            await asyncio.gather(*(agent.stop() for agent in self._extra), return_exceptions=True)
            phases.append(("extra agents", loop.time() - t))
            t = loop.time()
            if self.runner is not None:
                await self.runner.cleanup()
            phases.append(("app", loop.time() - t))
            t = loop.time()
            if self.hub is not None:
                await self.hub.close()
            phases.append(("hub", loop.time() - t))

        try:
            if self.thread.is_alive():
                self.call(stop(), timeout=120.0)
        except BaseException:
            print("hub shutdown phases so far: " + ", ".join(f"{n} {s:.1f} s" for n, s in phases),
                  file=sys.stderr)
            self._kill_children()
            raise
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10.0)
            if not self.thread.is_alive():
                self.loop.close()


__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "HubThread", "launch_chromium", "require_browser",
           "require_node"]
