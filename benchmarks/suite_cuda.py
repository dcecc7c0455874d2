"""Suite ``cuda``: ensembles on a GPU (issue 15): ``solve_ensemble(...,
device="cuda")`` against a hand-written CUDA dopri5 Lorenz kernel (the limit,
``benchmarks/cuda_hand.py``), torchdiffeq on CUDA tensors and diffrax
``jit(vmap)`` on a GPU (each when installed), for 10^4, 10^5, 10^6 members
(10^4 only with ``--quick``).  Lorenz, rho = linspace(0, 28, N), t in [0, 1],
rtol = atol = 1e-6, float64, output at t = 1.  Kernel times exclude the
host copies (device arrays in and out, synchronized); the end-to-end
``solve_ensemble`` row includes them.  Needs a CUDA device: without one the
suite prints a note and times nothing (a CPU run is never a GPU result).
"""

from __future__ import annotations

import time

import numpy as np

from ._util import Config, Report, fmt_time, have

RTOL = 1e-6


def _timed(fn, sync, repeats=5):
    fn()
    sync()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def run(cfg: Config) -> Report:
    from sciode import cuda as scuda

    rep = Report("cuda", cfg)
    if not scuda.available():
        rep.note("no CUDA device: nothing timed (run on a machine with an NVIDIA GPU).")
        return rep
    from numba import cuda

    name = cuda.get_current_device().name
    rep.note(f"GPU: {name.decode() if isinstance(name, bytes) else name}")
    sizes = (10_000,) if cfg.quick else (10_000, 100_000, 1_000_000)
    rows = [_size_row(N) for N in sizes]
    rep.table(["members", "hand kernel", "sciode kernel", "sciode / hand", "solve_ensemble (host in/out)",
               "max rel. diff to hand", "torchdiffeq (CUDA)", "diffrax jit(vmap)",
               "sciode member gradients", "diffrax vmap(grad)"], rows)
    rep.note("Targets (issue 15): within 1.5x of the hand kernel; >= 100x torchdiffeq and >= 10x "
             "diffrax at 10^5; member gradients >= 10x diffrax at 10^5.")
    return rep


def _size_row(N):
    """One table row: the hand kernel, sciode's kernel and the end-to-end call at ``N``."""
    from numba import cuda

    import sciode
    from sciode import cuda as scuda
    from sciode.codegen import model_kernels
    from sciode.methods.tableaus import EXPLICIT_TABLEAUS

    from . import cuda_hand
    from .suite_ensemble import problem

    model, P, y0 = problem(N)
    mk = model_kernels(model)
    Pd = cuda.to_device(P)
    Zd = cuda.to_device(np.tile(y0, (N, 1)))
    rho = cuda.to_device(np.ascontiguousarray(P[:, 1]))
    out = cuda.device_array((N, 3))
    steps = cuda.device_array(N, dtype=np.int64)
    blocks = (N + 127) // 128
    t_hand = _timed(lambda: cuda_hand.lorenz_dopri5[blocks, 128](rho, 1.0, RTOL, RTOL, out, steps),
                    cuda.synchronize)
    atol = np.full(3, RTOL)
    te = np.array([0.0, 1.0])
    tab = EXPLICIT_TABLEAUS["dopri5"]
    t_ours = _timed(lambda: scuda.solve(mk, Pd, Zd, 0.0, 1.0, te, tab, RTOL, atol, to_host=False),
                    cuda.synchronize)
    kw = {"rtol": RTOL, "atol": RTOL, "device": "cuda"}
    t_e2e = _timed(lambda: sciode.solve_ensemble(model, y0, (0.0, 1.0), P, **kw), cuda.synchronize)
    ours = sciode.solve_ensemble(model, y0, (0.0, 1.0), P, **kw)
    hand = out.copy_to_host()
    agree = float(np.max(np.abs(ours.y[:, -1] - hand) / (1e-6 + np.abs(hand))))
    x, y, z = model.states
    cost = sciode.Cost(terminal=x**2 + y**2 + z**2)
    t_grad = _timed(lambda: sciode.value_and_grad_ensemble(model, cost, y0, (0.0, 1.0), P, **kw),
                    cuda.synchronize, repeats=3)
    return [N, fmt_time(t_hand), fmt_time(t_ours), f"{t_ours / t_hand:.2f}", fmt_time(t_e2e),
            f"{agree:.1e}", _torchdiffeq(P, y0, N), _diffrax(P, y0), fmt_time(t_grad),
            _diffrax(P, y0, grad=True)]


def _torchdiffeq(P, y0, N):
    if not (have("torch") and have("torchdiffeq")):
        return "-"
    import torch
    import torchdiffeq

    if not torch.cuda.is_available():
        return "-"
    dev = torch.device("cuda")
    Pt = torch.tensor(P, dtype=torch.float64, device=dev)
    Y0 = torch.tensor(np.tile(y0, (N, 1)), dtype=torch.float64, device=dev)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64, device=dev)

    def f(_t, u):
        x, y, z = u.unbind(-1)
        s, r, b = Pt.unbind(-1)
        return torch.stack([s * (y - x), x * (r - z) - y, x * y - b * z], -1)

    with torch.no_grad():
        return fmt_time(_timed(lambda: torchdiffeq.odeint(f, Y0, t, rtol=RTOL, atol=RTOL),
                               torch.cuda.synchronize, repeats=2))


def _diffrax(P, y0, grad=False):
    if not (have("jax") and have("diffrax")):
        return "-"
    import jax

    if not any(d.platform == "gpu" for d in jax.devices()):
        return "-"
    from .suite_ensemble import diffrax_runners

    fwd, g = diffrax_runners(P, y0)["diffrax jit(vmap)"]
    return fmt_time(_timed(g if grad else fwd, lambda: None, repeats=3))
