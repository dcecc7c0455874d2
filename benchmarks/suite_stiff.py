"""Suite ``stiff``: Robertson, Van der Pol (mu=1000), 1-D Brusselator at growing size;
the variable-order BDF beside the one-step methods and CVODES (Robertson, HIRES,
forward sensitivities on Robertson).

``python -m benchmarks.suite_stiff --bdf`` runs only the BDF section."""

from __future__ import annotations

import numpy as np

from . import frameworks as F
from . import problems as P
from ._util import CacheDir, Config, Report, fmt_time, have, median_time, quiet, run_cold

STIFF_SCIODE = ("rodas4", "rodas5", "kvaerno5", "bdf")


def _made(rep, name, label, make):
    """``make()``, or ``None`` with a note where that solver is unavailable here."""
    try:
        return make()
    except F.Unavailable as e:
        rep.note(f"{name} {label}: skipped ({e}).")
        return None


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
        run = _made(rep, prob.name, label, make)
        if run is None:
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
        ref = reference(prob, rtol=1e-10) if m <= 256 else None
        labels = solvers_for(prob, methods)
        if m == 1024:  # SciPy's solvers take minutes here; CVODES (CasADi) stays
            labels = labels[:len(methods)] + [lab for lab in labels if lab[0] == "CasADi CVODES"]
        for label, make in labels:
            run = _made(rep, prob.name, label, make)
            if run is None:
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


def casadi_forward_grad(prob):
    """CVODES through CasADi, ``J = |y(t1)|^2`` and ``dJ/dp`` by CasADi's forward
    mode through the integrator (forward sensitivities, one direction per parameter)."""
    ca, dae = F._casadi_ode(prob)
    t0, t1 = prob.t_span
    n_p = prob.model.n_params
    cache = {}

    def run(rtol, atol):
        key = (rtol, atol)
        if key not in cache:
            Fi = ca.integrator("F", "cvodes", dae, t0, t1, {"reltol": rtol, "abstol": atol,
                                                           "max_num_steps": 10_000_000})
            p = ca.MX.sym("p", n_p)
            J = ca.sumsqr(Fi(x0=ca.DM(prob.y0), p=p)["xf"])
            cache[key] = ca.Function("G", [p], [J, ca.jtimes(J, p, ca.DM.eye(n_p), False)])
        J, g = cache[key](prob.params)
        return float(J), np.asarray(g).ravel()
    return run


def bdf_section(cfg, rep, rtol=1e-6):
    """``bdf`` beside ``kvaerno5``, ``rodas4``, SciPy's BDF and CVODES at one tolerance:
    Robertson and HIRES solves, and forward sensitivities on Robertson."""
    import time as _t

    rows = []
    for prob, floor in ((P.robertson(), 1e-6), (P.hires(), 1e-4)):
        ref = reference(prob, rtol=1e-12)
        atol = prob.atol_scale * rtol
        labels = [(f"sciode {m}", (lambda m=m, prob=prob: F.sciode_solve(prob, m)))
                  for m in ("bdf", "kvaerno5", "rodas4")]
        labels += [("scipy BDF (+jac)", lambda prob=prob: F.scipy_solve(prob, "BDF")),
                   ("CasADi CVODES", lambda prob=prob: F.casadi_solve(prob))]
        for label, make in labels:
            run = _made(rep, prob.name, label, make)
            if run is None:
                continue
            c = cfg if not label.startswith("scipy") else Config(quick=True, repeats=3, min_time=0.0)
            t, out, _ = median_time(quiet(lambda run=run, atol=atol: run(rtol, atol)), c)
            rows.append([prob.name, label, scaled_err(out["y"], ref, floor), fmt_time(t), out.get("nsteps"),
                         out.get("naccepted", out.get("nsteps")), out.get("nfev"), out.get("njev"),
                         out.get("nlu"), "" if out.get("success", True) else "FAILED"])
            print(f"  {prob.name}: {label} done ({t:.3g} s)", flush=True)
    rep.table(["problem", "solver", "error", "time (median)", "steps (attempted)", "accepted", "nfev",
               "njev", "nlu", "note"], rows,
              caption=f"rtol = {rtol:g}, atol = atol_scale * rtol (Robertson 1e-6, HIRES 1e-4) on "
                      "[0, 1e5] and [0, 321.8122]; error = max_i |y_i - ref_i| / (|ref_i| + floor) "
                      "at t1 (floor 1e-6, 1e-4), reference SciPy Radau rtol=1e-12.")
    # forward sensitivities of J = |y(t1)|^2 on Robertson (3 parameters), at the
    # suite's atol = 1e-6 rtol and at a looser atol = 1e-2 rtol: at the tight one a
    # joint Newton test over states and sensitivities rejected most steps (bdf 3.3e5
    # of 5e5, kvaerno5 1.2e5 of 2e5) before the staggered phases (cpu.newton.newton_phases)
    prob = P.robertson()
    grows = []
    _, g_ref = casadi_forward_grad(prob)(1e-12, 1e-18)
    for atol_scale in (prob.atol_scale, 1e-2):
        atol = atol_scale * rtol
        runs = [(f"sciode {m} forward", (lambda m=m: F.sciode_grad(prob, "forward", method=m)))
                for m in ("bdf", "kvaerno5")]
        runs.append(("CasADi CVODES forward", lambda: casadi_forward_grad(prob)))
        for label, make in runs:
            run = _made(rep, "robertson", label, make)
            if run is None:
                continue
            t_first = _t.perf_counter()
            run(rtol, atol)
            t_first = _t.perf_counter() - t_first
            t, out, _ = median_time(quiet(lambda run=run, atol=atol: run(rtol, atol)), cfg, warmup=False)
            g = out[1]
            st = out[2].get("forward", {}) if len(out) > 2 else {}
            err = float(np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref)))
            grows.append([label, f"{atol:.0e}", err, fmt_time(t), fmt_time(t_first), st.get("naccepted"),
                          st.get("nrejected"), st.get("njev")])
            print(f"  robertson sens: {label} atol={atol:g} done ({t:.3g} s)", flush=True)
    rep.table(["solver", "atol", "dJ/dp error (max rel.)", "time (median)", "first call", "accepted",
               "rejected", "njev"], grows,
              caption=f"Robertson forward sensitivities, J = |y(1e5)|^2, dJ/d(k1, k2, k3), rtol = {rtol:g}; "
                      "reference CVODES (CasADi forward mode) at rtol 1e-12, atol 1e-18.")


def brusselator_adjoint(cfg, rep, tol=1e-6):
    """Adjoint gradient over forward solve on the large Brusselator (the stiff
    costate sweeps factor the ``(n, n)`` block only: ``linalg.lead_mode``)."""
    m = 256 if cfg.quick else 1024
    prob = P.brusselator(m)
    rows = []
    for method in ("bdf", "kvaerno5"):
        solve = quiet(F.sciode_solve(prob, method))
        grad = quiet(F.sciode_grad(prob, "adjoint", method=method))
        c = Config(quick=True, repeats=3, min_time=0.0)
        ts, _, _ = median_time(lambda: solve(tol, tol), c)
        tg, _, _ = median_time(lambda: grad(tol, tol), c)
        rows.append([2 * m, method, fmt_time(ts), fmt_time(tg), tg / ts])
        print(f"  brusselator adjoint {method} done", flush=True)
    rep.table(["states", "method", "forward solve", "adjoint gradient", "gradient / solve"], rows,
              caption=f"Brusselator 2x{m}, 3 parameters, terminal cost |y(t1)|^2, rtol=atol={tol:g}, warm.")


def run(cfg: Config) -> Report:
    rep = Report("stiff", cfg)
    methods = sciode_stiff_methods(rep)
    tols = [1e-4, 1e-6] if cfg.quick else [1e-4, 1e-5, 1e-6, 1e-7, 1e-8]
    rep.section("Work-precision (warm)")
    for prob, floor in ((P.robertson(), 1e-6), (P.van_der_pol(), 1.0)):
        ref = reference(prob)
        sweep(prob, tols, cfg, rep, methods, ref, floor)
    rep.section("Variable-order BDF beside kvaerno5, rodas4 and CVODES (rtol 1e-6)")
    bdf_section(cfg, rep)
    rep.section("Brusselator: time vs number of states")
    brusselator_scaling(cfg, rep, methods)
    if have("sciode"):
        rep.section("Brusselator: adjoint gradient over forward solve")
        brusselator_adjoint(cfg, rep)
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


if __name__ == "__main__":
    import sys

    if "--bdf" in sys.argv:
        _cfg = Config.make(quick="--quick" in sys.argv, cold=False)
        _rep = Report("stiff_bdf", _cfg)
        bdf_section(_cfg, _rep)
        _rep.write()
