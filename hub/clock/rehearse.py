"""Offline rehearsal: the loop behind ``anamnesis rehearse CONFIG --seconds S --out FILE.wav``.

Renders a whole installation — every agent, its routes, rings and sources, and
its simulated room — faster than real time, one channel per speaker, plus an
optional stereo preview at the listener (DESIGN "The hub", JOURNEYS 1.5). The
command itself (options, progress bar, ``--plot``'s spectrogram) is
:mod:`anamnesis.hub.cli.rehearse`.

The loop (the live simulated hub's, see :mod:`anamnesis.hub.engine.graph` and :mod:`anamnesis.hub.clock.simulated`)
----------------------------------------------------------------------------------
Per block k, in one process::

    couplings.step(k, read, write)              # [[coupling]]s due at this boundary (weights)
    coupling.process(outputs, mics, ears)       # the room: mics and ears from block k-1's speakers
    graph.tick(outputs, out=inputs, mics=mics)  # block k's inputs (mics=None without a [room])
    every agent: inputs[:, i] -> model -> safety chain -> outputs[:, i]     # block k
    outputs -> FILE.wav (one channel per agent, config order); ears -> the preview

so every edge and every feedback path through the air has at least one block of
latency, as in the live lockstep. The preview written for block k is what the
listener hears of the speakers' block k-1 (the room's own delay comes on top).
With ``threads`` > 1 (``--threads``) the block's work is shared by a crew
(:mod:`anamnesis.hub.clock.crew`): the room's tail levels and the preview run beside
the mics and the graph, and the agents are spread over the threads; the samples are
the same bits for any number of threads.
Block size and sample rate are the config's ``[installation]`` ones: the block is
part of the piece (it is the lockstep's latency), so there is no option to change
it. A ``mode = "deployed"`` config is rehearsed in the same lockstep.

The agents are built as a live agent process builds them (``anamnesis.agents.main``):
the model of ``model``/``preset`` with the preset's and the config's constructor
arguments, the preset's parameters and then the config's (the ones the hub sends
over OSC before the first block — rounded to float32 as OSC carries them), the
preset's input-following modulations, and the same safety chain (ceiling
:data:`CEILING_DB`). So a rehearsal plays what the live simulated hub plays,
except for the live path's L24 quantisation of every block on the RTP link.

Agents of kind ``autoregnn`` with equal constructor arguments and no
input-following modulation are grouped into one
:class:`~anamnesis.agents.models.autoregnn_bank.AutoRegNNBank` (its columns are bit-identical to
single models) when there are at least :data:`BANK_MIN_AGENTS` of them (a smaller
bank is slower than separate models), each with its own
:class:`~anamnesis.agents.dsp.safety.SafetyChain`; every other
agent runs through its own :class:`~anamnesis.agents.dsp.engine.AgentEngine`. Both paths give
the same samples (tested); ``banks=False`` (``--no-bank``) uses engines only.

Seeds (determinism)
-------------------
The same config, seed and machine give bit-identical files. ``--seed S``
(default 0: the live hub's own performance) offsets, by ``1000 * S``, every noise
source's seed (:func:`anamnesis.hub.engine.graph.from_config`) and every agent's seed (the
config's ``seed``, default its index); it is also the room's seed (the mics'
self-noise). A different seed is a different performance of the same piece.

Files
-----
Float32 WAV, written by :class:`anamnesis.hub.clock.wav.FloatWavWriter` (equal
audio gives equal bytes). Blocks are streamed to disk in chunks of about
:data:`CHUNK_FRAMES`, so ten minutes of eight channels never sit in memory. Files
are written under a temporary name beside the target (:func:`partial_path`) and
renamed when complete: an error or an interrupt leaves nothing half-written.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anamnesis.hub.clock.wav import FloatWavWriter

#: The agents' safety-chain ceiling (dBFS): the live agent's default (``--ceiling-db``).
CEILING_DB = -1.0
#: Each agent's seed is the config's plus this many times the rehearsal seed.
SEED_STRIDE = 1000
#: Frames buffered before a write to disk (rounded to whole blocks).
CHUNK_FRAMES = 16384
#: Fewest agents of one shape worth a bank: below it, each runs through its own engine.
#: Measured (bench/bench_rehearse.py, 12 x 8 nets): a bank lane costs 410, 225, 210,
#: 160, 140 ns/sample for banks of 1, 2, 3, 4, 8 agents; a single AutoRegNN 220.
BANK_MIN_AGENTS = 4
#: Parameters of every agent's safety chain rather than its model (dB; 0/1).
SAFETY_PARAMS = ("gain", "mute")
#: Longest rehearsal (s): a day.
MAX_SECONDS = 86400.0


# ---------------------------------------------------------------------------
# Agents: how a live agent builds its model, and the two ways to run them
# ---------------------------------------------------------------------------


def _osc_value(value: Any) -> Any:
    """A parameter value as the agent receives it over OSC: floats as float32."""
    if isinstance(value, float):
        return float(np.float32(value))
    if isinstance(value, (list, tuple)):
        return [_osc_value(v) for v in value]
    return value


def agent_recipe(spec: Any, sample_rate: int, block: int, seed: int = 0
                 ) -> tuple[dict[str, Any], list[tuple[str, Any]], list[Any]]:
    """How ``spec`` (a :class:`anamnesis.hub.installation.config.AgentSpec`) is built live: constructor
    arguments (seed offset by ``SEED_STRIDE * seed``, rate, block), parameter settings
    in the order the agent applies them (the preset's, then the hub's over OSC), and
    the preset's input-following modulations (:class:`anamnesis.agents.dsp.engine.FollowInput`)."""
    from anamnesis.agents.dsp.engine import FollowInput

    kwargs: dict[str, Any] = dict(spec.model_args())
    kwargs.update(seed=int(spec.seed) + SEED_STRIDE * int(seed), sample_rate=sample_rate,
                  max_block=block)
    settings: list[tuple[str, Any]] = []
    follow: list[Any] = []
    if spec.preset is not None:
        from anamnesis.agents import presets

        preset = presets.get_preset(spec.preset)
        settings += list(preset.params.items())
        follow += [FollowInput(m.param, m.lo, m.hi) for m in preset.modulations
                   if isinstance(m, presets.FollowInput)]
    settings += [(name, _osc_value(value)) for name, value in spec.initial_params().items()]
    return kwargs, settings, follow


def build_engine(spec: Any, sample_rate: int, block: int, seed: int = 0) -> Any:
    """One agent's model and safety chain (an :class:`anamnesis.agents.dsp.engine.AgentEngine`), as its
    live process builds them."""
    from anamnesis.agents.dsp.engine import AgentEngine
    from anamnesis.agents.models import create_model

    kwargs, settings, follow = agent_recipe(spec, sample_rate, block, seed)
    model_settings, safety = split_safety(settings)
    model = create_model(spec.model, **kwargs)
    for name, value in model_settings:
        model.set_param(name, value)
    engine = AgentEngine(model, block=block, sample_rate=sample_rate, ceiling_db=CEILING_DB,
                         follow=follow)
    apply_safety(engine.safety, safety)
    return engine


def split_safety(settings: Sequence[tuple[str, Any]]
                 ) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(the model's settings, the safety chain's: ``gain`` dB and ``mute``), in order."""
    model = [(n, v) for n, v in settings if n not in SAFETY_PARAMS]
    return model, [(n, v) for n, v in settings if n in SAFETY_PARAMS]


def apply_safety(chain: Any, settings: Sequence[tuple[str, Any]]) -> None:
    """Set a :class:`~anamnesis.agents.dsp.safety.SafetyChain`'s gain (dB) and mute as the
    live agent's control does for its ``/gain`` and ``/mute``."""
    for name, value in settings:
        if name == "gain":
            chain.set_gain_db(float(value))
        else:
            chain.set_mute(bool(value))


class EngineVoice:
    """One agent through its own :class:`AgentEngine` (any model), column ``column``."""

    def weights(self, column: int) -> np.ndarray:
        """The agent's flat weight vector (between two blocks)."""
        from anamnesis.agents.models.base import flat_weights

        return flat_weights(self.engine.model)

    def set_weights(self, column: int, flat: np.ndarray) -> None:
        """Set the agent's flat weight vector (between two blocks)."""
        from anamnesis.agents.models.base import set_flat_weights

        set_flat_weights(self.engine.model, flat)

    def __init__(self, column: int, engine: Any, inputs: np.ndarray,
                 outputs: np.ndarray) -> None:
        self.columns = (column,)
        self.engine = engine
        self._mic = inputs[:, column]          # views made once: the loop allocates nothing
        self._speaker = outputs[:, column]

    def process(self) -> None:
        """Block k: the agent's input column -> its output column."""
        self.engine.process_block(self._mic, self._speaker)

    def stats(self) -> list[dict[str, float]]:
        """The model's counters (blow-ups ...) and the engine's failed blocks."""
        tele = self.engine.telemetry()
        model_stats = self.engine.model.stats() if hasattr(self.engine.model, "stats") else {}
        return [{**{k: float(v) for k, v in model_stats.items() if _is_num(v)},
                 "errors": tele["errors"]}]


class BankVoice:
    """Several ``autoregnn`` agents of one shape as lanes of an AutoRegNNBank, each with
    its own safety chain; columns ``columns`` of the installation's arrays."""

    def __init__(self, columns: Sequence[int], bank: Any, chains: Sequence[Any],
                 inputs: np.ndarray, outputs: np.ndarray) -> None:
        self.columns = tuple(columns)
        self.bank = bank
        self.chains = list(chains)
        block = inputs.shape[0]
        self._idx = np.asarray(self.columns, dtype=np.intp)
        self._inputs, self._outputs = inputs, outputs
        self._x = np.zeros((block, len(self.columns)))
        self._raw = np.zeros((block, len(self.columns)))
        self._col = np.zeros(block)
        self._safe = np.zeros(block)
        self._raw_cols = [self._raw[:, a] for a in range(len(self.columns))]
        self._out_cols = [outputs[:, c] for c in self.columns]

    def weights(self, column: int) -> np.ndarray:
        """The flat weight vector of the agent in ``column`` (between two blocks)."""
        return self.bank.weights(self.columns.index(column))

    def set_weights(self, column: int, flat: np.ndarray) -> None:
        """Set the flat weight vector of the agent in ``column`` (between two blocks)."""
        self.bank.set_weights(flat, self.columns.index(column))

    def process(self) -> None:
        """Block k of every lane: gather the inputs, one bank call, a safety chain each."""
        np.take(self._inputs, self._idx, axis=1, out=self._x, mode="clip")   # unbuffered
        self.bank.process(self._x, None, out=self._raw)
        col, safe = self._col, self._safe
        for chain, raw, out in zip(self.chains, self._raw_cols, self._out_cols, strict=False):
            np.copyto(col, raw)
            chain.process(col, out=safe)
            np.copyto(out, safe)

    def stats(self) -> list[dict[str, float]]:
        """Per lane: the bank's counters for that agent."""
        out = []
        for a in range(len(self.columns)):
            s = self.bank.stats(a) if hasattr(self.bank, "stats") else {}
            out.append({**{k: float(v) for k, v in s.items() if _is_num(v)}, "errors": 0.0})
        return out


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _bank_key(spec: Any, kwargs: dict[str, Any], follow: list) -> tuple | None:
    """Agents with equal keys can share a bank (their constructor arguments, defaults
    filled in, are equal); None: this agent cannot (another model, or it follows its input)."""
    import inspect

    from anamnesis.agents.models.autoregnn import AutoRegNN

    if spec.model != "autoregnn" or follow:
        return None
    params = inspect.signature(AutoRegNN.__init__).parameters
    args = {n: p.default for n, p in params.items()
            if n not in ("self", "seed") and p.default is not inspect.Parameter.empty}
    args.update((k, v) for k, v in kwargs.items() if k != "seed")
    if set(args) - {"input_size", "hidden_size", "sample_rate", "max_block"}:
        return None    # an argument the bank does not take
    return tuple(sorted(args.items()))


def build_voices(config: Any, inputs: np.ndarray, outputs: np.ndarray, *, seed: int = 0,
                 banks: bool = True) -> list[EngineVoice | BankVoice]:
    """The agents of ``config`` (config order = columns of ``inputs``/``outputs``):
    banks of at least :data:`BANK_MIN_AGENTS` equal ``autoregnn`` agents where possible
    (``banks``), engines otherwise."""
    from anamnesis.agents.dsp.safety import SafetyChain
    from anamnesis.agents.models.autoregnn_bank import AutoRegNNBank

    inst = config.installation
    sr, block = inst.sample_rate, inst.block
    groups: dict[tuple, list[tuple[int, dict[str, Any], list]]] = {}
    voices: list[EngineVoice | BankVoice] = []
    for column, spec in enumerate(config.agents):
        kwargs, settings, follow = agent_recipe(spec, sr, block, seed)
        key = _bank_key(spec, kwargs, follow) if banks else None
        if key is None:
            voices.append(EngineVoice(column, build_engine(spec, sr, block, seed), inputs, outputs))
        else:
            groups.setdefault(key, []).append((column, kwargs, settings))
    for key, members in groups.items():
        if len(members) < BANK_MIN_AGENTS:
            for column, _kw, _settings in members:
                voices.append(EngineVoice(column, build_engine(config.agents[column], sr, block,
                                                               seed), inputs, outputs))
            continue
        bank = AutoRegNNBank(len(members), seeds=[m[1]["seed"] for m in members], **dict(key))
        chains = [SafetyChain(sr, block, CEILING_DB) for _ in members]
        for lane, (_column, _kw, settings) in enumerate(members):
            model_settings, safety = split_safety(settings)
            for name, value in model_settings:
                bank.set_param(name, value, agent=lane)
            apply_safety(chains[lane], safety)
        voices.append(BankVoice([m[0] for m in members], bank, chains, inputs, outputs))
    return voices


# ---------------------------------------------------------------------------
# The installation in lockstep
# ---------------------------------------------------------------------------


class Rehearsal:
    """A whole installation in one process, stepped one block at a time (module docstring).

    ``config`` a :class:`anamnesis.hub.installation.config.Config`; ``seed`` the rehearsal seed; ``banks``
    group equal AutoRegNN agents; ``room`` False ignores the config's ``[room]`` (a
    reference without acoustic coupling); ``listener`` False skips the preview's
    convolution (the speakers are the same); ``cache_dir`` holds room responses.
    After :meth:`step`, :attr:`outputs` (block, n_agents) holds block k of every
    speaker and :attr:`ears` (block, 2) the listener's preview, levelled and limited as
    the live hub's (:class:`anamnesis.hub.engine.coupling.ListenerPreview`; zeros without a room).
    """

    def __init__(self, config: Any, *, seed: int = 0, banks: bool = True, room: bool = True,
                 listener: bool = True, cache_dir: Path | None = None,
                 threads: int = 1) -> None:
        from anamnesis.hub.clock.crew import Crew
        from anamnesis.hub.engine.graph import from_config

        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a whole number >= 0; got {seed!r}")
        Crew.check_threads(threads)         # before any work: a bad number says so at once
        inst = config.installation
        self.config = config
        self.seed = seed
        self.sample_rate = inst.sample_rate
        self.block = inst.block
        self.agent_ids = config.agent_ids
        n = len(self.agent_ids)
        self.graph = from_config(config, seed=seed, latency=inst.block)
        self.coupling: Any = None
        if room and config.room is not None:
            from anamnesis.hub.engine.coupling import RoomCoupling, default_cache_dir

            self.coupling = RoomCoupling(config.room, config.agents, sample_rate=inst.sample_rate,
                                         block=inst.block, seed=seed, listener=listener,
                                         cache_dir=default_cache_dir() if cache_dir is None
                                         else Path(cache_dir))
        self.outputs = np.zeros((self.block, n))   # the silence before t = 0
        self.inputs = np.zeros((self.block, n))
        self.mics = np.zeros((self.block, n))
        self.ears = np.zeros((self.block, 2))
        self.preview: Any = None     # the listener's level and limiter (anamnesis.hub.engine.coupling)
        if self.listener:
            from anamnesis.hub.engine.coupling import ListenerPreview

            self.preview = ListenerPreview(self.sample_rate, self.block)
        self.voices = build_voices(config, self.inputs, self.outputs, seed=seed, banks=banks)
        # The crew's jobs, the widest voices first (they are taken in this order).
        self._voice_jobs = [v.process for v in sorted(self.voices, key=lambda v: -len(v.columns))]
        self.blocks = 0
        self.couplings: Any = None
        if config.couplings:
            from anamnesis.hub.engine.weight_couplings import BlockCouplings

            self._voice_of = {self.agent_ids[c]: (v, c) for v in self.voices for c in v.columns}
            self.couplings = BlockCouplings(config.couplings, sample_rate=self.sample_rate,
                                            block=self.block, seed=seed)
            self.couplings.check(self.read_weights)
        # Last: nothing after it can fail and leave its threads waiting.
        self.crew = Crew(threads)

    def read_weights(self, agent_id: str) -> np.ndarray:
        """An agent's flat weights as the live hub reads them (``/weights``: float32)."""
        voice, column = self._voice_of[agent_id]
        return voice.weights(column).astype(np.float32).astype(np.float64)

    def write_weights(self, agent_id: str, flat: np.ndarray) -> None:
        """Set an agent's flat weights as the live hub writes them (float32 over OSC)."""
        voice, column = self._voice_of[agent_id]
        voice.set_weights(column, np.asarray(flat).astype(np.float32).astype(np.float64))

    @property
    def listener(self) -> bool:
        """True if :attr:`ears` carries the listener's preview (a room with a listener)."""
        return self.coupling is not None and bool(self.coupling.listener)

    def step(self) -> None:
        """Advance one block (the module docstring's loop); allocates nothing, except
        when a ``[[coupling]]`` acts (its weight vectors)."""
        if self.couplings is not None:
            self.couplings.step(self.blocks, self.read_weights, self.write_weights)
        # On the crew (anamnesis.hub.clock.crew; with one thread every job runs here, in
        # this order): the room's tails and the preview beside the mics and the graph,
        # then the voices.
        crew = self.crew
        if self.coupling is not None:
            self.coupling.process(self.outputs, self.mics, self.ears, tails=False)
            crew.begin(self._side)
            try:
                self.graph.tick(self.outputs, out=self.inputs, mics=self.mics)
            except BaseException:
                crew.join()
                raise
        else:
            self.graph.tick(self.outputs, out=self.inputs)
        crew.share(self._voice_jobs)
        self.blocks += 1

    def _side(self) -> None:
        """The crew's side job: the room's tail levels, then the listener's preview."""
        self.coupling.process_tails()
        if self.preview is not None:
            self.preview.process(self.ears)

    def close(self) -> None:
        """Stop the crew's threads; :meth:`step` then runs every job on the caller."""
        self.crew.close()

    def __enter__(self) -> Rehearsal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def agent_stats(self) -> dict[str, dict[str, float]]:
        """Each agent's counters (blow-ups, failed blocks ...), by id."""
        out: dict[str, dict[str, float]] = {}
        for voice in self.voices:
            for column, stats in zip(voice.columns, voice.stats(), strict=False):
                out[self.agent_ids[column]] = stats
        return out


# ---------------------------------------------------------------------------
# Rendering to files
# ---------------------------------------------------------------------------


@dataclass
class RehearsalResult:
    """What a rehearsal produced: files, length, wall time, per-agent counters."""

    out: Path
    preview: Path | None
    seconds: float
    frames: int
    wall_s: float
    agents: dict[str, dict[str, float]]

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio per second of wall time."""
        return self.seconds / max(self.wall_s, 1e-9)


def partial_path(path: Path) -> Path:
    """The temporary name ``path`` is written under until complete: ``.NAME.partial-PID`` beside it."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def check_request(config: Any, seconds: float, out: Path, preview: Path | None = None,
                  plot: Path | None = None, seed: int = 0) -> int:
    """Check a rehearsal request before any work; the length in frames, or ``ValueError``
    with one line naming the problem."""
    from anamnesis.agents.render import check_length

    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"--seconds must be a positive number; got {seconds!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"--seconds must be at most {MAX_SECONDS:g} (a day); got {seconds:g}")
    frames = check_length(float(seconds), config.installation.sample_rate)
    if frames < 1:
        raise ValueError(f"--seconds {seconds:g} is shorter than one sample")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a whole number >= 0; got {seed!r}")
    if preview is not None and config.room is None:
        raise ValueError(f"--preview needs a [room] with a listener; {config.source_name} has "
                         "no [room] (its agents are coupled only electrically)")
    paths = [p for p in (out, preview, plot) if p is not None]
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError("--out, --preview and --plot must be different files")
    for p in paths:
        if not Path(p).parent.is_dir():
            raise ValueError(f"folder {Path(p).parent} does not exist")
        if Path(p).is_dir():
            raise ValueError(f"{p} is a folder; give a file name")
    return frames


def rehearse(config: Any, seconds: float, out: Path, *, preview: Path | None = None,
             seed: int = 0, banks: bool = True, cache_dir: Path | None = None,
             progress: Callable[[int], None] | None = None, threads: int = 1) -> RehearsalResult:
    """Render ``seconds`` of ``config`` to ``out`` (one float32 channel per speaker) and,
    with ``preview``, the listener's stereo preview. ``progress(frames)`` after each
    block; ``threads`` the crew's (:mod:`anamnesis.hub.clock.crew`: the same bytes for
    any number). Written under temporary names and renamed when complete (nothing is
    left behind on an error). ``ValueError`` for a bad request (:func:`check_request`)."""
    frames = check_request(config, seconds, out, preview, None, seed)
    out = Path(out)
    started = time.perf_counter()
    rehearsal = Rehearsal(config, seed=seed, banks=banks, listener=preview is not None,
                          cache_dir=cache_dir, threads=threads)
    try:
        return _render(rehearsal, frames, out, preview, started, progress)
    finally:
        rehearsal.close()


def _render(rehearsal: Rehearsal, frames: int, out: Path, preview: Path | None,
            started: float, progress: Callable[[int], None] | None = None) -> RehearsalResult:
    """:func:`rehearse`'s loop: ``frames`` of ``rehearsal`` to the files."""
    if preview is not None and not rehearsal.listener:
        raise ValueError("--preview needs a listener in the [room]")
    block = rehearsal.block
    n = len(rehearsal.agent_ids)
    chunk_blocks = max(1, CHUNK_FRAMES // block)
    buf = np.zeros((chunk_blocks * block, n), dtype=np.float32)
    ear_buf = np.zeros((chunk_blocks * block, 2), dtype=np.float32)
    targets = [(out, partial_path(out))]
    if preview is not None:
        targets.append((Path(preview), partial_path(Path(preview))))
    writers: list[FloatWavWriter] = []
    try:
        writers.append(FloatWavWriter(targets[0][1], rehearsal.sample_rate, n, frames))
        if preview is not None:
            writers.append(FloatWavWriter(targets[1][1], rehearsal.sample_rate, 2, frames))
        done = 0
        while done < frames:
            fill = 0
            while fill < buf.shape[0] and done + fill < frames:
                rehearsal.step()
                m = min(block, frames - done - fill)
                buf[fill:fill + m] = rehearsal.outputs[:m]
                if preview is not None:
                    ear_buf[fill:fill + m] = rehearsal.ears[:m]
                fill += m
                if progress is not None:
                    progress(m)
            writers[0].write(buf[:fill])
            if preview is not None:
                writers[1].write(ear_buf[:fill])
            done += fill
        for w in writers:
            w.close()
        for final, partial in targets:
            os.replace(partial, final)
    except BaseException:
        for w in writers:
            w.abort()
        for _final, partial in targets:
            partial.unlink(missing_ok=True)
        raise
    wall = time.perf_counter() - started
    return RehearsalResult(out=out, preview=Path(preview) if preview else None,
                           seconds=frames / rehearsal.sample_rate, frames=frames, wall_s=wall,
                           agents=rehearsal.agent_stats())


__all__ = ["CEILING_DB", "SEED_STRIDE", "BankVoice", "EngineVoice", "Rehearsal", "RehearsalResult", "agent_recipe", "build_engine", "build_voices", "check_request", "partial_path", "rehearse"]
