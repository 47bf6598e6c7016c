"""The numeric kernel of :mod:`anamnesis.agents.models.neuron` (one embodied lazy neuron):
:func:`neuron_kernel` over explicit state arrays. The activation, the activity reward,
the gradient estimate (seed 000 eq. 4) and the weight dynamics (eq. 5) are Unlearn's own
functions (:mod:`._unlearn_kernels`), called here for one neuron's K taps; only what
differs — the taps of the microphone and the heard activity — is written here."""

from __future__ import annotations

import math

from numba import njit

from anamnesis.agents.models._unlearn_kernels import (
    _FASTMATH,
    _TINY,
    INPUT_LIMIT,
    LAMBDA_DT_MAX,
    W_LIMIT,
    _act_derivs,
    exact_gradient,
    g_taylor,
    weight_step,
)

# Slots of the float accumulator array.
ACC_ENERGY, ACC_GRAD2, ACC_ACTIVITY, ACC_HEARD, ACC_FRAMES = 0, 1, 2, 3, 4
# Slots of the int counter array.
CNT_BLOWUPS, CNT_NONFINITE = 0, 1
# Slots of the glide-state array: input gain, shape, activation-crossfade position, and
# the heard energy (the one-pole mean of the gained microphone's square).
LAG_GAIN, LAG_SHAPE, LAG_ACT_FADE, LAG_HEARD = 0, 1, 2, 3


@njit(cache=True, nogil=True, fastmath=_FASTMATH, error_model="numpy")
def neuron_kernel(x_in, out, lam, s_arr, frames, d_cur, d_next, d_pend, fade, hist, wp_arr,
                  w, v, u, w_prev, w_init, grad, xin, lag, acc, counters, modes, coefs):
    """Advance the neuron ``frames`` samples; write its output f(shape S) to ``out``.

    A pure function of its arrays (state updated in place); the model's docstring
    gives the equations. ``hist`` is the mirrored ring of the gained microphone,
    ``2R`` long (R = max_delay + 1): each sample is written at ``wp`` and ``wp + R``
    *before* the taps read, so tap delay 0 is the present sample and a read at
    ``wp + R - d`` never wraps. ``modes`` = (act_from, act_to, n_taps, ring, own_only,
    g_linear, ecos_trough); ``coefs`` = (mu, nu, r, a, dt, sign, centre_u,
    gain_target, shape_target, lag_coef, delay_fade_step, act_fade_step,
    heard_coef). Returns the activation code in effect at the end.
    """
    act_from = modes[0]
    act_to = modes[1]
    n_taps = modes[2]
    ring = modes[3]
    own_only = modes[4] != 0
    g_linear = modes[5] != 0
    ecos_trough = modes[6] != 0
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
    heard_coef = coefs[12]

    wp = wp_arr[0]
    gain = lag[LAG_GAIN]
    shape = lag[LAG_SHAPE]
    act_alpha = lag[LAG_ACT_FADE]
    heard = lag[LAG_HEARD]
    e_acc = 0.0
    g2_acc = 0.0
    a_acc = 0.0
    h_acc = 0.0

    for n in range(frames):
        ext = x_in[n]
        if not math.isfinite(ext):
            ext = 0.0
            counters[CNT_NONFINITE] += 1
        elif ext > INPUT_LIMIT:
            ext = INPUT_LIMIT
        elif ext < -INPUT_LIMIT:
            ext = -INPUT_LIMIT
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

        # 1. The microphone, gained, into the ring; what it has heard lately.
        xn = gain * ext
        hist[wp] = xn
        hist[wp + ring] = xn
        heard = xn * xn + heard_coef * (heard - xn * xn)
        heard = heard if heard >= _TINY else 0.0

        # 2. The taps (two read heads while a delay crossfades) and their sum S.
        s_sum = 0.0
        for k in range(n_taps):
            if d_cur[k] == d_next[k] and d_pend[k] != d_cur[k]:
                d_next[k] = d_pend[k]
                fade[k] = 0.0
            xv = hist[wp + ring - d_cur[k]]
            if d_next[k] != d_cur[k]:
                xv += fade[k] * (hist[wp + ring - d_next[k]] - xv)
                fade[k] += delay_step
                if fade[k] >= 1.0:
                    d_cur[k] = d_next[k]
                    fade[k] = 0.0
            xin[k] = xv
            s_sum += w[k] * xv
        s_sum = s_sum if abs(s_sum) >= _TINY else 0.0

        # 3. The output and the derivatives the gradient needs; the activity.
        z = shape * s_sum
        f0, f1, f2, f3 = _act_derivs(act_from, ecos_trough, z, shape)
        if fading_act:
            h0, h1, h2, h3 = _act_derivs(act_to, ecos_trough, z, shape)
            f0 += act_alpha * (h0 - f0)
            f1 += act_alpha * (h1 - f1)
            f2 += act_alpha * (h2 - f2)
            f3 += act_alpha * (h3 - f3)
        d2 = 0.5 * f2
        d3 = f3 * (1.0 / 6.0)
        act = f0 * f0 if own_only else heard + f0 * f0
        g0, g1, g2h, g3s = g_taylor(g_linear, act)

        # 4. Every tap's weight: gradient estimate (eq. 4), one step of (w, v, u) (eq. 5).
        lam_n = lam[n] if lam[n] * dt < LAMBDA_DT_MAX else LAMBDA_DT_MAX / dt
        s_n = s_arr[n]
        total = 0.0
        for k in range(n_taps):
            xj = xin[k]
            gc = exact_gradient(xj, (w_prev[k] - w[k]) * xj, shape, s_sum, f0, f1, d2, d3,
                                act, g0, g1, g2h, g3s, act_from, act_to, fading_act,
                                act_alpha, ecos_trough, g_linear, True, mu, nu)
            grad[k] = gc
            g2_acc += gc * gc
            w_new, v_new, u_new = weight_step(w[k], v[k], u[k], gc, lam_n, s_n, r, a, dt,
                                              sign, centre_u)
            total += abs(w_new) + abs(v_new) + abs(u_new)
            w_prev[k] = w[k]
            w[k] = w_new
            v[k] = v_new
            u[k] = u_new
        if not total < W_LIMIT:  # also true for inf and nan
            counters[CNT_BLOWUPS] += 1
            for k in range(n_taps):
                w[k] = w_init[k]
                w_prev[k] = w_init[k]
                u[k] = w_init[k]
                v[k] = 0.0

        e_acc += nu * g0 - mu * f0
        a_acc += act
        h_acc += heard
        wp += 1
        if wp >= ring:
            wp = 0
        out[n] = f0

    wp_arr[0] = wp
    lag[LAG_GAIN] = gain
    lag[LAG_SHAPE] = shape
    lag[LAG_ACT_FADE] = act_alpha
    lag[LAG_HEARD] = heard
    acc[ACC_ENERGY] += e_acc
    acc[ACC_GRAD2] += g2_acc
    acc[ACC_ACTIVITY] += a_acc
    acc[ACC_HEARD] += h_acc
    acc[ACC_FRAMES] += frames
    return act_from
