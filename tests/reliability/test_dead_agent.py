"""A dead agent does not stall the others (issue 14, item 12).

Simulated mode clocks every agent in lockstep (``anamnesis.hub.clock.lockstep``): a block
waits for every agent's answer. An agent that stops answering (killed, SIGSTOPped, its host
gone) used to cost every block the clock's timeout until the registry called it offline,
about 2 s later, and its channel was then cut to zero. Now it costs one timeout: that block
it fades out, from the next one on the others are not kept waiting, and when it answers
again it fades back in. And a hub-clocked agent follows only the hub port that clocks it:
packets from another port of the hub's host are dropped and counted, not answered.

Real agent processes (``--audio hub``) on 127.0.0.1, driven by a real ``HubClock``. The
clock's timeout here is a patient 1 s, so a loaded machine cannot make a live agent miss:
what the test checks is counted by the clock (timeouts, steps that did not wait), not timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket

import numpy as np
import pytest
import soundfile as sf
from support.agents import spawn

from anamnesis.agents.net.rtp_session import RtpSender
from anamnesis.agents.protocol.rtp import DEFAULT_PAYLOAD_TYPE
from anamnesis.hub.clock.lockstep import HubClock

LOOPBACK = "127.0.0.1"
SR = 48000
BLOCK = 256
#: A step's patience here (s): long enough for any live agent on a loaded machine.
PATIENT_S = 1.0


def _args(state_dir, agent_id: str) -> list[str]:
    return ["--id", agent_id, "--preset", "sine200", "--audio", "hub", "--interface",
            LOOPBACK, "--hub", LOOPBACK, "--no-announce", "--fresh", "--state-dir",
            str(state_dir), "--autosave-s", "3600"]


@contextlib.asynccontextmanager
async def _agents(tmp_path, count: int):
    agents = [await spawn(*_args(tmp_path / f"s{i}", f"d{i}")) for i in range(count)]
    try:
        await asyncio.gather(*(agent.ready() for agent in agents))
        ports = []
        import aiohttp
        async with aiohttp.ClientSession() as session:
            for agent in agents:
                async with session.get(f"http://{LOOPBACK}:{agent.http_port}/streams") as r:
                    ports.append(int((await r.json())["rtp_port"]))
        yield agents, ports
    finally:
        for agent in agents:
            with contextlib.suppress(ProcessLookupError):
                agent.proc.send_signal(signal.SIGCONT)
        await asyncio.gather(*(agent.stop(20) for agent in agents))


def _sine(k: int, agents: int) -> np.ndarray:
    t = (np.arange(BLOCK) + k * BLOCK) / SR
    return np.repeat((0.5 * np.sin(2 * np.pi * 200.0 * t))[None, :], agents, axis=0)


async def test_a_stopped_agent_costs_one_timeout_fades_out_and_fades_back_in(tmp_path):
    async with _agents(tmp_path, 3) as (agents, ports):
        async with HubClock([(LOOPBACK, p) for p in ports], block=BLOCK, sample_rate=SR,
                            timeout_s=PATIENT_S) as clock:
            k = 0
            for _ in range(200):                       # all three play
                last = clock.step(_sine(k, 3))
                last = (await last).copy()
                k += 1
            assert [p.missing for p in clock.peers] == [0, 0, 0], clock.stats()
            assert np.sqrt(np.mean(last[1] ** 2)) > 1e-3, "d1 should be playing"

            agents[1].proc.send_signal(signal.SIGSTOP)  # d1 stops answering
            outs = []
            for _ in range(300):
                outs.append((await clock.step(_sine(k, 3))).copy())
                k += 1
            stopped, others = clock.peers[1], [clock.peers[0], clock.peers[2]]
            # One timeout in 300 blocks, not 300: the others were never kept waiting again.
            assert (stopped.missing, stopped.absences, stopped.bypassed) == (1, 1, 299), \
                clock.stats()
            assert all(p.missing == 0 and p.absences == 0 for p in others), clock.stats()
            assert all(p.received == 500 for p in others), clock.stats()
            # Its missed block is its last one mirrored and faded out; silence after it.
            np.testing.assert_array_equal(outs[0][1], last[1][::-1] * np.linspace(1, 0, BLOCK))
            assert outs[0][1][0] == last[1][-1] and outs[0][1][-1] == 0.0
            assert not np.any(np.concatenate([o[1] for o in outs[1:]]))
            assert all(np.sqrt(np.mean(o[[0, 2]] ** 2)) > 1e-3 for o in outs[-10:])

            agents[1].proc.send_signal(signal.SIGCONT)  # it answers again: back, faded in
            back = None
            for _ in range(2000):
                out = (await clock.step(_sine(k, 3))).copy()
                k += 1
                if np.any(out[1]):
                    back = out[1]
                    break
            assert back is not None and not stopped.absent, clock.stats()
            assert back[0] == 0.0, "its first block back fades in from silence"
            assert stopped.absences == 1 and all(p.missing == 0 for p in others)
            for _ in range(50):                        # and it stays
                await clock.step(_sine(k, 3))
                k += 1
            assert stopped.missing == 1 and not stopped.absent, clock.stats()


async def test_an_agent_follows_only_the_hub_port_that_clocks_it(tmp_path):
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    intruder.bind((LOOPBACK, 0))
    intruder.setblocking(False)
    sender = RtpSender(payload_type=DEFAULT_PAYLOAD_TYPE, ts_offset=0)
    try:
        async with _agents(tmp_path, 1) as (agents, ports):
            async with HubClock([(LOOPBACK, ports[0])], block=BLOCK, sample_rate=SR,
                                timeout_s=PATIENT_S) as clock:
                rng = np.random.default_rng(3)
                for k in range(240):
                    if k >= 40 and k % 5 == 0:   # 40 blocks from a local process, any T
                        payload = bytes(BLOCK * 3)
                        intruder.sendto(sender.packet(payload, int(rng.integers(2 ** 32))),
                                        (LOOPBACK, ports[0]))
                    await clock.step(_sine(k, 1))
                peer = clock.peers[0]
                assert (peer.missing, peer.stale, peer.received) == (0, 0, 240), clock.stats()
            with pytest.raises(BlockingIOError):
                intruder.recv(2048)                # the agent never answered it
            await asyncio.sleep(0.2)
            assert "another port of the hub's host" in agents[0].log
    finally:
        intruder.close()


RING = """
[installation]
name = "dead1"
block = 256
mode = "simulated"

[[agent]]
id = "n1"
model = "autoregnn"
spawn = true
seed = 1

[[agent]]
id = "n2"
model = "autoregnn"
spawn = true
seed = 2

[[agent]]
id = "n3"
model = "autoregnn"
spawn = true
seed = 3

[[ring]]
name = "ring"
agents = ["n1", "n2", "n3"]
highpass_hz = 2.0
shape = "tanh"

[[source]]
name = "hiss"
kind = "noise"
args = { amp = 0.1, seed = 1 }
targets = ["n1", "n2", "n3"]
"""


@pytest.mark.slow
async def test_a_killed_agent_in_a_simulated_ring_fades_out_and_stalls_nobody(tmp_path):
    from support.lockstep import clock_blocks

    from anamnesis.hub.core.hub import Hub
    from anamnesis.hub.installation.check import parse_config

    config = parse_config(RING, "ring.toml")
    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, config=config,
              step_timeout_s=PATIENT_S)
    await hub.start()
    try:
        hub.record_start("take")
        await clock_blocks(hub, 200)
        killed_at = hub.driver.steps
        pid = hub.supervisor.children["n2"].pid
        os.kill(pid, signal.SIGKILL)
        await clock_blocks(hub, killed_at + 400)
        stats = hub.driver.stats()
        info = await hub.record_stop()
    finally:
        await hub.close()
    assert all(stats["agents"][a]["missing"] == 0 for a in ("n1", "n3")), stats
    got, _ = sf.read(tmp_path / "hub" / "recordings" / "take.wav", dtype="float64")
    blocks = got[: got.shape[0] // BLOCK * BLOCK].reshape(-1, BLOCK, 3)
    # n1 and n3 play on: not one silent block after the kill (the recording is the
    # stream the clock stamps; a block given up would be silence here).
    live = np.abs(blocks[killed_at:, :, [0, 2]]).max(axis=1)
    assert live.min() > 0.0, "a block of n1 or n3 went silent"
    # n2 fades out: its last blocks before the silence never jump by more than its own
    # largest step while it played (a cut would jump by its whole level).
    n2 = blocks[:, :, 1].reshape(-1)
    silent = np.flatnonzero(np.abs(blocks[killed_at:, :, 1]).max(axis=1) == 0.0)
    assert silent.size, "n2 should have gone silent"
    first_silent = (killed_at + silent[0]) * BLOCK
    playing = n2[: killed_at * BLOCK]
    largest_step = np.abs(np.diff(playing)).max()
    tail = n2[first_silent - 2 * BLOCK: first_silent + 1]
    assert np.abs(np.diff(tail)).max() <= largest_step + 1e-9
    assert info["dropped_blocks"] == 0
