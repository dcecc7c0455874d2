"""The ESDIRK family (Kvaerno5): its stages by simplified Newton, and its
step-size controller; the loop that runs them is ``implicit.py``'s.

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
save the factorisation.  Newton is ``newton.simplified_newton`` (SciPy's
``Radau`` stopping rule), at most ``NEWTON_MAXITER`` iterations.

Dense output is the tableau's ``P`` (cubic Hermite on ``K[0]`` and
``K[s-1]``), stored exactly as the explicit loops store theirs.  (``J``'s
reuse and ``M``'s refactoring are ``implicit_integrate``'s.)
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .newton import simplified_newton

SAFETY = 0.9
RATIO_MIN = 0.2
RATIO_MAX = 5.0
NEWTON_MAXITER = 8
#: a first Newton increment below this fraction of the tolerance is converged
#: (``newton.simplified_newton``): the stage's predictor is usually that good
ACCEPT_FIRST = 1e-2
HOLD_LO, HOLD_HI = 1.0, 1.2  # keep h (and the LU) for ratios in this range
#: a step whose Newton needed more than 2 iterations at this rate asks for a new J:
#: Hairer's RADAU5 default (``THET``) for small dense systems, and his advice for
#: costly Jacobians (banded mode: the dense ``jac_y`` fill is O(n^2)) -- measured
#: on VdP (n = 2: 4.6 vs 7.5 ms) and the 2x256 Brusselator (njev 81 vs 7).
SLOW_RATE_DENSE = 1e-3
SLOW_RATE_BANDED = 0.1


@nb.njit(cache=True, nogil=True)
def dirk_stages(sys, t, z, h, A, c, gamma, K, M, piv, lin, rtol, atol, tol, Z, psi, fz, dZ, lwork,
                stats):
    """Stages ``1 .. s-1`` into ``K`` (``K[0]`` given); ``Z`` ends as ``z_new``.

    Returns ``(converged, slow, finite)``: ``slow`` when Newton needed several
    iterations at a poor rate (time for a new Jacobian); ``finite`` false when
    it failed on a non-finite ``F`` or increment.
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
        ok, n_iter, n_eval, rate = simplified_newton(sys, t + c[i] * h, psi, hg, Z, Z, M, piv, lin,
                                                     rtol, atol, tol, NEWTON_MAXITER, ACCEPT_FIRST,
                                                     fz, dZ, lwork)
        stats[0] += n_eval
        if not ok:
            return False, True, rate != np.inf
        if n_iter > 2 and rate > (SLOW_RATE_BANDED if lin.banded else SLOW_RATE_DENSE):
            slow = True
        for k in range(n):
            K[i, k] = (Z[k] - psi[k]) / hg
    return True, slow, True


@nb.njit(cache=True, nogil=True, inline="always")
def dirk_ratio(err, err_prev, q, rejected_last):
    """``h_new / h`` after a step with scaled error ``err``: for a rejected step
    (``err > 1``) ``max(0.2, 0.9 err^(-1/q))``; for an accepted one the PI
    controller ``0.9 err^(-0.7/q) err_prev^(0.4/q)`` clipped to [0.2, 5] (at
    most 1 right after a rejection), and exactly 1 for ratios in [1, 1.2],
    which keeps ``h`` and so the factored ``M`` (``radau5.f``'s ``QUOT1/QUOT2``)."""
    if err > 1.0:
        return max(RATIO_MIN, SAFETY * err ** (-1.0 / q))
    r = RATIO_MAX if err == 0.0 else SAFETY * err ** (-0.7 / q) * err_prev ** (0.4 / q)
    r = min(RATIO_MAX, max(RATIO_MIN, r))
    if rejected_last:
        r = min(r, 1.0)
    if HOLD_LO <= r <= HOLD_HI:
        r = 1.0
    return r
