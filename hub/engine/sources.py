"""The routing graph's sources: generators of sound added to agents' inputs.

A **source** is a generator (noise, sine, a sound file, any of
``agents.signals``) shaped by an envelope, scaled by a gain and added to the
inputs of its target agents. Its signal starts with the envelope's ``start``
(a file plays from its beginning then); ``every`` restarts the envelope only
(noise stays fresh, a looped file runs on);
:meth:`~anamnesis.hub.engine.graph.RoutingGraph.trigger_source` restarts both.
Generators allocate small temporaries, so the graph asks them for
:data:`~anamnesis.hub.engine.graph.SOURCE_CHUNK` frames at a time (once per 16
blocks of 256), never per block.

A generator is a :class:`Signal` (``next(frames)``, ``reset()``):
:func:`make_source_signal` builds one from a config's ``[[source]]`` kind and
args — a sound file (:class:`FileSignal`, read into memory once) or any
generator of ``agents.signals``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anamnesis.hub.installation.check import check_sound_file


class Signal(Protocol):
    """A source generator: ``next(frames)`` -> (frames,) float64, ``reset()`` to time 0."""

    def next(self, frames: int) -> np.ndarray: ...
    def reset(self) -> None: ...


class FileSignal:
    """A sound file as a signal: mono (one channel, or the mean of all), played
    once (then silence) or looped. The whole file is read into memory here, at
    construction; ``next`` only slices."""

    def __init__(self, path: str | Path, sample_rate: int, *, channel: int | None = None,
                 loop: bool = False) -> None:
        import soundfile

        data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
        if rate != sample_rate:
            raise ValueError(f"sound file {path} is at {rate} Hz, not {sample_rate} Hz")
        if channel is not None and not 0 <= channel < data.shape[1]:
            raise ValueError(f"sound file {path} has no channel {channel + 1}")
        mono = data[:, channel] if channel is not None else data.mean(axis=1)
        self.data = np.ascontiguousarray(np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0))
        self.loop = bool(loop)
        self.position = 0

    def next(self, frames: int) -> np.ndarray:
        out = np.zeros(frames)
        n = len(self.data)
        done = 0
        while done < frames and n:
            if self.position >= n:
                if not self.loop:
                    break
                self.position = 0
            take = min(frames - done, n - self.position)
            out[done:done + take] = self.data[self.position:self.position + take]
            self.position += take
            done += take
        return out

    def reset(self) -> None:
        self.position = 0


def make_source_signal(kind: str, args: Mapping[str, Any], sample_rate: int, *,
                       base_dir: str | Path = ".", seed: int = 0) -> Signal:
    """Build a source generator: ``"file"`` (args path, loop, channel) or any kind of
    ``agents.signals`` with its arguments. ``seed`` (a rehearsal's seed) offsets
    a noise source's own seed, so a new seed is a new performance."""
    plain = {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}
    if kind == "file":
        path, channel, loop = check_sound_file(plain, sample_rate, Path(base_dir))
        return FileSignal(path, sample_rate, channel=channel, loop=loop)
    from anamnesis.agents.signals import make_signal

    if kind == "noise":
        plain["seed"] = int(plain.get("seed", 0)) + 1000 * int(seed)
    if kind == "sines" and "freqs" in plain:
        plain["freqs"] = tuple(plain["freqs"])
    return make_signal(kind, sample_rate, **plain)


__all__ = ["FileSignal", "make_source_signal"]
