"""What every stepping loop shares: step storage, output times, guards.

The explicit, Rosenbrock and ESDIRK loops differ in how they take a step;
how they record accepted steps, serve ``t_eval`` from dense output, refuse to
go on (``max_steps``, step-size underflow) and hand back their arrays is the
same, and lives here.

``store`` levels (the loops' ``store_dense`` argument): 1 keep every accepted
step with its stages (dense output), 0 keep the steps, -1 keep only the
initial and the latest state (``ts``/``zs`` hold two rows), for the
memory-bounded sensitivity modes.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from .._numba_compat import NO_NRT, borrow1, borrow2, borrow3
from .status import MAX_STEPS, NONFINITE, STEP_UNDERFLOW, SUCCESS
from .systems import sys_stop

EPS = np.finfo(np.float64).eps
CONTINUE = -1  # ``step_guard``: no reason to stop
#: The implicit loops' ``stats``: nfev, nsteps, naccepted, nrejected, njev, nlu.
N_STATS = 6
#: Consecutive singular iteration matrices (halving h each time) before ``SINGULAR``.
MAX_SINGULAR = 5
#: The step factor after a trial with a non-finite state or error (every loop).
NONFINITE_SHRINK = 0.2
#: Up to this many entries the stage sums run as one dot product per entry;
#: above, row by row of ``K`` (SIMD over the entries).
SMALL = 16


#: Where a loop keeps its accepted steps (``record_step``): times ``ts``, step
#: sizes ``hs``, states ``zs``, stages ``Ks`` (``store`` > 0), and the rows
#: ``z_eval`` at the output times.
Storage = namedtuple("Storage", ["ts", "hs", "zs", "Ks", "z_eval"])

@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def scaled_sum(h, w, K, out, n):
    """``out[:n] = h sum_i w[i] K[i, :n]``.

    Up to ``SMALL`` entries one dot product per entry; above, accumulated row
    by row of ``K`` (contiguous, so the inner loop runs in SIMD lanes): ~2x
    faster from 100 states on.  Rows with a zero weight are skipped there.
    """
    if n <= SMALL:
        for m in range(n):
            acc = 0.0
            for i in range(w.shape[0]):
                acc += w[i] * K[i, m]
            out[m] = h * acc
        return
    for m in range(n):
        out[m] = 0.0
    for i in range(w.shape[0]):
        wi = h * w[i]
        if wi != 0.0:
            for m in range(n):
                out[m] += wi * K[i, m]


@nb.njit(cache=True, nogil=True, **NO_NRT)
def weighted_sum(z, h, w, K, out):
    """``out = z + h sum_i w[i] K[i]`` (``scaled_sum``, then ``z``)."""
    n = z.shape[0]
    scaled_sum(h, w, K, out, n)
    for m in range(n):
        out[m] += z[m]


@nb.njit(cache=True, nogil=True, inline="always")
def interp_weights(P, theta, out):
    """``out[i] = sum_j P[i, j] theta^(j+1)``: the stage weights of the interpolant."""
    for i in range(P.shape[0]):
        acc = 0.0
        pw = theta
        for j in range(P.shape[1]):
            acc += P[i, j] * pw
            pw *= theta
        out[i] = acc


@nb.njit(cache=True, nogil=True, **NO_NRT)
def dense_point(z, h, K, P, theta, wbuf, out):
    """``out = z + h sum_i K[i] sum_j P[i, j] theta^(j+1)`` (the interpolant)."""
    interp_weights(P, theta, wbuf)
    weighted_sum(z, h, wbuf, K, out)


@nb.njit(cache=True, nogil=True, inline="always")
def copy_flat(dst, src):
    """``dst[:src.size] = src`` for 1-D arrays, element by element.

    Compiled loops copy arrays with this rather than slice assignment: a
    slice assignment may fail to broadcast, and the code that formats that
    error (shapes into a message) costs seconds of compilation per process
    on a fresh install, for an error that cannot happen here.
    """
    for i in range(src.shape[0]):
        dst[i] = src[i]


@nb.njit(cache=True, nogil=True)
def grow_rows(a, n_rows):
    """A copy of ``a`` with room for ``n_rows`` along axis 0 (used rows kept)."""
    out = np.empty((n_rows,) + a.shape[1:], dtype=a.dtype)
    copy_flat(out.reshape(-1), a.reshape(-1))
    return out


@nb.njit(cache=True, nogil=True)
def new_storage(t0, z0, s_tot, store):
    """Arrays of step boundaries, steps, states and (``store > 0``) stages,
    with the initial point recorded; ``n_stored`` is then 1."""
    n = z0.shape[0]
    # lazily mapped: untouched rows cost no memory; regrowth copies do cost time.
    # Keeping the latest state only (store < 0) needs two rows: an ensemble
    # member or a costate re-solve then allocates 48 bytes, not kilobytes.
    cap = 256 if store >= 0 else 2
    ts, hs, zs = np.empty(cap), np.empty(cap), np.empty((cap, n))
    Ks = np.empty((cap if store > 0 else 0, s_tot, n))
    ts[0] = t0
    for m in range(n):
        zs[0, m] = z0[m]
    return ts, hs, zs, Ks


@nb.njit(cache=True, nogil=True)
def start_storage(t0, z0, s_tot, store, t_eval):
    """``new_storage`` plus the output array with the times equal to ``t0``
    served: ``ts, hs, zs, Ks, z_eval, i_eval``."""
    ts, hs, zs, Ks = new_storage(t0, z0, s_tot, store)
    z_eval = np.full((t_eval.shape[0], z0.shape[0]), np.nan)
    return ts, hs, zs, Ks, z_eval, serve_initial(t_eval, t0, z0, z_eval)


@nb.njit(cache=True, nogil=True, inline="always")
def begin_borrowed(t0, z0, z, s_tot, store, t_eval):
    """The start of a loop that works on borrowed views: ``z[:] = z0``, zeroed
    ``stats`` (``N_STATS``), the storage with the initial point and the output
    times at ``t0`` served (``start_storage``), and borrowed views of it.
    Returns ``stats, (ts, hs, zs, Ks, z_eval) owned, i_eval, (ts, hs, zs, Ks,
    z_eval) borrowed``: the owned arrays are the loop's result and keep the views valid."""
    copy_flat(z, z0)
    stats = np.zeros(N_STATS, dtype=np.int64)
    ts_o, hs_o, zs_o, Ks_o, z_eval_o, i_eval = start_storage(t0, z, s_tot, store, t_eval)
    ts, hs, zs, Ks = borrow_storage(ts_o, hs_o, zs_o, Ks_o)
    return stats, ts_o, hs_o, zs_o, Ks_o, z_eval_o, i_eval, ts, hs, zs, Ks, borrow2(z_eval_o)


@nb.njit(cache=True, nogil=True, inline="always")
def borrow_storage(ts, hs, zs, Ks):
    """Borrowed views (``borrow.py``) of the storage, for a loop with reference counting."""
    return borrow1(ts), borrow1(hs), borrow2(zs), borrow3(Ks)


@nb.njit(cache=True, nogil=True)
def grow_storage(ts, hs, zs, Ks, store):
    """Twice the room (called only when the storage is full)."""
    cap = 2 * ts.shape[0]
    if store > 0:
        Ks = grow_rows(Ks, cap)
    return grow_rows(ts, cap), grow_rows(hs, cap), grow_rows(zs, cap), Ks


@nb.njit(cache=True, nogil=True, inline="always")
def full(ts, n_stored, store):
    """Whether ``record_step`` needs ``grow_storage`` first."""
    return store >= 0 and n_stored == ts.shape[0]


@nb.njit(cache=True, nogil=True, inline="always")
def record_step(ts, hs, zs, Ks, n_stored, t_new, hh, z_new, K, store):
    """Record an accepted step (room must exist: see ``full``); returns ``n_stored``.

    The caller rebinds its arrays only in the rare ``grow_storage`` branch:
    rebinding them every step costs a reference-count round trip each (~10%
    of a dopri5 step on Lorenz), and so would row slices, hence the
    element-wise copies.
    """
    if store < 0:  # keep the latest state only: O(1) memory in the steps
        n_stored = 1
    n = zs.shape[1]
    if store > 0:
        for i in range(K.shape[0]):
            for m in range(n):
                Ks[n_stored - 1, i, m] = K[i, m]
    hs[n_stored - 1] = hh
    ts[n_stored] = t_new
    for m in range(n):
        zs[n_stored, m] = z_new[m]
    return n_stored + 1


@nb.njit(cache=True, nogil=True)
def stored(ts, hs, zs, Ks, n_stored, store):
    """The used part of the storage: ``ts, zs, hs, Ks`` as the loops return them."""
    nk = n_stored - 1 if store > 0 else 0
    return ts[:n_stored], zs[:n_stored], hs[: n_stored - 1], Ks[:nk]


@nb.njit(cache=True, nogil=True)
def serve_initial(t_eval, t0, z, z_eval):
    """Fill the output times equal to ``t0``; returns the next index."""
    i = 0
    while i < t_eval.shape[0] and t_eval[i] == t0:
        copy_flat(z_eval[i], z)
        i += 1
    return i


@nb.njit(cache=True, nogil=True, inline="always")
def serve_t_eval(t_eval, i_eval, t, t_new, hh, z, K, P, wbuf, z_eval, direction):
    """Interpolate the output times inside the accepted step; returns the next index."""
    while i_eval < t_eval.shape[0] and (t_eval[i_eval] - t_new) * direction <= 0.0:
        dense_point(z, hh, K, P, (t_eval[i_eval] - t) / hh, wbuf, z_eval[i_eval])
        i_eval += 1
    return i_eval


@nb.njit(cache=True, nogil=True, inline="always")
def land_step(sys, t, hh, target, lands, t1, z, z_new, K, P, wbuf, t_eval, i_eval, z_eval, direction,
              ts, hs, zs, Ks, n_stored, store_dense, stats):
    """Every loop's record of an accepted step from ``(t, z)`` to ``z_new``
    (stages ``K``): serve the output times inside it from its interpolant,
    give the system its say on an interior stop (``sys_stop`` may reset
    ``z_new``), store the step and count it.

    Returns ``(t_new, i_eval, at_stop, reset, n_stored)``; ``at_stop``: the
    step landed on a stop before ``t1``; ``reset``: the system changed the state there.
    """
    t_new = target if lands else t + hh
    i_eval = serve_t_eval(t_eval, i_eval, t, t_new, hh, z, K, P, wbuf, z_eval, direction)
    at_stop = lands and target != t1
    reset = at_stop and sys_stop(sys, t_new, z_new)
    n_stored = record_step(ts, hs, zs, Ks, n_stored, t_new, hh, z_new, K, store_dense)
    stats[2] += 1
    return t_new, i_eval, at_stop, reset, n_stored


@nb.njit(cache=True, nogil=True, inline="always")
def step_guard(n_steps, max_steps, h, t, saw_nonfinite):
    """Why the loop must stop before the next attempt, or ``CONTINUE``."""
    if n_steps >= max_steps:
        return MAX_STEPS
    if h < 10.0 * EPS * max(abs(t), 1e-300):
        # a step shrunk to nothing after non-finite trials is a non-finite failure
        return NONFINITE if saw_nonfinite else STEP_UNDERFLOW
    return CONTINUE


@nb.njit(cache=True, nogil=True, inline="always")
def next_attempt(stats, max_steps, h, t, t1, saw_nonfinite, t_stops, i_stop, direction, span):
    """Where every loop's attempt starts: ``(status, i_stop, target, lands, hh)``.

    ``status`` is ``step_guard``'s reason to stop (the loop then breaks) or
    ``SUCCESS``; else the attempt is the step ``hh`` towards ``target``, the
    next stop or ``t1`` (``next_target``), which it ``lands`` on exactly
    (``step_to``).  ``stats[1]`` counts the attempts so far.
    """
    status = step_guard(stats[1], max_steps, h, t, saw_nonfinite)
    if status != CONTINUE:
        return status, i_stop, t1, False, 0.0
    i_stop, target = next_target(t_stops, i_stop, t, t1, direction)
    lands, hh = step_to(t, h, target, direction, span)
    return SUCCESS, i_stop, target, lands, hh


@nb.njit(cache=True, nogil=True, inline="always")
def next_target(t_stops, i_stop, t, t1, direction):
    """The next time a step must land on: the first stop after ``t`` that lies
    before ``t1``, else ``t1``.  Returns ``(i_stop, target)``."""
    while i_stop < t_stops.shape[0] and (t_stops[i_stop] - t) * direction <= 0.0:
        i_stop += 1
    if i_stop < t_stops.shape[0] and (t1 - t_stops[i_stop]) * direction > 0.0:
        return i_stop, t_stops[i_stop]
    return i_stop, t1


@nb.njit(cache=True, nogil=True, inline="always")
def step_to(t, h, target, direction, span):
    """``(lands, hh)``: the signed step from ``t``, ``direction * h``, or exactly
    ``target - t`` when that step reaches ``target`` or would stop short of it
    by roundoff only (no sliver of a step is ever left)."""
    lands = (t + direction * h - target) * direction >= -100.0 * EPS * max(abs(target), span)
    return lands, (target - t) if lands else direction * h
