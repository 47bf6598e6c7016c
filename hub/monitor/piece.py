"""What a composer hears in a piece, as numbers: a pure analysis of its speakers' feeds.

:func:`analyse_speaker` measures one speaker's feed ``y`` (and, optionally, what its
agent heard, ``x``: the input column of the rehearsal, routes plus microphone) over
frames of :data:`FRAME_S` and windows of :data:`WINDOW_S`:

``ceiling_share``
    share of the frames whose peak is within :data:`CEILING_MARGIN_DB` of the limiter's
    ceiling (a piece that sits on its limiter sounds like a wall);
``silences``
    runs of at least :data:`SILENCE_MIN_FRAMES` frames whose RMS is below
    :data:`SILENCE_DB`, after the speaker has sounded; each is a *reset dropout* when a
    reset (a blow-up the model recovered from, ``reset_frames``) falls in it or within
    :data:`RESET_NEAR_FRAMES` frames before it, else the network's *own* silence;
``pitched_share``
    share of the sounding windows with an audible pitch: the strongest peak of the
    window's spectrum (:data:`PITCH_BAND_HZ`) at least :data:`PITCH_PROMINENCE_DB` above
    the mean of its third-octave neighbourhood (the peak's own bins left out);
``pitch_hz``
    the median of those windows' peak frequencies (Hz), None without any;
``centroid_hz``
    the spectral centroid of each sounding window (Hz): its range over the piece
    (``centroid_octaves``, log2 of max / min) says whether the timbre changes;
``follow_share``
    share of the windows where both ``x`` and ``y`` have an audible pitch whose peak
    frequencies agree within :data:`FOLLOW_TOLERANCE` (the agent locked onto what it
    hears), None when no window has both.

Everything is plain numpy over whole arrays (offline, never in the audio path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Frame length (s) for levels, ceiling hits and silences.
FRAME_S = 0.05
#: Window length (s) for spectra: pitch, centroid, following.
WINDOW_S = 5.0
#: A frame "touches the ceiling" within this many dB of it.
CEILING_MARGIN_DB = 0.1
#: RMS (dBFS) under which a frame is silent, and over which a window is sounding.
SILENCE_DB = -60.0
#: Frames (of FRAME_S) a silence lasts at least: 100 ms.
SILENCE_MIN_FRAMES = 2
#: A reset up to this many frames before a silence made it (the model's recovery fade).
RESET_NEAR_FRAMES = 4
#: Where a pitch is looked for (Hz).
PITCH_BAND_HZ = (40.0, 5000.0)
#: How far (dB) a peak stands above its third-octave neighbourhood to be a pitch.
PITCH_PROMINENCE_DB = 15.0
#: Relative agreement of two peak frequencies for "follows what it hears".
FOLLOW_TOLERANCE = 0.02
#: FFT size of the windows' averaged spectra (5.9 Hz bins at 48 kHz).
NFFT = 8192


@dataclass(frozen=True)
class SpeakerMeasures:
    """One speaker's measures over a piece (see the module docstring)."""

    seconds: float
    rms_db: float                  # over the whole piece (dBFS)
    ceiling_share: float
    silences: int
    reset_dropouts: int
    own_silences: int
    resets: int
    pitched_share: float
    pitch_hz: float | None
    prominence_db: float           # median over the sounding windows
    centroid_hz: tuple[float, float] | None     # (min, max) over the sounding windows
    centroid_octaves: float
    follow_share: float | None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["centroid_hz"] = list(self.centroid_hz) if self.centroid_hz else None
        return out


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def frame_levels(y: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of :data:`FRAME_S`: (RMS, peak), linear; a partial last frame is dropped."""
    n = int(round(FRAME_S * sample_rate))
    frames = np.asarray(y, dtype=np.float64)[: len(y) // n * n].reshape(-1, n)
    return np.sqrt(np.mean(frames**2, axis=1)), np.max(np.abs(frames), axis=1)


def silences(rms: np.ndarray, reset_frames: Sequence[int] = ()) -> tuple[int, int]:
    """(reset dropouts, own silences) among the runs of silent frames (module docstring)."""
    floor = 10.0 ** (SILENCE_DB / 20.0)
    silent = rms < floor
    sounded = np.cumsum(~silent) > 0
    resets = np.sort(np.asarray(list(reset_frames), dtype=np.int64))
    reset_runs = own = 0
    start = None
    for i in range(len(rms) + 1):
        quiet = i < len(rms) and silent[i] and sounded[i]
        if quiet and start is None:
            start = i
        elif not quiet and start is not None:
            if i - start >= SILENCE_MIN_FRAMES:
                lo, hi = start - RESET_NEAR_FRAMES, i
                near = np.searchsorted(resets, lo) < np.searchsorted(resets, hi)
                reset_runs += int(near)
                own += int(not near)
            start = None
    return reset_runs, own


def _spectrum(x: np.ndarray) -> np.ndarray:
    """Mean power spectrum of Hann-windowed NFFT segments (hop NFFT/2) of ``x``."""
    window = np.hanning(NFFT)
    hop = NFFT // 2
    count = max(1, (len(x) - NFFT) // hop + 1)
    if len(x) < NFFT:
        x = np.pad(x, (0, NFFT - len(x)))
    power = np.zeros(NFFT // 2 + 1)
    for k in range(count):
        power += np.abs(np.fft.rfft(x[k * hop:k * hop + NFFT] * window)) ** 2
    return power / count


def peak(power: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """The strongest peak of ``power`` (an rfft power spectrum of NFFT) in
    :data:`PITCH_BAND_HZ`: (frequency Hz, prominence dB over its third-octave
    neighbourhood, the peak's ±2 bins left out). Frequency refined by a parabola
    through the log power of the peak bin and its neighbours."""
    hz = sample_rate / NFFT
    lo, hi = (int(f / hz) for f in PITCH_BAND_HZ)
    k = lo + int(np.argmax(power[lo:hi]))
    if power[k] <= 0:
        return 0.0, 0.0
    f = k * hz
    a, b, c = (math.log(max(power[j], 1e-300)) for j in (k - 1, k, k + 1))
    denom = a - 2 * b + c
    shift = 0.5 * (a - c) / denom if denom < 0 else 0.0
    band = (int(f * 2 ** (-1 / 6) / hz), int(math.ceil(f * 2 ** (1 / 6) / hz)) + 1)
    around = np.r_[power[max(1, band[0] - 2):max(1, k - 2)], power[k + 3:band[1] + 3]]
    if around.size == 0:
        return (k + shift) * hz, 0.0
    return (k + shift) * hz, 10.0 * math.log10(power[k] / max(float(np.mean(around)), 1e-300))


def centroid(power: np.ndarray, sample_rate: int) -> float:
    """Spectral centroid (Hz) of an rfft power spectrum of NFFT."""
    freqs = np.arange(power.size) * sample_rate / NFFT
    total = float(power.sum())
    return float((freqs * power).sum() / total) if total > 0 else 0.0


def analyse_speaker(y: np.ndarray, sample_rate: int, *, ceiling_db: float = -1.0,
                    x: np.ndarray | None = None,
                    reset_frames: Sequence[int] = ()) -> SpeakerMeasures:
    """The measures of one speaker's feed ``y`` (module docstring); ``x`` what its agent
    heard (for ``follow_share``); ``reset_frames`` the frames (of FRAME_S) in which the
    agent's model recovered from a blow-up."""
    y = np.asarray(y, dtype=np.float64)
    rms, peaks = frame_levels(y, sample_rate)
    ceiling = 10.0 ** ((ceiling_db - CEILING_MARGIN_DB) / 20.0)
    ceiling_share = float(np.mean(peaks >= ceiling)) if peaks.size else 0.0
    reset_runs, own = silences(rms, reset_frames)
    n = int(WINDOW_S * sample_rate)
    floor = 10.0 ** (SILENCE_DB / 20.0)
    pitches, prominences, centroids, agree = [], [], [], []
    for start in range(0, len(y) - n + 1, n):
        seg = y[start:start + n]
        if math.sqrt(float(np.mean(seg**2))) < floor:
            continue
        power = _spectrum(seg)
        f, prominence = peak(power, sample_rate)
        prominences.append(prominence)
        centroids.append(centroid(power, sample_rate))
        pitched = prominence >= PITCH_PROMINENCE_DB
        if pitched:
            pitches.append(f)
        if x is not None and pitched:
            heard = np.asarray(x[start:start + n], dtype=np.float64)
            fx, px = peak(_spectrum(heard), sample_rate)
            if px >= PITCH_PROMINENCE_DB and fx > 0:
                agree.append(abs(f / fx - 1.0) <= FOLLOW_TOLERANCE)
    sounding = len(prominences)
    lo_c, hi_c = (min(centroids), max(centroids)) if centroids else (0.0, 0.0)
    return SpeakerMeasures(
        seconds=len(y) / sample_rate,
        rms_db=_db(math.sqrt(float(np.mean(y**2)))) if y.size else -math.inf,
        ceiling_share=ceiling_share, silences=reset_runs + own, reset_dropouts=reset_runs,
        own_silences=own, resets=len(reset_frames),
        pitched_share=len(pitches) / sounding if sounding else 0.0,
        pitch_hz=float(np.median(pitches)) if pitches else None,
        prominence_db=float(np.median(prominences)) if prominences else 0.0,
        centroid_hz=(lo_c, hi_c) if centroids else None,
        centroid_octaves=math.log2(hi_c / lo_c) if centroids and lo_c > 0 else 0.0,
        follow_share=float(np.mean(agree)) if agree else None)


__all__ = ["FRAME_S", "WINDOW_S", "SpeakerMeasures", "analyse_speaker", "centroid",
           "frame_levels", "peak", "silences"]
