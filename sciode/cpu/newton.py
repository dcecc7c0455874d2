"""Simplified Newton for the implicit stages of the stiff loops, written once.

Both implicit families solve, per stage or step, an equation of one shape::

    Z = psi + c F(tc, Z)

- ESDIRK (``sdirk.py``): a stage, ``c = h gamma``, ``psi = z + h sum_{j<i} A[i, j] K[j]``;
- BDF/NDF (``bdf.py``): the step, ``c = h / alpha_k``, ``psi = z_pred - (1/alpha_k)
  sum_j gamma_j D[j]`` (the NDF's correction equation ``d - c F(z_pred + d) + psi_ndf = 0``
  with ``Z = z_pred + d``).

Simplified Newton with the factored ``M = I/c - J`` (``J`` possibly stale)::

    M dZ = (psi - Z) / c + F(tc, Z),      Z += dZ

The stopping rule is SciPy's ``Radau``/``BDF`` (after Hairer & Wanner, *Solving
ODEs II*, Sec. IV.8): with ``|dZ|`` the error test's scaled norm and the rate
``theta = |dZ_k| / |dZ_{k-1}|``, converged when ``theta / (1 - theta) |dZ| < tol``,
abandoned as soon as ``theta >= 1`` or the error predicted after the iterations
left, ``theta^(maxiter - k) / (1 - theta) |dZ|``, exceeds ``tol``, or ``F`` is not
finite.  Two additions, each for a failure seen on this project:

- an increment at the rounding level of ``Z`` (``|dZ_i| <= 8 eps |Z_i|``) is
  converged: with ``atol`` far below ``eps |Z|`` the scaled test alone never passes;
- ``accept_first``: a first increment below ``accept_first tol`` is converged
  without a rate (ESDIRK: ``1e-2``, which saves the second ``F`` of most stages of
  Kvaerno5; BDF: 0, its predictor is less accurate).

Forward sensitivities converge in two phases (``newton_phases``).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .explicit import all_finite, rms_range
from .._numba_compat import NO_NRT
from .linalg import solve_in_place
from .stepping import EPS
from .systems import sys_rhs


@nb.njit(cache=True, nogil=True, inline="always")
def newton_phases(lin, atol):
    """Where Newton's first convergence test ends: ``block`` in block mode
    (forward sensitivities) with the sensitivities in the error test, else
    ``len(atol)`` (one phase).

    In block mode Newton's matrix ``diag(B, ..., B)`` leaves out how the
    sensitivities' rates depend on the states (``d(J S)/dy``); one joint test
    then reads the states' last corrections, carried into the sensitivities
    through that coupling, as divergence, and the steps collapse (Robertson
    at atol 1e-12).  So the iteration runs in two phases, as CVODES's
    staggered corrector: the states to convergence (their entries alone
    tested, as if there were no sensitivities), then, the states held, the
    rest (linear in themselves, Newton's matrix their exact one but for a
    stale ``J``) with their own test, whose first iteration may already pass
    on the states' last contraction rate (the same matrix, the same ``J``:
    CVODES carries its ``crate`` likewise).  Sensitivities outside the error
    test (an infinite ``atol``: ``sens_error_control=False``) keep the one
    joint phase: a second phase would cost an rhs evaluation per Newton
    solve (15-40% of the PEtab problems' forward gradients) for gradients
    that agree to 1e-10 either way.
    """
    block = lin.block
    if block > 0 and lin.stride >= 0 and block < atol.shape[0] and not math.isinf(atol[block]):
        return block
    return atol.shape[0]


@nb.njit(cache=True, nogil=True, **NO_NRT)  # allocates nothing; see linalg.solve_in_place
def simplified_newton(sys, tc, psi, c, Z, scale, M, piv, lin, rtol, atol, tol, maxiter, accept_first,
                      fz, dZ, lwork):
    """Solve ``Z = psi + c F(tc, Z)`` from the guess in ``Z`` (module doc).

    ``M``, ``piv``: ``M = I/c - J`` factored in the linear mode ``lin``
    (``linalg.LinearMode``); ``scale``: the state the norm is scaled
    by (``Z`` itself, or a fixed predictor); ``fz``, ``dZ``, ``lwork``: scratch.

    Returns ``(converged, n_iter, n_eval, rate)``: the iterations of the
    slower phase, the rhs evaluations, the larger of the phases' last
    contraction rates (0 when one iteration sufficed; on failure the last
    rate, ``inf`` when ``F`` or the increment was not finite).  On failure
    ``Z`` holds the last finite iterate.
    """
    n = Z.shape[0]
    inv_c = 1.0 / c
    lo, hi = 0, newton_phases(lin, atol)
    dw_old = 0.0
    rate = 0.0
    worst = 0.0
    prior = 0.0  # the states' last rate, for the second phase's first test
    it = 0
    n_iter = 0
    n_eval = 0
    while True:
        sys_rhs(sys, tc, Z, fz)
        n_eval += 1
        if not all_finite(fz):
            return False, max(n_iter, it + 1), n_eval, np.inf
        for k in range(n):
            dZ[k] = (psi[k] - Z[k]) * inv_c + fz[k]
        solve_in_place(M, piv, lin, dZ, lwork)
        for k in range(lo):  # second phase: the states stay where they converged
            dZ[k] = 0.0
        dw = rms_range(dZ, scale, rtol, atol, lo, hi)
        if not math.isfinite(dw):
            return False, max(n_iter, it + 1), n_eval, np.inf
        at_roundoff = True
        for k in range(lo, hi):
            if abs(dZ[k]) > 8.0 * EPS * abs(Z[k]):
                at_roundoff = False
                break
        if it > 0 and not at_roundoff:
            rate = dw / dw_old
            if rate >= 1.0 or rate ** (maxiter - it) / (1.0 - rate) * dw > tol:
                return False, max(n_iter, it + 1), n_eval, rate
        for k in range(lo, n):
            Z[k] += dZ[k]
        if (dw == 0.0 or at_roundoff or (it > 0 and rate / (1.0 - rate) * dw < tol)
                or (it == 0 and (dw < accept_first * tol
                                 or (0.0 < prior < 1.0 and prior / (1.0 - prior) * dw < tol)))):
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
        if it == maxiter:
            return False, maxiter, n_eval, rate


__all__ = ["newton_phases", "simplified_newton"]
