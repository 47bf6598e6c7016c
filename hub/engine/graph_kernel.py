"""The routing graph's numba kernel: the per-sample work of :class:`anamnesis.hub.engine.graph.RoutingGraph`.

:func:`route_kernel` routes a block over explicit state arrays that the graph
allocates once (their column layouts are the constants below; histories and
source buffers are a power of two long, ``_next_pow2``, so positions wrap with a
mask); it allocates nothing and releases the GIL. It writes the block of every agent's
output into its history, runs every edge over the block (its state in registers) — a delay (fractional, linear interpolation between two
samples), a one-pole high-pass, a one-pole low-pass, a gain (linear) and an
optional ``tanh`` shape, gain *before* tanh, so a tanh edge can never deliver
more than ±1 whatever its gain — and adds every source (its rendered samples times
its envelope, gain and per-agent weights) to the inputs. Non-finite outputs enter
the history as 0 and are counted.

Smooth changes (STYLE 5)
------------------------
* gain, filter coefficients, the tanh mix, source gains and source→agent
  weights glide to their targets with a one-pole lag (SuperCollider's ``Lag``:
  within 60 dB of the target after ``lag_s``, default 50 ms, and exactly on it
  once closer than 1e-12; per sample a value moves by at most ``(1 - c)`` of
  the remaining distance, ``c = 0.001 ** (1 / (lag_s * sample_rate))``,
  ``_lag_coefficient``);
* a delay change crossfades linearly between two read heads over
  ``crossfade_s`` (50 ms); a change arriving during a crossfade waits for it;
* adding, removing, or bypassing an edge (an agent going offline) fades it
  linearly over ``fade_s`` (default 50 ms).

Block-size invariance: the kernel works sample by sample and keeps every state
between calls, so any split of the same output stream into ticks of 0..max_block
frames — with the same changes made at the same sample positions — gives
bit-identical inputs.
"""

from __future__ import annotations

import math

from numba import njit

# Edge target parameters (ep columns).
_P_GAIN, _P_LP, _P_HP, _P_HPW, _P_SHAPE, _P_DELAY, _P_EN, _P_ENSTEP = range(8)
_N_P = 8
# Edge state (es columns): the five lagged copies of the first five targets, then
_S_LPY, _S_HPS, _S_DA, _S_DB, _S_XF, _S_XFON, _S_EN = range(5, 12)
_N_S = 12
_N_LAGGED = 5
# Edge ints (ei columns).
_I_SRC, _I_DST, _I_USED = range(3)
# Source targets (sp columns) and state (ss, si).
(_SP_GAIN, _SP_EN, _SP_ENSTEP, _SP_START, _SP_ATTACK, _SP_HOLD, _SP_RELEASE,
 _SP_EVERY) = range(8)
_N_SP = 8
_SS_GAIN, _SS_EN = range(2)
_SI_USED, _SI_CLOCK, _SI_READ, _SI_WRITTEN = range(4)
# Counters.
_C_NONFINITE = 0


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _lag_coefficient(lag_s: float, sample_rate: int) -> float:
    """Per-sample one-pole coefficient reaching -60 dB of a step in ``lag_s`` seconds."""
    return 0.0 if lag_s <= 0.0 else math.exp(math.log(0.001) / (lag_s * sample_rate))


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True, inline="always")
def _read(hist, src, p, d, mask):
    """History of agent ``src`` ``d`` (>= 0, fractional) samples before position ``p``."""
    i = int(d)
    f = d - i
    a = hist[src, (p - i) & mask]
    if f == 0.0:
        return a
    b = hist[src, (p - i - 1) & mask]
    return a + f * (b - a)


@njit(cache=True, nogil=True, inline="always")
def _glide(value, target, lag_c):
    """One sample of the one-pole lag of ``value`` toward ``target``; on it once closer
    than 1e-12."""
    dist = value - target
    return target if abs(dist) < 1e-12 else target + lag_c * dist


@njit(cache=True, nogil=True, inline="always")
def _envelope(u, attack, hold, release, every):
    """Envelope value ``u`` samples after the source's start (u >= 0)."""
    if every > 0.0:
        u = u % every
    if u < attack:
        return u / attack
    u -= attack
    if hold < 0.0 or u < hold:
        return 1.0
    u -= hold
    if u < release:
        return 1.0 - u / release
    return 0.0


@njit(cache=True, nogil=True)
def route_kernel(frames, outputs, out, mics, use_mics, n_agents, hist, clock,
                 ei, ep, es, n_edges, lag_c, xf_step,
                 si, sp, ss, sbuf, tw, ts, n_sources, counters):
    """Route ``frames`` samples: outputs (frames, n_agents) -> out (frames, n_agents).

    ``hist`` (agents, H) is each agent's output history (H a power of two),
    written at ``clock[0] + n``; ``ei/ep/es`` are the edge slots (ints,
    targets, state), ``si/sp/ss/sbuf/tw/ts`` the source slots (ints, targets,
    state, rendered samples, target weights, lagged weights); ``mics``
    (frames, n_agents) is added when ``use_mics``. ``lag_c`` is the per-sample
    lag coefficient, ``xf_step`` the delay crossfade step per sample.
    Non-finite output samples enter the history as 0 and are counted.
    """
    mask = hist.shape[1] - 1
    rmask = sbuf.shape[1] - 1
    pos = clock[0]
    # The block's outputs enter the histories first (an edge reads outputs only, never
    # another edge's result, and the history holds max_delay + max_block samples), then
    # each edge runs over the whole block with its state in locals, then each source:
    # every input sample sums the same terms in the same order as sample by sample.
    for n in range(frames):
        w = (pos + n) & mask
        for a in range(n_agents):
            v = outputs[n, a]
            if not math.isfinite(v):
                v = 0.0
                counters[_C_NONFINITE] += 1
            hist[a, w] = v
            out[n, a] = mics[n, a] if use_mics else 0.0
    for e in range(n_edges):
        if ei[e, _I_USED] == 0:
            continue
        src = ei[e, _I_SRC]
        dst = ei[e, _I_DST]
        t_gain, t_lp, t_hp = ep[e, _P_GAIN], ep[e, _P_LP], ep[e, _P_HP]
        t_hpw, t_shape = ep[e, _P_HPW], ep[e, _P_SHAPE]
        goal, en_step, delay = ep[e, _P_EN], ep[e, _P_ENSTEP], ep[e, _P_DELAY]
        gain, lp, hp, hpw, shape = (es[e, _P_GAIN], es[e, _P_LP], es[e, _P_HP],
                                    es[e, _P_HPW], es[e, _P_SHAPE])
        lpy, hps, da, db = es[e, _S_LPY], es[e, _S_HPS], es[e, _S_DA], es[e, _S_DB]
        xf, xfon, en = es[e, _S_XF], es[e, _S_XFON], es[e, _S_EN]
        if (gain == t_gain and lp == t_lp and hp == t_hp and hpw == t_hpw and shape == t_shape
                and en == goal and xfon == 0.0 and delay == da
                and lp == 0.0 and hpw == 0.0 and shape == 0.0):
            # A settled plain edge (no glide, fade or crossfade; no filter, no tanh): the
            # general path's arithmetic reduces exactly to this (its low-pass flush makes
            # every |x| < 1e-30, signed zeros included, a +0.0; the parked high-pass state
            # still runs, for the day the high-pass is switched on).
            g = gain * en
            for n in range(frames):
                x = _read(hist, src, pos + n, da, mask)
                s = x + hp * (hps - x)
                if abs(s) < 1e-30:
                    s = 0.0
                hps = s
                lpy = x if abs(x) >= 1e-30 else 0.0
                out[n, dst] += lpy * g
            es[e, _S_HPS], es[e, _S_LPY] = hps, lpy
            continue
        for n in range(frames):
            p = pos + n
            # gain, coefficients, tanh mix glide to their targets
            gain = _glide(gain, t_gain, lag_c)
            lp = _glide(lp, t_lp, lag_c)
            hp = _glide(hp, t_hp, lag_c)
            hpw = _glide(hpw, t_hpw, lag_c)
            shape = _glide(shape, t_shape, lag_c)
            if en < goal:
                en = min(goal, en + en_step)
            elif en > goal:
                en = max(goal, en - en_step)
            if xfon == 0.0 and delay != da:
                db = delay                  # start a crossfade to the new delay
                xf = 0.0
                xfon = 1.0
            x = _read(hist, src, p, da, mask)
            if xfon != 0.0:
                xb = _read(hist, src, p, db, mask)
                f = xf + xf_step
                if f >= 1.0:
                    x = xb
                    da = db
                    xf = 0.0
                    xfon = 0.0
                else:
                    x = x + f * (xb - x)
                    xf = f
            s = x + hp * (hps - x)          # the high-pass's low band
            if abs(s) < 1e-30:
                s = 0.0
            hps = s
            x = x - hpw * s
            y = x + lp * (lpy - x)          # one-pole low-pass
            if abs(y) < 1e-30:
                y = 0.0
            lpy = y
            y = y * (gain * en)
            if shape != 0.0:
                y = y + shape * (math.tanh(y) - y)
            out[n, dst] += y
        es[e, _P_GAIN], es[e, _P_LP], es[e, _P_HP] = gain, lp, hp
        es[e, _P_HPW], es[e, _P_SHAPE] = hpw, shape
        es[e, _S_LPY], es[e, _S_HPS], es[e, _S_DA], es[e, _S_DB] = lpy, hps, da, db
        es[e, _S_XF], es[e, _S_XFON], es[e, _S_EN] = xf, xfon, en
    for q in range(n_sources):
        if si[q, _SI_USED] == 0:
            continue
        for n in range(frames):
            ss[q, _SS_GAIN] = _glide(ss[q, _SS_GAIN], sp[q, _SP_GAIN], lag_c)
            en = ss[q, _SS_EN]
            goal = sp[q, _SP_EN]
            if en < goal:
                en = min(goal, en + sp[q, _SP_ENSTEP])
            elif en > goal:
                en = max(goal, en - sp[q, _SP_ENSTEP])
            ss[q, _SS_EN] = en
            for a in range(n_agents):
                ts[q, a] = _glide(ts[q, a], tw[q, a], lag_c)
            t = si[q, _SI_CLOCK]
            si[q, _SI_CLOCK] = t + 1
            u = float(t) - sp[q, _SP_START]
            if u < 0.0:
                continue                                  # the signal starts with the envelope
            v = sbuf[q, si[q, _SI_READ] & rmask]
            si[q, _SI_READ] += 1
            if not math.isfinite(v):
                v = 0.0
            v = v * _envelope(u, sp[q, _SP_ATTACK], sp[q, _SP_HOLD], sp[q, _SP_RELEASE],
                              sp[q, _SP_EVERY]) * ss[q, _SS_GAIN] * en
            if v != 0.0:
                for a in range(n_agents):
                    out[n, a] += v * ts[q, a]
    clock[0] = pos + frames


__all__ = ["route_kernel"]
