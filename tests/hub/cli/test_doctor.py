"""``anamnesis doctor``: a clear list on a ready machine, and every failing check
provoked for real (a key others can read, a taken port, an address not of this host,
a state directory that cannot be written, a broken config), plus a real agent heard
over zeroconf on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys

from support.agents import REPO
from support.controlplane import AgentProcess

from anamnesis.agents.protocol.key import generate_key

CONFIG = """
[installation]
name = "doc1"
key_file = "inst.key"

[[agent]]
id = "d1"
model = "autoregnn"

[[agent]]
id = "d2"
model = "autoregnn"
"""


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _args(tmp_path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "anamnesis.hub.cli", "doctor", str(tmp_path / "doc1.toml"),
            "--interface", "127.0.0.1", "--state-dir", str(tmp_path / "state"),
            "--http", f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}",
            "--osc", f"127.0.0.1:{_free_port(socket.SOCK_DGRAM)}",
            "--oscquery", f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}", "--zeroconf-s", "5",
            *extra]


def _doctor(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_args(tmp_path, *extra), cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def _setup(tmp_path) -> None:
    (tmp_path / "doc1.toml").write_text(CONFIG)
    generate_key(tmp_path / "inst.key")


def test_a_ready_machine_gets_a_clear_list_and_exit_0(tmp_path):
    _setup(tmp_path)
    result = _doctor(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "ready"
    for name in ("config", "audio", "interface", "zeroconf", "ports", "key", "state"):
        assert any(line.split()[1] == name for line in lines[:-1]), (name, result.stdout)
    assert all(line.split()[0] in ("ok", "warn") for line in lines[:-1]), result.stdout
    assert "multicast works on 127.0.0.1" in result.stdout
    assert "installation 'doc1', 2 agents" in result.stdout
    assert "the config's agents not heard: d1, d2" in result.stdout   # none is running
    assert not (tmp_path / "state").exists()                       # the doctor creates nothing
    checks = json.loads(_doctor(tmp_path, "--json").stdout)
    assert {c["name"] for c in checks} >= {"config", "zeroconf", "ports", "key", "state"}
    assert all(set(c) == {"name", "status", "found", "fix"} for c in checks)


def test_every_failing_check_says_what_to_do(tmp_path):
    _setup(tmp_path)
    os.chmod(tmp_path / "inst.key", 0o644)
    (tmp_path / "not-a-dir").write_text("a file")
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        args = _args(tmp_path)
        args[args.index("--http") + 1] = f"127.0.0.1:{port}"
        args[args.index("--state-dir") + 1] = str(tmp_path / "not-a-dir" / "state")
        args[args.index("--interface") + 1] = "192.0.2.1"     # TEST-NET-1: not this host's
        result = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    fails = {line.split()[1]: line for line in out.splitlines() if line.startswith("FAIL")}
    assert "chmod 600" in fails["key"] and "readable by others" in fails["key"]
    assert f"127.0.0.1:{port} is taken" in fails["ports"] and "--http 127.0.0.1:0" in fails["ports"]
    assert "192.0.2.1 is not an address of this host" in fails["interface"]
    assert "zeroconf" in fails
    assert "cannot write in" in fails["state"] and "--state-dir" in fails["state"]
    assert out.splitlines()[-1] == f"{len(fails)} problem(s)"


def test_a_broken_config_is_a_failure_with_its_line(tmp_path):
    _setup(tmp_path)
    (tmp_path / "doc1.toml").write_text(CONFIG.replace('model = "autoregnn"\n', 'model = "nope"\n', 1))
    result = _doctor(tmp_path)
    assert result.returncode == 1
    line = next(line for line in result.stdout.splitlines() if line.startswith("FAIL  config"))
    assert "doc1.toml" in line and "nope" in line


async def test_the_agents_of_the_installation_are_heard(tmp_path):
    _setup(tmp_path)
    agent = await AgentProcess.start(
        tmp_path / "d1", agent_id="d1",
        extra=("--installation", "doc1", "--key-file", str(tmp_path / "inst.key")))
    other = await AgentProcess.start(tmp_path / "n1", agent_id="n1",
                                     extra=("--installation", "next-door"))
    try:
        proc = await asyncio.create_subprocess_exec(
            *_args(tmp_path), cwd=REPO, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await asyncio.gather(agent.stop(), other.stop())
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    assert "agents heard: d1" in text, text
    assert "the config's agents not heard: d2" in text
    assert "other installations here: next-door" in text


def test_a_running_hubs_drift_lines_from_what_it_measured():
    """check_hub reads a running hub's /api/installation (the live path is
    test_drift_live's): a far-off clock warns, a second sample rate fails, an agent
    measured too briefly says so, and a simulated hub has no drift to measure."""
    from anamnesis.hub.cli.doctor import check_hub

    def hub(mode, agents):
        return {"ok": True, "name": "doc1", "agents": 3, "online": 3, "installation": {
            "mode": mode, "config": {"installation": {"sample_rate": 48000}},
            "clock": {"agents": {k: {"out": v} for k, v in agents.items()}}}}

    lines = {re.match(r"agent (\w+)", c.found).group(1): c for c in
             check_hub(hub("deployed", {"a": {"clock_ppm": 35.0}, "b": {"clock_ppm": -450.0},
                                        "c": {"clock_ppm": 88200.0}, "d": {}}))
             if c.name == "drift"}
    assert lines["a"].status == "ok" and "+35.0 ppm" in lines["a"].found
    assert lines["b"].status == "warn" and "word clock" in lines["b"].fix
    assert lines["c"].status == "fail" and "sample rate" in lines["c"].fix
    assert "not measured yet" in lines["d"].found and lines["d"].status == "warn"
    [simulated] = [c for c in check_hub(hub("simulated", {})) if c.name == "drift"]
    assert simulated.status == "ok" and "no drift" in simulated.found
    assert check_hub(None) == []
