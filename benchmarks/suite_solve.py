"""Suite ``solve``: explicit work-precision (Lorenz, Lotka--Volterra), per-step cost, cold start."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import frameworks as F
from . import problems as P
from ._util import (CacheDir, Config, Report, explicit_loop, fmt_time, interp_time_at_error, median_time,
                    have, quiet, rel_err, run_cold)

C_SOURCE = Path(__file__).resolve().parent / "c_ref" / "dopri5_lorenz.c"


def solvers_for(prob):
    return [
        ("sciode dopri5", lambda: F.sciode_solve(prob, "dopri5")),
        ("sciode tsit5", lambda: F.sciode_solve(prob, "tsit5")),
        ("sciode dop853", lambda: F.sciode_solve(prob, "dop853")),
        ("scipy RK45", lambda: F.scipy_solve(prob, "RK45")),
        ("scipy DOP853", lambda: F.scipy_solve(prob, "DOP853")),
        ("diffrax Dopri5", lambda: F.diffrax_solve(prob, "Dopri5")),
        ("diffrax Tsit5", lambda: F.diffrax_solve(prob, "Tsit5")),
        ("torchdiffeq dopri5", lambda: F.torchdiffeq_solve(prob, "dopri5")),
    ]


def reference_end(prob):
    from scipy.integrate import solve_ivp
    sol = solve_ivp(prob.np_rhs(), prob.t_span, prob.y0, method="DOP853", rtol=1e-13, atol=1e-13)
    return sol.y[:, -1]


def work_precision(prob, tols, cfg, rep):
    ref = reference_end(prob)
    results = {}   # label -> list of dicts per tol
    for label, make in solvers_for(prob):
        try:
            run = make()
        except F.Unavailable as e:
            rep.note(f"{label}: skipped ({e}).")
            continue
        rows = []
        for tol in tols:
            # torchdiffeq at tight tolerances takes seconds per call: fewer repeats
            c = cfg if not label.startswith("torchdiffeq") else Config(quick=True, repeats=2, min_time=0.0)
            t, out, nrep = median_time(quiet(lambda: run(tol, tol)), c)
            rows.append({"tol": tol, "time": t, "err": rel_err(out["y"], ref), "nfev": out.get("nfev"),
                         "nsteps": out.get("nsteps"), "ok": out.get("success", True), "repeats": nrep})
        results[label] = rows
        print(f"  {prob.name}: {label} done", flush=True)
    base = {r["tol"]: r["time"] for r in results.get("sciode dopri5", [])}
    table = []
    for label, rows in results.items():
        for r in rows:
            ratio = r["time"] / base[r["tol"]] if r["tol"] in base else None
            ns = r["time"] / r["nsteps"] * 1e9 if r["nsteps"] else None
            table.append([label, f"{r['tol']:.0e}", r["err"], fmt_time(r["time"]), r["nfev"],
                          r["nsteps"] if r["nsteps"] is not None else "-", ns,
                          ratio, "" if r["ok"] else "FAILED"])
    rep.table(["solver", "rtol=atol", "rel. error at t1", "time (median)", "nfev", "steps", "ns/step",
               "time / sciode dopri5", "note"], table,
              caption=f"**{prob.name}** on {list(prob.t_span)}, error vs scipy DOP853 rtol=atol=1e-13.")
    return results


def equal_error_ratio(results, ref_label, other_label, tol):
    """(other time at ref's error) / (ref time), flag from the interpolation."""
    if ref_label not in results or other_label not in results:
        return None, "missing"
    r = next((x for x in results[ref_label] if x["tol"] == tol), None)
    if r is None:
        return None, "missing"
    t_other, flag = interp_time_at_error([(x["err"], x["time"]) for x in results[other_label]], r["err"])
    return t_other / r["time"], flag


def c_reference(rtol, t1):
    """Compile and run the C Dormand--Prince Lorenz loop; None when gcc is missing."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None or not C_SOURCE.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="sciode_cref_") as d:
        exe = os.path.join(d, "dopri5_lorenz")
        subprocess.run([gcc, "-O2", "-o", exe, str(C_SOURCE), "-lm"], check=True, capture_output=True)
        out = subprocess.run([exe, repr(rtol), repr(t1)], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def per_step(cfg, rep, tol=1e-8):
    import sciode
    rows = []
    lor10, lor20 = P.lorenz(10.0), P.lorenz(20.0)
    model = lor10.model
    lor20.__dict__["model"] = model
    # fixed per-call cost: a one-step solve
    with explicit_loop("never"):
        tiny, _, _ = median_time(lambda: sciode.solve(model, lor10.y0, (0.0, 1e-3), params=lor10.params,
                                                      rtol=tol, atol=tol), cfg)
    # The generic loop beside the per-model specialised one (sciode.cpu.specialized),
    # each forced; every accepted step kept (solve's default), or the output at t1
    # only, as the C loop does.
    tiers = {}
    for which, label in (("never", "generic loop"), ("always", "specialised loop")):
        for output, t_eval in (("all steps", None), ("t_eval=[t1]", "t1")):
            for name, prob in (("t1=10", lor10), ("t1=20", lor20)):
                run = F.sciode_solve(prob, "dopri5", t_eval=None if t_eval is None else [prob.t_span[1]])
                with explicit_loop(which):
                    run(tol, tol)  # compiles the specialised loop once (cached on disk)
                    t, out, _ = median_time(lambda: run(tol, tol), cfg)
                tiers[(label, output, name)] = (t, out["nsteps"], out["nfev"])
    per_tier = {}
    for label in ("generic loop", "specialised loop"):
        for output in ("all steps", "t_eval=[t1]"):
            (ta_, na_, fa_), (tb_, nb_, fb_) = tiers[(label, output, "t1=10")], tiers[(label, output, "t1=20")]
            m_ = (tb_ - ta_) / (nb_ - na_) if nb_ > na_ else float("nan")
            per_tier[(label, output)] = (ta_ / na_, m_)
            rows.append([f"sciode dopri5, {label}, {output} (total / steps, t1=10)", na_, fa_, fmt_time(ta_),
                         ta_ / na_ * 1e9])
            rows.append([f"sciode dopri5, {label}, {output} (marginal, t1 10 -> 20)", nb_ - na_, fb_ - fa_,
                         fmt_time(tb_ - ta_), m_ * 1e9])
    rows.append(["sciode per-call overhead (solve over [0, 1e-3])", None, None, fmt_time(tiny), None])
    c = None
    try:
        c10, c20 = c_reference(tol, 10.0), c_reference(tol, 20.0)
        if c10 is not None:
            c = c10
            rows.append(["C dopri5 (gcc -O2), t1=10", c10["nsteps"], c10["nfev"],
                         fmt_time(c10["seconds"]), c10["ns_per_step"]])
            rows.append(["C dopri5 (gcc -O2), t1=20", c20["nsteps"], c20["nfev"],
                         fmt_time(c20["seconds"]), c20["ns_per_step"]])
    except (subprocess.CalledProcessError, OSError, ValueError) as e:
        rep.note(f"C reference skipped: {e}")
    rep.table(["measure", "steps", "nfev", "time", "ns / step"], rows,
              caption=f"Per-step cost, Lorenz, rtol=atol={tol:g}.")
    if c is not None:
        rep.note(f"C end-state error vs sciode {rel_err(c['y'], run_end(model, lor10, tol)):.1e}.")
        for (label, output), (tot, marg) in per_tier.items():
            rep.note(f"{label} ({output}) / C per step: total {tot * 1e9 / c['ns_per_step']:.2f}x, "
                     f"marginal {marg * 1e9 / c['ns_per_step']:.2f}x (issue 18 goal: within 1.2x).")
    else:
        rep.note("C reference skipped (no gcc).")


def dop853_vs_numbalsoda(cfg, rep):
    """sciode's dop853 (both loops) beside numbalsoda's (Hairer's dop853.f in
    C++; its right-hand side a hand-written ``numba.cfunc``), same tolerances
    and the same 101 output times, each call from Python (issue 18)."""
    import sciode
    if not have("numbalsoda"):
        rep.note("numbalsoda: skipped, not installed (`pip install numbalsoda`; needs gfortran and cmake).")
        return
    import numba
    import numbalsoda

    @numba.cfunc(numbalsoda.lsoda_sig)
    def lorenz_c(t, u, du, p):
        du[0] = p[0] * (u[1] - u[0])
        du[1] = u[0] * (p[1] - u[2]) - u[1]
        du[2] = u[0] * u[1] - p[2] * u[2]

    @numba.cfunc(numbalsoda.lsoda_sig)
    def lv_c(t, u, du, p):
        du[0] = p[0] * u[0] - p[1] * u[0] * u[1]
        du[1] = -p[2] * u[1] + p[3] * u[0] * u[1]

    rows = []
    for prob, cf in ((P.lorenz(10.0), lorenz_c), (P.lotka_volterra(data=False), lv_c)):
        p = np.asarray(prob.params, dtype=float)
        te = np.linspace(*prob.t_span, 101)
        ref = reference_at(prob, te)
        for tol in (1e-6, 1e-8, 1e-10):
            t_nb, (u, ok), _ = median_time(
                lambda: numbalsoda.dop853(cf.address, prob.y0, te, data=p, rtol=tol, atol=tol), cfg)
            row = [prob.name, f"{tol:.0e}", fmt_time(t_nb), f"{np.abs(u - ref).max():.1e}"]
            for which in ("never", "always"):
                with explicit_loop(which):
                    def run():
                        return sciode.solve(prob.model, prob.y0, prob.t_span, params=p, t_eval=te,
                                            method="dop853", rtol=tol, atol=tol)
                    run()
                    t, sol, _ = median_time(run, cfg)
                row += [fmt_time(t), f"{t / t_nb:.2f}"]
            row += [sol.stats["nfev"], f"{np.abs(sol.y - ref).max():.1e}"]
            rows.append(row)
    rep.table(["problem", "rtol=atol", "numbalsoda dop853", "its max error", "sciode generic loop",
               "/ numbalsoda", "sciode specialised loop", "/ numbalsoda", "sciode nfev", "sciode max error"],
              rows, caption="DOP853 beside numbalsoda (issue 18 goal: sciode at most 1x), 101 output "
                            "times on [0, 10]; errors against SciPy DOP853 at 1e-13.")


def reference_at(prob, te):
    from scipy.integrate import solve_ivp
    return solve_ivp(prob.np_rhs(), prob.t_span, prob.y0, method="DOP853", rtol=1e-13, atol=1e-13,
                     t_eval=te).y.T


def run_end(model, prob, tol):
    import sciode
    return sciode.solve(model, prob.y0, prob.t_span, params=prob.params, rtol=tol, atol=tol).y[-1]


def cold_start(cfg, rep):
    rows = []
    tasks = [("sciode dopri5", "solve:sciode-dopri5:lorenz"), ("scipy RK45", "solve:scipy-RK45:lorenz"),
             ("diffrax Dopri5 (jit)", "solve:diffrax-Dopri5:lorenz"),
             ("torchdiffeq dopri5", "solve:torchdiffeq:lorenz"), ("CasADi CVODES", "solve:casadi:lorenz")]
    with CacheDir() as cache:
        for label, task in tasks:
            mod = {"sciode": "sciode", "scipy": "scipy", "diffrax": "diffrax", "torchdiffeq": "torchdiffeq",
                   "CasADi": "casadi"}[label.split()[0]]
            from ._util import have
            if not have(mod):
                rep.note(f"cold {label}: skipped (`{mod}` missing)")
                continue
            r = run_cold(task, cache)
            if "error" in r:
                rows.append([label + " (cold)", "-", "-", "-", r["error"]])
                continue
            rows.append([label + (" (cold: empty cache)" if mod == "sciode" else " (fresh process)"),
                         fmt_time(r["import_s"]), fmt_time(r["first_s"]), fmt_time(r["second_s"]), ""])
            if mod == "sciode":
                r2 = run_cold(task, cache)
                rows.append([label + " (warm cache)", fmt_time(r2.get("import_s")), fmt_time(r2.get("first_s")),
                             fmt_time(r2.get("second_s")), r2.get("error", "")])
                r3 = run_cold(task + ":new", cache)
                rows.append([label + " (new model, loops cached)", fmt_time(r3.get("import_s")),
                             fmt_time(r3.get("first_s")), fmt_time(r3.get("second_s")), r3.get("error", "")])
            print(f"  cold {label} done", flush=True)
    rep.table(["solver", "import", "first solve (incl. model/compile)", "second solve", "note"], rows,
              caption="Cold start, Lorenz [0, 10] rtol=atol=1e-8, each row a fresh subprocess "
                      "(sciode: fresh SCIODE_CACHE_DIR, then the same directory again).")


def run(cfg: Config) -> Report:
    rep = Report("solve", cfg)
    tols = [1e-6, 1e-8] if cfg.quick else [1e-4, 1e-6, 1e-8, 1e-10]
    rep.section("Work-precision (warm: median after a compiling first call)")
    all_res = {}
    for prob in (P.lorenz(), P.lotka_volterra(data=False)):
        prob.params = P.LV_TRUE.copy() if prob.name == "lotka_volterra" else prob.params
        all_res[prob.name] = work_precision(prob, tols, cfg, rep)
    rep.section("Target ratios (Lorenz, rtol=atol=1e-8)")
    res = all_res["lorenz"]
    rows = []
    for other, goal in (("scipy RK45", ">= 50x"), ("scipy DOP853", ""), ("diffrax Dopri5", ""),
                        ("diffrax Tsit5", ""), ("torchdiffeq dopri5", "")):
        same = next((x for x in res.get(other, []) if x["tol"] == 1e-8), None)
        base = next((x for x in res.get("sciode dopri5", []) if x["tol"] == 1e-8), None)
        if same is None or base is None:
            rows.append([other, "-", "-", "-", goal + " (skipped)"])
            continue
        eq, flag = equal_error_ratio(res, "sciode dopri5", other, 1e-8)
        rows.append([other, same["time"] / base["time"], (flag + f"{eq:.3g}") if eq else "-",
                     f"{same['err']:.1e} vs {base['err']:.1e}", goal])
    rep.table(["other", "other / sciode dopri5 (same tol)", "other / sciode dopri5 (equal error)",
               "errors (other vs sciode)", "goal"], rows,
              caption="Ratio > 1: sciode is faster. '>' / '<': the other curve had to be clamped "
                      "(it never reached sciode's error), so the value is a bound.")
    rep.section("Per-step cost")
    per_step(cfg, rep)
    rep.section("DOP853 beside numbalsoda")
    dop853_vs_numbalsoda(cfg, rep)
    if cfg.cold and not cfg.quick:
        rep.section("Cold start (fresh process)")
        cold_start(cfg, rep)
    else:
        rep.note("cold start: skipped (--no-cold or --quick; `grad` measures sciode's cold start).")
    return rep
