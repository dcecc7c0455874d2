"""Torch path: a batch of Lorenz trajectories with per-trajectory parameters.

``python -m benchmarks.suite_torch [--batch 1024] [--rtol 1e-6]``: sciode.torch
(symbolic ``Model`` on the compiled per-member loops and on the torch loop, and
an ``nn.Module``), torchdiffeq and torchode (when
installed: the ``bench`` extra) in the same run, CPU, float64, dopri5, to
t = 1 with 11 output times.  Forward: wall time and the worst relative error
at t = 1 over the members (reference: ``sciode.solve`` per member at rtol
1e-12).  Gradient of ``sum_b |y_b(1)|^2`` with respect to each member's
parameters: wall time (forward + backward) and the worst relative error over
the members (reference: ``sciode.value_and_grad`` per member at rtol 1e-11).
Median of ``--repeats`` runs after one warm-up; ``--threads`` is torch's intra-op
threads and the compiled path's member threads alike.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import numpy as np
import sympy as sp
import torch

import sciode
from sciode.torch import odeint

F64 = torch.float64


def lorenz_model():
    x, y, z = sp.symbols("x y z")
    s, r, b = sp.symbols("sigma rho beta")
    return sciode.Model(states=[x, y, z], rhs=[s * (y - x), x * (r - z) - y, x * y - b * z],
                        params=[s, r, b], name="lorenz")


class Lorenz(torch.nn.Module):
    """The same field as a module with per-member parameters ``(B, 3)``."""

    def __init__(self, P):
        super().__init__()
        self.P = torch.nn.Parameter(P.clone())

    def forward(self, t, u):
        x, y, z = u.unbind(-1)
        s, r, b = self.P.unbind(-1)
        return torch.stack([s * (y - x), x * (r - z) - y, x * y - b * z], -1)


def problem(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    P = torch.tensor([10.0, 28.0, 8.0 / 3.0], dtype=F64) * (1 + 0.1 * torch.rand(B, 3, generator=g, dtype=F64))
    y0 = 1.0 + 0.1 * torch.rand(B, 3, generator=g, dtype=F64)
    return P, y0, torch.linspace(0.0, 1.0, 11, dtype=F64)


def references(model, P, y0):
    cost = sciode.Cost(terminal=sum(s**2 for s in model.states))
    yT, gP = [], []
    for p, u in zip(P.tolist(), y0.tolist()):
        yT.append(sciode.solve(model, u, (0.0, 1.0), params=p, rtol=1e-12, atol=1e-12).y[-1])
        gP.append(sciode.value_and_grad(model, cost, u, (0.0, 1.0), params=p, rtol=1e-11,
                                        atol=1e-11).grad_params)
    return np.array(yT), np.array(gP)


def worst_rel(got, ref):
    got = got.detach().numpy() if isinstance(got, torch.Tensor) else got
    return float(np.max(np.linalg.norm(got - ref, axis=-1) / np.linalg.norm(ref, axis=-1)))


def timed(fn, repeats):
    fn()
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def runners(model, P, y0, t, rtol):
    """name -> (forward() -> yT, gradient() -> dL/dP)."""
    out = {}

    def sciode_model(adjoint, mode="per_trajectory", backend="auto"):
        kw = {"rtol": rtol, "atol": rtol, "batch_step": mode, "backend": backend}

        def fwd():
            return odeint(model, y0, t, params=P, **kw)[-1]

        def grad():
            Pq = P.clone().requires_grad_(True)
            ys = odeint(model, y0, t, params=Pq, adjoint=adjoint, **kw)
            return torch.autograd.grad(ys[-1].square().sum(), Pq)[0]
        return fwd, grad

    def module(solver, adjoint, **kw):
        f = Lorenz(P)

        def fwd():
            with torch.no_grad():
                return solver(f, y0, t, rtol=rtol, atol=rtol, method="dopri5", **kw)[-1]

        def grad():
            ys = solver(f, y0, t, rtol=rtol, atol=rtol, method="dopri5", **kw)
            return torch.autograd.grad(ys[-1].square().sum(), f.P)[0]
        return fwd, grad

    from sciode.torch import odeint_adjoint as st_adjoint
    out["sciode Model, compiled, adjoint"] = sciode_model(True, backend="compiled")
    out["sciode Model, torch loop, backprop"] = sciode_model(False, backend="torch")
    out["sciode Model, torch loop, adjoint"] = sciode_model(True, backend="torch")
    out["sciode Model, shared step, adjoint"] = sciode_model(True, "shared")
    out["sciode nn.Module, backprop"] = module(odeint, False)
    out["sciode nn.Module, adjoint"] = module(st_adjoint, True)
    if importlib.util.find_spec("torchdiffeq"):
        import torchdiffeq
        out["torchdiffeq, backprop"] = module(torchdiffeq.odeint, False)
        out["torchdiffeq, adjoint"] = module(torchdiffeq.odeint_adjoint, True)
    if importlib.util.find_spec("torchode"):
        out["torchode, backprop"] = torchode_runner(P, y0, t, rtol)
    return out


def torchode_runner(P, y0, t, rtol):
    import torchode as to

    f = Lorenz(P)
    term = to.ODETerm(lambda t, y: f(t, y))
    step = to.Dopri5(term=term)
    ctrl = to.IntegralController(atol=rtol, rtol=rtol, term=term)
    solver = to.AutoDiffAdjoint(step, ctrl)
    t_eval = t.expand(y0.shape[0], -1)

    def solve():
        return solver.solve(to.InitialValueProblem(y0=y0, t_eval=t_eval)).ys[:, -1]

    def fwd():
        with torch.no_grad():
            return solve()

    def grad():
        return torch.autograd.grad(solve().square().sum(), f.P)[0]
    return fwd, grad


def table(batch, rtol, repeats, threads):
    """Rows ``[solver, forward s, y(1) error, gradient s, gradient error]``."""
    torch.set_num_threads(threads)
    os.environ["SCIODE_NUM_THREADS"] = str(threads)  # the compiled path's member threads
    model = lorenz_model()
    P, y0, t = problem(batch)
    ref_y, ref_g = references(model, P, y0)
    rows = []
    for name, (fwd, grad) in runners(model, P, y0, t, rtol).items():
        tf, yT = timed(fwd, repeats)
        tg, g = timed(grad, repeats)
        rows.append([name, tf, worst_rel(yT, ref_y), tg, worst_rel(g, ref_g)])
    return rows


def run(cfg):
    """``python -m benchmarks torch``: the table on all cores (512 members with ``--quick``)."""
    from ._util import Report, fmt_time

    rep = Report("torch", cfg)
    batch, threads = (512 if cfg.quick else 1024), os.cpu_count() or 1
    rows = table(batch, 1e-6, 3, threads)
    base = {r[0]: r for r in rows}
    rep.section(f"Lorenz x {batch}, dopri5, rtol = atol = 1e-6, float64, CPU, {threads} threads")
    rep.table(["solver", "forward", "y(1) err", "gradient", "grad err"],
              [[r[0], fmt_time(r[1]), f"{r[2]:.1e}", fmt_time(r[3]), f"{r[4]:.1e}"] for r in rows],
              caption="Errors: worst member, relative.")
    ours = base["sciode Model, compiled, adjoint"]
    for other in ("torchdiffeq, backprop", "torchdiffeq, adjoint"):
        if other in base:
            rep.note(f"sciode Model (compiled) vs {other}: forward {base[other][1] / ours[1]:.1f}x, "
                     f"gradient {base[other][3] / ours[3]:.1f}x faster (targets: 3x forward, 2x "
                     "adjoint gradient)")
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    print(f"Lorenz x {args.batch}, dopri5, rtol = atol = {args.rtol:g}, float64, CPU, "
          f"{args.threads} thread(s); errors: worst member, relative")
    print(f"{'solver':38s} {'forward ms':>11s} {'y(1) err':>9s} {'grad ms':>9s} {'grad err':>9s}")
    for name, tf, ey, tg, eg in table(args.batch, args.rtol, args.repeats, args.threads):
        print(f"{name:38s} {tf * 1e3:11.1f} {ey:9.1e} {tg * 1e3:9.1f} {eg:9.1e}", flush=True)


if __name__ == "__main__":
    main()
