"""Numba kernels of AutoRegNN: the per-sample loop over explicit state arrays.

The classes in :mod:`anamnesis.agents.models.autoregnn` validate, allocate and own the
arrays; everything here is a function of its arguments (STYLE 2) and also runs
as plain Python with ``NUMBA_DISABLE_JIT=1``, bit for bit (see ``fma``).

Three entry points: ``run_single`` (one network), ``run_bank`` (a bank of
agents in lockstep) and ``run_pair`` (AutoRegNN2); the last two share the
compiled kernel ``run_lanes``.

Layout: agents as SIMD lanes
----------------------------
In a bank of A networks (input size n, hidden size h), everything that belongs
to hidden neuron j of agent a lives in lane ``i = j*A + a`` of rows of
``L = h*A`` float64 values, so the hot loops run over L contiguous lanes and
vectorise for any A. The flat weights of a bank are
``theta = [W1 (n rows of L) | b1 (L) | W2 (L) | b2 (A)]``; ``W1[k, j*A + a]`` is
agent a's weight from cascade stage k to neuron j. ``run_single`` uses the same
flat layout with A = 1.

The bank's cascades are *tiled*: lane j*A + a holds agent a's stage value for
every j (h identical copies, each updated by the same operations), so the
weight loops read their inputs lane-aligned. Stage k lives at ``C[k & 1, k >> 1]``:
each stage is computed from the previous one, which is always in the other
half. (Numba cannot tell LLVM that arrays do not overlap, so LLVM checks at run
time; it hoists that check over the whole stage loop, and with all stages in
one block the check would always fail and run the loop in scalar code.) For
the same reason every lane loop touches few distinct rows (LLVM gives up above
8 run-time checks).

The per-sample loops are written out inside the kernels, not in helper
functions: numba reference-counts every array passed to a function (an atomic
increment and decrement per argument and call), which cost a quarter of the run
time when the sample loop called helpers. Helpers run once per block or on the
rare blow-up path only.

Arithmetic
----------
Every agent sees the same sequence of IEEE-754 float64 operations whatever A
is and whatever vector width the compiler picks: sums are accumulated in a
fixed order (``z = b1; z = fma(W1[k], u[k], z)`` for k = 1..n; ``o = b2;
o = fma(W2[j], a[j], o)`` for j = 1..h), products use explicit fused
multiply-adds (``fma``: one rounding, the same in scalar and vector code), and
no fast-math flag lets the compiler reassociate. So a bank column is
bit-identical to a single model, and block splits do not change a bit — except
that at the end of every call, state below 1e-30 in magnitude is set to zero
(``flush_tiny``: in long silence the decaying state would otherwise reach the
subnormal floats, on which the kernel runs up to 100 times slower); only a
network that has decayed that far can tell where its blocks were split.

The gradient step is written ``w_new = fma(-(lr*g), u, w*(1 - 2*lr*λ))``,
DESIGN's ``w - lr*(g*u + 2λ*w)`` rearranged (equal in exact arithmetic, within
rounding in float64); ``lr*delta_j`` is computed as ``((lr*g)*W2_j)*a'(z_j)``.
A frozen agent (learn = 0) steps with ``lr*g = 0`` and decay 1: exactly no
change.

libm's ``tanh``/``sin``/``cos`` are scalar calls that block vectorisation and
cost most of the time of a naive kernel (18 tanh per sample at h = 8), so
``fast_tanh`` and ``fast_sincos`` are float64 implementations (Cody-Waite range
reduction, polynomial, exponent assembled from bits; tanh branch-free) with
|error| < 5e-16 (tested against numpy). Two documented differences from libm,
both about non-finite values: ``fast_tanh(+-inf)`` is NaN (not +-1), so that an
infinite pre-activation (a blow-up) is never hidden by saturation, and
``fast_sincos`` falls back to libm for |z| > 1e5, where the short reduction
would lose accuracy.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_JIT = dict(cache=True, nogil=True, error_model="numpy")
# scalar functions called in vectorised loops are inlined at numba IR level
_INLINE = dict(_JIT, inline="always")

# --- indices into the int64 counter array ctr[i, a] (one column per agent) ------------
CTR_BLOWUPS = 0           # blow-ups since construction (never reset)
CTR_NONFINITE = 1         # non-finite input samples replaced by 0 (never reset)
CTR_SAMPLES = 2           # samples processed since construction
CTR_INTERVAL_BLOWUPS = 3  # blow-ups since the last snapshot point
CTR_UNTIL_SNAPSHOT = 4    # samples until the next snapshot point
CTR_INTERVAL = 5          # snapshot interval, samples
CTR_SEED_RESTORES = 6     # blow-ups that fell back to the seed's initial weights
N_CTR = 7

# --- rows of the per-agent parameter array lane_prm[row, a] -------------------------
LANE_LR = 0
LANE_RIDGE = 1
LANE_LEARN = 2
N_LANE = 3

# --- rows of the scratch array work[row, :L] ----------------------------------------------
# per lane: pre-activations on T and on G, activation and its derivative, lr*delta,
# and per-agent values tiled over the agent's lanes (decay, lr*g, the input x, the output y)
W_ZT, W_ZG, W_ACT, W_DACT, W_LRD, W_DEC, W_LRG, W_X, W_Y = range(9)
# per agent (first A entries): output, input, lr, ridge, decay, lr*g
W_O, W_XS, W_ALR, W_ARIDGE, W_ADEC, W_ALRG = range(9, 15)
N_WORK = 15


# --- fused multiply-add ------------------------------------------------------------------

def fma(a: float, b: float, c: float) -> float:
    """a*b + c rounded once (IEEE 754 fusedMultiplyAdd, round to nearest).

    Plain Python (used with NUMBA_DISABLE_JIT): exact rational arithmetic and one
    correctly rounded conversion. Compiled: the ``llvm.fma.f64`` instruction.
    """
    if not (math.isfinite(a) and math.isfinite(b)):
        return a * b + c          # an infinite or NaN product: IEEE gives the same
    if not math.isfinite(c):
        return c + 0.0            # a finite product cannot change inf; NaN stays NaN
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:                # the sign of an exact zero sum (IEEE 754 §6.3)
        product_negative = math.copysign(1.0, a) * math.copysign(1.0, b) < 0
        both_negative_zeros = a * b == 0 and c == 0 and product_negative and math.copysign(1.0, c) < 0
        return -0.0 if both_negative_zeros else 0.0
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


@intrinsic
def _llvm_fma(typingctx, a, b, c):
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.DoubleType(), [ir.DoubleType()] * 3)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@overload(fma, inline="always")
def _fma_overload(a, b, c):
    if all(isinstance(v, types.Float) for v in (a, b, c)):
        return lambda a, b, c: _llvm_fma(a, b, c)
    return None


# --- fast, accurate tanh ------------------------------------------------------------------
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01   # ln 2, high 32 bits: k*_LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0            # 1.5 * 2**52: (v + _ROUND) - _ROUND rounds v to an integer
# 1/(i+2)! for i = 0..11: expm1(r) = r + r^2 * sum_i r^i/(i+2)!, truncation < 1e-17 on |r| <= ln2/2
_E0, _E1, _E2, _E3 = 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0
_E4, _E5, _E6, _E7 = 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0, 1.0 / 362880.0
_E8, _E9, _E10, _E11 = 1.0 / 3628800.0, 1.0 / 39916800.0, 1.0 / 479001600.0, 1.0 / 6227020800.0


@njit(**_INLINE)
def fast_tanh(z):
    """tanh(z) for float64 z, |error| < 5e-16; NaN for NaN and +-inf (see module doc).

    tanh|z| = -E / (2 + E) with E = expm1(-2|z|), so small arguments keep their
    relative accuracy. expm1(w) = 2^k * expm1(r) + (2^k - 1) after reducing
    w = k ln2 + r; both 2^k and 2^k - 1 are exact for the k used (-58..0).
    """
    w = -2.0 * abs(z)
    # beyond |z| = 20, tanh is 1 to the last bit; the clamp keeps 2^k normal and
    # the reduction finite (a non-finite z is turned into NaN at the end)
    w = w if w >= -40.0 else -40.0
    kf = (w * _LOG2E + _ROUND) - _ROUND
    r = fma(-kf, _LN2_LO, fma(-kf, _LN2_HI, w))
    r2 = r * r
    r4 = r2 * r2
    q0 = fma(fma(_E3, r, _E2), r2, fma(_E1, r, _E0))
    q1 = fma(fma(_E7, r, _E6), r2, fma(_E5, r, _E4))
    q2 = fma(fma(_E11, r, _E10), r2, fma(_E9, r, _E8))
    q = fma(q2, r4 * r4, fma(q1, r4, q0))
    em1r = fma(r2, q, r)
    s = np.int64((np.int64(kf) + 1023) << 52).view(np.float64)   # 2^k, exact
    em1 = fma(s, em1r, s - 1.0)
    t = -em1 / (2.0 + em1) + (z - z)    # z - z: 0, or NaN for z = +-inf or NaN
    return math.copysign(t, z)


# --- fast, accurate sin and cos -------------------------------------------------------------
_TWO_OVER_PI = 6.36619772367581382433e-01
# pi/2 in three parts (33 + 33 + 53 bits): k * part is exact for |k| < 2^20
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_2 = 6.07710050650619224932e-11
_PIO2_3 = 2.02226624871116645580e-21
_SINCOS_LIMIT = 1.0e5
# Taylor coefficients on |r| <= pi/4: truncation < 1e-19
_S1, _S2, _S3, _S4 = -1.0 / 6.0, 1.0 / 120.0, -1.0 / 5040.0, 1.0 / 362880.0
_S5, _S6, _S7, _S8 = -1.0 / 39916800.0, 1.0 / 6227020800.0, -1.0 / 1307674368000.0, 1.0 / 355687428096000.0
_C1, _C2, _C3, _C4, _C5 = -1.0 / 2.0, 1.0 / 24.0, -1.0 / 720.0, 1.0 / 40320.0, -1.0 / 3628800.0
_C6, _C7, _C8, _C9 = 1.0 / 479001600.0, -1.0 / 87178291200.0, 1.0 / 20922789888000.0, -1.0 / 6402373705728000.0


@njit(**_JIT)
def fast_sincos(z):
    """(sin z, cos z) for float64 z, |error| < 5e-16; libm beyond |z| = 1e5; NaN for non-finite z."""
    if abs(z) > _SINCOS_LIMIT:
        if not (z - z == 0.0):     # inf or NaN (as Python's math.sin would raise)
            return z - z, z - z
        return math.sin(z), math.cos(z)
    kf = (z * _TWO_OVER_PI + _ROUND) - _ROUND
    r = fma(-kf, _PIO2_3, fma(-kf, _PIO2_2, fma(-kf, _PIO2_1, z)))
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    sp = fma(fma(fma(_S8, r2, _S7), r4, fma(_S6, r2, _S5)), r8,
             fma(fma(_S4, r2, _S3), r4, fma(_S2, r2, _S1)))
    sr = fma(r * r2, sp, r)
    cp = fma(fma(fma(_C9, r2, _C8), r4, fma(_C7, r2, _C6)), r8,
             fma(fma(_C5, r2, _C4), r4, fma(_C3, r2, _C2)))
    cr = fma(r4, cp, fma(_C1, r2, 1.0))
    ki = kf if kf == kf else 0.0
    quadrant = np.int64(ki) & 3
    if quadrant == 0:
        return sr, cr
    if quadrant == 1:
        return cr, -sr
    if quadrant == 2:
        return -sr, -cr
    return -cr, sr


# --- helpers: once per block, or on the rare blow-up path only (see the module doc) -----


@njit(**_JIT)
def _accumulate(work, row, b1, W1, U):
    """work[row] = b1 + sum_k W1[k] * (stage k of the tiled cascade U), lane-wise, k in order."""
    L = b1.shape[0]
    for i in range(L):
        work[row, i] = b1[i]
    for k in range(W1.shape[0]):
        p = k & 1
        r = k >> 1
        for i in range(L):
            work[row, i] = fma(W1[k, i], U[p, r, i], work[row, i])


# --- one agent at a time: the rare blow-up path (same operations as the lane loops) ---------


@njit(**_JIT)
def _agent_z(theta, n, h, A, U, a, j):
    """Pre-activation of neuron j of agent a on cascade U: (2, m, L) tiled or (2, m, A) not."""
    L = h * A
    i = j * A + a
    col = i if U.shape[2] == L else a
    z = theta[n * L + i]
    for k in range(n):
        z = fma(theta[k * L + i], U[k & 1, k >> 1, col], z)
    return z


@njit(**_JIT)
def _agent_generate(theta, n, h, A, Gx, mix_t, a):
    """net(G) of agent a alone."""
    L = h * A
    o = theta[(n + 2) * L + a]
    for j in range(h):
        i = j * A + a
        z = _agent_z(theta, n, h, A, Gx, a, j)
        act = fast_tanh(z)
        m = mix_t[i]
        if m != 0.0:
            s, _ = fast_sincos(z)
            act = fma(m, s, (1.0 - m) * act)
        o = fma(theta[(n + 1) * L + i], act, o)
    return fast_tanh(o)


@njit(**_JIT)
def _agent_refresh_zt(theta, n, h, A, Tx, work, a):
    for j in range(h):
        work[W_ZT, j * A + a] = _agent_z(theta, n, h, A, Tx, a, j)


@njit(**_JIT)
def _copy_agent(dst, src, n, h, A, a):
    L = h * A
    for r in range(n + 2):
        for j in range(h):
            idx = r * L + j * A + a
            dst[idx] = src[idx]
    dst[(n + 2) * L + a] = src[(n + 2) * L + a]


@njit(**_JIT)
def _agent_finite(theta, n, h, A, a):
    L = h * A
    acc = theta[(n + 2) * L + a] * 0.0
    for r in range(n + 2):
        for j in range(h):
            acc += theta[r * L + j * A + a] * 0.0
    return acc == 0.0


@njit(**_JIT)
def _restore_agent(theta, snap, init, n, h, A, ctr, col, a):
    """Restore agent a's weights: the last good snapshot on the first blow-up of a snapshot
    interval, the seed's weights (which become the snapshot) on a further one."""
    if ctr[CTR_INTERVAL_BLOWUPS, col] <= 1:
        _copy_agent(theta, snap, n, h, A, a)
    else:
        ctr[CTR_SEED_RESTORES, col] += 1
        _copy_agent(theta, init, n, h, A, a)
        _copy_agent(snap, init, n, h, A, a)


@njit(**_JIT)
def _any_nonzero(v):
    for i in range(v.shape[0]):
        if v[i] != 0.0:
            return True
    return False


#: Magnitude below which learnt state is set to exactly zero at the end of every call.
TINY = 1e-30


@njit(**_JIT)
def flush_tiny(a):
    """Set every value of the C-contiguous array ``a`` with ``|v| < TINY`` to 0, in place.

    In silence the weights decay by ``1 - 2 lr ridge`` and the cascades by ``c_k`` every
    sample, down into subnormal floats, on which x86 arithmetic runs up to 100x slower
    (measured: 27 us/sample instead of 0.2). Values below 1e-30 are far below anything
    audible; at the end of each call they become 0 and stay there until the input
    returns. (Non-finite values are left for the blow-up path.)
    """
    flat = a.reshape(-1)
    for i in range(flat.size):
        if abs(flat[i]) < TINY:
            flat[i] = 0.0


# --- the kernels --------------------------------------------------------------------------------


@njit(**_JIT)
def run_lanes(x, col0, frames, lr_mod, ridge_mod, lane_prm, theta, snap, init, mix_t, casc,
              coef, ctr, work, err2, out, pair, out1, interp_mod, alpha0, theta_mix, mix1,
              casc_g, work_g):
    """The sample loop of AutoRegNNBank (``pair`` False) and AutoRegNN2 (``pair`` True).

    The A agents learn in lockstep (DESIGN steps 1-3) from columns col0..col0+A-1
    of x. In bank mode each then generates from its own weights (step 4) into
    the same columns of out. lr_mod / ridge_mod: (frames, >1) per agent (the same
    columns), (frames, 1) shared, or (0, 0) to use lane_prm. In pair
    mode (A = 2, the parameter sets a and b) a single generator with weights
    theta_mix = (1-alpha) set a + alpha set b (alpha = interp_mod[t] or alpha0)
    writes out1 (frames,); mix1 (h,), casc_g (2, m, h) and work_g (N_WORK, h)
    are its activation mix, tiled G cascade and scratch (dummies in bank mode).
    """
    A = lane_prm.shape[1]
    n = coef.shape[1]
    L = casc.shape[3]
    h = L // A
    Tx = casc[0]
    Gx = casc[1]
    work3 = work.reshape(work.shape[0], h, A)
    c = coef[0]
    oc = coef[1]
    W1 = theta[:n * L].reshape(n, L)
    b1 = theta[n * L:(n + 1) * L]
    W2 = theta[(n + 1) * L:(n + 2) * L]
    W2hA = W2.reshape(h, A)
    b2 = theta[(n + 2) * L:(n + 2) * L + A]
    learn = lane_prm[LANE_LEARN]
    lr_cols = lr_mod.shape[1]
    ridge_cols = ridge_mod.shape[1]
    use_interp = interp_mod.shape[0] > 0
    any_mix = _any_nonzero(mix_t)
    if pair:
        W1m = theta_mix[:n * h].reshape(n, h)
        b1m = theta_mix[n * h:(n + 1) * h]
        W2m = theta_mix[(n + 1) * h:(n + 2) * h]
        b2m = theta_mix[(n + 2) * h:(n + 2) * h + 1]
    else:   # unused
        W1m = W1
        b1m = b1
        W2m = W2
        b2m = b2
    _accumulate(work, W_ZT, b1, W1, Tx)
    for t in range(frames):
        # per-agent input (non-finite -> 0, counted) and rates of this sample
        for a in range(A):
            v = x[t, col0 + a]
            if not (v - v == 0.0):
                v = 0.0
                ctr[CTR_NONFINITE, a] += 1
            work[W_XS, a] = v
            if lr_cols > 1:
                work[W_ALR, a] = lr_mod[t, col0 + a]
            elif lr_cols == 1:
                work[W_ALR, a] = lr_mod[t, 0]
            else:
                work[W_ALR, a] = lane_prm[LANE_LR, a]
            if ridge_cols > 1:
                work[W_ARIDGE, a] = ridge_mod[t, col0 + a]
            elif ridge_cols == 1:
                work[W_ARIDGE, a] = ridge_mod[t, 0]
            else:
                work[W_ARIDGE, a] = lane_prm[LANE_RIDGE, a]

        # 1. predict each input from its training cascade: yhat = net(T) (zT is ready)
        for i in range(L):
            th = fast_tanh(work[W_ZT, i])
            work[W_ACT, i] = th
            work[W_DACT, i] = fma(-th, th, 1.0)
        if any_mix:
            for i in range(L):
                m = mix_t[i]
                if m != 0.0:
                    sn, cs = fast_sincos(work[W_ZT, i])
                    work[W_ACT, i] = fma(m, sn, (1.0 - m) * work[W_ACT, i])
                    work[W_DACT, i] = fma(m, cs, (1.0 - m) * work[W_DACT, i])
        for a in range(A):
            work[W_O, a] = b2[a]
        for j in range(h):
            for a in range(A):
                work[W_O, a] = fma(W2hA[j, a], work3[W_ACT, j, a], work[W_O, a])
        for a in range(A):   # (a loop of its own, so that it vectorises)
            work[W_O, a] = fast_tanh(work[W_O, a])
        for a in range(A):
            yhat = work[W_O, a]
            e = yhat - work[W_XS, a]
            if e - e == 0.0:
                err2[a] += e * e
            g = (2.0 * e) * fma(-yhat, yhat, 1.0)          # dL/do = 2 e (1 - yhat^2)
            lr = work[W_ALR, a]
            if learn[a] != 0.0:
                lrg = lr * g
                work[W_ALRG, a] = lrg
                work[W_ADEC, a] = fma(-lr, 2.0 * work[W_ARIDGE, a], 1.0)   # 1 - 2 lr lambda
                b2[a] = b2[a] - lrg
            else:   # frozen: a step of exactly zero
                work[W_ALRG, a] = 0.0
                work[W_ADEC, a] = 1.0
        for j in range(h):   # spread the per-agent values over each agent's lanes
            for a in range(A):
                work3[W_LRG, j, a] = work[W_ALRG, a]
                work3[W_DEC, j, a] = work[W_ADEC, a]
                work3[W_X, j, a] = work[W_XS, a]

        # 2. gradient step on W2 and b1; lr delta_j = (lr g) W2_j da_j/dz_j with W2 from
        # before the step (exactly 0 when lr g is 0: delta itself may be NaN)
        for i in range(L):
            lrg = work[W_LRG, i]
            step = (lrg * W2[i]) * work[W_DACT, i]
            work[W_LRD, i] = step if lrg != 0.0 else 0.0
        for i in range(L):
            W2[i] = fma(-work[W_LRG, i], work[W_ACT, i], W2[i] * work[W_DEC, i])
        for i in range(L):
            bn = b1[i] - work[W_LRD, i]
            b1[i] = bn
            work[W_ZT, i] = bn
            work[W_ZG, i] = bn
        # 2. gradient step on W1 with the T that made the prediction; 3. feed x into T
        # (stage k hears stage k-1, which lives in the other half of Tx) and
        # accumulate next sample's zT = b1 + W1 T with the new weights and the new T
        for k in range(n):
            p = k & 1
            r = k >> 1
            for i in range(L):
                W1[k, i] = fma(-work[W_LRD, i], Tx[p, r, i], W1[k, i] * work[W_DEC, i])
            ck = c[k]
            ock = oc[k]
            if k == 0:
                for i in range(L):
                    tn = fma(ock, work[W_X, i], ck * Tx[0, 0, i])
                    Tx[0, 0, i] = tn
                    work[W_ZT, i] = fma(W1[0, i], tn, work[W_ZT, i])
            elif p == 1:
                for i in range(L):
                    tn = fma(ock, Tx[0, r, i], ck * Tx[1, r, i])
                    Tx[1, r, i] = tn
                    work[W_ZT, i] = fma(W1[k, i], tn, work[W_ZT, i])
            else:
                for i in range(L):
                    tn = fma(ock, Tx[1, r - 1, i], ck * Tx[0, r, i])
                    Tx[0, r, i] = tn
                    work[W_ZT, i] = fma(W1[k, i], tn, work[W_ZT, i])

        # 4. generate with the updated weights from G (G not yet fed)
        if not pair:
            for k in range(n):
                p = k & 1
                r = k >> 1
                for i in range(L):
                    work[W_ZG, i] = fma(W1[k, i], Gx[p, r, i], work[W_ZG, i])
            for i in range(L):
                work[W_ACT, i] = fast_tanh(work[W_ZG, i])
            if any_mix:
                for i in range(L):
                    m = mix_t[i]
                    if m != 0.0:
                        sn, cs = fast_sincos(work[W_ZG, i])
                        work[W_ACT, i] = fma(m, sn, (1.0 - m) * work[W_ACT, i])
            for a in range(A):
                work[W_O, a] = b2[a]
            for j in range(h):
                for a in range(A):
                    work[W_O, a] = fma(W2hA[j, a], work3[W_ACT, j, a], work[W_O, a])
            for a in range(A):
                work[W_O, a] = fast_tanh(work[W_O, a])
            finite = 0.0
            for a in range(A):
                finite += work[W_O, a] * 0.0    # NaN if any output is not finite
            if not (finite == 0.0):
                for a in range(A):
                    if not (work[W_O, a] - work[W_O, a] == 0.0):
                        work[W_O, a] = _bank_blowup(theta, snap, init, n, h, A, Tx, Gx, mix_t,
                                                    ctr, work, a)
            for a in range(A):
                out[t, col0 + a] = work[W_O, a]
            for j in range(h):
                for a in range(A):
                    work3[W_Y, j, a] = work[W_O, a]
            for i in range(L):
                Gx[0, 0, i] = fma(oc[0], work[W_Y, i], c[0] * Gx[0, 0, i])
            for k in range(1, n):
                p = k & 1
                r = k >> 1
                ck = c[k]
                ock = oc[k]
                if p == 1:
                    for i in range(L):
                        Gx[1, r, i] = fma(ock, Gx[0, r, i], ck * Gx[1, r, i])
                else:
                    for i in range(L):
                        Gx[0, r, i] = fma(ock, Gx[1, r - 1, i], ck * Gx[0, r, i])
            for a in range(A):
                ctr[CTR_SAMPLES, a] += 1
                ctr[CTR_UNTIL_SNAPSHOT, a] -= 1
                if ctr[CTR_UNTIL_SNAPSHOT, a] <= 0:
                    if _snapshot_point(ctr, a):
                        _copy_agent(snap, theta, n, h, A, a)
        else:
            alpha = interp_mod[t] if use_interp else alpha0
            _interpolate(theta_mix, theta, alpha, n, h)
            for j in range(h):
                work_g[W_ZG, j] = b1m[j]
            for k in range(n):
                p = k & 1
                r = k >> 1
                for j in range(h):
                    work_g[W_ZG, j] = fma(W1m[k, j], casc_g[p, r, j], work_g[W_ZG, j])
            o = b2m[0]
            for j in range(h):
                z = work_g[W_ZG, j]
                act = fast_tanh(z)
                m = mix1[j]
                if m != 0.0:
                    sn, cs = fast_sincos(z)
                    act = fma(m, sn, (1.0 - m) * act)
                o = fma(W2m[j], act, o)
            y = fast_tanh(o)
            if not (y - y == 0.0):
                y = _pair_blowup(theta, snap, init, n, h, Tx, casc_g, mix1, ctr, work, theta_mix,
                                 alpha)
            out1[t] = y
            prev = y
            for k in range(n):
                p = k & 1
                r = k >> 1
                prev = fma(oc[k], prev, c[k] * casc_g[p, r, 0])
                for j in range(h):
                    casc_g[p, r, j] = prev
            ctr[CTR_SAMPLES, 0] += 1
            ctr[CTR_UNTIL_SNAPSHOT, 0] -= 1
            if ctr[CTR_UNTIL_SNAPSHOT, 0] <= 0:
                if _snapshot_point(ctr, 0):
                    snap[:] = theta
    flush_tiny(theta)
    flush_tiny(casc)
    if pair:
        flush_tiny(casc_g)


@njit(**_JIT)
def _snapshot_point(ctr, col):
    """At a snapshot point: restart the clock; True if the interval just ended was clean."""
    ctr[CTR_UNTIL_SNAPSHOT, col] = ctr[CTR_INTERVAL, col]
    clean = ctr[CTR_INTERVAL_BLOWUPS, col] == 0
    ctr[CTR_INTERVAL_BLOWUPS, col] = 0
    return clean


@njit(**_JIT)
def _bank_blowup(theta, snap, init, n, h, A, Tx, Gx, mix_t, ctr, work, a):
    """Agent a generated a non-finite sample: restore, count, regenerate; returns the new y."""
    ctr[CTR_BLOWUPS, a] += 1
    ctr[CTR_INTERVAL_BLOWUPS, a] += 1
    _restore_agent(theta, snap, init, n, h, A, ctr, a, a)
    y = _agent_generate(theta, n, h, A, Gx, mix_t, a)
    if not (y - y == 0.0):   # the snapshot overflows at once: the seed's weights
        ctr[CTR_INTERVAL_BLOWUPS, a] += 1
        _restore_agent(theta, snap, init, n, h, A, ctr, a, a)
        y = _agent_generate(theta, n, h, A, Gx, mix_t, a)
    _agent_refresh_zt(theta, n, h, A, Tx, work, a)
    return y


@njit(**_JIT)
def _pair_blowup(theta, snap, init, n, h, Tx, casc_g, mix1, ctr, work, theta_mix, alpha):
    """AutoRegNN2's generator produced a non-finite sample: restore the non-finite set(s)
    (both if the weights are finite but overflow), count once, regenerate."""
    ctr[CTR_BLOWUPS, 0] += 1
    ctr[CTR_INTERVAL_BLOWUPS, 0] += 1
    bad_a = not _agent_finite(theta, n, h, 2, 0)
    bad_b = not _agent_finite(theta, n, h, 2, 1)
    if not (bad_a or bad_b):
        bad_a = True
        bad_b = True
    if bad_a:
        _restore_agent(theta, snap, init, n, h, 2, ctr, 0, 0)
    if bad_b:
        _restore_agent(theta, snap, init, n, h, 2, ctr, 0, 1)
    _interpolate(theta_mix, theta, alpha, n, h)
    y = _agent_generate(theta_mix, n, h, 1, casc_g, mix1, 0)
    if not (y - y == 0.0):
        ctr[CTR_INTERVAL_BLOWUPS, 0] += 1
        _restore_agent(theta, snap, init, n, h, 2, ctr, 0, 0)
        _restore_agent(theta, snap, init, n, h, 2, ctr, 0, 1)
        _interpolate(theta_mix, theta, alpha, n, h)
        y = _agent_generate(theta_mix, n, h, 1, casc_g, mix1, 0)
    _agent_refresh_zt(theta, n, h, 2, Tx, work, 0)
    _agent_refresh_zt(theta, n, h, 2, Tx, work, 1)
    return y


def run_bank(x, out, col0, frames, lr_mod, ridge_mod, lane_prm, theta, snap, init, mix_t, casc,
             coef, ctr, work, err2):
    """Process ``frames`` rows of columns col0..col0+A-1 of x into the same columns of out
    for A agents in lockstep.

    theta/snap/init: flat weights (module doc); mix_t (L,): act_mix per lane;
    casc (2, 2, m, L): tiled T and G, stage k of each at [k & 1, k >> 1]
    (m = ceil(n/2)); coef (2, n): c_k and 1 - c_k; lane_prm (N_LANE, A): lr,
    ridge, learn; lr_mod / ridge_mod: (frames, >1) per agent (same columns as
    x), (frames, 1) shared, or (0, 0) to use lane_prm; ctr (N_CTR, A); work
    (N_WORK, L); err2 (A) accumulates squared prediction errors.
    """
    # (a plain function: the flags reach run_lanes as run-time values, so bank and pair
    # share one compiled kernel)
    run_lanes(x, col0, frames, lr_mod, ridge_mod, lane_prm, theta, snap, init, mix_t, casc, coef,
              ctr, work, err2, out, False, err2, err2[:0], 0.0, theta, mix_t, casc[1], work)


@njit(**_JIT)
def run_single(x, out, frames, lr_mod, ridge_mod, prm, theta, snap, init, mix, casc, coef, ctr,
               work, err2):
    """One network (a bank of A = 1 with its h neurons as lanes and untiled cascades).

    x, out (frames,); theta/snap/init: the A = 1 flat layout [W1 (n, h) | b1 |
    W2 | b2]; mix (h,); casc (2, 2, m, 1): T and G, stage k at [k & 1, k >> 1]; prm = [lr,
    ridge, learn] used where lr_mod / ridge_mod are empty; ctr (N_CTR, 1);
    work (N_WORK, h); err2 (1,). Performs exactly the operations of run_bank
    for one agent (so a bank column equals a single model bit for bit), with
    the loops arranged for a single agent.
    """
    n = coef.shape[1]
    h = mix.shape[0]
    Tx = casc[0]
    Gx = casc[1]
    c = coef[0]
    oc = coef[1]
    W1 = theta[:n * h].reshape(n, h)
    b1 = theta[n * h:(n + 1) * h]
    W2 = theta[(n + 1) * h:(n + 2) * h]
    b2 = theta[(n + 2) * h:(n + 2) * h + 1]
    zT = work[W_ZT]
    zG = work[W_ZG]
    act = work[W_ACT]
    dact = work[W_DACT]
    lrd = work[W_LRD]
    use_lr = lr_mod.shape[0] > 0
    use_ridge = ridge_mod.shape[0] > 0
    learn = prm[2] != 0.0
    any_mix = _any_nonzero(mix)
    for j in range(h):
        z = b1[j]
        for k in range(n):
            z = fma(W1[k, j], Tx[k & 1, k >> 1, 0], z)
        zT[j] = z
    for t in range(frames):
        xt = x[t]
        if not (xt - xt == 0.0):
            xt = 0.0
            ctr[CTR_NONFINITE, 0] += 1
        lr = lr_mod[t] if use_lr else prm[0]
        ridge = ridge_mod[t] if use_ridge else prm[1]
        # 1. predict: yhat = net(T), e = yhat - x
        for j in range(h):
            th = fast_tanh(zT[j])
            act[j] = th
            dact[j] = fma(-th, th, 1.0)
        if any_mix:
            for j in range(h):
                m = mix[j]
                if m != 0.0:
                    sn, cs = fast_sincos(zT[j])
                    act[j] = fma(m, sn, (1.0 - m) * act[j])
                    dact[j] = fma(m, cs, (1.0 - m) * dact[j])
        o = b2[0]
        for j in range(h):
            o = fma(W2[j], act[j], o)
        yhat = fast_tanh(o)
        e = yhat - xt
        if e - e == 0.0:
            err2[0] += e * e
        g = (2.0 * e) * fma(-yhat, yhat, 1.0)
        # 2. gradient step (a frozen model steps with lr = 0: exactly no change)
        if learn:
            lrg = lr * g
            dec = fma(-lr, 2.0 * ridge, 1.0)
            b2[0] = b2[0] - lrg
        else:
            lrg = 0.0
            dec = 1.0
        for j in range(h):
            w2 = W2[j]
            step = (lrg * w2) * dact[j]
            lrd[j] = step if lrg != 0.0 else 0.0
            W2[j] = fma(-lrg, act[j], w2 * dec)
            bn = b1[j] - lrd[j]
            b1[j] = bn
            zT[j] = bn
            zG[j] = bn
        # W1 step with the old T; 3. feed x into T; accumulate zT (new T) and zG (G)
        prev = xt
        for k in range(n):
            p = k & 1
            r = k >> 1
            u = Tx[p, r, 0]
            tn = fma(oc[k], prev, c[k] * u)
            Tx[p, r, 0] = tn
            prev = tn
            gk = Gx[p, r, 0]
            for j in range(h):
                w = fma(-lrd[j], u, W1[k, j] * dec)
                W1[k, j] = w
                zT[j] = fma(w, tn, zT[j])
                zG[j] = fma(w, gk, zG[j])
        # 4. generate: y = net(G) with the updated weights
        o = b2[0]
        for j in range(h):
            z = zG[j]
            a_j = fast_tanh(z)
            m = mix[j]
            if m != 0.0:
                sn, cs = fast_sincos(z)
                a_j = fma(m, sn, (1.0 - m) * a_j)
            o = fma(W2[j], a_j, o)
        y = fast_tanh(o)
        if not (y - y == 0.0):
            y = _bank_blowup(theta, snap, init, n, h, 1, Tx, Gx, mix, ctr, work, 0)
        out[t] = y
        prev = y
        for k in range(n):
            p = k & 1
            r = k >> 1
            prev = fma(oc[k], prev, c[k] * Gx[p, r, 0])
            Gx[p, r, 0] = prev
        ctr[CTR_SAMPLES, 0] += 1
        ctr[CTR_UNTIL_SNAPSHOT, 0] -= 1
        if ctr[CTR_UNTIL_SNAPSHOT, 0] <= 0:
            if _snapshot_point(ctr, 0):
                snap[:] = theta
    flush_tiny(theta)
    flush_tiny(casc)


@njit(**_JIT)
def _interpolate(dst, src, alpha, n, h):
    """dst (one set, A = 1 layout) = (1-alpha) * set a + alpha * set b (src: A = 2 layout)."""
    om = 1.0 - alpha
    for r in range(n + 2):
        for j in range(h):
            s = r * 2 * h + 2 * j
            dst[r * h + j] = fma(alpha, src[s + 1], om * src[s])
    s = (n + 2) * 2 * h
    dst[(n + 2) * h] = fma(alpha, src[s + 1], om * src[s])


def run_pair(x, out, frames, lr_mod, ridge_mod, interp_mod, lane_prm, alpha0, theta, snap, init,
             mix2, mix1, casc_t, casc_g, coef, ctr, work, work_g, theta_mix, err2):
    """AutoRegNN2: x (frames, 2) -> out (frames,).

    The two parameter sets are a bank of A = 2 for training (lane_prm (N_LANE,
    2), theta/snap/init, mix2 (2h,), casc_t (2, 2, m, 2h) with G half unused,
    work (N_WORK, 2h), err2 (2)); the generator is rebuilt every sample in
    theta_mix = (1-alpha) set a + alpha set b with mix1 (h,), casc_g (2, m, h)
    and work_g (N_WORK, h). lr_mod / ridge_mod: (frames, 1) or (0, 0);
    interp_mod: (frames,) or (0,) to use alpha0; ctr (N_CTR, 2): column 0
    counts generator events, each column its input's non-finite samples.
    """
    run_lanes(x, 0, frames, lr_mod, ridge_mod, lane_prm, theta, snap, init, mix2, casc_t, coef,
              ctr, work, err2, x, True, out, interp_mod, float(alpha0), theta_mix, mix1, casc_g,
              work_g)
