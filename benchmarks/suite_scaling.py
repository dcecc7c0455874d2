"""Suite ``scaling``: adjoint vs forward sensitivities as the number of parameters
grows; stored floats of adjoint / checkpoint / backsolve as the number of steps grows."""

from __future__ import annotations

import time

from . import frameworks as F
from . import problems as P
from ._util import Config, Report, fmt_time, median_time, quiet, run_cold


def param_scaling(cfg, rep, tol=1e-8):
    import sciode
    widths = [1, 3, 33] if cfg.quick else [1, 3, 33, 333]
    rows = []
    for h in widths:
        prob = P.mlp(1, h, t1=5.0, scale=1.0)
        t0 = time.perf_counter()
        model = prob.model
        fn = lambda: sciode.solve(model, prob.y0, prob.t_span, params=prob.params, rtol=tol, atol=tol)  # noqa: E731
        t_solve, sol, _ = median_time(fn, cfg)
        t_setup = time.perf_counter() - t0
        row = [model.n_params, h, sol.stats["nsteps"], fmt_time(t_solve)]
        for mode in ("adjoint", "forward"):
            run = quiet(F.sciode_grad(prob, mode))
            t0 = time.perf_counter()
            run(tol, tol)
            first = time.perf_counter() - t0
            c = cfg if model.n_params < 500 else Config(quick=True, repeats=3, min_time=0.0)
            t, _, _ = median_time(lambda: run(tol, tol), c, warmup=False)
            row += [fmt_time(t), t / t_solve]
            row.append(fmt_time(first))
        row.append(fmt_time(t_setup))
        rows.append(row)
        print(f"  mlp 1-{h}-1 done", flush=True)
    rep.table(["params", "hidden", "steps", "solve", "adjoint", "adjoint / solve", "adjoint first call",
               "forward", "forward / solve", "forward first call", "model + solve compile"], rows,
              caption=f"`x' = W2 tanh(W1 x + b1) + b2`, 1 state, hidden width h (3h + 1 parameters), "
                      f"t in [0, 5], terminal cost x(t1)^2, dopri5 rtol=atol={tol:g}. Adjoint cost should "
                      "stay a small multiple of the solve; forward grows with the parameter count.")


def memory_scaling(cfg, rep, tol=1e-8):
    spans = [10.0, 100.0] if cfg.quick else [10.0, 100.0, 1000.0]
    rows = []
    base = P.lotka_volterra(data=False)
    base.params = P.LV_TRUE.copy()
    model = base.model
    for t1 in spans:
        prob = P.lotka_volterra(t1=t1, data=False)
        prob.params = P.LV_TRUE.copy()
        prob.__dict__["model"] = model
        for mode in ("adjoint", "checkpoint", "backsolve", "discrete", "forward"):
            run = quiet(F.sciode_grad(prob, mode))
            c = Config(quick=True, repeats=3, min_time=0.0)
            try:
                t, (v, g, st), _ = median_time(lambda: run(tol, tol), c)
            except Exception as e:  # noqa: BLE001
                rows.append([t1, mode, None, None, "-", f"error: {str(e)[:80]}"])
                continue
            fwd = st.get("forward", {})
            rows.append([t1, mode, fwd.get("nsteps"), st.get("peak_stored_floats"), fmt_time(t), ""])
        print(f"  memory t1={t1} done", flush=True)
    rep.table(["t1", "mode", "forward steps", "peak stored floats", "time", "note"], rows,
              caption=f"Lotka-Volterra (periodic, so steps grow linearly with t1), terminal cost, "
                      f"dopri5 rtol=atol={tol:g}; `res.stats['peak_stored_floats']`. Adjoint and discrete "
                      "store the dense trajectory (linear in steps), checkpoint a bounded number of "
                      "segments, backsolve O(1).")


def _loops_only_cache() -> str:
    """A fresh SCIODE_CACHE_DIR that shares this installation's compiled loops
    (its ``numba`` folder is a link) but holds no model kernels: "cold kernel
    cache, loops compiled", as a user meets a new model."""
    import os
    import tempfile

    from sciode import _numba_cache

    path = tempfile.mkdtemp(prefix="sciode_bench_kernels_")
    loops = _numba_cache.numba_cache_root()
    loops.mkdir(parents=True, exist_ok=True)
    os.symlink(loops, os.path.join(path, "numba"))
    return path


def matrix_form(cfg, rep):
    """Declaration to first gradient, and warm gradients, for the neural field
    ``x' = W2 tanh(W1 x + b1) + b2`` (2 states) declared in matrix form, beside
    the same model declared entry by entry and diffrax (each in a fresh process)."""
    import shutil

    widths = [2, 20, 100] if cfg.quick else [2, 20, 100, 1000]
    rows = []
    for h in widths:
        p = 5 * h + 2
        tasks = [("sciode adjoint, matrix form", f"grad:sciode-adjoint+tsit5:mlpm{h}", True),
                 ("sciode adjoint, entry by entry", f"grad:sciode-adjoint+tsit5:mlps{h}", True),
                 ("diffrax RecursiveCheckpointAdjoint", f"grad:diffrax-RecursiveCheckpointAdjoint+Tsit5:mlpm{h}", False),
                 ("diffrax BacksolveAdjoint", f"grad:diffrax-BacksolveAdjoint+Tsit5:mlpm{h}", False)]
        for label, task, sciode_task in tasks:
            if h >= 1000 and "entry by entry" in label:
                rows.append([p, label, "-", "-", "-", "not run: minutes in SymPy (see the note)"])
                continue
            cache = _loops_only_cache() if sciode_task else None
            try:
                r = run_cold(task, cache)
            finally:
                if cache:
                    shutil.rmtree(cache, ignore_errors=True)
            rows.append([p, label, fmt_time(r.get("first_s")), fmt_time(r.get("warm_s")),
                         fmt_time(r.get("cpu_s")), r.get("error", "")])
        print(f"  matrix form h={h} done", flush=True)
    rep.table(["params", "declaration", "model to first gradient", "warm gradient", "child CPU", "error"], rows,
              caption="2-h-2 neural field, terminal cost |x(1)|^2, Tsit5, rtol=atol=1e-6; each row a fresh "
                      "process; sciode with its loops compiled and an empty kernel cache (a new model), "
                      "diffrax from jit tracing. Warm gradient: median of five calls after the first two.")


def run(cfg: Config) -> Report:
    rep = Report("scaling", cfg)
    rep.section("Matrix-form models: declaration to first gradient")
    matrix_form(cfg, rep)
    rep.section("Parameters: adjoint vs forward")
    param_scaling(cfg, rep)
    rep.section("Memory: stored floats vs steps")
    memory_scaling(cfg, rep)
    return rep
