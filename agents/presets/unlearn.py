"""The six Unlearn examples of seed 001 as presets ``unlearn1`` ... ``unlearn6``.

Every example is a 16-neuron network with 3 inputs per neuron; the listed
parameters (λ, μ, ν, s, r, a, activation, delay range) are the seed's. What the
seed leaves open is chosen here per example and said in its description
(``agents.models.unlearn`` explains each freedom):

* ``time_scale`` — the time scale of λ (ODE time units per second). With the
  printed equations a weight turns at λ·time_scale rad/s about zero and is
  drawn towards radius r: examples 1, 3, 4, 5 need slow time (0.01-0.03) to
  sound as described rather than fall silent within seconds. Even so the
  printed equations wind down: without input example 1 falls silent after
  about 2.5 minutes (its weights shrink towards radius r) — an installation
  feeds it (rings, microphones) or uses ``cycle_center="u"``.
* ``init_weight`` — the spread of the random initial weights.
* ``cycle_center`` — examples 2 and 6 use ``"u"`` (rotation and limit cycle
  about each weight's slow mean ``u``, the reading of seed 000's prose). The
  printed equations (``"origin"``) pull every weight to dE/dw / λ: example 2
  falls silent within 2 s at every time scale, and example 6 rings at
  100 Hz for a second after the switch-off and then stays silent or bursts at
  other frequencies; see the model docstring.

Self-oscillating examples get silence as input; example 6 a 100 Hz sine.
"""

from __future__ import annotations

from anamnesis.agents.presets.base import At, Preset, Ramp, SignalSpec, register

_NET = {"n_neurons": 16, "n_inputs": 3}

register(Preset(
    name="unlearn1", model="unlearn",
    description="self-oscillation: resonant frequencies that pulse, change slowly or "
                "suddenly; silent after ~2.5 min without input (seed 001 example 1; "
                "tanh; time_scale 0.03, weights ±3)",
    inputs=(SignalSpec("silence"),),
    model_args={**_NET, "max_delay": 2400, "activation": "tanh", "init_weight": 3.0},
    params={"lambda_": 60.0, "mu": 0.4, "nu": 0.4, "s": 0.1, "r": 0.01, "a": 0.0,
            "time_scale": 0.03},
    seconds=20.0,
))
register(Preset(
    name="unlearn2", model="unlearn",
    description="self-oscillation while the limit-cycle strength s falls from 160 to 18: "
                "noisy chatter turning into metallic lines and an equilibrium sound "
                "(example 2; tanh; cycle about u, time_scale 10, weights ±1.5)",
    inputs=(SignalSpec("silence"),),
    model_args={**_NET, "max_delay": 2400, "activation": "tanh", "init_weight": 1.5,
                "cycle_center": "u"},
    params={"lambda_": 0.4, "mu": 0.4, "nu": 0.4, "s": 160.0, "r": 0.01, "a": 0.0,
            "time_scale": 10.0},
    modulations=(Ramp("s", 160.0, 18.0, 0.0, 20.0, "exp"),),
    seconds=20.0,
))
register(Preset(
    name="unlearn3", model="unlearn",
    description="self-oscillation: bursts of clicky noise with sudden pauses "
                "(example 3; elevated cosine; time_scale 0.03, weights ±5)",
    inputs=(SignalSpec("silence"),),
    model_args={**_NET, "max_delay": 2400, "activation": "elevated_cosine",
                "init_weight": 5.0},
    params={"lambda_": 10.0, "mu": 0.1, "nu": 10.0, "s": 0.1, "r": 0.02, "a": 0.5,
            "time_scale": 0.03},
    seconds=20.0,
))
register(Preset(
    name="unlearn4", model="unlearn",
    description="'wind': a very noisy texture, a microphone held into a storm "
                "(example 4; elevated cosine; time_scale 0.03, weights ±3)",
    inputs=(SignalSpec("silence"),),
    model_args={**_NET, "max_delay": 2400, "activation": "elevated_cosine",
                "init_weight": 3.0},
    params={"lambda_": 10.0, "mu": 235.0, "nu": 900.0, "s": 0.1, "r": 0.02, "a": 0.5,
            "time_scale": 0.03},
    seconds=20.0,
))
register(Preset(
    name="unlearn5", model="unlearn",
    description="'wind / blubber': noisy texture with bubbling that breaks off and returns "
                "(example 5; elevated cosine; time_scale 0.01, weights ±5)",
    inputs=(SignalSpec("silence"),),
    model_args={**_NET, "max_delay": 2400, "activation": "elevated_cosine",
                "init_weight": 5.0},
    params={"lambda_": 28.0, "mu": 0.02, "nu": 900.0, "s": 0.1, "r": 0.2, "a": 6.8,
            "time_scale": 0.01},
    seconds=20.0,
))
register(Preset(
    name="unlearn6", model="unlearn",
    description="adapting to a 100 Hz sine on an input of the first neuron; at 1:19 the "
                "sine and learning (λ = 0) switch off and a resonance near 100 Hz remains "
                "(example 6; tanh; delays 0-4800; cycle about u, time_scale 0.3, weights ±0.1)",
    inputs=(SignalSpec("sine", {"freq": 100.0}),),
    model_args={**_NET, "max_delay": 4800, "activation": "tanh", "init_weight": 0.1,
                "cycle_center": "u"},
    params={"lambda_": 1.0, "mu": 100.0, "nu": 980.0, "s": 6.5, "r": 0.6, "a": 0.1,
            "time_scale": 0.3},
    events=(At(79.0, "input_gain", 0.0), At(79.0, "lambda_", 0.0)),
    seconds=100.0,
))
