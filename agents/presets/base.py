"""The vocabulary of presets: a :class:`Preset` names a model kind, its constructor
arguments, its starting parameters, the input signals that feed it (:class:`SignalSpec`),
audio-rate modulations of its parameters (:class:`Ramp`, :class:`FollowInput`) and
timed events (:class:`At`); :func:`register` adds one to :data:`PRESETS`.

Times are seconds from the start of a render; frequencies Hz; amplitudes linear.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


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


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add ``preset`` to the table; a second preset of the same name is an error."""
    if preset.name in PRESETS:
        raise ValueError(f"preset {preset.name!r} is defined twice")
    PRESETS[preset.name] = preset
    return preset


__all__ = ["PRESETS", "At", "FollowInput", "Preset", "Ramp", "SignalSpec", "register"]
