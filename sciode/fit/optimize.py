"""One start of a fit (``run_start``), the start points, and running many of them.

``run_start`` is a module-level function of picklable arguments, so any
``concurrent.futures``-style executor and a ``dask.distributed.Client`` can
run it; the worker rebuilds the kernels from the on-disk cache (they are
never pickled as compiled code).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .objective import Objective

#: Options passed through to ``scipy.optimize.least_squares`` / ``minimize(method="L-BFGS-B")``.
LEAST_SQUARES_OPTIONS = {"ftol", "xtol", "gtol", "max_nfev", "x_scale", "loss", "f_scale", "tr_solver",
                         "diff_step", "verbose"}
LBFGS_OPTIONS = {"maxiter", "maxfun", "ftol", "gtol", "maxcor", "maxls"}


@dataclass
class StartResult:
    """The outcome of one start (natural units; ``x`` ordered as ``FitResult.names``)."""

    index: int
    x0: np.ndarray
    x: np.ndarray
    cost: float
    success: bool
    message: str
    nfev: int
    njev: int
    n_failed_solves: int
    wall_time: float
    hess_inv: np.ndarray | None = None  # L-BFGS-B's inverse Hessian (theta space)

    def __repr__(self) -> str:
        return (f"StartResult(index={self.index}, cost={self.cost:.6g}, success={self.success}, "
                f"nfev={self.nfev}, n_failed_solves={self.n_failed_solves})")


_SEEN: dict = {}


def run_start(problem, theta0, index=0) -> StartResult:
    """Optimize ``problem`` from ``theta0`` (optimizer space)."""
    # One problem object per worker process: tasks unpickle their own copy, and the
    # per-object caches (``prepare``'s static inputs, lambdified y0) pay off only if shared.
    if len(_SEEN) > 16:
        _SEEN.clear()
    problem = _SEEN.setdefault(problem.token, problem)
    obj = Objective(problem)
    theta0 = np.asarray(theta0, dtype=float)
    t = time.perf_counter()
    if problem.least_squares:
        out = _least_squares(obj, theta0)
    else:
        out = _lbfgs(obj, theta0)
    theta, cost, success, message, nfev, njev, hess_inv = out
    return StartResult(index, problem.to_natural(theta0), problem.to_natural(theta), cost, success,
                       message, nfev, njev, obj.n_failed, time.perf_counter() - t, hess_inv)


def _least_squares(obj, theta0):
    # imported here, not at the top: it doubles the time of `import sciode`
    from scipy import optimize

    prob = obj.problem
    lb, ub = prob.theta_bounds
    m = prob.n_residuals
    # trf and dogbox reject a trial point with non-finite residuals (trust region
    # shrinks); MINPACK's lm has no such test, so it gets a large finite residual.
    fill = 1e50 if prob.method == "lm" else np.inf

    def fun(theta):
        ev = obj.evaluate(theta)
        return np.full(m, fill) if ev is None else ev.residuals

    def jac(theta):
        ev = obj.evaluate(theta)
        return np.zeros((m, prob.n_free)) if ev is None else ev.jacobian

    opts = {"ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10, **prob.optimizer_options}
    if prob.method == "lm":
        bounds = (-np.inf, np.inf)
    else:
        bounds = (lb, ub)
    if obj.evaluate(theta0) is None:
        return theta0, np.inf, False, "the solve failed at the start point", 1, 0, None
    try:
        res = optimize.least_squares(fun, theta0, jac=jac, bounds=bounds, method=prob.method, **opts)
    except ValueError as exc:  # a residual vector that is not finite at the start point
        return theta0, np.inf, False, str(exc), 1, 0, None
    ev = obj.evaluate(res.x)
    cost = np.inf if ev is None else ev.value
    return res.x, cost, bool(res.success) and ev is not None, res.message, int(res.nfev), \
        int(res.njev or 0), None


def failed_point(f_best: float, z_best: np.ndarray, z) -> tuple:
    """``(value, gradient)`` that L-BFGS-B gets where the solve failed at ``z``:
    a smooth wall ``F_best + s (1 + |z - z_best|^2)`` around the best point
    so far (``s = 1 + |F_best|``), above every value the search has accepted,
    with its gradient pointing back to ``z_best``, so the line search
    backtracks.  An infinite or flat value does not work: SciPy's L-BFGS-B then
    stops at once and reports convergence (SciPy 1.17, a failure at the first
    trial step).  With no finite point yet, the wall is built around ``z_best``
    at height 0 with ``s = 1e10``."""
    finite = np.isfinite(f_best)
    scale = 1.0 + abs(f_best) if finite else 1e10
    d = np.asarray(z, dtype=float) - z_best
    return (f_best if finite else 0.0) + scale * (1.0 + float(d @ d)), 2.0 * scale * d


def _lbfgs(obj, theta0):
    from scipy import optimize

    prob = obj.problem
    lb, ub = prob.theta_bounds
    ev0 = obj.evaluate(theta0)
    if ev0 is None:
        return theta0, np.inf, False, "the solve failed at the start point", 1, 0, None
    best = [ev0.value, np.array(theta0, dtype=float)]

    def fg(theta):
        ev = obj.evaluate(theta)
        if ev is None:
            return failed_point(best[0], best[1], theta)
        if ev.value < best[0]:
            best[0], best[1] = ev.value, np.array(theta, dtype=float)
        return ev.value, ev.grad

    opts = {"ftol": 1e-12, "gtol": 1e-8, "maxiter": 1000, **prob.optimizer_options}
    res = optimize.minimize(fg, theta0, jac=True, method="L-BFGS-B",
                            bounds=optimize.Bounds(lb, ub), options=opts)
    ev = obj.evaluate(res.x)
    cost = np.inf if ev is None else ev.value
    hess_inv = res.hess_inv.todense() if hasattr(res, "hess_inv") else None
    return res.x, cost, bool(res.success) and ev is not None, str(res.message), int(res.nfev), \
        int(res.get("njev", res.nfev)), hess_inv


# --- start points ---------------------------------------------------------------------


#: Half-width of the sampling box where a bound is infinite: a factor of 10 either side
#: for log-space entries, ``max(|v0|, 1)`` either side otherwise.
_LOG_HALF_WIDTH = np.log(10.0)


def sampling_box(problem):
    """``(lo, hi)`` in optimizer space: the bounds, or a box around the start where infinite."""
    lb, ub = problem.theta_bounds
    th0 = problem.to_theta(problem.v0)
    half = np.where(problem.is_log, _LOG_HALF_WIDTH, np.maximum(np.abs(problem.v0), 1.0))
    # the start lies within the bounds, so lo <= th0 <= hi and lo < hi
    return np.where(np.isfinite(lb), lb, th0 - half), np.where(np.isfinite(ub), ub, th0 + half)


def start_points(problem, n_starts, seed, sampling):
    """``n_starts`` points in optimizer space: the user's start first, then samples.

    Samples are uniform (``"uniform"``) or a Latin hypercube (``"lhs"``) in the
    sampling box, so log-space entries are log-uniform.  The same seed gives the
    same points.
    """
    th0 = problem.to_theta(problem.v0)
    if n_starts <= 1:
        return th0[None, :]
    rng = np.random.default_rng(seed)
    d, k = problem.n_free, n_starts - 1
    if sampling == "lhs":
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d, seed=rng).random(k)
    elif sampling == "uniform":
        u = rng.random((k, d))
    else:
        raise ValueError(f"`sampling` must be one of ['lhs', 'uniform']; got {sampling!r}")
    lo, hi = sampling_box(problem)
    return np.vstack([th0, lo + u * (hi - lo)])


# --- running starts -------------------------------------------------------------------


#: With ``executor=None``, the remaining starts go to local worker processes
#: when the first start says they would take longer than this in this process:
#: a worker costs ~1-2 s to start (import, kernels from the disk cache), more
#: than a whole small multistart.
PROCESS_MIN_SECONDS = 5.0
EXECUTOR_NAMES = ("auto", "serial", "processes")


def local_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_starts(problem, thetas, executor=None, client=None, progress=False):
    """``run_start`` for each point: in this process, on ``executor``, or on Dask ``client``.

    ``executor=None`` (``"auto"``) runs the first start here and, when the
    others would take more than ``PROCESS_MIN_SECONDS`` here and the machine
    has several CPUs, the rest on a pool of local processes (one per CPU);
    ``"serial"`` keeps every start here; ``"processes"`` always uses the pool.
    """
    from tqdm.auto import tqdm

    if executor is None:
        executor = "auto"
    if isinstance(executor, str) and executor not in EXECUTOR_NAMES:
        raise ValueError(f"`executor` must be an Executor or one of {EXECUTOR_NAMES}; "
                         f"got {executor!r}")
    n = len(thetas)
    bar = tqdm(total=n, desc="fit starts", disable=not progress, leave=False)
    try:
        if client is not None:
            results = _on_dask(client, problem, thetas, bar)
        elif not isinstance(executor, str):
            results = _on_executor(executor, problem, thetas, bar)
        else:
            results = []
            if executor != "processes":
                tic = time.perf_counter()
                results.append(run_start(problem, thetas[0], 0))
                bar.update()
                per_start = time.perf_counter() - tic
            rest = list(range(len(results), n))
            pooled = rest and local_workers() > 1 and (
                executor == "processes"
                or (executor == "auto" and per_start * len(rest) > PROCESS_MIN_SECONDS))
            if pooled:
                results.extend(_on_local_processes(problem, [thetas[i] for i in rest], rest, bar))
            else:
                for i in rest:
                    results.append(run_start(problem, thetas[i], i))
                    bar.update()
    finally:
        bar.close()
    return sorted(results, key=lambda r: r.index)


def _on_local_processes(problem, thetas, indices, bar):
    """The starts on a pool of fresh ``spawn`` processes (no forked Numba or
    thread state), which load the kernels from the disk cache."""
    import concurrent.futures as cf
    import multiprocessing

    with cf.ProcessPoolExecutor(max_workers=local_workers(),
                                mp_context=multiprocessing.get_context("spawn")) as pool:
        results = _on_executor(pool, problem, thetas, bar)
    for r in results:  # the pool numbered them 0.. within `thetas`
        r.index = indices[r.index]
    return results


def run_chunk(problem, thetas, indices):
    """``run_start`` for several points: one task of an executor or of Dask."""
    return [run_start(problem, th, i) for th, i in zip(thetas, indices)]


def _chunks(n, workers):
    """Start indices in about four tasks per worker: a task carries tens of
    milliseconds of scheduling overhead, a small model's start costs ~10 ms."""
    size = max(1, -(-n // (4 * max(1, workers))))
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def _on_executor(executor, problem, thetas, bar):
    import concurrent.futures as cf

    workers = getattr(executor, "_max_workers", None) or 1
    futures = {executor.submit(run_chunk, problem, [thetas[i] for i in idx], idx): len(idx)
               for idx in _chunks(len(thetas), workers)}
    if all(isinstance(f, cf.Future) for f in futures):
        done = cf.as_completed(futures)
    else:  # some other futures-style executor: wait in submission order
        done = list(futures)
    results = []
    for f in done:
        results.extend(f.result())
        bar.update(futures[f])
    return results


def _on_dask(client, problem, thetas, bar):
    from distributed import as_completed

    workers = sum(client.nthreads().values())
    # Sent once to every worker instead of once per task.
    shared = client.scatter(problem, broadcast=True)
    chunks = _chunks(len(thetas), workers)
    futures = client.map(run_chunk, [shared] * len(chunks), [[thetas[i] for i in idx] for idx in chunks],
                         chunks, pure=False)
    results = []
    for f in as_completed(futures):
        part = f.result()
        results.extend(part)
        bar.update(len(part))
    return results
