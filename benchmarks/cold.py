"""Child process of the cold / warm-cache measurements (``benchmarks._util.run_cold``).

``python -m benchmarks.cold TASK`` times, in this fresh process:

- ``import_s``: importing the package(s) the task needs;
- ``first_s``: model construction + the first call (code generation, Numba
  compilation or loading from ``SCIODE_CACHE_DIR``; jax tracing + XLA compile;
  CasADi integrator construction);
- ``second_s``: the same call again (warm), for reference;
- ``warm_s``: the median of five more calls.

It prints one JSON line.  Tasks are ``<kind>:<framework>:<problem>``, e.g.
``grad:sciode-adjoint:lv``, ``solve:diffrax-Dopri5:lorenz``, ``grad:sciode-adjoint+kvaerno5:lv`` (a
sciode gradient with another method than dopri5), ``grad:diffrax-BacksolveAdjoint+Tsit5:mlpm100``
(the 2-100-2 neural field declared in matrix form; ``mlps100`` entry by entry); append ``:new``
to rename the sciode model's states (its kernels miss the cache while the
shared stepping loops still hit it).
"""

from __future__ import annotations

import json
import sys
import time
import warnings


def _problem(name: str, suffix: str):
    from . import problems as P
    if name == "lorenz":
        return P.lorenz(suffix=suffix)
    if name == "lv":
        return P.lotka_volterra(suffix=suffix)
    if name == "robertson":
        return P.robertson()
    if name.startswith(("mlpm", "mlps")):  # mlpm100: the 2-100-2 neural field, matrix form
        return P.mlp(2, int(name[4:]), structured=name[3] == "m")
    raise ValueError(name)


def main(task: str) -> dict:
    warnings.simplefilter("ignore")
    parts = task.split(":")
    kind, fw, pname = parts[:3]
    suffix = "_new" if len(parts) > 3 and parts[3] == "new" else ""
    base, _, variant = fw.partition("-")
    t0 = time.perf_counter()
    if base == "sciode":
        import sciode  # noqa: F401
    elif base == "scipy":
        import scipy.integrate  # noqa: F401
    elif base == "diffrax":
        import diffrax  # noqa: F401
        import jax
        jax.config.update("jax_enable_x64", True)
    elif base == "torchdiffeq":
        import torch  # noqa: F401
        import torchdiffeq  # noqa: F401
    elif base == "casadi":
        import casadi  # noqa: F401
        import sympy  # noqa: F401  (the model is declared in SymPy and lambdified)
    from . import frameworks as F
    prob = _problem(pname, suffix)   # numpy set-up (LV data) is not part of the timings
    t1 = time.perf_counter()
    if kind == "solve":
        rtol = atol = 1e-8
        if base == "sciode":
            make = lambda: F.sciode_solve(prob, variant or "dopri5")  # noqa: E731
        elif base == "scipy":
            make = lambda: F.scipy_solve(prob, variant or "RK45")  # noqa: E731
        elif base == "diffrax":
            make = lambda: F.diffrax_solve(prob, variant or "Dopri5")  # noqa: E731
        elif base == "torchdiffeq":
            make = lambda: F.torchdiffeq_solve(prob)  # noqa: E731
        elif base == "casadi":
            make = lambda: F.casadi_solve(prob)  # noqa: E731
        else:
            raise ValueError(fw)
        if pname == "robertson":
            atol = prob.atol_scale * rtol
    else:
        rtol = atol = 1e-6
        if base == "sciode":
            mode, _, method = (variant or "adjoint").partition("+")
            make = lambda: F.sciode_grad(prob, mode, method=method or "dopri5")  # noqa: E731
        elif base == "diffrax":
            adjoint, _, solver = (variant or "RecursiveCheckpointAdjoint").partition("+")
            make = lambda: F.diffrax_grad(prob, adjoint, solver or "Dopri5")  # noqa: E731
        elif base == "torchdiffeq":
            make = lambda: F.torchdiffeq_grad(prob)  # noqa: E731
        elif base == "casadi":
            make = lambda: F.casadi_grad(prob)  # noqa: E731
        else:
            raise ValueError(fw)
    t2 = time.perf_counter()
    run = make()
    run(rtol, atol)
    t3 = time.perf_counter()
    run(rtol, atol)
    t4 = time.perf_counter()
    warm = []
    for _ in range(5):
        t5 = time.perf_counter()
        run(rtol, atol)
        warm.append(time.perf_counter() - t5)
    return {"task": task, "import_s": t1 - t0, "first_s": t3 - t2, "second_s": t4 - t3,
            "warm_s": sorted(warm)[2]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
