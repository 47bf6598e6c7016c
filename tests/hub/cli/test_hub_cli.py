"""``anamnesis hub CONFIG`` as a real process: local agents spawned and adopted, the config's
parameters and routes applied, simulated mode driving them in lockstep (a noise source into
c1, c1 routed to c2), the OSC API, the dashboard line, and a clean SIGTERM shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
import pytest
from support.agents import REPO
from support.controlplane import OscTestClient, processes_waited_s, steal_excuse_s, stolen_s

from anamnesis.agents.protocol.key import generate_key

CONFIG = """
[installation]
name = "clitest"
key_file = "inst.key"

[[agent]]
id = "c1"
model = "autoregnn"
params = { lr = 0.2 }
spawn = true

[[agent]]
id = "c2"
model = "autoregnn"
spawn = true
seed = 2

[[route]]
from = "c1"
to = "c2"
gain = 0.5

[[source]]
name = "hiss"
kind = "noise"
args = { amp = 0.2, seed = 1 }
targets = ["c1"]
"""

DASHBOARD = re.compile(r"^Dashboard: http://127\.0\.0\.1:(\d+)/\?token=(\S+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_hub_command_spawns_agents_and_shuts_down(tmp_path):
    generate_key(tmp_path / "inst.key")
    (tmp_path / "install.toml").write_text(CONFIG)
    state = tmp_path / "state"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anamnesis.hub.cli", "hub", str(tmp_path / "install.toml"),
        "--http", "127.0.0.1:0", "--osc", "127.0.0.1:0", "--state-dir", str(state), "--interface", "127.0.0.1",
        "--log-level", "info", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stderr: list[str] = []

    async def drain() -> None:
        while line := await proc.stderr.readline():
            stderr.append(line.decode(errors="replace"))

    reader = asyncio.create_task(drain())
    pids: list[int] = []
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        match = DASHBOARD.match(line)
        assert match, f"{line!r}\n{''.join(stderr)}"
        port, token = int(match.group(1)), match.group(2)
        osc_line = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        osc_match = re.fullmatch(r"OSC: 127\.0\.0\.1:(\d+)", osc_line)
        assert osc_match, osc_line
        assert (state / "token").read_text().strip() == token
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 40
            while True:
                async with http.get(base + "/api/agents") as r:
                    agents = {a["id"]: a for a in await r.json()}
                if all(agents.get(i, {}).get("status") == "online" for i in ("c1", "c2")) \
                        and "lr" in agents["c1"]["params"]:
                    break
                assert loop.time() < deadline, f"agents: {agents}\n{''.join(stderr)}"
                await asyncio.sleep(0.2)
            assert agents["c1"]["signed"] and agents["c1"]["params"]["lr"] == pytest.approx(0.2)
            # The installation's OSC API sets c1's learning rate.
            client = await OscTestClient.open(int(osc_match.group(1)))
            try:
                assert await client.request("/hub/ping") == ("/hub/pong", [])
                assert await client.request("/hub/agent/c1/lr", 0.375) == ("/hub/ok", ["/hub/agent/c1/lr"])
                address, args = await client.request("/hub/agent/c1/lr", "fast")
                assert address == "/hub/error" and "refused" in args[0]
            finally:
                client.close()
            async with http.get(base + "/api/agents/c1") as r:
                assert (await r.json())["params"]["lr"] == pytest.approx(0.375, rel=1e-6)
            async with http.get(base + "/api/routes") as r:
                assert [x["id"] for x in await r.json()] == ["c1->c2"]
            async with http.get(base + "/api/installation") as r:
                inst = await r.json()
            assert inst["name"] == "clitest"
            pids = [c["pid"] for c in inst["local_agents"]]
            assert len(pids) == 2 and all(_alive(p) for p in pids)
            # Simulated mode: the hub clocks both agents; the noise reaches c1 and, through
            # the route, c2 (their mic levels in the WebSocket telemetry).
            heard: dict[str, float] = {}
            async with http.ws_connect(base + "/ws",
                                       headers={"Authorization": f"Bearer {token}"}) as ws:
                deadline = loop.time() + 20
                while not (heard.get("c1", 0) > 0.05 and heard.get("c2", 0) > 1e-3):
                    assert loop.time() < deadline, f"heard {heard}\n{''.join(stderr)}"
                    msg = await ws.receive_json(timeout=5)
                    if msg["type"] == "telemetry":
                        for agent_id, frame in msg["agents"].items():
                            heard[agent_id] = max(heard.get(agent_id, 0.0), frame["in_rms"])
            # The hub's CPU while it clocks two agents (utime + stime over 2 s).
            def cpu_s(pid: int) -> float:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            chain = [proc.pid, *pids]
            c0, t0 = cpu_s(proc.pid), loop.time()
            waited0, stolen0 = processes_waited_s(chain), stolen_s()
            async with http.get(base + "/api/installation") as r:
                clock0 = (await r.json())["clock"]
            steps0 = clock0["steps"]
            await asyncio.sleep(2.0)
            async with http.get(base + "/api/installation") as r:
                clock = (await r.json())["clock"]
            window = loop.time() - t0
            load = (cpu_s(proc.pid) - c0) / window
            rate = (clock["steps"] - steps0) / window
            # Time the machine kept the hub or its agents from a core (each block waits
            # on all three in turn) or the hypervisor stole it, over the window.
            kept_s = processes_waited_s(chain) - waited0 + steal_excuse_s(stolen0, stolen_s())
            print(f"\nhub clocking 2 agents: {rate:.1f} blocks/s (real time: 187.5), "
                  f"hub CPU {100 * load:.0f} % of a core, rtt {clock['rtt_ms']}, "
                  f"kept from a core {kept_s * 1000:.0f} ms")
            assert sorted(clock["driven"]) == ["c1", "c2"]
            # Paced at real time (187.5 blocks/s of 256 frames at 48 kHz), at least 80 %
            # of it while the processes had their cores. After a stall (agents compiling
            # on a busy machine) the pacer catches up on at most max_lag_s = 0.5 s of
            # blocks before it resyncs, so a 2 s window may hold up to 0.5 s more than
            # real time (seen in CI: 205.7 blocks/s).
            assert 150 * max(0.0, window - kept_s) / window <= rate, (rate, kept_s)
            assert rate <= 187.5 * (2.0 + 0.5) / 2.0, rate
            # Blocks an agent failed to return in time, over the same window: the first
            # blocks after start-up may miss while agents load their kernels (a clean
            # CI clone compiles them: 6 of 419 missed), so those are not counted.
            missing = sum(a["missing"] for a in clock["agents"].values()) \
                - sum(a["missing"] for a in clock0["agents"].values())
            assert missing <= 0.01 * (clock["steps"] - steps0), (clock0, clock)

            async def wait_clock(predicate, timeout: float, what: str) -> dict:
                end = loop.time() + timeout
                while True:
                    async with http.get(base + "/api/installation") as r:
                        got = await r.json()
                    if predicate(got):
                        return got
                    assert loop.time() < end, f"{what}: {got['clock']} {got['local_agents']}"
                    await asyncio.sleep(0.05)

            # kill -9 of c2: offline within 3 s, c1 clocked on alone at real time; the
            # supervisor restarts c2 on the same ports (the hub keeps them) and the hub,
            # told of the exit, drives it again.
            async with http.get(base + "/api/agents/c2") as r:
                before = await r.json()
            os.kill(pids[1], signal.SIGKILL)
            killed = loop.time()
            await wait_clock(lambda g: g["clock"]["driven"] == ["c1"], 5.0, "c2 dropped")
            dropped_after = loop.time() - killed
            got = await wait_clock(lambda g: g["clock"]["driven"] == ["c1", "c2"]
                                   and g["local_agents"][1]["starts"] == 2, 30.0, "c2 back")
            back_after = loop.time() - killed
            print(f"c2 dropped from the clock {dropped_after:.2f} s after kill -9, "
                  f"driven again after {back_after:.2f} s; rebuilds {got['clock']['rebuilds']}")
            assert dropped_after <= 3.0
            pids = [c["pid"] for c in got["local_agents"]]
            async with http.get(base + "/api/agents/c2") as r:
                after = await r.json()
            assert after["status"] == "online"
            assert [after[k] for k in ("osc_port", "http_port", "rtp_port")] == \
                [before[k] for k in ("osc_port", "http_port", "rtp_port")]
        assert (state / "logs" / "c1.log").exists()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        await reader
        assert not any(_alive(p) for p in pids), "local agents outlived the hub"
        assert token not in "".join(stderr)
        assert "agent c1 ready" in (state / "logs" / "c1.log").read_text()
    finally:
        # The agents first: they hold the hub's stdout and stderr open, and a hub killed
        # before them would leave proc.wait() waiting for those pipes to close.
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 30)
        if not reader.done():
            reader.cancel()


@pytest.mark.parametrize("argv, message", [
    (["--http", "nope"], "--http must be HOST:PORT; got 'nope'"),
    (["--osc", "127.0.0.1:99999"], "--osc must be HOST:PORT"),
    (["{dir}/missing.toml"], "cannot read the config"),
    (["{dir}/bad.toml"], "unknown key 'nmae'; did you mean 'name'?"),
])
def test_hub_command_refuses_bad_options(tmp_path, capsys, argv, message):
    from anamnesis.hub.cli import main

    (tmp_path / "bad.toml").write_text('[installation]\nnmae = "x"\n')
    argv = [a.format(dir=tmp_path) for a in argv]
    assert main(["hub", *argv, "--state-dir", str(tmp_path / "state")]) == 2
    assert message in capsys.readouterr().err


async def test_local_agent_command_lines_follow_the_config(tmp_path):
    from support.agents import AgentProcess

    from anamnesis.hub.core.hub import Hub
    from anamnesis.hub.installation.check import load_config

    hub = Hub(state_dir=tmp_path, config=load_config(REPO / "deploy" / "ring3.toml"))
    specs = hub.local_agents()
    assert [s.name for s in specs] == ["n1", "n2", "n3"]
    argv = " ".join(specs[1].argv)
    for part in ("--id n2", "--audio hub", "--hub 127.0.0.1", "--block 64", "--seed 2",
                 "--installation ring3", f"--state-dir {tmp_path}/agents/n2",
                 "--model-arg input_size=12", "--model-arg hidden_size=10"):
        assert part in argv, (part, argv)
    # The spawned agent's network really is 12 x 10 (the model's default is 12 x 8).
    proc = await asyncio.create_subprocess_exec(
        *specs[1].argv, "--no-announce", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    agent = AgentProcess(proc)
    try:
        await agent.ready()
        osc = await OscTestClient.open(agent.osc_port)
        try:
            _, weights = await osc.request("/weights")
        finally:
            osc.close()
        assert len(weights) == 10 * 12 + 10 + 10 + 1
        proc.send_signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        agent.kill()


async def test_the_configs_controller_networks_reach_every_spawned_agent(tmp_path):
    """``[installation] allow`` becomes each spawned agent's ``--allow``: the agent
    started with that command line says whom it takes OSC from."""
    from support.agents import AgentProcess

    from anamnesis.hub.core.hub import Hub
    from anamnesis.hub.installation.check import parse_config
    from anamnesis.hub.installation.config import ConfigError

    text = (REPO / "deploy" / "ring3.toml").read_text().replace(
        "[installation]\n", '[installation]\nallow = ["10.0.0.7", "192.168.1.0/24"]\n', 1)
    hub = Hub(state_dir=tmp_path, config=parse_config(text, base_dir=REPO / "deploy"))
    argv = hub.local_agents()[0].argv
    assert " ".join(argv).count("--allow") == 2
    assert "--allow 10.0.0.7/32 --allow 192.168.1.0/24" in " ".join(argv)
    agent = AgentProcess(await asyncio.create_subprocess_exec(
        *argv, "--no-announce", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
    try:
        await agent.ready()
        assert "loopback and 10.0.0.7/32, 192.168.1.0/24" in agent.log, agent.log
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.wait() == 0
    finally:
        agent.kill()
    with pytest.raises(ConfigError, match=r"allow takes an IP address.*'the bar'"):
        parse_config(text.replace('"10.0.0.7"', '"the bar"'))
    with pytest.raises(ConfigError, match="allow must list addresses"):
        parse_config(text.replace('["10.0.0.7", "192.168.1.0/24"]', '"10.0.0.7"'))


@pytest.mark.parametrize(("taken", "what"), [("--http", "the dashboard's"),
                                             ("--osc", "the OSC API's"),
                                             ("--oscquery", "OSCQuery's")])
def test_a_busy_port_is_named_before_the_hub_starts_anything(tmp_path, taken, what):
    """``anamnesis hub`` on a port another program holds (a real socket bound on
    127.0.0.1) says which port and how to choose another, and exits 1 before it reads
    the config's agents, makes its state directory or starts an agent: the state
    directory stays absent and no agent log is written."""
    import socket
    import subprocess

    generate_key(tmp_path / "inst.key")
    (tmp_path / "hub.toml").write_text(CONFIG)
    state = tmp_path / "state"
    kind = socket.SOCK_DGRAM if taken == "--osc" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            sock.listen()
        port = sock.getsockname()[1]
        addresses = {"--http": "127.0.0.1:0", "--osc": "127.0.0.1:0",
                     "--oscquery": "127.0.0.1:0", taken: f"127.0.0.1:{port}"}
        done = subprocess.run(
            [sys.executable, "-m", "anamnesis.hub.cli", "hub", str(tmp_path / "hub.toml"),
             "--state-dir", str(state), *(x for kv in addresses.items() for x in kv)],
            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (
        f"anamnesis hub: {what} port 127.0.0.1:{port} is taken (another demo or hub still "
        f"running?): stop that one, or start this one elsewhere with {taken} 127.0.0.1:0 "
        "(any free port)")
    assert "Dashboard:" not in done.stdout
    assert not state.exists()
