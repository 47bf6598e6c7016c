"""Named presets: the seed examples as data.

A :class:`Preset` names a model kind, its constructor arguments, its starting
parameters, the input signals that feed it, audio-rate modulations of its
parameters, and timed events (:mod:`.base`). The AutoRegNN examples of seed 000
(:mod:`.autoregnn`) and the Unlearn examples of seed 001 (:mod:`.unlearn`) register
themselves when this package is imported. The renderer (``anamnesis.agents.render``)
and the agent process both read presets; nothing here computes audio.
"""

from __future__ import annotations

from anamnesis.agents.presets import autoregnn, neuron, unlearn  # noqa: F401  (they register)
from anamnesis.agents.presets.base import (
    PRESETS,
    At,
    FollowInput,
    Preset,
    Ramp,
    SignalSpec,
    register,
)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None


def all_presets() -> dict[str, Preset]:
    """Every registered preset, by name."""
    return dict(PRESETS)


__all__ = ["PRESETS", "At", "FollowInput", "Preset", "Ramp", "SignalSpec", "all_presets",
           "get_preset", "register"]
