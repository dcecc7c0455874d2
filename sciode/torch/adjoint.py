"""``adjoint=True``: the continuous adjoint as a ``torch.autograd.Function``.

The backward pass integrates, between consecutive output times and from the
last to the first, the state backward together with the costate ``a`` and
(for a ``Model``) the parameter quadrature ``g_p``, as in Chen et al. 2018
(the "backsolve" adjoint: memory does not grow with the number of steps; it
re-integrates the state instead of storing it, so it suits non-stiff,
non-chaotic-over-the-horizon problems best).  In ``s = -tau``::

    y' = -F(tau, y),   a' = a^T dF/dy,   g_p' = a^T dF/dp

On reaching an output time the state is reset to the forward value (as
torchdiffeq does) and the costate jumps by that output's incoming gradient.

**Per trajectory**: the loop controls the error of every trajectory's
``[y, a, g_p]`` on its own (torchdiffeq's batched adjoint measures one RMS
norm over the whole batch, wrong by up to 15% on single members of a Lorenz
ensemble at rtol 1e-6, issue #12).  A ``Model``'s ``g_p`` is per trajectory
(its params are ``(B, n_params)``) and part of that norm.  The parameters of
a module are shared by the batch, so their quadrature is a batch sum that
cannot enter a per-trajectory norm: it is integrated on the same steps and
left out of the error test (a seminorm, Kidger, Chen & Lyons 2021).

Time gradients: ``dL/dtau_j = g_j . F(tau_j, y_j)`` for ``j >= 1`` and
``dL/dtau_0 = -a(tau_0) . F(tau_0, y_0)`` (``a`` before adding ``g_0``).
"""

from __future__ import annotations

import dataclasses

import torch

from .loop import AbstractQuadratureSystem, AbstractSystem, Config, integrate
from .systems import FuncSystem, ModelSystem


@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything about a solve except its tensors.

    ``make_system(params)`` returns the forward ``AbstractSystem`` over the
    tensors ``params`` (a ``Model``'s ``(B, n_params)``, or a module's
    ``adjoint_params``); ``check(result, what)`` raises on failure; the
    tolerances of ``adjoint_cfg`` broadcast to ``(B, n)`` (the augmented
    state's are built from them).
    """

    make_system: object
    cfg: Config
    adjoint_cfg: Config
    check: object
    is_model: bool


class _ModelCostate(AbstractSystem):
    """``[y, a, g_p]' = [-F, a^T F_y, a^T F_p]`` in ``s = -tau`` from the symbolic VJPs."""

    def __init__(self, fwd: ModelSystem, n: int, with_params: bool):
        self.fwd, self.n, self.with_params = fwd, n, with_params

    def rhs(self, s, z):
        n, d = self.n, self.fwd.direction
        y, a = z[:, :n], z[:, n:2 * n]
        tau = -s
        f = self.fwd.kernels.rhs(tau * d, y, self.fwd.p)
        if self.with_params:
            vjp = self.fwd.kernels.vjp_yp(tau * d, y, self.fwd.p, a)
        else:
            vjp = self.fwd.kernels.vjp_y(tau * d, y, self.fwd.p, a)
        # F = d f: dy/ds = -d f, da/ds = d f_y^T a, dg/ds = d f_p^T a
        return torch.cat([-f, vjp], dim=-1) * d


class _FuncCostate(AbstractQuadratureSystem):
    """``[y, a]' = [-F, a^T F_y]`` with autograd VJPs; the shared parameters'
    quadrature ``sum_b a_b^T dF_b/dtheta`` is accumulated into ``grads``."""

    def __init__(self, fwd: FuncSystem, n: int, params: tuple):
        self.fwd, self.n, self.params = fwd, n, params
        self.grads = [torch.zeros_like(p) for p in params]
        self._records: dict = {}

    def _eval(self, s, z, record: int | None):
        n = self.n
        a = z[:, n:2 * n]
        with torch.enable_grad():
            y = z[:, :n].detach().requires_grad_(True)
            F = self.fwd.rhs(-s, y)
            (vjp,) = torch.autograd.grad(F, y, a, retain_graph=record is not None, allow_unused=True)
        if vjp is None:  # F does not depend on y
            vjp = torch.zeros_like(a)
        if record is not None:
            self._records[record] = (F, a)
        return torch.cat([-F.detach(), vjp], dim=-1)

    def rhs(self, s, z):
        return self._eval(s, z, None)

    def stage(self, i, s, z):
        return self._eval(s, z, i if self.params else None)

    def commit(self, weights):
        if not self.params:
            return
        outs, cots = [], []
        for i, w in weights:
            F, a = self._records[i]
            outs.append(F)
            cots.append(a * w[:, None])
        got = torch.autograd.grad(outs, self.params, cots, allow_unused=True)
        for acc, g in zip(self.grads, got):
            if g is not None:
                acc.add_(g)
        self._records.clear()


def _time_grad(system, tau_j, y, g) -> torch.Tensor:
    """``sum_b g_b . F(tau_j, y_b)``."""
    return (g * system.rhs(tau_j.expand(y.shape[0]), y)).sum()


def _augmented(tol, B, n, extra):
    """Tolerances ``(B, 2n + extra)`` for ``[y, a, g_p]`` from the state's ``(..., n)``:
    the costate takes the state's, the quadrature the strictest."""
    tol = torch.broadcast_to(tol, (B, n))
    return torch.cat([tol, tol, tol.min().expand(B, extra)], dim=-1)


def backsolve(problem: Problem, tau, zs, params, gzs, need_tau: bool, need_params: bool):
    """Gradients ``(tau, z0, params)`` of ``sum(gzs * zs)`` by the backsolve adjoint."""
    T, B, n = zs.shape
    fwd = problem.make_system(params)
    with_p = problem.is_model and need_params
    if problem.is_model:
        aug = _ModelCostate(fwd, n, with_p)
        extra = fwd.p.shape[-1] if with_p else 0
    else:
        aug = _FuncCostate(fwd, n, tuple(params) if need_params else ())
        extra = 0
    cfg = problem.adjoint_cfg
    cfg = dataclasses.replace(cfg, rtol=_augmented(cfg.rtol, B, n, extra),
                              atol=_augmented(cfg.atol, B, n, extra))
    g_tau = torch.zeros_like(tau) if need_tau else None
    a = gzs[-1]
    gp = zs.new_zeros((B, extra))
    y = zs[-1]
    for j in range(T - 1, 0, -1):
        if need_tau:
            g_tau[j] = _time_grad(fwd, tau[j], zs[j], gzs[j])
        res = integrate(aug, torch.cat([y, a, gp], dim=-1), torch.stack([-tau[j], -tau[j - 1]]),
                        cfg)
        problem.check(res, "the adjoint (backward) pass")
        end = res.zs[-1]
        a, gp, y = end[:, n:2 * n], end[:, 2 * n:], zs[j - 1]
        if need_tau and j == 1:
            g_tau[0] = -_time_grad(fwd, tau[0], zs[0], a)
        a = a + gzs[j - 1]
    if problem.is_model:
        g_params = (gp,) if with_p else (None,)
    else:
        g_params = tuple(aug.grads) if need_params else (None,) * len(params)
    return g_tau, a, g_params


@dataclasses.dataclass(frozen=True)
class _Saved:
    problem: Problem


def _by_name(*, problem=None, tau=None, z0=None, params=()):
    """Gradients in the order of ``OdeintAdjoint.forward``'s inputs."""
    return (problem, tau, z0, *params)


DOUBLE_BACKWARD = (
    "double backward through `sciode.torch.odeint(..., adjoint=True)` is not supported: the "
    "adjoint's gradients are not themselves differentiable (nor are torchdiffeq's "
    "`odeint_adjoint`'s). For higher derivatives use `adjoint=False` (backpropagation through "
    "the solver).")


class _NoDoubleBackward(torch.autograd.Function):
    """Passes a first-order gradient through; differentiating it raises ``DOUBLE_BACKWARD``.

    Its inputs after the gradient tie it into the graph of the forward solve
    (the saved outputs, whose node leads to ``tau``, ``z0`` and the
    parameters, and the incoming gradient), so any second derivative reaches
    it and raises, instead of silently missing the adjoint's part (what
    ``once_differentiable``'s detached error node does under
    ``torch.autograd.grad(..., inputs=...)``).
    """

    @staticmethod
    def forward(ctx, grad, *graph):
        return grad.clone()

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(DOUBLE_BACKWARD)


class OdeintAdjoint(torch.autograd.Function):
    """``zs = solve(tau, z0, params)`` with a backsolve-adjoint backward."""

    @staticmethod
    def forward(ctx, problem: Problem, tau, z0, *params):
        with torch.no_grad():
            res = integrate(problem.make_system(params), z0, tau, problem.cfg)
        problem.check(res, "the forward pass")
        ctx.save_for_backward(tau, res.zs, *params)
        ctx.saved = _Saved(problem)
        return res.zs

    @staticmethod
    def backward(ctx, gzs):
        tau, zs, *params = ctx.saved_tensors
        need = ctx.needs_input_grad
        need_params = any(need[3:])
        with torch.no_grad():
            g_tau, g_z0, g_params = backsolve(ctx.saved.problem, tau, zs.detach(), tuple(params),
                                              gzs.detach(), need_tau=need[1],
                                              need_params=need_params)
        g_params = tuple(g if need[3 + i] else None for i, g in enumerate(g_params))
        if torch.is_grad_enabled():  # create_graph=True: a second derivative must raise
            graph = [x for x in (zs, gzs) if x.requires_grad]
            if graph:
                g_tau, g_z0, *g_params = (None if g is None else _NoDoubleBackward.apply(g, *graph)
                                          for g in (g_tau, g_z0, *g_params))
        return _by_name(tau=g_tau, z0=g_z0 if need[2] else None, params=tuple(g_params))
