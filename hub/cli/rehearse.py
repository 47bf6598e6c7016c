"""``anamnesis rehearse CONFIG --seconds S --out FILE.wav``: render an installation offline.

The options (:func:`add_rehearse_arguments`) and the run (:func:`run_rehearse`:
check the request, render with a progress bar, report) of the command; the
rendering itself is :mod:`anamnesis.hub.clock.rehearse`. ``--plot`` draws a
spectrogram per speaker (and per ear of the preview), read back from the
files (:func:`spectrogram_rows`, levels in dBFS on a log frequency axis from
:data:`PLOT_LOW_HZ` to :data:`PLOT_HIGH_HZ` Hz), to a PNG written under a
temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anamnesis.agents.render import realtime_text
from anamnesis.hub.clock.crew import MAX_THREADS, Crew
from anamnesis.hub.clock.rehearse import check_request, partial_path, rehearse

# ---------------------------------------------------------------------------
# The spectrogram plot
# ---------------------------------------------------------------------------

#: ``--threads``' default is the cores available, at most this many (two already take
#: most of what the lockstep's GIL-held Python leaves to share: bench/bench_rehearse.py).
DEFAULT_THREADS_MAX = 4
#: Most columns of a spectrogram (time slices), whatever the length.
PLOT_COLUMNS = 1200
#: Frequency range shown (Hz, log scale; the top is capped at half the sample rate) and
#: the number of log-spaced rows it is drawn with.
PLOT_LOW_HZ = 20.0
PLOT_HIGH_HZ = 20000.0
PLOT_BANDS = 240


def spectrogram_rows(path: Path, nfft: int = 8192, columns: int = PLOT_COLUMNS,
                     bands: int = PLOT_BANDS) -> tuple[np.ndarray, np.ndarray, float]:
    """Levels of a WAV file on a log frequency axis, read slice by slice (bounded memory).

    Returns ``(levels, edges, seconds)``: levels (channels, bands, slices) in dBFS (a
    full-scale sine at 0 dB; each band the loudest FFT bin in it, or interpolated
    where a band is narrower than a bin), band edges (bands + 1,) Hz from
    :data:`PLOT_LOW_HZ` to :data:`PLOT_HIGH_HZ` (or half the rate), and the length (s).
    """
    import soundfile

    with soundfile.SoundFile(str(path)) as f:
        sr, total, ch = f.samplerate, f.frames, f.channels
        nfft = int(min(nfft, max(16, 1 << int(math.log2(max(total, 16))))))
        slices = max(1, min(columns, (total - nfft) // (nfft // 8) + 1)) if total > nfft else 1
        hop = (total - nfft) / (slices - 1) if slices > 1 else 0.0
        window = np.hanning(nfft)
        norm = window.sum() / 2.0
        edges = np.geomspace(PLOT_LOW_HZ, min(PLOT_HIGH_HZ, sr / 2), bands + 1)
        bin_hz = sr / nfft
        # Band b holds the FFT bins [first[b], first[b + 1]).
        first = np.minimum(np.ceil(edges / bin_hz).astype(int), nfft // 2 + 1)
        wide = first[1:] > first[:-1]
        centre = np.sqrt(edges[:-1] * edges[1:]) / bin_hz
        c0 = np.minimum(np.floor(centre).astype(int), nfft // 2 - 1)
        frac = centre - c0
        starts = np.minimum(first[:-1], nfft // 2)
        levels = np.full((ch, bands, slices), -200.0, dtype=np.float32)
        for j in range(slices):
            f.seek(round(j * hop))
            seg = f.read(nfft, dtype="float64", always_2d=True)
            if seg.shape[0] < nfft:
                seg = np.vstack([seg, np.zeros((nfft - seg.shape[0], ch))])
            mag = np.abs(np.fft.rfft(seg * window[:, None], axis=0)) / norm   # (bins, ch)
            band = mag[c0] * (1.0 - frac[:, None]) + mag[c0 + 1] * frac[:, None]
            loudest = np.maximum.reduceat(mag[:first[-1]], starts, axis=0)
            band[wide] = loudest[wide]
            levels[:, :, j] = (20.0 * np.log10(np.maximum(band, 1e-10))).T
    return levels, edges, total / sr


def plot_rehearsal(path: Path, out: Path, labels: Sequence[str], preview: Path | None = None,
                   title: str = "") -> None:
    """One spectrogram row per speaker of ``out`` (labelled ``labels``) and per ear of
    ``preview``, on a shared time axis and a log frequency axis (agents.render's style:
    magma, dBFS); a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels, edges, seconds = spectrogram_rows(out)
    rows: list[tuple[str, np.ndarray]] = list(zip(labels, levels, strict=False))
    if preview is not None:
        ears, _, _ = spectrogram_rows(preview)
        rows += [("left ear", ears[0]), ("right ear", ears[1])]
    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 0.95 * len(rows) + 1.2), sharex=True,
                             squeeze=False)
    lo, hi = math.log10(edges[0]), math.log10(edges[-1])
    ticks = [f for f in (20, 100, 1000, 10000) if edges[0] <= f <= edges[-1]]
    image = None
    for ax, (label, level) in zip(axes[:, 0], rows, strict=False):
        image = ax.imshow(level, aspect="auto", origin="lower", cmap="magma", vmin=-120, vmax=0,
                          extent=(0.0, seconds, lo, hi), interpolation="nearest")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([math.log10(t) for t in ticks])
        ax.set_yticklabels([f"{t / 1000:g}k" if t >= 1000 else f"{t}" for t in ticks], fontsize=6)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        axes[0, 0].set_title(title + "  (frequency in Hz, log scale)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.93, 1))
    if image is not None:
        cax = fig.add_axes((0.94, 0.15, 0.012, 0.7))
        fig.colorbar(image, cax=cax, label="dBFS")
    fig.savefig(str(path), dpi=100, format="png")
    plt.close(fig)


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def add_rehearse_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``anamnesis rehearse``."""
    parser.add_argument("config", type=Path, help="installation config (TOML), e.g. "
                                                  "deploy/octophonic.toml")
    parser.add_argument("--seconds", type=float, required=True, help="length to render (s)")
    parser.add_argument("--out", type=Path, required=True,
                        help="WAV to write: one float channel per speaker, in config order")
    parser.add_argument("--preview", type=Path,
                        help="also write the listener's stereo preview (needs a [room])")
    parser.add_argument("--seed", type=int, default=0,
                        help="performance seed: offsets noise sources, agents' seeds and the "
                             "mics' noise (default 0: what the live hub plays)")
    parser.add_argument("--plot", type=Path, help="also draw a spectrogram per speaker to this PNG")
    parser.add_argument("--cache-dir", type=Path,
                        help="where room responses are cached (default "
                             "$XDG_CACHE_HOME/anamnesis/rooms)")
    parser.add_argument("--no-bank", action="store_true",
                        help="run every agent through its own engine (the same samples; "
                             "a reference for benchmarks)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the agents and the room (the same bytes for any "
                             f"number; default: the cores this process may use, at most "
                             f"{DEFAULT_THREADS_MAX})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def default_threads() -> int:
    """The cores this process may use, at most :data:`DEFAULT_THREADS_MAX`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(DEFAULT_THREADS_MAX, cores))


def _fail(message: str) -> int:
    print(f"anamnesis rehearse: error: {message}", file=sys.stderr)
    return 2


def run_rehearse(args: argparse.Namespace) -> int:
    """Carry out ``anamnesis rehearse``; returns the exit status (2 for bad input)."""
    from anamnesis.hub.installation.check import load_config
    from anamnesis.hub.installation.config import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _fail(str(exc))
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {args.config}: {exc}")
    try:
        frames = check_request(config, args.seconds, args.out, args.preview, args.plot, args.seed)
    except ValueError as exc:
        return _fail(str(exc))
    threads = default_threads() if args.threads is None else args.threads
    try:
        Crew.check_threads(threads)
    except ValueError:
        return _fail(f"--threads must be 1..{MAX_THREADS}; got {threads}")

    from tqdm import tqdm

    name = config.installation.name
    bar = tqdm(total=frames, unit="sample", unit_scale=True, desc=name, file=sys.stderr,
               leave=False, disable=args.quiet or not sys.stderr.isatty())
    try:
        result = rehearse(config, args.seconds, args.out, preview=args.preview, seed=args.seed,
                          banks=not args.no_bank, cache_dir=args.cache_dir, progress=bar.update,
                          threads=threads)
    except ValueError as exc:
        bar.close()
        return _fail(str(exc))
    except KeyboardInterrupt:
        bar.close()
        print("anamnesis rehearse: interrupted; nothing written", file=sys.stderr)
        return 130
    except OSError as exc:
        bar.close()
        print(f"anamnesis rehearse: error: {exc}", file=sys.stderr)
        return 1
    bar.close()
    if args.plot is not None:
        partial = partial_path(args.plot)
        try:
            plot_rehearsal(partial, result.out, config.agent_ids, result.preview,
                           title=f"{name}: {result.seconds:g} s, seed {args.seed}")
            os.replace(partial, args.plot)
        finally:
            partial.unlink(missing_ok=True)
    files = ", ".join(str(p) for p in (result.out, result.preview, args.plot) if p is not None)
    blowups = sum(s.get("blowups", 0.0) for s in result.agents.values())
    errors = sum(s.get("errors", 0.0) for s in result.agents.values())
    extra = (f"; {blowups:.0f} blow-up(s) recovered" if blowups else "") + \
            (f"; {errors:.0f} failed block(s) played as silence" if errors else "")
    print(f"{name}: {result.seconds:g} s of {len(config.agents)} speakers rendered in "
          f"{result.wall_s:.2f} s ({realtime_text(result.realtime_factor)} real time) -> "
          f"{files}{extra}")
    return 0


__all__ = ["DEFAULT_THREADS_MAX", "add_rehearse_arguments", "default_threads", "plot_rehearsal",
           "run_rehearse", "spectrogram_rows"]
