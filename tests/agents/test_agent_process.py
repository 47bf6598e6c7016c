"""Real agent processes on 127.0.0.1: start, steer over OSC, SIGTERM, kill -9 and resume."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from numpy.testing import assert_allclose
from support.agents import REPO, AgentProcess, spawn
from support.controlplane import OscTestClient

from anamnesis.agents.snapshots import AUTOSAVE, read_snapshot_sync


def agent_args(state_dir: Path, *extra: str, agent_id: str = "p1") -> list[str]:
    return ["--id", agent_id, "--model", "autoregnn", "--audio", "null",
            "--interface", "127.0.0.1", "--state-dir", str(state_dir), *extra]


async def start(state_dir: Path, *extra: str) -> AgentProcess:
    agent = await spawn(*agent_args(state_dir, *extra))
    try:
        await agent.ready()
    except BaseException:
        agent.kill()
        raise
    return agent


@pytest.fixture
def agents_started():
    """Kills (by its own pid) every agent a test leaves running."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.kill()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_down_cleanly_and_saves_state(tmp_path, agents_started, signum):
    announce = () if signum == signal.SIGTERM else ("--no-announce",)
    agent = await start(tmp_path / "p1", *announce)
    agents_started.append(agent)
    osc = await OscTestClient.open(agent.osc_port)
    try:
        assert await osc.request("/ping") == ("/pong", [])
        address, args = await osc.request("/lr")
        assert address == "/lr" and args == [pytest.approx(0.1)]
    finally:
        osc.close()
    agent.proc.send_signal(signum)
    assert await agent.wait() == 0
    assert "state saved to" in agent.log
    assert "Traceback" not in agent.log
    assert re.search(r"stopped after \d+ blocks; xruns \d+, audio errors 0", agent.log)
    snap = read_snapshot_sync(tmp_path / "p1" / AUTOSAVE)
    assert snap.model == "autoregnn" and snap.agent == "p1"


async def _autosave_with(path: Path, key: str, value: float, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            snap = read_snapshot_sync(path)
            if snap.params.get(key) == pytest.approx(value):
                return snap
        except (FileNotFoundError, ValueError):
            pass  # not written yet
        await asyncio.sleep(0.1)
    raise AssertionError(f"no autosave with {key}={value} within {timeout} s")


async def test_kill_9_then_restart_resumes_the_last_autosave(tmp_path, agents_started):
    state = tmp_path / "p1"
    agent = await start(state, "--autosave-s", "0.3", "--no-announce")
    agents_started.append(agent)
    osc = await OscTestClient.open(agent.osc_port)
    try:
        osc.send("/learn", 0)  # freeze the weights so they can be compared after the restart
        osc.send("/lr", 0.37)
        osc.send("/act_mix", 3, 0.75)
        assert (await osc.request("/lr"))[1] == [pytest.approx(0.37)]
        _, weights_before = await osc.request("/weights")
    finally:
        osc.close()
    await _autosave_with(state / AUTOSAVE, "lr", 0.37)
    agent.proc.send_signal(signal.SIGKILL)
    assert await agent.wait() == -signal.SIGKILL

    again = await start(state, "--autosave-s", "0.3", "--no-announce")
    agents_started.append(again)
    assert "resumed the autosave" in again.log
    osc = await OscTestClient.open(again.osc_port)
    try:
        assert (await osc.request("/lr"))[1] == [pytest.approx(0.37)]
        assert (await osc.request("/learn"))[1] == [0]
        _, mix = await osc.request("/act_mix")
        assert_allclose(mix, [0, 0, 0, 0.75, 0, 0, 0, 0])
        _, weights_after = await osc.request("/weights")
        assert len(weights_after) == 8 * 12 + 8 + 8 + 1
        assert_allclose(weights_after, weights_before, rtol=1e-6, atol=1e-7)
    finally:
        osc.close()
    again.proc.send_signal(signal.SIGTERM)
    assert await again.wait() == 0

    fresh = await start(state, "--fresh", "--no-announce")
    agents_started.append(fresh)
    assert "resumed" not in fresh.log
    osc = await OscTestClient.open(fresh.osc_port)
    try:
        assert (await osc.request("/lr"))[1] == [pytest.approx(0.1)]
    finally:
        osc.close()
    fresh.proc.send_signal(signal.SIGTERM)
    assert await fresh.wait() == 0


async def test_a_corrupt_autosave_falls_back_to_the_previous_one(tmp_path, agents_started):
    state = tmp_path / "p1"
    agent = await start(state, "--autosave-s", "0.2", "--no-announce")
    agents_started.append(agent)
    osc = await OscTestClient.open(agent.osc_port)
    try:
        osc.send("/ridge", 0.02)
        assert (await osc.request("/ridge"))[1] == [pytest.approx(0.02)]
    finally:
        osc.close()
    await _autosave_with(state / AUTOSAVE, "ridge", 0.02)
    await asyncio.sleep(0.5)  # the previous generation holds ridge 0.02 as well
    agent.proc.send_signal(signal.SIGKILL)
    await agent.wait()
    latest = state / AUTOSAVE
    latest.write_bytes(latest.read_bytes()[:200])

    again = await start(state, "--no-announce")
    agents_started.append(again)
    assert f"cannot resume from {latest}" in again.log
    assert "resumed the autosave" in again.log
    osc = await OscTestClient.open(again.osc_port)
    try:
        assert (await osc.request("/ridge"))[1] == [pytest.approx(0.02)]
    finally:
        osc.close()
    again.proc.send_signal(signal.SIGTERM)
    assert await again.wait() == 0


async def test_a_second_agent_on_the_same_state_dir_is_refused(tmp_path, agents_started):
    agent = await start(tmp_path / "p1", "--no-announce")
    agents_started.append(agent)
    second = await spawn(*agent_args(tmp_path / "p1", "--no-announce"))
    agents_started.append(second)
    assert await second.wait(60) == 1
    assert "error: another agent is running with the state directory" in second.log
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.wait() == 0


@pytest.mark.parametrize("extra, code, message", [
    (("--hub", "0.0.0.0"), 2, "error: --hub must be a concrete IPv4 address"),
    (("--block", "3"), 2, r"error: --block must be in \[16, 4096\] frames; got 3"),
    (("--interface", "0.0.0.0"), 2, "error: --interface must be a concrete address"),
    (("--ceiling-db", "3"), 2, r"error: --ceiling-db must be in \[-60, 0\] dBFS"),
    (("--model-arg", "hiden_size=10"), 2,
     r"error: --model-arg hiden_size: autoregnn has no such argument; did you mean 'hidden_size'\?"),
    (("--model-arg", "hidden_size=ten"), 2,
     r"error: --model-arg hidden_size must be an integer; got 'ten'"),
    (("--model-arg", "hidden_size=0"), 2, r"error: --model-arg: autoregnn: hidden_size must be in"),
])
async def test_start_up_errors_are_one_clear_line(tmp_path, extra, code, message):
    args = agent_args(tmp_path / "p1", "--no-announce")
    args[args.index("--audio") + 1:args.index("--audio") + 2] = ["null"]
    agent = await spawn("agent", *args, *extra, module="anamnesis.hub.cli")
    assert await agent.wait(60) == code
    errors = [line for line in agent.stderr if "error:" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), agent.log
    assert "Traceback" not in agent.log


async def test_devices_command_lists_or_explains(tmp_path):
    env = {**os.environ, "JACK_NO_START_SERVER": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "anamnesis.hub.cli", "devices", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode == 0:
        assert b"default input" in out or b"no audio devices found" in out
    else:
        assert proc.returncode == 1
        assert b"libportaudio2" in err or b"sounddevice" in err


async def test_a_preset_chooses_the_model_shape_and_parameters(tmp_path, agents_started):
    agent = await start(tmp_path / "p1", "--preset", "saw_lrmod", "--no-announce", "--fresh")
    agents_started.append(agent)
    osc = await OscTestClient.open(agent.osc_port)
    try:
        assert (await osc.request("/ridge"))[1] == [pytest.approx(1e-5)]
        _, weights = await osc.request("/weights")
        assert len(weights) == 10 * 12 + 10 + 10 + 1  # hidden_size 10 from the preset
    finally:
        osc.close()
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_model_args_set_the_network_size_over_the_preset(tmp_path, agents_started):
    agent = await start(tmp_path / "p1", "--preset", "saw_lrmod", "--model-arg", "hidden_size=6",
                        "--model-arg", "input_size=5", "--no-announce", "--fresh")
    agents_started.append(agent)
    osc = await OscTestClient.open(agent.osc_port)
    try:
        _, weights = await osc.request("/weights")
        assert len(weights) == 6 * 5 + 6 + 6 + 1  # the preset's 10 hidden overridden
        assert (await osc.request("/ridge"))[1] == [pytest.approx(1e-5)]  # preset param kept
    finally:
        osc.close()
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.wait() == 0


async def test_a_preset_of_another_model_is_refused(tmp_path):
    args = agent_args(tmp_path / "p1", "--no-announce", "--preset", "sine200")
    args[args.index("--model") + 1] = "unlearn"
    agent = await spawn(*args)
    assert await agent.wait(60) == 2
    assert "error: preset 'sine200' is for model autoregnn, not unlearn" in agent.log
