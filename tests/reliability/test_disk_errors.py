"""Disks that fill or turn read-only (issue 14, item 14).

A real ``anamnesis hub`` process (simulated mode, one spawned agent) keeps its state on a
small tmpfs of its own: the hub runs in a mount namespace the test creates (``unshare
-m``), and the test fills that disk and frees it again from inside the namespace
(``nsenter``). Playback goes on; what the hub says is true: a scene saved on a full disk
is answered 503 (not stored), ``/api/health`` says ``ok: false`` with the database's
error and, once the disk has room, ``ok`` again; a recording whose disk fills stops
writing and ``record/stop`` answers at once with why (it hung forever); a recording that
cannot be opened is refused (it was answered 200). A hub started on a read-only state
directory says so in one line, without a traceback. Needs root (mount namespaces).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys

import aiohttp
import pytest
from support.hubs import hub_cli

CONFIG = """
[installation]
name = "disk"
mode = "simulated"

[[agent]]
id = "f1"
model = "autoregnn"
spawn = true
"""

DASHBOARD = re.compile(r"^Dashboard: http://127\.0\.0\.1:(\d+)/\?token=(\S+)$")
#: The state directory's own disk (MB): the database, the agent's state, a recording.
DISK_MB = 24

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare")
                       or not shutil.which("nsenter"),
                       reason="needs root, unshare and nsenter (a mount namespace per test)"),
]


def _own_disk(state, script: str = 'mount -t tmpfs -o size={mb}m,mode=0700 tmpfs "$1"'
              ) -> list[str]:
    """A prefix that runs the hub in its own mount namespace with ``state`` on a tmpfs
    (``script`` mounts it; then the hub is exec'd)."""
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            script.format(mb=DISK_MB) + ' && shift && exec "$@"', "sh", str(state)]


def _inside(pid: int, command: str) -> subprocess.CompletedProcess:
    """Run ``command`` (sh) in the hub's mount namespace."""
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "sh", "-c", command],
                          capture_output=True, text=True, timeout=60)


async def _until(check, timeout_s: float = 30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (result := await check()):
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.2)
    return result


async def test_a_full_disk_is_said_truthfully_and_nothing_hangs(tmp_path):
    (tmp_path / "install.toml").write_text(CONFIG)
    state = tmp_path / "state"
    state.mkdir()
    hub = await hub_cli(tmp_path / "install.toml", state, prefix=_own_disk(state))
    try:
        line = (await asyncio.wait_for(hub.stdout.readline(), 120)).decode()
        match = DASHBOARD.match(line)
        assert match, line + (await hub.stderr.read(4000)).decode()
        port, token = match.groups()
        base = f"http://127.0.0.1:{port}"
        filler = state / "filler"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            async def health() -> dict:
                async with http.get(base + "/api/health") as r:
                    return await r.json()

            async def playing() -> bool:
                async with http.get(base + "/api/installation") as r:
                    return (await r.json())["clock"]["steps"] > 100

            await _until(playing, 90)
            assert (await health())["ok"] is True

            # 1. A recording, then the disk fills under it: it stops writing, and
            # record/stop answers at once with why.
            async with http.post(base + "/api/record/start", json={"name": "take"}) as r:
                assert r.status == 200, await r.text()
            await asyncio.sleep(0.5)
            _inside(hub.pid, f"cat /dev/zero > {filler}")      # "No space left on device"
            report = await _until(lambda: _recording_failed(health), 30)
            assert "take.wav" in report
            async with asyncio.timeout(30):
                async with http.post(base + "/api/record/stop") as r:
                    answer = await r.json()
            # Done, but its event could not be stored (503), with what it did.
            assert r.status == 503 and "not stored" in answer["error"], answer
            stopped = answer["result"]
            assert "its disk is full" in stopped["error"] and stopped["seconds"] > 0.1, stopped

            # 2. A change on the full disk: answered 503, health says why; playback on.
            async with http.post(base + "/api/scenes", json={"name": "dusk"}) as r:
                assert r.status == 503, await r.text()
                assert "not stored" in (await r.json())["error"]
            said = await health()
            assert said["ok"] is False and any("full" in p for p in said["problems"]), said
            async with http.post(base + "/api/record/start", json={"name": "again"}) as r:
                assert r.status == 409, await r.text()      # cannot be opened: refused
                assert "cannot record" in (await r.json())["error"]
            async with http.get(base + "/api/installation") as r:
                steps = (await r.json())["clock"]["steps"]
            await asyncio.sleep(1.0)
            async with http.get(base + "/api/installation") as r:
                assert (await r.json())["clock"]["steps"] > steps, "playback stopped"

            # 3. Room again: the next change is stored and health is ok again.
            _inside(hub.pid, f"rm -f {filler}")
            async with http.post(base + "/api/scenes", json={"name": "dawn"}) as r:
                assert r.status == 201, await r.text()
            said = await health()
            assert said["ok"] is True and said["problems"] == [], said
            async with http.get(base + "/api/events?limit=500") as r:
                kinds = [e["kind"] for e in await r.json()]
            assert "store_ok" in kinds
        hub.terminate()
        assert await asyncio.wait_for(hub.wait(), 60) == 0
        errors = (await hub.stderr.read()).decode()
        assert errors.count("hub store:") <= 3, errors[-3000:]   # said once, then counted
    finally:
        if hub.returncode is None:
            hub.kill()
            await hub.wait()


async def _recording_failed(health) -> str | None:
    said = await health()
    return next((p for p in said["problems"] if "writing" in p), None)


async def test_a_read_only_state_directory_is_said_in_one_line(tmp_path):
    (tmp_path / "install.toml").write_text(CONFIG.replace("spawn = true", "spawn = false"))
    state = tmp_path / "state"
    state.mkdir()
    # A state a hub left (a token, a database), then the disk turns read-only.
    script = ('mount -t tmpfs -o size={mb}m,mode=0700 tmpfs "$1" && '
              f'{sys.executable} -c "import sqlite3,sys; sqlite3.connect(sys.argv[1] + '
              f"'/hub.sqlite3').execute('create table t(x)')\" \"$1\" && "
              'printf "%s" "0123456789abcdef0123456789abcdef0123456789ab" > "$1/token" && '
              'mount -o remount,ro "$1"')
    proc = await hub_cli(tmp_path / "install.toml", state, prefix=_own_disk(state, script))
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    said = err.decode()
    assert proc.returncode == 1, (out, said)
    assert "Traceback" not in said, said
    assert "read-only" in said and "--state-dir" in said, said
