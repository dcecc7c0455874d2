"""``sensitivity="backsolve"``: re-integrate the state backward with the costate.

Constant memory: ``z = [y, lambda, mu, q, G]`` is integrated from ``t1`` to
``t0`` starting from the forward pass's ``y(t1)`` (Chen et al. 2018's method).
Rarely the right choice: on stiff problems the backward state equation is
unstable, and on chaotic ones the recomputed trajectory leaves the forward
one; both corrupt the gradient.  sciode warns when the recomputed ``y(t0)``
drifts from the true ``y0`` by more than ``drift_tol * sqrt(backward steps)``
tolerance units (``drift_tol`` defaults to 100).  Prefer ``"adjoint"`` or
``"checkpoint"``.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..cpu import solvers
from ..cpu.drivers import entry
from . import common
from .entries import Jumps


def run(prob) -> common.GradResult:
    tab = common.explicit_tableau(prob, "backsolve", ": re-integrating a stiff state backward "
                                  "in time is unstable; use sensitivity='adjoint' or 'checkpoint'")
    raw = common.forward_pass(prob, prob.t_rows, dense=-1)  # constant memory: final state only
    H, JY, JP = common.observation_jumps(prob, raw.z_eval)
    y1 = raw.zs[-1]
    phi, dPhidy, dPhidp = common.terminal(prob, y1)
    n, n_p = prob.n, prob.n_p
    z1 = np.concatenate([y1, dPhidy, dPhidp, [0.0], np.zeros(prob.n_g)])
    method = solvers.rk_method(tab)
    jump_t = np.ascontiguousarray(prob.t_rows[::-1])  # rows in the backward direction
    jumps = Jumps(jump_t, np.ascontiguousarray(JY[::-1]), np.ascontiguousarray(JP[::-1]))
    loop = common.sweep_loop(prob, method, z1.size, 2 * n,
                             common.sweep_stops(prob, prob.t1, prob.t0, jump_t))
    out = entry("backsolve_sweep", method)(*common.costate_fns(prob, method), common.inputs(prob), z1,
                                           prob.t1, prob.t0, jumps, loop)
    z, st = out.z, out.stats
    common.check_status(out.status, out.t_reached, prob, "backward (backsolve)")
    drift = np.max(np.abs(z[:n] - prob.y0) / (prob.atol + prob.rtol * np.abs(prob.y0)))
    # A stable backward pass still accumulates about one tolerance unit per step
    # (and a random walk of them), so the limit grows with sqrt(steps): an
    # oscillator over many periods is not flagged, a stiff or chaotic
    # problem (drift of 1e4 to 1e12 units) is.
    limit = prob.options.get("drift_tol", 100.0) * max(1.0, np.sqrt(st[1]))
    if drift > limit:
        warnings.warn(f"backsolve: the state re-integrated backward reached y(t0) = {z[:n]} instead "
                      f"of {prob.y0} ({drift:.3g} tolerance units off); the gradient is unreliable "
                      f"(stiff or chaotic dynamics). Use `sensitivity='adjoint'` or 'checkpoint'.",
                      RuntimeWarning, stacklevel=3)
    off = 2 * n
    value = phi + z[off + n_p] + common.misfit(prob, H)
    stats = {"forward": dict(raw.stats), "backward": solvers.loop_stats(st),
             "peak_stored_floats": int(raw.ts.size + raw.zs.size + raw.z_eval.size + z1.size),
             "y0_drift": float(drift)}
    return common.GradResult(value, z[off:off + n_p].copy(), z[n:off].copy(),
                             common.control_gradient(prob, z[off + n_p + 1:]), stats)
