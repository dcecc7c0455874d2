"""``sensitivity="forward"``: forward sensitivity equations.

Integrates ``z = [y, S, q, dq]`` with ``S = [dy/dp, dy/dy0]`` (``n x (n_p +
n)``), ``S' = (df/dy) S + [df/dp, 0]`` (generated symbolically as one kernel),
``q' = L`` and ``dq' = (dL/dy) S + [dL/dp, 0]``.  Then

    dJ/dp  = dPhi/dp + S_p(t1)^T dPhi/dy + dq_p + sum_i (S_p(t_i)^T (dh/dy)^T r_i + (dh/dp)^T r_i)
    dJ/dy0 = S_y0(t1)^T dPhi/dy + dq_y0 + sum_i S_y0(t_i)^T (dh/dy)^T r_i

Cost grows with ``n_p + n``; the best choice for few parameters, and the
only mode that also yields the residual Jacobian a least-squares fit needs.
By default the sensitivities take part in error control
(``sens_error_control=False`` excludes them, as CVODES' ``errconS``).
"""

from __future__ import annotations

import numpy as np

from ..cpu import solvers
from ..cpu.drivers import entry
from . import common


def residual_jacobian(prob, Y_rows, H, S_rows):
    """Weighted residuals ``r = (h - y_obs) / sigma`` of the observed entries and
    their Jacobian ``dr/d[p, y0] = ((dh/dy) S + [dh/dp, 0]) / sigma`` (rows in
    time order, then observable order), for Gauss--Newton / Levenberg--Marquardt."""
    n_p = prob.n_p
    DY, DP = common.observation_jacobians(prob, Y_rows)
    Jac = np.einsum("ijn,inm->ijm", DY, S_rows)
    Jac[:, :, :n_p] += DP
    sel = prob.Wt > 0
    w = np.sqrt(prob.Wt[sel])
    return (H - prob.Yobs)[sel] * w, Jac[sel] * w[:, None]


def run(prob) -> common.GradResult:
    n, n_p = prob.n, prob.n_p
    m = n_p + n + prob.n_g  # columns: params, initial state, control grid values
    S0 = np.zeros((n, m))
    S0[:, n_p:n_p + n] = np.eye(n)
    z0 = np.concatenate([prob.y0, S0.ravel(), [0.0], np.zeros(m)])
    atol = prob.aug_atol(z0.size, n)
    atol[:n] = prob.atol
    rtol = prob.rtol
    if not prob.options.get("sens_error_control", True):
        # sensitivities out of the error test: their scaled error vanishes, and
        # both tolerances shrink by sqrt(n / size) so that the RMS over all
        # entries is the states' RMS at the user's tolerances (else the states'
        # own test would loosen by sqrt(size / n); see common.sweep_tolerances)
        scale = np.sqrt(n / z0.size)
        atol[:n] *= scale
        atol[n:] = np.inf  # (Newton's second phase skips them: cpu.newton.newton_phases)
        rtol = rtol * scale
    method = common.augmented_method(prob, "forward", exact_jacobian=False, block=(n, m))
    out = entry("sensitivity", method)(
        prob.mk.fns(method, uses=("rhs", "sens_rhs", "vjp_w")),
        prob.ck.fns(("L", "dLdy", "dLdp", "dLdw")), common.inputs(prob), n, z0, prob.t0, prob.t1,
        common.model_loop(prob, method, atol, rtol), np.ascontiguousarray(prob.t_rows, dtype=float))
    ts, zs, z_eval, st = out.ts, out.zs, out.z_eval, out.stats
    common.check_status(out.status, out.t_reached, prob, "forward (sensitivities)")
    z1 = zs[-1]
    Y_rows = np.ascontiguousarray(z_eval[:, :n])
    H, JY, JP = common.observation_jumps(prob, Y_rows)
    phi, dPhidy, dPhidp = common.terminal(prob, z1[:n])
    S1 = z1[n:n + n * m].reshape(n, m)
    q = z1[n + n * m]
    dq = z1[n + n * m + 1:]
    grad = S1.T @ dPhidy + dq
    grad[:n_p] += dPhidp
    S_rows = z_eval[:, n:n + n * m].reshape(-1, n, m)
    grad += np.einsum("ijk,ij->k", S_rows, JY)
    grad[:n_p] += JP.sum(axis=0)
    value = phi + q + common.misfit(prob, H)
    stats = {"forward": solvers.loop_stats(st), "peak_stored_floats": int(zs.size + ts.size)}
    k = n_p + n  # the [p, y0] columns; the control columns follow
    S_rows, S1 = np.ascontiguousarray(S_rows[:, :, :k]), np.ascontiguousarray(S1[:, :k])
    extra = {"S_rows": S_rows, "H_rows": H, "S_end": S1}
    if prob.t_rows.size:
        extra["residuals"], extra["residual_jacobian"] = residual_jacobian(prob, Y_rows, H, S_rows)
    return common.GradResult(value, grad[:n_p].copy(), grad[n_p:k].copy(),
                             common.control_gradient(prob, grad[k:]), stats, extra)
