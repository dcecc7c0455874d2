"""``sensitivity="fd"``: central finite differences (a reference, not a tool).

``dJ/dtheta_k ~ (J(theta + h_k e_k) - J(theta - h_k e_k)) / (2 h_k)`` with
``h_k = step * max(|theta_k|, 1)`` and ``step = 1e-6`` by default (option
``fd_step``): with solves at relative tolerance ``rtol`` the error is about
``h^2 |J'''| + rtol |J| / h``; use tight tolerances (``rtol <= 1e-10``).
Costs ``2 (n_p + n)`` solves, and ``2 n_grid n_controls`` more for the
control grid values (``grad_controls``; step ``step * max(|W_kj|, 1)``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import common


def cost_value(prob) -> float:
    """``J`` from one forward solve with the running cost as a quadrature."""
    from .discrete import quadrature_forward

    raw, H = quadrature_forward(prob, dense=-1)
    phi, _, _ = common.terminal(prob, raw.zs[-1][:prob.n])
    return phi + raw.zs[-1][prob.n] + common.misfit(prob, H)


def run(prob) -> common.GradResult:
    step = float(prob.options.get("fd_step", 1e-6))
    value = cost_value(prob)
    theta = np.concatenate([prob.p, prob.y0])
    grad = np.empty_like(theta)
    for k in range(theta.size):
        h = step * max(abs(theta[k]), 1.0)
        vals = []
        for sgn in (1.0, -1.0):
            th = theta.copy()
            th[k] += sgn * h
            shifted = dataclasses.replace(prob, p=np.ascontiguousarray(th[:prob.n_p]),
                                          y0=np.ascontiguousarray(th[prob.n_p:]))
            vals.append(cost_value(shifted))
        grad[k] = (vals[0] - vals[1]) / (2 * h)
    g_w = None
    if prob.controls is not None:
        from ..controls import Controls

        W0 = np.array(prob.controls.values)
        g_w = np.empty_like(W0)
        for k, j in np.ndindex(*W0.shape):
            h = step * max(abs(W0[k, j]), 1.0)
            vals = []
            for sgn in (1.0, -1.0):
                W = W0.copy()
                W[k, j] += sgn * h
                ctrl = Controls(prob.controls.t, W)
                vals.append(cost_value(dataclasses.replace(prob, controls=ctrl, W=W)))
            g_w[k, j] = (vals[0] - vals[1]) / (2 * h)
    n_solves = 1 + 2 * theta.size + (0 if g_w is None else 2 * g_w.size)
    stats = {"solves": n_solves, "fd_step": step}
    return common.GradResult(value, grad[:prob.n_p], grad[prob.n_p:], g_w, stats)
