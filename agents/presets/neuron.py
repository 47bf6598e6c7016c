"""Presets of the embodied neuron (``agents.models.neuron``): ``neuron_hover`` and
``neuron_reactive``, the two sides of seed 000 §3.2's threshold between "a
'solipsistic' mode of self-oscillation and a more reactive, input-dependent mode".

Both are tuned for the octophonic circle of ``deploy/embodied8.toml`` (each mic
0.4 m in front of its own speaker, the neighbours 2.7 m away): what decides the
side of the threshold is the resting excitability ``r`` against the loop's gain
through the air (``input_gain`` times the room's 1/distance). Rendered alone
(``anamnesis render --preset …``) a neuron hears its preset input, a short noise
burst, and nothing of itself: a neuron without its network falls silent after it.
"""

from __future__ import annotations

from anamnesis.agents.presets.base import Preset, SignalSpec, register

_BURST = (SignalSpec("noise", {"amp": 0.3, "fade": 0.5, "seed": 1}),)
_LAZY = {"lambda_": 1.0, "mu": 0.4, "nu": 1.0, "s": 0.1, "a": 0.0, "input_gain": 0.5,
         "shape": 1.0, "time_scale": 10.0,
         # 8.3, 20, 35 and 65 ms: no tap at 0, so the shortest loop (speaker -> own mic)
         # is 10 ms and more, and the network's pitches lie below a few kHz.
         "delays": [400.0, 960.0, 1700.0, 3100.0]}

register(Preset(
    name="neuron_hover",
    model="neuron",
    description="one embodied lazy neuron above the threshold: in a room with others "
                "it keeps the network going after one burst, its four taps hovering on "
                "limit cycles of radius 0.3 (tanh; input gain 0.5)",
    inputs=_BURST,
    model_args={"n_taps": 4, "init_weight": 1.0},
    params={**_LAZY, "r": 0.3},
    seconds=10.0,
))
register(Preset(
    name="neuron_reactive",
    model="neuron",
    description="one embodied lazy neuron below the threshold: it answers what it hears "
                "and the network falls quiet when nothing feeds it (tanh; resting "
                "radius 0.15)",
    inputs=_BURST,
    model_args={"n_taps": 4, "init_weight": 1.0},
    params={**_LAZY, "r": 0.15},
    seconds=10.0,
))
