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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ._util import Config, Report, fmt, fmt_time, median_time

PROBLEMS = ["Boehm_JProteomeRes2014", "Crauste_CellSystems2017", "Elowitz_Nature2000",
            "Fujita_SciSignal2010", "Zheng_PNAS2012"]
DEFAULT_DIR = Path(os.environ.get("SCIODE_PETAB_DIR",
                                  Path(__file__).resolve().parents[2] / "shared" / "petab"))


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
    return out


def run(cfg: Config, folder: Path = DEFAULT_DIR) -> Report:
    rep = Report("petab", cfg)
    rep.section("PEtab benchmark problems", __doc__.split("\n\n", 1)[1])
    refs = json.loads((folder / "reference_llh.json").read_text())["models"]
    rows = []
    for name in PROBLEMS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = one(name, folder, refs[name], cfg)
        rows.append(r)
        print(f"{name}: done", flush=True)
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
    args = parser.parse_args(argv)
    if not (args.dir / "reference_llh.json").is_file():
        print(f"no PEtab problems at {args.dir} (pass --dir or set SCIODE_PETAB_DIR)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rep = run(Config.make(args.quick, cold=False), args.dir)
    rep.note(f"suite wall time: {time.perf_counter() - t0:.1f} s")
    rep.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
