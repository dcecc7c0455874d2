"""State and costate on the control grid, by their definitions.

The costate at a grid time ``t_k`` is the gradient of the cost-to-go,

    lambda(t_k) = dJ_k / dy(t_k),
    J_k = Phi(y(t1)) + int_{t_k}^{t1} L dt + sum_{t_i >= t_k} ell_i,

the cost of the tail problem on ``[t_k, t1]`` started from ``y(t_k)`` with
the same controls (Pontryagin's costate is this sensitivity of the value of
the tail).  Each is one ``value_and_grad`` call (``grad_y0``), so the costate
is exact to the solver tolerance and needs no interpolation of a backward
solution.  At an observation time ``t_k`` the tail includes that observation:
the costate is the left limit, after the jump ``(dh/dy)^T r``.
"""

from __future__ import annotations

import numpy as np

from ..api import solve
from ..cost import Cost, LeastSquares


def states(prob, controls, p) -> np.ndarray:
    """``y`` at the grid times, (n_grid, n_states); ``SolverError`` on failure."""
    sol = solve(prob.model, prob.numeric_y0(p), (prob.t0, prob.t1), p, t_eval=prob.grid,
                controls=controls, raise_on_failure=True, **prob.solver)
    return np.array(sol.y)


def tail_cost(cost: Cost, t_k: float) -> Cost:
    """``cost`` restricted to ``[t_k, t1]``.

    The running and terminal terms restrict themselves through the span;
    observations before ``t_k`` become unobserved rows at ``t_k`` (NaN data
    weigh nothing), which keeps each term's shape, so the generated cost
    kernels are the same for every ``t_k`` and nothing recompiles.
    """
    if not cost.data or all(term.t_obs[0] >= t_k for term in cost.data):
        return cost
    data = []
    for term in cost.data:
        early = term.t_obs < t_k
        y_obs = np.array(term.y_obs)
        y_obs[early] = np.nan
        data.append(LeastSquares(np.where(early, t_k, term.t_obs), y_obs, term.observables, term.sigma))
    return Cost(terminal=cost.terminal, running=cost.running, data=data)


def trajectories(prob, W, p):
    """Cost, states and costates on the grid at controls ``W`` and params ``p``.

    Returns
    -------
    value : float
        ``J``, the cost of the whole problem (the tail at ``t_0``).
    Y, Lam : numpy.ndarray, (n_grid, n_states)
        ``y(t_k)`` and ``lambda(t_k)`` (module docstring).

    Raises
    ------
    SolverError
        When a forward solve or a tail gradient fails.
    """
    controls = prob.controls(W)
    Y = states(prob, controls, p)
    Lam = np.empty_like(Y)
    value = np.nan
    for k, t_k in enumerate(prob.grid):
        # Controls on the whole grid serve every tail: the loop reads w(t) for
        # t in [t_k, t1] only, which is the same piecewise-linear function.
        res = prob.value_and_grad(controls, p, cost=tail_cost(prob.cost, t_k), y0=Y[k],
                                  t_span=(float(t_k), prob.t1))
        Lam[k] = res.grad_y0
        if k == 0:
            value = res.value
    return float(value), Y, Lam
