"""deploy/install.sh under a throwaway prefix (issue 13, "Boot and install"): a hub host and
an agent host installed with this checkout's virtual environment, the key made once and
copied with mode 0600, the systemd units rendered with the host's paths and address and
verified by ``systemd-analyze verify`` (where it exists), and the hub unit's own command
line run for real until its dashboard line, then stopped by SIGTERM as systemd would."""

from __future__ import annotations

import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from support.agents import REPO

VENV = Path(sys.prefix)
INSTALL = REPO / "deploy" / "install.sh"


def _install(prefix: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(INSTALL), "--prefix", str(prefix), "--venv", str(VENV),
                           *args], capture_output=True, text=True, timeout=120)


def _verify(unit: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return      # where systemd is not installed the rest of the test still holds
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "ignoring" not in done.stderr, done.stderr


def _exec_start(unit: Path) -> list[str]:
    text = unit.read_text().replace("\\\n", " ")
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


def test_a_hub_host_and_an_agent_host_installed_under_a_prefix(tmp_path):
    if not (VENV / "bin" / "anamnesis").exists():
        pytest.skip(f"the tests' environment {VENV} has no bin/anamnesis")
    hub, agent = tmp_path / "hub-root", tmp_path / "agent-root"
    config = tmp_path / "piece.toml"
    config.write_text('[installation]\nname = "piece"\nmode = "deployed"\n\n'
                      '[[agent]]\nid = "a1"\nmodel = "autoregnn"\n\n'
                      '[[agent]]\nid = "a2"\nmodel = "unlearn"\n')

    done = _install(hub, "--role", "hub", "--interface", "127.0.0.1", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "next: systemctl enable --now anamnesis-hub" in done.stdout
    key = hub / "etc/anamnesis/installation.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) >= 32
    assert (hub / "etc/anamnesis/installation.toml").read_text() == config.read_text()
    unit = hub / "etc/systemd/system/anamnesis-hub.service"
    argv = _exec_start(unit)
    assert argv[0] == str(hub / "opt/anamnesis/.venv/bin/anamnesis")
    assert str(hub / "etc/anamnesis/installation.toml") in argv and "127.0.0.1" in argv
    assert "192.168" not in unit.read_text()
    _verify(unit)
    made = key.read_bytes()
    again = _install(hub, "--role", "hub", "--interface", "127.0.0.1")   # again: the key is kept
    assert again.returncode == 0, again.stderr
    assert key.read_bytes() == made

    done = _install(agent, "--role", "agent", "--interface", "127.0.0.1", "--key", str(key))
    assert done.returncode == 0, done.stderr
    copied = agent / "etc/anamnesis/installation.key"
    assert copied.read_bytes() == key.read_bytes()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    assert "AGENT_ARGS=" in (agent / "etc/anamnesis/agent-example.env").read_text()
    template = agent / "etc/systemd/system/anamnesis-agent@.service"
    assert str(agent / "etc/anamnesis/installation.key") in template.read_text()
    _verify(template)

    # The hub unit's own command, run (ports made free ones: this machine may run a demo).
    proc = subprocess.Popen([*argv, "--http", "127.0.0.1:0", "--osc", "127.0.0.1:0",
                             "--oscquery", "off", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Dashboard: http://127.0.0.1:"), (line, proc.stderr.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert (hub / "var/lib/anamnesis/hub/hub.sqlite3").exists()


def test_the_installer_refuses_what_it_cannot_do(tmp_path):
    for args, says in ((("--role", "hub"), "--interface IP"),
                       (("--role", "both", "--interface", "127.0.0.1"), "--role hub or"),
                       (("--role", "agent", "--interface", "my-host"), "IPv4 address"),
                       (("--role", "hub", "--interface", "127.0.0.1"), "needs the installation "
                                                                        "config")):
        done = _install(tmp_path / "root", *args)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
    done = subprocess.run(["bash", str(INSTALL), "--role", "agent", "--interface", "127.0.0.1",
                           "--prefix", str(tmp_path / "r2"), "--venv", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "holds no anamnesis" in done.stderr
