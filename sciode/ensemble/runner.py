"""Run an ensemble's compiled entries over member ranges on several threads.

``forward``, ``gradient`` and ``costate`` take arrays with one row per member
and return arrays with one row per member; they check nothing about the model
(the callers do) and raise nothing for a failed member (its status says so).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..adjoint import ensemble as _gradient_entries  # noqa: F401  (registers entry points)
from ..cpu import ensemble as _forward_entries  # noqa: F401
from ..cpu import solvers
from ..cpu.bundles import Loop
from ..cpu.drivers import entry
from ..adjoint.common import COSTATE_COST_KERNELS, COSTATE_MODEL_KERNELS, quadratures_out_of_test

#: Members per thread below which one thread does all (a thread's hand-off
#: costs about as much as a few small solves).
MIN_MEMBERS_PER_THREAD = 16

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def n_threads(requested: int | None = None) -> int:
    """Threads for ensemble loops: ``requested``, else ``SCIODE_NUM_THREADS``,
    else the CPUs this process may use."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"`threads` must be >= 1, got {requested}")
        return int(requested)
    env = os.environ.get("SCIODE_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"SCIODE_NUM_THREADS must be an integer, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sciode-ensemble")
        _POOL_SIZE = workers
    return _POOL


#: Chunks per thread: members differ in cost (a sweep over a parameter often
#: runs from easy to stiff), so threads take small chunks as they finish
#: instead of one fixed half each (measured: 1.5x -> 1.9x on 2 threads for
#: Lorenz with rho = linspace(0, 28)).
CHUNKS_PER_THREAD = 8


def over_ranges(fn, N: int, threads: int | None = None) -> None:
    """Call ``fn(lo, hi)`` over a partition of ``range(N)``, on threads when it pays.

    The ranges interleave nothing: member ``m`` is written by one call only,
    so the threads share no output row.
    """
    k = min(n_threads(threads), max(1, N // MIN_MEMBERS_PER_THREAD))
    if k <= 1:
        fn(0, N)
        return
    chunks = min(k * CHUNKS_PER_THREAD, max(k, N // MIN_MEMBERS_PER_THREAD))
    bounds = np.linspace(0, N, chunks + 1).astype(np.int64)
    futures = [_pool(k).submit(fn, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)]
    for f in futures:
        f.result()  # re-raises a worker's exception here


@dataclass(frozen=True)
class Controls:
    """The controls shared by every member: grid ``tw``, values ``W``, loop stops."""

    tw: np.ndarray
    W: np.ndarray
    stops: np.ndarray


NO_CONTROLS = Controls(*solvers.control_arrays(None, 0)[:2], solvers.EMPTY)


def forward(mk, P: np.ndarray, Z0: np.ndarray, t0: float, t1: float, t_eval: np.ndarray,
            loop: Loop, controls: Controls = NO_CONTROLS, threads: int | None = None):
    """``Y (N, T, n)``, ``status (N,)``, ``t_reached (N,)``, ``stats (N, 6)``:
    each member solved from ``t0`` to ``t1`` with the ``Loop`` bundle ``loop``
    (its stops: the controls') and served at ``t_eval`` (rows of a failed
    member past its failure are NaN)."""
    N, n = Z0.shape
    Y = np.full((N, t_eval.shape[0], n), np.nan)
    status = np.zeros(N, dtype=np.int64)
    t_reached = np.zeros(N)
    stats = np.zeros((N, 6), dtype=np.int64)
    fn = entry("ensemble_forward", loop.method)
    args = (mk.fns(loop.method), P, controls.tw, controls.W, Z0, float(t0), float(t1),
            loop._replace(stops=controls.stops), t_eval)
    over_ranges(lambda lo, hi: fn(*args, lo, hi, Y, status, t_reached, stats), N, threads)
    return Y, status, t_reached, stats


def gradient(prob, plan, P: np.ndarray, Z0: np.ndarray, threads: int | None = None):
    """Per member, what ``adjoint.interpolating.run`` computes for one:
    ``value (N,)``, ``Z (N, n + n_p + 1 + n_g)`` = ``[lambda(t0), mu(t0), q, G]``,
    ``status (N, 2)`` and ``t_reached (N, 2)`` (forward, backward), ``stats (N, 12)``.

    ``prob`` gives the shared inputs (span, data rows, controls); ``plan`` is
    ``interpolating.plan(prob)``.
    """
    N = Z0.shape[0]
    value = np.zeros(N)
    Z = np.zeros((N, prob.n + prob.n_p + 1 + prob.n_g))
    status = np.zeros((N, 2), dtype=np.int64)
    t_reached = np.zeros((N, 2))
    stats = np.zeros((N, 12), dtype=np.int64)
    fn = entry("ensemble_gradient", plan.fwd.method, plan.bwd.method)
    args = (plan.f, plan.c, P, prob.tw, prob.W, Z0, plan.rows, prob.t0, prob.t1, prob.n_g,
            plan.fwd, plan.bwd)
    over_ranges(lambda lo, hi: fn(*args, lo, hi, value, Z, status, t_reached, stats), N, threads)
    return value, Z, status, t_reached, stats


def costate(mk, ck, P: np.ndarray, Z0: np.ndarray, t_rows: np.ndarray, G: np.ndarray,
            loop: Loop, back: Loop, threads: int | None = None):
    """``Z (N, n + n_p)`` = ``[dL/dy0, dL/dp]`` of ``L = sum_i G[m, i] . y_m(t_rows[i])``
    per member (the row at ``t_rows[0]`` included: it is ``y0`` itself),
    ``status (N, 2)`` and ``t_reached (N, 2)`` (forward, backward),
    ``stats (N, 4)`` (forward and backward nfev, nsteps).

    ``back``: the costate sweep's method and tolerances; its ``atol`` is the
    costate's (``n`` entries); the quadrature ``mu`` is outside the error test
    (``adjoint.common.sweep_tolerances``).
    """
    N, n = Z0.shape
    n_p = P.shape[1]
    Z = np.zeros((N, n + n_p))
    status = np.zeros((N, 2), dtype=np.int64)
    t_reached = np.zeros((N, 2))
    stats = np.zeros((N, 4), dtype=np.int64)
    fn = entry("ensemble_costate", loop.method, back.method)
    aug = np.full(n + n_p + 1, float(np.min(back.atol)))
    aug[:n] = back.atol
    brtol, batol = quadratures_out_of_test(back.rtol, aug, n)
    args = (mk.fns(loop.method, back.method, uses=COSTATE_MODEL_KERNELS),
            ck.fns(COSTATE_COST_KERNELS), P, NO_CONTROLS.tw, NO_CONTROLS.W, Z0, t_rows, G,
            loop._replace(stops=solvers.EMPTY),
            back._replace(rtol=brtol, atol=batol, stops=np.ascontiguousarray(t_rows[::-1])))
    over_ranges(lambda lo, hi: fn(*args, lo, hi, Z, status, t_reached, stats), N, threads)
    return Z, status, t_reached, stats
