"""``sensitivity="adjoint"``: the interpolating continuous adjoint.

The forward pass keeps every accepted step's stages (the method's own dense
output); the costate ``lambda' = -dH/dy`` and the quadratures ``mu' = -dH/dp``,
``q' = -L`` and ``G_k' = -phi_k dH/dw`` are integrated backward from ``t1``
with ``y(t)`` read from that interpolant, jumping by ``(dh/dy)^T r_i`` at each
observation.  Memory grows with the number of forward steps (see
``checkpoint`` for a bound); the backward pass never re-integrates the state,
so it is exact to tolerance also for chaotic or stiff problems.

The whole gradient (forward pass, observation jumps, terminal cost, costate
sweep) is one compiled call (``entries._adjoint_gradient``); what does not
depend on ``y0`` and ``p`` is kept across calls (``Problem.plan``).

References: Pontryagin et al. (1962); Chen et al., *Neural Ordinary
Differential Equations*, NeurIPS 2018; SciMLSensitivity's
``InterpolatingAdjoint``.
"""

from __future__ import annotations

from collections import namedtuple


from ..cpu import solvers
from ..cpu.drivers import entry
from . import common
from .entries import Rows

#: What a gradient entry takes besides ``y0`` and ``p`` (kept in ``prob.plan``):
#: the kernel bundles ``f`` and ``c``, the observation ``rows``, the forward
#: and backward ``Loop``s.  (The entry itself is looked up per call, ``entry``:
#: the ensemble's gradient uses the plan with an entry of its own, and should
#: not compile this one.)
Plan = namedtuple("Plan", ["f", "c", "rows", "fwd", "bwd"])


def plan(prob, mode: str = "adjoint") -> Plan:
    """The ``Plan`` of the whole-gradient entries of ``mode`` (``adjoint``, whose
    routine the ensemble's gradient also runs per member, or ``checkpoint``)."""
    fmethod = common.model_method(prob)
    bmethod = common.augmented_method(prob, mode)
    n, n_p = prob.n, prob.n_p
    f, c = common.costate_fns(prob, fmethod, bmethod, cost_kernels=common.GRADIENT_COST_KERNELS)
    fwd = common.model_loop(prob, fmethod, prob.atol)
    bwd = common.sweep_loop(prob, bmethod, n + n_p + 1 + prob.n_g, n,
                            common.sweep_stops(prob, prob.t1, prob.t0, prob.t_rows[::-1]))
    return Plan(f, c, Rows(prob.t_rows, prob.Yobs, prob.Wt), fwd, bwd)


def run(prob) -> common.GradResult:
    pl = prob.plan.get("adjoint")
    if pl is None:
        pl = prob.plan["adjoint"] = plan(prob)
    out = entry("adjoint_gradient", pl.fwd.method, pl.bwd.method)(
        pl.f, pl.c, common.inputs(prob), pl.rows, prob.y0, prob.t0, prob.t1, prob.n_g, pl.fwd, pl.bwd)
    common.check_status(out.forward.status, out.forward.t_reached, prob, "forward")
    common.check_status(out.backward.status, out.backward.t_reached, prob, "backward (costate)")
    n, n_p = prob.n, prob.n_p
    z = out.z
    stats = {"forward": solvers.loop_stats(out.forward.stats),
             "backward": solvers.loop_stats(out.backward.stats),
             "peak_stored_floats": int(out.stored)}
    return common.GradResult(float(out.value + z[n + n_p]), z[n:n + n_p].copy(), z[:n].copy(),
                             common.control_gradient(prob, z[n + n_p + 1:]), stats)
