"""Named presets: the seed examples as data.

A :class:`Preset` names a model kind, its constructor arguments, its starting
parameters, the input signals that feed it, audio-rate modulations of its
parameters, and timed events. The renderer (``agents.render``) and the agent
process both read presets; nothing here computes audio.

Times are seconds from the start of a render; frequencies Hz; amplitudes linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .signals import midi_to_hz


def _frozen(mapping: Mapping[str, object] | None) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class SignalSpec:
    """One input channel: a generator of ``agents.signals.SIGNALS`` and its arguments."""

    kind: str
    args: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", _frozen(self.args))


@dataclass(frozen=True)
class Ramp:
    """Parameter ``param`` glides from ``start`` to ``end`` between ``t0`` and ``t1`` seconds.

    ``curve`` "exp" glides geometrically (for rates and strengths that span
    decades, both ends > 0), "lin" linearly. Before ``t0`` the value is
    ``start``, after ``t1`` it is ``end``. Applied per sample.
    """

    param: str
    start: float
    end: float
    t0: float
    t1: float
    curve: str = "lin"


@dataclass(frozen=True)
class FollowInput:
    """Parameter ``param`` follows input channel ``channel``, mapped from [-1, 1] to [lo, hi].

    SuperCollider's ``in.range(lo, hi)``: the seed's ``saw_lrmod`` modulates the
    learning rate by its own input signal. Applied per sample.
    """

    param: str
    channel: int
    lo: float
    hi: float


@dataclass(frozen=True)
class At:
    """At ``time`` seconds, set parameter ``param`` to ``value`` (exact to the sample)."""

    time: float
    param: str
    value: object


@dataclass(frozen=True)
class Preset:
    """A named, renderable configuration of one model."""

    name: str
    model: str
    description: str
    inputs: tuple[SignalSpec, ...]
    model_args: Mapping[str, object] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)
    modulations: tuple[Ramp | FollowInput, ...] = ()
    events: tuple[At, ...] = ()
    seconds: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_args", _frozen(self.model_args))
        object.__setattr__(self, "params", _frozen(self.params))


CHORD_MIDI = (40, 51, 82, 99)

PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add ``preset`` to the table; a second preset of the same name is an error."""
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is defined twice")
    PRESETS[preset.name] = preset
    return preset


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


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` listing the known names otherwise."""
    _load_model_presets()
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


def all_presets() -> dict[str, Preset]:
    """Every registered preset, by name."""
    _load_model_presets()
    return dict(PRESETS)


def _load_model_presets() -> None:
    """Import the modules that register presets of further models (idempotent)."""
    from . import presets_unlearn  # noqa: F401  (registers unlearn1..unlearn6)
