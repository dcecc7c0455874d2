"""The Rosenbrock stepping loop (RODAS4, RODAS5), with the symbolic Jacobian.

A step of size ``h`` from ``(t, z)`` (stage equations of
``sciode.methods.stiff_tableaus.RosenbrockTableau``): with ``J = dF/dz(t, z)``,
``F_t = dF/dt(t, z)`` and ``M = I/(h gamma) - J`` factored once per step::

    M U[i] = F(t + alpha[i] h, z + sum_{j<i} A[i, j] U[j]) + sum_{j<i} (C[i, j]/h) U[j]
             + h gamma_sum[i] F_t
    z_new = z + sum_i m[i] U[i],      err = sum_i e[i] U[i]

The Jacobian is evaluated once per accepted point (a rejected step reuses it
with a smaller ``h``, refactoring only ``M``).  Step control is Hairer's
``rodas.f`` strategy: ``h_new/h = 0.9 err^(-1/q)`` clipped to [0.2, 6], and
after the first accepted step the predictive (Gustafsson) controller, whose
smaller proposal wins; ``q`` is the embedded order plus one (4 for RODAS4, as
in ``rodas.f``; 5 for RODAS5).

Dense output is stored in the explicit loops' polynomial form, so
``sciode.cpu.dense`` serves it unchanged.  RODAS's interpolant (``d`` rows of
``H``: 2 for RODAS4, 3 for RODAS5)

    z(t + theta h) = (1 - theta) z + theta z_new
                     + theta (1 - theta) sum_{r<d} theta^r H[r].U

is, with ``z_new - z = sum_i m[i] U[i]`` and ``K[i] := U[i] / h``,
``z + h sum_i K[i] sum_{j<=d} P[i, j] theta^(j+1)`` for
``P[i] = (m[i] + H[0, i], H[1, i] - H[0, i], ..., H[d-1, i] - H[d-2, i], -H[d-1, i])``
(``rodas_P``; for ``d = 2`` that is ``(m + H[0], H[1] - H[0], -H[1])``).

The loop calls only ``sys_rhs``, ``sys_jac`` and ``sys_dfdt``: it integrates
any registered system (augmented adjoint systems included).  The helpers at
the bottom (storage, ``t_eval`` service) are shared with ``sdirk.py``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .._numba_compat import borrow1, borrow2, keep_alive
from .explicit import all_finite, initial_step, rms_scaled
from .linalg import factor_for, jacobian_storage, matrix_storage, solve_in_place
from .stepping import (CONTINUE, borrow_storage, copy_flat, full, grow_storage, next_target, record_step,
                       serve_t_eval, start_storage, step_guard, step_to, stored)
from .status import NONFINITE, SINGULAR, SUCCESS
from .systems import sys_dfdt, sys_jac, sys_rhs, sys_stop

SAFETY = 0.9
RATIO_MIN = 0.2  # rodas.f: 0.2 <= h_new / h_old <= 6
RATIO_MAX = 6.0
#: consecutive singular iteration matrices (halving h each time) before SINGULAR.
MAX_SINGULAR = 5
N_STATS = 6  # nfev, nsteps, naccepted, nrejected, njev, nlu


def rodas_P(m, H) -> np.ndarray:
    """The ``(s, d + 1)`` dense-output matrix of a Rosenbrock tableau with
    ``d`` rows of ``H`` (module doc)."""
    m = np.asarray(m, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    cols = [m + H[0], *(H[r] - H[r - 1] for r in range(1, H.shape[0])), -H[-1]]
    return np.ascontiguousarray(np.stack(cols, axis=1))


# -- the loop ---------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def rodas_stages(sys, t, z, h, A, C, alpha, gamma_sum, f0, ft, M, piv, banded, kl, ku, perm,
                 block, stride, U, work, rhs, lwork):
    """The ``s`` increments ``U`` of one step (``M`` already factored for ``h``)."""
    n = z.shape[0]
    s = A.shape[0]
    for i in range(s):
        if i == 0:
            copy_flat(rhs, f0)
        else:
            for k in range(n):
                acc = 0.0
                for j in range(i):
                    acc += A[i, j] * U[j, k]
                work[k] = z[k] + acc
            sys_rhs(sys, t + alpha[i] * h, work, rhs)
        gh = h * gamma_sum[i]
        for k in range(n):
            acc = 0.0
            for j in range(i):
                acc += C[i, j] * U[j, k]
            rhs[k] += acc / h + gh * ft[k]
        solve_in_place(M, piv, banded, kl, ku, perm, block, stride, rhs, lwork)
        copy_flat(U[i], rhs)


@nb.njit(cache=True, nogil=True)
def rodas_ratio(err, h, h_acc, err_acc, n_accepted, q):
    """``h_new / h`` from ``rodas.f``'s controller (predictive after the first
    step), with exponent ``1/q`` (``rodas.f``: ``q = 4``)."""
    if err == 0.0:
        return RATIO_MAX
    k = 1.0 / q
    r = min(RATIO_MAX, max(RATIO_MIN, SAFETY * err ** -k))
    if n_accepted >= 1 and err <= 1.0:
        gus = (h / h_acc) * (err_acc / (err * err)) ** k * SAFETY
        r = min(r, min(RATIO_MAX, max(RATIO_MIN, gus)))
    return r


@nb.njit(cache=True, nogil=True)
def rosenbrock_integrate(sys, z0, t0, t1, A, C, alpha, gamma_sum, m, e, P, gamma, q, rtol, atol,
                         h_init, hmax, dt, max_steps, t_eval, store_dense, t_stops,
                         banded, kl, ku, perm, perm_inv, jrows, jcols, block, stride):
    """Integrate ``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction) with RODAS.

    Parameters
    ----------
    sys : system NamedTuple with rhs, Jacobian and time derivative registered
    z0 : (n,) initial state
    A, C : (s, s); alpha, gamma_sum, m, e : (s,); P : (s, d + 1) (``rodas_P``); gamma : float
    q : float, the embedded order plus one (step-size controller exponent ``1/q``)
    rtol : float; atol : (n,)
    h_init : first step (0 = automatic); hmax : largest |h|
    dt : fixed step (0 = adaptive; a fixed step is never rejected)
    max_steps : bound on attempted steps
    t_eval : (m,) output times; store_dense : storage level (``stepping``: 1 with
        ``K = U/h`` of every step, 0 steps, -1 latest state only)
    t_stops : times a step lands on (``rk_integrate``), where ``sys_stop`` may reset the state
    banded, kl, ku, perm, perm_inv, jrows, jcols, block, stride : ``linalg.LinearMode.args()``

    Returns
    -------
    status, t_reached, n_stored, ts, zs, hs, Ks (n_stored - 1, s, n) or empty,
    z_eval (m, n), stats (nfev, nsteps, naccepted, nrejected, njev, nlu)
    """
    n = z0.shape[0]
    s = A.shape[0]
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    adaptive = dt <= 0.0
    # borrowed views of every array handed to a helper (see ``rk_integrate``)
    atol, t_eval, t_stops = borrow1(atol), borrow1(t_eval), borrow1(t_stops)
    perm, perm_inv, jrows, jcols = borrow1(perm), borrow1(perm_inv), borrow1(jrows), borrow1(jcols)
    A, C, alpha, gamma_sum, m, e, P = (borrow2(A), borrow2(C), borrow1(alpha), borrow1(gamma_sum),
                                       borrow1(m), borrow1(e), borrow2(P))
    U_o, K_o, J_o, M_o, piv_o = (np.zeros((s, n)), np.zeros((s, n)), jacobian_storage(n, block),
                                 matrix_storage(n, banded, kl, ku, block), np.zeros(n, dtype=np.int64))
    U, K, J, M, piv = borrow2(U_o), borrow2(K_o), borrow2(J_o), borrow2(M_o), borrow1(piv_o)
    vec_o = np.zeros(7 * n + s)
    vb = borrow1(vec_o)
    f0, ft, work, rhs, lwork = vb[:n], vb[n:2 * n], vb[2 * n:3 * n], vb[3 * n:4 * n], vb[4 * n:5 * n]
    z, z_new, wbuf = vb[5 * n:6 * n], vb[6 * n:7 * n], vb[7 * n:]
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
    sys_rhs(sys, t, z, f0)
    stats[0] += 1
    if not all_finite(f0) or not all_finite(z):
        return NONFINITE, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    if not adaptive:
        h = dt
    elif h_init > 0.0:
        h = min(h_init, hmax, span)
    else:
        h = initial_step(sys, t, z, f0, direction, int(q) - 1, rtol, atol, hmax, span, work, rhs)
        stats[0] += 1
    need_jac = True
    h_fact = 0.0  # the signed step M is factored for (0: none)
    h_acc = 1.0
    err_acc = 1.0
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
                sys_dfdt(sys, t, z, ft)
                stats[4] += 1
                need_jac = False
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
            rodas_stages(sys, t, z, hh, A, C, alpha, gamma_sum, f0, ft, M, piv, banded, kl, ku, perm,
                         block, stride, U, work, rhs, lwork)
            stats[0] += s - 1
            stats[1] += 1
            for k in range(n):
                acc = 0.0
                ek = 0.0
                for i in range(s):
                    acc += m[i] * U[i, k]
                    ek += e[i] * U[i, k]
                z_new[k] = z[k] + acc
                work[k] = ek
            finite = all_finite(z_new)
            if adaptive:
                err = rms_scaled(work, z, z_new, rtol, atol) if finite else np.inf
                if not math.isfinite(err):
                    saw_nonfinite = True
                    stats[3] += 1
                    h = abs(hh) * RATIO_MIN
                    rejected_last = True
                    continue
                r = rodas_ratio(err, abs(hh), h_acc, err_acc, stats[2], q)
                if err > 1.0:
                    stats[3] += 1
                    h = abs(hh) * (0.1 if stats[2] == 0 else r)
                    rejected_last = True
                    continue
                h_acc = abs(hh)
                err_acc = max(1e-2, err)
                if rejected_last:
                    r = min(r, 1.0)
                h_next = min(abs(hh) * r, hmax)
            else:
                if not finite:
                    status = NONFINITE
                    break
                h_next = dt
            # -- accepted
            for i in range(s):
                for k in range(n):
                    K[i, k] = U[i, k] / hh
            t_new = target if last else t + hh
            i_eval = serve_t_eval(t_eval, i_eval, t, t_new, hh, z, K, P, wbuf, z_eval, direction)
            if last and target != t1:
                sys_stop(sys, t_new, z_new)  # F is re-evaluated below in any case
            n_stored = record_step(ts, hs, zs, Ks, n_stored, t_new, hh, z_new, K, store_dense)
            stats[2] += 1
            t = t_new
            copy_flat(z, z_new)
            rejected_last = False
            h = h_next
            sys_rhs(sys, t, z, f0)
            stats[0] += 1
            need_jac = True
            if not all_finite(f0):
                status = NONFINITE
                break
        if status != SUCCESS or (t1 - t) * direction <= 0.0:
            break
        ts_o, hs_o, zs_o, Ks_o = grow_storage(ts_o, hs_o, zs_o, Ks_o, store_dense)
        ts, hs, zs, Ks = borrow_storage(ts_o, hs_o, zs_o, Ks_o)
    ts, zs, hs, Ks = stored(ts_o, hs_o, zs_o, Ks_o, n_stored, store_dense)
    keep_alive(U_o, K_o, J_o, M_o)  # one array type per call
    keep_alive(vec_o)
    keep_alive(piv_o)
    return status, t, n_stored, ts, zs, hs, Ks, z_eval_own, stats
