"""Optimal control: ``sciode.optimal_control``, controls that minimize a cost.

Pure Python over ``sciode.value_and_grad`` and ``sciode.solve`` (outside the
Numba cache hash): ``problem`` validates the arguments, ``direct`` runs
L-BFGS-B on the adjoint gradient, ``sweep`` the forward-backward sweep on the
optimality system, ``hamiltonian`` turns ``H = L + lambda . f`` into numeric
functions on the grid, ``trajectory`` evaluates states and costates there,
``result`` holds the answer.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SolverError
from . import direct, sweep
from .hamiltonian import control_gradient, projected_residual, sweep_rule
from .problem import build
from .result import OptimalControlResult
from .trajectory import trajectories

__all__ = ["OptimalControlResult", "optimal_control"]

#: Defaults of ``tol`` and ``max_iter`` per method (see ``optimal_control``).
_DEFAULTS = {"lbfgs": (1e-7, 1000), "sweep": (1e-8, 500)}


def optimal_control(model, cost, y0, t_span, controls0, bounds=None, params=None, fit_params=False,
                    method="lbfgs", *, param_bounds=None, ode_method="dopri5", rtol=1e-8,
                    atol=1e-10, max_steps=100_000, max_iter=None, tol=None,
                    relaxation=0.5) -> OptimalControlResult:
    """Controls ``w(t)`` (and optionally parameters) that minimize a cost.

    Minimizes ``J = Phi(y(t1), p) + int_{t0}^{t1} L(t, y, p, w) dt + sum_i ell_i``
    subject to ``y' = f(t, y, p, w(t))``, ``y(t0) = y0``, over piecewise-linear
    controls ``w`` on the grid of ``controls0`` with ``lo <= w <= hi``.  With
    ``H = L + lambda . f`` and the costate ``lambda' = -dH/dy``,
    ``lambda(t1) = dPhi/dy`` (jumps at observations), Pontryagin's minimum
    principle asks ``w(t) = argmin_{lo <= w <= hi} H``; for a smooth interior
    optimum, ``dH/dw = 0``.

    Parameters
    ----------
    model : Model
        Must declare controls.
    cost : Cost or LeastSquares
        The running cost may depend on the controls.
    y0 : initial state (numbers, or SymPy expressions of the params)
    t_span : (t0, t1) with ``t0 < t1``
    controls0 : Controls
        Start values; its grid (from ``t0`` to ``t1``, at least 2 points) is the
        optimization grid.  The answer is piecewise linear on it, so a smooth
        optimum is approximated to ``O(h^2)`` in the grid spacing ``h``.
    bounds : None, ``(lo, hi)``, a sequence of one ``(lo, hi)`` per control, or a
        mapping control (symbol or name) -> ``(lo, hi)``
        Box constraints on the control values, the same at every grid time.  A
        pair of numbers applies to every control; ``None`` or ``+-inf`` for a
        side means no bound.  ``controls0`` must lie within them.
    params : sequence ordered as ``model.params``, or mapping
        Parameter values (start values of the fitted ones).
    fit_params : bool or sequence of parameter names
        Also minimize over all (True) or the named parameters (``"lbfgs"``
        only), within ``param_bounds`` (mapping name -> ``(lo, hi)``).
    method : ``"lbfgs"`` or ``"sweep"``
        ``"lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B")`` on the grid
        values, with the adjoint gradient ``dJ/dw_k = int dH/dw phi_k dt``
        (``value_and_grad(..., sensitivity="adjoint").grad_controls``).
        ``"sweep"``: the forward-backward sweep of Lenhart & Workman (2007):
        state forward, costate backward, ``w`` from ``dH/dw = 0`` solved
        symbolically (``sympy.solve``) and clipped to the bounds, or bang-bang
        (``lo`` where ``dH/dw > 0``, ``hi`` where ``< 0``) for a control in which
        ``H`` is linear; relaxed, ``w <- (1 - relaxation) w + relaxation w_new``.
    ode_method, rtol, atol, max_steps : as ``sciode.value_and_grad``
        Tight defaults: the optimizer needs gradients well above solver noise.
    tol : float
        ``"lbfgs"``: L-BFGS-B's projected-gradient tolerance on the
        mass-normalized gradient ``(dJ/dw_k) / int phi_k dt``, which
        approximates ``dH/dw(t_k)`` (default 1e-7).  ``"sweep"``: the relative
        change of controls, states and costates between sweeps (default 1e-8).
    max_iter : int
        L-BFGS-B iterations (default 1000) or sweeps (default 500).
    relaxation : float in (0, 1]
        The sweep's relaxation ``a``.

    Returns
    -------
    OptimalControlResult
        ``controls``, ``cost``, ``t``, ``y`` and ``costate`` (n_grid, n_states),
        ``dH_dw_residual`` (n_grid, n_controls), ``success``, ``message``, ``nit``,
        ``params``.  The costate is ``lambda(t_k) = dJ_k/dy(t_k)``, with ``J_k``
        the cost of the tail problem on ``[t_k, t1]`` from ``y(t_k)``.

    Raises
    ------
    ModelError
        A model without controls; ``controls0`` not a ``Controls``, with the
        wrong number of controls, or a grid that does not span ``t_span``.
    ValueError
        An unknown ``method``; malformed ``bounds``; ``controls0`` outside the
        bounds; ``fit_params`` with the sweep; for the sweep, ``dH/dw = 0``
        that cannot be solved explicitly for ``w`` (no or several solutions),
        or a control in which ``H`` is linear without finite bounds.
    SolverError
        When the solve fails at ``controls0``.  A later failure is a rejected
        L-BFGS-B trial point, or ends the sweep with ``success=False``.

    References
    ----------
    Pontryagin et al., *The Mathematical Theory of Optimal Processes* (1962).
    Lenhart & Workman, *Optimal Control Applied to Biological Models* (2007), ch. 4.
    Nocedal & Wright, *Numerical Optimization* (2006), ch. 7 (L-BFGS-B).
    """
    tol, max_iter = _iteration_options(method, tol, max_iter, relaxation)
    prob = build(model, cost, y0, t_span, controls0, bounds, params, fit_params, param_bounds,
                 method, {"method": ode_method, "rtol": rtol, "atol": atol, "max_steps": max_steps})
    dHdw = control_gradient(prob.model, prob.cost)
    if method == "sweep":
        rule = sweep_rule(prob.model, prob.cost, prob.lo, prob.hi)
        W, value, Y, Lam, success, message, nit = sweep.run(prob, rule, tol, max_iter, relaxation)
        p, nfev, n_failed = prob.p0, nit, 0
        bad = rule.not_minimum(prob.grid, Y, Lam, p, W)
        if bad is not None:
            success = False
            message += (f"; but d2H/dw2 is not positive definite at t = {prob.grid[bad]!r}: "
                        "dH/dw = 0 is not a minimum of H there")
    else:
        W, p, success, message, nit, nfev, n_failed = direct.run(prob, tol, max_iter)
        try:
            value, Y, Lam = trajectories(prob, W, p)
        except SolverError as exc:
            value, Y = math.nan, np.full((prob.n_grid, prob.model.n_states), np.nan)
            Lam, success = Y.copy(), False
            message += f"; the solve failed at the optimum: {exc}"
    residual = projected_residual(dHdw(prob.grid, Y, Lam, p, W), W, prob.lo, prob.hi)
    return OptimalControlResult(prob.controls(W), float(value), prob.grid.copy(), Y, Lam, residual,
                                bool(success), message, int(nit), method, prob.param_dict(p),
                                int(nfev), int(n_failed))


def _iteration_options(method, tol, max_iter, relaxation):
    default_tol, default_iter = _DEFAULTS.get(method, (1e-7, 1000))
    tol = default_tol if tol is None else float(tol)
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"`tol` must be positive and finite, got {tol!r}")
    max_iter = default_iter if max_iter is None else max_iter
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"`max_iter` must be a positive integer, got {max_iter!r}")
    relaxation = float(relaxation)
    if not 0 < relaxation <= 1:
        raise ValueError(f"`relaxation` must lie in (0, 1], got {relaxation!r}")
    return tol, int(max_iter)
