"""Simulated mode live: a real hub clocks three real agent processes (``--audio hub``) in a
feedback ring over RTP on 127.0.0.1, records them, and the recording equals, bit for bit,
the same ring computed in-process (the same graph, models, seeds and L24 quantisation)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soundfile as sf
from numpy.testing import assert_array_equal
from support.lockstep import PATIENT_STEP_S, clock_blocks, twin_engines

from anamnesis.agents.protocol.pcm import quantize
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.engine.graph import from_config
from anamnesis.hub.installation.check import parse_config
from anamnesis.hub.monitor.scopes import SCOPE, SPECTRUM, decode_frames

LOOPBACK = "127.0.0.1"
SECONDS = 2.0

RING = """
[installation]
name = "sim3"
block = 256
mode = "simulated"

[[agent]]
id = "n1"
model = "autoregnn"
params = { lr = 0.8, ridge = 1e-5 }
spawn = true
seed = 1

[[agent]]
id = "n2"
model = "autoregnn"
params = { lr = 0.9, ridge = 1e-5 }
spawn = true
seed = 2

[[agent]]
id = "n3"
model = "autoregnn"
params = { lr = 0.8, ridge = 1e-5 }
spawn = true
seed = 3

[[ring]]
name = "ring"
agents = ["n1", "n2", "n3"]
highpass_hz = 2.0
shape = "tanh"

[[source]]
name = "burst"
kind = "noise"
args = { amp = 0.1, seed = 1 }
envelope = { fade = 2.0 }
targets = ["n1"]
"""


@pytest.mark.slow
async def test_simulated_ring_over_rtp_equals_the_ring_in_process(tmp_path):
    config = parse_config(RING, "ring.toml")
    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, config=config,
              step_timeout_s=PATIENT_STEP_S)
    await hub.start()
    try:
        hub.record_start("take")          # before the first block: the recording starts at 0
        blocks = int(SECONDS * 48000 / 256)
        await clock_blocks(hub, blocks)
        info = await hub.record_stop()
        stats = hub.driver.stats()
        scopes = decode_frames(hub.scopes.take())   # every block reached the scope tap too
        last_block = hub.driver._outputs.copy()      # (no await between: the same block)
    finally:
        await hub.close()
    print(f"\nsimulated ring: {info['seconds']:.2f} s recorded, rtt {stats['rtt_ms']}")
    assert stats["rebuilds"] == 1 and info["dropped_blocks"] == 0
    assert all(a["missing"] == 0 and a["stale"] == 0 for a in stats["agents"].values()), stats
    got, rate = sf.read(tmp_path / "hub" / "recordings" / "take.wav", dtype="float64")
    assert rate == 48000 and got.shape[1] == 3 and got.shape[0] >= blocks * 256

    def in_process() -> np.ndarray:
        """The same piece computed here (on a thread: not the watched loop)."""
        graph = from_config(config)
        engines = twin_engines(config, hub)
        outputs, inputs = np.zeros((256, 3)), np.zeros((256, 3))
        speaker = np.zeros(256)
        want = np.zeros((got.shape[0], 3))
        for k in range(got.shape[0] // 256):
            graph.tick(outputs, out=inputs)
            for i, engine in enumerate(engines):
                engine.process_block(quantize(inputs[:, i]), speaker)
                outputs[:, i] = quantize(speaker)
            want[k * 256:(k + 1) * 256] = outputs
        return want

    want = await asyncio.to_thread(in_process)
    assert np.sqrt(np.mean(want[-48000:] ** 2)) > 1e-3, "the ring should be sounding"
    assert_array_equal(got, want)
    assert sorted((kind, index) for kind, index, _, _ in scopes) == \
        [(SCOPE, 0), (SCOPE, 1), (SCOPE, 2), (SPECTRUM, 0), (SPECTRUM, 1), (SPECTRUM, 2)]
    for kind, index, _, x in scopes:   # the scopes end with the driver's latest block
        if kind == SCOPE:
            assert_array_equal(x[-256:], last_block[:, index].astype(np.float32))
    n1_scope = next(x for kind, index, _, x in scopes if (kind, index) == (SCOPE, 0))
    assert n1_scope.size == 1024 and np.abs(n1_scope).max() > 0.0   # the ring's decaying tail
