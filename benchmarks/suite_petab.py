"""Suite ``petab``: the PEtab import on the shared benchmark problems.

``python -m benchmarks.suite_petab [--quick] [--dir SHARED/petab]`` (the
problems live outside the repository, default ``../shared/petab``; also
``$SCIODE_PETAB_DIR``).  Per problem it prints the sizes (states, model
parameters, estimated parameters, simulations, measurements), the
log-likelihood at the nominal parameters against ``reference_llh.json``, the
gradient of both sensitivity modes against central differences of the
negative log-likelihood (solved at ``rtol=1e-12, atol=1e-16``; steps ``h``
and ``2h``, whose difference estimates the finite-difference error), and the
times: import, first gradient in this process (generated kernels come from
the disk cache when present, else they are compiled), warm ``nllh`` and warm
gradients (median).  The gradient is taken at ``nominal + 0.1 N(0, 1)`` (seed
0), as AMICI's benchmark tests do, except for Crauste_CellSystems2017, whose
solution blows up in finite time under changes of ``1e-4`` (taken at the
nominal point with ``h = 1e-7``).  ``t_fwd``/``t_adj`` of the reference file
are AMICI's test-suite time *bounds*, not measurements; they are printed for
scale only.  Written to ``benchmarks/results/petab.md``.

AMICI side by side: when an AMICI virtualenv exists (``$SCIODE_AMICI_PYTHON``,
else ``../venv-amici/bin/python`` beside the repository; ``pip install
amici petab`` there, never in sciode's environment), each problem also runs
``benchmarks/amici_child.py`` in that Python: SBML import + C++ compile into a
fresh directory, the first gradient, and warm ``nllh`` / gradients at the same
point and tolerances (rtol 1e-8, atol 1e-12, at most 200000 steps) through
``simulate_petab`` with pre-built ``ExpData`` objects.  sciode's *SBML to
first gradient* is timed in a fresh process too (``--child-cold``), with an
empty kernel cache (code generation and compile of the model's kernels) but
the shared stepping loops already compiled (copied from the populated cache),
and both sides leave out the time to import the package itself (printed
separately).  Without the AMICI environment these tables are skipped with a
note.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ._util import ROOT, Config, Report, fmt, fmt_time, median_time, run_child

PROBLEMS = ["Boehm_JProteomeRes2014", "Crauste_CellSystems2017", "Elowitz_Nature2000",
            "Fujita_SciSignal2010", "Zheng_PNAS2012"]
DEFAULT_DIR = Path(os.environ.get("SCIODE_PETAB_DIR",
                                  Path(__file__).resolve().parents[2] / "shared" / "petab"))
AMICI_PYTHON = Path(os.environ.get("SCIODE_AMICI_PYTHON",
                                   Path(__file__).resolve().parents[2] / "venv-amici" / "bin" / "python"))


def _point(prob, name):
    if name.startswith("Crauste"):
        return prob.nominal.copy(), 1e-7
    return prob.nominal + 0.1 * np.random.default_rng(0).standard_normal(prob.nominal.size), 1e-4


def crauste_ladder(folder: Path) -> list:
    """Crauste's gradient at the nominal point for rtol 1e-8, 1e-10, 1e-12
    (atol = rtol * 1e-4), both modes, relative to forward at 1e-12."""
    import sciode

    yaml = folder / "Crauste_CellSystems2017" / "Crauste_CellSystems2017.yaml"
    grads = {}
    for rtol in (1e-8, 1e-10, 1e-12):
        prob = sciode.petab.import_problem(yaml, rtol=rtol, atol=rtol * 1e-4, max_steps=10**6)
        for mode in ("forward", "adjoint"):
            grads[(rtol, mode)] = prob.nllh_and_grad(sensitivity=mode)[1]
    ref = grads[(1e-12, "forward")]
    return [[f"{rtol:g}", mode, fmt(np.abs(g - ref).max() / np.abs(ref).max())]
            for (rtol, mode), g in grads.items()]


def _central(prob, theta, h):
    return np.array([(prob.nllh(theta + h * e) - prob.nllh(theta - h * e)) / (2 * h)
                     for e in np.eye(theta.size)])


def one(name, folder: Path, ref: dict, cfg: Config) -> dict:
    import sciode

    yaml = folder / name / f"{name}.yaml"
    t0 = time.perf_counter()
    prob = sciode.petab.import_problem(yaml)
    t_import = time.perf_counter() - t0
    theta, h = _point(prob, name)
    out = {"name": name, "import": t_import, "n": prob.model.n_states, "n_p": prob.model.n_params,
           "n_est": len(prob.parameter_ids), "n_sim": prob.n_simulations, "n_meas": prob.n_measurements}
    t0 = time.perf_counter()
    prob.nllh_and_grad(theta, sensitivity="forward")
    out["first_fwd"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob.nllh_and_grad(theta, sensitivity="adjoint")
    out["first_adj"] = time.perf_counter() - t0
    llh = prob.llh()
    out["llh"], out["ref"] = llh, ref["llh"]
    out["llh_rel"] = abs(llh - ref["llh"]) / abs(ref["llh"])
    out["t_nllh"], _, _ = median_time(lambda: prob.nllh(), cfg)
    out["t_nllh_theta"], _, _ = median_time(lambda: prob.nllh(theta), cfg)
    out["t_fwd"], (_, g_fwd), _ = median_time(lambda: prob.nllh_and_grad(theta, sensitivity="forward"), cfg)
    out["t_adj"], (_, g_adj), _ = median_time(lambda: prob.nllh_and_grad(theta, sensitivity="adjoint"), cfg)
    tight = sciode.petab.import_problem(yaml, rtol=1e-12, atol=1e-16, max_steps=10**6)
    fd1, fd2 = _central(tight, theta, h), _central(tight, theta, 2 * h)
    scale = max(np.abs(fd1).max(), 1e-300)
    out["fd_err"] = np.abs(fd1 - fd2).max() / scale
    out["fwd_err"] = np.abs(g_fwd - fd1).max() / scale
    out["adj_err"] = np.abs(g_adj - fd1).max() / scale
    out["fwd_vs_adj"] = np.abs(g_fwd - g_adj).max() / max(np.abs(g_fwd).max(), 1e-300)
    out["amici"] = (ref.get("t_sim"), ref.get("t_fwd"), ref.get("t_adj"))
    out["theta"] = dict(zip(prob.parameter_ids, map(float, theta)))
    out["g_fwd"], out["g_adj"] = g_fwd, g_adj
    out["nllh_theta"] = float(prob.nllh(theta))
    return out


# --- AMICI side by side ------------------------------------------------------


def _loops_only_cache(sources, dst: Path) -> None:
    """``dst`` as a SCIODE_CACHE_DIR (and NUMBA_CACHE_DIR ``dst/numba``) holding
    sciode's compiled stepping loops and helpers from the ``sources`` folders
    (``numba/<source hash>``, Numba's own ``sciode_*``), but no model kernels
    (``kernels/`` and Numba's ``kernels_*`` are left out)."""
    (dst / "numba").mkdir(parents=True)
    for src in sources:
        if not src.is_dir():
            continue
        for d in src.iterdir():
            if d.is_dir() and not d.name.startswith("kernels") and not (dst / "numba" / d.name).exists():
                shutil.copytree(d, dst / "numba" / d.name)


def cold_child(name: str, folder: Path) -> dict:
    """In a fresh process: SBML to first gradient (``--child-cold``)."""
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    import sciode
    import sciode.petab
    # the PEtab and SBML libraries' own import (2.4 s here: petab imports scipy.stats
    # and matplotlib) counts as module import, as AMICI's child counts it
    # (``amici_child``: ``module_import_s``, outside its SBML-to-gradient time)
    sciode.petab._require_petab()
    out = {"module_import_s": time.perf_counter() - t0}
    yaml = folder / name / f"{name}.yaml"
    t0 = time.perf_counter()
    prob = sciode.petab.import_problem(yaml)
    out["import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob.nllh_and_grad(sensitivity="forward")
    out["first_fwd_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob.nllh_and_grad(sensitivity="adjoint")
    out["first_adj_s"] = time.perf_counter() - t0
    out["sbml_to_first_grad_s"] = out["import_s"] + out["first_fwd_s"]
    return out


def sciode_cold(name: str, folder: Path) -> dict:
    """SBML to first gradient in a fresh sciode process: empty kernel cache,
    stepping loops copied from the current (populated) cache."""
    from sciode._numba_cache import numba_cache_root

    sources = [numba_cache_root()] + ([Path(os.environ["NUMBA_CACHE_DIR"])] if os.environ.get("NUMBA_CACHE_DIR")
                                      else [])
    tmp = Path(tempfile.mkdtemp(prefix="sciode_petab_cold_"))
    try:
        _loops_only_cache(sources, tmp / "cache")
        env = dict(os.environ, SCIODE_CACHE_DIR=str(tmp / "cache"), NUMBA_CACHE_DIR=str(tmp / "cache" / "numba"))
        before = _loop_files(tmp / "cache" / "numba")
        out = run_child([sys.executable, "-m", "benchmarks.suite_petab", "--dir", str(folder), "--child-cold", name],
                     env)
        # new files under numba/<source hash>: the child compiled stepping loops (not only kernels)
        out["loops_recompiled"] = bool(_loop_files(tmp / "cache" / "numba") - before)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _loop_files(numba_dir: Path) -> set:
    return {str(f) for d in numba_dir.glob("*") if d.is_dir() and not d.name.startswith("kernels")
            for f in d.rglob("*") if f.is_file()}


def amici_run(name: str, folder: Path, theta: dict, cfg: Config) -> dict:
    """``benchmarks/amici_child.py`` in the AMICI environment (fresh process)."""
    yaml = folder / name / f"{name}.yaml"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(theta, f)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.setdefault("AMICI_PARALLEL_COMPILE", "1")   # one compiler process, as sciode's Numba compile
    try:
        return run_child([str(AMICI_PYTHON), str(ROOT / "benchmarks" / "amici_child.py"), str(yaml),
                       "--theta", f.name, "--repeats", str(cfg.repeats), "--min-time", str(cfg.min_time),
                       "--max-repeats", str(cfg.max_repeats)], env, cwd=tempfile.gettempdir())
    finally:
        os.unlink(f.name)


def _ratio(a, b):
    try:
        return float(a) / float(b)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _gdiff(g, ref):
    if g is None or ref is None:
        return None
    g, ref = np.asarray(g, float), np.asarray(ref, float)
    if g.shape != ref.shape:
        return None
    return float(np.abs(g - ref).max() / max(np.abs(ref).max(), 1e-300))


def _best(r) -> str:
    """Each package's faster gradient mode, and the ratio of the two."""
    s_mode, s_t = min((("fwd", r["t_fwd"]), ("adj", r["t_adj"])), key=lambda x: x[1])
    a_mode, a_t = min((("fwd", r["am"]["t_fwd"]), ("adj", r["am"]["t_adj"])), key=lambda x: x[1])
    return f"{fmt(_ratio(a_t, s_t))} ({a_mode} / {s_mode})"


def amici_tables(rep: Report, rows: list) -> None:
    ok = [r for r in rows if "error" not in r["am"]]
    for r in rows:
        if "error" in r["am"]:
            rep.note(f"AMICI on {r['name']}: failed ({r['am']['error']})")
        if "error" in r["cold"]:
            rep.note(f"sciode fresh process on {r['name']}: failed ({r['cold']['error']})")
    if not ok:
        return
    am0 = ok[0]["am"]
    rep.table(["problem", "sciode: import", "sciode: first fwd grad", "sciode: SBML -> grad",
               "AMICI: import + C++ compile", "AMICI: first fwd grad", "AMICI: SBML -> grad",
               "AMICI / sciode", "then first adj grad (sciode / AMICI)"],
              [[r["name"], fmt_time(r["cold"].get("import_s")), fmt_time(r["cold"].get("first_fwd_s")),
                fmt_time(r["cold"].get("sbml_to_first_grad_s"))
                + (" (loops recompiled!)" if r["cold"].get("loops_recompiled") else ""),
                fmt_time(r["am"]["import_compile_s"]), fmt_time(r["am"]["first_fwd_s"]),
                fmt_time(r["am"]["sbml_to_first_grad_s"]),
                fmt(_ratio(r["am"]["sbml_to_first_grad_s"], r["cold"].get("sbml_to_first_grad_s"))),
                f"{fmt_time(r['cold'].get('first_adj_s'))} / {fmt_time(r['am']['first_adj_s'])}"]
               for r in ok],
              f"SBML file to first gradient (forward sensitivities), each in a fresh process, vs AMICI "
              f"{am0.get('amici_version')}.  sciode: `import_problem` (SBML and PEtab tables, SymPy) + first "
              "`nllh_and_grad` with an *empty* kernel cache, so the model's kernels are generated and "
              "compiled (`codegen.native`), but with sciode's shared stepping loops *already compiled* (copied "
              "from the populated cache; compiling those is a one-time cost per installation, about a "
              "minute per method family).  AMICI: reading the PEtab tables + `import_petab_problem` into "
              "a fresh output directory (SBML import, code generation, C++ compile with "
              f"AMICI_PARALLEL_COMPILE={am0.get('parallel_compile')}) + solver / ExpData / mapping "
              "set-up + first `simulate_petab`.  Package imports (petab and libsbml included) are left out on both sides "
              f"(`import sciode` {fmt_time(np.median([r['cold'].get('module_import_s', np.nan) for r in ok]))}, "
              f"`import amici` {fmt_time(np.median([r['am']['module_import_s'] for r in ok]))}, medians).")
    rep.table(["problem", "nllh sciode", "nllh AMICI", "AMICI / sciode",
               "fwd grad sciode", "fwd grad AMICI", "AMICI / sciode",
               "adj grad sciode", "adj grad AMICI", "AMICI / sciode", "best mode each: AMICI / sciode",
               "AMICI C++ CPU fwd / adj"],
              [[r["name"], fmt_time(r["t_nllh_theta"]), fmt_time(r["am"]["t_nllh"]),
                fmt(_ratio(r["am"]["t_nllh"], r["t_nllh_theta"])),
                fmt_time(r["t_fwd"]), fmt_time(r["am"]["t_fwd"]), fmt(_ratio(r["am"]["t_fwd"], r["t_fwd"])),
                fmt_time(r["t_adj"]), fmt_time(r["am"]["t_adj"]), fmt(_ratio(r["am"]["t_adj"], r["t_adj"])),
                _best(r),
                f"{fmt_time(r['am']['cpu_fwd_ms'] / 1e3)} / {fmt_time(r['am']['cpu_adj_ms'] / 1e3)}"]
               for r in ok],
              "Warm objective (and gradient) at the gradient point above, median of repeats, same "
              "tolerances (rtol 1e-8, atol 1e-12; sciode kvaerno5, AMICI CVODES BDF), same machine, same "
              "run.  AMICI through `simulate_petab` with the ExpData objects and parameter mapping built "
              "once (what pyPESTO does per call); its last column is the solver's own CPU time summed "
              "over conditions (the C++ integration alone, no Python).  Ratios > 1: sciode faster.")
    rep.table(["problem", "llh reference", "sciode rel. diff", "AMICI rel. diff", "nllh at point: sciode vs AMICI",
               "fwd grad: sciode vs AMICI", "adj grad: sciode vs AMICI", "AMICI fwd vs AMICI adj"],
              [[r["name"], f"{r['ref']:.10f}", fmt(r["llh_rel"]),
                fmt(abs(r["am"]["llh_nominal"] - r["ref"]) / abs(r["ref"])),
                fmt(abs(r["nllh_theta"] - r["am"]["nllh_fwd"]) / max(abs(r["am"]["nllh_fwd"]), 1e-300)),
                fmt(_gdiff(r["g_fwd"], r["am"]["grad_fwd"])), fmt(_gdiff(r["g_adj"], r["am"]["grad_fwd"])),
                fmt(_gdiff(r["am"]["grad_adj"], r["am"]["grad_fwd"]))] for r in ok],
              "Agreement: log-likelihood at the nominal parameters against the reference (relative), "
              "nllh at the gradient point (relative), and gradients as max abs difference / max abs of "
              "AMICI's forward-sensitivity gradient.")


def run(cfg: Config, folder: Path = DEFAULT_DIR, amici: bool = True) -> Report:
    rep = Report("petab", cfg)
    rep.section("PEtab benchmark problems", __doc__.split("\n\n", 1)[1])
    refs = json.loads((folder / "reference_llh.json").read_text())["models"]
    amici = amici and AMICI_PYTHON.is_file()
    rows = []
    for name in PROBLEMS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = one(name, folder, refs[name], cfg)
        rows.append(r)
        print(f"{name}: done", flush=True)
        if amici:
            r["cold"] = sciode_cold(name, folder)
            print(f"{name}: sciode fresh process {r['cold']}", flush=True)
            r["am"] = amici_run(name, folder, r["theta"], cfg)
            print(f"{name}: AMICI {({k: v for k, v in r['am'].items() if not k.startswith(('grad', 'stderr', 'parameter_ids'))})}", flush=True)
    rep.table(["problem", "states", "model params", "estimated", "simulations", "measurements"],
              [[r["name"], r["n"], r["n_p"], r["n_est"], r["n_sim"], r["n_meas"]] for r in rows])
    rep.table(["problem", "llh (sciode)", "llh (reference)", "rel. diff"],
              [[r["name"], f"{r['llh']:.10f}", f"{r['ref']:.10f}", fmt(r["llh_rel"])] for r in rows],
              "Log-likelihood at the nominal parameters (kvaerno5, rtol 1e-8, atol 1e-12).")
    rep.table(["problem", "FD error estimate", "forward vs FD", "adjoint vs FD", "forward vs adjoint"],
              [[r["name"], fmt(r["fd_err"]), fmt(r["fwd_err"]), fmt(r["adj_err"]), fmt(r["fwd_vs_adj"])]
               for r in rows],
              "Gradient errors, max abs over parameters / max |FD| (FD: central, step h, tight tolerances).")
    rep.table(["problem", "import", "first fwd grad", "first adj grad", "nllh (warm)", "fwd grad (warm)",
               "adj grad (warm)", "AMICI bounds sim/fwd/adj"],
              [[r["name"], fmt_time(r["import"]), fmt_time(r["first_fwd"]), fmt_time(r["first_adj"]),
                fmt_time(r["t_nllh"]), fmt_time(r["t_fwd"]), fmt_time(r["t_adj"]),
                " / ".join(fmt_time(x) for x in r["amici"] if x is not None)] for r in rows],
              "Times on this machine (median of warm repeats).")
    if amici:
        rep.section("Side by side with AMICI")
        amici_tables(rep, rows)
    else:
        rep.note(f"AMICI comparison: skipped, no AMICI Python at {AMICI_PYTHON} (create a virtualenv there "
                 "with `pip install amici petab`, or set $SCIODE_AMICI_PYTHON).")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ladder = crauste_ladder(folder)
    rep.table(["rtol", "mode", "max abs diff / max abs of forward at 1e-12"], ladder,
              "Crauste_CellSystems2017: central differences are unusable there (their h/2h estimate "
              "disagrees by O(1)), so the gradient at the nominal point is judged by its convergence "
              "with the tolerance, against forward sensitivities at rtol 1e-12.")
    return rep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite_petab", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="folder of the shared PEtab problems")
    parser.add_argument("--no-amici", action="store_true", help="skip the AMICI comparison")
    parser.add_argument("--child-cold", metavar="PROBLEM", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_cold:
        print(json.dumps(cold_child(args.child_cold, args.dir)), flush=True)
        return 0
    if not (args.dir / "reference_llh.json").is_file():
        print(f"no PEtab problems at {args.dir} (pass --dir or set SCIODE_PETAB_DIR)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rep = run(Config.make(args.quick, cold=False), args.dir, amici=not args.no_amici)
    rep.note(f"suite wall time: {time.perf_counter() - t0:.1f} s")
    rep.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
