"""The residual Jacobian of a least-squares fit by the adjoint, one row at a time.

For residuals ``r_k = w_k (h_j(t_i, y(t_i), p) - y_obs)`` the row
``dr_k/d[p, y0]`` is the gradient of a functional of ``y(t_i)`` alone: the
costate ``lambda`` started by the jump ``w_k (dh_j/dy)^T`` at ``t_i`` and swept
back to ``t0`` gives ``dr_k/dy0 = lambda(t0)`` and ``dr_k/dp = mu(t0) +
w_k dh_j/dp``.  One forward and one backward solve per row, against one
forward solve of ``n (1 + n_p + n)`` entries for forward sensitivities: the
rows pay when parameters outnumber residuals.  The rows are the members of
one ensemble costate call (``sciode.ensemble.runner.costate``), on all cores.
"""

from __future__ import annotations

import numpy as np

from ..adjoint import common
from ..cpu import solvers
from ..cpu.bundles import make_loop
from ..cpu.status import SUCCESS, message
from ..ensemble import runner
from ..errors import SolverError


def residuals_and_jacobian(model, cost, y0, t_span, params, method="dopri5", rtol=1e-8,
                           atol=1e-10, max_steps=100_000, **options):
    """``(value, r, J)`` with ``J = dr/d[p, y0]`` (columns: params, then states),
    rows as ``value_and_grad(..., sensitivity="forward").extra["residual_jacobian"]``.

    Raises ``SolverError`` when a pass fails and ``ValueError`` for what the
    adjoint rows do not support (controls, stiff methods, a running or
    terminal cost besides the data).
    """
    prob = common.prepare(model, cost, y0, t_span, params, method, rtol, atol, None, max_steps,
                          options)
    if prob.controls is not None or model.n_controls:
        raise ValueError("adjoint residual rows do not support controls yet; "
                         "use sensitivity='forward'")
    if prob.cost.terminal != 0 or prob.cost.running != 0:
        raise ValueError("adjoint residual rows need a cost of data terms only")
    spec = common.explicit_tableau(prob, "adjoint (residual rows)")
    loop = make_loop(solvers.rk_method(spec), prob.rtol, prob.atol,
                     hmax=float(options.get("max_step", np.inf)), dt=common.fixed_step(prob),
                     max_steps=prob.max_steps)
    t0, t1 = prob.t0, prob.t1
    # the output grid: t0 first, then each distinct observation time
    times = np.unique(prob.t_rows)
    times = times[times != t0]
    if t1 < t0:
        times = times[::-1]
    t_all = np.ascontiguousarray(np.concatenate([[t0], times]))
    row_at = np.searchsorted(t_all, prob.t_rows) if t1 >= t0 else \
        t_all.size - 1 - np.searchsorted(t_all[::-1], prob.t_rows)
    P1, Z1 = prob.p[None, :].copy(), prob.y0[None, :].copy()
    Y, status, t_reached, _ = runner.forward(prob.mk, P1, Z1, t0, t_all[-1], t_all, loop)
    if status[0] != SUCCESS:
        raise SolverError(f"forward pass failed ({prob.method}): "
                          + message(int(status[0]), float(t_reached[0]), prob.max_steps))
    Y_rows = np.ascontiguousarray(Y[0, row_at])
    H, _, _ = common.observation_jumps(prob, Y_rows)
    DY, DP = common.observation_jacobians(prob, Y_rows)
    rows, cols = np.nonzero(prob.Wt > 0)
    w = np.sqrt(prob.Wt[rows, cols])
    r = (H - prob.Yobs)[rows, cols] * w
    m, n, n_p = rows.size, prob.n, prob.n_p
    G = np.zeros((m, t_all.size, n))
    G[np.arange(m), row_at[rows]] = DY[rows, cols] * w[:, None]
    Z, st, _, _ = runner.costate(prob.mk, prob.ck, np.repeat(P1, m, axis=0),
                              np.repeat(Z1, m, axis=0), t_all, G, loop, loop)
    if np.any(st != SUCCESS):
        raise SolverError(f"adjoint residual rows: a backward pass failed ({prob.method})")
    J = np.empty((m, n_p + n))
    J[:, :n_p] = Z[:, n:] + DP[rows, cols] * w[:, None]
    J[:, n_p:] = Z[:, :n]
    return 0.5 * float(r @ r), r, J
