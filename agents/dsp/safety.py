"""The safety chain that stands between every model and its speaker.

DESIGN "The agent process": *a speaker must never receive a non-finite sample
or a sample above the ceiling*. One numba kernel (:func:`safety_kernel`) runs,
per sample, in this order:

1. **Guard.** A non-finite input sample becomes 0 (counted); a finite one is
   clamped to ±:data:`INPUT_LIMIT` (counted as over-range), so no filter state
   can overflow whatever a model emits.
2. **DC blocker.** First-order ``y = x - x1 + R*y1``, corner :data:`DC_CORNER_HZ`.
3. **High-pass.** Second-order Butterworth at :data:`HIGHPASS_HZ` (RBJ biquad,
   transposed direct form II): speakers are spared sub-sonic excursion, which a
   learning network easily produces. **Low-pass**: twelfth-order Butterworth at
   ``lowpass_hz`` (default :data:`LOWPASS_HZ`; six biquads; None switches it off, an
   explicit choice): a chaotic learner's oscillation near the Nyquist rate (a 24 kHz
   tone, inaudible and under the ceiling) would burn a tweeter over a week. At 48 kHz
   it passes 15 kHz within 0.01 dB and takes 63 dB off at 20 kHz, 95 dB at 21 kHz, so
   a model's full-scale output (every model ends in a bounded activation) leaves at
   most -51 dBFS above 20 kHz even at the largest gain (+12 dB). (An eighth order,
   42 dB at 20 kHz, let -30 dBFS through at +12 dB.)
4. **Gain** (dB target, ramped linearly in amplitude over :data:`RAMP_S`).
   It sits *before* the limiter, so +12 dB drives the limiter instead of clipping.
5. **Limiter** with a lookahead of ``lookahead_ms``: the gain needed by each
   sample (``min(1, ceiling/|v|)``) is min-held over ``L+1`` samples,
   released smoothly (one-pole, ``release_ms``) and averaged over ``L``
   samples; the signal is delayed by ``L`` samples. Every gain value entering
   the average for a sample was computed from a window that contains that
   sample, so the smoothed gain never exceeds what the sample needs: the
   limiter attacks smoothly *and* holds the ceiling. Both windows cost the same
   whatever ``L``: the min-hold is a monotonic queue (exact: the minimum of the
   window, as a scan would find it), the average a running sum of the released
   gains in fixed point (each rounded down to a multiple of 2**-52, summed exactly
   in integers, so it never drifts in weeks of running).
6. **Mute** (ramp over :data:`RAMP_S`) and **panic** (fade to exact silence over
   :data:`PANIC_FADE_S`, fade back in over :data:`UNPANIC_FADE_S`); factors in
   [0, 1] after the limiter, so silence is exact whatever the limiter does.
7. **Hard guarantee.** ``|y| <= ceiling`` by a final clamp (also catching a
   rounding ulp); ``ceiling`` is rounded *down* to a float32 value, so a
   float32 speaker buffer holds the guarantee too.

Stored state is kept finite and free of denormals (STYLE 4): filter states and
samples below 1e-30 (-600 dB) are flushed to zero, sample by sample, and a
non-finite state (impossible with the clamp, checked anyway) is reset and counted.

Targets (gain, mute, panic) live in one small float64 array that the control
side writes with single element stores and the kernel reads at block start;
this is the lock-free "atomic parameter" pattern, so panic works even when the
command queue of the engine is full. Ramps start at the block where a target
changed, so the output is the same for any split into blocks given the same
changes at the same samples (STYLE 1).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Input samples are clamped to this magnitude (linear; 80 dB over full scale).
INPUT_LIMIT = 1.0e4
#: Corner of the DC blocker (Hz).
DC_CORNER_HZ = 5.0
#: Corner of the Butterworth high-pass (Hz).
HIGHPASS_HZ = 20.0
#: Corner of the twelfth-order Butterworth low-pass (Hz; capped at 0.45 × the sample rate).
LOWPASS_HZ = 17000.0
#: Q of its six biquad sections: 1 / (2 cos θ), θ = 7.5°, 22.5°, ... 82.5° (the poles of
#: a twelfth-order Butterworth, 15° apart).
LOWPASS_QS = tuple(1.0 / (2.0 * math.cos(math.radians(7.5 + 15.0 * k))) for k in range(6))
#: Length of gain and mute ramps (s).
RAMP_S = 0.010
#: Fade to silence after ``panic`` (s); with a block of up to 1024 frames at
#: 48 kHz (21.3 ms until the next block start) silence is reached within 42 ms.
PANIC_FADE_S = 0.020
#: Fade back in after ``unpanic`` (s): gentle, this plays in a room.
UNPANIC_FADE_S = 0.250
#: Gains below this (linear) count as "limited" (about 0.001 dB of reduction).
_LIMITED_BELOW = 0.9999
_DENORMAL = 1.0e-30
#: Relative excess over the ceiling that counts as a real clamp, not rounding.
_CLAMP_TOLERANCE = 1.0 + 1.0e-9

# Target array (written by the control side, read by the kernel).
T_GAIN, T_MUTE, T_PANIC = 0, 1, 2
N_TARGETS = 3

# Scalar state.
S_DC_X1, S_DC_Y1, S_HP_Z1, S_HP_Z2 = 0, 1, 2, 3
S_RELEASE = 4            # released gain of the limiter (before the box average)
S_POS = 5                # ring position (stored as float, exact below 2**53)
# Three linear ramps (gain, mute, panic), each: current, target seen, step, samples left.
S_GAIN, S_MUTE, S_PANIC = 6, 10, 14
N_STATE = 18

# Coefficients.
C_DC_R, C_B0, C_B1, C_B2, C_A1, C_A2 = 0, 1, 2, 3, 4, 5
C_CEIL, C_RELEASE_K, C_RAMP_N, C_PANIC_N, C_UNPANIC_N = 6, 7, 8, 9, 10
N_COEF = 11

# The limiter's integer state (``lim``): the running sum of the fixed-point released
# gains, the min-hold queue's head and length, and the samples since the reset.
L_SUM, L_HEAD, L_LEN, L_COUNT = 0, 1, 2, 3
N_LIM = 4
#: One in the fixed point of the released-gain ring (2**52: a gain in (0, 1] keeps
#: every bit a float64 has at 0.5 and above).
GAIN_ONE = 1 << 52
_GAIN_SCALE = 1.0 / GAIN_ONE

# Counters.
K_NONFINITE, K_OVERRANGE, K_LIMITED, K_CLAMPED, K_FLUSHED = 0, 1, 2, 3, 4
N_COUNTERS = 5
COUNTER_NAMES = ("nonfinite", "overrange", "limited", "clamped", "state_flushes")
"""Names of the counters, in the order of ``K_*``. ``clamped`` counts samples the
limiter let through above the ceiling (beyond rounding) that the hard guarantee
caught: it stays 0 unless the limiter is broken."""


@njit(cache=True, nogil=True)
def _flush(z):
    """``z``, or 0 if it is tiny: denormals are slow on x86 and inaudible (-600 dB)."""
    return 0.0 if abs(z) < _DENORMAL else z


@njit(cache=True, nogil=True)
def _ramp_retarget(st, base, target, n_samples):
    """Start a linear ramp of ``n_samples`` at ``st[base]`` towards ``target`` if it changed."""
    if target != st[base + 1]:
        st[base + 1] = target
        if n_samples <= 1.0:
            st[base] = target
            st[base + 2] = 0.0
            st[base + 3] = 0.0
        else:
            st[base + 2] = (target - st[base]) / n_samples
            st[base + 3] = n_samples


@njit(cache=True, nogil=True)
def _ramp_next(st, base):
    """Advance a ramp by one sample and return its value."""
    if st[base + 3] > 0.0:
        st[base + 3] -= 1.0
        if st[base + 3] <= 0.0:
            st[base] = st[base + 1]
        else:
            st[base] += st[base + 2]
    return st[base]


@njit(cache=True, nogil=True)
def safety_kernel(x, y, n, targets, st, coef, delay, released, hold_val, hold_age, lim,
                  counters, lpc, lpz):
    """Run the safety chain over ``x[:n]`` into ``y[:n]`` (both float64, linear).

    ``targets``: gain (linear), mute (0/1), panic (0/1). ``st``/``coef``: scalar
    state and coefficients (see the ``S_*``/``C_*`` indices). ``delay`` (L) is the
    signal's delay ring, ``released`` (L, int64) the released gains in fixed point
    (:data:`GAIN_ONE`), ``hold_val``/``hold_age`` (L+2) the min-hold's monotonic queue
    (gains, and the sample count at which each was needed) and ``lim`` (int64, the
    ``L_*`` indices) their integer state. ``counters`` (int64) accumulate events.
    ``lpc`` (sections, 5: b0 b1 b2 a1 a2) and ``lpz`` (sections, 2) are the
    low-pass's biquads and their state (0 sections: off). Allocates nothing.
    """
    ceil = coef[C_CEIL]
    la = delay.shape[0]
    lg = la + 1                      # the min-hold's window (samples)
    cap = hold_val.shape[0]
    _ramp_retarget(st, S_GAIN, targets[T_GAIN], coef[C_RAMP_N])
    _ramp_retarget(st, S_MUTE, 0.0 if targets[T_MUTE] != 0.0 else 1.0, coef[C_RAMP_N])
    if targets[T_PANIC] != 0.0:
        _ramp_retarget(st, S_PANIC, 0.0, coef[C_PANIC_N])
    else:
        _ramp_retarget(st, S_PANIC, 1.0, coef[C_UNPANIC_N])
    pos = int(st[S_POS])
    total = lim[L_SUM]
    head = lim[L_HEAD]
    length = lim[L_LEN]
    count = lim[L_COUNT]
    for i in range(n):
        # 1. guard
        v = x[i]
        if not math.isfinite(v):
            v = 0.0
            counters[K_NONFINITE] += 1
        elif v > INPUT_LIMIT:
            v = INPUT_LIMIT
            counters[K_OVERRANGE] += 1
        elif v < -INPUT_LIMIT:
            v = -INPUT_LIMIT
            counters[K_OVERRANGE] += 1
        # 2. DC blocker
        d = _flush(v - st[S_DC_X1] + coef[C_DC_R] * st[S_DC_Y1])
        st[S_DC_X1] = _flush(v)
        st[S_DC_Y1] = d
        # 3. high-pass (TDF-II)
        h = coef[C_B0] * d + st[S_HP_Z1]
        st[S_HP_Z1] = _flush(coef[C_B1] * d - coef[C_A1] * h + st[S_HP_Z2])
        st[S_HP_Z2] = _flush(coef[C_B2] * d - coef[C_A2] * h)
        # 3b. low-pass: the biquads in cascade (TDF-II)
        for k in range(lpc.shape[0]):
            q = lpc[k, 0] * h + lpz[k, 0]
            lpz[k, 0] = _flush(lpc[k, 1] * h - lpc[k, 3] * q + lpz[k, 1])
            lpz[k, 1] = _flush(lpc[k, 2] * h - lpc[k, 4] * q)
            h = q
        # 4. gain
        v = _flush(h * _ramp_next(st, S_GAIN))
        # 5. limiter: needed gain, min-hold over L+1, release, box average over L.
        a = abs(v)
        g = 1.0 if a <= ceil else ceil / a
        # The min-hold: the queue keeps, oldest first, the gains no later one undercuts;
        # its head is the window's minimum once the gains older than L+1 samples leave.
        while length > 0 and hold_val[(head + length - 1) % cap] >= g:
            length -= 1
        back = (head + length) % cap
        hold_val[back] = g
        hold_age[back] = count
        length += 1
        while hold_age[head] <= count - lg:
            head = (head + 1) % cap
            length -= 1
        held = hold_val[head]
        count += 1
        r = st[S_RELEASE]
        if held < r:
            r = held
        else:
            r += (held - r) * coef[C_RELEASE_K]
        st[S_RELEASE] = r
        slot = pos % la
        fixed = np.int64(r * GAIN_ONE)       # r in (0, 1]: exact scaling, rounded down
        total += fixed - released[slot]
        released[slot] = fixed
        s = (total * _GAIN_SCALE) / la
        out = delay[slot] * s
        delay[slot] = v
        pos += 1
        if pos >= la:
            pos = 0
        if s < _LIMITED_BELOW:
            counters[K_LIMITED] += 1
        # 6. mute and panic
        out *= _ramp_next(st, S_MUTE) * _ramp_next(st, S_PANIC)
        # 7. hard guarantee. The limiter lands exactly on the ceiling up to a few
        # ulps of rounding; only a larger excess counts (it means the limiter failed).
        a = abs(out)
        if not (a <= ceil):
            if not (a <= ceil * _CLAMP_TOLERANCE):
                counters[K_CLAMPED] += 1
            if out > 0.0:
                out = ceil
            elif out < 0.0:
                out = -ceil
            else:  # NaN (impossible after the guard; kept as the last line of defence)
                out = 0.0
        y[i] = out
    st[S_POS] = pos
    lim[L_SUM] = total
    lim[L_HEAD] = head
    lim[L_LEN] = length
    lim[L_COUNT] = count
    # Keep stored state finite (STYLE 4). With the input clamped this cannot
    # trigger; it is the last line of defence, and counted.
    bad = False
    for k in (S_DC_X1, S_DC_Y1, S_HP_Z1, S_HP_Z2):
        if not math.isfinite(st[k]):
            bad = True
    for k in range(lpz.shape[0]):
        if not (math.isfinite(lpz[k, 0]) and math.isfinite(lpz[k, 1])):
            bad = True
    if bad:
        st[S_DC_X1] = 0.0
        st[S_DC_Y1] = 0.0
        st[S_HP_Z1] = 0.0
        st[S_HP_Z2] = 0.0
        lpz[:, :] = 0.0
        counters[K_FLUSHED] += 1


def lowpass_sections(corner_hz: float | None, sample_rate: float) -> np.ndarray:
    """The biquads (sections, 5: b0 b1 b2 a1 a2, a0 = 1) of a twelfth-order Butterworth
    low-pass at ``corner_hz`` (RBJ's bilinear transform, prewarped at the corner, one
    section per Q of :data:`LOWPASS_QS`); no sections for None."""
    if corner_hz is None:
        return np.zeros((0, 5))
    w0 = 2.0 * math.pi * corner_hz / sample_rate
    cw, sw = math.cos(w0), math.sin(w0)
    out = np.zeros((len(LOWPASS_QS), 5))
    for k, q in enumerate(LOWPASS_QS):
        alpha = sw / (2.0 * q)
        a0 = 1.0 + alpha
        out[k] = ((1.0 - cw) / 2.0 / a0, (1.0 - cw) / a0, (1.0 - cw) / 2.0 / a0,
                  -2.0 * cw / a0, (1.0 - alpha) / a0)
    return out


def db_to_lin(db: float) -> float:
    """Linear amplitude of ``db`` dB (dBFS for levels)."""
    return 10.0 ** (db / 20.0)


def float32_floor(value: float) -> float:
    """The largest float32 value that is <= ``value`` (as a Python float)."""
    f = np.float32(value)
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    return float(f)


class SafetyChain:
    """Guard, DC blocker, 20 Hz high-pass, 17 kHz low-pass, gain, limiter, mute, panic,
    hard ceiling.

    ``sample_rate`` (Hz) and ``max_block`` (frames) size the state (the
    *prepare* step); ``ceiling_db`` (dBFS, in [-60, 0]) is the largest level a
    speaker receives; ``lookahead_ms`` (the limiter's lookahead, and the chain's
    latency, at least one sample) and ``release_ms`` shape the limiter;
    ``lowpass_hz`` (Hz, at least 1000, capped at 0.45 × ``sample_rate``; None: off) is
    the corner of the speaker-protecting low-pass.

    :meth:`process` runs on the audio thread. :meth:`set_gain_db`,
    :meth:`set_mute`, :meth:`panic` and :meth:`unpanic` are single element
    stores, safe from any thread; they take effect at the next block start.
    """

    GAIN_MIN_DB = -60.0
    GAIN_MAX_DB = 12.0

    def __init__(self, sample_rate: int, max_block: int, ceiling_db: float = -1.0, *,
                 lookahead_ms: float = 1.0, release_ms: float = 100.0,
                 lowpass_hz: float | None = LOWPASS_HZ) -> None:
        if not isinstance(sample_rate, (int, np.integer)) or not 8000 <= sample_rate <= 384000:
            raise ValueError(f"sample_rate must be a whole number in [8000, 384000] Hz; "
                             f"got {sample_rate!r}")
        if not isinstance(max_block, (int, np.integer)) or not 1 <= max_block <= 65536:
            raise ValueError(f"max_block must be a whole number in [1, 65536]; got {max_block!r}")
        if not (math.isfinite(ceiling_db) and -60.0 <= ceiling_db <= 0.0):
            raise ValueError(f"ceiling must be in [-60, 0] dBFS; got {ceiling_db!r}")
        if not (math.isfinite(lookahead_ms) and 0.0 <= lookahead_ms <= 20.0):
            raise ValueError(f"lookahead must be in [0, 20] ms; got {lookahead_ms!r}")
        if not (math.isfinite(release_ms) and 1.0 <= release_ms <= 5000.0):
            raise ValueError(f"release must be in [1, 5000] ms; got {release_ms!r}")
        if lowpass_hz is not None and not (isinstance(lowpass_hz, (int, float))
                                           and math.isfinite(lowpass_hz) and lowpass_hz >= 1000.0):
            raise ValueError(f"lowpass must be None (off) or at least 1000 Hz; got {lowpass_hz!r}")
        self.sample_rate = int(sample_rate)
        self.max_block = int(max_block)
        self.ceiling_db = float(ceiling_db)
        #: The ceiling as a linear amplitude, rounded down to a float32 value.
        self.ceiling = float32_floor(db_to_lin(ceiling_db))
        #: Delay of the chain (samples): the limiter's lookahead.
        self.latency = max(1, int(round(lookahead_ms * 1e-3 * self.sample_rate)))
        sr = float(self.sample_rate)
        coef = np.zeros(N_COEF)
        coef[C_DC_R] = math.exp(-2.0 * math.pi * DC_CORNER_HZ / sr)
        w0 = 2.0 * math.pi * HIGHPASS_HZ / sr
        alpha = math.sin(w0) / (2.0 * (1.0 / math.sqrt(2.0)))
        a0 = 1.0 + alpha
        cw = math.cos(w0)
        coef[C_B0] = (1.0 + cw) / 2.0 / a0
        coef[C_B1] = -(1.0 + cw) / a0
        coef[C_B2] = (1.0 + cw) / 2.0 / a0
        coef[C_A1] = -2.0 * cw / a0
        coef[C_A2] = (1.0 - alpha) / a0
        coef[C_CEIL] = self.ceiling
        coef[C_RELEASE_K] = 1.0 - math.exp(-1.0 / (release_ms * 1e-3 * sr))
        coef[C_RAMP_N] = max(1.0, round(RAMP_S * sr))
        coef[C_PANIC_N] = max(1.0, round(PANIC_FADE_S * sr))
        coef[C_UNPANIC_N] = max(1.0, round(UNPANIC_FADE_S * sr))
        self._coef = coef
        #: Corner of the speaker-protecting low-pass (Hz), None when off.
        self.lowpass_hz = None if lowpass_hz is None else min(float(lowpass_hz), 0.45 * sr)
        self._lpc = lowpass_sections(self.lowpass_hz, sr)
        self._lpz = np.zeros((self._lpc.shape[0], 2))
        self._targets = np.zeros(N_TARGETS)
        self._state = np.zeros(N_STATE)
        self._delay = np.zeros(self.latency)
        self._released = np.zeros(self.latency, dtype=np.int64)
        self._hold_val = np.zeros(self.latency + 2)
        self._hold_age = np.zeros(self.latency + 2, dtype=np.int64)
        self._lim = np.zeros(N_LIM, dtype=np.int64)
        self._counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self._gain_db = 0.0
        self._targets[T_GAIN] = 1.0
        self.reset()

    # --- control (any thread) -------------------------------------------------------
    def set_gain_db(self, db: float) -> None:
        """Set the output gain target (dB, in [-60, +12]); ramped over 10 ms."""
        db = float(db)
        if not (math.isfinite(db) and self.GAIN_MIN_DB <= db <= self.GAIN_MAX_DB):
            raise ValueError(f"gain must be in [{self.GAIN_MIN_DB:g}, {self.GAIN_MAX_DB:g}] dB; "
                             f"got {db!r}")
        self._gain_db = db
        self._targets[T_GAIN] = db_to_lin(db)

    def set_mute(self, muted: bool) -> None:
        """Mute (fade out over 10 ms) or unmute (fade in over 10 ms)."""
        self._targets[T_MUTE] = 1.0 if muted else 0.0

    def panic(self) -> None:
        """Fade to exact silence within :data:`PANIC_FADE_S` of the next block start; stay silent."""
        self._targets[T_PANIC] = 1.0

    def unpanic(self) -> None:
        """Fade back in over :data:`UNPANIC_FADE_S`."""
        self._targets[T_PANIC] = 0.0

    @property
    def gain_db(self) -> float:
        """The gain target (dB)."""
        return self._gain_db

    @property
    def muted(self) -> bool:
        return bool(self._targets[T_MUTE])

    @property
    def panicked(self) -> bool:
        return bool(self._targets[T_PANIC])

    @property
    def output_factor(self) -> float:
        """The current mute × panic factor in [0, 1] (0 = exact silence)."""
        return float(self._state[S_MUTE] * self._state[S_PANIC])

    def counters(self) -> dict[str, int]:
        """Event counts since construction: non-finite and over-range input samples,
        limited samples, hard-clamped samples, state flushes."""
        return {name: int(v) for name, v in zip(COUNTER_NAMES, self._counters, strict=False)}

    # --- audio thread -----------------------------------------------------------------
    def reset(self) -> None:
        """Clear filter and limiter state; ramps jump to their targets (no fade)."""
        st = self._state
        st[:] = 0.0
        st[S_RELEASE] = 1.0
        gain = self._targets[T_GAIN]
        mute = 0.0 if self._targets[T_MUTE] else 1.0
        panic = 0.0 if self._targets[T_PANIC] else 1.0
        for base, value in ((S_GAIN, gain), (S_MUTE, mute), (S_PANIC, panic)):
            st[base] = value
            st[base + 1] = value
        self._delay[:] = 0.0
        self._released[:] = GAIN_ONE         # unity gain before the first sample
        self._lim[:] = 0
        self._lim[L_SUM] = GAIN_ONE * self.latency
        self._lpz[:] = 0.0

    def process(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Run the chain over ``x`` (float64, any length; longer than ``max_block`` is
        split). Writes into ``out`` (float64, same length; may be ``x`` itself) and
        returns it; without ``out`` a new array is returned. Allocates nothing given
        ``out``."""
        n = x.shape[0]
        if out is None:
            out = np.empty(n)
        start = 0
        while start < n:
            end = min(n, start + self.max_block)
            safety_kernel(x[start:end], out[start:end], end - start, self._targets,
                          self._state, self._coef, self._delay, self._released,
                          self._hold_val, self._hold_age, self._lim, self._counters,
                          self._lpc, self._lpz)
            start = end
        return out
