"""Offline rendering: presets, timed events, modulations, the `anamnesis render` CLI."""

import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from numpy.testing import assert_array_equal

from anamnesis.agents.models import create_model
from anamnesis.agents.presets import (
    At,
    FollowInput,
    Preset,
    Ramp,
    SignalSpec,
    all_presets,
    get_preset,
)
from anamnesis.agents.render import realtime_text, render_preset
from anamnesis.agents.signals import make_signal

SR = 48000


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "anamnesis.hub.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


@pytest.mark.parametrize("name", sorted(all_presets()))
def test_every_preset_renders_finite_audio(name):
    preset = get_preset(name)
    r = render_preset(preset, 0.25, seed=1, sample_rate=SR)
    assert r.inputs.shape == (int(0.25 * SR), len(preset.inputs))
    assert r.output.shape == (int(0.25 * SR),)
    assert np.all(np.isfinite(r.output))
    assert np.all(np.isfinite(r.inputs))


def test_render_is_deterministic_and_seeded():
    preset = get_preset("sine200")
    a = render_preset(preset, 0.2, seed=3).output
    b = render_preset(preset, 0.2, seed=3).output
    c = render_preset(preset, 0.2, seed=4).output
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_event_lands_on_its_exact_sample():
    """A render with `At` equals driving the model by hand, split exactly at the event."""
    t_event = 0.1 + 37 / SR  # deliberately not on a render-block boundary
    preset = Preset(name="t", model="autoregnn", description="", seconds=0.3,
                    inputs=(SignalSpec("sine", {"freq": 300.0}),),
                    params={"lr": 0.2, "ridge": 1e-4},
                    events=(At(t_event, "learn", 0), At(t_event, "lr", 0.05)))
    rendering = render_preset(preset, 0.3, seed=2)
    rendered = rendering.output

    model = create_model("autoregnn", seed=2, sample_rate=SR)
    model.set_param("lr", 0.2)
    model.set_param("ridge", 1e-4)
    x = rendering.inputs[:, 0]
    assert_array_equal(x, make_signal("sine", SR, freq=300.0).next(len(x)))
    cut = int(round(t_event * SR))
    head = model.process(x[:cut])
    model.set_param("learn", 0)
    model.set_param("lr", 0.05)
    tail = model.process(x[cut:])
    assert_array_equal(rendered, np.concatenate([head, tail]))


def test_follow_input_modulates_per_sample():
    """saw_lrmod's lr follows its input: equal to handing the model lr = in.range(0.01, 1)."""
    preset = get_preset("saw_lrmod")
    assert any(isinstance(m, FollowInput) for m in preset.modulations)
    rendered = render_preset(preset, 0.2, seed=0)
    model = create_model("autoregnn", seed=0, sample_rate=SR, **preset.model_args)
    for k, v in preset.params.items():
        model.set_param(k, v)
    x = rendered.inputs[:, 0]
    lr = 0.01 + (x + 1.0) * 0.5 * 0.99
    assert_array_equal(model.process(x, {"lr": lr}), rendered.output)


def test_ramp_values():
    from anamnesis.agents.render import _modulation_block

    lin = _modulation_block(Ramp("s", 160.0, 18.0, 0.0, 1.0, "lin"), 0, SR + 1, SR, np.zeros((0, 0)))
    assert lin[0] == 160.0 and abs(lin[-1] - 18.0) < 1e-12
    exp = _modulation_block(Ramp("s", 160.0, 18.0, 0.0, 1.0, "exp"), 0, SR + 1, SR, np.zeros((0, 0)))
    assert abs(exp[SR // 2] - np.sqrt(160.0 * 18.0)) < 1e-6


def test_bad_preset_parameter_is_clear():
    preset = Preset(name="bad", model="autoregnn", description="",
                    inputs=(SignalSpec("sine"),), events=(At(0.1, "nonsense", 1.0),))
    with pytest.raises(ValueError, match="unknown parameter 'nonsense'"):
        render_preset(preset, 0.1)


def test_cli_lists_presets():
    done = _cli("render", "--list")
    assert done.returncode == 0
    names = {line.split()[0] for line in done.stdout.splitlines()}
    assert {"sine200", "fm", "saw_lrmod", "interp_sine_pulse", "chord_sliders"} <= names


def test_cli_writes_inputs_and_output_and_plot(tmp_path):
    wav, png = tmp_path / "p.wav", tmp_path / "p.png"
    done = _cli("render", "interp_sine_pulse", "--seconds", "0.5", "--out", str(wav),
                "--plot", str(png), "--seed", "2", "--quiet")
    assert done.returncode == 0, done.stderr
    data, sr = soundfile.read(str(wav))
    assert sr == SR and data.shape == (SR // 2, 3)  # in1, in2, out
    assert np.all(np.abs(data[:, 2]) <= 1.0)
    assert png.stat().st_size > 10_000
    # The real-time factor as measured (0.57x was once printed as "1x"): consistent with
    # the seconds printed beside it (rounded to 10 ms) and written as realtime_text does.
    shown = re.search(r": 0\.5 s in ([0-9.]+) s \(([0-9.]+)x real time\)", done.stdout)
    assert shown is not None, done.stdout
    elapsed, factor = float(shown[1]), float(shown[2])
    assert 0.5 / (elapsed + 0.005) * 0.95 <= factor <= 0.5 / max(elapsed - 0.005, 1e-9) * 1.05
    assert realtime_text(factor) == f"{shown[2]}x"


@pytest.mark.parametrize("args,message", [
    (["render", "nosuch", "--out", "x.wav"], "unknown preset 'nosuch'"),
    (["render", "sine200", "--seconds", "-1", "--out", "x.wav"], "seconds must be a positive"),
    (["render", "sine200", "--out", "no/such/dir/x.wav"], "does not exist"),
    (["render", "sine200"], "give --out"),
    (["render", "sine200", "--sample-rate", "100", "--out", "x.wav"], "sample rate must be in"),
])
def test_cli_bad_input_is_one_clear_line(tmp_path, args, message):
    done = _cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
