"""AMICI side of the PEtab comparison (``benchmarks/suite_petab.py``).

Run with the *AMICI* environment's Python (a separate virtualenv: AMICI pins
its own numpy / sympy, so it never shares a process with sciode)::

    /work/venv-amici/bin/python benchmarks/amici_child.py PROBLEM.yaml \
        [--theta THETA.json] [--rtol 1e-8] [--atol 1e-12] [--repeats 7]

It times, in this fresh process and with AMICI's public API (1.x:
``amici.importers.petab.v1.import_petab_problem``,
``amici.sim.sundials.petab.v1.simulate_petab``):

- ``module_import_s``: ``import amici`` and its PEtab modules;
- ``load_s``: reading the PEtab tables (``petab.v1.Problem.from_yaml``);
- ``import_compile_s``: SBML import, code generation and the C++ compile of
  the model extension into a fresh, empty output directory;
- ``setup_s``: solver options, ``ExpData`` objects and the parameter mapping
  (built once, as pyPESTO does);
- ``first_fwd_s`` / ``first_adj_s``: the first objective-and-gradient call with
  forward / adjoint sensitivities; ``sbml_to_first_grad_s`` is
  ``load + import_compile + setup + first_fwd``;
- the log-likelihood at the nominal parameters (``llh_nominal``);
- warm medians of ``nllh`` alone and of ``nllh`` + gradient (forward, adjoint)
  at ``theta`` (PEtab scale, gradient in PEtab scale), through
  ``simulate_petab`` with the pre-built ``ExpData`` objects and mapping; also
  the solver's own CPU time summed over conditions (``cpu_*_ms``: the C++
  integration alone, without Python's share).

Prints one JSON line (last line of stdout).  ``theta`` is a JSON object
``{parameterId: value in PEtab scale}``; missing ids take their nominal value.
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


def _median_time(fn, repeats: int, min_time: float, max_repeats: int):
    import numpy as np

    out = fn()                           # warm-up
    times, spent = [], 0.0
    while len(times) < repeats or (spent < min_time and len(times) < max_repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if spent > 20.0 and len(times) >= 2:
            break
    return float(np.median(times)), out, len(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("yaml")
    ap.add_argument("--theta", help="JSON file {parameterId: value in PEtab scale}")
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--atol", type=float, default=1e-12)
    ap.add_argument("--max-steps", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--max-repeats", type=int, default=50)
    ap.add_argument("--outdir", help="model output directory (default: a fresh temporary one, removed after)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import logging

    # the model build calls `swig` (a pip dependency of amici, in this venv's bin/)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

    out = {"yaml": os.path.abspath(args.yaml), "rtol": args.rtol, "atol": args.atol,
           "parallel_compile": os.environ.get("AMICI_PARALLEL_COMPILE", "1 (default)")}

    t0 = time.perf_counter()
    import amici
    import petab.v1 as petab
    from amici.importers.petab.v1 import import_petab_problem
    from amici.sim.sundials import SensitivityMethod, SensitivityOrder
    from amici.sim.sundials.petab.v1 import (
        LLH,
        RDATAS,
        SLLH,
        create_edatas,
        simulate_petab,
    )
    from amici.sim.sundials.petab.v1._parameter_mapping import create_parameter_mapping
    out["module_import_s"] = time.perf_counter() - t0
    out["amici_version"] = amici.__version__
    logging.getLogger("amici").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    problem = petab.Problem.from_yaml(args.yaml)
    out["load_s"] = time.perf_counter() - t0

    tmp = None
    outdir = args.outdir
    if outdir is None:
        tmp = tempfile.mkdtemp(prefix="amici_bench_")
        outdir = os.path.join(tmp, "model")
    name = "bench_" + os.path.splitext(os.path.basename(args.yaml))[0]
    try:
        t0 = time.perf_counter()
        model = import_petab_problem(problem, output_dir=outdir, model_name=name, compile_=True)
        out["import_compile_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        solver = model.create_solver()
        solver.set_relative_tolerance(args.rtol)
        solver.set_absolute_tolerance(args.atol)
        solver.set_max_steps(args.max_steps)
        solver.set_sensitivity_order(SensitivityOrder.first)
        solver.set_sensitivity_method(SensitivityMethod.forward)
        conditions = problem.get_simulation_conditions_from_measurement_df()
        edatas = create_edatas(amici_model=model, petab_problem=problem, simulation_conditions=conditions)
        mapping = create_parameter_mapping(petab_problem=problem, simulation_conditions=conditions,
                                           scaled_parameters=True, amici_model=model)
        ids = list(problem.x_free_ids)
        nominal = dict(zip(problem.x_ids, problem.get_x_nominal(scaled=True)))
        out["setup_s"] = time.perf_counter() - t0

        def call(theta: dict, method):
            if method is None:
                solver.set_sensitivity_order(SensitivityOrder.none)
            else:
                solver.set_sensitivity_order(SensitivityOrder.first)
                solver.set_sensitivity_method(method)
            res = simulate_petab(problem, amici_model=model, solver=solver, problem_parameters=theta,
                                 scaled_parameters=True, scaled_gradients=True, edatas=edatas,
                                 parameter_mapping=mapping)
            return res

        def nllh_grad(theta, method):
            res = call(theta, method)
            g = None
            if res[SLLH] is not None:
                g = [-float(res[SLLH].get(k, 0.0)) for k in ids]
            return -float(res[LLH]), g, res

        nom = {k: float(nominal[k]) for k in ids}
        t0 = time.perf_counter()
        _, g_first, _ = nllh_grad(nom, SensitivityMethod.forward)
        out["first_fwd_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        nllh_grad(nom, SensitivityMethod.adjoint)
        out["first_adj_s"] = time.perf_counter() - t0
        out["sbml_to_first_grad_s"] = out["load_s"] + out["import_compile_s"] + out["setup_s"] + out["first_fwd_s"]

        v, _, res = nllh_grad(nom, None)
        out["llh_nominal"] = -v
        out["status_nominal"] = [int(r["status"]) for r in res[RDATAS]]

        theta = dict(nom)
        if args.theta:
            with open(args.theta) as f:
                theta.update({k: float(v) for k, v in json.load(f).items()})
        out["parameter_ids"] = ids
        rep = (args.repeats, args.min_time, args.max_repeats)
        out["t_nllh"], r, out["n_nllh"] = _median_time(lambda: nllh_grad(theta, None), *rep)
        out["nllh_theta"] = r[0]
        for key, method in (("fwd", SensitivityMethod.forward), ("adj", SensitivityMethod.adjoint)):
            t, r, n = _median_time(lambda m=method: nllh_grad(theta, m), *rep)
            out[f"t_{key}"], out[f"n_{key}"] = t, n
            out[f"nllh_{key}"], out[f"grad_{key}"] = r[0], r[1]
            out[f"status_{key}"] = sorted({int(x["status"]) for x in r[2][RDATAS]})
            out[f"cpu_{key}_ms"] = float(sum(x["cpu_time"] + x["cpu_time_b"] for x in r[2][RDATAS]))
        out["grad_first_fwd_nominal"] = g_first
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == "__main__":
    res = main()
    print(json.dumps(res), flush=True)
    sys.exit(0)
