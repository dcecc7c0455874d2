"""The ESDIRK stepping loop (Kvaerno5) with simplified Newton iterations.

A step of size ``h`` from ``(t, z)`` (stage equations of
``sciode.methods.stiff_tableaus.DIRKTableau``): ``K[0] = F(t, z)`` (first
same as last: ``K[s-1]`` of the previous step), then for ``i = 1 .. s-1``::

    Z = psi + h gamma F(t + c[i] h, Z),     psi = z + h sum_{j<i} A[i, j] K[j]
    K[i] = (Z - psi) / (h gamma)

``K[i]`` is taken from the converged ``Z`` rather than as ``F(Z)``, which
would amplify the Newton error by the stiff ``J`` (Hairer & Wanner, *Solving
ODEs II*, Sec. IV.8).  Stiffly accurate: ``z_new = Z`` of the last stage;
``err = h sum_i e[i] K[i]``.

Each stage is solved by simplified Newton with ``M = I/(h gamma) - J``::

    M dZ = (psi - Z) / (h gamma) + F(t + c[i] h, Z)

``J`` and the LU of ``M`` are kept across steps: ``J`` is re-evaluated only
when Newton fails with a stale ``J`` or converged slowly in the last step;
``M`` is refactored only when ``h`` changes, and ``h`` is held when the
controller asks for a ratio in [1, 1.2] (``radau5.f``'s ``QUOT1/QUOT2``) to
save the factorisation.  Newton stops as in Hairer's RADAU5 / SciPy's
``Radau``: converged when ``rate/(1 - rate) |dZ| < tol``, abandoned when the
rate is >= 1 or the predicted final error exceeds ``tol``.

Dense output is the tableau's ``P`` (cubic Hermite on ``K[0]`` and
``K[s-1]``), stored exactly as the explicit loops store theirs.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._numba_compat import borrow1, borrow2, keep_alive
from .explicit import all_finite, initial_step, rms_scaled
from .linalg import factor_for, jacobian_storage, matrix_storage, solve_in_place
from .rosenbrock import MAX_SINGULAR, N_STATS
from .stepping import (CONTINUE, EPS, borrow_storage, copy_flat, full, grow_storage, next_target, record_step,
                       serve_t_eval, start_storage, step_guard, step_to, stored)
from .status import NONFINITE, SINGULAR, STEP_UNDERFLOW, SUCCESS
from .systems import sys_jac, sys_rhs, sys_stop

SAFETY = 0.9
RATIO_MIN = 0.2
RATIO_MAX = 5.0
NEWTON_MAXITER = 8
HOLD_LO, HOLD_HI = 1.0, 1.2  # keep h (and the LU) for ratios in this range
#: a step whose Newton needed more than 2 iterations at this rate asks for a new J:
#: Hairer's RADAU5 default (``THET``) for small dense systems, and his advice for
#: costly Jacobians (banded mode: the dense ``jac_y`` fill is O(n^2)) -- measured
#: on VdP (n = 2: 4.6 vs 7.5 ms) and the 2x256 Brusselator (njev 81 vs 7).
SLOW_RATE_DENSE = 1e-3
SLOW_RATE_BANDED = 0.1


@nb.njit(cache=True, nogil=True)
def newton_stage(sys, tc, psi, hg, Z, M, piv, banded, kl, ku, perm, block, stride, rtol, atol, tol,
                 fz, dZ, lwork):
    """Solve ``Z = psi + hg F(tc, Z)`` from the guess in ``Z``.

    Returns ``(converged, n_iter, rate)``; ``rate`` is the last contraction
    factor (0 when one iteration sufficed).
    """
    n = Z.shape[0]
    d = 1.0 / hg
    dw_old = 0.0
    rate = 0.0
    for it in range(NEWTON_MAXITER):
        sys_rhs(sys, tc, Z, fz)
        for k in range(n):
            dZ[k] = (psi[k] - Z[k]) * d + fz[k]
        solve_in_place(M, piv, banded, kl, ku, perm, block, stride, dZ, lwork)
        dw = rms_scaled(dZ, Z, Z, rtol, atol)
        at_roundoff = True
        for k in range(n):
            # an increment at the rounding level of Z cannot shrink further:
            # with atol far below eps*|Z| the scaled test alone never passes
            if abs(dZ[k]) > 8.0 * EPS * abs(Z[k]):
                at_roundoff = False
            Z[k] += dZ[k]
        if not math.isfinite(dw):
            return False, it + 1, np.inf
        if at_roundoff:
            return True, it + 1, rate
        if it > 0:
            rate = dw / dw_old
            if rate >= 1.0:
                return False, it + 1, rate
            if rate ** (NEWTON_MAXITER - it - 1) / (1.0 - rate) * dw > tol:
                return False, it + 1, rate
            if rate / (1.0 - rate) * dw < tol:
                return True, it + 1, rate
        if dw == 0.0 or (it == 0 and dw < 1e-2 * tol):
            return True, it + 1, rate
        dw_old = dw
    return False, NEWTON_MAXITER, rate


@nb.njit(cache=True, nogil=True)
def dirk_stages(sys, t, z, h, A, c, gamma, K, M, piv, banded, kl, ku, perm, block, stride, rtol,
                atol, tol, Z, psi, fz, dZ, lwork, stats):
    """Stages ``1 .. s-1`` into ``K`` (``K[0]`` given); ``Z`` ends as ``z_new``.

    Returns ``(converged, slow)``: ``slow`` when Newton needed several
    iterations at a poor rate (time for a new Jacobian).
    """
    n = z.shape[0]
    s = A.shape[0]
    hg = h * gamma
    slow = False
    for i in range(1, s):
        for k in range(n):
            acc = 0.0
            for j in range(i):
                acc += A[i, j] * K[j, k]
            psi[k] = z[k] + h * acc
            Z[k] = psi[k] + hg * K[i - 1, k]
        ok, n_iter, rate = newton_stage(sys, t + c[i] * h, psi, hg, Z, M, piv, banded, kl, ku,
                                        perm, block, stride, rtol, atol, tol, fz, dZ, lwork)
        stats[0] += n_iter
        if not ok:
            return False, True
        if n_iter > 2 and rate > (SLOW_RATE_BANDED if banded else SLOW_RATE_DENSE):
            slow = True
        for k in range(n):
            K[i, k] = (Z[k] - psi[k]) / hg
    return True, slow


@nb.njit(cache=True, nogil=True)
def sdirk_integrate(sys, z0, t0, t1, A, b, c, e, P, gamma, q, rtol, atol, h_init, hmax, dt,
                    max_steps, t_eval, store_dense, t_stops, banded, kl, ku, perm, perm_inv, jrows, jcols,
                    block, stride):
    """Integrate ``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction) with an ESDIRK.

    Parameters
    ----------
    sys : system NamedTuple with rhs and Jacobian registered
    z0 : (n,) initial state
    A : (s, s) with explicit first stage, stiffly accurate; b, c, e : (s,); P : (s, d)
    gamma : float, the diagonal; q : error order + 1 (controller exponent)
    rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense, t_stops : as
        ``rosenbrock_integrate``
    banded, kl, ku, perm, perm_inv, jrows, jcols, block, stride : ``linalg.LinearMode.args()``

    Returns
    -------
    as ``rosenbrock_integrate``; ``nfev`` counts every rhs evaluation of Newton.
    """
    n = z0.shape[0]
    s = A.shape[0]
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    adaptive = dt <= 0.0
    tol = max(10.0 * EPS / rtol, min(0.03, rtol ** 0.5))
    # borrowed views of every array handed to a helper (see ``rk_integrate``)
    atol, t_eval, t_stops = borrow1(atol), borrow1(t_eval), borrow1(t_stops)
    perm, perm_inv, jrows, jcols = borrow1(perm), borrow1(perm_inv), borrow1(jrows), borrow1(jcols)
    A, b, c, e, P = borrow2(A), borrow1(b), borrow1(c), borrow1(e), borrow2(P)
    K_o, J_o, M_o, piv_o = (np.zeros((s, n)), jacobian_storage(n, block),
                            matrix_storage(n, banded, kl, ku, block), np.zeros(n, dtype=np.int64))
    K, J, M, piv = borrow2(K_o), borrow2(J_o), borrow2(M_o), borrow1(piv_o)
    vec_o = np.zeros(7 * n + s)
    vb = borrow1(vec_o)
    Z, psi, fz, dZ, lwork = vb[:n], vb[n:2 * n], vb[2 * n:3 * n], vb[3 * n:4 * n], vb[4 * n:5 * n]
    work, z, wbuf = vb[5 * n:6 * n], vb[6 * n:7 * n], vb[7 * n:]
    for k in range(n):
        z[k] = z0[k]
    stats = np.zeros(N_STATS, dtype=np.int64)
    ts_o, hs_o, zs_o, Ks_o, z_eval_own, i_eval = start_storage(t0, z, s, store_dense, t_eval)
    ts, hs, zs, Ks = borrow_storage(ts_o, hs_o, zs_o, Ks_o)  # owned ones kept for the result
    z_eval = borrow2(z_eval_own)
    n_stored = 1
    t = t0
    if span == 0.0:
        return SUCCESS, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    sys_rhs(sys, t, z, K[0])
    stats[0] += 1
    if not all_finite(K[0]) or not all_finite(z):
        return NONFINITE, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    if not adaptive:
        h = dt
    elif h_init > 0.0:
        h = min(h_init, hmax, span)
    else:
        h = initial_step(sys, t, z, K[0], direction, 4, rtol, atol, hmax, span, work, fz)
        stats[0] += 1
    need_jac = True
    jac_current = False  # J was evaluated at the current (t, z)
    h_fact = 0.0
    err_prev = 1e-4
    n_singular = 0
    rejected_last = False
    saw_nonfinite = False
    status = SUCCESS
    i_stop = 0
    # storage regrown outside the stepping loop (see ``rk_integrate``)
    while True:
        while (t1 - t) * direction > 0.0 and not full(ts, n_stored, store_dense):
            status = step_guard(stats[1], max_steps, h, t, saw_nonfinite)
            if status != CONTINUE:
                break
            status = SUCCESS
            i_stop, target = next_target(t_stops, i_stop, t, t1, direction)
            last, hh = step_to(t, h, target, direction, span)
            if need_jac:
                sys_jac(sys, t, z, J)
                stats[4] += 1
                need_jac = False
                jac_current = True
                h_fact = 0.0
            h_fact = factor_for(hh, h_fact, gamma, J, banded, kl, ku, perm_inv, jrows, jcols, block, M,
                                piv, stats)
            if h_fact == 0.0:  # singular: halve the step, a few times at most
                n_singular += 1
                if n_singular > MAX_SINGULAR or not adaptive:
                    status = SINGULAR
                    break
                h = 0.5 * abs(hh)
                continue
            n_singular = 0
            stats[1] += 1
            ok, slow = dirk_stages(sys, t, z, hh, A, c, gamma, K, M, piv, banded, kl, ku, perm,
                                   block, stride, rtol, atol, tol, Z, psi, fz, dZ, lwork, stats)
            if not ok:
                # Newton failed: first refresh a stale Jacobian, then shrink the step.
                stats[3] += 1
                if not jac_current:
                    need_jac = True
                elif adaptive:
                    h = 0.5 * abs(hh)
                    if not all_finite(Z):
                        saw_nonfinite = True
                else:
                    status = NONFINITE if not all_finite(Z) else STEP_UNDERFLOW
                    break
                rejected_last = True
                continue
            finite = all_finite(Z)
            if adaptive:
                if finite:
                    for k in range(n):
                        acc = 0.0
                        for i in range(s):
                            acc += e[i] * K[i, k]
                        work[k] = hh * acc
                    err = rms_scaled(work, z, Z, rtol, atol)
                else:
                    err = np.inf
                if not math.isfinite(err):
                    saw_nonfinite = True
                    stats[3] += 1
                    h = abs(hh) * RATIO_MIN
                    rejected_last = True
                    continue
                if err > 1.0:
                    stats[3] += 1
                    h = abs(hh) * max(RATIO_MIN, SAFETY * err ** (-1.0 / q))
                    rejected_last = True
                    continue
                r = RATIO_MAX if err == 0.0 else SAFETY * err ** (-0.7 / q) * err_prev ** (0.4 / q)
                r = min(RATIO_MAX, max(RATIO_MIN, r))
                if rejected_last:
                    r = min(r, 1.0)
                if HOLD_LO <= r <= HOLD_HI:
                    r = 1.0
                h_next = min(abs(hh) * r, hmax)
                err_prev = max(err, 1e-4)
            else:
                if not finite:
                    status = NONFINITE
                    break
                h_next = dt
            # -- accepted
            t_new = target if last else t + hh
            i_eval = serve_t_eval(t_eval, i_eval, t, t_new, hh, z, K, P, wbuf, z_eval, direction)
            reset = last and target != t1 and sys_stop(sys, t_new, Z)
            n_stored = record_step(ts, hs, zs, Ks, n_stored, t_new, hh, Z, K, store_dense)
            stats[2] += 1
            t = t_new
            copy_flat(z, Z)
            rejected_last = False
            h = h_next
            if reset:
                sys_rhs(sys, t, z, K[0])
                stats[0] += 1
            else:
                copy_flat(K[0], K[s - 1])  # stiffly accurate: f(t_new, z_new) up to the Newton tolerance
            jac_current = False
            if slow:
                need_jac = True
        if status != SUCCESS or (t1 - t) * direction <= 0.0:
            break
        ts_o, hs_o, zs_o, Ks_o = grow_storage(ts_o, hs_o, zs_o, Ks_o, store_dense)
        ts, hs, zs, Ks = borrow_storage(ts_o, hs_o, zs_o, Ks_o)
    ts, zs, hs, Ks = stored(ts_o, hs_o, zs_o, Ks_o, n_stored, store_dense)
    keep_alive(K_o, J_o, M_o)  # one array type per call
    keep_alive(vec_o)
    keep_alive(piv_o)
    return status, t, n_stored, ts, zs, hs, Ks, z_eval_own, stats
