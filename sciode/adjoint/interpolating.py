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

import numpy as np

from ..cpu import solvers
from ..cpu.drivers import entry
from . import common


def _plan(prob):
    """The compiled entry and the arguments of ``run`` that depend on neither
    ``y0`` nor ``p`` (kept in ``prob.plan`` across calls)."""
    kernels, stops, tail = static_arguments(prob)
    return entry("adjoint_gradient", tail[0], tail[6]), kernels, stops, tail


def static_arguments(prob):
    """``(kernels, stops, tail)``: the arguments of the whole-gradient routine
    that depend on neither ``y0`` nor ``p`` (also the ensemble's, which runs
    the same routine per member)."""
    fmethod = common.model_method(prob)
    bmethod = common.augmented_method(prob, "adjoint")
    mk, ck = prob.mk, prob.ck
    n, n_p = prob.n, prob.n_p
    brtol, batol = common.sweep_tolerances(prob, n + n_p + 1 + prob.n_g, n)
    hmax = float(prob.options.get("max_step", np.inf))
    jac_y, dfdt, jac_p = mk.newton(fmethod, bmethod)
    kernels = (mk["rhs"], jac_y, dfdt, *common.rate_kernels(prob), jac_p,
               ck["obs"], ck["obs_vjp_y"], ck["obs_vjp_p"], ck["Phi"], ck["dPhidy"], ck["dPhidp"])
    stops = (solvers.control_stops(prob.controls, prob.t0, prob.t1),
             common.sweep_stops(prob, prob.t1, prob.t0, prob.t_rows[::-1]), prob.n_g)
    tail = (fmethod, prob.rtol, prob.atol, hmax, common.fixed_step(prob), prob.max_steps,
            bmethod, brtol, batol)
    return kernels, stops, tail


def run(prob) -> common.GradResult:
    plan = prob.plan.get("adjoint")
    if plan is None:
        plan = prob.plan["adjoint"] = _plan(prob)
    fn, kernels, stops, tail = plan
    fstatus, f_reached, fst, bstatus, b_reached, bst, value, z, stored = fn(
        *kernels, prob.p, prob.tw, prob.W, prob.wbuf(), prob.y0, prob.t0, prob.t1, prob.t_rows,
        prob.Yobs, prob.Wt, *stops, *tail)
    common.check_status(fstatus, f_reached, prob, "forward")
    common.check_status(bstatus, b_reached, prob, "backward (costate)")
    n, n_p = prob.n, prob.n_p
    value += z[n + n_p]
    stats = {"forward": solvers.loop_stats(fst), "backward": solvers.loop_stats(bst),
             "peak_stored_floats": int(stored)}
    return common.GradResult(float(value), z[n:n + n_p].copy(), z[:n].copy(),
                             common.control_gradient(prob, z[n + n_p + 1:]), stats)
