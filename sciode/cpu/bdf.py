"""The variable-order (1-5), variable-step BDF family in NDF form (``method="bdf"``):
its predictor, history and order/step controller; the loop that runs them is
``implicit.py``'s (``kind == BDF``).

The formulas are Shampine & Reichelt's numerical differentiation formulas
(``sciode.methods.bdf_coefficients``) on a quasi-constant step.  The history
is the array of backward differences ``D[j] = nabla^j z_n``, ``j = 0 .. k``
(``D[k+1]``, ``D[k+2]``: the last two corrections, for the error estimates of
the neighbouring orders).  A step of order ``k`` and size ``h`` from ``t``::

    z_pred = sum_{j<=k} D[j],   psi = (1/alpha_k) sum_{1<=j<=k} gamma_j D[j],  c = h / alpha_k
    solve   d - c F(t + h, z_pred + d) + psi = 0      (d: the correction)
    z_new = z_pred + d,          err = error_const_k d

by simplified Newton with ``M = I/c - J`` (``linalg.factor_for``: ``M`` is
factored for ``c``, so an order change refactors it as a step change does), in the stages' form ``Z = (z_pred - psi) + c F(t + h, Z)``
(``newton.simplified_newton``, norms scaled by ``z_pred``; ``d = Z - z_pred``)::

    M dZ = F(t + h, Z) - (psi + Z - z_pred) / c,     Z += dZ

``J`` is kept across steps and re-evaluated (at ``(t + h, z_pred)``) only
when Newton fails with a stale ``J`` or converged slowly (3 or more
iterations at a rate above 0.3) with a stale ``J`` in the last step;
Newton stops as in SciPy's ``BDF`` (at most 4 iterations; ``newton``'s rule).  On acceptance the differences are
updated (``D[k+2] = d - D[k+1]``, ``D[k+1] = d``, ``D[j] += D[j+1]`` for
``j = k .. 0``).

Step and order control as Shampine & Reichelt / SciPy: a rejected step
shrinks ``h`` by ``max(0.2, s err^(-1/(k+1)))`` (``s`` = 0.9 scaled down by
the Newton iterations); an accepted one keeps ``h`` until ``k + 1`` equal
steps were taken, then the order among ``k - 1, k, k + 1`` with the largest
admissible step is chosen (the errors of ``k -/+ 1`` estimated from ``D[k]``
and ``D[k+2]``) and ``h`` grows by at most 10.  The differences follow the
step: an attempt whose step differs from the one the history is spaced by
(a change of ``h`` by the controller, a rejection, or the shortened step that
lands on a stop) first rescales them, ``D[:k+1] <- (R(r) U)^T D[:k+1]``,
``R(r)[i, j] = prod_{m=1}^{i} (m - 1 - r j)/m`` (``rescale_history``; ``U = R(1)``);
rescalings compose (the same interpolating polynomial, sampled anew), so
doing it once per attempt, not once per change, is the same in exact arithmetic.

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

import numba as nb
import numpy as np

from .explicit import rms_scaled

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
def growth(norm, p):
    """``norm^(-1/p)``, large for a zero estimate."""
    if norm == 0.0:
        return 2.0 * RATIO_MAX
    return norm ** (-1.0 / p)


@nb.njit(cache=True, nogil=True, inline="always")  # per step: no call in the loop
def bdf_predict(D, order, gamma, alpha, zp, Z, psi):
    """The predictor of a step of order ``k = order`` and its Newton equation's
    constant: ``zp = Z = sum_{j<=k} D[j]``, ``psi = zp - (1/alpha_k) sum_{1<=j<=k}
    gamma_j D[j]`` (module doc: ``Z = psi + c F(t + h, Z)``)."""
    for x in range(D.shape[1]):
        acc = 0.0
        ps = 0.0
        for j in range(order + 1):
            acc += D[j, x]
        for j in range(1, order + 1):
            ps += gamma[j] * D[j, x]
        zp[x] = acc
        Z[x] = acc
        psi[x] = acc - ps / alpha[order]


@nb.njit(cache=True, nogil=True, inline="always")  # per step: no call in the loop
def bdf_accept(D, order, d, W, hh, K):
    """Move the differences to the accepted point (``D[k+2] = d - D[k+1]``,
    ``D[k+1] = d``, ``D[j] += D[j+1]`` for ``j = k .. 0``) and write the step's
    interpolant into ``K`` (``dense_coefficients``)."""
    n = D.shape[1]
    for x in range(n):
        D[order + 2, x] = d[x] - D[order + 1, x]
        D[order + 1, x] = d[x]
    for j in range(order, -1, -1):
        for x in range(n):
            D[j, x] += D[j + 1, x]
    dense_coefficients(D, order, W, hh, K)


@nb.njit(cache=True, nogil=True, inline="always")  # per step: no call in the loop
def bdf_safety(n_iter):
    """The step controller's safety factor, lower after a slow Newton (SciPy's ``BDF``)."""
    return 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + n_iter)


@nb.njit(cache=True, nogil=True, inline="always")
def bdf_ratio(err, order, n_iter):
    """``h_new / h`` after a rejected step of order ``order`` (scaled error
    ``err > 1``): ``max(RATIO_MIN, s err^(-1/(k+1)))``; an accepted step's
    step and order are ``bdf_next``'s."""
    return max(RATIO_MIN, bdf_safety(n_iter) * growth(err, order + 1))


@nb.njit(cache=True, nogil=True)
def bdf_next(D, order, n_equal, h, err, n_iter, max_order, fixed_order, hmax, error_const, z,
             rtol, atol, work):
    """Order and step after an accepted adaptive step (module doc): ``(order,
    h, n_equal)``.  ``h`` is kept until ``order + 1`` equal steps were taken;
    then the order among ``k - 1, k, k + 1`` with the largest admissible step
    wins (``err``: this step's scaled error; the neighbours' from ``D[k]``
    and ``D[k+2]``) and ``h`` changes by a factor in ``[RATIO_MIN, RATIO_MAX]``."""
    if n_equal < order + 1:
        return order, min(h, hmax), n_equal
    n = D.shape[1]
    if fixed_order:
        e_lo = np.inf
        e_mid = err if order >= max_order else np.inf
    else:
        e_mid = err
        e_lo = np.inf
        if order > 1:
            for x in range(n):
                work[x] = error_const[order - 1] * D[order, x]
            e_lo = rms_scaled(work, z, z, rtol, atol)
    e_hi = np.inf
    if order < max_order:
        for x in range(n):
            work[x] = error_const[order + 1] * D[order + 2, x]
        e_hi = rms_scaled(work, z, z, rtol, atol)
    f_lo = growth(e_lo, order) if order > 1 and e_lo < np.inf else 0.0
    f_mid = growth(e_mid, order + 1) if e_mid < np.inf else 0.0
    f_hi = growth(e_hi, order + 2) if e_hi < np.inf else 0.0
    best = f_mid
    new_order = order
    if f_lo > best:
        best = f_lo
        new_order = order - 1
    if f_hi > best:
        best = f_hi
        new_order = order + 1
    # (best = 0 only when every estimate was non-finite: shrink, never zero)
    r = max(RATIO_MIN, min(RATIO_MAX, bdf_safety(n_iter) * best))
    if h * r > hmax:
        r = hmax / h
    return new_order, h * r, 0
