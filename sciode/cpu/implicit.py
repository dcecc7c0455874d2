"""The stiff family of the stepping loop (``loop.py``): Rosenbrock (RODAS4,
RODAS5), ESDIRK (Kvaerno5) and the variable-order BDF.

What each supplies is its attempt-step and its controller:

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

Everything else is the stepping loop's (``loop.py``), which this module
joins as a family (``register_family``): this module adds the Jacobian's
reuse, refactoring ``M`` only when its constant ``c`` (``h gamma``, or BDF's
``h / alpha_k``) changes (``linalg.factor_for``), halving on a singular ``M``
and rejecting failed Newton solves.  The family is the method tuple's
``kind`` (``ROSENBROCK``, ``ESDIRK`` or ``BDF``), a run-time value: one
compiled loop serves every stiff method, and the branches cost nothing next
to a step's LU solves.

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

from collections import namedtuple

import numba as nb
import numpy as np

from .._numba_compat import NO_NRT
from . import bdf as B
from .bdf import bdf_accept, bdf_next, bdf_predict, bdf_ratio, rescale_history, restart_history
from .linalg import factor_for, jacobian_storage, matrix_storage
from .loop import REJECT, RETRY, STOP, TRIAL, Family, refresh_first_stage, register_family
from .newton import simplified_newton
from .rosenbrock import rodas_ratio, rodas_stages
from .sdirk import dirk_ratio, dirk_stages
from .status import NONFINITE, SINGULAR, STEP_UNDERFLOW, SUCCESS
from .stepping import EPS, MAX_SINGULAR, initial_step, rms_scaled
from .systems import sys_dfdt, sys_jac, sys_rhs

#: ``ImplicitMethod.kind``
ROSENBROCK, ESDIRK, BDF = 0, 1, 2

#: A stiff method plus its linear-algebra mode ``lin`` (``linalg.LinearMode.typed()``).
#: Rosenbrock: ``A, C, alpha, gamma_sum, m, e`` of ``RosenbrockTableau``;
#: ESDIRK: ``A``, ``alpha = c``, ``m = b``, ``e`` of ``DIRKTableau`` (``C``,
#: ``gamma_sum`` empty).  ``P`` the dense output, ``gamma`` the diagonal,
#: ``q`` the embedded order plus one (controller exponent ``1/q``), ``order``
#: the starting step's order (the embedded order).
#: BDF (``BDFCoefficients``, by order 0..5): ``A = W`` the interpolant basis,
#: ``alpha``, ``m = gamma`` (the NDF's sums), ``e = error_const``, ``P`` the
#: identity (power form), ``gamma = 1``, ``q = 2``, ``order = 1`` (an order-1
#: start); ``max_order`` caps the order and ``fixed_order`` raises it to the cap
#: and keeps it there (convergence studies); both unused by the one-step families.
#: ``sweep_on_steps``: a backward (costate) sweep must land on every stored
#: forward step (``adjoint.entries.costate_sweep``), because the method's error
#: estimate does not see the sweep's dependence on t (RODAS5's is identically
#: zero for a t-only rate), and the interpolated forward state is only
#: piecewise smooth: a step across a forward step boundary loses order unseen.
ImplicitMethod = namedtuple("ImplicitMethod", [
    "A", "C", "alpha", "gamma_sum", "m", "e", "P", "gamma", "q", "order", "kind", "sweep_on_steps",
    "max_order", "fixed_order", "lin"])

#: The family's work (``loop.py``): Rosenbrock increments ``U (s, n)``, the
#: Jacobian ``J`` and iteration matrix ``M`` with its pivots, BDF's history of
#: differences ``D`` and its rescaling scratch ``tmp``, ``RU``; vectors
#: ``lwork`` (the linear solves') and ``a1 .. a5``: Rosenbrock ``dF/dt`` and the
#: stage right-hand side; ESDIRK psi, ``F(Z)``, dZ; BDF the predictor, psi,
#: ``F(Z)``, dZ and the correction.  The state: ``fs = [h_hist, c_fact,
#: err_prev, h_acc, err_acc, tol]`` (the step the history is spaced by, the
#: constant ``M`` is factored for, ESDIRK's PI memory, Rosenbrock's last
#: accepted step and error, Newton's tolerance) and ``is_ = [order, n_equal,
#: need_jac, jac_current, n_iter, n_singular, slow]``.
StiffWork = namedtuple("StiffWork", ["U", "J", "M", "piv", "D", "tmp", "RU", "lwork", "a1", "a2", "a3",
                                     "a4", "a5", "fs", "is_"])
H_HIST, C_FACT, ERR_PREV, H_ACC, ERR_ACC, TOL = range(6)
ORDER, N_EQUAL, NEED_JAC, JAC_CURRENT, N_ITER, N_SINGULAR, SLOW = range(7)


@nb.njit(cache=True, nogil=True)
def stiff_work(meth, z0):
    n = z0.shape[0]
    nh = n if meth.kind == BDF else 0
    return StiffWork(np.zeros((meth.A.shape[0] if meth.kind == ROSENBROCK else 0, n)),
                     jacobian_storage(n, meth.lin), matrix_storage(n, meth.lin), np.zeros(n, dtype=np.int64),
                     np.zeros((B.MAX_ORDER + 3, nh)), np.zeros((B.MAX_ORDER + 1, nh)), np.zeros((6, 6)),
                     np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n),
                     np.zeros(6), np.zeros(7, dtype=np.int64))


@nb.njit(cache=True, nogil=True, inline="always")
def stiff_adaptive(meth, dt):
    return dt <= 0.0


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def stiff_start(meth, fam, sys, loop, t0, z, K, h, direction):
    fs, is_ = fam.fs, fam.is_
    fs[H_HIST], fs[C_FACT], fs[ERR_PREV], fs[H_ACC], fs[ERR_ACC] = h, 0.0, 1e-4, 1.0, 1.0
    fs[TOL] = max(10.0 * EPS / loop.rtol, min(0.03, loop.rtol ** 0.5))  # Newton's
    is_[ORDER], is_[N_EQUAL], is_[NEED_JAC], is_[JAC_CURRENT] = 1, 0, 1, 0
    is_[N_ITER], is_[N_SINGULAR], is_[SLOW] = 0, 0, 0
    if meth.kind == BDF:
        restart_history(fam.D, z, K[0], direction * h)


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def stiff_attempt(meth, fam, sys, loop, t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats):
    """The family's attempt (module doc): ``J`` when it is due, ``M``'s LU for
    this step, then the Rosenbrock stages, the BDF Newton solve or the ESDIRK
    stages (``loop.py``'s ``attempt`` contract)."""
    A, alpha, mw, e = meth.A, meth.alpha, meth.m, meth.e
    U, J, M, piv, D, tmp, RU, lwork, a1, a2, a3, a4, a5, fs, is_ = fam
    lin, rtol, atol = meth.lin, loop.rtol, loop.atol
    n = z.shape[0]
    s = A.shape[0]
    rosen = meth.kind == ROSENBROCK
    bdf = meth.kind == BDF
    adaptive = loop.dt <= 0.0
    order = is_[ORDER]
    if bdf:
        if abs(hh) != fs[H_HIST]:  # the history follows the step
            rescale_history(D, order, abs(hh) / fs[H_HIST], RU, tmp)
            fs[H_HIST] = abs(hh)
            is_[N_EQUAL] = 0
        bdf_predict(D, order, mw, alpha, a1, z_new, a2)
        c = hh / alpha[order]
    else:
        c = hh * meth.gamma
    jac_current = is_[JAC_CURRENT] != 0
    if is_[NEED_JAC] != 0:
        if bdf:  # at the predictor
            sys_jac(sys, t_new, a1, J)
        else:
            sys_jac(sys, t, z, J)
            if rosen:
                sys_dfdt(sys, t, z, K[0], a1)
        stats[4] += 1
        is_[NEED_JAC] = 0
        is_[JAC_CURRENT] = 1
        jac_current = True
        fs[C_FACT] = 0.0
    fs[C_FACT] = factor_for(c, fs[C_FACT], J, lin, M, piv, stats)
    if fs[C_FACT] == 0.0:  # singular: halve the step, a few times at most
        is_[N_SINGULAR] += 1
        if is_[N_SINGULAR] > MAX_SINGULAR or not adaptive:
            return STOP, float(SINGULAR), False
        return RETRY, 0.5 * abs(hh), False
    is_[N_SINGULAR] = 0
    stats[1] += 1
    ok, slow, finite = True, False, True
    if rosen:
        rodas_stages(sys, t, z, hh, A, meth.C, alpha, meth.gamma_sum, K[0], a1, M, piv, lin, U, work, a2,
                     lwork)
        stats[0] += s - 1
        for k in range(n):  # z_new, and the error vector in work
            acc = 0.0
            ek = 0.0
            for i in range(s):
                acc += mw[i] * U[i, k]
                ek += e[i] * U[i, k]
            z_new[k] = z[k] + acc
            work[k] = ek
    elif bdf:
        ok, n_iter, n_eval, rate = simplified_newton(sys, t_new, a2, c, z_new, a1, M, piv, lin, rtol, atol,
                                                     fs[TOL], B.NEWTON_MAXITER, 0.0, a3, a4, lwork)
        stats[0] += n_eval
        is_[N_ITER] = n_iter
        finite = rate != np.inf
        # slow convergence asks for a new J only if this one is stale: a J
        # evaluated for this very step would not converge faster
        slow = n_iter >= B.SLOW_ITER and rate > B.SLOW_RATE and not jac_current
        for k in range(n):
            a5[k] = z_new[k] - a1[k]  # the correction
    else:
        ok, slow, finite = dirk_stages(sys, t, z, hh, A, alpha, meth.gamma, K, M, piv, lin, rtol, atol,
                                       fs[TOL], z_new, a1, a2, a3, lwork, stats)
    is_[SLOW] = int(slow)
    if ok:
        return TRIAL, 0.0, False
    # Newton failed: first refresh a stale Jacobian, then shrink the step
    if not jac_current:
        is_[NEED_JAC] = 1
        return REJECT, h, not finite
    if adaptive:
        return REJECT, 0.5 * abs(hh), not finite
    stats[3] += 1
    return STOP, float(NONFINITE if saw_nonfinite or not finite else STEP_UNDERFLOW), not finite


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def stiff_error(meth, fam, loop, hh, K, z, z_new, work, n_err):
    """BDF: ``error_const_k (z_new - z_pred)``; Rosenbrock: ``sum e_i U_i``
    (formed by the attempt); ESDIRK: ``h sum e_i K_i``; in the RMS norm."""
    n = z.shape[0]
    e = meth.e
    if meth.kind == BDF:
        ek = e[fam.is_[ORDER]]
        for k in range(n):
            work[k] = ek * fam.a5[k]
        return rms_scaled(work, z_new, z_new, loop.rtol, loop.atol)
    if meth.kind == ESDIRK:
        for k in range(n):
            acc = 0.0
            for i in range(meth.A.shape[0]):
                acc += e[i] * K[i, k]
            work[k] = hh * acc
    return rms_scaled(work, z, z_new, loop.rtol, loop.atol)


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def stiff_ratio(meth, fam, err, hh, rejected_last, stats):
    """The family's controller: ``bdf_ratio`` (a rejected BDF step; an accepted
    one's is ``bdf_next``'s), ``rodas_ratio`` (Gustafsson's predictive), ``dirk_ratio``."""
    fs = fam.fs
    if meth.kind == BDF:
        return bdf_ratio(err, fam.is_[ORDER], fam.is_[N_ITER]) if err > 1.0 else 1.0
    if meth.kind == ROSENBROCK:
        r = rodas_ratio(err, abs(hh), fs[H_ACC], fs[ERR_ACC], stats[2], meth.q)
        if err > 1.0:
            return 0.1 if stats[2] == 0 else r
        fs[H_ACC] = abs(hh)
        fs[ERR_ACC] = max(1e-2, err)
        return min(r, 1.0) if rejected_last else r
    r = dirk_ratio(err, fs[ERR_PREV], meth.q, rejected_last)
    if err <= 1.0:
        fs[ERR_PREV] = max(err, 1e-4)
    return r


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def stiff_accept(meth, fam, sys, t, z, hh, K, work, need_dense, stats):
    """The accepted step's dense output in ``K``: BDF's history moves on
    (``bdf_accept``); Rosenbrock's stages in the form ``K[i] = U[i] / h``."""
    if meth.kind == BDF:
        bdf_accept(fam.D, fam.is_[ORDER], fam.a5, meth.A, hh, K)
    elif meth.kind == ROSENBROCK:
        U = fam.U
        for i in range(U.shape[0]):
            for k in range(U.shape[1]):
                K[i, k] = U[i, k] / hh


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def stiff_after(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work, t1, direction,
                stats):
    """After an accepted step: the Jacobian falls due (Rosenbrock: at every
    point; the others after a slow Newton); the one-step families take
    ``h_next`` with ``F`` at the new point (an ESDIRK's from its last stage);
    BDF restarts at order 1 on a stop (a discontinuity, as CVODES does), else
    chooses order and step (``bdf_next``)."""
    fs, is_ = fam.fs, fam.is_
    rosen = meth.kind == ROSENBROCK
    is_[JAC_CURRENT] = 0
    if rosen or is_[SLOW] != 0:
        is_[NEED_JAC] = 1
    if meth.kind != BDF:
        if refresh_first_stage(sys, t, z, K, meth.A.shape[0], not rosen, reset, stats):
            return SUCCESS, h_next
        return NONFINITE, h_next
    adaptive = loop.dt <= 0.0
    is_[N_EQUAL] += 1
    max_order = max(1, min(B.MAX_ORDER, meth.max_order))
    if at_stop:
        sys_rhs(sys, t, z, K[0])
        stats[0] += 1
        h_new = loop.dt
        if adaptive:
            h0 = initial_step(sys, t, z, K[0], direction, 1, loop.rtol, loop.atol, loop.hmax, abs(t1 - t), work,
                              fam.a3)
            stats[0] += 1
            h_new = min(abs(hh), h0)
        restart_history(fam.D, z, K[0], direction * h_new)
        fs[H_HIST] = h_new
        is_[ORDER] = 1
        is_[N_EQUAL] = 0
        return SUCCESS, h_new
    if not adaptive:
        is_[ORDER] = min(is_[ORDER] + 1, max_order)
        return SUCCESS, loop.dt
    order, h_new, n_equal = bdf_next(fam.D, is_[ORDER], is_[N_EQUAL], h, err, is_[N_ITER], max_order,
                                     meth.fixed_order, loop.hmax, meth.e, z, loop.rtol, loop.atol, work)
    is_[ORDER] = order
    is_[N_EQUAL] = n_equal
    return SUCCESS, h_new


register_family(ImplicitMethod, Family(stiff_work, stiff_adaptive, stiff_start, stiff_attempt, stiff_error,
                                       stiff_ratio, stiff_accept, stiff_after))

__all__ = ["BDF", "ESDIRK", "ROSENBROCK", "ImplicitMethod", "StiffWork"]
