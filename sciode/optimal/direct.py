"""``method="lbfgs"``: minimize ``J`` over the control grid values with L-BFGS-B.

The gradient is ``value_and_grad``'s adjoint ``grad_controls`` (exact to
tolerance for the piecewise-linear ``w(t)``), plus ``grad_params`` for fitted
parameters.

Scaling.  ``dJ/dw_k = int dH/dw phi_k dt ~ m_k dH/dw(t_k)`` with ``m_k`` the
lumped mass of hat function ``k`` (``ControlProblem.lumped_mass``), and the
Hessian in ``w`` is of the order of the mass matrix, ``O(h)``.  The optimizer
therefore sees ``z_k = (m_k / m) w_k`` and ``F = J / m``, with ``m`` the mean
spacing: then ``dF/dz_k = (dJ/dw_k) / m_k ~ dH/dw(t_k)``, the Hessian in
``z`` is ``O(1)`` and its condition does not grow as the grid is refined,
and L-BFGS-B's projected-gradient test ``max |proj dF/dz| <= tol`` reads as
"the Hamiltonian is stationary to ``tol``" on any grid.  Fitted parameters
enter unscaled (``dF/dp = (dJ/dp) / m``).
"""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from ..fit.optimize import failed_point


class _Objective:
    """``F(z)`` and its gradient; a failed solve is a rejected point (``_failed``)."""

    def __init__(self, prob):
        self.prob = prob
        self.mean_h = (prob.t1 - prob.t0) / (prob.n_grid - 1)
        self.scale = prob.lumped_mass / self.mean_h  # (n_grid,), z = scale * w
        self.n_w = prob.n_grid * prob.n_controls
        self.n_failed = 0
        self.nfev = 0
        self.last_failure = ""
        self._memo = (None, None)
        self._best = (np.inf, None)  # lowest F of a point that solved, and the point

    def pack(self, W, p) -> np.ndarray:
        return np.concatenate([(W * self.scale[:, None]).ravel(), p[self.prob.free]])

    def unpack(self, z):
        prob = self.prob
        W = z[:self.n_w].reshape(prob.n_grid, prob.n_controls) / self.scale[:, None]
        p = prob.p0.copy()
        p[prob.free] = z[self.n_w:]
        return W, p

    def bounds(self):
        prob = self.prob
        lo = np.concatenate([(prob.lo[None, :] * self.scale[:, None]).ravel(), prob.p_lo])
        hi = np.concatenate([(prob.hi[None, :] * self.scale[:, None]).ravel(), prob.p_hi])
        return lo, hi

    def __call__(self, z):
        value, grad, _ = self.evaluate(z)
        return value, grad

    def evaluate(self, z):
        """``(F, dF/dz, solved)``; memoised on the last point (SciPy evaluates
        the start point again after `run` checked it)."""
        key = np.asarray(z, dtype=float).tobytes()
        if self._memo[0] != key:
            n_failed = self.n_failed
            value, grad = self._evaluate(np.asarray(z, dtype=float))
            self._memo = (key, (value, grad, self.n_failed == n_failed))
        value, grad, solved = self._memo[1]
        return value, grad.copy(), solved

    def _evaluate(self, z):
        self.nfev += 1
        if not np.all(np.isfinite(z)):
            return self._failed("non-finite controls or parameters", z)
        W, p = self.unpack(z)
        try:
            res = self.prob.value_and_grad(self.prob.controls(W), p)
        except SolverError as exc:
            return self._failed(str(exc), z)
        gw = res.grad_controls / (self.mean_h * self.scale[:, None])
        grad = np.concatenate([gw.ravel(), res.grad_params[self.prob.free] / self.mean_h])
        if not (np.isfinite(res.value) and np.all(np.isfinite(grad))):
            return self._failed("non-finite cost or gradient", z)
        value = res.value / self.mean_h
        if value < self._best[0]:
            self._best = (value, z.copy())
        return value, grad

    def _failed(self, why, z):
        """A point whose solve failed: the smooth wall of ``fit.optimize.failed_point``."""
        self.n_failed += 1
        self.last_failure = why
        f_best, z_best = self._best
        if z_best is None:
            return np.inf, np.zeros_like(z)
        return failed_point(f_best, z_best, z)


#: Gradient reduction (from the start) accepted as convergence when L-BFGS-B stops
#: because the cost no longer decreases (the cost's rounding floor).
_RELATIVE_FLOOR = 1e-6


def _projected_max(z, g, lo, hi) -> float:
    """``max |proj g|``, L-BFGS-B's own stopping measure: components pushing
    against an active bound do not count."""
    g = np.where((z <= lo) & (g > 0) | (z >= hi) & (g < 0), 0.0, g)
    return float(np.max(np.abs(g))) if g.size else 0.0


def run(prob, tol: float, max_iter: int):
    """Optimize; returns ``(W, p, success, message, nit, nfev, n_failed)``.

    Raises
    ------
    SolverError
        When the solve fails at the start controls (there is no descent from
        a point without a value).
    """
    from scipy import optimize

    obj = _Objective(prob)
    z0 = obj.pack(prob.w0, prob.p0)
    _, g0, solved = obj.evaluate(z0)
    if not solved:
        raise SolverError(f"optimal_control: the solve fails at `controls0`: {obj.last_failure}")
    lo, hi = obj.bounds()
    # ftol = 0: stop on the gradient test (`tol`) only.  A relative-decrease test
    # stops a quadratic problem long before its gradient is small (the decrease
    # per step goes as the gradient squared).
    res = optimize.minimize(obj, z0, jac=True, method="L-BFGS-B", bounds=optimize.Bounds(lo, hi),
                            options={"maxiter": int(max_iter), "gtol": float(tol), "ftol": 0.0,
                                     "maxcor": 20, "maxfun": 50 * int(max_iter)})
    W, p = obj.unpack(res.x)
    _, g_end, solved = obj.evaluate(res.x)
    pg = _projected_max(res.x, g_end, lo, hi)
    # Converged: the gradient test, or L-BFGS-B finding no more decrease (SciPy's
    # "relative reduction" stop with ftol = 0, or a failed line search) once the
    # gradient has dropped to the cost's rounding floor, taken as a millionth of
    # where it started.  Stopping far above that floor is no convergence.
    floor = _RELATIVE_FLOOR * max(1.0, _projected_max(z0, g0, lo, hi))
    at_floor = pg <= floor and res.status in (0, 2)
    success = solved and (pg <= tol or at_floor)
    message = f"{res.message}; max projected gradient {pg:.3g}"
    if not solved:
        message += "; the solve fails at the returned point"
    elif pg > tol and at_floor:
        message += (f" > tol = {tol:g}, but below {floor:.3g} (1e-6 of the start): the cost "
                    "no longer decreases at its rounding floor; accepted as converged")
    elif not success and res.status != 1:
        message += (f" > tol = {tol:g}: L-BFGS-B stopped before converging (the gradient's "
                    "noise from the solver tolerance may exceed `tol`; tighten `rtol`/`atol`)")
    if obj.n_failed:
        message += f"; {obj.n_failed} trial point(s) failed to solve (last: {obj.last_failure})"
    return W, p, success, message, int(res.nit), obj.nfev, obj.n_failed
