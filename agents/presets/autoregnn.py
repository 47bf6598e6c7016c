"""The AutoRegNN examples of seed 000 as presets: ``sine200``, ``fm``, ``saw_lrmod``,
``interp_sine_pulse`` and ``chord_sliders`` (DESIGN "Examples that must run as presets")."""

from __future__ import annotations

from anamnesis.agents.presets.base import FollowInput, Preset, SignalSpec, register
from anamnesis.agents.signals import midi_to_hz

#: The chord of ``chord_sliders`` (MIDI note numbers).
CHORD_MIDI = (40, 51, 82, 99)

register(Preset(
    name="sine200", model="autoregnn",
    description="200 Hz sine; the output locks onto 200 Hz after an unstable start (seed 000 fig. 1)",
    inputs=(SignalSpec("sine", {"freq": 200.0}),),
    model_args={"input_size": 12, "hidden_size": 8},
    params={"lr": 0.1, "ridge": 1e-4},
    seconds=3.0,
))
register(Preset(
    name="fm", model="autoregnn",
    description="sine frequency-modulated 220-600 Hz at 80 Hz; quick, stable adaptation (fig. 2)",
    inputs=(SignalSpec("fm_sine", {"lo": 220.0, "hi": 600.0, "rate": 80.0}),),
    model_args={"input_size": 12, "hidden_size": 8},
    params={"lr": 0.6, "ridge": 0.01},
    seconds=3.0,
))
register(Preset(
    name="saw_lrmod", model="autoregnn",
    description="180 Hz saw; learning rate modulated by the input itself in [0.01, 1]: "
                "rich, partly independent timbre (fig. 3)",
    inputs=(SignalSpec("saw", {"freq": 180.0}),),
    model_args={"input_size": 12, "hidden_size": 10},
    params={"lr": 0.1, "ridge": 1e-5},
    modulations=(FollowInput("lr", 0, 0.01, 1.0),),
    seconds=5.0,
))
register(Preset(
    name="interp_sine_pulse", model="autoregnn2",
    description="two parameter sets trained on a 500 Hz sine and a 500 Hz pulse; "
                "the output is generated half-way between them (fig. 4)",
    inputs=(SignalSpec("sine", {"freq": 500.0}), SignalSpec("pulse", {"freq": 500.0})),
    model_args={"input_size": 12, "hidden_size": 8},
    params={"lr": 0.5, "ridge": 1e-3, "interp": 0.5},
    seconds=3.0,
))
register(Preset(
    name="chord_sliders", model="autoregnn",
    description="sum of sines at MIDI 40, 51, 82, 99 x 0.2; weights meant to be steered by hand "
                "against the counterforce of learning",
    inputs=(SignalSpec("sines", {"freqs": tuple(midi_to_hz(m) for m in CHORD_MIDI), "amp": 0.2}),),
    model_args={"input_size": 8, "hidden_size": 8},
    params={"lr": 0.1, "ridge": 1e-3},
    seconds=10.0,
))
