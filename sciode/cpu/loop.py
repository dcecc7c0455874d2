"""The stepping loop, written once for every family of methods.

``run_loop(sys, z0, t0, t1, loop, t_eval, store_dense)`` integrates
``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction) with the method
tuple ``loop.method`` of the ``bundles.Loop`` ``loop``.  What the loop owns:

- the prologue: ``F(t0, z0)`` into ``K[0]``, its finiteness, the first step
  (``first_step``: ``dt``, ``h_init``, or Hairer's estimate for the method's
  ``order``), the storage with the initial point and the output times at
  ``t0``;
- every attempt's guard and target (``stepping.next_attempt``: ``max_steps``,
  step-size underflow, landing exactly on ``loop.stops`` and ``t1``);
- the verdict on a trial: a non-finite trial state or error shrinks the step
  by ``NONFINITE_SHRINK`` (adaptive) or ends the solve (fixed step); an error
  above 1 rejects, with the family's step ratio; an accepted step grows by
  the family's ratio, capped by ``hmax``;
- the record of an accepted step (``stepping.land_step``: output times from
  the step's interpolant ``z + h sum_i K[i] sum_j P[i, j] theta^(j+1)``,
  ``sys_stop`` on a stop, storage, counts), storage regrowth, and the status.

What a family supplies is its method class's hooks (``register_family``),
each a compiled function of the method tuple, the family's work ``fam``
(``work``) and the loop's arrays:

==============  ============================================================
``work``        ``fam = work(meth, z0)``: the family's arrays and state
``adaptive``    ``adaptive(meth, dt)``: whether the error is controlled
``start``       ``start(meth, fam, sys, loop, t0, z, K, h, direction)``: after
                the first step ``h``
``attempt``     ``(outcome, value, nonfinite) = attempt(meth, fam, sys, loop,
                t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats)``:
                the trial ``z_new`` of the step ``hh`` from ``(t, z)``
                (``TRIAL``), or ``RETRY`` with the step ``value`` (no trial:
                a singular iteration matrix), ``REJECT`` with the step
                ``value`` (a failed Newton solve; ``nonfinite`` when it met
                a non-finite value), ``STOP`` with the status ``value``
``error``       the trial's scaled error (RMS norm of ``err / (atol + rtol
                max(|z|, |z_new|))``, ``n_err`` leading entries tested)
``ratio``       ``h_new / |hh|`` for the finite error ``err`` (``err > 1``:
                the rejected step's retry), updating the controller's memory
``accept``      the accepted step's dense output ``K`` (and history)
``after``       ``(status, h) = after(meth, fam, sys, loop, t, z, h, hh,
                h_next, err, at_stop, reset, K, work, t1, direction, stats)``:
                ``F`` at the new point (``refresh_first_stage``) and the next
                step (``h`` the step asked for, ``hh`` the one taken,
                ``h_next`` the controller's)
==============  ============================================================

The stepping core (``steps``) is compiled without reference counting: it
allocates nothing, and the runtime's incref/decref calls on the arrays it
touches cost more than the arithmetic of a step on small systems.  It
returns when the storage is full, to be regrown by ``run_loop``, and resumes
from the state it saved in ``Work.fstate``/``istate`` and the family's work.

``stats``: nfev, nsteps (attempts), naccepted, nrejected, njev, nlu.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numba as nb
import numpy as np
from numba.extending import overload

from .._numba_compat import NO_NRT
from .bundles import LoopResult
from .status import NONFINITE, SUCCESS
from .stepping import (N_STATS, NONFINITE_SHRINK, Storage, all_finite, copy_flat, first_step, full,
                       grow_storage, land_step, next_attempt, start_storage, stored)
from .systems import sys_rhs

#: ``attempt``'s outcomes (module doc).
TRIAL, RETRY, REJECT, STOP = 0, 1, 2, 3

#: The loop's arrays, kept by ``steps`` between its calls: the dense-output
#: stages ``K (len(P), n)`` (``K[0] = F(t, z)`` at the start of a step), the
#: scratch ``work``, the state ``z`` and the trial ``z_new`` (each ``(n,)``),
#: interpolation weights ``wbuf``, ``stats``, ``fstate = [t, h]``, ``istate =
#: [n_stored, i_eval, i_stop, rejected_last, saw_nonfinite, status]`` and the
#: family's work ``fam``.
Work = namedtuple("Work", ["K", "work", "z", "z_new", "wbuf", "stats", "fstate", "istate", "fam"])
#: The span of a loop: to ``t1`` in ``direction`` over ``span = |t1 - t0|``,
#: with the first ``n_err`` entries in the error test (``atol = inf`` after).
Span = namedtuple("Span", ["t1", "direction", "span", "n_err"])

#: A family's hooks (module doc), compiled functions.
Family = namedtuple("Family", ["work", "adaptive", "start", "attempt", "error", "ratio", "accept",
                               "after"])
_FAMILIES: dict = {}


def register_family(cls, family: Family) -> None:
    """Make the method tuple class ``cls`` steppable by ``run_loop`` with ``family``'s hooks."""
    _FAMILIES[cls] = family


def family_of(method_type):
    """The ``Family`` registered for a method tuple's Numba type, or None."""
    return _FAMILIES.get(getattr(method_type, "instance_class", None))


# -- the hooks, dispatched at compile time on the method tuple's class ------------------------

def work(meth, z0):
    raise NotImplementedError


def adaptive(meth, dt):
    raise NotImplementedError


def start(meth, fam, sys, loop, t0, z, K, h, direction):
    raise NotImplementedError


def attempt(meth, fam, sys, loop, t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats):
    raise NotImplementedError


def error(meth, fam, loop, hh, K, z, z_new, work, n_err):
    raise NotImplementedError


def ratio(meth, fam, err, hh, rejected_last, stats):
    raise NotImplementedError


def accept(meth, fam, sys, t, z, hh, K, work, need_dense, stats):
    raise NotImplementedError


def after(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work, t1, direction, stats):
    raise NotImplementedError


def _hook(meth, name):
    fam = family_of(meth)
    if fam is None:
        raise nb.errors.TypingError(f"no stepping family registered for method type {meth}")
    return getattr(fam, name)


@overload(work, inline="always")
def _work(meth, z0):
    f = _hook(meth, "work")
    return lambda meth, z0: f(meth, z0)


@overload(adaptive, inline="always")
def _adaptive(meth, dt):
    f = _hook(meth, "adaptive")
    return lambda meth, dt: f(meth, dt)


@overload(start, inline="always")
def _start(meth, fam, sys, loop, t0, z, K, h, direction):
    f = _hook(meth, "start")
    return lambda meth, fam, sys, loop, t0, z, K, h, direction: f(meth, fam, sys, loop, t0, z, K, h, direction)


@overload(attempt, inline="always")
def _attempt(meth, fam, sys, loop, t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats):
    f = _hook(meth, "attempt")

    def impl(meth, fam, sys, loop, t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats):
        return f(meth, fam, sys, loop, t, z, h, hh, t_new, K, z_new, work, saw_nonfinite, stats)
    return impl


@overload(error, inline="always")
def _error(meth, fam, loop, hh, K, z, z_new, work, n_err):
    f = _hook(meth, "error")
    return lambda meth, fam, loop, hh, K, z, z_new, work, n_err: f(meth, fam, loop, hh, K, z, z_new,
                                                                   work, n_err)


@overload(ratio, inline="always")
def _ratio(meth, fam, err, hh, rejected_last, stats):
    f = _hook(meth, "ratio")
    return lambda meth, fam, err, hh, rejected_last, stats: f(meth, fam, err, hh, rejected_last, stats)


@overload(accept, inline="always")
def _accept(meth, fam, sys, t, z, hh, K, work, need_dense, stats):
    f = _hook(meth, "accept")
    return lambda meth, fam, sys, t, z, hh, K, work, need_dense, stats: f(meth, fam, sys, t, z, hh, K,
                                                                          work, need_dense, stats)


@overload(after, inline="always")
def _after(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work, t1, direction, stats):
    f = _hook(meth, "after")

    def impl(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work, t1, direction, stats):
        return f(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work, t1, direction,
                 stats)
    return impl


# -- what the families share ----------------------------------------------------------------

@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def refresh_first_stage(sys, t, z, K, s, fsal, reset, stats):
    """``K[0] = F(t, z)`` at the start of the next step: the last stage
    ``K[s-1]`` of a method whose last stage is evaluated at the new point
    (first same as last; a stiffly accurate ESDIRK's up to the Newton
    tolerance), unless the system reset the state there; else one
    evaluation.  Returns whether ``K[0]`` is finite."""
    if fsal and not reset:
        copy_flat(K[0], K[s - 1])
        return True
    sys_rhs(sys, t, z, K[0])
    stats[0] += 1
    return all_finite(K[0])


# -- the loop ---------------------------------------------------------------------------------

@nb.njit(cache=True, nogil=True, inline="always")  # see ``integrate``: one compiled layer
def run_loop(sys, z0, t0, t1, loop, t_eval, store_dense):
    """Integrate ``z' = F(t, z)`` from ``t0`` to ``t1`` (either direction).

    Parameters
    ----------
    sys : system NamedTuple (``sciode.cpu.systems``)
    z0 : (n,) initial state
    loop : ``bundles.Loop``: the method tuple, ``rtol``, ``atol (n,)``,
        ``h_init`` (0 = automatic), ``hmax``, ``dt`` (fixed step, never
        rejected), ``max_steps`` (bound on attempts), and ``stops``: times a
        step must land on, not cross (kinks of piecewise-linear controls;
        observation times of a costate), monotone in the direction of
        integration; on landing ``sys_stop`` may reset the state
    t_eval : (m,) output times, monotone in the direction of integration
    store_dense : what to keep of the accepted steps: 1 their times, states
        and stages (dense output), 0 times and states, -1 only the final state
        (``ts``/``zs`` then hold two rows: initial and final)

    Returns
    -------
    ``bundles.LoopResult``: status, t_reached, n_stored, ts (n_stored,), zs
    (n_stored, n), hs, Ks (n_stored - 1, len(P), n) or empty, z_eval (m, n),
    stats (module doc).
    """
    meth = loop.method
    n = z0.shape[0]
    s_dense = meth.P.shape[0]
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    K = np.zeros((s_dense, n))
    work_, z_new, wbuf = np.empty(n), np.empty(n), np.empty(s_dense)
    atol = loop.atol
    n_err = n  # trailing entries with atol = inf are out of the error test
    while n_err > 0 and atol[n_err - 1] == np.inf:
        n_err -= 1
    z = z0.copy()
    stats = np.zeros(N_STATS, dtype=np.int64)
    ts, hs, zs, Ks, z_eval, i_eval = start_storage(t0, z, s_dense, store_dense, t_eval)
    t = t0
    if span == 0.0:
        return LoopResult(SUCCESS, t, 1, ts[:1], zs[:1], hs[:0], Ks[:0], z_eval, stats)
    fixed = not adaptive(meth, loop.dt)
    finite, h = first_step(sys, t, z, K[0], direction, meth.order, loop.rtol, atol, loop.h_init,
                           loop.dt if fixed else 0.0, loop.hmax, span, work_, z_new, stats)
    if not finite:
        return LoopResult(NONFINITE, t, 1, ts[:1], zs[:1], hs[:0], Ks[:0], z_eval, stats)
    fam = work(meth, z0)
    start(meth, fam, sys, loop, t, z, K, h, direction)
    w = Work(K, work_, z, z_new, wbuf, stats, np.array([t, h]),
             np.array([1, i_eval, 0, 0, 0, SUCCESS], dtype=np.int64), fam)
    span_ = Span(t1, direction, span, n_err)
    while True:
        steps(sys, loop, span_, t_eval, store_dense, w, Storage(ts, hs, zs, Ks, z_eval))
        t, n_stored, status = w.fstate[0], w.istate[0], w.istate[5]
        if status != SUCCESS or (t1 - t) * direction <= 0.0:
            break
        ts, hs, zs, Ks = grow_storage(ts, hs, zs, Ks, store_dense)
    ts, zs, hs, Ks = stored(ts, hs, zs, Ks, n_stored, store_dense)
    return LoopResult(status, t, n_stored, ts, zs, hs, Ks, z_eval, stats)


@nb.njit(cache=True, nogil=True, **NO_NRT)
def steps(sys, loop, span_, t_eval, store_dense, w, st):
    """The stepping loop of ``run_loop``: steps until ``span_.t1``, a failure,
    or full storage ``st`` (``stepping.Storage``), resuming from and saving to
    the work ``w`` (``Work``)."""
    meth = loop.method
    P, hmax, dt, max_steps, t_stops = meth.P, loop.hmax, loop.dt, loop.max_steps, loop.stops
    t1, direction, span, n_err = span_.t1, span_.direction, span_.span, span_.n_err
    K, work_, z, z_new, wbuf, stats, fstate, istate, fam = w
    ts, hs, zs, Ks, z_eval = st
    n = z.shape[0]
    m_eval = t_eval.shape[0]
    controlled = adaptive(meth, dt)
    t, h = fstate[0], fstate[1]
    n_stored, i_eval, i_stop = istate[0], istate[1], istate[2]
    rejected_last, saw_nonfinite, status = istate[3] != 0, istate[4] != 0, istate[5]
    while (t1 - t) * direction > 0.0 and not full(ts, n_stored, store_dense):
        status, i_stop, target, lands, hh = next_attempt(stats, max_steps, h, t, t1, saw_nonfinite,
                                                         t_stops, i_stop, direction, span)
        if status != SUCCESS:
            break
        outcome, value, nonfinite = attempt(meth, fam, sys, loop, t, z, h, hh, target if lands else t + hh,
                                            K, z_new, work_, saw_nonfinite, stats)
        if outcome != TRIAL:
            if outcome == STOP:
                status = int(value)
                break
            if outcome == REJECT:
                stats[3] += 1
                rejected_last = True
                saw_nonfinite = saw_nonfinite or nonfinite
            h = value
            continue
        finite = all_finite(z_new)
        err = 0.0
        if controlled:
            err = error(meth, fam, loop, hh, K, z, z_new, work_, n_err) if finite else np.inf
            if not math.isfinite(err):  # shrink and retry
                saw_nonfinite = True
                err = np.inf
                r = NONFINITE_SHRINK
            else:
                r = ratio(meth, fam, err, hh, rejected_last, stats)
            if err > 1.0:
                stats[3] += 1
                h = abs(hh) * r
                rejected_last = True
                continue
            h_next = min(abs(hh) * r, hmax)
        else:
            if not finite:
                status = NONFINITE
                break
            h_next = dt
        # -- accepted: the step's dense output, then its record
        accept(meth, fam, sys, t, z, hh, K, work_,
               store_dense > 0 or (i_eval < m_eval and (t_eval[i_eval] - t) * direction <= abs(hh)), stats)
        t, i_eval, at_stop, reset, n_stored = land_step(sys, t, hh, target, lands, t1, z, z_new, K, P, wbuf,
                                                        t_eval, i_eval, z_eval, direction, ts, hs, zs, Ks,
                                                        n_stored, store_dense, stats)
        for m in range(n):
            z[m] = z_new[m]
        rejected_last = False
        status, h = after(meth, fam, sys, loop, t, z, h, hh, h_next, err, at_stop, reset, K, work_, t1,
                          direction, stats)
        if status != SUCCESS:
            break
    fstate[0], fstate[1] = t, h
    istate[0], istate[1], istate[2] = n_stored, i_eval, i_stop
    istate[3], istate[4], istate[5] = int(rejected_last), int(saw_nonfinite), status


__all__ = ["Family", "REJECT", "RETRY", "STOP", "Span", "TRIAL", "Work", "family_of", "refresh_first_stage",
           "register_family", "run_loop"]
