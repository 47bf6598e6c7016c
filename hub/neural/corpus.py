"""A training corpus the project makes: synth patches playing scales (seed 002's CANNe
was trained on "5-octave scales on almost every patch of a MicroKORG").

:func:`write_corpus` renders :data:`PATCHES` (saw, square, FM, filtered noise) in
:data:`VARIANTS` timbres each, every file a scale of :data:`OCTAVES` octaves up and down
from a root, each note with an ADSR envelope, at a given sample rate, as mono 16-bit
WAV files named ``<patch>-<variant>-<root>.wav`` (the patch first, so a file's patch is
its name's first word). Deterministic for a seed. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The synth patches, in file-name order.
PATCHES = ("saw", "square", "fm", "noise")
#: Timbre variants per patch: (name, brightness 0..1).
VARIANTS = (("dark", 0.25), ("bright", 0.85))
#: Scale roots, MIDI notes.
ROOTS = (36, 43, 48)
#: The major scale's steps (semitones) within one octave.
MAJOR = (0, 2, 4, 5, 7, 9, 11)
OCTAVES = 2
#: Seconds per note (attack + decay + sustain + release fit inside it).
NOTE_S = 0.22


@dataclass(frozen=True)
class Envelope:
    """ADSR times (s) and the sustain level (0..1)."""

    attack: float = 0.01
    decay: float = 0.06
    sustain: float = 0.6
    release: float = 0.05

    def render(self, frames: int, sample_rate: int) -> np.ndarray:
        """The envelope over ``frames`` samples (release at the end)."""
        t = np.arange(frames) / sample_rate
        dur = frames / sample_rate
        env = np.full(frames, self.sustain)
        a, d, r = self.attack, self.decay, self.release
        env = np.where(t < a, t / a, env)
        in_decay = (t >= a) & (t < a + d)
        env = np.where(in_decay, 1.0 - (1.0 - self.sustain) * (t - a) / d, env)
        rel_start = dur - r
        env = np.where(t >= rel_start, env * np.clip((dur - t) / r, 0.0, 1.0), env)
        return env


def midi_hz(note: float) -> float:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((note - 69) / 12.0)


def scale_notes(root: int, octaves: int = OCTAVES) -> list[int]:
    """Up ``octaves`` octaves of the major scale from ``root`` and back down (MIDI)."""
    up = [root + 12 * o + s for o in range(octaves) for s in MAJOR] + [root + 12 * octaves]
    return up + up[-2::-1]


def _one_pole(x: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """A one-pole low-pass at ``cutoff_hz`` (a Python loop: notes are short, a few ms each)."""
    a = math.exp(-2.0 * math.pi * cutoff_hz / sample_rate)
    y = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x):
        acc = (1.0 - a) * v + a * acc
        y[i] = acc
    return y


def _saw(phase: np.ndarray, bright: float) -> np.ndarray:
    harmonics = int(4 + 28 * bright)
    return sum(np.sin(k * phase) / k for k in range(1, harmonics + 1)) * (2 / math.pi)


def _square(phase: np.ndarray, bright: float) -> np.ndarray:
    harmonics = int(4 + 28 * bright)
    return sum(np.sin(k * phase) / k for k in range(1, harmonics + 1, 2)) * (4 / math.pi)


def _note(patch: str, hz: float, bright: float, frames: int, sample_rate: int,
          rng: np.random.Generator) -> np.ndarray:
    t = np.arange(frames) / sample_rate
    nyquist = sample_rate / 2
    if patch == "noise":
        cutoff = min(nyquist * 0.9, hz * (2 + 10 * bright))
        return _one_pole(rng.standard_normal(frames), cutoff, sample_rate) * 2.0
    phase = 2 * math.pi * hz * t
    if patch == "fm":
        index = 0.5 + 4.0 * bright * np.exp(-t / 0.15)       # a decaying modulation index
        return np.sin(phase + index * np.sin(2.0 * phase))
    # band-limited: keep the harmonics under Nyquist
    bright = min(bright, max(0.0, (nyquist / hz - 4) / 28))
    return (_saw if patch == "saw" else _square)(phase, bright)


def render_scale(patch: str, bright: float, root: int, sample_rate: int, seed: int = 0
                 ) -> np.ndarray:
    """One file's audio: the scale from ``root`` on ``patch``, peak 0.5."""
    if patch not in PATCHES:
        raise ValueError(f"unknown patch {patch!r}; patches: {', '.join(PATCHES)}")
    rng = np.random.default_rng(seed)
    frames = int(NOTE_S * sample_rate)
    env = Envelope().render(frames, sample_rate)
    notes = [_note(patch, midi_hz(n), bright, frames, sample_rate, rng) * env
             for n in scale_notes(root)]
    audio = np.concatenate(notes)
    return 0.5 * audio / max(1e-9, float(np.abs(audio).max()))


def write_corpus(out_dir: str | Path, sample_rate: int = 48000, seed: int = 0,
                 patches: tuple[str, ...] = PATCHES) -> list[Path]:
    """Render the corpus into ``out_dir`` (created); the files written, sorted."""
    import soundfile

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for p_index, patch in enumerate(patches):
        for v_index, (variant, bright) in enumerate(VARIANTS):
            for r_index, root in enumerate(ROOTS):
                file_seed = seed * 1000 + p_index * 100 + v_index * 10 + r_index
                audio = render_scale(patch, bright, root, sample_rate, file_seed)
                path = out / f"{patch}-{variant}-{root}.wav"
                soundfile.write(str(path), audio, sample_rate, subtype="PCM_16")
                written.append(path)
    return sorted(written)


def read_corpus(folder: str | Path, sample_rate: int, *, min_seconds: float = 1.0
                ) -> list[tuple[Path, np.ndarray]]:
    """Every WAV/FLAC/AIFF of ``folder`` (recursively, sorted) as mono float32 at
    ``sample_rate``. ``ValueError`` for a missing or empty folder, a file at another
    rate (resample it: sox in.wav -r RATE out.wav), or less than ``min_seconds`` of
    audio in all."""
    import soundfile

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"corpus {str(root)!r}: no such folder")
    files = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in (".wav", ".flac", ".aif", ".aiff") and p.is_file())
    if not files:
        raise ValueError(f"corpus {root}: no sound files (.wav, .flac, .aiff) in it")
    out = []
    for path in files:
        try:
            audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as exc:
            raise ValueError(f"corpus file {path}: cannot read it ({exc})") from None
        if rate != sample_rate:
            raise ValueError(f"corpus file {path} is at {rate} Hz, the model at {sample_rate} Hz:"
                             f" resample it (sox in.wav -r {sample_rate} out.wav)")
        out.append((path, audio.mean(axis=1)))
    total = sum(a.shape[0] for _, a in out) / sample_rate
    if total < min_seconds:
        raise ValueError(f"corpus {root}: {total:.2f} s of audio; at least {min_seconds:g} s "
                         f"are needed")
    return out


__all__ = ["Envelope", "PATCHES", "ROOTS", "VARIANTS", "midi_hz", "read_corpus",
           "render_scale", "scale_notes", "write_corpus"]
