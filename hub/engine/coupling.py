"""The acoustic coupling of a simulated room: what every agent's microphone and the
listener's two ears hear, block by block.

For agent ``i`` with a mic and every agent ``j`` with a speaker::

    mic_i = sum_j  h(mic_i <- speaker_j) * out_j  +  self-noise_i
    ear_e = sum_j  h(ear_e <- speaker_j) * out_j           (e = left, right)

``h`` are the room's impulse responses (:mod:`anamnesis.hub.engine.room`, image sources), ``*``
is convolution (:class:`anamnesis.hub.engine.partitions.RoomConvolver`, non-uniformly
partitioned, float32 by default: the live path's budget), ``self-noise`` is white Gaussian noise at the room's
``mic_noise_db`` (dBFS RMS), seeded, one independent stream per mic. Sources
(visitor noise bursts, ambience) are the routing graph's (:mod:`anamnesis.hub.engine.graph`);
the mics are added to each agent's input by ``graph.tick(..., mics=...)``.

Timing. ``process`` is handed the speakers' *previous* block (the lockstep
convention of :mod:`anamnesis.hub.engine.graph`: block k's inputs from block k-1's outputs), so
a direct path of ``r`` metres arrives ``r / 343 * sample_rate`` samples plus one
block after the sound left the speaker; the listener preview is computed from
the same outputs, so it too lags the speakers by one block.

Changes. Moving a speaker, a mic or the listener, or changing the room, means
new responses: :func:`compute_responses` (heavy, ≈0.2–1 s; cached on disk by
geometry) and :meth:`RoomCoupling.prepare` (their spectra) run on a worker;
:meth:`RoomCoupling.swap` installs the result between two blocks, crossfaded
(the head of every response over one block, its tail level by level within the
response's length). The self-noise level changes at once (:meth:`set_noise_db`).
Agents without a speaker or a mic (no position) take no part: their rows or
columns of ``h`` are zero.

``process`` allocates nothing and is deterministic for a given seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anamnesis.hub.engine.partitions import RoomConvolver
from anamnesis.hub.engine.room import Room as RoomModel
from anamnesis.hub.engine.room import listener_ears

#: Length of every response (s): reverberation beyond it is cut with a fade.
RESPONSE_S = 0.5
#: Reflection order cap when the config does not give one.
DEFAULT_MAX_ORDER = 12
#: Level of the listener preview before its limiter (dB): eight speakers at full scale
#: sum to more than full scale at the listener.
PREVIEW_GAIN_DB = -6.0


def default_cache_dir() -> Path:
    """Where computed responses are kept: ``$XDG_CACHE_HOME/anamnesis/rooms``
    (``~/.cache/anamnesis/rooms``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "anamnesis" / "rooms"


def room_model(room: Any, sample_rate: int, max_len_s: float = RESPONSE_S) -> RoomModel:
    """The :class:`anamnesis.hub.engine.room.Room` of a config ``[room]`` (:class:`anamnesis.hub.installation.config.Room`)."""
    return RoomModel(
        size_m=tuple(room.size),
        rt60_s=None if room.absorption is not None else room.rt60,
        absorption=room.absorption,
        max_order=DEFAULT_MAX_ORDER if room.max_order is None else int(room.max_order),
        sample_rate=int(sample_rate),
        max_len_s=max_len_s,
    )


def ears(room: Any) -> np.ndarray:
    """The listener's ears (2, 3) m: left then right, 17 cm apart, facing
    ``listener_azimuth`` degrees counter-clockwise from +y."""
    centre = np.asarray(room.listener, dtype=np.float64)
    pair = listener_ears(np.zeros(3))        # facing +y: left at -x, right at +x
    a = math.radians(float(room.listener_azimuth))
    rotation = np.array([[math.cos(a), -math.sin(a), 0.0],
                         [math.sin(a), math.cos(a), 0.0],
                         [0.0, 0.0, 1.0]])
    return centre + pair @ rotation.T


def compute_responses(room: Any, agents: Sequence[Any], sample_rate: int, *,
                      cache_dir: str | os.PathLike | None = None,
                      max_len_s: float = RESPONSE_S) -> np.ndarray:
    """Responses (n_agents + 2, n_agents, length): to every agent's mic (config order),
    then the listener's left and right ear, from every agent's speaker. Rows of agents
    without a mic and columns of agents without a speaker are zero. Heavy: a worker's
    job. ``ValueError`` (every problem at once) for positions outside the room."""
    model = room_model(room, sample_rate, max_len_s)
    n = len(agents)
    with_speaker = [j for j, a in enumerate(agents) if a.speaker is not None]
    with_mic = [i for i, a in enumerate(agents) if a.mic is not None]
    irs = np.zeros((n + 2, n, model.length))
    if not with_speaker:
        return irs
    speakers = np.array([agents[j].speaker for j in with_speaker], dtype=np.float64)
    receivers = np.concatenate([
        np.array([agents[i].mic for i in with_mic], dtype=np.float64).reshape(-1, 3),
        ears(room)])
    h = model.impulse_responses(speakers, receivers, cache_dir)
    rows = with_mic + [n, n + 1]
    irs[np.ix_(rows, with_speaker)] = h
    return irs


class RoomCoupling:
    """Mics and listener of ``agents`` (config order) in ``room`` (a :class:`anamnesis.hub.installation.config.Room`).

    ``block`` frames per :meth:`process` (64–1024), ``sample_rate`` Hz; ``seed`` the
    self-noise's; ``dtype`` the convolution's (float32: live budget; float64: exact);
    ``cache_dir`` where responses are kept (None: not cached); ``irs``: responses
    already computed (:func:`compute_responses`), else computed here (heavy);
    ``listener`` False: no ears (a seventh less work with eight agents; ``ears_out``
    stays as given).
    """

    def __init__(self, room: Any, agents: Sequence[Any], *, sample_rate: int, block: int,
                 seed: int = 0, dtype: Any = np.float32,
                 cache_dir: str | os.PathLike | None = None,
                 irs: np.ndarray | None = None, listener: bool = True) -> None:
        self.n_agents = len(agents)
        self.sample_rate = int(sample_rate)
        self.block = int(block)
        self.listener = bool(listener)
        if irs is None:
            irs = compute_responses(room, agents, sample_rate, cache_dir=cache_dir)
        self.convolver = RoomConvolver(self._rows(irs), self.block, dtype=dtype)
        self._has_mic = np.array([a.mic is not None for a in agents], dtype=bool)
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._noise = np.zeros((self.block, self.n_agents))
        self._wet = np.zeros((self.block, self.convolver.n_out))
        # A full (block, n) gain array: a broadcast multiply would buffer (allocate).
        self._noise_gain = np.zeros((self.block, self.n_agents))
        self.noise_rms = 0.0
        self.set_noise_db(room.mic_noise_db)

    def set_noise_db(self, db: float) -> None:
        """Every mic's self-noise, dBFS RMS (−200 or less: none); takes effect at once."""
        self.noise_rms = 0.0 if db <= -200.0 else 10.0 ** (float(db) / 20.0)
        self._noise_gain[...] = self._has_mic.astype(np.float64)[None, :] * self.noise_rms

    def _rows(self, irs: np.ndarray) -> np.ndarray:
        return irs if self.listener else irs[:self.n_agents]

    def prepare(self, irs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New responses' spectra (:func:`compute_responses`' shape) for :meth:`swap`
        (worker thread; allocates)."""
        return self.convolver.prepare(self._rows(irs))

    def swap(self, prepared: tuple[np.ndarray, np.ndarray]) -> None:
        """Install :meth:`prepare`'s result; the next block crossfades (audio side)."""
        self.convolver.swap(prepared)

    def process(self, outputs: np.ndarray, mics: np.ndarray, ears_out: np.ndarray, *,
                tails: bool = True) -> None:
        """One block: ``outputs`` (block, n_agents) the speakers' samples (float64);
        writes ``mics`` (block, n_agents) and ``ears_out`` (block, 2), float64.
        ``tails`` False leaves the room's tail levels to :meth:`process_tails`, which
        may then run on another thread while ``outputs`` is rewritten (it must end
        before the next ``process``: :meth:`RoomConvolver.process_head`)."""
        if tails:
            wet = self.convolver.process(outputs, self._wet)
        else:
            wet = self.convolver.process_head(outputs, self._wet)
        n = self.n_agents
        mics[...] = wet[:, :n]
        if self.listener:
            ears_out[...] = wet[:, n:]
        if self.noise_rms > 0.0:
            self._rng.standard_normal(out=self._noise)
            np.multiply(self._noise, self._noise_gain, out=self._noise)
            np.add(mics, self._noise, out=mics)

    def process_tails(self) -> None:
        """The room's tail levels for the last :meth:`process` with ``tails=False``."""
        self.convolver.process_tails()

    def reset(self) -> None:
        """Silence in the room (the convolution's history cleared); responses kept."""
        self.convolver.reset()


class ListenerPreview:
    """The listener's ears made fit for headphones: :data:`PREVIEW_GAIN_DB`, then each
    ear through an agent's safety chain (:class:`anamnesis.agents.dsp.safety.SafetyChain`: NaN
    guard, DC blocker, 20 Hz high-pass, 1 ms lookahead limiter at ``ceiling_db``
    dBFS, hard clamp). The two limiters are independent (a loud left side does not
    duck the right). ``process`` works in place on (block, 2) float64 and allocates
    nothing; the live hub and the rehearsal both use it, so the browser, the
    headphones and the preview file hear the same thing."""

    def __init__(self, sample_rate: int, block: int, *, gain_db: float = PREVIEW_GAIN_DB,
                 ceiling_db: float = -1.0) -> None:
        from anamnesis.agents.dsp.safety import SafetyChain

        self.block = int(block)
        self._chains = [SafetyChain(int(sample_rate), self.block, ceiling_db) for _ in range(2)]
        for chain in self._chains:
            chain.set_gain_db(gain_db)
        self.ceiling = self._chains[0].ceiling
        self._ear = np.zeros((2, self.block))

    def limited(self) -> int:
        """Samples the two limiters turned down so far."""
        return sum(int(c.counters().get("limited", 0)) for c in self._chains)

    def process(self, ears: np.ndarray) -> None:
        """Limit one block of ``ears`` (frames ≤ block, 2) in place."""
        n = ears.shape[0]
        for e in range(2):
            x = self._ear[e, :n]
            x[:] = ears[:, e]
            self._chains[e].process(x, out=x)
            ears[:, e] = x


__all__ = ["PREVIEW_GAIN_DB", "ListenerPreview", "RESPONSE_S", "RoomCoupling", "compute_responses", "default_cache_dir", "ears",
           "room_model"]
