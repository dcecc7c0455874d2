"""``OptimalControlResult``: the optimal controls and the optimality system on the grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..controls import Controls


@dataclass
class OptimalControlResult:
    """The result of ``sciode.optimal_control``.

    Attributes
    ----------
    controls : Controls
        The optimized piecewise-linear controls, on the grid of ``controls0``.
    cost : float
        ``J`` at ``controls`` (and ``params``).
    t : numpy.ndarray (n_grid,)
        The grid.
    y : numpy.ndarray (n_grid, n_states)
        The state at the grid times.
    costate : numpy.ndarray (n_grid, n_states)
        ``lambda(t_k) = dJ_k/dy(t_k)``, the gradient of the cost of the tail
        problem on ``[t_k, t1]`` (left limit at an observation time).
    dH_dw_residual : numpy.ndarray (n_grid, n_controls)
        ``|dH/dw|`` at ``(t_k, y, lambda, w)``, projected on the bounds (0
        where a control sits on a bound and ``dH/dw`` points outward).  For
        ``"lbfgs"`` it is ``O(h^2)`` where ``w*`` is smooth (the discrete
        optimum makes ``int dH/dw phi_k dt`` vanish, not ``dH/dw(t_k)``), and
        up to ``|dH/dw|`` next to a switch of a bang-bang control.
    success : bool
    message : str
    nit : int
        Iterations of L-BFGS-B or sweeps.
    method : str
    params : dict name -> float
        Every model parameter; the optimized values of the fitted ones.
    nfev : int
        Cost-and-gradient evaluations (``"lbfgs"``) or sweeps (``"sweep"``).
    n_failed_solves : int
        Trial points of L-BFGS-B whose solve failed (each a rejected step).
    """

    controls: Controls
    cost: float
    t: np.ndarray
    y: np.ndarray
    costate: np.ndarray
    dH_dw_residual: np.ndarray
    success: bool
    message: str
    nit: int
    method: str
    params: dict
    nfev: int = 0
    n_failed_solves: int = 0

    def __repr__(self) -> str:
        res = float(np.max(self.dH_dw_residual)) if self.dH_dw_residual.size else float("nan")
        head = (f"OptimalControlResult(method={self.method!r}, cost={self.cost:.10g}, "
                f"success={self.success}, nit={self.nit}, n_grid={self.t.size}, "
                f"n_controls={self.controls.n_controls}, max|dH/dw|={res:.3g})")
        lines = [head, f"  message: {self.message}"]
        if self.params:
            lines.append("  params: " + ", ".join(f"{k}={v:.6g}" for k, v in self.params.items()))
        return "\n".join(lines)
