"""The objective of a fit in the optimizer's space: residuals, Jacobian, value, gradient.

One ``Objective`` per start.  It solves every experiment with
``sciode.value_and_grad`` (or, for least squares with ``sensitivity="adjoint"``,
``adjoint_rows``) and maps the sensitivities to the free entries by the
chain rule:

* ``y0 = y0(p)`` (SymPy expressions of the parameters) is evaluated here and
  passed to the solves as numbers, so ``dr/dp += dr/dy0 . dy0/dp`` (and the
  same for the gradient) is applied here;
* a parameter overridden in an experiment (``conditions``) does not move
  that experiment;
* log-space entries: ``d/dtheta = v d/dv``.

A solve that fails (``SolverError``, or a non-finite residual) is a rejected
point: ``evaluate`` returns None and counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..adjoint import value_and_grad
from ..errors import SolverError
from .adjoint_rows import residuals_and_jacobian


@dataclass
class Evaluation:
    """The objective at one point (``theta`` space)."""

    value: float
    residuals: np.ndarray | None  # (n_residuals,), least-squares problems only
    jacobian: np.ndarray | None   # (n_residuals, n_free)
    grad: np.ndarray | None       # (n_free,)


class Objective:
    """Evaluations of a ``FitProblem`` with a one-point memo and failure counts.

    ``least_squares`` fetches residuals and Jacobian together (one forward
    sensitivity solve per experiment); SciPy asks for them in two calls at
    the same point, so the last evaluation is kept.
    """

    def __init__(self, problem):
        self.problem = problem
        self.n_failed = 0
        self.n_solves = 0
        self._memo = (None, None)

    def evaluate(self, theta) -> Evaluation | None:
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        if self._memo[0] == key:
            return self._memo[1]
        ev = self._evaluate(theta)
        if ev is None:
            self.n_failed += 1
        self._memo = (key, ev)
        return ev

    def _evaluate(self, theta):
        prob = self.problem
        v = prob.to_natural(theta)
        p = prob.params_full(v)
        n_p = prob.model.n_params
        value = 0.0
        rs, Js = [], []
        grad = np.zeros(prob.n_free)
        opts = prob.solve_options
        sens = "forward" if prob.least_squares else prob.sensitivity
        rows = prob.least_squares and prob.sensitivity == "adjoint"
        for k, exp in enumerate(prob.experiments):
            pk, y0, D = prob.experiment_inputs(k, v, p)
            self.n_solves += 1
            try:
                if rows:
                    val, r, J = residuals_and_jacobian(prob.model, exp.cost, y0, exp.t_span, pk,
                                                       **opts)
                else:
                    res = value_and_grad(prob.model, exp.cost, y0, exp.t_span, pk, sensitivity=sens,
                                         **opts)
                    val = res.value
            except SolverError:
                return None
            if not np.isfinite(val):
                return None
            value += val
            if prob.least_squares:
                if not rows:
                    r = res.extra["residuals"]
                    J = res.extra["residual_jacobian"]
                if not (np.all(np.isfinite(r)) and np.all(np.isfinite(J))):
                    return None
                rs.append(r)
                Js.append(self._free_columns(k, J[:, :n_p], J[:, n_p:], D))
            else:
                g = self._free_columns(k, res.grad_params[None, :], res.grad_y0[None, :], D)[0]
                if not np.all(np.isfinite(g)):
                    return None
                grad += g
        scale = prob.dv_dtheta(theta)
        if prob.least_squares:
            J = np.concatenate(Js) * scale
            r = np.concatenate(rs)
            return Evaluation(0.5 * float(r @ r), r, J, J.T @ r)
        return Evaluation(float(value), None, None, grad * scale)

    def _free_columns(self, k, Jp, Jy, D):
        """``d(out)/d(free)`` from ``d(out)/dp`` and ``d(out)/dy0`` of experiment ``k``
        (natural units)."""
        prob = self.problem
        exp = prob.experiments[k]
        if D is not None:  # y0 = y0(p), passed to value_and_grad as numbers: the chain rule here
            Jp = Jp + Jy @ D
        if exp.overrides:
            Jp = Jp.copy()
            Jp[:, list(exp.overrides)] = 0.0
        out = np.zeros((Jp.shape[0], prob.n_free))
        for i, kind in enumerate(prob.kinds):
            if kind[0] == "param":
                out[:, i] = Jp[:, kind[1]]
            elif kind[1] == k:
                out[:, i] = Jy[:, kind[2]]
        return out
