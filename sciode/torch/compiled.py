"""A ``sciode.Model`` on CPU float64 tensors: ``odeint`` through the compiled
per-member loops of ``sciode.ensemble`` instead of the batched torch loop.

Each batch member is integrated by the same compiled loop as ``sciode.solve``
(its own steps, no per-step tensor dispatch), members on all cores; with
``adjoint=True`` the backward pass is the interpolating adjoint of
``sciode.value_and_grad`` per member (``ensemble.runner.costate``): each
member's costate under its own error control, the forward steps kept only
while that member's sweep runs, so memory does not grow with the number of
steps across the batch.  The torch loop stays the path for callables, CUDA,
float32, ``adjoint=False`` with gradients (a discrete, differentiable
backpropagation) and the options the compiled loops do not take.

Gradients of ``L(y(t_0), ..., y(t_{T-1}))`` with ``g_i = dL/dy(t_i)``: the
costate ``lambda`` with jumps ``g_i`` gives ``dL/dy0 = lambda(t_0)`` and
``dL/dp = mu(t_0)``; the output times get ``dL/dt_i = g_i . f(t_i, y_i)``
for ``i >= 1`` and ``dL/dt_0 = -(lambda(t_0) - g_0) . f(t_0, y_0)`` (``y_0``
is an input: moving ``t_0`` moves only the later outputs).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..cost import Cost
from ..cpu import solvers
from ..cpu.bundles import make_loop
from ..cpu.status import SUCCESS, message
from ..errors import SolverError
from ..methods.tableaus import Tableau
from .adjoint import DOUBLE_BACKWARD, _NoDoubleBackward

#: The costate system's (empty) running cost: one object, so that its
#: kernels are looked up by identity at every call, not re-derived.
_NO_COST = Cost()

#: torch ``options`` the compiled path takes (others go to the torch loop).
_OPTIONS = {"first_step", "max_num_steps"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the compiled path needs besides the tensors."""

    mk: object  # the model's Numba kernels
    ck: object  # an empty cost's kernels (the costate system's running-cost slots)
    torch_kernels: object  # the model's torch kernels, for ``f(t_i, y_i)`` in time gradients
    loop: object  # cpu.bundles.Loop of the forward solve
    back: object  # and of the costate sweep
    threads: int | None = None


def _loop(method, rtol, atol, options, n):
    """A ``bundles.Loop``, or None when these settings are not the compiled loops'."""
    spec = solvers.EXPLICIT_TABLEAUS.get(str(method).lower())
    if not isinstance(spec, Tableau) or not spec.adaptive:
        return None
    options = dict(options or {})
    if set(options) - _OPTIONS:
        return None
    if not isinstance(rtol, (int, float)) or not float(rtol) > 0:
        return None
    if isinstance(atol, (int, float)):
        atol_arr = np.full(n, float(atol))
    elif isinstance(atol, torch.Tensor) and atol.numel() in (1, n) and atol.ndim <= 1:
        atol_arr = np.broadcast_to(atol.detach().cpu().double().numpy(), (n,)).copy()
    else:
        return None  # per-member tolerances: the torch loop
    if not np.all(atol_arr > 0):
        return None
    first = options.get("first_step")
    return make_loop(solvers.rk_method(spec), float(rtol), atol_arr,
                     0.0 if first is None else float(first), np.inf, 0.0,
                     int(options.get("max_num_steps", 100_000)))


def plan(model, y0: torch.Tensor, rtol, atol, method, options, adjoint_rtol, adjoint_atol,
         adjoint_method, adjoint_options) -> Plan | None:
    """A ``Plan`` when ``odeint`` of ``model`` on ``y0`` can run compiled, else None."""
    if y0.device.type != "cpu" or y0.dtype != torch.float64 or model.n_controls:
        return None
    n = model.n_states
    loop = _loop(method, rtol, atol, options, n)
    back = _loop(adjoint_method or method, rtol if adjoint_rtol is None else adjoint_rtol,
                 atol if adjoint_atol is None else adjoint_atol,
                 options if adjoint_options is None else adjoint_options, n)
    if loop is None or back is None:
        return None
    from ..codegen import cost_kernels, model_kernels
    from .kernels import model_kernels as torch_model_kernels

    return Plan(model_kernels(model), cost_kernels(model, _NO_COST), torch_model_kernels(model),
                loop, back)


def _raise(status: np.ndarray, t_reached: np.ndarray, what: str, max_steps: int) -> None:
    bad = np.flatnonzero(status != SUCCESS)
    if bad.size:
        i = int(bad[0])
        raise SolverError(f"{what} failed for trajectory {i} (flat batch index) of "
                          f"{status.shape[0]}: " + message(int(status[i]), float(t_reached[i]),
                                                           max_steps)
                          + " (torch: `options={'max_num_steps': ...}`)" * int(status[i] == 3))


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy(), dtype=np.float64)


class CompiledOdeint(torch.autograd.Function):
    """``zs (T, B, n) = solve(t, z0 (B, n), p (B, n_p))`` by the compiled member
    loops, with the per-member interpolating adjoint as its backward."""

    @staticmethod
    def forward(ctx, plan: Plan, t, z0, p):
        from ..ensemble import runner

        t_np = _numpy(t).copy()
        Z0, P = _numpy(z0), _numpy(p)
        Y, status, t_reached, _ = runner.forward(plan.mk, P, Z0, float(t_np[0]), float(t_np[-1]),
                                                 t_np, plan.loop, threads=plan.threads)
        _raise(status, t_reached, "the forward pass", plan.loop.max_steps)
        zs = torch.from_numpy(np.ascontiguousarray(Y.transpose(1, 0, 2)))
        ctx.plan = plan
        ctx.save_for_backward(t, z0, p, zs)
        return zs

    @staticmethod
    def backward(ctx, gzs):
        from ..ensemble import runner

        t, z0, p, zs = ctx.saved_tensors
        plan = ctx.plan
        need = ctx.needs_input_grad
        n = z0.shape[1]
        G = np.ascontiguousarray(_numpy(gzs).transpose(1, 0, 2))
        t_np = _numpy(t).copy()
        Z, status, t_reached, _ = runner.costate(plan.mk, plan.ck, _numpy(p), _numpy(z0), t_np, G,
                                                 plan.loop, plan.back, threads=plan.threads)
        failed = (status != SUCCESS).any(axis=1)
        if failed.any():
            i = int(np.flatnonzero(failed)[0])
            k = 0 if status[i, 0] != SUCCESS else 1
            what = ("the forward pass", "the backward (costate) pass")[k]
            raise SolverError(f"{what} of the adjoint failed for trajectory {i} (flat batch index) "
                              f"of {status.shape[0]}: "
                              + message(int(status[i, k]), float(t_reached[i, k]),
                                        plan.loop.max_steps))
        Zt = torch.from_numpy(Z)
        g_z0 = Zt[:, :n] if need[2] else None
        g_p = Zt[:, n:] if need[3] else None
        g_t = None
        if need[1]:
            with torch.no_grad():
                T, B = zs.shape[0], zs.shape[1]
                F = plan.torch_kernels.rhs(t.detach().repeat_interleave(B), zs.reshape(T * B, n),
                                           p.detach().repeat(T, 1)).reshape(T, B, n)
                g_t = (gzs * F).sum(dim=(1, 2))
                g_t[0] = -((Zt[:, :n] - gzs[0]) * F[0]).sum()
        if torch.is_grad_enabled():  # create_graph=True: a second derivative must raise
            graph = [x for x in (zs, gzs) if x.requires_grad]
            if graph:
                g_t, g_z0, g_p = (None if g is None else _NoDoubleBackward.apply(g, *graph)
                                  for g in (g_t, g_z0, g_p))
        return None, g_t, g_z0, g_p


__all__ = ["DOUBLE_BACKWARD", "CompiledOdeint", "Plan", "plan"]
