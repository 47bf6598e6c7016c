"""Random parameter settings of every model kind, played through the safety chain.

:func:`fuzz_kind` builds models of one kind (each constructor variant of
:data:`VARIANTS`: every activation), then for ``settings`` rounds sets every parameter
to a random value of its range (a third of them at an end of it, ``extreme``), the
agent's gain to a random level of the chain's range (often its +12 dB top), and plays
:data:`BLOCKS` blocks of a provoking input (a full-scale 23.9 kHz tone under noise: a
learner locks onto it) through the model and one :class:`SafetyChain` kept across the
rounds, as an agent's is across its parameter changes. It counts what reached the
speaker: non-finite samples, samples above the ceiling, and the level above 20 kHz of
each round's last 2,048 samples (dBFS of a sine's peak: a Hann-windowed spectrum,
Parseval), the same of the model's own output (how often the oscillation was
provoked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from anamnesis.agents.dsp.safety import SafetyChain
from anamnesis.agents.models import create_model

SR = 48000
BLOCK = 256
BLOCKS = 12                 # 3,072 samples a round; the last 2,048 measured
WINDOW = 2048
TWEETER_HZ = 20000.0
#: Each model kind in its constructor variants (every activation).
VARIANTS: dict[str, list[dict]] = {
    "autoregnn": [{}],
    "autoregnn2": [{}],
    "unlearn": [{"activation": a, "n_neurons": 8, "max_delay": 480}
                for a in ("tanh", "sine", "elevated_cosine")],
    "neuron": [{"activation": a} for a in ("tanh", "sine", "elevated_cosine")],
}
#: Where a range has no end, a random value is drawn within this.
OPEN_END = 1e4


@dataclass
class Figures:
    """What one kind's rounds sent to the speaker."""

    kind: str
    settings: int = 0
    samples: int = 0
    nonfinite: int = 0
    over_ceiling: int = 0
    worst_tweeter_dbfs: float = -math.inf     # the chain's output
    worst_model_tweeter_dbfs: float = -math.inf
    provoked: int = 0                         # rounds whose model output was > -40 dBFS there
    refused: dict[str, int] = field(default_factory=dict)   # values a parameter refused


def tweeter_dbfs(y: np.ndarray) -> float:
    """The level above :data:`TWEETER_HZ` of ``y`` in dBFS (a sine of peak A: 20 log A)."""
    w = np.hanning(len(y))
    spectrum = np.fft.rfft(y * w)
    freqs = np.fft.rfftfreq(len(y), 1.0 / SR)
    band = np.sum(np.abs(spectrum[freqs > TWEETER_HZ]) ** 2)
    power = 2.0 * band / (len(y) ** 2 * np.mean(w ** 2))
    return 10.0 * math.log10(max(2.0 * power, 1e-30))


def _value(spec, rng: np.random.Generator, extreme: bool) -> object:
    lo = spec.minimum if math.isfinite(spec.minimum) else -OPEN_END
    hi = spec.maximum if math.isfinite(spec.maximum) else OPEN_END
    if spec.kind == "choice":
        return str(rng.choice(spec.choices))
    if spec.kind == "bool":
        return int(rng.integers(0, 2))
    if spec.kind == "array":
        size = spec.size or 1
        values = rng.choice([lo, hi], size) if extreme else rng.uniform(lo, hi, size)
        whole = spec.unit == "samples"            # delays: whole samples
        return [float(round(v)) if whole else float(v) for v in values]
    if extreme:
        value = float(rng.choice([lo, hi]))
    elif spec.scale == "log" and lo > 0:
        value = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    else:
        value = float(rng.uniform(lo, hi))
    return int(round(value)) if spec.kind == "int" else value


def fuzz_kind(kind: str, settings: int, seed: int = 0) -> Figures:
    """``settings`` random settings of ``kind`` (spread over its variants)."""
    rng = np.random.default_rng(seed)
    figures = Figures(kind)
    variants = VARIANTS[kind]
    t = np.arange(BLOCKS * BLOCK) / SR
    for v, args in enumerate(variants):
        model = create_model(kind, seed=seed + v, sample_rate=SR, max_block=BLOCK, **args)
        chain = SafetyChain(SR, BLOCK)
        channels = int(model.input_channels)
        specs = model.param_specs()
        for _ in range(settings // len(variants)):
            for name, spec in specs.items():
                value = _value(spec, rng, extreme=rng.random() < 1 / 3)
                try:
                    model.set_param(name, value)
                except ValueError:
                    figures.refused[name] = figures.refused.get(name, 0) + 1
            chain.set_gain_db(SafetyChain.GAIN_MAX_DB if rng.random() < 0.5
                              else float(rng.uniform(SafetyChain.GAIN_MIN_DB,
                                                     SafetyChain.GAIN_MAX_DB)))
            x = (np.cos(2 * np.pi * 23900.0 * t + rng.uniform(0, 2 * np.pi))
                 + rng.normal(0.0, 0.3, t.size)) * float(rng.choice([1.0, 10.0, 1000.0]))
            if channels > 1:
                x = np.repeat(x[:, None], channels, axis=1)
            raw = np.empty(t.size)
            out = np.empty(t.size)
            for b in range(BLOCKS):
                block = slice(b * BLOCK, (b + 1) * BLOCK)
                raw[block] = model.process(x[block])
                out[block] = chain.process(raw[block])
            figures.settings += 1
            figures.samples += out.size
            figures.nonfinite += int(np.count_nonzero(~np.isfinite(out)))
            figures.over_ceiling += int(np.count_nonzero(np.abs(out) > chain.ceiling))
            finite_raw = np.where(np.isfinite(raw), raw, 0.0)
            model_level = tweeter_dbfs(finite_raw[-WINDOW:])
            figures.provoked += model_level > -40.0
            figures.worst_model_tweeter_dbfs = max(figures.worst_model_tweeter_dbfs, model_level)
            figures.worst_tweeter_dbfs = max(figures.worst_tweeter_dbfs,
                                             tweeter_dbfs(out[-WINDOW:]))
    return figures


__all__ = ["VARIANTS", "Figures", "fuzz_kind", "tweeter_dbfs"]
