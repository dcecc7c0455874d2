"""Suite ``stiff``: Robertson, Van der Pol (mu=1000), 1-D Brusselator at growing size."""

from __future__ import annotations

import numpy as np

from . import frameworks as F
from . import problems as P
from ._util import CacheDir, Config, Report, fmt_time, have, median_time, quiet, run_cold

STIFF_SCIODE = ("rodas4", "rodas5", "kvaerno5")


def sciode_stiff_methods(rep):
    from sciode.cpu.solvers import method_names
    names = method_names()
    out = [m for m in STIFF_SCIODE if m in names]
    for m in STIFF_SCIODE:
        if m not in names:
            rep.note(f"sciode {m}: skipped (not registered in sciode.cpu.solvers.method_names()).")
    return out


def scaled_err(y, ref, floor):
    """max_i |y_i - ref_i| / (|ref_i| + floor): relative where the solution is
    large, absolute (in units of the problem's atol scale) where it is small."""
    y, ref = np.asarray(y, float), np.asarray(ref, float)
    return float(np.max(np.abs(y - ref) / (np.abs(ref) + floor)))


def reference(prob, rtol=1e-11):
    from scipy.integrate import solve_ivp
    p = prob.params
    sol = solve_ivp(prob.np_rhs(), prob.t_span, prob.y0, method="Radau", rtol=rtol,
                    atol=prob.atol_scale * rtol, jac=lambda t, y: prob.jac(t, y, p))
    assert sol.success, sol.message
    return sol.y[:, -1]


def dense_jac_problem(prob):
    """The same problem with a dense Jacobian (for LSODA, which takes no sparse matrix)."""
    q = prob.with_params(prob.params)
    jac = prob.jac
    q.jac = lambda t, y, p: np.asarray(jac(t, y, p).toarray()) if hasattr(jac(t, y, p), "toarray") else jac(t, y, p)
    return q


def solvers_for(prob, methods, sizes_note=""):
    out = [(f"sciode {m}", (lambda m=m: F.sciode_solve(prob, m))) for m in methods]
    out += [("scipy BDF (+jac)", lambda: F.scipy_solve(prob, "BDF")),
            ("scipy Radau (+jac)", lambda: F.scipy_solve(prob, "Radau")),
            ("scipy LSODA (+jac)", lambda: F.scipy_solve(dense_jac_problem(prob), "LSODA")),
            ("CasADi CVODES", lambda: F.casadi_solve(prob))]
    return out


def sweep(prob, tols, cfg, rep, methods, ref, floor):
    rows, res = [], {}
    for label, make in solvers_for(prob, methods):
        try:
            run = make()
        except F.Unavailable as e:
            rep.note(f"{prob.name} {label}: skipped ({e}).")
            continue
        for tol in tols:
            c = cfg if not label.startswith("scipy") else Config(quick=True, repeats=3 if not cfg.quick else 2,
                                                                  min_time=0.0)
            try:
                t, out, _ = median_time(quiet(lambda: run(tol, prob.atol_scale * tol)), c)
            except Exception as e:  # noqa: BLE001  (a solver that fails is reported, not fatal)
                rows.append([label, f"{tol:.0e}", None, "-", None, None, None, None, f"error: {str(e)[:80]}"])
                continue
            err = scaled_err(out["y"], ref, floor)
            res.setdefault(label, []).append({"tol": tol, "time": t, "err": err})
            rows.append([label, f"{tol:.0e}", err, fmt_time(t), out.get("nfev"), out.get("nsteps"),
                         out.get("njev"), out.get("nlu"), "" if out.get("success", True) else "FAILED"])
        print(f"  {prob.name}: {label} done", flush=True)
    base = {r["tol"]: r["time"] for r in res.get(f"sciode {methods[0]}", [])} if methods else {}
    for r in rows:
        tol = float(r[1])
        lab = r[0]
        tt = next((x["time"] for x in res.get(lab, []) if x["tol"] == tol), None)
        r.insert(4, (tt / base[tol]) if (tt and tol in base) else None)
    ref_label = f"sciode {methods[0]}" if methods else "-"
    rep.table(["solver", "rtol", "error", "time (median)", f"time / {ref_label}", "nfev", "steps", "njev",
               "nlu", "note"], rows,
              caption=f"**{prob.name}** on {list(prob.t_span)}, atol = {prob.atol_scale:g} * rtol; error = "
                      f"max_i |y_i - ref_i| / (|ref_i| + {floor:g}) at t1, reference scipy Radau rtol=1e-11.")
    return res


def brusselator_scaling(cfg, rep, methods):
    sizes = [16, 64] if cfg.quick else [16, 64, 256]
    tol = 1e-6
    rows = []
    for m in sizes + ([] if cfg.quick else [1024]):
        prob = P.brusselator(m)
        only_sciode = m == 1024
        ref = reference(prob, rtol=1e-10) if m <= 256 else None
        labels = solvers_for(prob, methods)
        if only_sciode:
            labels = labels[:len(methods)]
        for label, make in labels:
            try:
                run = make()
            except F.Unavailable as e:
                rep.note(f"{prob.name} {label}: skipped ({e}).")
                continue
            c = Config(quick=True, repeats=2 if cfg.quick else 3, min_time=0.0)
            try:
                import time as _t
                t_first = _t.perf_counter()
                run(tol, tol)
                t_first = _t.perf_counter() - t_first
                t, out, _ = median_time(quiet(lambda: run(tol, tol)), c, warmup=False)
            except Exception as e:  # noqa: BLE001
                rows.append([prob.name, 2 * m, label, "-", "-", None, None, None, f"error: {str(e)[:80]}"])
                continue
            err = scaled_err(out["y"], ref, 1.0) if ref is not None else None
            rows.append([prob.name, 2 * m, label, fmt_time(t), fmt_time(t_first), err, out.get("nsteps"),
                         out.get("nlu"), "" if out.get("success", True) else "FAILED"])
            print(f"  {prob.name}: {label} done ({t:.3g} s)", flush=True)
    rep.table(["problem", "states", "solver", "time (warm median)", "first call (compile/setup)", "error",
               "steps", "nlu", "note"], rows,
              caption=f"Brusselator (Hairer-Wanner BRUS, alpha=1/50, t in [0, 10]), rtol=atol={tol:g}; "
                      "scipy gets the sparse analytic Jacobian (LSODA a dense one); error vs scipy Radau "
                      "rtol=1e-10 (max relative).")


def run(cfg: Config) -> Report:
    rep = Report("stiff", cfg)
    methods = sciode_stiff_methods(rep)
    tols = [1e-4, 1e-6] if cfg.quick else [1e-4, 1e-5, 1e-6, 1e-7, 1e-8]
    rep.section("Work-precision (warm)")
    for prob, floor in ((P.robertson(), 1e-6), (P.van_der_pol(), 1.0)):
        ref = reference(prob)
        sweep(prob, tols, cfg, rep, methods, ref, floor)
    rep.section("Brusselator: time vs number of states")
    brusselator_scaling(cfg, rep, methods)
    if cfg.cold and not cfg.quick and methods and have("sciode"):
        rep.section("Cold start (fresh process), Robertson rodas4 rtol=1e-8")
        rows = []
        with CacheDir() as cache:
            for lab, cache_state in (("cold: empty cache", cache), ("warm cache", cache)):
                r = run_cold(f"solve:sciode-{methods[0]}:robertson", cache_state)
                rows.append([f"sciode {methods[0]} ({lab})", fmt_time(r.get("import_s")),
                             fmt_time(r.get("first_s")), fmt_time(r.get("second_s")), r.get("error", "")])
        rep.table(["solver", "import", "first solve", "second solve", "note"], rows)
    return rep
