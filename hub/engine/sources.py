"""The routing graph's sources: generators of sound added to agents' inputs.

A **source** is a generator (noise, sine, a sound file, any of
``agents.signals``) shaped by an envelope, scaled by a gain and added to the
inputs of its target agents. Its signal starts with the envelope's ``start``
(a file plays from its beginning then); ``every`` restarts the envelope only
(noise stays fresh, a looped file runs on);
:meth:`~anamnesis.hub.engine.graph.RoutingGraph.trigger_source` restarts both.
Generators allocate small temporaries, so the graph asks them for
:data:`SOURCE_CHUNK` frames at a time (once per 16
blocks of 256), never per block.

A generator is a :class:`Signal` (``next(frames)``, ``reset()``):
:func:`make_source_signal` builds one from a config's ``[[source]]`` kind and
args — a sound file (:class:`FileSignal`, read into memory once) or any
generator of ``agents.signals``.

:class:`SourceBank` keeps a graph's sources: their slots in the state arrays the
routing kernel reads (allocated once), their checks, and the rendering of each
generator ahead of the kernel. The graph owns one and passes its arrays on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from anamnesis.hub.engine import graph_kernel as K
from anamnesis.hub.installation.config import Envelope
from anamnesis.hub.installation.edges import is_finite_number
from anamnesis.hub.installation.sound_file import check_sound_file

#: Frames a source generator renders per call (its temporaries are allocated once per chunk).
SOURCE_CHUNK = 4096


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


def fade_step(fade_s: float, sample_rate: int) -> float:
    """The per-sample step of a linear fade lasting ``fade_s`` s (1.0: at once).
    ValueError outside [0, 60] s."""
    if not (is_finite_number(fade_s) and 0.0 <= fade_s <= 60.0):
        raise ValueError(f"fade_s must be in [0, 60] s; got {fade_s!r}")
    return 1.0 if fade_s == 0 else 1.0 / (fade_s * sample_rate)


@dataclass
class _SourceSlot:
    slot: int
    signal: Signal
    targets: dict[str, float]
    gain: float
    envelope: Envelope


class SourceBank:
    """The sources of one routing graph, in state arrays its kernel reads.

    ``columns`` is the graph's agent id -> column map (shared: it grows as the
    graph adds agents); ``max_agents`` the graph's column capacity;
    ``max_sources`` slots; ``max_block`` the most frames per tick; ``sample_rate``
    Hz. The arrays (``si``, ``sp``, ``ss``, ``buf``, ``weights``, ``smoothed``)
    are allocated here, once; ``count`` is the kernel's loop bound (one past the
    highest used slot). Control calls and :meth:`render` run on the graph's thread.
    """

    def __init__(self, columns: Mapping[str, int], max_agents: int, max_sources: int,
                 max_block: int, sample_rate: int) -> None:
        self._columns = columns
        self.sample_rate = int(sample_rate)
        ring = K._next_pow2(SOURCE_CHUNK + max_block)
        self.si = np.zeros((max_sources, 4), dtype=np.int64)
        self.sp = np.zeros((max_sources, K._N_SP))
        self.ss = np.zeros((max_sources, 2))
        self.buf = np.zeros((max_sources, ring))
        self.weights = np.zeros((max_sources, max_agents))
        self.smoothed = np.zeros((max_sources, max_agents))
        self.count = 0
        self._live: dict[str, _SourceSlot] = {}
        self._draining: set[int] = set()

    @property
    def ids(self) -> tuple[str, ...]:
        """The live sources' ids."""
        return tuple(self._live)

    def clear_column(self, column: int) -> None:
        """Forget every weight on ``column`` (a new agent there starts unaimed at)."""
        self.weights[:, column] = 0.0
        self.smoothed[:, column] = 0.0

    def add(self, source_id: str, signal: Signal, targets: Mapping[str, float] | Iterable[str],
            *, gain: float = 1.0, envelope: Envelope | None = None, fade_s: float = 0.0) -> None:
        """Add a source: ``signal`` (see :func:`make_source_signal`) shaped by ``envelope``
        (seconds from now), times ``gain``, added to each target agent's input (weights
        linear; a list of ids means weight 1). One ValueError lists every problem."""
        env = envelope or Envelope()
        weights = self._check(source_id, targets, gain, env, new=True)
        if not (callable(getattr(signal, "next", None)) and callable(getattr(signal, "reset", None))):
            raise ValueError("signal must have next(frames) and reset()")
        step = fade_step(fade_s, self.sample_rate)
        self.reclaim()
        free = np.flatnonzero(self.si[:, K._SI_USED] == 0)
        if not free.size:
            raise ValueError(f"the routing graph holds at most {len(self.si)} sources")
        slot = int(free[0])
        sr = self.sample_rate
        self.si[slot] = (1, 0, 0, 0)
        self.sp[slot] = (gain, 1.0, step, env.start * sr, env.attack * sr,
                         -1.0 if env.hold is None else env.hold * sr, env.release * sr,
                         0.0 if env.every is None else env.every * sr)
        self.ss[slot] = (gain, 1.0 if fade_s == 0 else 0.0)
        self._aim(slot, weights)
        self.smoothed[slot] = self.weights[slot]
        signal.reset()
        self._live[source_id] = _SourceSlot(slot, signal, weights, float(gain), env)
        self.count = max(self.count, slot + 1)

    def set(self, source_id: str, *, gain: float | None = None,
            targets: Mapping[str, float] | Iterable[str] | None = None) -> None:
        """Change a source's gain or targets (smoothed)."""
        entry = self._entry(source_id)
        weights = self._check(source_id, entry.targets if targets is None else targets,
                              entry.gain if gain is None else gain, entry.envelope, new=False)
        if gain is not None:
            entry.gain = float(gain)
            self.sp[entry.slot, K._SP_GAIN] = entry.gain
        if targets is not None:
            entry.targets = weights
            self._aim(entry.slot, weights)

    def trigger(self, source_id: str) -> None:
        """Start a source's envelope and signal again from the beginning, now."""
        entry = self._entry(source_id)
        entry.signal.reset()
        self.si[entry.slot, K._SI_CLOCK] = int(self.sp[entry.slot, K._SP_START])
        self.si[entry.slot, K._SI_READ] = 0
        self.si[entry.slot, K._SI_WRITTEN] = 0

    def remove(self, source_id: str, fade_s: float) -> None:
        """Fade a source out over ``fade_s`` s and forget it; its slot is reused once silent."""
        step = fade_step(fade_s, self.sample_rate)
        entry = self._entry(source_id)
        del self._live[source_id]
        self.sp[entry.slot, K._SP_ENSTEP] = step
        self.sp[entry.slot, K._SP_EN] = 0.0
        self._draining.add(entry.slot)
        self.reclaim()

    def faded(self) -> bool:
        """True when a removed source has faded to silence (its slot can be freed)."""
        return any(self.ss[slot, K._SS_EN] == 0.0 for slot in self._draining)

    def reclaim(self) -> None:
        """Free the slots of removed sources that have faded to silence."""
        for slot in [s for s in self._draining if self.ss[s, K._SS_EN] == 0.0]:
            self._draining.discard(slot)
            self.si[slot, K._SI_USED] = 0
        used = np.flatnonzero(self.si[:, K._SI_USED])
        self.count = int(used[-1]) + 1 if used.size else 0

    def render(self, frames: int) -> None:
        """Have every source's ring hold at least ``frames`` unread samples: generators
        are asked for :data:`SOURCE_CHUNK` frames at a time, when one runs low."""
        ring = self.buf.shape[1]
        for entry in self._live.values():
            q = entry.slot
            while self.si[q, K._SI_WRITTEN] - self.si[q, K._SI_READ] < frames:
                chunk = np.asarray(entry.signal.next(SOURCE_CHUNK), dtype=np.float64)
                if chunk.shape != (SOURCE_CHUNK,):
                    raise ValueError(f"source signal gave shape {chunk.shape}, not ({SOURCE_CHUNK},)")
                start = int(self.si[q, K._SI_WRITTEN]) % ring
                first = min(SOURCE_CHUNK, ring - start)
                self.buf[q, start:start + first] = chunk[:first]
                self.buf[q, :SOURCE_CHUNK - first] = chunk[first:]
                self.si[q, K._SI_WRITTEN] += SOURCE_CHUNK

    def reset(self) -> None:
        """Every source back to its start: signal, envelope, gain and fade, weights settled."""
        self.reclaim()
        for entry in self._live.values():
            q = entry.slot
            entry.signal.reset()
            self.si[q, K._SI_CLOCK:] = 0
            self.ss[q] = (self.sp[q, K._SP_GAIN], self.sp[q, K._SP_EN])
            self.smoothed[q] = self.weights[q]

    def __len__(self) -> int:
        return len(self._live)

    def _aim(self, slot: int, weights: Mapping[str, float]) -> None:
        self.weights[slot] = 0.0
        for agent, w in weights.items():
            self.weights[slot, self._columns[agent]] = w

    def _entry(self, source_id: str) -> _SourceSlot:
        entry = self._live.get(source_id)
        if entry is None:
            raise ValueError(f"unknown source {source_id!r}")
        return entry

    def _check(self, source_id: str, targets: Any, gain: Any, env: Envelope,
               *, new: bool) -> dict[str, float]:
        problems = []
        name = f"source {source_id!r}"
        if not isinstance(source_id, str) or not source_id:
            problems.append(f"source id must be a non-empty string; got {source_id!r}")
        elif new and source_id in self._live:
            problems.append(f"{name} exists already")
        if not is_finite_number(gain):
            problems.append(f"{name}: gain must be a finite number; got {gain!r}")
        weights: dict[str, float] = {}
        items = targets.items() if isinstance(targets, Mapping) else ((t, 1.0) for t in targets)
        for agent, w in items:
            if agent not in self._columns:
                problems.append(f"{name}: unknown target agent {agent!r}")
            elif not is_finite_number(w):
                problems.append(f"{name}: weight of {agent!r} must be finite; got {w!r}")
            else:
                weights[agent] = float(w)
        if not isinstance(env, Envelope):
            problems.append(f"{name}: envelope must be an Envelope")
        else:
            for field in ("start", "attack", "hold", "release", "every"):
                v = getattr(env, field)
                if v is None and field in ("hold", "every"):
                    continue
                if not (is_finite_number(v) and v >= 0):
                    problems.append(f"{name}: envelope {field} must be >= 0 s; got {v!r}")
            if env.every is not None and is_finite_number(env.every) and env.every <= 0:
                problems.append(f"{name}: envelope every must be > 0 s")
        if problems:
            raise ValueError("\n  ".join([f"{len(problems)} problem(s) with a source:", *problems]))
        return weights


__all__ = ["SOURCE_CHUNK", "FileSignal", "SourceBank", "fade_step", "make_source_signal"]
