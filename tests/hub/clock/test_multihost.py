"""The deployed installation across hosts: a hub and three agents in their own network
namespaces on one bridge (:mod:`support.netns`), every process the real program
(``anamnesis hub``, ``anamnesis agent``), found by real zeroconf on the hosts' own
addresses, adopted by the installation key's signature, routed over RTP.

What is shown (issue 13, "Must show"): discovery across hosts; the two signed agents
adopted, an unsigned one pending; a ring a -> b -> a across hosts carrying audio (each
agent hears its preset's 200 Hz and the other agent; what each plays, recorded by ffmpeg
on the hub's host from the agent's own SDP, is finite and under the ceiling); b's cable
pulled: offline within 3 s, dropped from the ring (a's input fades, a plays on); the
cable plugged back: b online and in the ring again, the same process, no restart.

Runs as root (CI does); elsewhere it skips with the reason. Nothing leaves the namespaces
the test makes: every address is 10.99.0.N on the test's own bridge.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from support.lanhosts import Hosts as LanHosts
from support.netns import Lan, require_namespaces

from anamnesis.agents.protocol.key import generate_key

HUB, HOST_A, HOST_B = 1, 2, 3
HTTP, AGENT_HTTP = 8470, 8480
CEILING = 10 ** (-1.0 / 20)        # the agents' default --ceiling-db -1

CONFIG = """
[installation]
name = "lan3"
mode = "deployed"

[[agent]]
id = "a"
model = "autoregnn"

[[agent]]
id = "b"
model = "autoregnn"

[[ring]]
name = "across"
agents = ["a", "b"]
delay_ms = 5.0
gain = 0.5
"""


class Hosts(LanHosts):
    """The LAN's programs (:class:`support.lanhosts.Hosts`) and recordings of the agents'
    streams."""

    def __init__(self, lan: Lan, tmp: Path) -> None:
        super().__init__(lan, tmp, hub=HUB, http_port=HTTP)

    async def record(self, host: int, agent_host: int, stream: str, seconds: float) -> np.ndarray:
        """``seconds`` of an agent's ``stream`` as ffmpeg on ``host`` decodes it from the
        agent's own SDP (a listen-in lease to ``host``'s address)."""
        port = 30000 + 10 * agent_host + ("out", "in", "mic").index(stream) * 2
        sdp = await self.curl(host, f"http://{self.lan.address(agent_host)}:{AGENT_HTTP}"
                                    f"/streams/{stream}.sdp?port={port}")
        name = f"h{agent_host}-{stream}-{time.monotonic_ns()}"
        (self.tmp / f"{name}.sdp").write_bytes(sdp)
        wav = self.tmp / f"{name}.wav"
        proc = await asyncio.create_subprocess_exec(
            *self.lan.exec(host), "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-protocol_whitelist", "file,udp,rtp", "-i", str(self.tmp / f"{name}.sdp"),
            "-t", str(seconds), "-c:a", "pcm_s24le", "-y", str(wav),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"ffmpeg {name}: {err.decode(errors='replace')}"
        data, rate = soundfile.read(str(wav), dtype="float64")
        assert rate == 48000 and data.size >= seconds * rate * 0.6, (name, data.shape)
        return data


def plays(y: np.ndarray, what: str) -> float:
    """RMS of ``y`` after checking it is finite and under the ceiling."""
    assert np.all(np.isfinite(y)), what
    assert np.max(np.abs(y)) <= CEILING + 1e-6, (what, float(np.max(np.abs(y))))
    return float(np.sqrt(np.mean(y ** 2)))


@pytest.fixture
def lan():
    require_namespaces()
    with Lan(hosts=3) as lan:
        yield lan


async def test_a_ring_across_hosts_survives_a_pulled_cable(lan, tmp_path):
    key_file = tmp_path / "installation.key"
    generate_key(key_file)
    (tmp_path / "lan3.toml").write_text(CONFIG)
    hosts = Hosts(lan, tmp_path)

    def agent(agent_id: str, host: int, *extra: str) -> tuple[str, ...]:
        return ("--id", agent_id, "--preset", "sine200", "--audio", "null",
                "--interface", lan.address(host), "--hub", lan.address(HUB),
                "--installation", "lan3", "--http-port", str(AGENT_HTTP if agent_id != "x" else 0),
                "--state-dir", str(tmp_path / agent_id), "--fresh", "--log-level", "info", *extra)

    try:
        hub = await hosts.run(
            HUB, "hub", str(tmp_path / "lan3.toml"), "--interface", lan.address(HUB),
            "--http", f"{lan.address(HUB)}:{HTTP}", "--osc", f"{lan.address(HUB)}:8471",
            "--key-file", str(key_file), "--state-dir", str(tmp_path / "hub"), "--no-spawn",
            module="anamnesis.hub.cli")
        line = (await asyncio.wait_for(hub.proc.stdout.readline(), 120)).decode()
        assert "Dashboard: " in line and "token=" in line, (line, hub.log)
        hosts.token = line.strip().rsplit("token=", 1)[1]
        a, b, x = await asyncio.gather(
            hosts.run(HOST_A, *agent("a", HOST_A, "--key-file", str(key_file))),
            hosts.run(HOST_B, *agent("b", HOST_B, "--key-file", str(key_file))),
            hosts.run(HOST_A, *agent("x", HOST_A)))         # no key: unsigned
        await asyncio.gather(a.ready(), b.ready(), x.ready())

        # Discovery across hosts: signed agents adopted at their hosts' addresses.
        async def found():
            agents = await hosts.agents()
            return agents if {k: agents.get(k, {}).get("status") for k in "abx"} == \
                {"a": "online", "b": "online", "x": "pending"} else None
        agents = await hosts.until(found, "a and b online, x pending", 30)
        assert (agents["a"]["host"], agents["b"]["host"]) == (lan.address(HOST_A), lan.address(HOST_B))
        assert agents["a"]["signed"] and agents["b"]["signed"] and not agents["x"]["signed"]
        assert agents["x"]["adopted"] is False

        # The ring carries audio across hosts: the hub receives both agents' `out`.
        def routed(expected):
            async def check():
                clock = (await hosts.api("/api/installation"))["clock"]
                flowing = all(clock["agents"].get(k, {}).get("out", {}).get("received", 0) > 100
                              for k in expected)
                return clock if clock["routed"] == expected and flowing else None
            return check
        await hosts.until(routed(["a", "b"]), "the ring a <-> b routed", 30)
        a_in, a_out, b_in, b_out = await asyncio.gather(
            hosts.record(HUB, HOST_A, "in", 2.0), hosts.record(HUB, HOST_A, "out", 2.0),
            hosts.record(HUB, HOST_B, "in", 2.0), hosts.record(HUB, HOST_B, "out", 2.0))
        levels = {"a in": plays(a_in, "a in"), "a out": plays(a_out, "a out"),
                  "b in": plays(b_in, "b in"), "b out": plays(b_out, "b out")}
        print(f"\nacross hosts, rms: {levels}")
        assert min(levels.values()) > 1e-3, levels    # each plays, and hears the other

        # b's cable pulled: offline within 3 s (by the hub's own event time), out of the ring.
        pulled = time.time()
        lan.link(HOST_B, up=False)
        await hosts.until(lambda: _status(hosts, "b", "offline"), "b offline", 10)
        events = await hosts.api("/api/events?limit=200")
        offline_at = min(e["t"] for e in events
                         if e["kind"] == "agent_offline" and e["agent"] == "b" and e["t"] >= pulled)
        print(f"b offline {offline_at - pulled:.2f} s after its cable was pulled "
              f"(LivenessMonitor: at most 2.3 s after the last answered ping)")
        assert offline_at - pulled <= 3.0
        await hosts.until(routed(["a"]), "b dropped from the ring", 10)
        assert (await hosts.agents())["a"]["status"] == "online"
        a_alone = await hosts.record(HUB, HOST_A, "out", 1.5)
        assert plays(a_alone, "a alone") > 1e-3            # a plays on

        # Plugged back: the same b process answers again and rejoins the ring.
        lan.link(HOST_B, up=True)
        await hosts.until(lambda: _status(hosts, "b", "online"), "b back online", 20)
        clock = await hosts.until(routed(["a", "b"]), "b back in the ring", 30)
        assert b.proc.returncode is None                   # no restart
        print(f"b back; hub clock: steps {clock['steps']}, resyncs {clock['resyncs']}")
        b_back = await hosts.record(HUB, HOST_B, "in", 1.5)
        assert plays(b_back, "b in, back") > 1e-3          # it hears a again
    finally:
        await hosts.close()


async def _status(hosts: Hosts, agent_id: str, status: str) -> bool:
    return (await hosts.agents()).get(agent_id, {}).get("status") == status

