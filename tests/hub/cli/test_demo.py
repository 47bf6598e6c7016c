"""``anamnesis demo`` as a composer runs it (JOURNEYS 1), as one real process for the module:
``python -m hub.cli demo --no-audio --http 127.0.0.1:0 --osc off --state-dir TMP``.

The dashboard line and the summary appear; ``/`` and ``/api/health`` answer; the
listener preview, read through the dashboard's listen stream
(``/ws/listen?source=listener`` with the token), carries sound (RMS > 1e-4, finite,
within full scale) and keeps playing; SIGINT stops the hub and every agent with exit
status 0, the state saved. Everything is real: the agents are processes (forked from
the hub's warm forkserver) clocked over RTP on loopback.

How *soon* the sound comes is a figure, not a test: ``bench/bench_demo_start.py``
measures it (seconds from the dashboard line to sound, forked agents against agents
exec'd as new programs). Here :data:`FIRST_SOUND_GUARD_S` only stops a demo that
never sounds from hanging the suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from support.agents import REPO

from anamnesis.hub.monitor.listen import LISTENER, decode_frame

DASHBOARD = re.compile(r"^Dashboard: http://127\.0\.0\.1:(\d+)/\?token=(\S+)$")
#: A guard, not a promise (s from the dashboard line): a demo that never sounds fails
#: instead of hanging. The promise is measured by bench/bench_demo_start.py.
FIRST_SOUND_GUARD_S = 120.0
AGENTS = [f"a{i}" for i in range(1, 9)]


class Demo:
    """The running demo: its process, stdout lines (with arrival times), port and token."""

    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.stderr_path = tmp / "demo.stderr"
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache"),
               "XDG_STATE_HOME": str(tmp / "xdg-state")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anamnesis.hub.cli", "demo", "--no-audio", "--http", "127.0.0.1:0",
             "--osc", "off", "--state-dir", str(self.state), "--log-level", "info"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=open(self.stderr_path, "wb"), text=True)  # noqa: SIM115 (the child owns it)
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, name="demo-stdout", daemon=True)
        self._reader.start()
        self.port = 0
        self.token = ""
        self.dashboard_at = 0.0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    @property
    def stdout(self) -> str:
        return "\n".join(line for _, line in self.lines)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def wait_line(self, pattern: re.Pattern[str], timeout: float) -> tuple[float, re.Match[str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if (match := pattern.match(line)) is not None:
                    return at, match
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern.pattern!r} in {timeout} s; stdout:\n"
                             f"{self.stdout}\nstderr:\n{self.stderr}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    run = Demo(tmp_path_factory.mktemp("demo"))
    try:
        # Kernels are compiled before the hub starts: a cold numba cache takes ~1 min.
        at, match = run.wait_line(DASHBOARD, 240.0)
        run.dashboard_at, run.port, run.token = at, int(match.group(1)), match.group(2)
        yield run
    finally:
        run.stop()
        pids = _agent_pids(run.state)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:      # a zombie is gone for our purpose
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _agent_pids(state: Path) -> list[int]:
    """PIDs of agent processes whose command line (or, forked, process title
    ``anamnesis agent …``) names this demo's state dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        agent = b"anamnesis.agents" in cmd or any(p.startswith(b"anamnesis agent ") for p in cmd)
        if agent and any(str(state).encode() in part for part in cmd):
            pids.append(int(entry.name))
    return pids


def test_demo_prints_the_dashboard_and_a_summary(demo):
    assert (demo.state / "token").read_text().strip() == demo.token
    summary = demo.wait_line(re.compile(r"^  Rehearse offline: .* rehearse .*octophonic\.toml"),
                             10.0)
    assert summary
    text = demo.stdout
    for part in ("anamnesis demo: octophonic — 8 learning agents through the simulated room",
                 "Kernels ready in",
                 "Agents: starting 8 (a1, a2, a3, a4, a5, a6, a7, a8)",
                 "Headphones: off (--no-audio)",
                 f"State: {demo.state}",
                 "Stop: Ctrl-C"):
        assert part in text, (part, text)
    assert demo.token not in demo.stderr


async def test_dashboard_and_health_answer(demo):
    base = f"http://127.0.0.1:{demo.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
        async with http.get(base + "/api/health") as r:
            health = await r.json()
        assert health["ok"] is True and health["name"] == "octophonic"
        async with http.get(base + "/api/installation") as r:
            inst = await r.json()
        assert inst["mode"] == "simulated" and inst["interface"] == "127.0.0.1"
        assert sorted(c["name"] for c in inst["local_agents"]) == AGENTS


async def test_listener_preview_sounds_and_keeps_playing(demo):
    url = f"http://127.0.0.1:{demo.port}/ws/listen?source={LISTENER}"
    deadline = demo.dashboard_at + FIRST_SOUND_GUARD_S
    frames = loud = playing = 0
    peak = 0.0
    heard_at = None
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, headers={"Authorization": f"Bearer {demo.token}"}) as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "listen" and hello["channels"] == 2
        assert hello["sample_rate"] == 48000
        # Once heard, keep listening 2 s more: it must stay finite and within full scale.
        while heard_at is None or time.monotonic() < heard_at + 2.0:
            assert time.monotonic() < deadline, (
                f"the listener heard nothing {time.monotonic() - demo.dashboard_at:.1f} s "
                f"after the dashboard line ({frames} messages)\n{demo.stdout}\n{demo.stderr}")
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            frame = decode_frame(msg.data)
            assert frame.channels == 2 and frame.sample_rate == 48000
            x = frame.samples.astype(np.float64) / 32767.0
            assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
            frames += 1
            peak = max(peak, float(np.max(np.abs(x))))
            if heard_at is not None:
                playing += 1
            if float(np.sqrt(np.mean(x * x))) > 1e-4:
                loud += 1
                if heard_at is None:
                    heard_at = time.monotonic()
                    loud = playing = 1
    after = heard_at - demo.dashboard_at
    printed = re.search(r"Sound: the listener hears the agents, ([\d.]+) s after", demo.stdout)
    print(f"\nfirst sound at the listener {after:.1f} s after the dashboard line "
          f"(the demo says {printed.group(1) if printed else '?'} s after the hub started); "
          f"{loud}/{playing} loud messages since, peak {peak:.3f}")
    assert printed is not None, demo.stdout     # the terminal says when the sound came
    # Once playing, the preview keeps playing (the agents never all fall silent).
    assert loud >= 0.9 * playing, (loud, playing)


def test_sigint_stops_everything_and_saves_the_state(demo):
    pids = _agent_pids(demo.state)
    assert len(pids) == len(AGENTS), pids
    assert all(_alive(p) for p in pids)
    t0 = time.monotonic()
    demo.proc.send_signal(signal.SIGINT)
    code = demo.proc.wait(timeout=20)
    took = time.monotonic() - t0
    print(f"\nSIGINT: the demo exited {code} after {took:.1f} s")
    assert code == 0, demo.stderr
    assert took < 15.0     # the supervisor kills an agent that ignores SIGTERM after 10 s
    assert not [p for p in pids if _alive(p)], "agents outlived the demo"
    assert (demo.state / "hub.sqlite3").is_file()
    for agent in AGENTS:     # each agent wrote its autosave on the way out
        assert any((demo.state / "agents" / agent).iterdir()), agent
    demo._reader.join(5)
    assert "anamnesis demo: stopped" in demo.stdout


# ---------------------------------------------------------------------------
# Options (no demo process)
# ---------------------------------------------------------------------------


def test_config_is_an_example_name_or_a_path(tmp_path):
    from anamnesis.hub.cli.demo import resolve_config
    from anamnesis.hub.resources import deploy_config

    assert resolve_config("octophonic.toml") == deploy_config("octophonic.toml")
    assert resolve_config("ring3") == deploy_config("ring3.toml")
    mine = tmp_path / "mine.toml"
    mine.write_text("[installation]\n")
    assert resolve_config(str(mine)) == mine
    with pytest.raises(FileNotFoundError, match=r"there are: duo.toml, dusk.toml, embodied8.toml, .*, octophonic.toml"):
        resolve_config("nope.toml")
    with pytest.raises(FileNotFoundError, match="no config file"):
        resolve_config(str(tmp_path / "missing" / "x.toml"))


def test_fresh_empties_only_a_hub_state_directory(tmp_path):
    from anamnesis.hub.cli.demo import clear_state_dir

    state = tmp_path / "state"
    (state / "agents" / "a1").mkdir(parents=True)
    (state / "token").write_text("t\n")
    clear_state_dir(state)
    assert not state.exists()
    clear_state_dir(state)                       # missing: nothing to do
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="does not hold a hub's state"):
        clear_state_dir(other)
    assert (other / "holiday.jpg").exists()


@pytest.mark.parametrize("argv, message", [
    (["--config", "nope.toml"], "no example installation 'nope.toml'"),
    (["--http", "8470"], "--http must be HOST:PORT"),
])
def test_bad_options_are_refused_in_one_line(tmp_path, capsys, argv, message):
    from anamnesis.hub.cli import main

    assert main(["demo", *argv, "--state-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anamnesis demo: ") and message in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("udp", [False, True])
def test_a_busy_port_is_named_at_once_with_what_to_do(tmp_path, udp):
    """A second demo on a taken port says which port and how to pick another, before it
    compiles anything or starts an agent (the process exits 1; it never prints the
    kernels line nor the dashboard line)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        if not udp:
            sock.listen()
        port = sock.getsockname()[1]
        free = "127.0.0.1:0"
        http, osc = (free, f"127.0.0.1:{port}") if udp else (f"127.0.0.1:{port}", free)
        done = subprocess.run(
            [sys.executable, "-m", "anamnesis.hub.cli", "demo", "--http", http, "--osc", osc,
             "--no-audio", "--state-dir", str(tmp_path / "s")],
            capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    what, option = ("the OSC API's", "--osc") if udp else ("the dashboard's", "--http")
    assert done.stderr.strip() == (
        f"anamnesis demo: {what} port 127.0.0.1:{port} is taken (another demo or hub still "
        f"running?): stop that one, or start this one elsewhere with {option} 127.0.0.1:0 "
        "(any free port)")
    assert "Kernels ready" not in done.stdout and "Dashboard:" not in done.stdout
    assert not (tmp_path / "s").exists()
