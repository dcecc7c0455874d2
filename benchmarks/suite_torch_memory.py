"""Torch path memory: ``adjoint=True`` flat in the number of steps, ``adjoint=False`` linear.

``python -m benchmarks.suite_torch_memory [--problem lv|mlp] [--batch 256]
[--horizons 2 4 8 16 32] [--device cpu|cuda]``: one forward + backward of
``sum(y(t1)^2)`` per row, dopri5 at rtol = atol = 1e-6, two output times
``[0, t1]``, so the number of steps grows with ``t1`` while the outputs do not.
``lv`` is the symbolic Lotka-Volterra ``Model`` with per-member parameters
(periodic orbits: the backsolve adjoint re-integrates the state backward over
the whole horizon, which a chaotic system such as Lorenz does not survive
beyond t1 ~ 1, backward Lorenz blows up), ``mlp`` an ``nn.Module`` field
64-256-64 (the issue's GPU training problem) with a -0.5 y damping.

Columns, for ``adjoint=False`` (backpropagation through the solver) and
``adjoint=True`` (backsolve adjoint):

- ``steps``: loop iterations of the forward pass (the slowest member's
  attempts);
- ``saved MB``: bytes of the distinct storages autograd saves for backward
  during the forward pass (``torch.autograd.graph.saved_tensors_hooks``), i.e.
  the graph held between forward and backward: exact, device independent;
- ``peak MB``: peak memory of forward + backward above what was allocated
  before: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the peak
  resident set (``VmHWM`` after resetting it through ``/proc/self/clear_refs``)
  of a fresh subprocess per row, so allocator caches of one row do not hide
  the next (includes allocator slack: compare rows, not absolute values).

The adjoint's columns stay flat as ``t1`` grows; backprop's grow linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import sympy as sp
import torch

import sciode
from sciode.torch.memory import saved_tensor_bytes

F64 = torch.float64
RTOL = 1e-6


def _build(problem: str, batch: int, device: str):
    """``(func, y0, params, kwargs)`` for ``odeint``."""
    g = torch.Generator().manual_seed(0)
    if problem == "lv":
        x, y, a, b, c, d = sp.symbols("x y a b c d")
        model = sciode.Model(states=[x, y], rhs=[a * x - b * x * y, c * x * y - d * y],
                             params=[a, b, c, d], name="lotka_volterra")
        P = torch.tensor([1.5, 1.0, 3.0, 1.0], dtype=F64) * (1 + 0.1 * torch.rand(batch, 4, generator=g, dtype=F64))
        y0 = 1.0 + 0.1 * torch.rand(batch, 2, generator=g, dtype=F64)
        P = P.to(device).requires_grad_(True)
        return model, y0.to(device), (P,), {"params": P}
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Tanh(), torch.nn.Linear(256, 64)).to(F64)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y) - 0.5 * y

    f = Field().to(device)
    y0 = torch.randn(batch, 64, generator=g, dtype=F64).to(device)
    return f, y0, tuple(f.parameters()), {}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(problem: str, batch: int, t1: float, adjoint: bool, device: str) -> dict:
    """One row: steps, saved bytes and peak bytes of a forward + backward."""
    from sciode.torch import loop, odeint

    func, y0, leaves, kw = _build(problem, batch, device)
    t = torch.tensor([0.0, t1], dtype=F64, device=device)
    # warm-up: kernels generated, allocator and autograd initialised
    ys = odeint(func, y0, t[:2] * 0.01, rtol=RTOL, atol=RTOL, adjoint=adjoint, **kw)
    torch.autograd.grad(ys[-1].square().sum(), leaves)
    del ys
    attempts = {"n": 0}
    orig = loop._attempt

    def counted(*a, **k):
        attempts["n"] += 1
        return orig(*a, **k)

    loop._attempt = counted
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
            fh.write("5")
        base = _rss_kib("VmRSS") * 1024
    saved, ys = saved_tensor_bytes(lambda: odeint(func, y0, t, rtol=RTOL, atol=RTOL, adjoint=adjoint, **kw))
    steps = attempts["n"]
    torch.autograd.grad(ys[-1].square().sum(), leaves)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = max(0, _rss_kib("VmHWM") * 1024 - base)  # RSS may shrink below the start
    loop._attempt = orig
    return {"steps": steps, "saved": saved, "peak": peak}


def _row_in_subprocess(args, t1, adjoint) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.suite_torch_memory", "--child", "--problem", args.problem,
           "--batch", str(args.batch), "--device", args.device, "--t1", str(t1),
           "--adjoint", str(int(adjoint)), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", choices=("lv", "mlp"), default="lv")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--horizons", type=float, nargs="+", default=[2.0, 4.0, 8.0, 16.0, 32.0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--t1", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--adjoint", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.problem, args.batch, args.t1, bool(args.adjoint), args.device)))
        return
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    peak_how = "torch.cuda.max_memory_allocated" if args.device.startswith("cuda") else \
        "peak RSS of a fresh process"
    print(f"{args.problem} x {args.batch}, dopri5, rtol = atol = {RTOL:g}, float64, {where}; "
          f"forward + backward of sum(y(t1)^2); peak: {peak_how}")
    print(f"{'t1':>6s} | {'adjoint=False':^30s} | {'adjoint=True':^30s}")
    print(f"{'':>6s} | {'steps':>7s} {'saved MB':>10s} {'peak MB':>10s} | "
          f"{'steps':>7s} {'saved MB':>10s} {'peak MB':>10s}")
    for t1 in args.horizons:
        cells = []
        for adjoint in (False, True):
            if args.device.startswith("cuda"):
                r = measure(args.problem, args.batch, t1, adjoint, args.device)
            else:
                r = _row_in_subprocess(args, t1, adjoint)
            cells.append(f"{r['steps']:7d} {r['saved'] / 2**20:10.3f} {r['peak'] / 2**20:10.1f}")
        print(f"{t1:6g} | {cells[0]} | {cells[1]}", flush=True)


if __name__ == "__main__":
    main()
