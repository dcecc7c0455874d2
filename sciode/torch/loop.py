"""The batched explicit Runge--Kutta loop: one step size per trajectory.

The state is a flat batch ``z`` of shape ``(B, N)``: ``B`` independent
trajectories, each with its own time ``t``, step ``h``, error norm,
accept/reject decision, step counters and status (torchode's design,
martenlienen/torchode ``adjoints.py``; nothing here is copied from it).
Every update is a ``torch.where`` over the batch.  Time runs forward here
(``sciode.torch.odeint`` maps decreasing ``t`` to increasing ``tau = -t``).

A step of a tableau from ``(t, z)`` with step ``hh``::

    K[i]  = F(t + c[i] hh, z + hh sum_{j<i} A[i, j] K[j])
    z_new = z + hh sum_i b[i] K[i]
    err   = hh sum_i e[i] K[i]       (RMS of err / (atol + rtol max(|z|, |z_new|)))

with the PI controller, safety factors and Hairer's starting step of the CPU
loop (``sciode.cpu.explicit``, whose constants are imported, not copied).
``shared=True`` measures one RMS norm over the whole batch and so takes one
step for all (torchdiffeq's behaviour).  The step-size controller is not
differentiated (its decisions are detached), so backpropagating through the
loop gives the derivative of the discrete solution on the steps taken.

Host synchronisation: one at the start (the end time and the span, for the
landing tolerance), one per step (the number of trajectories still running
and how many output times the step covers, fetched together), one at the end
of ``integrate`` (the failure check, in the caller).
"""

from __future__ import annotations

import dataclasses

import torch

from ..step_rules import FAC_MAX, FAC_MIN, SAFETY
from ..cpu.status import MAX_STEPS, NONFINITE, STEP_UNDERFLOW, SUCCESS
from .methods import Method

#: Status of a trajectory that has not finished (the others are ``sciode.cpu.status`` codes).
RUNNING = -1


class AbstractSystem:
    """A batched right-hand side ``F(t, z)``: ``t (B,)``, ``z (B, N)`` -> ``(B, N)``."""

    def rhs(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class AbstractQuadratureSystem(AbstractSystem):
    """A system that also integrates a quadrature summed over the batch.

    Used for the parameters of a module shared by all trajectories: their
    adjoint integrand cannot be kept per trajectory, so the system records
    each stage and the loop tells it, once a step is decided, the weight
    ``b[i] * hh`` of each stage for each accepted trajectory (zero for the
    rejected ones).  Stage 0 is evaluated afresh every step (no FSAL), so
    all stages of a step belong to that step.
    """

    def stage(self, i: int, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``F(t, z)`` for stage ``i`` of the current attempt, recorded for ``commit``."""
        raise NotImplementedError

    def commit(self, weights: list) -> None:
        """Add ``sum_i w_i`` times the recorded stage integrands; ``weights`` is
        ``[(i, w_i (B,)), ...]`` over the stages with a nonzero ``b[i]``."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Config:
    """What the loop needs besides the system and the data.

    ``rtol``, ``atol``: tensors broadcastable to ``(B, N)`` (``atol = inf``
    leaves an entry out of the error test).  ``step_size``: fixed-step
    methods only; ``None`` steps from output time to output time.
    """

    method: Method
    rtol: torch.Tensor
    atol: torch.Tensor
    shared: bool = False
    first_step: float | None = None
    step_size: float | None = None
    max_steps: int = 100_000


@dataclasses.dataclass
class Result:
    """``zs (T, B, N)``, per-trajectory ``status``, ``t`` reached and step counts."""

    zs: torch.Tensor
    status: torch.Tensor
    t: torch.Tensor
    n_steps: torch.Tensor
    n_accepted: torch.Tensor
    nfev: int


@dataclasses.dataclass
class _State:
    t: torch.Tensor          # (B,) current time
    h: torch.Tensor          # (B,) magnitude of the next attempt (detached)
    z: torch.Tensor          # (B, N)
    k0: torch.Tensor | None  # (B, N) F(t, z) (None for quadrature systems)
    err_prev: torch.Tensor   # (B,) PI controller memory
    rejected: torch.Tensor   # (B,) bool, last attempt rejected
    nonfinite: torch.Tensor  # (B,) bool, some attempt met NaN/inf
    i_out: torch.Tensor      # (B,) long, next output index to serve
    status: torch.Tensor     # (B,) long
    n_steps: torch.Tensor    # (B,) long, attempts
    n_acc: torch.Tensor      # (B,) long
    nfev: int = 0


@dataclasses.dataclass
class _Attempt:
    hh: torch.Tensor      # (B,) signed step (0 for finished trajectories)
    lands: torch.Tensor   # (B,) bool, the step ends on its target
    target: torch.Tensor  # (B,)
    K: list               # stages, each (B, N)
    z_new: torch.Tensor   # (B, N)


def _combo(terms, K):
    """``sum_j c_j K[j]`` over the nonzero ``(j, c_j)`` (None when there are none)."""
    acc = None
    for j, c in terms:
        acc = K[j] * c if acc is None else acc.add(K[j], alpha=c)
    return acc


def _rms(x: torch.Tensor, shared: bool) -> torch.Tensor:
    """RMS over each row, or over everything (broadcast to rows) when ``shared``."""
    if shared:
        return x.square().mean().sqrt().expand(x.shape[0])
    return x.square().mean(-1).sqrt()


def _initial_step(system, t, z, f0, cfg: Config, span) -> torch.Tensor:
    """Hairer's starting step (``hinit`` of ``dopri5.f``), per trajectory."""
    sc = cfg.atol + cfg.rtol * z.abs()
    d0, d1 = _rms(z / sc, cfg.shared), _rms(f0 / sc, cfg.shared)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1)
    h0 = torch.minimum(h0, span)
    f1 = system.rhs(t + h0, z + h0[:, None] * f0)
    d2 = _rms((f1 - f0) / sc, cfg.shared) / h0
    dmax = torch.maximum(d1, d2)
    h1 = torch.where(dmax <= 1e-15, torch.clamp(h0 * 1e-3, min=1e-6),
                     (0.01 / dmax) ** (1.0 / (cfg.method.tab.order + 1)))
    h = torch.minimum(torch.minimum(100.0 * h0, h1), span)
    return torch.where(torch.isfinite(dmax), h, h0 * 1e-3)


def _start(system, z0, tau, cfg: Config) -> _State:
    B = z0.shape[0]
    t = tau[0].expand(B).clone()
    quadrature = isinstance(system, AbstractQuadratureSystem)
    state = _State(
        t=t, h=torch.zeros(B, dtype=z0.dtype, device=z0.device), z=z0, k0=None,
        err_prev=torch.full((B,), 1e-4, dtype=z0.dtype, device=z0.device),
        rejected=torch.zeros(B, dtype=torch.bool, device=z0.device),
        nonfinite=torch.zeros(B, dtype=torch.bool, device=z0.device),
        i_out=torch.ones(B, dtype=torch.long, device=z0.device),
        status=torch.full((B,), RUNNING, dtype=torch.long, device=z0.device),
        n_steps=torch.zeros(B, dtype=torch.long, device=z0.device),
        n_acc=torch.zeros(B, dtype=torch.long, device=z0.device))
    tab = cfg.method.tab
    f0 = None
    if not quadrature or (tab.adaptive and cfg.first_step is None):
        f0 = system.rhs(t, z0)
        state.nfev += 1
    state.k0 = None if quadrature else f0
    span = (tau[-1] - tau[0]).detach().expand(B)
    with torch.no_grad():
        if not tab.adaptive:
            state.h = torch.full_like(state.h, float("inf") if cfg.step_size is None
                                      else abs(cfg.step_size))
        elif cfg.first_step is not None:
            state.h = torch.full_like(state.h, abs(cfg.first_step))
        else:
            state.h = _initial_step(system, t.detach(), z0.detach(), f0.detach(), cfg, span)
            state.nfev += 1
    return state


def _target(state: _State, tau, cfg: Config) -> torch.Tensor:
    """Where each trajectory's next step must land: the next output time for a
    fixed-step method without ``step_size``, else the end."""
    if not cfg.method.tab.adaptive and cfg.step_size is None:
        return tau[state.i_out.clamp(max=tau.shape[0] - 1)]
    return tau[-1].expand(state.t.shape[0])


def _attempt(system, state: _State, tau, cfg: Config, tol: float) -> _Attempt:
    """Stages and the new state of one step attempt for every trajectory."""
    m = cfg.method
    running = state.status == RUNNING
    target = _target(state, tau, cfg)
    lands = (state.t + state.h - target).detach() >= -tol
    hh = torch.where(lands, target - state.t, state.h)
    hh = torch.where(running, hh, torch.zeros_like(hh))
    quadrature = isinstance(system, AbstractQuadratureSystem)
    K = [system.stage(0, state.t, state.z) if quadrature else state.k0]
    for i in range(1, m.tab.s):
        zi = state.z + hh[:, None] * _combo(m.a_rows[i], K)
        ti = state.t + m.c[i] * hh
        K.append(system.stage(i, ti, zi) if quadrature else system.rhs(ti, zi))
    state.nfev += m.tab.s - (0 if quadrature else 1)
    z_new = state.z + hh[:, None] * _combo(m.b, K)
    return _Attempt(hh=hh, lands=lands, target=target, K=K, z_new=z_new)


def _error(att: _Attempt, state: _State, cfg: Config) -> torch.Tensor:
    """The scaled error norm of the attempt per trajectory (detached)."""
    m = cfg.method
    K = [k.detach() for k in att.K]
    hh = att.hh.detach()[:, None]
    sc = cfg.atol + cfg.rtol * torch.maximum(state.z.detach().abs(), att.z_new.detach().abs())
    sq5 = (hh * _combo(m.e, K) / sc).square()
    if m.e3 is None:
        return sq5.mean().sqrt().expand(hh.shape[0]) if cfg.shared else sq5.mean(-1).sqrt()
    sq3 = (hh * _combo(m.e3, K) / sc).square()
    n = sq5.numel() if cfg.shared else sq5.shape[-1]
    err5 = sq5.sum().expand(hh.shape[0]) if cfg.shared else sq5.sum(-1)
    err3 = sq3.sum().expand(hh.shape[0]) if cfg.shared else sq3.sum(-1)
    deno = err5 + 0.01 * err3
    return torch.where(deno > 0, err5 / (n * deno).clamp(min=1e-300).sqrt(), torch.zeros_like(deno))


def _decide(att: _Attempt, state: _State, cfg: Config):
    """``(accepted, h_next)``; updates the controller memory in ``state``."""
    running = state.status == RUNNING
    ahh = att.hh.detach().abs()
    if not cfg.method.tab.adaptive:
        finite = torch.isfinite(att.z_new.detach()).all(-1)
        state.status = torch.where(running & ~finite, NONFINITE, state.status)
        return running & finite, state.h
    m = cfg.method
    err = _error(att, state, cfg)
    finite = torch.isfinite(err)
    accepted = running & finite & (err <= 1.0)
    safe_err = torch.where(finite & (err > 0), err, torch.ones_like(err))
    expo = 1.0 / m.q - 0.75 * m.beta
    fac = SAFETY * safe_err ** (-expo) * state.err_prev ** m.beta
    fac = torch.where(err == 0, torch.full_like(fac, FAC_MAX), fac).clamp(FAC_MIN, FAC_MAX)
    fac = torch.where(state.rejected, fac.clamp(max=1.0), fac)
    shrink = torch.where(finite, (SAFETY * safe_err ** (-1.0 / m.q)).clamp(min=FAC_MIN),
                         torch.full_like(err, FAC_MIN))
    h_next = torch.where(accepted, ahh * fac, ahh * shrink)
    h_next = torch.where(running, h_next, state.h)
    state.err_prev = torch.where(accepted, err.clamp(min=1e-4), state.err_prev)
    state.rejected = running & ~accepted
    state.nonfinite = state.nonfinite | (running & ~finite)
    return accepted, h_next


def _extra_stages(system, att: _Attempt, state: _State, cfg: Config) -> None:
    """DOP853's dense-output stages, appended to ``att.K``."""
    m = cfg.method
    s = m.tab.s
    for i in range(s, s + m.tab.s_extra):
        zi = state.z + att.hh[:, None] * _combo(m.a_rows[i], att.K)
        att.K.append(system.rhs(state.t + m.c[i] * att.hh, zi))
    state.nfev += m.tab.s_extra


def _serve(zs, att: _Attempt, state: _State, tau, t_new, count, rounds: int, cfg: Config):
    """Write the dense output of the step at the output times it covers.

    ``count (B,)`` output times from ``state.i_out`` on lie in ``(t, t_new]``;
    ``rounds`` is their maximum over the batch.  Each round fills one output
    per trajectory with the method's own interpolant (``z_new`` exactly where
    the output time is the step's end).
    """
    P = cfg.method.P(att.z_new)
    powers = torch.arange(1, P.shape[1] + 1, device=P.device, dtype=P.dtype)
    Kst = torch.stack(att.K, 0)
    rows = torch.arange(zs.shape[1], device=zs.device)
    for r in range(rounds):
        j = (state.i_out + r).clamp(max=tau.shape[0] - 1)
        take = r < count
        tj = tau[j]
        hh = torch.where(take, att.hh, torch.ones_like(att.hh))  # no 0/0 even in unused lanes
        theta = (tj - state.t) / hh
        W = (theta[:, None] ** powers) @ P.T
        val = state.z + hh[:, None] * torch.einsum("bs,sbn->bn", W, Kst)
        val = torch.where((tj == t_new)[:, None], att.z_new, val)
        zs.index_put_((j, rows), torch.where(take[:, None], val, zs[j, rows]))


def _guard(state: _State, t_next, h_next, cfg: Config):
    """Mark trajectories that must stop before their next attempt."""
    running = state.status == RUNNING
    eps = torch.finfo(state.z.dtype).eps
    maxed = running & (state.n_steps >= cfg.max_steps)
    tiny = running & ~maxed & (h_next < 10.0 * eps * t_next.abs().clamp(min=1e-300))
    state.status = torch.where(maxed, MAX_STEPS, state.status)
    state.status = torch.where(tiny, torch.where(state.nonfinite, NONFINITE, STEP_UNDERFLOW),
                               state.status)


def _advance(system, state: _State, att: _Attempt, accepted, t_new, h_next, cfg: Config):
    """Move accepted trajectories to the end of their step."""
    m = cfg.method
    state.t = torch.where(accepted, t_new, state.t)
    state.z = torch.where(accepted[:, None], att.z_new, state.z)
    state.h = h_next
    state.n_acc = state.n_acc + accepted.long()
    if isinstance(system, AbstractQuadratureSystem):
        return
    if m.tab.fsal:
        state.k0 = torch.where(accepted[:, None], att.K[m.tab.s - 1], state.k0)
    else:
        state.k0 = system.rhs(state.t, state.z)
        state.nfev += 1


def integrate(system: AbstractSystem, z0: torch.Tensor, tau: torch.Tensor, cfg: Config) -> Result:
    """Integrate ``z' = F(t, z)`` for every row of ``z0`` over increasing ``tau``.

    Parameters
    ----------
    system : AbstractSystem
    z0 : tensor, shape (B, N)
    tau : tensor, shape (T,), strictly increasing output times (``tau[0]`` the start)
    cfg : Config

    Returns
    -------
    Result
        ``zs (T, B, N)`` with ``zs[0] = z0``; ``status`` ``SUCCESS`` (0) or a
        failure code per trajectory, whose ``zs`` rows past the failure are zero.
    """
    T = tau.shape[0]
    zs = torch.zeros((T, *z0.shape), dtype=z0.dtype, device=z0.device)
    zs[0] = z0
    state = _start(system, z0, tau, cfg)
    if T == 1:
        state.status = torch.full_like(state.status, SUCCESS)
        return Result(zs, state.status, state.t, state.n_steps, state.n_acc, state.nfev)
    eps = torch.finfo(z0.dtype).eps
    end, span = torch.stack([tau[-1], tau[-1] - tau[0]]).detach().tolist()
    tol = 100.0 * eps * max(abs(end), span)  # one sync, at start
    tab = cfg.method.tab
    quadrature = isinstance(system, AbstractQuadratureSystem)
    while True:
        att = _attempt(system, state, tau, cfg, tol)
        running = state.status == RUNNING
        with torch.no_grad():
            accepted, h_next = _decide(att, state, cfg)
        t_new = torch.where(att.lands, att.target, state.t + att.hh)
        state.n_steps = state.n_steps + running.long()
        with torch.no_grad():
            covered = torch.searchsorted(tau.detach(), t_new.detach(), right=True) - state.i_out
            count = torch.where(accepted, covered.clamp(min=0), torch.zeros_like(covered))
            done = accepted & (att.lands & (att.target == tau[-1]))
            state.status = torch.where(done, SUCCESS, state.status)
            _guard(state, torch.where(accepted, t_new, state.t).detach(), h_next, cfg)
            # The one host sync per step: whether to go on, and how many output
            # times the widest step covers (each is one batched interpolation).
            n_running, rounds, any_acc = torch.stack(
                [(state.status == RUNNING).sum(), count.max(), accepted.any().long()]).tolist()
        if rounds > 0:
            if tab.s_extra:
                _extra_stages(system, att, state, cfg)
            _serve(zs, att, state, tau, t_new, count, rounds, cfg)
            state.i_out = state.i_out + count
        if quadrature and any_acc:
            w = (att.hh * accepted).detach()
            system.commit([(i, b * w) for i, b in cfg.method.b])
        _advance(system, state, att, accepted, t_new, h_next, cfg)
        if n_running == 0:
            break
    return Result(zs, state.status, state.t, state.n_steps, state.n_acc, state.nfev)
