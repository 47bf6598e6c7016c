"""The numeric kernel of :mod:`anamnesis.agents.models.unlearn` (the lazy-neuron network):
:func:`unlearn_kernel` over explicit state arrays, its activations and their
derivatives, the energy function, and the constants and slot numbers it shares with the
class. The class validates, allocates (64-byte aligned state, see
:func:`~anamnesis.agents.models.base.aligned_zeros`) and owns the lifetime; the model's
docstring says which equations are implemented and which choices were made."""

from __future__ import annotations

import math

from numba import njit

TAYLOR_STEP = 1e-3
"""Divided differences with a step below this use their Taylor polynomial."""
W_LIMIT = 1e6
"""A weight state beyond this magnitude counts as a blow-up."""
INPUT_LIMIT = 1e3
LAMBDA_DT_MAX = 1.0
"""Largest rotation of a weight per sample, rad (symplectic Euler is stable below 2)."""
_TINY = 1e-200  # flushed to zero: no denormal tails in a silent network

# Floating-point licence for the kernel: reassociation and contraction let
# LLVM vectorise the per-connection loops. No "nnan"/"ninf": the kernel relies
# on finiteness checks. error_model="numpy" drops Python's ZeroDivisionError
# check, which would otherwise keep every loop with a division scalar; for the
# same reason the kernel writes max(x, 0) as a conditional expression (a
# select), not as max(), which numba compiles to a NaN-aware branch.
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}

# Slots of the float accumulator array.
_ACC_ENERGY, _ACC_GRAD2, _ACC_ACTIVITY, _ACC_FRAMES = 0, 1, 2, 3
# Slots of the int counter array.
_CNT_BLOWUPS, _CNT_NONFINITE = 0, 1
# Slots of the glide-state array.
_LAG_GAIN, _LAG_SHAPE, _LAG_ACT_FADE = 0, 1, 2


_LN2_HI = 6.93147180369123816490e-01  # ln 2 split for an exact range reduction
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def fast_tanh(z):
    """tanh(z) to a few ulp, branch-free so that loops over it vectorise.

    |z| < 1/8: the odd Taylor polynomial to z^13 (truncation < 1e-16
    relative). Otherwise ``1 - 2 / (e + 1)`` with ``e = exp(2|z|)`` computed as
    ``2^k exp(q)``, ``|q| <= ln2 / 2``, ``exp(q)`` by its Taylor polynomial to
    q^12 (< 2e-16); |z| is clamped at 20, where tanh is 1 in double precision.
    Cancellation costs at most 3 bits at |z| = 1/8. Both polynomials are
    evaluated in Estrin's scheme (powers z^2, z^4, z^8 and pairs of terms), not
    Horner's: the same accuracy with a dependency chain of 5 multiply-adds
    instead of 12, which is what a single neuron's per-sample recurrence waits
    on (a vectorised loop over many neurons hardly notices the 5 extra products).
    """
    a = abs(z)
    z2 = z * z
    z4 = z2 * z2
    z8 = z4 * z4
    small = z * ((1.0 + z2 * (-1.0 / 3.0)) + z4 * (2.0 / 15.0 + z2 * (-17.0 / 315.0))
                 + z8 * ((62.0 / 2835.0 + z2 * (-1382.0 / 155925.0))
                         + z4 * (21844.0 / 6081075.0)))
    x = 2.0 * (a if a < 20.0 else 20.0)  # noqa: FURB136 (selects vectorise; see _FASTMATH)
    k = int(x * _INV_LN2 + 0.5)
    q = (x - k * _LN2_HI) - k * _LN2_LO
    q2 = q * q
    q4 = q2 * q2
    q8 = q4 * q4
    low = ((1.0 + q) + q2 * (1.0 / 2.0 + q * (1.0 / 6.0))
           + q4 * ((1.0 / 24.0 + q * (1.0 / 120.0)) + q2 * (1.0 / 720.0 + q * (1.0 / 5040.0))))
    high = ((1.0 / 40320.0 + q * (1.0 / 362880.0))
            + q2 * (1.0 / 3628800.0 + q * (1.0 / 39916800.0)) + q4 * (1.0 / 479001600.0))
    e = (low + q8 * high) * float(1 << k)
    t = 1.0 - 2.0 / (e + 1.0)
    large = t if z > 0.0 else -t
    return small if a < 0.125 else large


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def _act_value(code, ecos_trough, z):
    """f(z) of activation ``code`` (0 tanh, 1 sine, 2 elevated cosine)."""
    if code == 0:
        return fast_tanh(z)
    if code == 1:
        return math.sin(z)
    if ecos_trough:
        return 0.5 * (1.0 - math.cos(z))
    return 0.5 * (1.0 + math.cos(z))


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def _act_derivs(code, ecos_trough, z, k):
    """f(z) and the first three derivatives of S -> f(k S) at z = k S."""
    if code == 0:
        t = fast_tanh(z)
        p = 1.0 - t * t
        return t, k * p, -2.0 * k * k * t * p, -2.0 * k * k * k * p * (1.0 - 3.0 * t * t)
    sn = math.sin(z)
    cs = math.cos(z)
    if code == 1:
        return sn, k * cs, -k * k * sn, -k * k * k * cs
    if ecos_trough:
        return 0.5 * (1.0 - cs), 0.5 * k * sn, 0.5 * k * k * cs, -0.5 * k * k * k * sn
    return 0.5 * (1.0 + cs), -0.5 * k * sn, -0.5 * k * k * cs, 0.5 * k * k * k * sn


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def _g_value(g_linear, a):
    if g_linear:
        return a
    return fast_tanh(a)


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def g_taylor(g_linear, act):
    """g(A) and its Taylor coefficients g', g''/2, g'''/6 at the activity ``act``."""
    if g_linear:
        return act, 1.0, 0.0, 0.0
    g0 = fast_tanh(act)
    gp = 1.0 - g0 * g0
    return g0, gp, -g0 * gp, -gp * (1.0 - 3.0 * g0 * g0) * (1.0 / 3.0)


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def taylor_gradient(xj, step, y, d1, d2, d3, g1, g2h, g3s, activity_energy, mu, nu):
    """Seed 000 eq. 4 for one weight when both divided differences are small.

    ``step`` = D = (w(n-1) - w(n)) x_j, the change of the neuron's sum S that the
    weight's last move made; ``y`` = f(shape S); ``d1, d2, d3`` = f', f''/2, f'''/6 of
    S -> f(shape S); ``g1, g2h, g3s`` the same of g at the activity (:func:`g_taylor`).
    Branch-free, so a loop over weights vectorises."""
    q_f = d1 + step * (d2 + step * d3)
    dx = step * q_f
    h = 2.0 * y + dx if activity_energy else 1.0
    d_act = dx * h
    q_g = g1 + d_act * (g2h + d_act * g3s)
    return xj * q_f * (nu * q_g * h - mu)


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def exact_gradient(xj, step, shape, s_i, y, d1, d2, d3, act, g0, g1, g2h, g3s,
                   act_from, act_to, fading_act, act_alpha, ecos_trough, g_linear,
                   activity_energy, mu, nu):
    """Seed 000 eq. 4 for one weight, each divided difference exact where its step is
    at least :data:`TAYLOR_STEP` and its Taylor form below (``s_i`` = S, ``act`` = A,
    ``g0`` = g(A); the rest as :func:`taylor_gradient`; ``act_alpha`` the position of a
    running activation crossfade from ``act_from`` to ``act_to``)."""
    if abs(shape * step) < TAYLOR_STEP:
        q_f = d1 + step * (d2 + step * d3)
    else:
        z2 = shape * (s_i + step)
        fz = _act_value(act_from, ecos_trough, z2)
        if fading_act:
            fz += act_alpha * (_act_value(act_to, ecos_trough, z2) - fz)
        q_f = (fz - y) / step
    dx = step * q_f
    h = 2.0 * y + dx if activity_energy else 1.0
    d_act = dx * h
    if abs(d_act) < TAYLOR_STEP:
        q_g = g1 + d_act * (g2h + d_act * g3s)
    else:
        q_g = (_g_value(g_linear, act + d_act) - g0) / d_act
    return xj * q_f * (nu * q_g * h - mu)


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def weight_step(wc, vc, uc, gc, lam_n, s_n, r, a, dt, sign, centre_u):
    """One semi-implicit step of a weight's (w, v, u) (seed 000 eq. 5, the scheme of the
    :mod:`~anamnesis.agents.models.unlearn` docstring) under the gradient ``gc``; returns
    the new (w, v, u), magnitudes below 1e-200 flushed to zero. Branch-free (selects)."""
    dwu = wc - uc
    cyc = s_n * (r - math.sqrt(dwu * dwu + vc * vc))
    centre = centre_u * uc
    e = wc - centre
    lin_v = cyc - a
    grow_v = lin_v if lin_v > 0.0 else 0.0  # noqa: FURB136
    den_v = 1.0 + dt * (grow_v - lin_v)  # 1 + dt max(a - c, 0)
    grow_w = cyc if cyc > 0.0 else 0.0  # noqa: FURB136
    den_w = 1.0 + dt * (grow_w - cyc)  # 1 + dt max(-c, 0)
    inv = 1.0 / (den_v * den_w)  # one division serves both implicit terms
    v_new = (vc + dt * (sign * gc - lam_n * e + grow_v * vc)) * den_w * inv
    w_new = centre + (e + dt * (lam_n * v_new + grow_w * e)) * den_v * inv
    u_new = uc + dt * (w_new - uc)
    v_new = v_new if abs(v_new) >= _TINY else 0.0
    w_new = w_new if abs(w_new) >= _TINY else 0.0
    u_new = u_new if abs(u_new) >= _TINY else 0.0
    return w_new, v_new, u_new


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def unlearn_kernel(x_in, out, lam, s_arr, frames,
                   src, d_cur, d_next, d_pend, fade, off, hist, wp_arr,
                   w, v, u, w_prev, w_init, grad, xin, y, s_sum,
                   d1, d2, d3, lag, acc, counters, modes, coefs):
    """Advance the network ``frames`` samples; write the output neuron to ``out``.

    A pure function of its arrays (all state is updated in place); the module
    docstring gives the equations. ``lam`` and ``s_arr`` hold lambda and s per
    sample. Connection arrays are k-major (connection ``c = k*N + i``: slot
    ``k`` of neuron ``i``), so every per-connection loop is contiguous and
    vectorises; the class converts to the public neuron-major order. ``hist``
    is the flat mirrored ring: row ``j`` occupies
    ``[j*2R, (j+1)*2R)`` and every sample is written at ``wp`` and ``wp + R``, so a
    read at ``off[c] + wp`` (``off = src*2R + R - 1 - delay``) never wraps.
    ``modes`` = (act_from, act_to, n_neurons, n_inputs, output_neuron, ring,
    activity_energy, g_linear, ecos_trough). ``coefs`` = (mu, nu, r, a, dt,
    sign, centre_u, gain_target, shape_target, lag_coef, delay_fade_step,
    act_fade_step). Returns the activation code in effect at the end.
    """
    act_from = modes[0]
    act_to = modes[1]
    n_neurons = modes[2]
    n_inputs = modes[3]
    output_neuron = modes[4]
    ring = modes[5]
    activity_energy = modes[6] != 0
    g_linear = modes[7] != 0
    ecos_trough = modes[8] != 0
    mu = coefs[0]
    nu = coefs[1]
    r = coefs[2]
    a = coefs[3]
    dt = coefs[4]
    sign = coefs[5]
    centre_u = coefs[6]
    gain_target = coefs[7]
    shape_target = coefs[8]
    lag_coef = coefs[9]
    delay_step = coefs[10]
    act_step = coefs[11]

    n_conn = n_neurons * n_inputs
    row = 2 * ring
    wp = wp_arr[0]
    gain = lag[_LAG_GAIN]
    shape = lag[_LAG_SHAPE]
    act_alpha = lag[_LAG_ACT_FADE]
    inv_n = 1.0 / n_neurons
    e_acc = 0.0
    g2_acc = 0.0
    a_acc = 0.0

    moving = 0
    for c in range(n_conn):
        if d_cur[c] != d_next[c] or d_pend[c] != d_cur[c]:
            moving += 1

    for n in range(frames):
        ext = x_in[n]
        if not math.isfinite(ext):
            ext = 0.0
            counters[_CNT_NONFINITE] += 1
        elif ext > INPUT_LIMIT:
            ext = INPUT_LIMIT
        elif ext < -INPUT_LIMIT:
            ext = -INPUT_LIMIT
        # Glides; snap within rounding of the target (no endless denormal tail).
        gain = gain_target + lag_coef * (gain - gain_target)
        if abs(gain - gain_target) < 1e-12:
            gain = gain_target
        shape = shape_target + lag_coef * (shape - shape_target)
        if abs(shape - shape_target) < 1e-12 * shape_target:
            shape = shape_target
        fading_act = act_from != act_to
        if fading_act:
            act_alpha += act_step
            if act_alpha >= 1.0:
                act_alpha = 0.0
                act_from = act_to
                fading_act = False

        # 1. Every connection's delayed input (two read heads while a delay fades).
        if moving == 0:
            for c in range(n_conn):
                xin[c] = hist[off[c] + wp]
        else:
            moving = 0
            for c in range(n_conn):
                if d_cur[c] == d_next[c] and d_pend[c] != d_cur[c]:
                    d_next[c] = d_pend[c]
                    fade[c] = 0.0
                xv = hist[off[c] + wp]
                if d_next[c] != d_cur[c]:
                    x2 = hist[src[c] * row + ring - 1 - d_next[c] + wp]
                    xv += fade[c] * (x2 - xv)
                    fade[c] += delay_step
                    if fade[c] >= 1.0:
                        d_cur[c] = d_next[c]
                        fade[c] = 0.0
                        off[c] = src[c] * row + ring - 1 - d_cur[c]
                if d_next[c] != d_cur[c] or d_pend[c] != d_cur[c]:
                    moving += 1
                xin[c] = xv

        # 2. Neuron outputs, the derivatives the gradient needs, the activity.
        for i in range(n_neurons):
            s_sum[i] = w[i] * xin[i]
        for k in range(1, n_inputs):
            b = k * n_neurons
            for i in range(n_neurons):
                s_sum[i] += w[b + i] * xin[b + i]
        act = 0.0
        y_sum = 0.0
        for i in range(n_neurons):
            si = s_sum[i]
            s_sum[i] = si if abs(si) >= _TINY else 0.0
        if act_from == 0 and not fading_act:
            # The common case, written out so that it vectorises across neurons:
            # f = tanh(k S); f1 = k p, f2 / 2 = -k^2 t p, f3 / 6 = -k^3 p (1 - 3 t^2) / 3.
            k2 = -shape * shape
            k3 = -shape * shape * shape * (1.0 / 3.0)
            for i in range(n_neurons):
                t = fast_tanh(shape * s_sum[i])
                p = 1.0 - t * t
                y[i] = t
                d1[i] = shape * p
                d2[i] = k2 * t * p
                d3[i] = k3 * p * (1.0 - 3.0 * t * t)
                y_sum += t
                act += t * t if activity_energy else t
        else:
            for i in range(n_neurons):
                z = shape * s_sum[i]
                f0, f1, f2, f3 = _act_derivs(act_from, ecos_trough, z, shape)
                if fading_act:
                    h0, h1, h2, h3 = _act_derivs(act_to, ecos_trough, z, shape)
                    f0 += act_alpha * (h0 - f0)
                    f1 += act_alpha * (h1 - f1)
                    f2 += act_alpha * (h2 - f2)
                    f3 += act_alpha * (h3 - f3)
                y[i] = f0
                d1[i] = f1
                d2[i] = 0.5 * f2
                d3[i] = f3 * (1.0 / 6.0)
                y_sum += f0
                act += f0 * f0 if activity_energy else f0
        g0, g1, g2h, g3s = g_taylor(g_linear, act)

        # 3. Gradient estimates. When every weight step is small enough that both
        # divided differences take their Taylor form (|dA| <= 2.01 |shape D|:
        # |f'| <= shape, |x| <= 1), they are computed inside the integration loop
        # below; otherwise here, exactly where a step is large.
        big = 0.0
        for c in range(n_conn):
            m = abs(shape * (w_prev[c] - w[c]) * xin[c])
            big = m if m > big else big  # noqa: FURB136
        inline = big < 0.25 * TAYLOR_STEP
        if not inline:
            for c in range(n_conn):
                i = c % n_neurons
                xj = xin[c]
                grad[c] = exact_gradient(
                    xj, (w_prev[c] - w[c]) * xj, shape, s_sum[i], y[i], d1[i], d2[i], d3[i],
                    act, g0, g1, g2h, g3s, act_from, act_to, fading_act, act_alpha,
                    ecos_trough, g_linear, activity_energy, mu, nu)

        # 4. One semi-implicit step of every weight's (w, v, u).
        # Symplectic Euler turns (e, v) stably only while lambda dt < 2; beyond
        # LAMBDA_DT_MAX the turn per sample is held there (and said so).
        lam_n = lam[n] if lam[n] * dt < LAMBDA_DT_MAX else LAMBDA_DT_MAX / dt
        s_n = s_arr[n]
        total = 0.0
        for k in range(n_inputs):
            b = k * n_neurons
            for i in range(n_neurons):
                c = b + i
                wc = w[c]
                vc = v[c]
                uc = u[c]
                if inline:
                    xj = xin[c]
                    gc = taylor_gradient(xj, (w_prev[c] - wc) * xj, y[i], d1[i], d2[i], d3[i],
                                         g1, g2h, g3s, activity_energy, mu, nu)
                    grad[c] = gc
                else:
                    gc = grad[c]
                g2_acc += gc * gc
                w_new, v_new, u_new = weight_step(wc, vc, uc, gc, lam_n, s_n, r, a, dt,
                                                  sign, centre_u)
                total += abs(w_new) + abs(v_new) + abs(u_new)
                w_prev[c] = wc
                w[c] = w_new
                v[c] = v_new
                u[c] = u_new
        if not total < W_LIMIT:  # also true for inf and nan
            for i in range(n_neurons):
                bad = False
                for k in range(n_inputs):
                    c = k * n_neurons + i
                    if not (abs(w[c]) < W_LIMIT and abs(v[c]) < W_LIMIT and abs(u[c]) < W_LIMIT):
                        bad = True
                if bad:
                    counters[_CNT_BLOWUPS] += 1
                    for k in range(n_inputs):
                        c = k * n_neurons + i
                        w[c] = w_init[c]
                        w_prev[c] = w_init[c]
                        u[c] = w_init[c]
                        v[c] = 0.0

        e_acc += nu * g0 - mu * y_sum * inv_n
        a_acc += act

        # 5. Store this sample's outputs (and the input) in the mirrored ring.
        for i in range(n_neurons):
            hist[i * row + wp] = y[i]
            hist[i * row + wp + ring] = y[i]
        xn = gain * ext
        hist[n_neurons * row + wp] = xn
        hist[n_neurons * row + wp + ring] = xn
        wp += 1
        if wp >= ring:
            wp = 0
        out[n] = y[output_neuron]

    wp_arr[0] = wp
    lag[_LAG_GAIN] = gain
    lag[_LAG_SHAPE] = shape
    lag[_LAG_ACT_FADE] = act_alpha
    acc[_ACC_ENERGY] += e_acc
    acc[_ACC_GRAD2] += g2_acc
    acc[_ACC_ACTIVITY] += a_acc
    acc[_ACC_FRAMES] += frames
    return act_from


@njit(cache=True, nogil=True)
def neuron_major_into(out, public, n_neurons, n_inputs):
    """Write ``public`` (neuron-major: i*K + k) into ``out`` in the kernel's input-major
    order (k*N + i), casting to ``out``'s type; allocates nothing (the audio thread's
    way of taking new delays)."""
    for i in range(n_neurons):
        for k in range(n_inputs):
            out[k * n_neurons + i] = public[i * n_inputs + k]
