"""The simulated room: a shoebox with speakers, mics and a listener, and its impulse
responses by the image-source method (pyroomacoustics' ``ShoeBox``).

Model. Every wall has the same energy absorption ``a`` (reflection coefficient
``sqrt(1 - a)`` per bounce); given an RT60 instead, ``a`` comes from Sabine's formula
``RT60 = 24 ln(10) V / (c S a)`` (V volume, S wall area, c = 343 m/s), which is
infeasible when it asks for ``a > 1``. Image sources up to ``max_order`` reflections
(fewer when the length cap makes higher orders arrive too late to matter) are placed
with pyroomacoustics' windowed-sinc fractional delays (81 taps); each image's gain
is ``sqrt(1 - a)^order / r`` (r in metres), so the direct path at 1 m has gain 1.
pyroomacoustics' 10 Hz zero-phase high-pass is kept (it removes the DC the sinc
tails leave). Its 40-sample sinc centring delay is removed, so a direct path of
``r`` metres peaks at ``r / 343 * sample_rate`` samples. Responses are cut at
``max_len_s`` with a half-cosine fade over the last ``fade_s``.

Listener. A stereo pair of omnidirectional mics 17 cm apart (no head shadow), the
listener facing +y with z up: the left ear at ``x - 0.085``, the right at
``x + 0.085``.

The ``Room`` is a pure value; ``impulse_responses`` is heavy (≈1 s for 8×10 at
order 40, on one thread) and belongs on a worker, never the audio thread. With ``cache_dir`` the
result is stored as ``<sha256>.npz`` keyed by everything that shapes it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPEED_OF_SOUND_M_S = 343.0
EAR_SPACING_M = 0.17
_MODEL_VERSION = "anamnesis.room/1"
_PRA_SINC_DELAY = 40  # pyroomacoustics frac_delay_length (81) // 2, in samples


def listener_ears(position) -> np.ndarray:
    """The listener's ears, (2, 3) metres: row 0 left, row 1 right (facing +y, z up,
    so left is -x), 17 cm apart, centred on ``position``."""
    p = np.asarray(position, dtype=np.float64).reshape(3)
    half = np.array([EAR_SPACING_M / 2.0, 0.0, 0.0])
    return np.stack([p - half, p + half])


def sabine_absorption(size_m, rt60_s: float) -> float:
    """Wall energy absorption (0..1, may exceed 1 if infeasible) for ``rt60_s`` seconds
    in a shoebox of ``size_m`` metres, by Sabine's formula."""
    x, y, z = (float(v) for v in size_m)
    volume = x * y * z
    surface = 2.0 * (x * y + x * z + y * z)
    return 24.0 * math.log(10.0) * volume / (SPEED_OF_SOUND_M_S * surface * rt60_s)


@dataclass(frozen=True)
class Room:
    """A shoebox room. ``size_m``: (x, y, z) metres; exactly one of ``rt60_s``
    (seconds) or ``absorption`` (wall energy absorption, 0 < a ≤ 1); ``max_order``:
    cap on reflections per image; ``sample_rate`` Hz; responses ``max_len_s`` seconds
    long with a ``fade_s`` second fade-out. All errors raise one ``ValueError``."""

    size_m: tuple
    rt60_s: float | None = None
    absorption: float | None = None
    max_order: int = 40
    sample_rate: int = 48000
    max_len_s: float = 0.5
    fade_s: float = 0.01

    def __post_init__(self) -> None:
        errors: list[str] = []
        size = tuple(
            float(v) for v in np.asarray(self.size_m, dtype=np.float64).ravel()
        )
        if len(size) != 3:
            errors.append(f"size_m must be (x, y, z) metres, got {self.size_m!r}")
        elif not all(math.isfinite(v) and v > 0 for v in size):
            errors.append(f"size_m must be > 0 metres in every dimension, got {size}")
        size_ok = not errors
        object.__setattr__(self, "size_m", size)
        if (self.rt60_s is None) == (self.absorption is None):
            errors.append("give exactly one of rt60_s or absorption")
        if self.rt60_s is not None:
            if not (math.isfinite(self.rt60_s) and self.rt60_s > 0):
                errors.append(f"rt60_s must be > 0 seconds, got {self.rt60_s}")
            elif size_ok:
                needed = sabine_absorption(size, self.rt60_s)
                if needed > 1.0:
                    shortest = self.rt60_s * needed
                    errors.append(
                        f"rt60_s {self.rt60_s} s is infeasible for a {size} m room "
                        f"(needs absorption {needed:.2f} > 1; shortest is {shortest:.3f} s)"
                    )
        if self.absorption is not None and not (0.0 < self.absorption <= 1.0):
            errors.append(f"absorption must be in (0, 1], got {self.absorption}")
        if int(self.max_order) != self.max_order or self.max_order < 0:
            errors.append(f"max_order must be an integer >= 0, got {self.max_order}")
        if int(self.sample_rate) != self.sample_rate or self.sample_rate <= 0:
            errors.append(
                f"sample_rate must be a positive integer (Hz), got {self.sample_rate}"
            )
        if not (math.isfinite(self.max_len_s) and self.max_len_s > 0):
            errors.append(f"max_len_s must be > 0 seconds, got {self.max_len_s}")
        elif not (0.0 <= self.fade_s < self.max_len_s):
            errors.append(f"fade_s must be in [0, max_len_s), got {self.fade_s}")
        if errors:
            raise ValueError("invalid room: " + "; ".join(errors))

    # -- derived ---------------------------------------------------------------

    @property
    def wall_absorption(self) -> float:
        """Energy absorption of every wall (0..1)."""
        if self.absorption is not None:
            return float(self.absorption)
        return sabine_absorption(self.size_m, self.rt60_s)

    @property
    def length(self) -> int:
        """Response length in samples."""
        return round(self.max_len_s * self.sample_rate)

    @property
    def order(self) -> int:
        """Reflection order used: ``max_order``, or fewer when images of higher order
        all arrive after ``max_len_s``."""
        reach = math.ceil(SPEED_OF_SOUND_M_S * self.max_len_s / min(self.size_m)) + 1
        return int(min(self.max_order, reach))

    def check_positions(self, **groups) -> None:
        """Raise one ValueError listing every position (metres) not strictly inside."""
        errors: list[str] = []
        hi = np.array(self.size_m)
        for name, positions in groups.items():
            arr = np.asarray(positions, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 1:
                errors.append(
                    f"{name} must be a non-empty (n, 3) array of metres, got shape {arr.shape}"
                )
                continue
            for k, p in enumerate(arr):
                if not (np.all(np.isfinite(p)) and np.all(p > 0) and np.all(p < hi)):
                    errors.append(
                        f"{name}[{k}] {tuple(p.tolist())} is not strictly inside the room {self.size_m}"
                    )
        if errors:
            raise ValueError("invalid positions: " + "; ".join(errors))

    def cache_key(self, speakers, mics) -> str:
        """SHA-256 (hex) of everything that shapes the responses."""
        from importlib.metadata import version  # not the import: it costs 1-3 s

        doc = {
            "model": _MODEL_VERSION,
            "pyroomacoustics": version("pyroomacoustics"),
            "size_m": list(self.size_m),
            "absorption": self.wall_absorption,
            "order": self.order,
            "sample_rate": int(self.sample_rate),
            "length": self.length,
            "fade_s": float(self.fade_s),
            "c": SPEED_OF_SOUND_M_S,
            "speakers": np.asarray(speakers, dtype=np.float64).tolist(),
            "mics": np.asarray(mics, dtype=np.float64).tolist(),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    # -- responses -------------------------------------------------------------

    def impulse_responses(
        self, speakers, mics, cache_dir: str | os.PathLike | None = None
    ) -> np.ndarray:
        """Impulse responses (n_mics, n_speakers, length) from each speaker to each mic
        (positions (n, 3) metres, strictly inside). Linear gain, 1 for a direct path
        of 1 m. Loaded from / stored in ``cache_dir`` when given."""
        self.check_positions(speakers=speakers, mics=mics)
        speakers = np.asarray(speakers, dtype=np.float64)
        mics = np.asarray(mics, dtype=np.float64)
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"{self.cache_key(speakers, mics)}.npz"
            if path.exists():
                with np.load(path) as data:
                    return data["irs"]
        irs = self._compute(speakers, mics)
        if path is not None:
            _atomic_save(path, irs)
        return irs

    def coupling_responses(
        self, speakers, mics, listener, cache_dir=None
    ) -> np.ndarray:
        """Responses to every mic then the listener's left and right ears:
        (n_mics + 2, n_speakers, length) — the matrix the hub convolves."""
        receivers = np.concatenate(
            [np.asarray(mics, dtype=np.float64).reshape(-1, 3), listener_ears(listener)]
        )
        return self.impulse_responses(speakers, receivers, cache_dir)

    def _compute(self, speakers: np.ndarray, mics: np.ndarray) -> np.ndarray:
        pra = _pyroomacoustics()
        shoebox = pra.ShoeBox(
            list(self.size_m),
            fs=int(self.sample_rate),
            materials=pra.Material(self.wall_absorption),
            max_order=self.order,
            air_absorption=False,
        )
        for s in speakers:
            shoebox.add_source(s)
        shoebox.add_microphone_array(mics.T.copy())
        shoebox.compute_rir()
        n = self.length
        irs = np.zeros((len(mics), len(speakers), n))
        for m in range(len(mics)):
            for s in range(len(speakers)):
                h = np.asarray(shoebox.rir[m][s])[_PRA_SINC_DELAY:][:n]
                irs[m, s, : len(h)] = h
        n_fade = round(self.fade_s * self.sample_rate)
        if n_fade > 0:
            irs[:, :, n - n_fade :] *= 0.5 * (
                1.0 + np.cos(np.pi * (np.arange(n_fade) + 1) / n_fade)
            )
        return irs



@functools.cache
def _pyroomacoustics() -> Any:
    """pyroomacoustics, imported once and set, once per process, to compute on one thread:
    a recomputation runs beside live agents and must leave them the other cores (with its
    default, every core, the hub's clock fell half a second behind on a 2-core laptop
    while a moved listener was computed), and one thread keeps every run's sums in the
    same order (a rehearsal, a hub and a test get the same responses)."""
    import pyroomacoustics as pra

    pra.constants.set("num_threads", 1)
    return pra

def _atomic_save(path: Path, irs: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, irs=irs)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
