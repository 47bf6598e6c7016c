"""Offline rendering of one preset: ``anamnesis render PRESET ...``.

The renderer drives a model exactly as live playback does — block by block
through ``Model.process`` — but as fast as the machine allows. Blocks are split
at every :class:`~anamnesis.agents.presets.At` event so a timed change lands on its exact
sample; per-sample modulations (:class:`~anamnesis.agents.presets.Ramp`,
:class:`~anamnesis.agents.presets.FollowInput`) are computed per block and handed to the
model as audio-rate arrays. The same preset, seed and sample rate always give
the same samples.

The written file has one channel per input followed by the model's output,
like the seed's ``[in, out]`` scopes, as 32-bit float WAV (nothing is clipped
or lost; the raw model output is written, without the agent's safety chain).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anamnesis.agents.models import create_model
from anamnesis.agents.models.base import Model
from anamnesis.agents.presets import (
    At,
    FollowInput,
    Preset,
    Ramp,
    all_presets,
    get_preset,
)
from anamnesis.agents.recipe import preset_signals

RENDER_BLOCK = 4096
"""Frames per ``process`` call when rendering (the models' default ``max_block``)."""


@dataclass
class Rendering:
    """What a render produced: inputs (frames, n_inputs), output (frames,), the model's stats."""

    preset: Preset
    sample_rate: int
    inputs: np.ndarray
    output: np.ndarray
    stats: dict[str, float]
    model: Model


def realtime_text(factor: float) -> str:
    """A real-time factor as people read it: two significant digits below 10 ("0.57x",
    "3.4x"), whole numbers above ("12x", "110x")."""
    if factor >= 9.95:
        return f"{factor:.0f}x"
    # from 0.995 two significant digits are "1.0", not the "1" of the :g format
    return f"{factor:.1f}x" if factor >= 0.995 else f"{factor:.2g}x"


def _build_inputs(preset: Preset, sample_rate: int, seed: int) -> list:
    return [signal for _, signal in preset_signals(preset, sample_rate, seed=seed)]


def _modulation_block(mod: Ramp | FollowInput, start: int, frames: int,
                      sample_rate: int, inputs: np.ndarray) -> np.ndarray:
    if isinstance(mod, FollowInput):
        x = np.clip(inputs[:, mod.channel], -1.0, 1.0)
        return mod.lo + (x + 1.0) * 0.5 * (mod.hi - mod.lo)
    t = (start + np.arange(frames)) / sample_rate
    if mod.t1 > mod.t0:
        frac = np.clip((t - mod.t0) / (mod.t1 - mod.t0), 0.0, 1.0)
    else:
        frac = (t >= mod.t0).astype(np.float64)
    if mod.curve == "exp":
        return mod.start * (mod.end / mod.start) ** frac
    return mod.start + (mod.end - mod.start) * frac


def _check_preset(preset: Preset, model: Model) -> None:
    specs = model.param_specs()
    names = [m.param for m in preset.modulations] + [e.param for e in preset.events]
    for name in names:
        if name not in specs:
            raise ValueError(f"preset {preset.name!r} names unknown parameter {name!r}")
    for mod in preset.modulations:
        if isinstance(mod, FollowInput) and not 0 <= mod.channel < len(preset.inputs):
            raise ValueError(f"preset {preset.name!r}: FollowInput channel {mod.channel} "
                             f"out of range for {len(preset.inputs)} inputs")
        if isinstance(mod, Ramp) and mod.curve == "exp" and (mod.start <= 0 or mod.end <= 0):
            raise ValueError(f"preset {preset.name!r}: an exp ramp needs start and end > 0")


def check_length(seconds: float, sample_rate: int) -> int:
    """Validate a render length (s) and rate (Hz); return the length in frames."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number; got {seconds!r}")
    if not 8000 <= sample_rate <= 192000:
        raise ValueError(f"sample rate must be in [8000, 192000] Hz; got {sample_rate}")
    return int(round(seconds * sample_rate))


def render_preset(preset: Preset, seconds: float, *, seed: int = 0, sample_rate: int = 48000,
                  progress: Callable[[int], None] | None = None) -> Rendering:
    """Render ``seconds`` of ``preset`` with ``seed`` at ``sample_rate`` Hz.

    ``progress(frames)`` is called after every block with the frames just done.
    Raises ``ValueError`` for a bad length, rate or preset.
    """
    total = check_length(seconds, sample_rate)
    model = create_model(preset.model, seed=seed, sample_rate=sample_rate, **preset.model_args)
    for name, value in preset.params.items():
        model.set_param(name, value)
    _check_preset(preset, model)
    specs = model.param_specs()
    signals = _build_inputs(preset, sample_rate, seed)
    n_in = len(signals)

    events = sorted(preset.events, key=lambda e: e.time)
    event_frames = [int(round(e.time * sample_rate)) for e in events]
    inputs = np.empty((total, n_in))
    output = np.empty(total)
    pos, next_event = 0, 0
    while pos < total:
        while next_event < len(events) and event_frames[next_event] <= pos:
            _apply(model, events[next_event])
            next_event += 1
        end = min(total, pos + RENDER_BLOCK)
        if next_event < len(events):
            end = min(end, event_frames[next_event])
        frames = end - pos
        block_in = inputs[pos:end]
        for ch, signal in enumerate(signals):
            block_in[:, ch] = signal.next(frames)
        mod: dict[str, np.ndarray] = {}
        for m in preset.modulations:
            values = _modulation_block(m, pos, frames, sample_rate, block_in)
            if specs[m.param].per_sample:
                mod[m.param] = values
            else:  # a block-rate parameter follows the modulation at block start
                model.set_param(m.param, float(values[0]))
        x = block_in[:, 0] if n_in == 1 else block_in
        model.process(x, mod or None, out=output[pos:end])
        pos = end
        if progress is not None:
            progress(frames)
    return Rendering(preset, sample_rate, inputs, output, dict(model.stats()), model)


def _apply(model: Model, event: At) -> None:
    model.set_param(event.param, event.value)


def write_wav(path: Path, rendering: Rendering) -> None:
    """Write inputs then output as channels of a 32-bit float WAV at the render's rate."""
    import soundfile

    data = np.column_stack([rendering.inputs, rendering.output])
    soundfile.write(str(path), data.astype(np.float32), rendering.sample_rate, subtype="FLOAT")


def plot_rendering(path: Path, rendering: Rendering, window_s: float = 0.120) -> None:
    """Draw the first ``window_s`` seconds of input(s) and output (as the seed's
    figures 1-4) above a spectrogram of the whole output; write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sr = rendering.sample_rate
    n = min(len(rendering.output), max(1, int(window_s * sr)))
    t_ms = np.arange(n) / sr * 1000.0
    fig, (ax_wave, ax_spec) = plt.subplots(2, 1, figsize=(10, 7), height_ratios=(1, 1.4))
    for ch in range(rendering.inputs.shape[1]):
        ax_wave.plot(t_ms, rendering.inputs[:n, ch], lw=0.8, alpha=0.7, label=f"input {ch + 1}")
    ax_wave.plot(t_ms, rendering.output[:n], lw=1.0, color="black", label="output")
    ax_wave.set_xlabel("time (ms)")
    ax_wave.set_ylabel("amplitude")
    ax_wave.set_title(f"{rendering.preset.name}: {rendering.preset.description}", fontsize=9)
    ax_wave.legend(loc="upper right", fontsize=8)
    nfft = 2048 if len(rendering.output) >= 2048 else max(16, 2 ** int(np.log2(len(rendering.output))))
    signal = rendering.output if np.any(rendering.output) else rendering.output + 1e-12
    ax_spec.specgram(signal, NFFT=nfft, Fs=sr, noverlap=nfft // 2, cmap="magma",
                     vmin=-140, scale="dB")
    ax_spec.set_ylim(0, min(sr / 2, 8000))
    ax_spec.set_xlabel("time (s)")
    ax_spec.set_ylabel("frequency (Hz)")
    ax_spec.set_title("output spectrogram", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
    plt.close(fig)


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis render``."""
    parser.add_argument("preset", nargs="?", help="preset name (see --list)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    parser.add_argument("--seconds", type=float, default=None,
                        help="length in seconds (default: the preset's own length)")
    parser.add_argument("--out", type=Path, help="output WAV: the inputs, then the output")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument("--plot", type=Path, help="also draw waveforms and a spectrogram to this PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"anamnesis render: error: {message}", file=sys.stderr)
    return 2


def run_render(args: argparse.Namespace) -> int:
    """Carry out ``anamnesis render``; returns the exit status (2 for bad input)."""
    if args.list:
        for name, preset in sorted(all_presets().items()):
            print(f"{name:20s} {preset.model:11s} {preset.seconds:6.1f} s  {preset.description}")
        return 0
    if not args.preset:
        return _fail("name a preset (or --list)")
    if args.out is None and args.plot is None:
        return _fail("give --out FILE.wav and/or --plot FILE.png")
    try:
        preset = get_preset(args.preset)
    except ValueError as exc:
        return _fail(str(exc))
    seconds = preset.seconds if args.seconds is None else args.seconds
    for path in (args.out, args.plot):
        if path is not None and not path.parent.is_dir():
            return _fail(f"folder {path.parent} does not exist")

    try:
        total = check_length(seconds, args.sample_rate)
    except ValueError as exc:
        return _fail(str(exc))

    import time

    from tqdm import tqdm

    bar = tqdm(total=total, unit="sample", unit_scale=True, desc=preset.name,
               disable=args.quiet, file=sys.stderr, leave=False)
    started = time.perf_counter()
    try:
        rendering = render_preset(preset, seconds, seed=args.seed, sample_rate=args.sample_rate,
                                  progress=bar.update)
    except ValueError as exc:
        bar.close()
        return _fail(str(exc))
    bar.close()
    elapsed = time.perf_counter() - started
    if args.out is not None:
        write_wav(args.out, rendering)
    if args.plot is not None:
        plot_rendering(args.plot, rendering)
    stats = ", ".join(f"{k} {v:g}" for k, v in rendering.stats.items()
                      if isinstance(v, (int, float)))
    print(f"{preset.name}: {seconds:g} s in {elapsed:.2f} s "
          f"({realtime_text(seconds / max(elapsed, 1e-9))} real time); {stats}")
    for path in (args.out, args.plot):
        if path is not None:
            print(f"wrote {path}")
    return 0
