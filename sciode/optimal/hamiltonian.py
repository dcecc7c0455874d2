"""The Hamiltonian ``H = L + lambda . f`` as numeric functions on the control grid.

``control_gradient`` evaluates ``dH/dw`` (the optimality residual) and
``sweep_rule`` solves ``dH/dw = 0`` for ``w`` once, symbolically, for the
forward-backward sweep.  Both are lambdified from ``sciode.symbolic``'s
derivation (``derive_adjoint``) and work on whole grids at once: arrays of
shape ``(n_grid, ...)``, never a Python loop over grid points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..symbolic import derive_adjoint

#: ``f(t, Y, Lam, p, W) -> (n_grid, k)``: ``t`` (n_grid,), ``Y`` and ``Lam``
#: (n_grid, n_states), ``p`` (n_params,), ``W`` (n_grid, n_controls).
GridFunction = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _grid_function(model, costates, exprs) -> GridFunction:
    args = (model.t, *model.states, *costates, *model.params, *model.controls)
    fn = sp.lambdify(args, list(exprs), modules="numpy")

    def call(t, Y, Lam, p, W):
        cols = fn(t, *Y.T, *Lam.T, *p, *W.T)
        # A constant entry (e.g. dH/du = 1) comes back as a scalar.
        return np.stack([np.broadcast_to(np.asarray(c, dtype=float), t.shape) for c in cols],
                        axis=1).reshape(t.size, len(exprs))

    return call


def control_gradient(model, cost) -> GridFunction:
    """``dH/dw = dL/dw + (df/dw)^T lambda`` on the grid, shape (n_grid, n_controls)."""
    adj = derive_adjoint(model, cost)
    return _grid_function(model, adj.costates, adj.control_gradient)


def projected_residual(dHdw: np.ndarray, W: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``|dH/dw|`` projected on the bounds, shape (n_grid, n_controls).

    At an active lower bound the first-order condition of the minimum is
    ``dH/dw >= 0`` and at an upper bound ``dH/dw <= 0`` (Pontryagin's
    minimum principle on a box); only the part of ``dH/dw`` of the wrong
    sign there is a residual.
    """
    # L-BFGS-B and clipping land exactly on a bound; the sweep's relaxation
    # (1 - a) lo + a lo may be off by a rounding error.
    slack = 1e-12 * np.maximum(1.0, np.abs(np.where(np.isfinite(lo), lo, 0.0)))
    at_lo = W <= lo + slack
    slack = 1e-12 * np.maximum(1.0, np.abs(np.where(np.isfinite(hi), hi, 0.0)))
    at_hi = W >= hi - slack
    r = np.where(at_lo, np.minimum(dHdw, 0.0), dHdw)
    r = np.where(at_hi, np.maximum(r, 0.0), r)
    return np.abs(r)


@dataclass(frozen=True)
class SweepRule:
    """The control update of the forward-backward sweep.

    ``bang`` are the controls in which ``H`` is linear (``dH/dw_j`` does not
    depend on any control): they take a bound by the sign of their switching
    function ``dH/dw_j``.  ``smooth`` are the others: ``dH/dw = 0`` solved for
    them (``solution``, which may read the ``bang`` controls), then clipped to
    the bounds; ``hessian`` is ``d^2H/dw^2`` over them, to check that the
    stationary point is a minimum.
    """

    bang: tuple
    smooth: tuple
    switching: GridFunction | None
    solution: GridFunction | None
    hessian: GridFunction | None

    def update(self, t, Y, Lam, p, W, lo, hi) -> np.ndarray:
        """New controls on the grid from the states ``Y`` and costates ``Lam``."""
        new = W.copy()
        if self.bang:
            b = list(self.bang)
            sigma = self.switching(t, Y, Lam, p, W)
            # Where the switching function is exactly 0 (a singular arc), H does
            # not depend on w_j: the value is kept.
            new[:, b] = np.where(sigma > 0, lo[b], np.where(sigma < 0, hi[b], W[:, b]))
        if self.smooth:
            s = list(self.smooth)
            new[:, s] = np.clip(self.solution(t, Y, Lam, p, new), lo[s], hi[s])
        return new

    def not_minimum(self, t, Y, Lam, p, W):
        """Index of the first grid point where ``d^2H/dw^2`` over the smooth
        controls is not positive definite, or None."""
        if not self.smooth:
            return None
        k = len(self.smooth)
        Hww = self.hessian(t, Y, Lam, p, W).reshape(t.size, k, k)
        bad = np.flatnonzero(np.linalg.eigvalsh(Hww)[:, 0] <= 0)
        return int(bad[0]) if bad.size else None


def sweep_rule(model, cost, lo, hi) -> SweepRule:
    """Solve ``dH/dw = 0`` for the controls (``sympy.solve``), see ``SweepRule``.

    Raises
    ------
    ValueError
        When a control does not enter ``H``, a control in which ``H`` is
        linear has an infinite bound, or ``dH/dw = 0`` has no unique explicit
        solution for the other controls.
    """
    adj = derive_adjoint(model, cost)
    ws, g = model.controls, adj.control_gradient
    bang, smooth = [], []
    for j, gj in enumerate(g):
        if gj == 0:
            raise ValueError(f"control `{ws[j].name}` does not enter the Hamiltonian H = L + lambda . f "
                             "(dH/dw = 0 identically): the sweep cannot determine it")
        (smooth if gj.free_symbols & set(ws) else bang).append(j)
    for j in bang:
        if not (np.isfinite(lo[j]) and np.isfinite(hi[j])):
            raise ValueError(f"H is linear in control `{ws[j].name}` (dH/d{ws[j].name} = {g[j]} does "
                             "not depend on the controls), so its minimum lies on a bound: give finite "
                             f"`bounds` for `{ws[j].name}` (bang-bang control)")
    solution = hessian = None
    if smooth:
        unknowns = [ws[j] for j in smooth]
        exprs = _solve_stationarity([g[j] for j in smooth], unknowns)
        solution = _grid_function(model, adj.costates, exprs)
        grads = sp.Matrix([g[j] for j in smooth])
        hessian = _grid_function(model, adj.costates, list(grads.jacobian(unknowns)))
    switching = _grid_function(model, adj.costates, [g[j] for j in bang]) if bang else None
    return SweepRule(tuple(bang), tuple(smooth), switching, solution, hessian)


def _solve_stationarity(equations, unknowns) -> list:
    """The unique explicit solution of ``equations = 0`` for ``unknowns``."""
    what = f"dH/dw = 0 for ({', '.join(s.name for s in unknowns)})"
    hint = "; use method='lbfgs', which needs only the gradient"
    try:
        solutions = sp.solve(equations, unknowns, dict=True)
    except (NotImplementedError, ValueError) as exc:
        raise ValueError(f"cannot solve {what} explicitly ({exc}){hint}") from None
    if len(solutions) != 1:
        raise ValueError(f"{what} has {len(solutions)} explicit solutions "
                         f"{solutions if len(solutions) < 5 else ''}, the sweep needs exactly one{hint}")
    sol = solutions[0]
    exprs = [sol.get(u) for u in unknowns]
    if any(e is None or e.free_symbols & set(unknowns) for e in exprs):
        raise ValueError(f"cannot solve {what} explicitly: sympy.solve returned {sol}{hint}")
    return exprs
