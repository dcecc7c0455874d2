"""Time code generation: Model -> generated source -> compiled, called kernels.

Run ``python -m benchmarks.codegen_timing`` from the repository root.  For
each model, every measurement runs in a fresh subprocess (imports excluded
from the timings):

- ``cold``: a fresh, empty cache directory; ``Model(...)`` to the kernels
  rhs, jac_y, vjp_y, vjp_p compiled and called once (symbolic derivation,
  CSE, printing, Numba compilation);
- ``warm``: the same directory again (generated source and Numba machine
  code are loaded from disk);
- ``derive``: ``derive_adjoint`` + ``derive_model`` + model-module source
  generation, each timed separately, no Numba.

The table is printed and written to ``benchmarks/results/codegen_timing.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import problems as P

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "codegen_timing.md"
KERNELS = ("rhs", "jac_y", "vjp_y", "vjp_p")
MLP_HIDDEN = 16
BRUSSELATOR_CELLS = 256
CHILD_TIMEOUT_S = 900


# --- models (the benchmark problems' own, so every suite times the same models) ---------


MODELS = {
    "lorenz": lambda: P.lorenz().build(),
    "mlp_2_16_2": lambda: P.mlp(2, MLP_HIDDEN).build(),
    "brusselator_2x256": lambda: P.brusselator(BRUSSELATOR_CELLS).build(),
}


# --- child measurements -----------------------------------------------------------


def _time_kernels(name: str) -> dict:
    from sciode import codegen

    t0 = time.perf_counter()
    model = MODELS[name]()
    kernels = codegen.model_kernels(model)
    t_source = time.perf_counter()
    n, n_p = model.n_states, model.n_params
    y, p, w = np.full(n, 0.5), np.full(n_p, 0.25), np.zeros(model.n_controls)
    v = np.ones(n)
    calls = {
        "rhs": lambda k: k(0.0, y, p, w, np.empty(n)),
        "jac_y": lambda k: k(0.0, y, p, w, np.empty((n, n))),
        "vjp_y": lambda k: k(0.0, y, p, w, v, np.empty(n)),
        "vjp_p": lambda k: k(0.0, y, p, w, v, np.empty(n_p)),
    }
    hits = 0
    for kernel_name in KERNELS:
        kernel = kernels[kernel_name]
        calls[kernel_name](kernel)
        hits += sum(kernel.stats.cache_hits.values())
    t_end = time.perf_counter()
    return {
        "total_s": t_end - t0,
        "codegen_s": t_source - t0,
        "compile_call_s": t_end - t_source,
        "generated": codegen.STATS["generated"],
        "reused": codegen.STATS["reused"],
        "numba_cache_hits": hits,
        "n_states": n,
        "n_params": n_p,
    }


def _time_derive(name: str) -> dict:
    import sciode
    from sciode.codegen.modules import model_module_source
    from sciode.symbolic import derive_adjoint, derive_model

    model = MODELS[name]()
    cost = sciode.Cost(terminal=sum(s**2 for s in model.states))
    t0 = time.perf_counter()
    derive_adjoint(model, cost)
    t1 = time.perf_counter()
    der = derive_model(model)
    t2 = time.perf_counter()
    source = model_module_source(der, "", use_cse=True)
    t3 = time.perf_counter()
    return {
        "adjoint_s": t1 - t0,
        "derive_model_s": t2 - t1,
        "source_s": t3 - t2,
        "source_lines": source.count("\n"),
    }


# --- parent ------------------------------------------------------------------------


def _run_child(name: str, phase: str, cache: str) -> dict:
    env = dict(os.environ, SCIODE_CACHE_DIR=cache)
    env.pop("NUMBA_CACHE_DIR", None)
    cmd = [sys.executable, "-m", "benchmarks.codegen_timing", "--child", name, phase]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} {phase} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="sciode_bench_") as cache:
        cold = _run_child(name, "kernels", cache)
        warm = _run_child(name, "kernels", cache)
    with tempfile.TemporaryDirectory(prefix="sciode_bench_") as cache:
        derive = _run_child(name, "derive", cache)
    return {"cold": cold, "warm": warm, "derive": derive}


def table(results: dict) -> str:
    head = (
        "| model | states | params | cold total [s] | cold codegen [s] | cold compile+call [s] "
        "| warm total [s] | warm numba cache hits | derive_adjoint [s] | derive_model [s] "
        "| source gen [s] | source lines |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results.items():
        c, w, d = r["cold"], r["warm"], r["derive"]
        rows.append(
            f"| {name} | {c['n_states']} | {c['n_params']} | {c['total_s']:.2f} | {c['codegen_s']:.2f} "
            f"| {c['compile_call_s']:.2f} | {w['total_s']:.3f} | {w['numba_cache_hits']} "
            f"| {d['adjoint_s']:.2f} | {d['derive_model_s']:.2f} | {d['source_s']:.2f} | {d['source_lines']} |"
        )
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "PHASE"), help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    if args.child:
        name, phase = args.child
        result = _time_kernels(name) if phase == "kernels" else _time_derive(name)
        print(json.dumps(result))
        return
    results = {}
    for name in args.models:
        print(f"timing {name} ...", flush=True)
        results[name] = measure(name)
    text = table(results)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    notes = (
        "# Code generation timing\n\n"
        "Each column measured in a fresh process, imports excluded. cold: empty cache "
        "directory, Model(...) to rhs/jac_y/vjp_y/vjp_p compiled and called once; warm: same "
        "directory again. derive: derive_adjoint (terminal cost sum of squares of the states) "
        "+ derive_model + model-module source generation (CSE on).\n\n"
    )
    RESULTS.write_text(notes + text + "\n\n```json\n" + json.dumps(results, indent=1) + "\n```\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
