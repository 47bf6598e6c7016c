"""Agents end with the hub that started them, however it ends (issue 14, item 2).

A real ``anamnesis hub`` process starts two real agents (forked warm, or exec'd), and is
then killed with SIGKILL or SIGHUP: nothing of it runs its shutdown. Its agents, in
sessions of their own, must end by themselves, cleanly (the kernel's parent-death
signal, or their once-a-second watch of the hub: SIGTERM, so the autosave is written
and the state directory released), and a new hub on the same state directory starts
them again. :mod:`anamnesis.agents.lifeline` on its own, below.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import aiohttp
import pytest
from support.agents import REPO

from anamnesis.agents import lifeline
from anamnesis.agents.protocol.key import generate_key

CONFIG = """
[installation]
name = "orphans"
key_file = "inst.key"

[[agent]]
id = "o1"
model = "autoregnn"
spawn = true

[[agent]]
id = "o2"
model = "unlearn"
spawn = true
seed = 2
"""

DASHBOARD = re.compile(r"^Dashboard: http://127\.0\.0\.1:(\d+)/\?token=\S+$")
#: Seconds the agents get to end after their hub: the watch's period, their shutdown
#: (autosave, zeroconf goodbye) and a loaded machine's slowness.
END_S = 30.0


async def _start_hub(tmp_path, launch: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anamnesis.hub.cli", "hub", str(tmp_path / "install.toml"),
        "--http", "127.0.0.1:0", "--osc", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
        "--interface", "127.0.0.1", "--agent-launch", launch, cwd=REPO,
        stdin=subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
    match = DASHBOARD.match(line)
    assert match, line
    return proc, f"http://127.0.0.1:{match.group(1)}"


async def _online_agents(base: str, timeout_s: float = 90.0) -> list[int]:
    """The local agents' pids once both are online."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(base + "/api/agents") as r:
                agents = {a["id"]: a["status"] for a in await r.json()}
            if agents.get("o1") == agents.get("o2") == "online":
                async with http.get(base + "/api/installation") as r:
                    return [c["pid"] for c in (await r.json())["local_agents"]]
            assert loop.time() < deadline, agents
            await asyncio.sleep(0.2)


async def _ended(pids: list[int], timeout_s: float) -> list[int]:
    """The pids still running after waiting up to ``timeout_s`` for them to end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (left := [p for p in pids if lifeline.running(p)]) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return left


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("launch, signum", [("fork", signal.SIGKILL), ("exec", signal.SIGHUP)])
async def test_agents_end_with_a_killed_hub_and_the_next_hub_starts_them(tmp_path, launch,
                                                                         signum):
    generate_key(tmp_path / "inst.key")
    (tmp_path / "install.toml").write_text(CONFIG)
    pids: list[int] = []
    hub, base = await _start_hub(tmp_path, launch)
    try:
        pids = await _online_agents(base)
        assert len(pids) == 2
        hub.send_signal(signum)
        assert await _ended([hub.pid], 30) == []   # (its pipes may stay open: not wait())
        t0 = asyncio.get_running_loop().time()
        assert await _ended(pids, END_S) == [], f"agents outlived their hub ({launch})"
        print(f"\nhub {launch} killed with {signal.Signals(signum).name}: agents ended "
              f"{asyncio.get_running_loop().time() - t0:.2f} s later")
        logs = tmp_path / "state" / "logs"
        for agent_id in ("o1", "o2"):    # a clean shutdown: the state directory released
            text = (logs / f"{agent_id}.log").read_text()
            assert "shutting down" in text, text[-2000:]
        # The next hub starts both again on the same state directory.
        hub, base = await _start_hub(tmp_path, launch)
        pids = await _online_agents(base)
        hub.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(hub.wait(), 60) == 0
        assert await _ended(pids, 5.0) == []
    finally:
        _kill_all(pids)
        if hub.returncode is None:
            hub.kill()
            await asyncio.wait_for(hub.wait(), 30)


def test_the_hub_pid_comes_from_the_environment():
    assert lifeline.hub_pid({}) is None
    assert lifeline.hub_pid({lifeline.HUB_PID_ENV: "4321"}) == 4321
    for bad in ("", "1", "-5", "x12", "3.5"):
        assert lifeline.hub_pid({lifeline.HUB_PID_ENV: bad}) is None, bad


async def test_the_watch_stops_the_agent_when_its_hub_ends_and_not_before():
    hub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stopped = asyncio.Event()
    watch = asyncio.create_task(lifeline.watch(hub.pid, stopped.set))
    try:
        await asyncio.sleep(2.5 * lifeline.WATCH_S)
        assert not stopped.is_set()
        hub.kill()                       # a zombie until reaped: ended all the same
        await asyncio.wait_for(stopped.wait(), 10 * lifeline.WATCH_S)
        assert not lifeline.running(hub.pid)
    finally:
        hub.kill()
        hub.wait()
        watch.cancel()


def test_a_child_that_asked_for_the_death_signal_gets_it_when_its_parent_ends(tmp_path):
    """Linux: the parent (a shell that starts the child, then is killed) ends; the child,
    which asked for SIGTERM then, ends by it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    child = ("import signal, sys, time\n"
             "from anamnesis.agents import lifeline\n"
             "assert lifeline.request_death_signal(signal.SIGTERM)\n"
             "signal.signal(signal.SIGTERM, lambda *a: (open(sys.argv[1], 'w').write('term'),"
             " sys.exit(0)))\n"
             "open(sys.argv[1] + '.ready', 'w').close()\n"
             "time.sleep(60)\n")
    mark = tmp_path / "mark"
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "p = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]])\n"
                               "print(p.pid, flush=True)\n"
                               "time.sleep(60)\n", child, str(mark)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    try:
        for _ in range(600):
            if (tmp_path / "mark.ready").exists():
                break
            time.sleep(0.05)
        assert (tmp_path / "mark.ready").exists()
        parent.kill()
        parent.wait()
        for _ in range(600):
            if mark.exists() and not lifeline.running(child_pid):
                break
            time.sleep(0.05)
        assert mark.read_text() == "term"
    finally:
        _kill_all([child_pid])
        parent.kill()
        parent.wait()
