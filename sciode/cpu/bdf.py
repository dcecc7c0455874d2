"""The variable-order (1-5), variable-step BDF loop in NDF form (``method="bdf"``).

The formulas are Shampine & Reichelt's numerical differentiation formulas
(``sciode.methods.bdf_coefficients``) on a quasi-constant step.  The history
is the array of backward differences ``D[j] = nabla^j z_n``, ``j = 0 .. k``
(``D[k+1]``, ``D[k+2]``: the last two corrections, for the error estimates of
the neighbouring orders).  A step of order ``k`` and size ``h`` from ``t``::

    z_pred = sum_{j<=k} D[j],   psi = (1/alpha_k) sum_{1<=j<=k} gamma_j D[j],  c = h / alpha_k
    solve   d - c F(t + h, z_pred + d) + psi = 0      (d: the correction)
    z_new = z_pred + d,          err = error_const_k d

by simplified Newton with ``M = I/c - J`` (``linalg.factor_for`` with
``gamma = 1``: ``M`` is factored for ``c``, so an order change refactors
it as a step change does)::

    M dy = F(t + h, z) - (psi + d) / c,     z += dy,  d += dy

``J`` is kept across steps and re-evaluated (at ``(t + h, z_pred)``) only
when Newton fails with a stale ``J`` or converged slowly (3 or more
iterations at a rate above 0.3) with a stale ``J`` in the last step;
Newton stops as in SciPy's ``BDF`` (at most 4 iterations; converged when
``rate/(1 - rate) |dy| < tol``, abandoned when the rate is >= 1 or the
predicted final error exceeds ``tol``).  On acceptance the differences are
updated (``D[k+2] = d - D[k+1]``, ``D[k+1] = d``, ``D[j] += D[j+1]`` for
``j = k .. 0``).

Step and order control as Shampine & Reichelt / SciPy: a rejected step
shrinks ``h`` by ``max(0.2, s err^(-1/(k+1)))`` (``s`` = 0.9 scaled down by
the Newton iterations); an accepted one keeps ``h`` until ``k + 1`` equal
steps were taken, then the order among ``k - 1, k, k + 1`` with the largest
admissible step is chosen (the errors of ``k -/+ 1`` estimated from ``D[k]``
and ``D[k+2]``) and ``h`` grows by at most 10.  Every change of ``h`` (also
the shortened step that lands on a stop) rescales the differences to the new
step: ``D[:k+1] <- (R(r) U)^T D[:k+1]``, ``R(r)[i, j] = prod_{m=1}^{i}
(m - 1 - r j)/m`` (``rescale_history``; ``U = R(1)``).

``dt > 0`` takes fixed steps without error control: the order rises by one
per step from 1 to ``max_order``.  The order-1 start limits the global
error of that mode to first/second order; convergence studies of a fixed
order use the adaptive mode with ``fixed_order`` (the order rises to
``max_order`` and stays).

Dense output keeps the loops' storage format: on an accepted step of order
``k`` the interpolant through the last ``k + 1`` points is, in power form,
``z + h sum_{m=1}^{5} K[m-1] theta^m`` with ``K[m-1] = (1/h) sum_j W[j, m] D[j]``
(``bdf_coefficients.interpolant_basis``) and ``P = I``; ``z`` at ``theta = 0``
is exact.  After a state reset at a stop (``sys_stop``) or on landing on a
stop (a control's kink), the history restarts at order 1 as CVODES does at a
discontinuity.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._numba_compat import borrow1, borrow2, keep_alive
from .explicit import all_finite, first_step, initial_step, rms_range, rms_scaled
from .linalg import factor_for, jacobian_storage, matrix_storage, newton_phases, solve_in_place
from .status import NONFINITE, SINGULAR, STEP_UNDERFLOW, SUCCESS
from .stepping import (EPS, MAX_SINGULAR, NONFINITE_SHRINK, begin_borrowed, borrow_storage,
                       copy_flat, full, grow_storage, land_step, next_attempt, stored)
from .systems import sys_jac, sys_rhs

MAX_ORDER = 5
NEWTON_MAXITER = 4
RATIO_MIN = 0.2
RATIO_MAX = 10.0
#: a converged Newton with this many iterations or more at a rate above
#: ``SLOW_RATE`` asks for a fresh ``J`` before the next step
SLOW_ITER = 3
SLOW_RATE = 0.3


@nb.njit(cache=True, nogil=True)
def rescale_history(D, order, r, RU, tmp):
    """Rescale the differences ``D[:order+1]`` from step ``h`` to step ``r h``.

    ``D[:k+1] <- (R(r) R(1))^T D[:k+1]`` with ``R(r)[0, j] = 1`` and
    ``R(r)[i, j] = R(r)[i-1, j] (i - 1 - r j) / i``: the differences of the
    interpolating polynomial at the points ``t, t - r h, ..., t - k r h``
    (Shampine & Reichelt 1997, Sec. 2.3).  ``RU``: ``(6, 6)`` scratch,
    ``tmp``: ``(6, n)`` scratch.
    """
    k = order
    n = D.shape[1]
    # RU = R(r) @ R(1), built column by column of R(1)
    for i in range(k + 1):
        for j in range(k + 1):
            acc = 0.0
            for m in range(k + 1):
                # R(r)[i, m]
                a = 1.0
                for q in range(1, i + 1):
                    a *= (q - 1.0 - r * m) / q
                # R(1)[m, j]
                b = 1.0
                for q in range(1, m + 1):
                    b *= (q - 1.0 - j) / q
                acc += a * b
            RU[i, j] = acc
    for j in range(k + 1):
        for x in range(n):
            acc = 0.0
            for i in range(k + 1):
                acc += RU[i, j] * D[i, x]
            tmp[j, x] = acc
    for j in range(k + 1):
        for x in range(n):
            D[j, x] = tmp[j, x]


@nb.njit(cache=True, nogil=True)
def newton_bdf(sys, t_new, z_pred, c, psi, M, piv, banded, kl, ku, perm, block, stride, rtol, atol,
               tol, Z, d, fz, dy, lwork):
    """Solve ``d - c F(t_new, z_pred + d) + psi = 0`` by simplified Newton.

    ``Z = z_pred + d`` on return.  Returns ``(converged, n_iter, n_eval,
    rate)``: the iterations of the slower phase (see ``newton_phases``), the
    rhs evaluations, the larger of the phases' last contraction rates (on
    failure the last rate); ``rate`` is ``inf`` when
    ``F`` was not finite.
    """
    n = Z.shape[0]
    for k in range(n):
        Z[k] = z_pred[k]
        d[k] = 0.0
    inv_c = 1.0 / c
    lo, hi = 0, newton_phases(block, stride, atol)
    dw_old = 0.0
    rate = 0.0
    worst = 0.0
    prior = 0.0  # the states' last rate, for the second phase's first test
    it = 0
    n_iter = 0
    n_eval = 0
    while True:
        sys_rhs(sys, t_new, Z, fz)
        n_eval += 1
        if not all_finite(fz):
            return False, max(n_iter, it + 1), n_eval, np.inf
        for k in range(n):
            dy[k] = fz[k] - (psi[k] + d[k]) * inv_c
        solve_in_place(M, piv, banded, kl, ku, perm, block, stride, dy, lwork)
        for k in range(lo):  # second phase: the states stay where they converged
            dy[k] = 0.0
        dw = rms_range(dy, z_pred, rtol, atol, lo, hi)
        if not math.isfinite(dw):
            return False, max(n_iter, it + 1), n_eval, np.inf
        if it > 0:
            rate = dw / dw_old
            if rate >= 1.0 or rate ** (NEWTON_MAXITER - it) / (1.0 - rate) * dw > tol:
                return False, max(n_iter, it + 1), n_eval, rate
        at_roundoff = True
        for k in range(lo, hi):
            # an increment at the rounding level of Z cannot shrink further:
            # with atol far below eps*|Z| the scaled test alone never passes
            if abs(dy[k]) > 8.0 * EPS * abs(Z[k]):
                at_roundoff = False
        for k in range(lo, n):
            Z[k] += dy[k]
            d[k] += dy[k]
        if (dw == 0.0 or at_roundoff or (it > 0 and rate / (1.0 - rate) * dw < tol)
                or (it == 0 and 0.0 < prior < 1.0 and prior / (1.0 - prior) * dw < tol)):
            n_iter = max(n_iter, it + 1)
            worst = max(worst, rate)
            if hi == n:
                return True, n_iter, n_eval, worst
            lo, hi = hi, n  # the states converged: now their sensitivities
            it = 0
            prior = rate
            rate = 0.0
            continue
        dw_old = dw
        it += 1
        if it == NEWTON_MAXITER:
            return False, NEWTON_MAXITER, n_eval, rate


@nb.njit(cache=True, nogil=True)
def restart_history(D, z, f, h_signed):
    """Order-1 history at ``z``: ``D[0] = z``, ``D[1] = h f``, the rest zero."""
    D[:, :] = 0.0
    for x in range(z.shape[0]):
        D[0, x] = z[x]
        D[1, x] = h_signed * f[x]


@nb.njit(cache=True, nogil=True)
def dense_coefficients(D, order, W, hh, K):
    """``K[m-1] = (1/hh) sum_{j=1}^{order} W[j, m] D[j]`` (module doc): the
    interpolant of the accepted step in the loops' power form (``P = I``)."""
    n = D.shape[1]
    inv_h = 1.0 / hh
    for m in range(1, K.shape[0] + 1):
        for x in range(n):
            acc = 0.0
            for j in range(1, order + 1):
                acc += W[j, m] * D[j, x]
            K[m - 1, x] = acc * inv_h


@nb.njit(cache=True, nogil=True, inline="always")
def _growth(norm, p):
    """``norm^(-1/p)``, large for a zero estimate."""
    if norm == 0.0:
        return 2.0 * RATIO_MAX
    return norm ** (-1.0 / p)


@nb.njit(cache=True, nogil=True)
def bdf_integrate(sys, z0, t0, t1, gamma, alpha, error_const, W, P, max_order, fixed_order, rtol,
                  atol, h_init, hmax, dt, max_steps, t_eval, store_dense, t_stops, banded, kl, ku,
                  perm, perm_inv, jrows, jcols, block, stride):
    """Integrate ``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction) with the NDFs.

    Parameters
    ----------
    sys : system NamedTuple with rhs and Jacobian registered
    z0 : (n,) initial state
    gamma, alpha, error_const : (6,) by order (``BDFCoefficients``); W : (6, 6)
        interpolant basis; P : (5, 5) identity (dense output in power form)
    max_order : int in 1..5; fixed_order : order rises to ``max_order`` and stays
    rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense, t_stops : as
        ``rosenbrock_integrate`` (``dt > 0``: fixed steps, see the module doc)
    banded, kl, ku, perm, perm_inv, jrows, jcols, block, stride : ``linalg.LinearMode.args()``

    Returns
    -------
    as ``rosenbrock_integrate``; ``nfev`` counts every rhs evaluation of Newton.
    """
    n = z0.shape[0]
    s = P.shape[0]
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    adaptive = dt <= 0.0
    max_order = max(1, min(MAX_ORDER, max_order))
    tol = max(10.0 * EPS / rtol, min(0.03, rtol ** 0.5))
    # borrowed views of every array handed to a helper (see ``rk_integrate``)
    atol, t_eval, t_stops = borrow1(atol), borrow1(t_eval), borrow1(t_stops)
    perm, perm_inv, jrows, jcols = borrow1(perm), borrow1(perm_inv), borrow1(jrows), borrow1(jcols)
    gamma, alpha, error_const, W, P = (borrow1(gamma), borrow1(alpha), borrow1(error_const),
                                       borrow2(W), borrow2(P))
    K_o, J_o, M_o, piv_o = (np.zeros((s, n)), jacobian_storage(n, banded, jrows.shape[0], block, stride),
                            matrix_storage(n, banded, kl, ku, block, stride), np.zeros(n, dtype=np.int64))
    K, J, M, piv = borrow2(K_o), borrow2(J_o), borrow2(M_o), borrow1(piv_o)
    D_o, tmp_o, RU_o = np.zeros((MAX_ORDER + 3, n)), np.zeros((MAX_ORDER + 1, n)), np.zeros((6, 6))
    D, tmp, RU = borrow2(D_o), borrow2(tmp_o), borrow2(RU_o)
    vec_o = np.zeros(10 * n + s)
    vb = borrow1(vec_o)
    Z, zp, psi, d, fz = vb[:n], vb[n:2 * n], vb[2 * n:3 * n], vb[3 * n:4 * n], vb[4 * n:5 * n]
    dy, lwork, work, z = vb[5 * n:6 * n], vb[6 * n:7 * n], vb[7 * n:8 * n], vb[8 * n:9 * n]
    f1, wbuf = vb[9 * n:10 * n], vb[10 * n:]
    (stats, ts_o, hs_o, zs_o, Ks_o, z_eval_own, i_eval,
     ts, hs, zs, Ks, z_eval) = begin_borrowed(t0, z0, z, s, store_dense, t_eval)
    n_stored = 1
    t = t0
    if span == 0.0:
        return SUCCESS, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    finite, h = first_step(sys, t, z, fz, direction, 1, rtol, atol, h_init, dt, hmax, span, work, f1,
                           stats)
    if not finite:
        return NONFINITE, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    restart_history(D, z, fz, direction * h)
    order = 1
    n_equal = 0  # accepted steps of the current size and order
    need_jac = True
    jac_current = False  # J was evaluated in the current step attempt
    c_fact = 0.0  # the c that M is factored for
    n_singular = 0
    saw_nonfinite = False
    status = SUCCESS
    i_stop = 0
    # storage regrown outside the stepping loop (see ``rk_integrate``)
    while True:
        while (t1 - t) * direction > 0.0 and not full(ts, n_stored, store_dense):
            status, i_stop, target, last, hh = next_attempt(stats, max_steps, h, t, t1, saw_nonfinite,
                                                             t_stops, i_stop, direction, span)
            if status != SUCCESS:
                break
            if abs(hh) != h:  # landing on the target: the history follows the step
                rescale_history(D, order, abs(hh) / h, RU, tmp)
                h = abs(hh)
                n_equal = 0
            t_new = target if last else t + hh
            for x in range(n):
                acc = 0.0
                ps = 0.0
                for j in range(order + 1):
                    acc += D[j, x]
                for j in range(1, order + 1):
                    ps += gamma[j] * D[j, x]
                zp[x] = acc
                psi[x] = ps / alpha[order]
            c = hh / alpha[order]
            if need_jac:
                sys_jac(sys, t_new, zp, J)
                stats[4] += 1
                need_jac = False
                jac_current = True
                c_fact = 0.0
            c_fact = factor_for(c, c_fact, 1.0, J, banded, kl, ku, perm_inv, jrows, jcols, block, stride, M,
                                piv, stats)
            if c_fact == 0.0:  # singular: halve the step, a few times at most
                n_singular += 1
                if n_singular > MAX_SINGULAR or not adaptive:
                    status = SINGULAR
                    break
                rescale_history(D, order, 0.5, RU, tmp)
                h *= 0.5
                n_equal = 0
                continue
            n_singular = 0
            stats[1] += 1
            ok, n_iter, n_eval, rate = newton_bdf(sys, t_new, zp, c, psi, M, piv, banded, kl, ku, perm,
                                                  block, stride, rtol, atol, tol, Z, d, fz, dy, lwork)
            stats[0] += n_eval
            if not ok:
                # Newton failed: first refresh a stale Jacobian, then shrink the step
                stats[3] += 1
                if rate == np.inf:
                    saw_nonfinite = True
                if not jac_current:
                    need_jac = True
                elif adaptive:
                    rescale_history(D, order, 0.5, RU, tmp)
                    h *= 0.5
                    n_equal = 0
                else:
                    status = NONFINITE if saw_nonfinite else STEP_UNDERFLOW
                    break
                continue
            # slow convergence asks for a new J only if this one is stale: a J
            # evaluated for this very step would not converge faster
            slow = n_iter >= SLOW_ITER and rate > SLOW_RATE and not jac_current
            safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter)
            finite = all_finite(Z)
            err = 0.0
            if adaptive:
                if finite:
                    for x in range(n):
                        work[x] = error_const[order] * d[x]
                    err = rms_scaled(work, Z, Z, rtol, atol)
                else:
                    err = np.inf
                if not math.isfinite(err):
                    saw_nonfinite = True
                    stats[3] += 1
                    rescale_history(D, order, NONFINITE_SHRINK, RU, tmp)
                    h *= NONFINITE_SHRINK
                    n_equal = 0
                    continue
                if err > 1.0:
                    stats[3] += 1
                    r = max(RATIO_MIN, safety * _growth(err, order + 1))
                    rescale_history(D, order, r, RU, tmp)
                    h *= r
                    n_equal = 0
                    continue
            elif not finite:
                status = NONFINITE
                break
            # -- accepted: update the differences to the new point
            for x in range(n):
                D[order + 2, x] = d[x] - D[order + 1, x]
                D[order + 1, x] = d[x]
            for j in range(order, -1, -1):
                for x in range(n):
                    D[j, x] += D[j + 1, x]
            dense_coefficients(D, order, W, hh, K)
            # at a stop the system may reset Z; the history restarts below either way
            t, i_eval, at_stop, _, n_stored = land_step(sys, t, hh, target, last, t1, z, Z, K, P, wbuf,
                                                        t_eval, i_eval, z_eval, direction, ts, hs, zs,
                                                        Ks, n_stored, store_dense, stats)
            copy_flat(z, Z)
            jac_current = False
            if slow:
                need_jac = True
            n_equal += 1
            if at_stop:
                # a discontinuity (state reset, control kink): restart at order 1
                sys_rhs(sys, t, z, fz)
                stats[0] += 1
                if adaptive:
                    remaining = abs(t1 - t)
                    h0 = initial_step(sys, t, z, fz, direction, 1, rtol, atol, hmax, remaining,
                                      work, f1)
                    stats[0] += 1
                    h = min(h, h0)
                else:
                    h = dt
                restart_history(D, z, fz, direction * h)
                order = 1
                n_equal = 0
                continue
            if not adaptive:
                if order < max_order:
                    order += 1
                if h != dt:
                    rescale_history(D, order, dt / h, RU, tmp)
                    h = dt
                continue
            if n_equal < order + 1:
                if h > hmax:
                    rescale_history(D, order, hmax / h, RU, tmp)
                    h = hmax
                continue
            # order and step selection among k - 1, k, k + 1
            if fixed_order:
                e_lo = np.inf
                e_mid = err if order >= max_order else np.inf
            else:
                e_mid = err
                e_lo = np.inf
                if order > 1:
                    for x in range(n):
                        work[x] = error_const[order - 1] * D[order, x]
                    e_lo = rms_scaled(work, Z, Z, rtol, atol)
            e_hi = np.inf
            if order < max_order:
                for x in range(n):
                    work[x] = error_const[order + 1] * D[order + 2, x]
                e_hi = rms_scaled(work, Z, Z, rtol, atol)
            f_lo = _growth(e_lo, order) if order > 1 and e_lo < np.inf else 0.0
            f_mid = _growth(e_mid, order + 1) if e_mid < np.inf else 0.0
            f_hi = _growth(e_hi, order + 2) if e_hi < np.inf else 0.0
            best = f_mid
            new_order = order
            if f_lo > best:
                best = f_lo
                new_order = order - 1
            if f_hi > best:
                best = f_hi
                new_order = order + 1
            order = new_order
            # (best = 0 only when every estimate was non-finite: shrink, never zero)
            r = max(RATIO_MIN, min(RATIO_MAX, safety * best))
            if h * r > hmax:
                r = hmax / h
            rescale_history(D, order, r, RU, tmp)
            h *= r
            n_equal = 0
        if status != SUCCESS or (t1 - t) * direction <= 0.0:
            break
        ts_o, hs_o, zs_o, Ks_o = grow_storage(ts_o, hs_o, zs_o, Ks_o, store_dense)
        ts, hs, zs, Ks = borrow_storage(ts_o, hs_o, zs_o, Ks_o)
    ts, zs, hs, Ks = stored(ts_o, hs_o, zs_o, Ks_o, n_stored, store_dense)
    keep_alive(K_o, J_o, M_o)  # one array type per call
    keep_alive(D_o, tmp_o, RU_o)
    keep_alive(vec_o)
    keep_alive(piv_o)
    return status, t, n_stored, ts, zs, hs, Ks, z_eval_own, stats
