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
from . import common, interpolating


def _plan(prob, tc):
    """``(interpolating.Plan, tc)``: what does not depend on ``y0`` and ``p``
    (kept in ``prob.plan``, as the adjoint's), for the checkpoint times ``tc``
    (``t0`` first, ``t1`` last)."""
    return interpolating.plan(prob, "checkpoint"), tc


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
    pl, tc = plan
    n_ck = tc.size - 1
    out = entry("checkpoint_gradient", pl.fwd.method, pl.bwd.method)(
        pl.f, pl.c, common.inputs(prob), pl.rows, prob.y0, prob.t0, prob.t1, prob.n_g, tc, pl.fwd,
        pl.bwd)
    common.check_status(out.forward.status, out.forward.t_reached, prob, "forward")
    common.check_status(out.recompute.status, out.recompute.t_reached, prob,
                        f"forward (segment {out.segment} re-solved)")
    common.check_status(out.backward.status, out.backward.t_reached, prob,
                        f"backward (segment {out.segment})")
    n, n_p = prob.n, prob.n_p
    z = out.z
    stats = {"forward": solvers.loop_stats(out.forward.stats),
             "recompute": solvers.loop_stats(out.recompute.stats),
             "backward": solvers.loop_stats(out.backward.stats), "checkpoints": n_ck,
             "peak_stored_floats": int(out.peak)}
    return common.GradResult(float(out.value + z[n + n_p]), z[n:n + n_p].copy(), z[:n].copy(),
                             common.control_gradient(prob, z[n + n_p + 1:]), stats)
