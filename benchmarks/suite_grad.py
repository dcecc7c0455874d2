"""Suite ``grad``: gradient time over forward-solve time, all sensitivity modes,
comparisons at equal gradient error, time to first gradient."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from . import frameworks as F
from . import problems as P
from ._util import CacheDir, Config, Report, fmt_time, have, interp_time_at_error, median_time, quiet, rel_err, run_cold

SCIODE_MODES = ("adjoint", "checkpoint", "backsolve", "forward", "discrete")


def problems(quick):
    return [P.lotka_volterra(), P.lorenz(t1=1.0), P.mlp(2, 16, t1=1.0), P.brusselator(64, t1=2.0)]


def comparators(prob):
    return [
        ("diffrax RecursiveCheckpoint", lambda: F.diffrax_grad(prob, "RecursiveCheckpointAdjoint")),
        ("diffrax Backsolve", lambda: F.diffrax_grad(prob, "BacksolveAdjoint")),
        ("torchdiffeq odeint_adjoint", lambda: F.torchdiffeq_grad(prob, adjoint=True)),
        ("CasADi CVODES adjoint", lambda: F.casadi_grad(prob)),
    ]


def solve_time(prob, tol, cfg):
    import sciode
    t_eval = prob.t_obs if prob.cost == "ls" else None
    model = prob.model
    fn = lambda: sciode.solve(model, prob.y0, prob.t_span, params=prob.params, rtol=tol, atol=tol,  # noqa: E731
                              t_eval=t_eval, max_steps=10_000_000)
    t, sol, _ = median_time(fn, cfg)
    return t, sol.stats


def one_problem(prob, tols, cfg, rep, with_comparators, modes):
    t_ref = time.perf_counter()
    _, g_ref, _ = quiet(F.sciode_grad(prob, "forward"))(1e-12, 1e-12)
    t_ref = time.perf_counter() - t_ref
    solve_t = {tol: solve_time(prob, tol, cfg) for tol in tols}
    curves = {}
    rows = []

    def measure(label, make, c):
        try:
            run = make()
        except F.Unavailable as e:
            rep.note(f"{prob.name} {label}: skipped ({e}).")
            return
        for tol in tols:
            try:
                t0 = time.perf_counter()
                quiet(run)(tol, tol)                      # first call: compile / jit / set-up
                first = time.perf_counter() - t0
                t, (v, g, st), _ = median_time(quiet(lambda: run(tol, tol)), c, warmup=False)
            except Exception as e:  # noqa: BLE001
                rows.append([label, f"{tol:.0e}", None, "-", None, None, "-", f"error: {str(e)[:90]}"])
                continue
            err = rel_err(g, g_ref)
            curves.setdefault(label, []).append((err, t))
            peak = st.get("peak_stored_floats") if isinstance(st, dict) else None
            rows.append([label, f"{tol:.0e}", err, fmt_time(t), t / solve_t[tol][0], peak, fmt_time(first), ""])
        print(f"  {prob.name}: {label} done", flush=True)

    for mode in modes:
        measure(f"sciode {mode}", lambda mode=mode: F.sciode_grad(prob, mode), cfg)
    if with_comparators:
        for label, make in comparators(prob):
            slow = label.startswith("torchdiffeq")
            c = Config(quick=True, repeats=1 if cfg.quick else 2, min_time=0.0) if slow else cfg
            measure(label, make, c)
    # ratio to sciode adjoint at the same tolerance
    adj = {r[1]: r for r in rows if r[0] == "sciode adjoint"}
    for r in rows:
        a = adj.get(r[1])
        t_this = next((t for e, t in curves.get(r[0], []) if e == r[2]), None)
        t_adj = next((t for e, t in curves.get("sciode adjoint", []) if a is not None and e == a[2]), None)
        r.insert(5, t_this / t_adj if (t_this and t_adj) else None)
    rep.table(["method", "rtol=atol", "grad rel. error", "time (median)", "time / forward solve",
               "time / sciode adjoint", "peak stored floats", "first call", "note"], rows,
              caption=f"**{prob.name}** ({prob.model.n_states} states, {prob.model.n_params} params, "
                      f"t in {list(prob.t_span)}, cost: {'least squares, %d obs' % len(prob.t_obs) if prob.cost == 'ls' else 'sum of squares of y(t1)'}). "
                      f"Reference: sciode forward sensitivities rtol=atol=1e-12 ({t_ref:.2f} s). "
                      f"sciode dopri5 forward solve: " + ", ".join(f"{tol:.0e}: {fmt_time(t)} ({s['nsteps']} steps)"
                                                                  for tol, (t, s) in solve_t.items()))
    return curves, solve_t


def equal_error_table(all_curves, tols_at, rep):
    rows = []
    for pname, curves in all_curves.items():
        adj = curves.get("sciode adjoint", [])
        for err_a, t_a in adj:
            for label, pts in curves.items():
                if label.startswith("sciode"):
                    continue
                t_o, flag = interp_time_at_error(pts, err_a)
                rows.append([pname, f"{err_a:.1e}", fmt_time(t_a), label, fmt_time(t_o), f"{flag}{t_o / t_a:.3g}"])
    rep.table(["problem", "sciode adjoint grad error", "sciode adjoint time", "other", "other time at that error",
               "other / sciode"], rows,
              caption="Equal gradient error: the other package's time interpolated (log-log) on its "
                      "tolerance sweep at the error sciode's adjoint reached. '>' : the other never got "
                      "that accurate in the sweep (ratio is a lower bound); '<': it was always more "
                      "accurate (upper bound).")


def time_to_first_gradient(cfg, rep):
    rows = []
    with CacheDir() as cache:
        seq = [("sciode adjoint (cold: empty cache)", "grad:sciode-adjoint:lv", cache, "sciode"),
               ("sciode adjoint (warm cache)", "grad:sciode-adjoint:lv", cache, "sciode"),
               ("sciode adjoint (new model, loops cached)", "grad:sciode-adjoint:lv:new", cache, "sciode"),
               ("diffrax RecursiveCheckpoint (jit)", "grad:diffrax-RecursiveCheckpointAdjoint:lv", None, "diffrax"),
               ("torchdiffeq odeint_adjoint", "grad:torchdiffeq:lv", None, "torchdiffeq"),
               ("CasADi CVODES adjoint", "grad:casadi:lv", None, "casadi")]
        for label, task, cdir, mod in seq:
            if not have(mod):
                rep.note(f"TTFG {label}: skipped (`{mod}` missing).")
                continue
            r = run_cold(task, cdir)
            rows.append([label, fmt_time(r.get("import_s")), fmt_time(r.get("first_s")),
                         fmt_time(r.get("second_s")), fmt_time(r.get("cpu_s")), r.get("error", "")])
            print(f"  ttfg {label} done", flush=True)
    with CacheDir() as cache:  # the one-time compile done ahead, then a first gradient
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env["SCIODE_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sciode.cli", "precompile", "--jobs",
                               str(os.cpu_count() or 1)], env=env, capture_output=True, text=True,
                              check=False)
        wall = time.perf_counter() - t0
        rows.append([f"sciode precompile --jobs {os.cpu_count()} (every family, once per installation)",
                     "", fmt_time(wall), "", "", "" if proc.returncode == 0 else proc.stderr[-200:]])
        r = run_cold("grad:sciode-adjoint:lv:new", cache)
        rows.append(["sciode adjoint after precompile (new model)", fmt_time(r.get("import_s")),
                     fmt_time(r.get("first_s")), fmt_time(r.get("second_s")), fmt_time(r.get("cpu_s")),
                     r.get("error", "")])
        print("  ttfg precompile done", flush=True)
    rep.table(["package", "import", "first gradient (model + compile + call)", "second gradient",
               "process CPU", "note"], rows,
              caption="Time to first gradient: 4-parameter Lotka-Volterra least-squares gradient "
                      "(101 observations, rtol=atol=1e-6), each row a fresh process. DESIGN.md aim: "
                      "about 1 s cold, tens of ms from the disk cache.")


def run(cfg: Config) -> Report:
    rep = Report("grad", cfg)
    tols = [1e-6, 1e-8] if cfg.quick else [1e-4, 1e-6, 1e-8, 1e-10]
    rep.section("Gradient cost over forward cost, every mode (warm)")
    all_curves = {}
    for i, prob in enumerate(problems(cfg.quick)):
        # --quick: comparators on Lotka-Volterra, Lorenz and the MLP (the issue's
        # equal-error targets), not on the Brusselator (minutes in torchdiffeq)
        with_cmp = (not cfg.quick) or i < 3
        modes = SCIODE_MODES if not cfg.quick or i < 2 else ("adjoint", "forward")
        curves, _ = one_problem(prob, tols, cfg, rep, with_cmp, modes)
        all_curves[prob.name] = curves
        if not with_cmp:
            rep.note(f"{prob.name}: comparators and modes other than adjoint/forward skipped in --quick.")
    rep.section("Equal-error comparison")
    equal_error_table(all_curves, tols, rep)
    if cfg.cold:
        rep.section("Time to first gradient")
        time_to_first_gradient(cfg, rep)
    return rep
