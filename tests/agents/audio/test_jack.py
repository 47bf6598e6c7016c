"""The sounddevice backend against a real JACK server (dummy driver, TESTING.md).

A player process feeds a 200 Hz sine into the agent's mic port; ffmpeg records
the agent's speaker port. The recording must be finite, at or below the
ceiling, and carry 200 Hz (AutoRegNN locks onto its input). Then the player
is stopped for a moment, which makes JACK report an xrun to every client: the
agent must count it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from support.agents import REPO, spawn
from support.controlplane import OscTestClient
from support.jack import jack_ports, private_jackd

SR = 48000
CEILING_DB = -3.0


async def _wait_port(env: dict[str, str], port: str, timeout: float = 60.0) -> None:
    """Wait until JACK lists ``port``. The timeout is a guard for a peer that never
    registers, not a speed figure: ffmpeg took over 15 s to open its JACK input on a
    loaded CI machine, and waiting ends as soon as the port is there. ``jack_lsp`` runs
    in a thread: the test's loop is watched."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in await asyncio.to_thread(jack_ports, env):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"JACK port {port} did not appear; ports: {jack_ports(env)}")


async def _jack(env: dict[str, str], *args: str, timeout: float = 30.0) -> None:
    """Run a JACK tool (in a thread) until it succeeds. A client's port is listed as
    soon as it is registered, but can be connected only once the client is active
    (ffmpeg's recorder registers, then activates): a refusal is retried; the timeout
    is a guard."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(subprocess.run, list(args), env=env,
                                         capture_output=True, text=True, timeout=10)
        if result.returncode == 0:
            return
        assert time.monotonic() < deadline, f"{' '.join(args)}: {result.stderr}"
        await asyncio.sleep(0.1)


def _end(*procs: subprocess.Popen | None) -> None:
    """Terminate the peers still running (SIGKILL after 10 s)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def jack_env(tmp_path):
    """A private jackd (dummy driver, 48 kHz, 256 frames, 8 in/out) for this test."""
    with private_jackd(tmp_path, SR, 8) as env:
        yield env


async def test_agent_on_jack_learns_200_hz_within_the_ceiling_and_counts_xruns(
        tmp_path, jack_env):
    agent_name = "anamnesis-j1"
    agent = await spawn("--id", "j1", "--model", "autoregnn", "--audio", "sounddevice",
                        "--device", "system", "--in-channel", "1", "--out-channel", "1",
                        "--ceiling-db", str(CEILING_DB), "--interface", "127.0.0.1",
                        "--no-announce", "--fresh", "--state-dir", str(tmp_path / "j1"),
                        env=jack_env)
    player = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "support" / "jack_player.py"), "200", "0.5", "anm-player"],
        env=jack_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    recorder = None
    try:
        await agent.ready()
        assert "sounddevice in 'system' ch 1" in agent.log
        assert (await asyncio.to_thread(player.stdout.readline)).strip() == b"playing"
        await _wait_port(jack_env, f"{agent_name}:in_0")
        await _wait_port(jack_env, "anm-player:out_0")
        # PortAudio connected everyone to the system ports; wire player -> agent instead.
        await asyncio.to_thread(
            subprocess.run, ["jack_disconnect", "system:capture_1", f"{agent_name}:in_0"],
            env=jack_env, capture_output=True, timeout=10)
        await _jack(jack_env, "jack_connect", "anm-player:out_0", f"{agent_name}:in_0")
        wav = tmp_path / "agent.wav"
        recorder = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "jack",
             "-channels", "1", "-i", "anm-rec", "-t", "4", "-c:a", "pcm_f32le", "-y", str(wav)],
            env=jack_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await _wait_port(jack_env, "anm-rec:input_1")
        await _jack(jack_env, "jack_connect", f"{agent_name}:out_0", "anm-rec:input_1")
        _, err = await asyncio.to_thread(recorder.communicate, timeout=30)
        assert recorder.returncode == 0, err.decode(errors="replace")

        import soundfile
        y, rate = soundfile.read(str(wav), dtype="float32")
        assert rate == SR and y.ndim == 1 and len(y) >= 3 * SR
        assert np.all(np.isfinite(y))
        ceiling = 10 ** (CEILING_DB / 20)
        assert np.max(np.abs(y)) <= ceiling
        tail = y[-2 * SR:].astype(np.float64)
        assert np.sqrt(np.mean(tail ** 2)) > 0.05  # the agent plays, it is not silent
        spectrum = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
        freqs = np.fft.rfftfreq(len(tail), 1 / SR)
        assert abs(freqs[np.argmax(spectrum)] - 200.0) <= 1.0
        band = (freqs > 190) & (freqs < 210)
        assert np.sum(spectrum[band] ** 2) > 0.5 * np.sum(spectrum ** 2)

        # Stop the player for 300 ms: JACK reports an xrun to every client, and the
        # agent's telemetry (OSC /subscribe, as a hub reads it) counts it.
        osc = await OscTestClient.open(agent.osc_port)
        try:
            osc.send("/subscribe")
            await asyncio.sleep(0.5)  # the graph settles after the rewiring
            osc.drain()
            before = (await osc.expect("/xruns"))[0]
            player.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.3)
            player.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.3)
            osc.drain()
            after = (await osc.expect("/xruns"))[0]
            assert after > before, (before, after)
        finally:
            osc.close()
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.wait() == 0
        match = re.search(r"stopped after (\d+) blocks; xruns (\d+), audio errors (\d+)",
                          agent.log)
        assert match, agent.log
        blocks, xruns, errors = map(int, match.groups())
        assert blocks > 4 * SR / 256 and errors == 0
        assert xruns >= after, agent.log
    finally:
        agent.kill()
        await asyncio.to_thread(_end, player, recorder)
        if player.stdout:
            player.stdout.close()
            player.stderr.close()


def test_devices_lists_the_jack_device(jack_env):
    result = subprocess.run([sys.executable, "-m", "anamnesis.hub.cli", "devices"], cwd=REPO, env=jack_env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.search(r"<> +\d+  system  \(JACK Audio Connection Kit; 8 in, 8 out; 48000 Hz\)",
                     result.stdout), result.stdout


async def test_an_agent_on_a_sound_card_can_hear_its_preset_instead_of_the_mic(
        tmp_path, jack_env):
    """``--input preset`` on a real interface: nothing is wired to the agent's input
    port, yet it hears (and learns) its preset's 200 Hz; ffmpeg records it from JACK."""
    agent_name = "anamnesis-j2"
    agent = await spawn("--id", "j2", "--preset", "sine200", "--audio", "sounddevice",
                        "--device", "system", "--input", "preset", "--interface", "127.0.0.1",
                        "--no-announce", "--fresh", "--state-dir", str(tmp_path / "j2"),
                        env=jack_env)
    recorder = None
    try:
        await agent.ready()
        assert "hears preset sine200's input (sine)" in agent.log
        await _wait_port(jack_env, f"{agent_name}:out_0")
        wav = tmp_path / "agent.wav"
        recorder = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "jack",
             "-channels", "1", "-i", "anm-rec2", "-t", "3", "-c:a", "pcm_f32le", "-y", str(wav)],
            env=jack_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await _wait_port(jack_env, "anm-rec2:input_1")
        await _jack(jack_env, "jack_connect", f"{agent_name}:out_0", "anm-rec2:input_1")
        _, err = await asyncio.to_thread(recorder.communicate, timeout=30)
        assert recorder.returncode == 0, err.decode(errors="replace")
    finally:
        await agent.stop(20)
        await asyncio.to_thread(_end, recorder)
    import soundfile

    y, rate = soundfile.read(str(wav), dtype="float32")
    tail = y[-SR:].astype(np.float64)
    assert rate == SR and np.all(np.isfinite(y))
    assert np.sqrt(np.mean(tail ** 2)) > 0.05, "the agent should play what it hears"
    freqs = np.fft.rfftfreq(tail.size, 1 / SR)
    assert abs(freqs[np.argmax(np.abs(np.fft.rfft(tail * np.hanning(tail.size))))] - 200.0) <= 1.0


def _tone(y: np.ndarray) -> float:
    """The strongest frequency of ``y`` (Hz)."""
    freqs = np.fft.rfftfreq(y.size, 1 / SR)
    return float(freqs[np.argmax(np.abs(np.fft.rfft(y * np.hanning(y.size))))])


async def test_one_process_serves_an_agent_per_channel_of_one_interface(tmp_path, jack_env):
    """``--channels 1-2`` on one interface (ALSA opens a device once): one process, one
    JACK client with two outputs, two agents each its own OSC identity and state. Wired
    with jack_connect and recorded by ffmpeg, both play their preset's 200 Hz, finite and
    under the ceiling; muting c2 over its own OSC port silences channel 2 alone."""
    agent = await spawn("--id", "c", "--channels", "1-2", "--preset", "sine200",
                        "--audio", "sounddevice", "--device", "system", "--input", "preset",
                        "--interface", "127.0.0.1", "--no-announce", "--fresh",
                        "--state-dir", str(tmp_path / "state"), env=jack_env)
    recorder = None
    client = None
    try:
        ready = [(await asyncio.wait_for(agent.proc.stdout.readline(), 60)).decode().strip()
                 for _ in range(2)]
        ports = {}
        for line in ready:
            match = re.fullmatch(r"agent (c[12]) ready osc=(\d+) http=(\d+)", line)
            assert match, (line, agent.log)
            ports[match.group(1)] = int(match.group(2))
        assert set(ports) == {"c1", "c2"} and ports["c1"] != ports["c2"]
        assert {p.name for p in (tmp_path / "state").iterdir()} == {"c1", "c2"}
        client_name = "anamnesis-c1-c2"
        await _wait_port(jack_env, f"{client_name}:out_1")
        assert f"{client_name}:out_2" not in jack_ports(jack_env)    # one output per agent
        client = await OscTestClient.open(ports["c2"])
        client.send("/mute", 1)
        assert await client.request("/mute") == ("/mute", [1])
        wav = tmp_path / "both.wav"
        recorder = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "jack",
             "-channels", "2", "-i", "anm-rec3", "-t", "3", "-c:a", "pcm_f32le", "-y", str(wav)],
            env=jack_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await _wait_port(jack_env, "anm-rec3:input_2")
        await _jack(jack_env, "jack_connect", f"{client_name}:out_0", "anm-rec3:input_1")
        await _jack(jack_env, "jack_connect", f"{client_name}:out_1", "anm-rec3:input_2")
        _, err = await asyncio.to_thread(recorder.communicate, timeout=30)
        assert recorder.returncode == 0, err.decode(errors="replace")
    finally:
        if client is not None:
            client.close()
        assert await agent.stop(20) == 0, agent.log
        await asyncio.to_thread(_end, recorder)
    import soundfile

    y, rate = soundfile.read(str(wav), dtype="float32")
    assert rate == SR and y.shape[1] == 2 and np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 10 ** (-1.0 / 20) + 1e-6               # the ceiling
    one, two = y[-SR:, 0].astype(np.float64), y[-SR:, 1].astype(np.float64)
    assert np.sqrt(np.mean(one ** 2)) > 0.05 and abs(_tone(one) - 200.0) <= 1.0
    assert np.sqrt(np.mean(two ** 2)) < 1e-4, "c2 is muted: its channel stays silent"
    assert "agent c1: state saved" in agent.log and "agent c2: state saved" in agent.log


async def test_one_process_per_agent_shares_one_interface_through_jack(tmp_path, jack_env):
    """The other way to put several agents on one interface: a sound server shares it,
    and each agent is its own process and JACK client (named after it). Two agents,
    recorded together by ffmpeg: both play their preset's 200 Hz, finite, under the
    ceiling."""
    agents = [await spawn("--id", agent_id, "--preset", "sine200", "--audio", "sounddevice",
                          "--device", "system", "--input", "preset", "--interface", "127.0.0.1",
                          "--no-announce", "--fresh", "--state-dir", str(tmp_path / agent_id),
                          env=jack_env) for agent_id in ("p1", "p2")]
    recorder = None
    try:
        await asyncio.gather(*(a.ready() for a in agents))
        for agent_id in ("p1", "p2"):
            await _wait_port(jack_env, f"anamnesis-{agent_id}:out_0")
        wav = tmp_path / "two.wav"
        recorder = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "jack",
             "-channels", "2", "-i", "anm-rec4", "-t", "3", "-c:a", "pcm_f32le", "-y", str(wav)],
            env=jack_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await _wait_port(jack_env, "anm-rec4:input_2")
        await _jack(jack_env, "jack_connect", "anamnesis-p1:out_0", "anm-rec4:input_1")
        await _jack(jack_env, "jack_connect", "anamnesis-p2:out_0", "anm-rec4:input_2")
        _, err = await asyncio.to_thread(recorder.communicate, timeout=30)
        assert recorder.returncode == 0, err.decode(errors="replace")
    finally:
        for a in agents:
            assert await a.stop(20) == 0, a.log
        await asyncio.to_thread(_end, recorder)
    import soundfile

    y, rate = soundfile.read(str(wav), dtype="float32")
    assert rate == SR and y.shape[1] == 2 and np.all(np.isfinite(y))
    assert np.max(np.abs(y)) <= 10 ** (-1.0 / 20) + 1e-6
    for channel in range(2):
        tail = y[-SR:, channel].astype(np.float64)
        assert np.sqrt(np.mean(tail ** 2)) > 0.05, channel
        assert abs(_tone(tail) - 200.0) <= 1.0, channel
