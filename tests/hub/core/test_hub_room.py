"""The simulated room in the live hub: agents hear each other through the air.

A real hub clocks two real agent processes; only the first is woken by a noise burst,
there is no route between them, so the second can only sound because its mic hears the
first's speaker through the room. The recording equals, bit for bit, the same room
computed in-process (anamnesis.hub.engine.coupling + anamnesis.hub.engine.graph + the agents' engines, with the link's L24
quantisation). The floor plan can be edited (every problem at once), is recomputed on a
worker, pushed, stored and restored.
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
import soundfile as sf
from numpy.testing import assert_array_equal
from support.lockstep import PATIENT_STEP_S, clock_blocks, twin_engines

from anamnesis.agents.protocol.pcm import quantize
from anamnesis.hub.core.errors import HubError
from anamnesis.hub.core.hub import Hub
from anamnesis.hub.engine.coupling import RoomCoupling, default_cache_dir
from anamnesis.hub.engine.graph import from_config
from anamnesis.hub.installation.check import parse_config

LOOPBACK = "127.0.0.1"
SECONDS = 2.0

DUO = """
[installation]
name = "room-duo"
block = 256
mode = "simulated"

[room]
size = [6.0, 4.0, 3.0]
rt60 = 0.4
max_order = 6
listener = [3.0, 1.0, 1.6]
mic_noise_db = -70.0

[[agent]]
id = "a1"
model = "autoregnn"
params = { lr = 0.5, ridge = 1e-4 }
speaker = [1.5, 2.0, 1.5]
mic = [1.5, 2.5, 1.5]
spawn = true
seed = 1

[[agent]]
id = "a2"
model = "autoregnn"
params = { lr = 0.5, ridge = 1e-4 }
speaker = [4.5, 2.0, 1.5]
mic = [4.0, 2.0, 1.5]
spawn = true
seed = 2

[[source]]
name = "wake"
kind = "noise"
args = { amp = 0.3, seed = 1 }
envelope = { attack = 0.01, hold = 0.5, release = 0.5 }
targets = ["a1"]
"""


@pytest.fixture(autouse=True)
def room_cache(tmp_path, monkeypatch):
    """Responses are cached under a temporary XDG_CACHE_HOME, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.slow
async def test_agents_hear_each_other_through_the_room_as_computed_in_process(tmp_path):
    config = parse_config(DUO, "duo.toml")
    hub = Hub(state_dir=tmp_path / "hub", interface=LOOPBACK, config=config,
              step_timeout_s=PATIENT_STEP_S)
    ears_heard = []
    await hub.start()
    try:
        hub.driver.listen = type("Ears", (), {"add": lambda self, outputs, ears:
                                              ears_heard.append(np.abs(ears).max())})()
        hub.record_start("take")
        await clock_blocks(hub, int(SECONDS * 48000 / 256))
        info = await hub.record_stop()
        stats = hub.driver.stats()
    finally:
        await hub.close()
    assert info["dropped_blocks"] == 0
    assert all(a["missing"] == 0 and a["stale"] == 0 for a in stats["agents"].values()), stats
    got, _ = sf.read(tmp_path / "hub" / "recordings" / "take.wav", dtype="float64")

    def in_process() -> np.ndarray:
        """The same piece computed here (on a thread: not the watched loop)."""
        graph = from_config(config)
        coupling = RoomCoupling(config.room, config.agents, sample_rate=48000, block=256,
                                cache_dir=default_cache_dir())
        engines = twin_engines(config, hub)
        outputs, inputs, mics = np.zeros((256, 2)), np.zeros((256, 2)), np.zeros((256, 2))
        ears, speaker = np.zeros((256, 2)), np.zeros(256)
        want = np.zeros((got.shape[0], 2))
        for k in range(got.shape[0] // 256):
            coupling.process(outputs, mics, ears)
            graph.tick(outputs, out=inputs, mics=mics)
            for i, engine in enumerate(engines):
                engine.process_block(quantize(inputs[:, i]), speaker)
                outputs[:, i] = quantize(speaker)
            want[k * 256:(k + 1) * 256] = outputs
        return want

    want = await asyncio.to_thread(in_process)
    assert_array_equal(got, want)
    # a2 has no source and no route: it sounds because it hears a1 through the air.
    a2_rms = np.sqrt(np.mean(got[24000:, 1] ** 2))
    assert a2_rms > 1e-3, a2_rms
    assert max(ears_heard) > 1e-3, "the listener hears the room"
    assert max(ears_heard) <= hub.driver._preview.ceiling, "levelled and limited for headphones"


async def test_the_floor_plan_is_edited_recomputed_pushed_and_restored(tmp_path):
    config = parse_config(DUO, "duo.toml")
    state = tmp_path / "hub"
    hub = Hub(state_dir=state, interface=LOOPBACK, config=config, spawn=False)
    pushed: list[dict] = []
    await hub.start()
    try:
        hub.add_listener(lambda m: pushed.append(m) if m.get("type") == "room" else None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while hub.driver.coupling is None:       # the first responses, on a worker
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        before = hub.driver.coupling.convolver.head._spectra[0].copy()
        layout = hub.put_room_layout({"listener": [3.0, 3.0, 1.6],
                                      "agents": {"a2": {"speaker": [5.0, 3.0, 1.2]}}})
        assert layout["recomputing"] is True
        assert layout["room"]["listener"] == [3.0, 3.0, 1.6]
        assert layout["agents"]["a2"] == {"speaker": [5.0, 3.0, 1.2], "mic": [4.0, 2.0, 1.5]}
        while hub.driver.room_recomputing:
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        assert hub.driver.responses_ms is not None and hub.driver.responses_ms > 0
        assert [m["layout"]["recomputing"] for m in pushed][:1] == [True]
        assert pushed[-1]["layout"]["recomputing"] is False
        # No agent runs here, so no block has come: the new responses wait for the next
        # one's crossfade (the live crossfade is the first test's, bit for bit).
        convolver = hub.driver.coupling.convolver.head   # its first level
        assert convolver._swap_pending
        assert not np.array_equal(convolver._pending[0], before)

        with pytest.raises(HubError) as err:     # every problem at once; nothing changes
            hub.put_room_layout({"listener": [9.0, 1.0, 1.0],
                                 "agents": {"a1": {"mic": [1.0, -1.0, 1.0]}}})
        assert "listener" in str(err.value) and "mic" in str(err.value), str(err.value)
        with pytest.raises(HubError, match="no agent 'zz'"):
            hub.put_room_layout({"agents": {"zz": {"mic": [1.0, 1.0, 1.0]}}})
        assert hub.room_layout()["room"]["listener"] == [3.0, 3.0, 1.6]
        await hub.flush()
    finally:
        await hub.close()

    again = Hub(state_dir=state, interface=LOOPBACK, config=config, spawn=False)
    await again.start()
    try:
        restored = again.room_layout()
        assert restored["room"]["listener"] == [3.0, 3.0, 1.6]
        assert restored["agents"]["a2"]["speaker"] == [5.0, 3.0, 1.2]
    finally:
        await again.close()


PORTS = """
[installation]
name = "ports2"
block = 256

[[agent]]
id = "p1"
model = "autoregnn"
spawn = true

[[agent]]
id = "p2"
model = "autoregnn"
spawn = true
seed = 2
"""


async def test_local_agents_keep_their_ports_across_a_hub_restart(tmp_path):
    """An ossia score or a Max patch addresses an agent by port: a restarted hub starts
    its agents on the ports they had (remembered in its store); a port taken meanwhile
    gives that agent new ones, remembered in turn."""
    from support.hubs import live_hub

    def ports(hub) -> dict[str, tuple[int, int, int]]:
        return {e.agent_id: (e.osc_port, e.http_port, e.rtp_port)
                for e in hub.registry.entries()}

    async with live_hub(tmp_path / "hub", PORTS, "ports2.toml") as (hub, _):
        first = ports(hub)
    assert set(first) == {"p1", "p2"} and len({p for t in first.values() for p in t}) == 6
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # p2's OSC port, taken
    blocker.bind(("127.0.0.1", first["p2"][0]))
    try:
        async with live_hub(tmp_path / "hub", PORTS, "ports2.toml") as (hub, _):
            second = ports(hub)
            remembered = await hub.store.agent_ports()
    finally:
        blocker.close()
    assert second["p1"] == first["p1"]
    assert second["p2"][0] != first["p2"][0] and remembered == second
