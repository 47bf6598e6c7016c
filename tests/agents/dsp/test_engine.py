"""The audio-thread side: AgentEngine with real models, the null clock, the error policy."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from anamnesis.agents.audio.backends import BackendError, NullBackend, create_backend
from anamnesis.agents.dsp.engine import (
    DURATION_RING,
    RESET_AFTER_FAILED_BLOCKS,
    AgentEngine,
    FollowInput,
    QueueFull,
    Reset,
    SetParam,
)
from anamnesis.agents.dsp.safety import SafetyChain
from anamnesis.agents.models.autoregnn import AutoRegNN, AutoRegNN2
from anamnesis.agents.models.base import ParamSpec

SR = 48000


class Recorder:
    """A tiny real processor: y = level * x, recording what reaches it (for the tests that
    need to see inside); optionally raising or emitting NaN."""

    kind = "recorder"
    input_channels = 1
    WEIGHT_KEYS = ("w",)

    def __init__(self, sample_rate: int = SR, max_block: int = 4096) -> None:
        self.sample_rate = sample_rate
        self.max_block = max_block
        self.level = 1.0
        self.w = np.zeros(3)
        self.fail = False
        self.nan = False
        self.mods: list[np.ndarray] = []
        self.resets = 0
        self.threads: set[str] = set()

    def process(self, x, mod=None, out=None):
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("kernel exploded")
        if mod:
            self.mods.append(np.array(mod["rate"]))
        np.multiply(x, self.level, out=out)
        if self.nan:
            out[::2] = np.nan
        return out

    def param_specs(self):
        return {"level": ParamSpec("level", 1.0, 0.0, 2.0),
                "rate": ParamSpec("rate", 0.1, 0.0, 1.0, per_sample=True)}

    def set_param(self, name, value):
        self.apply_param(name, self.param_specs()[name].validate(value))

    def apply_param(self, name, value):
        if name not in ("level", "rate"):
            raise KeyError(f"unknown parameter {name!r}")
        if name == "level":
            self.level = value

    def params(self):
        return {"level": self.level, "rate": 0.1}

    def get_state(self):
        return {"w": self.w.copy()}

    def set_state(self, state):
        self.w[:] = state["w"]

    def reset(self, seed=None):
        self.resets += 1

    def stats(self):
        return {"error_rms": 0.0, "blowups": 0}


def sine(freq: float, frames: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(frames) / SR)


@pytest.mark.parametrize("block", [64, 256, 1024])
@pytest.mark.parametrize("frames", ["full", "short", "long"])
def test_engine_output_is_model_then_safety_chain(block, frames):
    """What reaches the speaker is exactly AutoRegNN followed by the safety chain,
    whatever the callback's frame count (shorter than the block, or longer and split)."""
    n = {"full": block, "short": block // 2 + 3, "long": block * 2 + 5}[frames]
    x = sine(200.0, 40 * n)
    engine = AgentEngine(AutoRegNN(seed=3, max_block=block), block=block, sample_rate=SR)
    speaker = np.empty(40 * n, dtype=np.float32)
    for i in range(40):
        engine.process_block(x[i * n:(i + 1) * n].astype(np.float32), speaker[i * n:(i + 1) * n])
    reference_model = AutoRegNN(seed=3, max_block=block)
    chain = SafetyChain(SR, block)
    expected = chain.process(reference_model.process(x.astype(np.float32).astype(np.float64)))
    assert_array_equal(speaker, expected.astype(np.float32))
    assert engine.telemetry()["errors"] == 0.0


def test_two_input_model_hears_the_mic_on_both_inputs():
    engine = AgentEngine(AutoRegNN2(seed=1, max_block=256), block=256, sample_rate=SR)
    x = sine(300.0, 256 * 8)
    speaker = np.empty_like(x)
    for i in range(8):
        engine.process_block(x[i * 256:(i + 1) * 256], speaker[i * 256:(i + 1) * 256])
    reference = AutoRegNN2(seed=1)
    expected = SafetyChain(SR, 256).process(reference.process(np.column_stack([x, x])))
    assert_array_equal(speaker, expected)


def test_commands_apply_at_the_next_block_start_in_order():
    model = AutoRegNN(max_block=128)
    engine = AgentEngine(model, block=128, sample_rate=SR)
    engine.post(SetParam("lr", 0.3))
    engine.post(SetParam("lr", 0.7))
    engine.post(SetParam("act_mix", np.full(8, 0.25)))
    assert model.params()["lr"] == 0.1  # nothing happens before the block
    engine.process_block(np.zeros(128), np.zeros(128))
    assert model.params()["lr"] == 0.7
    assert_array_equal(model.params()["act_mix"], np.full(8, 0.25))
    assert engine.queue_depth == 0


def test_command_queue_is_bounded():
    engine = AgentEngine(Recorder(), block=64, sample_rate=SR, queue_size=4)
    for _ in range(4):
        engine.post(SetParam("level", 0.5))
    with pytest.raises(QueueFull, match=r"command queue full \(4 commands"):
        engine.post(SetParam("level", 0.5))
    engine.process_block(np.zeros(64), np.zeros(64))
    engine.post(SetParam("level", 0.5))  # drained: room again


def test_a_rejected_command_fails_alone():
    # SetParam carries a value AgentControl has validated; the engine applies it without
    # checking again (validate once). A command the model cannot apply fails alone.
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR)
    engine.post(SetParam("nonsense", 1.0))
    engine.post(SetParam("level", 0.5))
    out = np.zeros(64)
    engine.process_block(np.ones(64), out)
    assert model.level == 0.5
    tele = engine.telemetry()
    assert tele["command_errors"] == 1.0 and tele["errors"] == 0.0
    assert "unknown parameter 'nonsense'" in str(engine.last_error)


@pytest.mark.parametrize("kind", ["autoregnn", "autoregnn2", "unlearn"])
def test_applying_a_checked_parameter_allocates_nothing(kind):
    """What the audio thread does with a SetParam: the value was checked on the loop
    (ParamSpec.validate, AgentControl); applying it allocates no array."""
    from support.alloc import traced_allocation

    from anamnesis.agents.models import create_model

    model = create_model(kind, max_block=256)
    specs = model.param_specs()
    checked = {name: specs[name].validate(value) for name, value in model.params().items()
               if name != "activation"}
    for name, value in checked.items():            # warm up, then measure
        model.apply_param(name, value)
    for name, value in checked.items():
        peak, retained = traced_allocation(lambda n=name, v=value: model.apply_param(n, v))
        checking, _ = traced_allocation(lambda n=name, v=value: model.set_param(n, v))
        # The frames of the calls and a few views (measured: 96-336 bytes); validating
        # builds numpy temporaries (measured: 1.1 KiB and more, 9 KiB for delays).
        assert peak < 512 and peak < checking / 2 and retained == 0, (name, peak, checking)
    assert model.params().keys() == checked.keys() | ({"activation"} & model.params().keys())


def test_exception_in_the_model_gives_silence_and_is_counted():
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR)
    out = np.full(64, 0.5, dtype=np.float32)
    model.fail = True
    engine.process_block(np.ones(64), out)  # must not raise
    assert_array_equal(out, np.zeros(64, dtype=np.float32))
    assert engine.telemetry()["errors"] == 1.0
    assert isinstance(engine.last_error, RuntimeError)
    model.fail = False
    engine.process_block(sine(500, 64, 0.3), out)
    assert np.any(out != 0.0)


def test_nan_from_the_model_never_reaches_the_speaker():
    model = Recorder()
    model.nan = True
    model.level = 2.0
    engine = AgentEngine(model, block=256, sample_rate=SR, ceiling_db=-6.0)
    out = np.empty(256, dtype=np.float32)
    for _ in range(50):
        engine.process_block(np.ones(256) * 3.0, out)
        assert np.all(np.isfinite(out))
        assert np.max(np.abs(out)) <= engine.safety.ceiling
    assert engine.safety.counters()["nonfinite"] == 50 * 128


async def test_errors_are_reported_on_the_loop_and_persistent_failure_resets(caplog):
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR)
    engine.attach_loop(asyncio.get_running_loop())
    model.fail = True
    out = np.zeros(64)
    with caplog.at_level(logging.ERROR, logger="anamnesis.agents.dsp.engine"):
        for _ in range(RESET_AFTER_FAILED_BLOCKS):
            engine.process_block(np.zeros(64), out)
        await asyncio.sleep(0.01)
    messages = [r.getMessage() for r in caplog.records]
    assert any("RuntimeError: kernel exploded" in m for m in messages)
    assert sum("error(s) since the last report" in m for m in messages) == 1  # rate-limited
    assert any("failed in a row; resetting the model" in m for m in messages)
    model.fail = False
    engine.process_block(np.zeros(64), out)
    assert model.resets == 1


def test_follow_input_modulates_a_parameter_per_sample():
    model = Recorder()
    engine = AgentEngine(model, block=128, sample_rate=SR,
                         follow=[FollowInput("rate", 0.01, 1.0)])
    x = np.linspace(-1.5, 1.5, 128)
    x[5] = np.nan
    engine.process_block(x, np.zeros(128))
    expected = 0.01 + (np.clip(x, -1, 1) + 1) / 2 * 0.99
    expected[5] = 0.01
    assert_allclose(model.mods[0], expected, rtol=1e-12)


def test_follow_input_rejects_an_unknown_parameter():
    with pytest.raises(ValueError, match="cannot follow the input with unknown parameter 'nope'"):
        AgentEngine(Recorder(), block=64, sample_rate=SR, follow=[FollowInput("nope", 0, 1)])


def test_engine_rejects_a_sample_rate_mismatch():
    with pytest.raises(ValueError, match="the model runs at 44100 Hz, the engine at 48000 Hz"):
        AgentEngine(AutoRegNN(sample_rate=44100), block=256, sample_rate=SR)


def test_telemetry_levels_and_callback_percentiles():
    engine = AgentEngine(Recorder(), block=256, sample_rate=SR)
    x = sine(1000.0, 256 * 200, amp=0.5)
    out = np.empty(256)
    for i in range(200):
        engine.process_block(x[i * 256:(i + 1) * 256], out)
    tele = engine.telemetry()
    assert_allclose(tele["rms"], 0.5 / np.sqrt(2), rtol=0.02)
    assert_allclose(tele["peak"], 0.5, rtol=0.02)
    assert_allclose(tele["in_rms"], 0.5 / np.sqrt(2), rtol=0.02)
    assert tele["blocks"] == 200.0 and tele["frames"] == 200.0 * 256
    assert 0.0 < tele["callback_p50_ms"] <= tele["callback_p99_ms"] <= tele["callback_max_ms"]
    assert_allclose(tele["block_period_ms"], 256 / 48.0)
    assert len(engine.durations_ns()) == 200


def test_duration_ring_keeps_the_latest_blocks_in_order():
    engine = AgentEngine(Recorder(), block=16, sample_rate=SR)
    for _ in range(DURATION_RING + 10):
        engine.process_block(np.zeros(16), np.zeros(16))
    assert len(engine.durations_ns()) == DURATION_RING
    assert np.all(engine.durations_ns() > 0)


async def test_call_runs_directly_when_the_clock_is_stopped():
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR)
    name = await engine.call(lambda m: threading.current_thread().name)
    assert name == threading.current_thread().name


async def test_call_runs_on_the_audio_thread_at_a_block_boundary():
    model = Recorder()
    engine = AgentEngine(model, block=256, sample_rate=SR)
    backend = NullBackend(engine)
    backend.start()
    try:
        assert engine.clock_running
        name = await engine.call(lambda m: threading.current_thread().name)
        assert name == "anamnesis-null-clock"
        with pytest.raises(ZeroDivisionError):
            await engine.call(lambda m: 1 / 0)
    finally:
        backend.stop()
    assert not engine.clock_running


async def test_call_falls_back_to_a_direct_run_when_the_clock_stalls(caplog):
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR)
    engine.clock_running = True  # a clock that claims to run but delivers no block
    runs = []
    with caplog.at_level(logging.WARNING, logger="anamnesis.agents.dsp.engine"):
        t0 = time.monotonic()
        result = await engine.call(lambda m: runs.append(1) or "direct", timeout=0.2)
    assert result == "direct"
    assert 0.19 <= time.monotonic() - t0 < 1.0
    assert "clock stalled" in caplog.text
    engine.process_block(np.zeros(64), np.zeros(64))  # the withdrawn request is not run again
    assert runs == [1]


def test_null_clock_keeps_time_without_drift_and_joins_its_thread():
    """Block k starts at its deadline t0 + k * block / rate, never before it, and the
    clock does not drift: timed by the clock thread itself, the earliest start among the
    last blocks is within a wake-up of its deadline, less only the time the clock
    counts as given up when a busy machine made it resynchronise (``clock_lost_ms``)."""
    starts = np.zeros(4000, dtype=np.int64)      # monotonic ns at each block's source call
    count = [0]

    def source(mic: np.ndarray) -> None:
        mic.fill(0.25)
        if count[0] < len(starts):
            starts[count[0]] = time.monotonic_ns()
            count[0] += 1

    engine = AgentEngine(Recorder(), block=256, sample_rate=SR)
    backend = NullBackend(engine, source=source)
    backend.start()
    time.sleep(2.0)
    backend.stop()
    n, stats = count[0], backend.stats()
    assert n == backend.blocks and n >= 100
    late_ms = (starts[:n] - starts[0] - np.arange(n) * (256 / SR * 1e9)) / 1e6
    print(f"\nnull clock: {n} blocks, {stats['xruns']:.0f} resyncs "
          f"({stats['clock_lost_ms']:.1f} ms given up), latest start {late_ms.max():.1f} ms")
    assert late_ms.min() >= -0.5                                        # never early
    assert late_ms[-100:].min() - stats["clock_lost_ms"] <= 5.0         # no drift
    assert not any(t.name == "anamnesis-null-clock" for t in threading.enumerate())
    assert engine.telemetry()["in_peak"] > 0.2


def test_null_clock_is_not_a_busy_loop():
    engine = AgentEngine(Recorder(), block=256, sample_rate=SR)
    backend = NullBackend(engine)
    cpu0, wall0 = time.process_time(), time.monotonic()
    backend.start()
    time.sleep(1.0)
    backend.stop()
    cpu = time.process_time() - cpu0
    assert cpu < 0.25 * (time.monotonic() - wall0)  # a busy loop would take a whole core


def test_hub_backend_without_a_link_fails_with_one_clear_line():
    # the hub-clocked backend itself is tested in test_hub_clocked.py
    engine = AgentEngine(Recorder(), block=256, sample_rate=SR)
    with pytest.raises(BackendError, match=r"^--audio hub needs the agent's RTP link: "):
        create_backend("hub", engine)


def test_reset_command_reaches_the_model():
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR)
    engine.post(Reset(5))
    engine.process_block(np.zeros(64), np.zeros(64))
    assert model.resets == 1


class _Refuse:
    """A meta path finder that makes ``import sounddevice`` fail like a broken install."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "sounddevice":
            raise self.error
        return None


@pytest.mark.parametrize("error, match", [
    (OSError("PortAudio library not found"),
     r"^PortAudio library not found: install the Debian package libportaudio2"),
    (ModuleNotFoundError("No module named 'sounddevice'", name="sounddevice"),
     r"^the Python package sounddevice is not installed"),
])
def test_missing_portaudio_is_one_clear_line(monkeypatch, error, match):
    import sys

    from anamnesis.agents.audio.backends import import_sounddevice, list_devices
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Refuse(error), *sys.meta_path])
    with pytest.raises(BackendError, match=match):
        import_sounddevice()
    engine = AgentEngine(Recorder(), block=256, sample_rate=SR)
    with pytest.raises(BackendError, match=match):
        create_backend("sounddevice", engine).start()
    with pytest.raises(BackendError, match=match):
        list_devices()
    assert not engine.clock_running


def test_follow_input_with_a_short_block_and_the_full_block_agree():
    model = Recorder()
    engine = AgentEngine(model, block=64, sample_rate=SR, follow=[FollowInput("rate", 0.0, 1.0)])
    x = np.linspace(-1, 1, 64)
    engine.process_block(x, np.zeros(64))
    engine.process_block(x[:10], np.zeros(10))
    assert_allclose(model.mods[0][:10], model.mods[1])
    assert len(model.mods[1]) == 10


@pytest.mark.parametrize("follow", [(), (FollowInput("lr", 0.01, 1.0),)])
def test_the_audio_path_allocates_no_block_sized_buffer(follow):
    """Steady state: 100 callbacks of 1024 frames never hold more than 3 KiB of new
    Python-tracked memory at once (a block-sized temporary would take 4 KiB or more)."""
    from support.alloc import traced_allocation

    engine = AgentEngine(AutoRegNN(max_block=1024), block=1024, sample_rate=SR, follow=follow)
    mic = np.random.default_rng(0).normal(0.0, 0.3, 1024).astype(np.float32)
    speaker = np.zeros(1024, dtype=np.float32)
    for _ in range(5):
        engine.process_block(mic, speaker)
    peak, retained = traced_allocation(lambda: engine.process_block(mic, speaker))
    assert peak < 3072
    assert retained < 512


def test_meters_stay_finite_whatever_the_mic_delivers():
    engine = AgentEngine(Recorder(), block=64, sample_rate=SR)
    mic = np.array([np.nan, np.inf, -np.inf, 1e300] * 16)
    engine.process_block(mic, np.zeros(64))
    tele = engine.telemetry()
    assert np.isfinite(tele["in_rms"]) and tele["in_peak"] == 1e6
    assert np.all(np.isfinite(list(tele.values())))
