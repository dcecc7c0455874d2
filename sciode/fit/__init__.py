"""Parameter fitting: ``sciode.fit``, from data to estimates with uncertainty.

Pure Python over ``sciode.value_and_grad`` (outside the Numba cache hash):
``problem`` validates the arguments, ``objective`` maps sensitivities to the
fitted quantities, ``optimize`` runs starts (here, on an executor or on a Dask
cluster), ``result`` holds the estimates, covariance and profiles.
"""

from __future__ import annotations

import sys

import numpy as np

from . import problem as _problem
from .optimize import StartResult, run_starts, start_points
from .result import FitResult, Profile, correlation, uncertainty

__all__ = ["FitResult", "Profile", "StartResult", "fit"]


def fit(model, data, params0, y0, fit_y0=False, bounds=None, method="trf", sensitivity="forward",
        log_params=(), fixed=None, n_starts=1, seed=None, executor=None, client=None, *,
        conditions=None, t_span=None, ode_method="dopri5", rtol=1e-8, atol=1e-10,
        max_steps=100_000, sampling="lhs", progress=None, scale_covariance=True,
        options=None) -> FitResult:
    """Fit parameters (and optionally initial states) of ``model`` to ``data``.

    Parameters
    ----------
    model : Model
    data : LeastSquares or Cost, or a list of them (one per experiment)
        Least squares (``LeastSquares``, or a ``Cost`` of data terms only) are
        minimised by ``scipy.optimize.least_squares`` on the residual Jacobian
        from forward sensitivities; any other ``Cost`` by L-BFGS-B on the
        gradient of ``sensitivity`` (``"adjoint"`` for many parameters).
    params0 : sequence ordered as ``model.params``, or mapping name -> value
        Start values (and the values of fixed parameters).
    y0 : initial state, or a list of them (one per experiment)
        Numbers, or SymPy expressions of the parameters (the chain rule through
        ``dy0/dp`` is applied).
    fit_y0 : bool or sequence of state names
        Also fit the numeric initial states (all, or the named ones), per experiment.
    bounds : mapping name -> (lo, hi), or a pair (lb, ub) over the fitted quantities
        Natural units (also for log-space entries).
    method : ``"trf"`` (default), ``"dogbox"``, ``"lm"`` (least_squares) or ``"L-BFGS-B"``
        A non-least-squares ``Cost`` always uses L-BFGS-B.
    sensitivity : str
        Least-squares methods: ``"forward"`` (forward sensitivities, one
        augmented solve per experiment) or ``"adjoint"`` (the residual
        Jacobian row by row, each row a costate sweep, all rows in parallel:
        cheaper when parameters outnumber residuals).  L-BFGS-B: any mode of
        ``value_and_grad``.
    log_params : sequence of names
        Fitted in log space (positive, e.g. rate constants over many decades).
    fixed : sequence of names, or mapping name -> value
        Parameters held fixed (at ``params0``, or at the given value).
    n_starts, seed : int
        Multistart: the first start is ``params0``, the others are sampled
        (``sampling="lhs"`` Latin hypercube or ``"uniform"``) in the bounds
        (log-uniform for log-space entries; where a bound is infinite, within a
        factor 10 of the start for log entries, ``+- max(|v0|, 1)`` otherwise).
        The same seed gives the same starts and results.
    executor : concurrent.futures.Executor or ``"auto"``, ``"serial"``, ``"processes"``
        Runs the starts (any ``concurrent.futures``-style executor).  Default
        (None, ``"auto"``): the first start in this process, then the others
        on a pool of local processes (one per CPU) when they would take more
        than ``PROCESS_MIN_SECONDS`` (5 s) here, else here too (for small
        models a start takes milliseconds, less than starting a worker).
        ``"serial"``: all in this process; ``"processes"``: always the pool.
    client : dask.distributed.Client, optional
        Runs the starts on a Dask cluster (``pip install sciode[dask]``).
    conditions : list of mappings name -> value, optional
        Per-experiment parameter overrides (held at that value in that experiment).
    t_span : (t0, t1) or one per experiment, optional
        Default ``(0, last observation time)``.
    ode_method, rtol, atol, max_steps : as ``sciode.solve``
        Tighter defaults than ``solve``: the optimizer needs smooth residuals.
    progress : bool, optional
        A progress bar over the starts; default when ``n_starts > 1`` on a terminal.
    scale_covariance : bool
        Scale the Gauss--Newton covariance by ``s^2 = sum r^2 / (m - n)``
        (default True); False when the sigmas are known noise levels.
    options : dict, optional
        Passed to ``scipy.optimize.least_squares`` (``ftol``, ``xtol``, ``gtol``,
        ``max_nfev``, ``x_scale``, ...) or to L-BFGS-B (``maxiter``, ``ftol``, ``gtol``,
        ...), and ``value_and_grad``'s options (``sens_error_control``,
        ``max_step``, ``checkpoints``, ...) to the solves.

    Returns
    -------
    FitResult

    Raises
    ------
    ModelError, ValueError
        On bad input, before any solve: data that does not match the model,
        an experiment with no observed entry, unknown names in ``fixed``,
        ``log_params`` or ``bounds``, a start outside the bounds.
    """
    optimizer_opts, solver_opts = _options(options)
    prob = _problem.build(model, data, params0, y0, fit_y0, bounds, method, sensitivity, log_params,
                          fixed, conditions, t_span,
                          dict(method=ode_method, rtol=rtol, atol=atol, max_steps=max_steps,
                               **solver_opts), optimizer_opts)
    n_starts = int(n_starts)
    if n_starts < 1:
        raise ValueError(f"`n_starts` must be >= 1, got {n_starts}")
    if executor is not None and client is not None:
        raise ValueError("pass `executor` or `client`, not both")
    thetas = start_points(prob, n_starts, seed, sampling)
    if progress is None:
        progress = n_starts > 1 and sys.stderr.isatty()
    starts = run_starts(prob, thetas, executor, client, progress)
    return _result(prob, starts, scale_covariance)


def _options(options):
    """Split ``options`` into the optimizer's and ``value_and_grad``'s."""
    from ..adjoint import _OPTIONS as SOLVER_OPTIONS
    from .optimize import LBFGS_OPTIONS, LEAST_SQUARES_OPTIONS

    options = dict(options or {})
    valid = LEAST_SQUARES_OPTIONS | LBFGS_OPTIONS | SOLVER_OPTIONS
    unknown = set(options) - valid
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid options are {sorted(valid)}")
    solver = {k: v for k, v in options.items() if k in SOLVER_OPTIONS}
    return {k: v for k, v in options.items() if k not in SOLVER_OPTIONS}, solver


def _result(prob, starts, scale_covariance) -> FitResult:
    finite = [s for s in starts if np.isfinite(s.cost)]
    best = min(finite, key=lambda s: s.cost) if finite else starts[0]
    n_failed = sum(s.n_failed_solves for s in starts)
    theta = prob.to_theta(best.x)
    if np.isfinite(best.cost):
        cov, how, grad = uncertainty(prob, theta, scale_covariance, best.hess_inv)
    else:
        n = prob.n_free
        cov, how, grad = np.full((n, n), np.inf), "unavailable: every start failed", np.full(n, np.nan)
    se = np.sqrt(np.diag(cov))
    p = prob.params_full(best.x)
    y0s = [prob.experiment_inputs(k, best.x, p)[1] for k in range(len(prob.experiments))]
    return FitResult(
        params=prob.param_dict(p), y0=y0s[0] if len(y0s) == 1 else y0s, names=list(prob.names),
        x=best.x, cost=best.cost, success=best.success, message=best.message, nfev=best.nfev,
        njev=best.njev, n_failed_solves=n_failed, starts=starts, covariance=cov,
        stderr=dict(zip(prob.names, map(float, se))), correlation=correlation(cov),
        covariance_method=how, grad=grad, method=prob.method if prob.least_squares else "L-BFGS-B",
        n_residuals=prob.n_residuals, _problem=prob)
