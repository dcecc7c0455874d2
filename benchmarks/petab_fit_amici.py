"""Multistart fit of a PEtab problem: sciode vs pyPESTO + AMICI.

``python -m benchmarks.petab_fit_amici [--problem Boehm_JProteomeRes2014]
[--starts 100] [--seed 0] [--sensitivity adjoint] [--method kvaerno5] [--amici-sensitivity forward]
[--dir SHARED/petab]``

Run from the repository root with sciode's venv; the pyPESTO side runs in the
AMICI virtualenv (``$SCIODE_AMICI_PYTHON``, else ``../venv-amici/bin/python``;
``pip install amici petab pypesto`` there) as a child process of this script
(``--pypesto-child``), so the two environments never mix.

Both sides minimise the same negative log-likelihood in PEtab scale within
the parameter table's bounds, with SciPy's L-BFGS-B on the exact gradient
(scipy's default options ``maxiter = maxfun = 15000``; each side in its own
default and, on these problems, faster sensitivity mode: adjoint for sciode,
forward for AMICI, both switchable), from the *same* start points: the nominal point, then ``N - 1``
points uniform in the bounds (``numpy.random.default_rng(seed)``, as
``python -m sciode.petab --fit``), one start after the other on one core.
The integration tolerances are the same (rtol 1e-8, atol 1e-12; sciode
kvaerno5 unless ``--method``, AMICI CVODES).  sciode's loop is ``python -m sciode.petab --fit``'s:
a failed solve returns to the line search as a failed point.  pyPESTO runs
``pypesto.optimize.minimize`` with ``ScipyOptimizer("L-BFGS-B")`` and the
start points as ``x_guesses``.

``--fallback-forward``: where sciode's adjoint gradient raises ``SolverError``
(its backward pass can fail at extreme start points of Boehm where the forward
solve does not), retry that evaluation with forward sensitivities (written to
``benchmarks/results/petab_fit_amici_fallback.md``).

Reported: wall time of the starts (and, apart, import / compile), the best
objective, and how many starts end within 1e-3 of the best objective known
(the smaller of both runs' best and the collection's value at the nominal
parameters, which are its best fit).  Written to
``benchmarks/results/petab_fit_amici.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
DEFAULT_DIR = Path(os.environ.get("SCIODE_PETAB_DIR", HERE.parents[2] / "shared" / "petab"))
AMICI_PYTHON = Path(os.environ.get("SCIODE_AMICI_PYTHON", HERE.parents[2] / "venv-amici" / "bin" / "python"))
RTOL, ATOL = 1e-8, 1e-12
OPTIONS = {"maxiter": 15000, "maxfun": 15000}
TOL = 1e-3


# --- sciode -----------------------------------------------------------------------


def sciode_fit(yaml: Path, starts: int, seed: int, sensitivity: str, fallback: bool = False,
               method: str = "kvaerno5") -> dict:
    from scipy.optimize import minimize

    import sciode
    from sciode.errors import SolverError
    from sciode.fit.optimize import failed_point

    t0 = time.perf_counter()
    prob = sciode.petab.import_problem(yaml, method=method, rtol=RTOL, atol=ATOL)
    prob.nllh_and_grad(sensitivity=sensitivity)        # kernels: generated or loaded from the cache
    t_setup = time.perf_counter() - t0
    lo, hi = prob.lower, prob.upper
    rng = np.random.default_rng(seed)
    points = [np.clip(prob.nominal, lo, hi)] + [lo + (hi - lo) * rng.random(lo.size) for _ in range(starts - 1)]

    out = []
    fallbacks = [0]
    t_all = time.perf_counter()
    for k, x0 in enumerate(points):
        best = [np.inf, np.array(x0, dtype=float)]
        n_eval = [0]

        def fun(theta, best=best, n_eval=n_eval):
            n_eval[0] += 1
            try:
                v, g = prob.nllh_and_grad(theta, sensitivity=sensitivity)
            except SolverError:
                v, g = np.inf, None
                if fallback and sensitivity == "adjoint":
                    fallbacks[0] += 1
                    try:
                        v, g = prob.nllh_and_grad(theta, sensitivity="forward")
                    except SolverError:
                        pass
            if np.isfinite(v) and g is not None and np.all(np.isfinite(g)):
                if v < best[0]:
                    best[0], best[1] = v, np.array(theta, dtype=float)
                return v, g
            return failed_point(best[0], best[1], theta)

        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)), options=OPTIONS)
        out.append({"fval": float(res.fun), "nit": int(res.nit), "n_eval": n_eval[0],
                    "time": time.perf_counter() - t0})
        print(f"  sciode start {k}: {res.fun:.6f} ({res.nit} it, {out[-1]['time']:.1f} s)", flush=True)
    return {"setup_s": t_setup, "wall_s": time.perf_counter() - t_all, "starts": out, "fallbacks": fallbacks[0],
            "parameter_ids": list(prob.parameter_ids), "points": [p.tolist() for p in points]}


# --- pyPESTO + AMICI (child, in the AMICI environment) ------------------------------


def pypesto_child(spec_path: str) -> dict:
    import logging

    warnings.simplefilter("ignore")
    spec = json.loads(Path(spec_path).read_text())
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    t0 = time.perf_counter()
    import amici
    import petab.v1 as petab
    import pypesto
    import pypesto.petab
    from amici.sim.sundials import SensitivityMethod
    from pypesto import optimize
    t_import = time.perf_counter() - t0
    logging.getLogger("amici").setLevel(logging.ERROR)
    logging.getLogger("pypesto").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    problem = petab.Problem.from_yaml(spec["yaml"])
    outdir = tempfile.mkdtemp(prefix="pypesto_amici_")
    importer = pypesto.petab.PetabImporter(problem, output_folder=os.path.join(outdir, "model"),
                                           model_name="fit_" + Path(spec["yaml"]).stem)
    model = importer.create_model(force_compile=True, verbose=False)
    t_compile = time.perf_counter() - t0
    solver = model.create_solver()
    solver.set_relative_tolerance(spec["rtol"])
    solver.set_absolute_tolerance(spec["atol"])
    solver.set_max_steps(200_000)
    solver.set_sensitivity_method(SensitivityMethod.forward if spec["sensitivity"] == "forward"
                                  else SensitivityMethod.adjoint)
    objective = importer.create_objective(model=model, solver=solver)
    ids = list(problem.x_free_ids)
    order = [spec["parameter_ids"].index(i) for i in ids]
    guesses = np.array(spec["points"])[:, order]
    pproblem = importer.create_problem(objective, x_guesses=guesses)
    optimizer = optimize.ScipyOptimizer(method="L-BFGS-B", options=dict(spec["options"]))
    t0 = time.perf_counter()
    result = optimize.minimize(pproblem, optimizer=optimizer, n_starts=len(guesses),
                               engine=pypesto.engine.SingleCoreEngine(), progress_bar=False)
    wall = time.perf_counter() - t0
    starts = sorted(result.optimize_result.list, key=lambda r: int(r["id"]))
    out = [{"id": r["id"], "fval": float(r["fval"]), "n_eval": int(r["n_fval"] or 0),
            "time": float(r["time"] or 0.0), "exitflag": r["exitflag"]} for r in starts]
    return {"module_import_s": t_import, "setup_s": t_compile, "wall_s": wall, "starts": out,
            "amici_version": amici.__version__, "pypesto_version": pypesto.__version__}


# --- main -------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.petab_fit_amici", description=__doc__.splitlines()[0])
    ap.add_argument("--problem", default="Boehm_JProteomeRes2014")
    ap.add_argument("--starts", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sensitivity", choices=("forward", "adjoint"), default="adjoint", help="sciode's")
    ap.add_argument("--method", default="kvaerno5", help="sciode's stiff method (kvaerno5, bdf, rodas4)")
    ap.add_argument("--amici-sensitivity", choices=("forward", "adjoint"), default="forward", help="AMICI's")
    ap.add_argument("--fallback-forward", action="store_true",
                    help="sciode: where an adjoint gradient fails (SolverError), retry with forward sensitivities")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--pypesto-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pypesto_child:
        print(json.dumps(pypesto_child(args.pypesto_child)), flush=True)
        return 0
    if not AMICI_PYTHON.is_file():
        print(f"no AMICI Python at {AMICI_PYTHON} (set $SCIODE_AMICI_PYTHON)", file=sys.stderr)
        return 2
    yaml = args.dir / args.problem / f"{args.problem}.yaml"
    refs = json.loads((args.dir / "reference_llh.json").read_text())["models"]
    ref_nllh = -refs[args.problem]["llh"] if args.problem in refs else np.inf

    sc = sciode_fit(yaml, args.starts, args.seed, args.sensitivity, args.fallback_forward, args.method)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"yaml": str(yaml), "rtol": RTOL, "atol": ATOL, "sensitivity": args.amici_sensitivity,
                   "options": OPTIONS, "parameter_ids": sc["parameter_ids"], "points": sc["points"]}, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.setdefault("AMICI_PARALLEL_COMPILE", "1")
    t0 = time.perf_counter()
    proc = subprocess.run([str(AMICI_PYTHON), str(HERE), "--pypesto-child", f.name], check=False,
                          capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    os.unlink(f.name)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    pp = json.loads(proc.stdout.strip().splitlines()[-1])
    pp["process_s"] = time.perf_counter() - t0

    best = min(min(s["fval"] for s in sc["starts"]), min(s["fval"] for s in pp["starts"]), ref_nllh)
    rows = []
    sc_label = f"sciode ({args.method}, {args.sensitivity}" + (", forward where the adjoint fails)" if args.fallback_forward else ")")
    for label, r in ((sc_label, sc), (f"pyPESTO {pp['pypesto_version']} + AMICI {pp['amici_version']}", pp)):
        f = np.array([s["fval"] for s in r["starts"]])
        hits = int(np.sum(f <= best + TOL))
        rows.append([label, len(f), hits, f"{np.nanmin(f):.6f}", f"{r['wall_s']:.1f} s",
                     f"{r['wall_s'] / max(hits, 1):.2f} s", f"{r['setup_s']:.1f} s",
                     int(sum(s["n_eval"] for s in r["starts"]))])
    from ._util import Config, Report, fmt

    rep = Report("petab_fit_amici" + ("_fallback" if args.fallback_forward else ""), Config.make(False, cold=False))
    rep.section(f"Multistart fit: {args.problem}", __doc__.split("\n\n", 1)[1])
    rep.table(["", "starts", f"within {TOL:g} of best", "best nllh", "wall time (starts)", "wall / converged start",
               "import + compile + first gradient", "objective evaluations"], rows,
              f"{args.starts} starts, seed {args.seed}; sensitivities: sciode {args.sensitivity}, AMICI "
              f"{args.amici_sensitivity}; best known nllh "
              f"{best:.6f} (collection's value at its nominal parameters: {ref_nllh:.6f}).")
    both = [[k, f"{a['fval']:.6f}", f"{b['fval']:.6f}", fmt(a["time"]), fmt(b["time"])]
            for k, (a, b) in enumerate(zip(sc["starts"], pp["starts"]))]
    rep.table(["start", "sciode nllh", "pyPESTO+AMICI nllh", "sciode s", "pyPESTO+AMICI s"], both,
              "Per start (same start point on both sides).")
    failed = sum(s["nit"] == 0 and s["fval"] >= 1e9 for s in sc["starts"])
    rep.note(f"sciode: {failed} start(s) ended at their first evaluation (the gradient failed there: a "
             f"SolverError, e.g. the adjoint's backward pass); adjoint failures retried forward: {sc['fallbacks']}.")
    rep.note(f"pyPESTO child process: {pp['process_s']:.1f} s in all (import {pp['module_import_s']:.1f} s).")
    rep.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
