"""``sensitivity="adjoint"``: the interpolating continuous adjoint.

The forward pass keeps every accepted step's stages (the method's own dense
output); the costate ``lambda' = -dH/dy`` and the quadratures ``mu' = -dH/dp``,
``q' = -L`` and ``G_k' = -phi_k dH/dw`` are integrated backward from ``t1``
with ``y(t)`` read from that interpolant, jumping by ``(dh/dy)^T r_i`` at each
observation.  Memory grows with the number of forward steps (see
``checkpoint`` for a bound); the backward pass never re-integrates the state,
so it is exact to tolerance also for chaotic or stiff problems.

References: Pontryagin et al. (1962); Chen et al., *Neural Ordinary
Differential Equations*, NeurIPS 2018; SciMLSensitivity's
``InterpolatingAdjoint``.
"""

from __future__ import annotations

import numpy as np

from ..cpu import solvers
from ..cpu.drivers import entry
from . import common


def costate_sweep(prob, method, ts, hs, zs, Ks, P, z1, t_start, t_stop, jump_t, JY, JP):
    """Run the compiled costate sweep over one stretch of stored dense output."""
    mk = prob.mk
    return entry("costate_sweep", method)(
        *common.rate_kernels(prob), mk["jac_y"], mk["jac_p"], prob.p, prob.tw, prob.W, prob.wbuf(),
        ts, hs, zs, Ks, np.ascontiguousarray(P), z1, float(t_start), float(t_stop),
        np.ascontiguousarray(jump_t), np.ascontiguousarray(JY), np.ascontiguousarray(JP),
        common.sweep_stops(prob, t_start, t_stop, jump_t),
        *common.sweep_tail(prob, method, z1.size, prob.n))


def run(prob) -> common.GradResult:
    raw = common.forward_pass(prob, prob.t_rows, dense=True)
    H, JY, JP = common.observation_jumps(prob, raw.z_eval)
    phi, dPhidy, dPhidp = common.terminal(prob, raw.zs[-1])
    n, n_p = prob.n, prob.n_p
    z1 = np.concatenate([dPhidy, dPhidp, [0.0], np.zeros(prob.n_g)])
    status, t_reached, z, st, _ = costate_sweep(
        prob, common.augmented_method(prob, "adjoint"), raw.ts, raw.hs, raw.zs, raw.Ks, raw.P, z1, prob.t1, prob.t0,
        prob.t_rows[::-1], JY[::-1], JP[::-1])
    common.check_status(status, t_reached, prob, "backward (costate)")
    value = phi + z[n + n_p] + common.misfit(prob, H)
    stored = raw.ts.size + raw.hs.size + raw.zs.size + raw.Ks.size
    stats = {"forward": dict(raw.stats), "backward": solvers.loop_stats(st), "peak_stored_floats": int(stored)}
    return common.GradResult(value, z[n:n + n_p].copy(), z[:n].copy(),
                             common.control_gradient(prob, z[n + n_p + 1:]), stats)
