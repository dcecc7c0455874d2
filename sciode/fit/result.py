"""``FitResult``: estimates, per-start outcomes, uncertainty, profiles, plots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .objective import Objective
from .optimize import run_start

#: ``0.5 * chi2.ppf(0.95, df=1)``: a profile's 95% threshold in units of the cost
#: ``0.5 * sum r^2`` (the cost is half of chi^2).
PROFILE_THRESHOLD_95 = 0.5 * 3.841458820694124


@dataclass
class Profile:
    """Profile likelihood of one fitted quantity.

    ``values[i]`` is the fixed value, ``costs[i]`` the cost re-optimised over
    every other free entry, ``delta = costs - best cost``.  ``ci`` is the 95%
    interval where ``delta <= threshold`` (linear interpolation between grid
    points); an end is None where the profile does not rise above the
    threshold within the grid: the quantity is not identifiable on that side.
    """

    name: str
    values: np.ndarray
    costs: np.ndarray
    delta: np.ndarray
    success: np.ndarray
    others: list
    threshold: float
    ci: tuple

    def plot(self, ax=None):
        """The profile with its threshold (matplotlib)."""
        import matplotlib.pyplot as plt

        ax = ax or plt.figure().gca()
        ax.plot(self.values, self.delta, "o-")
        ax.axhline(self.threshold, color="k", ls="--", lw=0.8, label="95% threshold")
        ax.set_xlabel(self.name)
        ax.set_ylabel("cost - best cost")
        ax.legend()
        return ax


@dataclass
class FitResult:
    """The result of ``sciode.fit``.

    Attributes
    ----------
    params : dict
        Every model parameter (fixed ones included) by name, best start.
    y0 : numpy.ndarray (n_states,), or a list of them (one per experiment)
    names : list of str
        The fitted quantities: free parameters, then fitted initial states
        (``"x(t0)"``, ``"x(t0)[k]"`` for experiment ``k``).
    x : numpy.ndarray (n_free,)
        Their estimates, natural units.
    cost : float
        ``0.5 * sum r^2`` (least squares) or the ``Cost``'s value.
    success, message, nfev, njev : of the best start's optimizer
    n_failed_solves : int
        Points where a solve failed, over every start: each was a rejected step.
    starts : list of StartResult
        Every start, in start order (``waterfall`` sorts them).
    covariance, correlation : numpy.ndarray (n_free, n_free)
        Natural units, ordered as ``names``; see ``covariance_method``.  All
        ``inf`` where the Jacobian (or Hessian) is singular: then some
        quantity is not identifiable (``profile`` says which).
    stderr : dict name -> float
    grad : numpy.ndarray (n_free,)
        Gradient of the cost at the estimate (natural units).
    """

    params: dict
    y0: Any
    names: list
    x: np.ndarray
    cost: float
    success: bool
    message: str
    nfev: int
    njev: int
    n_failed_solves: int
    starts: list
    covariance: np.ndarray
    stderr: dict
    correlation: np.ndarray
    covariance_method: str
    grad: np.ndarray
    method: str
    n_residuals: int
    _problem: Any = field(repr=False, default=None)

    def __repr__(self) -> str:
        head = (f"FitResult(cost={self.cost:.6g}, success={self.success}, method={self.method!r}, "
                f"nfev={self.nfev}, n_failed_solves={self.n_failed_solves}, starts={len(self.starts)})")
        rows = [head]
        for name, v in zip(self.names, self.x):
            rows.append(f"  {name:>12} = {v: .6g} +- {self.stderr[name]:.3g}")
        return "\n".join(rows)

    # --- profile likelihood ----------------------------------------------------

    def profile(self, name, n_points=21, width=4.0, values=None) -> Profile:
        """Profile likelihood of ``name``: refit the others on a grid of its values.

        Parameters
        ----------
        name : str, one of ``names``
        n_points : int
            Grid size when ``values`` is not given.
        width : float
            The grid spans ``+- width`` standard errors around the estimate
            (in log space for log-space entries; clipped to the bounds).
        values : array_like, optional
            The grid itself (natural units).

        Returns
        -------
        Profile
        """
        prob = self._problem
        if name not in self.names:
            raise ValueError(f"`name` must be one of the fitted quantities {self.names}; got {name!r}")
        i = self.names.index(name)
        values = self._profile_grid(i, n_points, width) if values is None else \
            np.sort(np.asarray(values, dtype=float))
        theta_best = prob.to_theta(self.x)
        costs = np.full(values.size, np.inf)
        success = np.zeros(values.size, dtype=bool)
        others = [None] * values.size
        # walk outward from the estimate, each point warm-started from its neighbour
        centre = int(np.searchsorted(values, self.x[i]))
        for order in (range(centre, values.size), range(centre - 1, -1, -1)):
            warm = np.delete(theta_best, i)
            for j in order:
                sub = prob.fixing(i, float(values[j]))
                lo, hi = sub.theta_bounds
                r = run_start(sub, np.clip(warm, lo, hi), j)
                costs[j], success[j], others[j] = r.cost, r.success, dict(zip(sub.names, r.x))
                if np.isfinite(r.cost):
                    warm = sub.to_theta(r.x)
        delta = costs - self.cost
        return Profile(name, values, costs, delta, success, others, PROFILE_THRESHOLD_95,
                       _crossings(values, delta, PROFILE_THRESHOLD_95, self.x[i]))

    def _profile_grid(self, i, n_points, width):
        prob = self._problem
        se = self.stderr[self.names[i]]
        v = self.x[i]
        log = bool(prob.is_log[i])
        if not np.isfinite(se) or se <= 0:
            se = 0.1 * (abs(v) if v != 0 else 1.0)  # no usable stderr: +-10% per unit of width
        if log:
            half = width * se / v
            grid = np.exp(np.linspace(np.log(v) - half, np.log(v) + half, n_points))
        else:
            grid = np.linspace(v - width * se, v + width * se, n_points)
        grid = np.clip(grid, prob.lb[i], prob.ub[i])
        grid = np.unique(np.append(grid, v))
        return grid[grid > 0] if log else grid

    # --- plots --------------------------------------------------------------------

    def plot(self, n_points=200, axes=None):
        """Data (error bars: sigma) and fitted observables, one panel per experiment
        and observable (matplotlib).  Returns the figure."""
        import matplotlib.pyplot as plt

        from .. import solve

        prob = self._problem
        panels = [(k, term) for k, exp in enumerate(prob.experiments) for term in _terms(exp.cost)]
        n_cols = max(term.n_observables for _, term in panels)
        if axes is None:
            fig, axes = plt.subplots(len(panels), n_cols, figsize=(4 * n_cols, 3 * len(panels)),
                                     squeeze=False)
        else:
            axes = np.atleast_2d(axes)
            fig = axes.flat[0].figure
        p = prob.params_full(self.x)
        for row, (k, term) in enumerate(panels):
            exp = prob.experiments[k]
            pk, y0, _ = prob.experiment_inputs(k, self.x, p)
            t = np.linspace(exp.t_span[0], exp.t_span[1], n_points)
            opts = {k: v for k, v in prob.solve_options.items()
                    if k in ("method", "rtol", "atol", "max_steps", "max_step")}
            sol = solve(prob.model, y0, exp.t_span, pk, t_eval=t, **opts)
            h = _observables(prob.model, term, sol.t, sol.y, pk)
            for j in range(term.n_observables):
                ax = axes[row, j]
                ax.plot(sol.t, h[:, j], "-", label="fit")
                obs = term.observed[:, j]
                ax.errorbar(term.t_obs[obs], term.y_obs[obs, j], yerr=term.sigma[j], fmt="o", ms=3,
                            label="data")
                label = str(term.resolved(prob.model)[j])
                ax.set_title(label if len(prob.experiments) == 1 else f"experiment {k}: {label}")
                ax.set_xlabel(str(prob.model.t))
        axes[0, 0].legend()
        fig.tight_layout()
        return fig

    def waterfall(self, ax=None):
        """Final costs of every start, sorted (matplotlib); failed starts are left out."""
        import matplotlib.pyplot as plt

        ax = ax or plt.figure().gca()
        costs = np.sort([s.cost for s in self.starts if np.isfinite(s.cost)])
        ax.semilogy(np.arange(1, costs.size + 1), costs - costs[0] + 1e-12 * max(1.0, abs(costs[0])), "o-")
        ax.set_xlabel("start (sorted by final cost)")
        ax.set_ylabel("cost - best cost")
        return ax


def _terms(cost):
    from ..cost import LeastSquares

    return (cost,) if isinstance(cost, LeastSquares) else cost.data


def _observables(model, term, t, y, p):
    import sympy as sp

    exprs = term.resolved(model)
    f = sp.lambdify([model.t, *model.states, *model.params], list(exprs), modules="numpy")
    cols = f(t, *y.T, *p)
    return np.column_stack([np.broadcast_to(np.asarray(c, dtype=float), t.shape) for c in cols])


def _crossings(values, delta, threshold, centre):
    """Where ``delta`` crosses ``threshold`` on each side of ``centre`` (None if it does not)."""
    ends = []
    for side in (-1, 1):
        idx = np.flatnonzero(values < centre)[::-1] if side < 0 else np.flatnonzero(values > centre)
        end, prev = None, None
        for j in idx:
            if delta[j] > threshold:
                if prev is None:
                    end = values[j]
                else:
                    a, b = delta[prev], delta[j]
                    end = values[prev] + (threshold - a) / (b - a) * (values[j] - values[prev])
                break
            prev = j
        ends.append(None if end is None else float(end))
    return tuple(ends)


# --- uncertainty ----------------------------------------------------------------------


def uncertainty(problem, theta, scale_covariance=True, hess_inv=None):
    """Covariance (natural units), its method, and the gradient at ``theta``.

    Least squares: Gauss--Newton ``(J^T J)^-1 s^2`` with ``s^2 = sum r^2 / (m - n)``
    (``s^2 = 1`` when ``scale_covariance`` is False: sigma known).  A scalar cost:
    the inverse of the Hessian from central differences of the exact gradient
    (``H^-1``: the covariance when the cost is a negative log-likelihood); where a
    solve fails at a difference point, L-BFGS-B's own inverse Hessian ``hess_inv``
    (a low-rank update: rough), and ``method`` says so.
    """
    obj = Objective(problem)
    ev = obj.evaluate(theta)
    n = problem.n_free
    if ev is None:
        return np.full((n, n), np.inf), "unavailable: the solve failed at the estimate", np.full(n, np.nan)
    T = problem.dv_dtheta(theta)
    grad = ev.grad / T
    if problem.least_squares:
        J = ev.jacobian
        m = J.shape[0]
        cov_theta = _inverse(J.T @ J)
        s2 = 2 * ev.value / (m - n) if (scale_covariance and m > n) else 1.0
        if scale_covariance and m <= n:
            s2 = np.inf
        method = "Gauss-Newton (J^T J)^-1 s^2" if scale_covariance else "Gauss-Newton (J^T J)^-1"
        cov_theta = cov_theta * s2
    else:
        H = _fd_hessian(obj, theta)
        if H is not None:
            cov_theta = _inverse(H)
            method = "inverse Hessian (central differences of the exact gradient)"
        elif hess_inv is not None:
            cov_theta = np.asarray(hess_inv, dtype=float)
            method = "L-BFGS-B's inverse Hessian approximation (rough: a solve failed near the estimate)"
        else:
            cov_theta = np.full((n, n), np.inf)
            method = "unavailable: a solve failed near the estimate"
    return cov_theta * np.outer(T, T), method, grad


def _inverse(A):
    """Inverse of a symmetric positive semi-definite matrix; all ``inf`` when singular."""
    n = A.shape[0]
    w = np.linalg.eigvalsh(A)
    if w.size == 0 or w[0] <= max(w[-1], 0.0) * n * 1e3 * np.finfo(float).eps:
        return np.full((n, n), np.inf)
    return np.linalg.inv(A)


def _fd_hessian(obj, theta, step=1e-5):
    n = theta.size
    H = np.empty((n, n))
    for j in range(n):
        h = step * max(abs(theta[j]), 1.0)
        gs = []
        for sgn in (1.0, -1.0):
            th = theta.copy()
            th[j] += sgn * h
            ev = obj.evaluate(th)
            if ev is None:
                return None
            gs.append(ev.grad)
        H[:, j] = (gs[0] - gs[1]) / (2 * h)
    return 0.5 * (H + H.T)


def correlation(cov):
    se = np.sqrt(np.diag(cov))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = cov / np.outer(se, se)
    return np.where(np.isfinite(c), c, np.nan) if np.all(np.isfinite(se)) else np.full_like(cov, np.nan)
