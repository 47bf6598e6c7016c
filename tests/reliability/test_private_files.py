"""What a hub and its agents write is theirs alone, and the token stays out of the
journal (issue 14, item 15).

A real ``anamnesis hub`` process, started as systemd starts it (``JOURNAL_STREAM`` set:
its stdout goes to the journal), with one spawned agent: its dashboard line names the
token's file instead of the token; after a recording, an agent snapshot (the agent's
own and the hub's) and a clean stop, every file under the state directory is 0600 and
every directory 0700.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat

import aiohttp
import pytest
from support.hubs import hub_cli

from anamnesis.agents.protocol.key import generate_key

CONFIG = """
[installation]
name = "private"
key_file = "inst.key"

[[agent]]
id = "p1"
model = "autoregnn"
spawn = true
"""


@pytest.mark.slow
async def test_the_state_is_private_and_the_journal_never_sees_the_token(tmp_path):
    generate_key(tmp_path / "inst.key")
    (tmp_path / "install.toml").write_text(CONFIG)
    state = tmp_path / "state"
    hub = await hub_cli(tmp_path / "install.toml", state,
                        env={**os.environ, "JOURNAL_STREAM": "8:4242"})
    try:
        line = (await asyncio.wait_for(hub.stdout.readline(), 60)).decode().strip()
        token = (state / "token").read_text().strip()
        assert token not in line
        match = re.fullmatch(r"Dashboard: http://127\.0\.0\.1:(\d+)/ \(the token is in (.+)\)",
                             line)
        assert match and match.group(2) == str(state / "token"), line
        base = f"http://127.0.0.1:{match.group(1)}"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 90
            while True:
                async with http.get(base + "/api/agents/p1") as r:
                    if r.status == 200 and (await r.json())["status"] == "online":
                        break
                assert loop.time() < deadline, "p1 never came online"
                await asyncio.sleep(0.2)
            for method, path, body in [("POST", "/api/record/start", {"name": "take"}),
                                       ("POST", "/api/agents/p1/snapshot", {"name": "agent"}),
                                       ("POST", "/api/agents/p1/snapshots", {"name": "hub"}),
                                       ("POST", "/api/record/stop", None)]:
                async with http.request(method, base + path, json=body) as r:
                    assert r.status in (200, 201), (path, r.status, await r.text())
        hub.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(hub.communicate(), 60)
        assert hub.returncode == 0, err.decode()[-2000:]
        assert token not in err.decode()
    finally:
        if hub.returncode is None:
            hub.kill()
            await hub.wait()
    loose, kinds = [], set()
    for root, dirs, files in os.walk(state):
        for name in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            if mode != 0o700:
                loose.append((os.path.join(root, name), oct(mode)))
        for name in files:
            path = os.path.join(root, name)
            kinds.add(os.path.splitext(name)[1])
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                loose.append((path, oct(mode)))
    print(f"\nstate files by kind: {sorted(kinds)}")
    assert {".sqlite3", ".log", ".wav"} <= kinds, kinds
    assert loose == [], loose
