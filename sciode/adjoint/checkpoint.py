"""``sensitivity="checkpoint"``: the interpolating adjoint with bounded memory.

The forward pass stores only the state at ``checkpoints + 1`` equally spaced
times.  The backward pass re-solves each segment forward from its checkpoint
with dense output, then integrates the costate back over that segment, so
the stored dense output is one segment's at a time: memory is
``O(checkpoints + steps per segment)`` instead of ``O(steps)``, at the price
of one more forward solve.
"""

from __future__ import annotations

import numpy as np

from ..cpu import solvers
from ..cpu.drivers import entry
from . import common


def _plan(prob, tc):
    """The compiled entry and the arguments that depend on neither ``y0`` nor
    ``p`` (kept in ``prob.plan``, as the adjoint's), for the checkpoint times
    ``tc`` (``t0`` first, ``t1`` last)."""
    fmethod = common.model_method(prob)
    bmethod = common.augmented_method(prob, "checkpoint")
    mk, ck = prob.mk, prob.ck
    n, n_p = prob.n, prob.n_p
    brtol, batol = common.sweep_tolerances(prob, n + n_p + 1 + prob.n_g, n)
    fn = entry("checkpoint_gradient", fmethod, bmethod)
    jac_y, dfdt, jac_p = mk.newton(fmethod, bmethod)
    kernels = (mk["rhs"], jac_y, dfdt, *common.rate_kernels(prob), jac_p,
               ck["obs"], ck["obs_vjp_y"], ck["obs_vjp_p"], ck["Phi"], ck["dPhidy"], ck["dPhidp"])
    stops = (solvers.control_stops(prob.controls, prob.t0, prob.t1),
             common.sweep_stops(prob, prob.t1, prob.t0, prob.t_rows[::-1]), prob.n_g, tc)
    tail = (fmethod, prob.rtol, prob.atol, float(prob.options.get("max_step", np.inf)),
            common.fixed_step(prob), prob.max_steps, bmethod, brtol, batol)
    return fn, kernels, stops, tail


def plan_at(prob, tc):
    """A plan for the checkpoint times ``tc`` (ordered from ``t0`` to ``t1``, both
    included): segments placed where the steps are (``memory.run``) rather than
    equally spaced."""
    tc = np.ascontiguousarray(tc, dtype=np.float64)
    d = 1.0 if prob.t1 >= prob.t0 else -1.0
    if tc.size < 2 or tc[0] != prob.t0 or tc[-1] != prob.t1 or np.any(np.diff(tc) * d <= 0):
        raise ValueError("checkpoint times must run strictly from t0 to t1")
    return _plan(prob, tc)


def run(prob) -> common.GradResult:
    n_ck = int(prob.options.get("checkpoints", 8))
    if n_ck < 1:
        raise ValueError(f"`checkpoints` must be >= 1, got {n_ck}")
    plan = prob.plan.get("checkpoint")
    if plan is None:
        tc = np.linspace(prob.t0, prob.t1, n_ck + 1)
        tc[-1] = prob.t1
        plan = prob.plan["checkpoint"] = _plan(prob, tc)
    return run_at(prob, plan)


def run_at(prob, plan) -> common.GradResult:
    """The checkpointed gradient with ``plan`` (``_plan``; ``plan_at`` for
    checkpoint times of one's own)."""
    fn, kernels, stops, tail = plan
    n_ck = stops[-1].size - 1
    (fstatus, f_reached, fst, failed, k, status, t_reached, rst, bst, value, z,
     peak) = fn(*kernels, prob.p, prob.tw, prob.W, prob.wbuf(), prob.y0, prob.t0, prob.t1,
                prob.t_rows, prob.Yobs, prob.Wt, *stops, *tail)
    common.check_status(fstatus, f_reached, prob, "forward")
    if failed:
        what = f"forward (segment {k} re-solved)" if failed == 1 else f"backward (segment {k})"
        common.check_status(status, t_reached, prob, what)
    n, n_p = prob.n, prob.n_p
    value += z[n + n_p]
    stats = {"forward": solvers.loop_stats(fst), "recompute": solvers.loop_stats(rst),
             "backward": solvers.loop_stats(bst), "checkpoints": n_ck,
             "peak_stored_floats": int(peak)}
    return common.GradResult(float(value), z[n:n + n_p].copy(), z[:n].copy(),
                             common.control_gradient(prob, z[n + n_p + 1:]), stats)
