"""The stepping loop of the stiff methods: Rosenbrock (RODAS4, RODAS5), ESDIRK
(Kvaerno5) and the variable-order BDF, written once.

What a family supplies is its attempt-step and its controller:

- Rosenbrock (``rosenbrock.py``): ``rodas_stages`` solves the ``s`` linear
  stages with ``M = I/(h gamma) - J`` (``J`` and ``dF/dt`` evaluated at every
  accepted point), ``z_new = z + sum m_i U_i``, ``err = sum e_i U_i``; the
  controller is ``rodas.f``'s with Gustafsson's predictive step
  (``rodas_ratio``).
- ESDIRK (``sdirk.py``): ``dirk_stages`` solves the implicit stages by
  simplified Newton (``newton.py``) with the same ``M`` (``J`` kept across
  steps, refreshed when Newton fails or converges slowly); ``z_new`` is the
  last stage (stiffly accurate), ``err = h sum e_i K_i``; a PI controller that
  holds ``h`` (and the LU) for ratios in [1, 1.2] (``dirk_ratio``).
- BDF (``bdf.py``): ``bdf_predict`` from the history of differences, one
  simplified Newton solve with ``M = I/c - J``, ``c = h / alpha_k`` (``J`` at the
  predictor, kept across steps as ESDIRK's), ``err = error_const_k (z_new -
  z_pred)``; after an accepted step ``bdf_accept`` moves the history and
  ``bdf_next`` chooses order and step.  The history follows the step lazily:
  an attempt whose step differs from the history's spacing rescales it first.

Everything else is this loop's: the prologue (first ``F``, starting step
with the method's error order), the guards (``step_guard``), landing on
stops (``next_target``/``step_to``), refactoring ``M`` only when its constant
``c`` (``h gamma``, or BDF's ``h / alpha_k``) changes (``linalg.factor_for``)
and halving on a singular ``M``, the Jacobian's reuse, rejecting failed
Newton solves and non-finite trials, dense output (``K`` of the accepted step,
``P`` in the explicit loops' polynomial form), storage and its regrowth, and
the statuses.  The family is the method tuple's ``kind`` (``ROSENBROCK``,
``ESDIRK`` or ``BDF``), a run-time value: one compiled loop serves every stiff
method, and the branches cost nothing next to a step's LU solves.

Compiling the loop once per family instead (the family a closure constant,
the other families' branches pruned before typing) was measured and
withdrawn: a cold single-method gradient compiled faster (Lotka-Volterra,
empty caches: bdf 79 s of CPU against 112 s, kvaerno5 68 s against 113 s), but
the closure-compiled loop ran small systems' steps about 10% slower (Van der
Pol, rodas4: 0.78-0.83 ms against 0.71-0.74 ms, same step counts), and a
loop is compiled once per installation but run in every call.

The one-step families keep ``F(t, z)`` in ``K[0]`` at the start of a step: the
ESDIRK's first (explicit) stage, the Rosenbrock's ``f0``.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba as nb
import numpy as np

from .._numba_compat import borrow1, borrow2, keep_alive
from . import bdf as B
from .bdf import bdf_accept, bdf_next, bdf_predict, bdf_ratio, rescale_history, restart_history
from .explicit import all_finite, first_step, initial_step, rms_scaled
from .linalg import LinearMode, factor_for, jacobian_storage, matrix_storage
from .newton import simplified_newton
from .rosenbrock import rodas_ratio, rodas_stages
from .sdirk import dirk_ratio, dirk_stages
from .stepping import (EPS, MAX_SINGULAR, NONFINITE_SHRINK, begin_borrowed, borrow_storage,
                       copy_flat, full, grow_storage, land_step, next_attempt, stored)
from .status import NONFINITE, SINGULAR, STEP_UNDERFLOW, SUCCESS
from .systems import sys_dfdt, sys_jac, sys_rhs

#: ``ImplicitMethod.kind``
ROSENBROCK, ESDIRK, BDF = 0, 1, 2

#: A stiff method plus its linear-algebra mode ``lin`` (``linalg.LinearMode.typed()``).
#: Rosenbrock: ``A, C, alpha, gamma_sum, m, e`` of ``RosenbrockTableau``;
#: ESDIRK: ``A``, ``alpha = c``, ``m = b``, ``e`` of ``DIRKTableau`` (``C``,
#: ``gamma_sum`` empty).  ``P`` the dense output, ``gamma`` the diagonal,
#: ``q`` the embedded order plus one (controller exponent ``1/q``; the
#: starting step's order is ``q - 1``).
#: BDF (``BDFCoefficients``, by order 0..5): ``A = W`` the interpolant basis,
#: ``alpha``, ``m = gamma`` (the NDF's sums), ``e = error_const``, ``P`` the
#: identity (power form), ``gamma = 1``, ``q = 2`` (an order-1 start);
#: ``max_order`` caps the order and ``fixed_order`` raises it to the cap and
#: keeps it there (convergence studies); both unused by the one-step families.
#: ``sweep_on_steps``: a backward (costate) sweep must land on every stored
#: forward step (``adjoint.entries.costate_sweep``), because the method's error
#: estimate does not see the sweep's dependence on t (RODAS5's is identically
#: zero for a t-only rate), and the interpolated forward state is only
#: piecewise smooth: a step across a forward step boundary loses order unseen.
ImplicitMethod = namedtuple("ImplicitMethod", [
    "A", "C", "alpha", "gamma_sum", "m", "e", "P", "gamma", "q", "kind", "sweep_on_steps",
    "max_order", "fixed_order", "lin"])


@nb.njit(cache=True, nogil=True)
def implicit_integrate(sys, z0, t0, t1, loop, t_eval, store_dense):
    """Integrate ``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction) with
    the ``ImplicitMethod`` ``loop.method``.

    Parameters
    ----------
    sys : system NamedTuple with rhs and Jacobian (and, for Rosenbrock, time
        derivative) registered (``sciode.cpu.systems``)
    z0 : (n,) initial state
    loop : ``bundles.Loop``: ``rtol``, ``atol (n,)``, ``h_init`` (first step,
        0 = automatic), ``hmax``, ``dt`` (fixed step; 0 = adaptive; a fixed
        step is never rejected; BDF's order then rises by one per step to
        ``max_order``), ``max_steps`` (bound on attempted steps) and ``stops``,
        times a step lands on (``rk_integrate``), where ``sys_stop`` may reset
        the state (BDF restarts its history there at order 1)
    t_eval : (m,) output times; store_dense : storage level (``stepping``: 1
        with the stages ``K`` of every step, 0 steps, -1 latest state only)

    Returns
    -------
    status, t_reached, n_stored, ts, zs, hs, Ks (n_stored - 1, len(P), n) or empty,
    z_eval (m, n), stats (nfev, nsteps, naccepted, nrejected, njev, nlu);
    ``nfev`` counts every rhs evaluation of Newton.
    """
    meth = loop.method
    rtol, atol, h_init, hmax, dt, max_steps, t_stops = (loop.rtol, loop.atol, loop.h_init,
                                                        loop.hmax, loop.dt, loop.max_steps,
                                                        loop.stops)
    n = z0.shape[0]
    s = meth.A.shape[0]
    s_dense = meth.P.shape[0]
    kind = meth.kind
    rosen = kind == ROSENBROCK
    bdf = kind == BDF
    gamma, q = meth.gamma, meth.q
    max_order = max(1, min(B.MAX_ORDER, meth.max_order))
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    adaptive = dt <= 0.0
    tol = max(10.0 * EPS / rtol, min(0.03, rtol ** 0.5))  # Newton's
    # borrowed views of every array handed to a helper (see ``rk_integrate``)
    atol, t_eval, t_stops = borrow1(atol), borrow1(t_eval), borrow1(t_stops)
    lm = meth.lin
    lin = LinearMode(lm.banded, lm.kl, lm.ku, borrow1(lm.perm), borrow1(lm.perm_inv),
                     borrow1(lm.rows), borrow1(lm.cols), lm.block, lm.stride)
    A, C, alpha, gamma_sum = borrow2(meth.A), borrow2(meth.C), borrow1(meth.alpha), borrow1(meth.gamma_sum)
    mw, e, P = borrow1(meth.m), borrow1(meth.e), borrow2(meth.P)
    U_o, K_o = np.zeros((s if rosen else 0, n)), np.zeros((s_dense, n))
    J_o = jacobian_storage(n, lin)
    M_o = matrix_storage(n, lin)
    piv_o = np.zeros(n, dtype=np.int64)
    U, K, J, M, piv = borrow2(U_o), borrow2(K_o), borrow2(J_o), borrow2(M_o), borrow1(piv_o)
    # BDF's history of differences and its rescaling scratch (empty otherwise)
    nh = n if bdf else 0
    D_o, tmp_o, RU_o = np.zeros((B.MAX_ORDER + 3, nh)), np.zeros((B.MAX_ORDER + 1, nh)), np.zeros((6, 6))
    D, tmp, RU = borrow2(D_o), borrow2(tmp_o), borrow2(RU_o)
    vec_o = np.zeros(9 * n + s_dense)
    vb = borrow1(vec_o)
    z, z_new, work, lwork = vb[:n], vb[n:2 * n], vb[2 * n:3 * n], vb[3 * n:4 * n]
    # family scratch: Rosenbrock dF/dt and the stage right-hand side; ESDIRK psi,
    # F(Z), dZ; BDF the predictor, psi, F(Z), dZ and the correction
    a1, a2, a3, a4, a5 = vb[4 * n:5 * n], vb[5 * n:6 * n], vb[6 * n:7 * n], vb[7 * n:8 * n], vb[8 * n:9 * n]
    wbuf = vb[9 * n:]
    (stats, ts_o, hs_o, zs_o, Ks_o, z_eval_own, i_eval,
     ts, hs, zs, Ks, z_eval) = begin_borrowed(t0, z0, z, s_dense, store_dense, t_eval)
    n_stored = 1
    t = t0
    if span == 0.0:
        return SUCCESS, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    f0 = K[0]
    finite, h = first_step(sys, t, z, f0, direction, int(q) - 1, rtol, atol, h_init, dt, hmax, span,
                           work, a3, stats)
    if not finite:
        return NONFINITE, t, n_stored, ts_o[:1], zs_o[:1], hs_o[:0], Ks_o[:0], z_eval_own, stats
    order = 1  # BDF's
    n_equal = 0  # BDF: accepted steps of the current size and order
    h_hist = h  # BDF: the step the history is spaced by
    if bdf:
        restart_history(D, z, f0, direction * h)
    need_jac = True
    jac_current = False  # J was evaluated for the current attempt's point
    c_fact = 0.0  # the constant M = I/c - J is factored for (0: none)
    err_prev = 1e-4  # ESDIRK's PI memory; Rosenbrock's last accepted step and error:
    h_acc = 1.0
    err_acc = 1.0
    err = 0.0
    n_iter = 0
    n_singular = 0
    rejected_last = False
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
            if bdf:
                if abs(hh) != h_hist:  # the history follows the step
                    rescale_history(D, order, abs(hh) / h_hist, RU, tmp)
                    h_hist = abs(hh)
                    n_equal = 0
                bdf_predict(D, order, mw, alpha, a1, z_new, a2)
                c = hh / alpha[order]
            else:
                c = hh * gamma
            t_new = target if last else t + hh
            if need_jac:
                if bdf:  # at the predictor
                    sys_jac(sys, t_new, a1, J)
                else:
                    sys_jac(sys, t, z, J)
                    if rosen:
                        sys_dfdt(sys, t, z, a1)
                stats[4] += 1
                need_jac = False
                jac_current = True
                c_fact = 0.0
            c_fact = factor_for(c, c_fact, J, lin, M, piv, stats)
            if c_fact == 0.0:  # singular: halve the step, a few times at most
                n_singular += 1
                if n_singular > MAX_SINGULAR or not adaptive:
                    status = SINGULAR
                    break
                h = 0.5 * abs(hh)
                continue
            n_singular = 0
            # -- the family's attempt: z_new, and (Rosenbrock) the error vector in work
            stats[1] += 1
            ok, slow, finite = True, False, True
            if rosen:
                rodas_stages(sys, t, z, hh, A, C, alpha, gamma_sum, f0, a1, M, piv, lin, U, work, a2,
                             lwork)
                stats[0] += s - 1
                for k in range(n):
                    acc = 0.0
                    ek = 0.0
                    for i in range(s):
                        acc += mw[i] * U[i, k]
                        ek += e[i] * U[i, k]
                    z_new[k] = z[k] + acc
                    work[k] = ek
            elif bdf:
                ok, n_iter, n_eval, rate = simplified_newton(sys, t_new, a2, c, z_new, a1, M, piv, lin,
                                                             rtol, atol, tol, B.NEWTON_MAXITER, 0.0,
                                                             a3, a4, lwork)
                stats[0] += n_eval
                finite = rate != np.inf
                # slow convergence asks for a new J only if this one is stale: a J
                # evaluated for this very step would not converge faster
                slow = n_iter >= B.SLOW_ITER and rate > B.SLOW_RATE and not jac_current
                for k in range(n):
                    a5[k] = z_new[k] - a1[k]  # the correction
            else:
                ok, slow, finite = dirk_stages(sys, t, z, hh, A, alpha, gamma, K, M, piv, lin, rtol, atol,
                                               tol, z_new, a1, a2, a3, lwork, stats)
            if not ok:
                # Newton failed: first refresh a stale Jacobian, then shrink the step.
                stats[3] += 1
                if not finite:
                    saw_nonfinite = True
                if not jac_current:
                    need_jac = True
                elif adaptive:
                    h = 0.5 * abs(hh)
                else:
                    status = NONFINITE if saw_nonfinite else STEP_UNDERFLOW
                    break
                rejected_last = True
                continue
            finite = all_finite(z_new)
            if adaptive:
                if finite:
                    if bdf:
                        for k in range(n):
                            work[k] = e[order] * a5[k]
                        err = rms_scaled(work, z_new, z_new, rtol, atol)
                    else:
                        if not rosen:
                            for k in range(n):
                                acc = 0.0
                                for i in range(s):
                                    acc += e[i] * K[i, k]
                                work[k] = hh * acc
                        err = rms_scaled(work, z, z_new, rtol, atol)
                else:
                    err = np.inf
                # -- the family's controller: the ratio h_new / h, and whether to reject
                if not math.isfinite(err):
                    saw_nonfinite = True
                    err = np.inf
                    r = NONFINITE_SHRINK
                elif bdf:
                    r = bdf_ratio(err, order, n_iter) if err > 1.0 else 1.0
                elif rosen:
                    r = rodas_ratio(err, abs(hh), h_acc, err_acc, stats[2], q)
                    if err > 1.0:
                        r = 0.1 if stats[2] == 0 else r
                    else:
                        h_acc = abs(hh)
                        err_acc = max(1e-2, err)
                else:
                    r = dirk_ratio(err, err_prev, q, rejected_last)
                    if err <= 1.0:
                        err_prev = max(err, 1e-4)
                if err > 1.0:
                    stats[3] += 1
                    h = abs(hh) * r
                    rejected_last = True
                    continue
                if rosen and rejected_last:
                    r = min(r, 1.0)
                h_next = min(abs(hh) * r, hmax)
            else:
                if not finite:
                    status = NONFINITE
                    break
                h_next = dt
            # -- accepted: the step's dense output in K
            if bdf:
                bdf_accept(D, order, a5, A, hh, K)
            elif rosen:  # the stages' form: K[i] = U[i] / h
                for i in range(s):
                    for k in range(n):
                        K[i, k] = U[i, k] / hh
            t, i_eval, at_stop, reset, n_stored = land_step(sys, t, hh, target, last, t1, z, z_new, K, P,
                                                            wbuf, t_eval, i_eval, z_eval, direction, ts, hs,
                                                            zs, Ks, n_stored, store_dense, stats)
            copy_flat(z, z_new)
            rejected_last = False
            jac_current = False
            if rosen or slow:
                need_jac = True
            if not bdf:
                h = h_next
                if rosen or reset:
                    sys_rhs(sys, t, z, f0)
                    stats[0] += 1
                    if not all_finite(f0):
                        status = NONFINITE
                        break
                else:  # stiffly accurate: f(t_new, z_new) up to the Newton tolerance
                    copy_flat(f0, K[s - 1])
                continue
            n_equal += 1
            if at_stop:
                # a discontinuity (state reset, control kink): restart at order 1, as CVODES does
                sys_rhs(sys, t, z, f0)
                stats[0] += 1
                h = dt
                if adaptive:
                    h0 = initial_step(sys, t, z, f0, direction, 1, rtol, atol, hmax, abs(t1 - t), work, a3)
                    stats[0] += 1
                    h = min(abs(hh), h0)
                restart_history(D, z, f0, direction * h)
                h_hist = h
                order = 1
                n_equal = 0
            elif not adaptive:
                order = min(order + 1, max_order)
                h = dt
            else:
                order, h, n_equal = bdf_next(D, order, n_equal, h, err, n_iter, max_order, meth.fixed_order,
                                             hmax, e, z, rtol, atol, work)
        if status != SUCCESS or (t1 - t) * direction <= 0.0:
            break
        ts_o, hs_o, zs_o, Ks_o = grow_storage(ts_o, hs_o, zs_o, Ks_o, store_dense)
        ts, hs, zs, Ks = borrow_storage(ts_o, hs_o, zs_o, Ks_o)
    ts, zs, hs, Ks = stored(ts_o, hs_o, zs_o, Ks_o, n_stored, store_dense)
    keep_alive(U_o, K_o, J_o, M_o)  # one array type per call
    keep_alive(D_o, tmp_o, RU_o)
    keep_alive(vec_o)
    keep_alive(piv_o)
    return status, t, n_stored, ts, zs, hs, Ks, z_eval_own, stats


__all__ = ["BDF", "ESDIRK", "ROSENBROCK", "ImplicitMethod", "implicit_integrate"]
