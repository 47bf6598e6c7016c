"""The hub-clocked mode: a real agent process (``--audio hub``) driven over RTP on 127.0.0.1.

The hub (``anamnesis.hub.clock.lockstep.HubClock``, here in the test process) sends each input
block with timestamp T and collects the output stamped T. Over 10 s the result
must equal, bit for bit, the same model + safety chain computed in-process from
the same L24 wire values.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import aiohttp
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from support.agents import spawn

from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.main import add_agent_arguments, check_args
from anamnesis.agents.protocol.pcm import quantize
from anamnesis.agents.recipe import config_model
from anamnesis.hub.clock.lockstep import HubClock

LOOPBACK = "127.0.0.1"
SR = 48000
BLOCK = 256


def agent_args(state_dir, *extra: str) -> list[str]:
    return ["--id", "h1", "--preset", "sine200", "--audio", "hub", "--interface", LOOPBACK,
            "--hub", LOOPBACK, "--no-announce", "--fresh", "--state-dir", str(state_dir),
            "--autosave-s", "3600", *extra]


def in_process_engine(args: list[str]) -> AgentEngine:
    """The agent's model and safety chain, built exactly as the agent process builds them."""
    parser = argparse.ArgumentParser()
    add_agent_arguments(parser)
    config = check_args(parser.parse_args(args))
    make, follow = config_model(config)
    return AgentEngine(make(), block=config.block, sample_rate=config.sample_rate,
                       ceiling_db=config.ceiling_db, follow=follow)


def mic_signal(seconds: float) -> np.ndarray:
    """What the simulated mic hears: the preset's 200 Hz sine plus a little noise."""
    n = int(seconds * SR)
    rng = np.random.default_rng(11)
    return 0.5 * np.sin(2 * np.pi * 200.0 * np.arange(n) / SR) + 0.01 * rng.standard_normal(n)


async def rtp_port_of(http_port: int) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{LOOPBACK}:{http_port}/streams") as response:
            assert response.status == 200
            return int((await response.json())["rtp_port"])


@pytest.fixture
async def hub_agent(tmp_path):
    args = agent_args(tmp_path / "state")
    agent = await spawn(*args)
    try:
        await agent.ready()
        yield agent, args
    finally:
        await agent.stop(20)


def _render_in_process(args, x: np.ndarray, blocks: int) -> np.ndarray:
    """The in-process engine's speaker for ``blocks`` blocks of ``x``, both sides quantized
    as on the wire."""
    engine = in_process_engine(args)
    want = np.zeros(blocks * BLOCK)
    speaker = np.zeros(BLOCK)
    for k in range(blocks):
        engine.process_block(quantize(x[k * BLOCK:(k + 1) * BLOCK]), speaker)
        want[k * BLOCK:(k + 1) * BLOCK] = quantize(speaker)
    return want


async def test_hub_clocked_agent_equals_in_process_model_bit_for_bit(hub_agent):
    agent, args = hub_agent
    port = await rtp_port_of(agent.http_port)
    seconds = 10.0
    x = mic_signal(seconds)
    blocks = x.size // BLOCK
    got = np.zeros(blocks * BLOCK)
    async with HubClock([(LOOPBACK, port)], block=BLOCK, sample_rate=SR, timeout_s=2.0,
                        start_ts=123_456_789) as clock:
        for k in range(blocks):
            out = await clock.step(x[None, k * BLOCK:(k + 1) * BLOCK])
            got[k * BLOCK:(k + 1) * BLOCK] = out[0]
        stats = clock.stats()[0]
        rtt = clock.rtt_ms()
    assert stats["missing"] == 0 and stats["stale"] == 0 and stats["received"] == blocks, stats
    want = await asyncio.to_thread(_render_in_process, args, x, blocks)  # off the watched loop
    assert np.sqrt(np.mean(want[SR:] ** 2)) > 0.01, "the model should be playing"
    assert_array_equal(got, want)
    print(f"\nhub-clocked round trip over loopback: p50 {rtt['p50']:.3f} ms, "
          f"p99 {rtt['p99']:.3f} ms, max {rtt['max']:.3f} ms")
    agent.proc.send_signal(signal.SIGTERM)
    assert await agent.wait(20) == 0
    assert "Traceback" not in agent.log


async def test_agent_falls_back_to_silence_in_and_tells_the_hub(hub_agent):
    agent, _ = hub_agent
    port = await rtp_port_of(agent.http_port)
    x = mic_signal(1.0)
    async with HubClock([(LOOPBACK, port)], block=BLOCK, sample_rate=SR, timeout_s=2.0) as clock:
        for k in range(20):
            await clock.step(x[None, k * BLOCK:(k + 1) * BLOCK])
        assert clock.peers[0].free_reports == 0
        await asyncio.sleep(1.0)        # the hub pauses: after 0.5 s the agent runs free
        peer = clock.peers[0]
        assert peer.free_running and 50 <= peer.free_reports <= 130, peer
        out = await clock.step(x[None, :BLOCK])   # the hub is back: clocked again
        assert not peer.free_running and peer.missing == 0
        assert np.all(np.isfinite(out))
    assert "running free on silence" in agent.log
