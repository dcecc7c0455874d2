"""The explicit Runge--Kutta family of the stepping loop (``loop.py``).

A step of a tableau ``(A, b, c, e)`` from ``(t, z)`` with step ``h``::

    K[i]  = F(t + c[i] h, z + h sum_{j<i} A[i, j] K[j])
    z_new = z + h sum_i b[i] K[i]
    err   = h sum_i e[i] K[i]

The error is measured in the RMS norm of ``err / (atol + rtol max(|z|,
|z_new|))`` over the entries in the error test, and the step adapted by a PI
controller (Hairer, Norsett & Wanner, *Solving ODEs I*, Sec. II.4; Hairer's
DOPRI5 stabilisation beta = 0.04)::

    rejected: h_new = h max(FAC_MIN, SAFETY err^(-1/q))
    accepted: h_new = h clip(SAFETY err^(-1/q + 0.75 beta) err_prev^beta, FAC_MIN, FAC_MAX)

(no growth right after a rejection).  DOP853 combines its 5th- and 3rd-order
estimators as in Hairer's ``dop853.f``.  Dense output uses each tableau's own
continuous extension ``P`` (plus extra stages for DOP853, computed only when
an output time falls in the step or the stages are stored).  First same as
last: ``K[0]`` of the next step is ``K[s-1]`` of an FSAL tableau.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba as nb
import numpy as np

from .._numba_compat import NO_NRT
from .loop import TRIAL, Family, refresh_first_stage, register_family
from .status import NONFINITE, SUCCESS
from .stepping import scaled_sum, weighted_sum
from .systems import sys_coupled, sys_rhs

SAFETY = 0.9
FAC_MIN = 0.2
FAC_MAX = 10.0

#: An explicit tableau as the loop reads it: ``A, b, c, e, e3, P, A_ext,
#: c_ext`` (``e3`` empty unless DOP853), ``fsal``, ``adaptive``, ``order``
#: (the starting step's), ``q, beta`` (the PI controller's exponent
#: denominator and stabilisation: ``Tableau.controller_q``, ``pi_beta``).
RKMethod = namedtuple("RKMethod", ["A", "b", "c", "e", "e3", "P", "A_ext", "c_ext",
                                   "fsal", "adaptive", "order", "q", "beta"])

@nb.njit(cache=True, nogil=True, inline="always")
def rk_stages(sys, t, z, h, A, c, K, first, work):
    """Stages ``first .. s-1`` of an explicit step into ``K`` (called from the
    ``_nrt=False`` core only: the row views ``K[i]`` cost nothing there).

    A stage input is formed for the entries ``F`` reads only (``sys_coupled``):
    a costate system's parameter quadratures are most of its entries and
    never feed back."""
    n = sys_coupled(sys, z.shape[0])
    for i in range(first, A.shape[0]):
        scaled_sum(h, A[i, :i], K, work, n)
        for m in range(n):
            work[m] += z[m]
        sys_rhs(sys, t + c[i] * h, work, K[i])


@nb.njit(cache=True, nogil=True, inline="always")
def extra_stages(sys, t, z, h, A_ext, c_ext, s, K, work):
    """The extra dense-output stages ``K[s:]`` (DOP853)."""
    n = z.shape[0]
    for m_ in range(A_ext.shape[0]):
        i = s + m_
        for m in range(n):
            acc = 0.0
            for j in range(i):
                acc += A_ext[m_, j] * K[j, m]
            work[m] = z[m] + h * acc
        sys_rhs(sys, t + c_ext[m_] * h, work, K[i])


@nb.njit(cache=True, nogil=True, **NO_NRT)
def error_norm(h, e, e3, K, z, z_new, rtol, atol, work, n_err):
    """Scaled RMS error of a step (DOP853's combined norm when ``e3`` is given).

    Only the first ``n_err`` entries are summed: the rest have ``atol = inf``
    (quadratures left out of the test, see ``loop.run_loop``) and contribute
    zero; the mean is still over all ``n`` entries.
    """
    n = z.shape[0]
    scaled_sum(h, e, K, work, n_err)
    if e3.shape[0] == 0:
        acc = 0.0
        for m in range(n_err):
            sc = atol[m] + rtol * max(abs(z[m]), abs(z_new[m]))
            acc += (work[m] / sc) ** 2
        return math.sqrt(acc / max(n, 1))
    err5 = 0.0
    for m in range(n_err):
        sc = atol[m] + rtol * max(abs(z[m]), abs(z_new[m]))
        err5 += (work[m] / sc) ** 2
    scaled_sum(h, e3, K, work, n_err)
    err3 = 0.0
    for m in range(n_err):
        sc = atol[m] + rtol * max(abs(z[m]), abs(z_new[m]))
        err3 += (work[m] / sc) ** 2
    deno = err5 + 0.01 * err3
    if deno <= 0.0:
        return 0.0
    # err5 and err3 above already carry h; dop853.f's formula has one factor h
    # outside: |h| err5 / sqrt(n deno) with unscaled sums, i.e. this.
    return err5 / math.sqrt(n * deno)


# -- the family's hooks (``loop.py``) ---------------------------------------------------------

@nb.njit(cache=True, nogil=True)
def rk_work(meth, z0):
    """The PI controller's memory: ``[err_prev]``."""
    return np.array([1e-4])


@nb.njit(cache=True, nogil=True, inline="always")
def rk_adaptive(meth, dt):
    return meth.adaptive


@nb.njit(cache=True, nogil=True, inline="always")
def rk_start(meth, fam, sys, loop, t0, z, K, h, direction):
    pass


@nb.njit(cache=True, nogil=True, inline="always")
def rk_attempt(meth, fam, sys, loop, t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats):
    """Stages ``1 .. s-1`` (``K[0]`` holds ``F(t, z)``) and ``z_new``."""
    rk_stages(sys, t, z, hh, meth.A, meth.c, K, 1, work)
    stats[0] += meth.A.shape[0] - 1
    stats[1] += 1
    weighted_sum(z, hh, meth.b, K, z_new)
    return TRIAL, 0.0, False


@nb.njit(cache=True, nogil=True, inline="always")
def rk_error(meth, fam, loop, hh, K, z, z_new, work, n_err):
    return error_norm(hh, meth.e, meth.e3, K, z, z_new, loop.rtol, loop.atol, work, n_err)


@nb.njit(cache=True, nogil=True, inline="always")
def rk_ratio(meth, fam, err, hh, rejected_last, stats):
    """The PI controller (module doc)."""
    q, beta = meth.q, meth.beta
    if err > 1.0:
        return max(FAC_MIN, SAFETY * err ** (-1.0 / q))
    fac = FAC_MAX if err == 0.0 else SAFETY * err ** (-(1.0 / q - 0.75 * beta)) * fam[0] ** beta
    fac = min(FAC_MAX, max(FAC_MIN, fac))
    if rejected_last:
        fac = min(fac, 1.0)
    fam[0] = max(err, 1e-4)
    return fac


@nb.njit(cache=True, nogil=True, inline="always")
def rk_accept(meth, fam, sys, t, z, hh, K, work, need_dense, stats):
    """DOP853's extra stages, when the step's interpolant is needed."""
    s = meth.A.shape[0]
    if meth.P.shape[0] > s and need_dense:
        extra_stages(sys, t, z, hh, meth.A_ext, meth.c_ext, s, K, work)
        stats[0] += meth.A_ext.shape[0]


@nb.njit(cache=True, nogil=True, inline="always")
def rk_after(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work, t1, direction, stats):
    if refresh_first_stage(sys, t, z, K, meth.A.shape[0], meth.fsal, reset, stats):
        return SUCCESS, h_next
    return NONFINITE, h_next


register_family(RKMethod, Family(rk_work, rk_adaptive, rk_start, rk_attempt, rk_error, rk_ratio, rk_accept,
                                 rk_after))
