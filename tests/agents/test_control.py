"""AgentControl: the asyncio facade the OSC, OSCQuery and zeroconf services use."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from anamnesis.agents.audio.backends import NullBackend
from anamnesis.agents.control import AgentControl
from anamnesis.agents.dsp.engine import AgentEngine
from anamnesis.agents.models.autoregnn import AutoRegNN
from anamnesis.agents.snapshots import SnapshotStore

SR = 48000


@pytest.fixture
def agent(tmp_path):
    """A real AutoRegNN agent on the null clock, with a state directory."""
    model = AutoRegNN(seed=2, max_block=256)
    engine = AgentEngine(model, block=256, sample_rate=SR)
    store = SnapshotStore(tmp_path / "a1", agent_id="a1", model_kind="autoregnn")
    store.open()
    backend = NullBackend(engine, source=lambda mic: mic.__setitem__(
        slice(None), 0.5 * np.sin(np.arange(256) * 0.1)))
    control = AgentControl(engine, agent_id="a1", store=store, backend_stats=backend.stats)
    backend.start()
    yield control, engine, model
    backend.stop()
    store.close()


def test_identity_specs_and_values(agent):
    control, engine, model = agent
    assert (control.agent_id, control.model_kind, control.sample_rate, control.block) == (
        "a1", "autoregnn", SR, 256)
    specs = control.specs()
    assert set(specs) == {"lr", "ridge", "learn", "act_mix", "gain", "mute"}
    assert (specs["gain"].minimum, specs["gain"].maximum, specs["gain"].unit) == (-60.0, 12.0, "dB")
    assert specs["mute"].kind == "bool"
    values = control.values()
    assert values["lr"] == 0.1 and values["gain"] == 0.0 and values["mute"] == 0
    assert_array_equal(values["act_mix"], np.zeros(8))
    values["act_mix"][0] = 1.0  # a copy: the agent is not changed by it
    assert control.values()["act_mix"][0] == 0.0


async def test_set_validates_posts_and_notifies(agent):
    control, engine, model = agent
    heard = []
    unsubscribe = control.add_listener(lambda name, value: heard.append((name, value)))
    assert control.set("lr", 0.4) == 0.4
    assert control.values()["lr"] == 0.4
    await control.read_state()  # a block boundary has passed
    assert model.params()["lr"] == 0.4
    assert heard == [("lr", 0.4)]
    unsubscribe()
    control.set("lr", 0.5)
    assert heard == [("lr", 0.4)]


@pytest.mark.parametrize("name, value, index, match", [
    ("nope", 1.0, None, r"unknown parameter 'nope'; known: lr, ridge"),
    ("lr", 51.0, None, r"lr must be in \[0, 50\]; got 51"),
    ("lr", "fast", None, r"lr must be a single number"),
    ("learn", 2, None, r"learn must be 0 or 1"),
    ("act_mix", 0.5, 8, r"act_mix index must be a whole number in \[0, 7\]; got 8"),
    ("act_mix", 1.5, 2, r"act_mix\[2\] must be in \[0, 1\]; got 1.5"),
    ("lr", 0.5, 0, r"lr is not an array parameter; it takes no index"),
    ("gain", 13.0, None, r"gain must be in \[-60, 12\] dB; got 13"),
])
def test_bad_sets_raise_and_change_nothing(agent, name, value, index, match):
    control, engine, model = agent
    before = control.values()
    heard = []
    control.add_listener(lambda n, v: heard.append(n))
    with pytest.raises(ValueError, match=match):
        control.set(name, value, index)
    after = control.values()
    assert after.keys() == before.keys()
    for key in before:
        assert_array_equal(after[key], before[key])
    assert heard == []


async def test_one_element_of_an_array_parameter(agent):
    control, engine, model = agent
    result = control.set("act_mix", 1.0, index=2)
    assert_array_equal(result, [0, 0, 1, 0, 0, 0, 0, 0])
    control.set("act_mix", 0.5, index=7)
    await control.read_state()
    assert_array_equal(model.params()["act_mix"], [0, 0, 1, 0, 0, 0, 0, 0.5])


def test_gain_and_mute_go_to_the_safety_chain(agent):
    control, engine, model = agent
    heard = []
    control.add_listener(lambda n, v: heard.append((n, v)))
    assert control.set("gain", -6) == -6.0
    assert control.set("mute", 1) == 1
    assert engine.safety.gain_db == -6.0 and engine.safety.muted
    assert heard == [("gain", -6.0), ("mute", 1)]


def test_a_broken_listener_does_not_stop_the_others(agent, caplog):
    control, engine, model = agent
    heard = []

    def broken(name, value):
        raise RuntimeError("listener bug")
    control.add_listener(broken)
    control.add_listener(lambda n, v: heard.append(n))
    control.set("ridge", 0.01)
    assert heard == ["ridge"]
    assert "listener" in caplog.text and "listener bug" in caplog.text


def test_panic_works_even_with_a_full_command_queue():
    engine = AgentEngine(AutoRegNN(max_block=64), block=64, sample_rate=SR, queue_size=8)
    control = AgentControl(engine, agent_id="a1")
    for _ in range(8):
        control.set("lr", 0.2)
    with pytest.raises(ValueError, match=r"command queue full \(8 commands"):
        control.set("lr", 0.3)
    assert control.values()["lr"] == 0.2
    control.panic()
    assert control.panicked
    out = np.empty(64 * 20)
    for i in range(20):  # 20 blocks of 64 = 27 ms: the 20 ms fade is over
        engine.process_block(np.ones(64), out[i * 64:(i + 1) * 64])
    assert np.all(out[-64:] == 0.0)
    control.unpanic()
    assert not control.panicked


async def test_panic_silences_the_speaker_of_a_running_agent(agent):
    control, engine, model = agent
    await asyncio.sleep(0.1)
    control.panic()
    await asyncio.sleep(0.1)
    assert engine.safety.output_factor == 0.0
    assert control.telemetry()["panicked"] == 1.0


async def test_weights_round_trip_at_block_boundaries(agent):
    control, engine, model = agent
    control.set("learn", 0)
    w = await control.get_weights()
    assert w.shape == (control.n_weights,) == (8 * 12 + 8 + 8 + 1,)
    new = np.linspace(-0.5, 0.5, w.size)
    await control.set_weights(new)
    assert_array_equal(await control.get_weights(), new)
    assert_array_equal(model.weights(), new)


@pytest.mark.parametrize("flat, match", [
    (np.zeros(3), r"weights must have 113 values; got 3"),
    (np.full(113, np.nan), r"weights must be finite"),
    (["a"] * 113, r"weights must be numbers"),
])
async def test_bad_weights_are_rejected(agent, flat, match):
    control, engine, model = agent
    with pytest.raises(ValueError, match=match):
        await control.set_weights(flat)


async def test_snapshot_and_recall_restore_weights_and_parameters(agent):
    control, engine, model = agent
    control.set("learn", 0)
    control.set("lr", 0.25)
    control.set("gain", -3.0)
    saved = await control.get_weights()
    await control.snapshot("dusk")
    assert control.snapshot_names() == ["dusk"]
    await control.set_weights(np.zeros_like(saved))
    control.set("lr", 0.9)
    control.set("gain", -20.0)
    heard = []
    control.add_listener(lambda n, v: heard.append(n))
    await control.recall("dusk")
    assert_array_equal(await control.get_weights(), saved)
    assert control.values()["lr"] == 0.25 and model.params()["lr"] == 0.25
    assert engine.safety.gain_db == -3.0
    assert {"lr", "gain", "learn"} <= set(heard)


async def test_recall_of_an_unknown_snapshot(agent):
    control, engine, model = agent
    with pytest.raises(ValueError, match="unknown snapshot 'never'"):
        await control.recall("never")
    with pytest.raises(ValueError, match="snapshot name must be"):
        await control.snapshot("../escape")


def test_reset_validates_its_seed(agent):
    control, engine, model = agent
    with pytest.raises(ValueError, match="seed must be a whole number >= 0; got -1"):
        control.reset(-1)
    control.reset(7)
    control.reset()


async def test_telemetry_has_levels_model_stats_and_timing(agent):
    control, engine, model = agent
    await asyncio.sleep(0.3)
    tele = control.telemetry()
    for key in ("rms", "peak", "in_rms", "error_rms", "blowups", "xruns", "callback_p50_ms",
                "callback_p99_ms", "safety_nonfinite", "panicked", "muted", "blocks"):
        assert key in tele, key
        assert isinstance(tele[key], float)
    assert tele["blocks"] > 20
    assert 0.2 < tele["in_peak"] <= 0.51
    assert 0.0 < tele["callback_p50_ms"] < tele["block_period_ms"]
