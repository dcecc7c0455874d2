"""``method="sweep"``: the forward-backward sweep on the optimality system.

Lenhart & Workman, *Optimal Control Applied to Biological Models* (2007),
ch. 4: from controls ``w``, solve the state forward and the costate
backward, set ``w_new`` from ``dH/dw = 0`` at each grid time (``SweepRule``:
the explicit solution clipped to the bounds, or a bound by the sign of the
switching function when ``H`` is linear in ``w``), and relax,
``w <- (1 - a) w + a w_new``.  Converged when the relative change of the
controls, states and costates (their 1-norms over the grid, as in Lenhart &
Workman's test ``delta |u| - |u - u_old| >= 0``) is at most ``tol``.

The sweep is a fixed-point iteration: it converges when the map ``w ->
w_new`` contracts after relaxation (short horizons, weak coupling); lower
the relaxation ``a`` when it does not, or use ``method="lbfgs"``.
"""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from .trajectory import trajectories

#: Sweeps over which the relative change must decrease (else the sweep stops).
_PATIENCE = 10


def _relative_change(new: np.ndarray, old: np.ndarray | None) -> float:
    if old is None:
        return np.inf
    size = float(np.sum(np.abs(new)))
    diff = float(np.sum(np.abs(new - old)))
    return diff / size if size > 0 else diff


def _snap_bang_bang(prob, rule, W, W_new, current):
    """Bang-bang controls onto their bounds, with the trajectories to match.

    Relaxation approaches a bound geometrically and never reaches it; at
    convergence the bang-bang values are within ``tol`` of the unrelaxed
    update, which is exact on the bounds (and is what the answer should show).
    """
    if not rule.bang:
        return current
    b = list(rule.bang)
    snapped = W.copy()
    snapped[:, b] = W_new[:, b]
    if np.array_equal(snapped, W):
        return current
    try:
        return (snapped, *trajectories(prob, snapped, prob.p0))
    except SolverError:  # keep the converged iterate, which did solve
        return current


def run(prob, rule, tol: float, max_iter: int, relaxation: float):
    """Sweep; returns ``(W, value, Y, Lam, success, message, nit)`` with ``Y``
    and ``Lam`` the trajectories of the returned controls ``W``.

    Raises
    ------
    SolverError
        When the solve fails for ``controls0`` (a later failure ends the
        sweep with ``success=False`` at the last iterate that solved).
    """
    t, p, lo, hi = prob.grid, prob.p0, prob.lo, prob.hi
    W, last, history = prob.w0.copy(), None, []
    for it in range(1, int(max_iter) + 1):
        try:
            value, Y, Lam = trajectories(prob, W, p)
        except SolverError as exc:
            if last is None:
                raise SolverError(f"optimal_control: the solve fails at `controls0`: {exc}") from None
            return (*last[:4], False, f"stopped at iteration {it}: the solve failed ({exc})", it - 1)
        change = (max(_relative_change(Y, last[2]), _relative_change(Lam, last[3]))
                  if last is not None else np.inf)
        W_new = rule.update(t, Y, Lam, p, W, lo, hi)
        if not np.all(np.isfinite(W_new)):
            return (W, value, Y, Lam, False,
                    f"iteration {it}: the update dH/dw = 0 gave non-finite controls", it)
        W_next = (1.0 - relaxation) * W + relaxation * W_new
        change = max(change, _relative_change(W_next, W))
        last = (W, value, Y, Lam)
        if change <= tol:
            W, value, Y, Lam = _snap_bang_bang(prob, rule, W, W_new, (W, value, Y, Lam))
            return (W, value, Y, Lam, True,
                    f"converged: relative change {change:.3g} <= tol = {tol:g}", it)
        history.append(change)
        if len(history) > _PATIENCE and history[-1] >= history[-1 - _PATIENCE]:
            # A contracting sweep shrinks the change geometrically; a divergent one
            # grows it by a constant factor per sweep (and soon overflows the solver).
            return (W, value, Y, Lam, False,
                    (f"the sweep does not contract: relative change {history[-1]:.3g} at iteration "
                    f"{it}, {history[-1 - _PATIENCE]:.3g} {_PATIENCE} iterations earlier; lower "
                    f"`relaxation` (now {relaxation}) or use method='lbfgs'"), it)
        W = W_next
    return (*last, False, (f"no convergence in {max_iter} iterations (relative change {change:.3g} > "
            f"tol = {tol:g}); lower `relaxation` (now {relaxation}) or use method='lbfgs'"), int(max_iter))
