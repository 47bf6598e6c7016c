"""The seed input signals, as small stateful generators.

Each generator is a processor in the UGen sense: ``next(frames)`` returns the
next ``frames`` samples, and calling it in any split of blocks gives exactly
the samples of one call (phase is kept as a sample counter, so there is no
accumulated rounding). They stand in for the SuperCollider UGens of seed 001:
``SinOsc``, an FM ``SinOsc``, ``LFSaw``, ``Pulse``, sums of sines and
``WhiteNoise`` with a ``Line`` fade.

Amplitudes are linear full scale (1.0 = 0 dBFS); frequencies in Hz; times in
seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

TWO_PI = 2.0 * math.pi


class Signal(Protocol):
    """A generator of one input channel."""

    def next(self, frames: int) -> np.ndarray: ...
    def reset(self) -> None: ...


def _check_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive whole number of Hz; got {sample_rate!r}")
    return int(sample_rate)


def _check_freq(name: str, freq: float, sample_rate: int) -> float:
    freq = float(freq)
    if not (math.isfinite(freq) and 0.0 <= freq < sample_rate / 2):
        raise ValueError(f"{name} must be in [0, {sample_rate / 2:g}) Hz; got {freq:g}")
    return freq


@dataclass
class _Clocked:
    """Base of the generators: keeps the absolute sample position."""

    sample_rate: int
    position: int = field(default=0, init=False)

    def _times(self, frames: int) -> np.ndarray:
        if frames < 0:
            raise ValueError(f"frames must be >= 0; got {frames}")
        n = np.arange(self.position, self.position + frames, dtype=np.float64)
        self.position += frames
        return n / self.sample_rate

    def reset(self) -> None:
        """Return to time 0."""
        self.position = 0


@dataclass
class Sine(_Clocked):
    """``amp * sin(2π f t + phase)`` — SuperCollider's ``SinOsc.ar(freq)``."""

    freq: float = 200.0
    amp: float = 1.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        self.sample_rate = _check_rate(self.sample_rate)
        self.freq = _check_freq("freq", self.freq, self.sample_rate)

    def next(self, frames: int) -> np.ndarray:
        t = self._times(frames)
        # Reduce f*t modulo 1 before scaling by 2π: phase stays exact over hours.
        cycles = np.mod(self.freq * t, 1.0)
        return self.amp * np.sin(TWO_PI * cycles + self.phase)


@dataclass
class FMSine(_Clocked):
    """A sine whose frequency swings between ``lo`` and ``hi`` Hz at ``rate`` Hz.

    ``SinOsc.ar(SinOsc.ar(rate).range(lo, hi))``: the instantaneous frequency is
    ``mid + dev*sin(2π rate t)``, integrated in closed form so the phase is
    exact at any block split.
    """

    lo: float = 220.0
    hi: float = 600.0
    rate: float = 80.0
    amp: float = 1.0

    def __post_init__(self) -> None:
        self.sample_rate = _check_rate(self.sample_rate)
        self.lo = _check_freq("lo", self.lo, self.sample_rate)
        self.hi = _check_freq("hi", self.hi, self.sample_rate)
        self.rate = _check_freq("rate", self.rate, self.sample_rate)
        if self.hi < self.lo:
            raise ValueError(f"hi must be >= lo; got lo={self.lo:g} Hz, hi={self.hi:g} Hz")

    def next(self, frames: int) -> np.ndarray:
        t = self._times(frames)
        mid, dev = 0.5 * (self.hi + self.lo), 0.5 * (self.hi - self.lo)
        # phase(t) = 2π (mid t + dev (1 - cos(2π rate t)) / (2π rate))
        cycles = np.mod(mid * t, 1.0)
        if self.rate > 0.0:
            cycles = cycles + dev * (1.0 - np.cos(TWO_PI * np.mod(self.rate * t, 1.0))) / (TWO_PI * self.rate)
        return self.amp * np.sin(TWO_PI * cycles)


@dataclass
class Saw(_Clocked):
    """A rising sawtooth from -amp to +amp at ``freq`` Hz — ``LFSaw.ar(freq)`` (not band-limited)."""

    freq: float = 180.0
    amp: float = 1.0

    def __post_init__(self) -> None:
        self.sample_rate = _check_rate(self.sample_rate)
        self.freq = _check_freq("freq", self.freq, self.sample_rate)

    def next(self, frames: int) -> np.ndarray:
        t = self._times(frames)
        # LFSaw starts at 0 and rises: phase offset of half a cycle.
        return self.amp * (2.0 * np.mod(self.freq * t + 0.5, 1.0) - 1.0)


@dataclass
class Pulse(_Clocked):
    """A band-limited pulse of duty cycle ``width`` at ``freq`` Hz — ``Pulse.ar(freq)``.

    Band-limited with polyBLEP corrections at both edges, so it does not alias
    like a naive square; output in [-amp, amp] (small overshoot near edges).
    """

    freq: float = 500.0
    width: float = 0.5
    amp: float = 1.0

    def __post_init__(self) -> None:
        self.sample_rate = _check_rate(self.sample_rate)
        self.freq = _check_freq("freq", self.freq, self.sample_rate)
        if not 0.0 < self.width < 1.0:
            raise ValueError(f"width must be in (0, 1); got {self.width:g}")

    def next(self, frames: int) -> np.ndarray:
        t = self._times(frames)
        phase = np.mod(self.freq * t, 1.0)
        dt = self.freq / self.sample_rate
        naive = np.where(phase < self.width, 1.0, -1.0)
        rise = _poly_blep(phase, dt)
        fall = _poly_blep(np.mod(phase - self.width + 1.0, 1.0), dt)
        return self.amp * (naive + rise - fall)


def _poly_blep(phase: np.ndarray, dt: float) -> np.ndarray:
    """Correction of a unit step (from -1 to +1) at phase 0, two samples wide."""
    out = np.zeros_like(phase)
    if dt <= 0.0:
        return out
    before = phase > 1.0 - dt
    after = phase < dt
    x = phase[after] / dt
    out[after] = -(x * x - 2.0 * x + 1.0)
    y = (phase[before] - 1.0) / dt
    out[before] = y * y + 2.0 * y + 1.0
    return out


@dataclass
class SumOfSines(_Clocked):
    """``amp * Σ sin(2π f_k t)`` — ``SinOsc.ar([...]).sum * amp``."""

    freqs: tuple[float, ...] = (82.41, 155.56, 587.33, 1244.51)
    amp: float = 0.2

    def __post_init__(self) -> None:
        self.sample_rate = _check_rate(self.sample_rate)
        if not self.freqs:
            raise ValueError("freqs must name at least one frequency")
        self.freqs = tuple(_check_freq("freqs", f, self.sample_rate) for f in self.freqs)

    def next(self, frames: int) -> np.ndarray:
        t = self._times(frames)
        out = np.zeros(frames)
        for freq in self.freqs:
            out += np.sin(TWO_PI * np.mod(freq * t, 1.0))
        return self.amp * out


@dataclass
class Noise(_Clocked):
    """Uniform white noise of ``amp``, optionally fading linearly to 0 over ``fade`` seconds.

    ``WhiteNoise.ar(amp) * Line.kr(1, 0, fade)``. Seeded: the same seed gives the
    same noise, whatever the block split.
    """

    amp: float = 0.1
    fade: float | None = None
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.sample_rate = _check_rate(self.sample_rate)
        if self.fade is not None and not (math.isfinite(self.fade) and self.fade > 0):
            raise ValueError(f"fade must be a positive number of seconds; got {self.fade!r}")
        self._rng = np.random.default_rng(self.seed)

    def next(self, frames: int) -> np.ndarray:
        t = self._times(frames)
        out = self.amp * self._rng.uniform(-1.0, 1.0, frames)
        if self.fade is not None:
            out *= np.clip(1.0 - t / self.fade, 0.0, 1.0)
        return out

    def reset(self) -> None:
        super().reset()
        self._rng = np.random.default_rng(self.seed)


@dataclass
class Silence(_Clocked):
    """Zeros: the input of a self-oscillating network."""

    def next(self, frames: int) -> np.ndarray:
        self._times(frames)
        return np.zeros(frames)


SIGNALS: dict[str, type] = {
    "sine": Sine,
    "fm_sine": FMSine,
    "saw": Saw,
    "pulse": Pulse,
    "sines": SumOfSines,
    "noise": Noise,
    "silence": Silence,
}


def midi_to_hz(note: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def make_signal(kind: str, sample_rate: int, **args: object) -> Signal:
    """Build the generator ``kind`` (a key of ``SIGNALS``) with keyword ``args``."""
    try:
        cls = SIGNALS[kind]
    except KeyError:
        raise ValueError(f"unknown signal {kind!r}; known: {', '.join(SIGNALS)}") from None
    try:
        return cls(sample_rate=sample_rate, **args)
    except TypeError as exc:
        raise ValueError(f"bad arguments for signal {kind!r}: {exc}") from None
