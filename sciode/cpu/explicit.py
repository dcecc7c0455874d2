"""The explicit Runge--Kutta stepping loop (one loop for every tableau).

A step of a tableau ``(A, b, c, e)`` from ``(t, z)`` with step ``h``::

    K[i]  = F(t + c[i] h, z + h sum_{j<i} A[i, j] K[j])
    z_new = z + h sum_i b[i] K[i]
    err   = h sum_i e[i] K[i]

The error is measured in the RMS norm of ``err / (atol + rtol max(|z|,
|z_new|))`` and the step adapted by a PI controller (Hairer, Norsett & Wanner,
*Solving ODEs I*, Sec. II.4; Hairer's DOPRI5 stabilisation beta = 0.04).
DOP853 combines its 5th- and 3rd-order estimators as in Hairer's ``dop853.f``.
Dense output uses each tableau's own continuous extension ``P`` (plus extra
stages for DOP853): ``z(t + theta h) = z + h sum_i K[i] sum_j P[i, j]
theta^(j+1)``.  The stages of every accepted step can be kept (``store_dense``)
so that an adjoint pass interpolates the forward state exactly as the forward
pass would have.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba as nb
import numpy as np

from .. import step_rules
from .._numba_compat import NO_NRT
from .status import NONFINITE, SUCCESS
from .stepping import (NONFINITE_SHRINK, Storage, full, grow_storage, land_step,
                       next_attempt, scaled_sum, start_storage, stored, weighted_sum)
from .systems import sys_coupled, sys_rhs

# the rules every explicit loop shares, compiled into this one
_first_guess = nb.njit(cache=True, nogil=True, inline="always")(step_rules.first_guess)
_starting_step = nb.njit(cache=True, nogil=True, inline="always")(step_rules.starting_step)
_shrink_factor = nb.njit(cache=True, nogil=True, inline="always")(step_rules.shrink_factor)
_grow_factor = nb.njit(cache=True, nogil=True, inline="always")(step_rules.grow_factor)
_dop853_error = nb.njit(cache=True, nogil=True, inline="always")(step_rules.dop853_error)

#: ``rk_integrate``'s work arrays, kept by ``rk_steps`` between its calls:
#: stages ``K (s_total, n)``, scratch ``work``, the state ``z`` and the trial
#: ``z_new``, interpolation weights ``wbuf``, ``stats`` (nfev, nsteps,
#: naccepted, nrejected), ``fstate = [t, h, err_prev]`` and ``istate =
#: [n_stored, i_eval, i_stop, rejected_last, saw_nonfinite, status]``.
RKWork = namedtuple("RKWork", ["K", "work", "z", "z_new", "wbuf", "stats", "fstate", "istate"])
#: The span of a loop: to ``t1`` in ``direction`` over ``span = |t1 - t0|``,
#: with the first ``n_err`` entries in the error test (``atol = inf`` after).
Span = namedtuple("Span", ["t1", "direction", "span", "n_err"])


@nb.njit(cache=True, nogil=True, **NO_NRT)
def rms_scaled(v, z, z_new, rtol, atol):
    """``sqrt(mean((v / (atol + rtol max(|z|, |z_new|)))^2))``."""
    acc = 0.0
    n = v.shape[0]
    for i in range(n):
        sc = atol[i] + rtol * max(abs(z[i]), abs(z_new[i]))
        acc += (v[i] / sc) ** 2
    return math.sqrt(acc / max(n, 1))


@nb.njit(cache=True, nogil=True, **NO_NRT)
def rms_range(v, z, rtol, atol, lo, hi):
    """The share of the entries ``lo .. hi-1`` in ``rms_scaled(v, z, z, ...)``:
    ``sqrt(sum_{lo <= i < hi} (v_i / (atol_i + rtol |z_i|))^2 / len(v))``, so
    that the parts' shares add up (in squares) to the norm of the error test."""
    acc = 0.0
    for i in range(lo, hi):
        sc = atol[i] + rtol * abs(z[i])
        acc += (v[i] / sc) ** 2
    return math.sqrt(acc / max(v.shape[0], 1))


@nb.njit(cache=True, nogil=True, **NO_NRT)
def all_finite(v):
    for i in range(v.shape[0]):
        if not math.isfinite(v[i]):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def initial_step(sys, t0, z0, f0, direction, order, rtol, atol, hmax, span, work, f1):
    """Hairer's starting step (``hinit`` in ``dopri5.f``): two rhs evaluations' worth
    of information about the scale of ``z`` and of its derivatives."""
    d0 = rms_scaled(z0, z0, z0, rtol, atol)
    d1 = rms_scaled(f0, z0, z0, rtol, atol)
    h0 = _first_guess(d0, d1, hmax, span)
    for i in range(z0.shape[0]):
        work[i] = z0[i] + direction * h0 * f0[i]
    sys_rhs(sys, t0 + direction * h0, work, f1)
    for i in range(z0.shape[0]):
        work[i] = f1[i] - f0[i]
    d2 = rms_scaled(work, z0, z0, rtol, atol) / h0
    return _starting_step(h0, d1, d2, order, hmax, span, t0, direction)


@nb.njit(cache=True, nogil=True, inline="always")
def first_step(sys, t0, z0, f0, direction, order, rtol, atol, h_init, dt, hmax, span, work, f1, stats):
    """The implicit loops' start: ``f0 = F(t0, z0)`` and the first step
    (``dt`` for fixed steps, else ``h_init`` capped by ``hmax`` and the
    span, else ``initial_step`` for a method of ``order``).  Returns
    ``(finite, h)``: ``finite`` False when ``z0`` or ``f0`` is not finite."""
    sys_rhs(sys, t0, z0, f0)
    stats[0] += 1
    if not all_finite(f0) or not all_finite(z0):
        return False, 0.0
    if dt > 0.0:
        return True, dt
    if h_init > 0.0:
        return True, min(h_init, hmax, span)
    stats[0] += 1
    return True, initial_step(sys, t0, z0, f0, direction, order, rtol, atol, hmax, span, work, f1)


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
    (quadratures left out of the test, see ``rk_integrate``) and contribute
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
    return _dop853_error(err5, err3, n)


@nb.njit(cache=True, nogil=True, inline="always")  # see ``integrate``: one compiled layer
def rk_integrate(sys, z0, t0, t1, loop, t_eval, store_dense):
    """Integrate ``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction).

    Parameters
    ----------
    sys : system NamedTuple (see ``sciode.cpu.systems``)
    z0 : (n,) initial state
    loop : ``bundles.Loop`` whose ``method`` is an ``integrate.RKMethod``:
        the tableau arrays ``A, b, c, e, e3, P, A_ext, c_ext`` (``e3`` empty
        unless DOP853), ``fsal``, ``adaptive``, ``order`` (initial step
        heuristic), ``q, beta`` (the PI controller's exponent denominator and
        stabilisation: ``Tableau.controller_q``, ``pi_beta``); ``rtol``,
        ``atol (n,)``, ``h_init`` (0 = automatic), ``hmax``, ``dt`` (fixed
        step), ``max_steps``, and ``stops``: times a step must land on, not
        cross (kinks of piecewise-linear controls: the error estimate assumes
        smoothness; observation times of a costate), monotone in the
        direction of integration; fixed-step methods shorten the step that
        would cross one and go on with ``dt`` from it.  On landing,
        ``sys_stop`` may reset the state (``sciode.cpu.systems``)
    t_eval : (m,) output times, monotone in the direction of integration
    store_dense : int, what to keep of the accepted steps: 1 their times,
        states and stages (dense output), 0 times and states, -1 only the
        final state (``ts``/``zs`` then hold two rows: initial and final),
        for the memory-bounded sensitivity modes

    Returns
    -------
    status, t_reached, n_stored, ts (n_stored,), zs (n_stored, n), hs,
    Ks (n_stored - 1, s_total, n) or empty, z_eval (m, n), stats (nfev,
    nsteps, naccepted, nrejected)
    """
    meth = loop.method
    n = z0.shape[0]
    s_tot = meth.P.shape[0]
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    K = np.zeros((s_tot, n))
    work, z_new, wbuf = np.empty(n), np.empty(n), np.empty(s_tot)
    atol = loop.atol
    n_err = n  # trailing entries with atol = inf are out of the error test
    while n_err > 0 and atol[n_err - 1] == np.inf:
        n_err -= 1
    z = z0.copy()
    stats = np.zeros(4, dtype=np.int64)  # nfev, nsteps, naccepted, nrejected
    ts, hs, zs, Ks, z_eval, i_eval = start_storage(t0, z, s_tot, store_dense, t_eval)
    t = t0
    if span == 0.0:
        return SUCCESS, t, 1, ts[:1], zs[:1], hs[:0], Ks[:0], z_eval, stats
    sys_rhs(sys, t, z, K[0])
    stats[0] += 1
    if not all_finite(K[0]) or not all_finite(z):
        return NONFINITE, t, 1, ts[:1], zs[:1], hs[:0], Ks[:0], z_eval, stats
    if meth.adaptive:
        h = abs(loop.h_init) if loop.h_init > 0.0 else initial_step(
            sys, t, z, K[0], direction, meth.order, loop.rtol, atol, loop.hmax, span, work, K[1])
        if loop.h_init <= 0.0:
            stats[0] += 1
    else:
        h = loop.dt
    # The stepping loop runs in ``rk_steps`` (no reference counting, no
    # allocation); it returns when the storage is full, to be regrown here.
    w = RKWork(K, work, z, z_new, wbuf, stats, np.array([t, h, 1e-4]),
               np.array([1, i_eval, 0, 0, 0, SUCCESS], dtype=np.int64))
    span_ = Span(t1, direction, span, n_err)
    while True:
        rk_steps(sys, loop, span_, t_eval, store_dense, w, Storage(ts, hs, zs, Ks, z_eval))
        t, n_stored, status = w.fstate[0], w.istate[0], w.istate[5]
        if status != SUCCESS or (t1 - t) * direction <= 0.0:
            break
        ts, hs, zs, Ks = grow_storage(ts, hs, zs, Ks, store_dense)
    ts, zs, hs, Ks = stored(ts, hs, zs, Ks, n_stored, store_dense)
    return status, t, n_stored, ts, zs, hs, Ks, z_eval, stats


@nb.njit(cache=True, nogil=True, **NO_NRT)
def rk_steps(sys, loop, span_, t_eval, store_dense, w, st):
    """The stepping loop of ``rk_integrate``: steps until ``span_.t1``, a
    failure, or full storage ``st`` (``stepping.Storage``), resuming from and
    saving to the work arrays ``w`` (``RKWork``).

    Compiled without reference counting: it allocates nothing, and the
    runtime's incref/decref calls on the arrays it touches (no-ops on borrowed
    views, but still calls that spill every floating-point register) cost
    more than the arithmetic of a step on small systems.
    """
    meth = loop.method
    A, b, c, e, e3, P = meth.A, meth.b, meth.c, meth.e, meth.e3, meth.P
    A_ext, c_ext, fsal, adaptive, q, beta = (meth.A_ext, meth.c_ext, meth.fsal, meth.adaptive,
                                             meth.q, meth.beta)
    rtol, atol, hmax, dt, max_steps, t_stops = (loop.rtol, loop.atol, loop.hmax, loop.dt,
                                                loop.max_steps, loop.stops)
    t1, direction, span, n_err = span_.t1, span_.direction, span_.span, span_.n_err
    K, work, z, z_new, wbuf, stats, fstate, istate = w
    ts, hs, zs, Ks, z_eval = st
    n = z.shape[0]
    s = A.shape[0]
    s_tot = P.shape[0]
    m_eval = t_eval.shape[0]
    dense = store_dense > 0
    t, h, err_prev = fstate[0], fstate[1], fstate[2]
    n_stored, i_eval, i_stop = istate[0], istate[1], istate[2]
    rejected_last, saw_nonfinite, status = istate[3] != 0, istate[4] != 0, istate[5]
    expo = 1.0 / q - 0.75 * beta  # PI controller (Hairer, Norsett & Wanner I, Sec. II.4)
    while (t1 - t) * direction > 0.0 and not full(ts, n_stored, store_dense):
        status, i_stop, target, reach, hh = next_attempt(stats, max_steps, h, t, t1, saw_nonfinite,
                                                         t_stops, i_stop, direction, span)
        if status != SUCCESS:
            break
        rk_stages(sys, t, z, hh, A, c, K, 1, work)
        stats[0] += s - 1
        stats[1] += 1
        weighted_sum(z, hh, b, K, z_new)
        finite = all_finite(z_new)
        if adaptive:
            err = error_norm(hh, e, e3, K, z, z_new, rtol, atol, work, n_err) if finite else np.inf
            if not err <= 1.0:  # rejected, or not finite: shrink and retry
                if math.isfinite(err):
                    h = abs(hh) * _shrink_factor(err, q)
                else:
                    saw_nonfinite = True
                    h = abs(hh) * NONFINITE_SHRINK
                stats[3] += 1
                rejected_last = True
                continue
            h_next = min(abs(hh) * _grow_factor(err, err_prev, expo, beta, rejected_last), hmax)
            err_prev = max(err, 1e-4)
        else:
            if not finite:
                status = NONFINITE
                break
            h_next = dt
        # -- accepted: dense output needs the stages of this step
        if s_tot > s and (dense or (i_eval < m_eval and
                                          (t_eval[i_eval] - t) * direction <= abs(hh))):
            extra_stages(sys, t, z, hh, A_ext, c_ext, s, K, work)
            stats[0] += A_ext.shape[0]
        # on a stop the system may reset its state (stored as the next step's start)
        t, i_eval, _, reset, n_stored = land_step(sys, t, hh, target, reach, t1, z, z_new, K, P, wbuf,
                                                  t_eval, i_eval, z_eval, direction, ts, hs, zs, Ks,
                                                  n_stored, store_dense, stats)
        for m in range(n):
            z[m] = z_new[m]
        rejected_last = False
        h = h_next
        if fsal and not reset:
            for m in range(n):
                K[0, m] = K[s - 1, m]
        else:
            sys_rhs(sys, t, z, K[0])
            stats[0] += 1
            if not all_finite(K[0]):
                status = NONFINITE
                break
    fstate[0], fstate[1], fstate[2] = t, h, err_prev
    istate[0], istate[1], istate[2] = n_stored, i_eval, i_stop
    istate[3], istate[4], istate[5] = int(rejected_last), int(saw_nonfinite), status
