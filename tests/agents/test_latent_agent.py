"""A real ``anamnesis agent --model latent`` process on the null clock, 127.0.0.1: the
model on its worker thread, steered over OSC, its figures in the telemetry."""

from __future__ import annotations

import asyncio
import signal

import pytest
from support.agents import spawn
from support.controlplane import OscTestClient
from support.nn_models import require_torch, write_codec


@pytest.fixture
def codec(tmp_path):
    require_torch()
    return write_codec(tmp_path / "codec.ts", ratio=64, latent=4)


async def test_a_latent_agent_plays_is_steered_and_reports(tmp_path, codec):
    agent = await spawn("--id", "lat", "--model", "latent", "--model-arg", f"path={codec}",
                        "--audio", "null", "--input", "mic", "--interface", "127.0.0.1",
                        "--state-dir", str(tmp_path / "lat"), "--no-announce", "--fresh")
    try:
        await agent.ready()
        osc = await OscTestClient.open(agent.osc_port)
        listener = await OscTestClient.open(0)
        try:
            assert (await osc.request("/bias"))[1] == pytest.approx([0.0] * 4)
            osc.send("/bias", 1.0, 0.0, -1.0, 0.25)
            assert (await osc.request("/bias"))[1] == pytest.approx([1.0, 0.0, -1.0, 0.25])
            osc.send("/model_gain", 0.5)    # the model's own attribute "gain"
            assert (await osc.request("/model_gain"))[1] == pytest.approx([0.5])
            osc.send("/bias", 1.0, 2.0)     # wrong size: an /error, the agent plays on
            assert await osc.expect("/error")
            assert (await osc.request("/subscribe", listener.port))[0] == "/subscribed"
            # telemetry at 30 Hz: wait (bounded) until the worker has run a few chunks
            figures: dict[str, float] = {}
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30.0
            while figures.get("chunks", 0.0) < 5 and loop.time() < deadline:
                for address, args in await listener.recv(1.0):
                    if len(args) == 1 and isinstance(args[0], (int, float)):
                        figures[address.rsplit("/", 1)[-1]] = float(args[0])
            assert figures.get("chunks", 0.0) >= 5, figures
            assert figures["latency_ms"] == pytest.approx(2 * 2048 / 48000 * 1e3, rel=1e-6)
            assert figures["inference_ms"] > 0.0
            assert figures["errors"] == 0.0
            # the latent is the agent's weight vector: the bias shows in it
            _, latent = await osc.request("/weights")
            assert len(latent) == 4
        finally:
            osc.close()
            listener.close()
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.wait() == 0, agent.log
    finally:
        agent.kill()


async def test_without_the_file_the_agent_says_so_in_one_line(tmp_path):
    agent = await spawn("agent", "--id", "lat", "--model", "latent", "--model-arg",
                        f"path={tmp_path / 'missing.ts'}", "--audio", "null",
                        "--state-dir", str(tmp_path / "lat"), module="anamnesis.hub.cli")
    assert await agent.wait(60) == 2
    assert "no such file" in agent.log
