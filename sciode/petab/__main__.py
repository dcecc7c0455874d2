"""``python -m sciode.petab PROBLEM.yaml [--fit --starts N]``: the PEtab runner.

Prints the problem's sizes, the log-likelihood at the nominal parameters, the
gradient there with its agreement with central differences, timings
(import, first and warm gradient), and how the steady states (pre-equilibration,
``time = inf``) were found and differentiated.  ``--fit`` minimises the negative
log-likelihood in PEtab scale within the parameter table's bounds with
L-BFGS-B on the gradient, from the nominal point and ``N - 1`` points drawn
uniformly in the bounds (seeded), and prints the best result.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _fit(prob, starts: int, seed: int, sensitivity: str, progress: bool = True):
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    from ..errors import SolverError
    from ..fit.optimize import failed_point

    lo, hi = prob.lower, prob.upper
    rng = np.random.default_rng(seed)
    points = [np.clip(prob.nominal, lo, hi)] + [lo + (hi - lo) * rng.random(lo.size) for _ in range(starts - 1)]

    results = []
    for k in tqdm(range(len(points)), desc="starts", disable=not progress, leave=False):
        x0 = points[k]
        best = [np.inf, np.array(x0, dtype=float)]

        def fun(theta, best=best):
            try:
                v, g = prob.nllh_and_grad(theta, sensitivity=sensitivity)
            except SolverError:
                v, g = np.inf, None
            if np.isfinite(v) and g is not None and np.all(np.isfinite(g)):
                if v < best[0]:
                    best[0], best[1] = v, np.array(theta, dtype=float)
                return v, g
            return failed_point(best[0], best[1], theta)  # the line search backs off

        t0 = time.perf_counter()
        res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)))
        results.append(res)
        print(f"  start {k}: nllh {res.fun:.6f}  ({res.nit} iterations, {time.perf_counter() - t0:.1f} s, "
              f"{res.message})", flush=True)
    return min(results, key=lambda r: r.fun)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sciode.petab", description=__doc__.splitlines()[0])
    parser.add_argument("problem", help="PEtab v1 problem file (YAML)")
    parser.add_argument("--fit", action="store_true", help="fit the estimated parameters (L-BFGS-B)")
    parser.add_argument("--starts", type=int, default=1, help="number of starts of --fit (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    parser.add_argument("--sensitivity", choices=("forward", "adjoint"), default="adjoint",
                        help="gradient method (default adjoint)")
    parser.add_argument("--method", default="kvaerno5", help="integration method (default kvaerno5)")
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--atol", type=float, default=1e-12)
    parser.add_argument("--steady-state", choices=("newton", "simulation"), default="newton",
                        help="how pre-equilibration and time = inf measurements reach steady state "
                             "(default newton, with a simulation fallback)")
    args = parser.parse_args(argv)

    from . import import_problem

    t0 = time.perf_counter()
    prob = import_problem(args.problem, method=args.method, rtol=args.rtol, atol=args.atol,
                          steady_state=args.steady_state)
    print(f"{prob}  (import {time.perf_counter() - t0:.2f} s)")
    t0 = time.perf_counter()
    value, grad = prob.nllh_and_grad(sensitivity=args.sensitivity)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    prob.nllh_and_grad(sensitivity=args.sensitivity)
    warm = time.perf_counter() - t0
    print(f"nominal: llh = {-value:.10g}, |grad nllh| = {np.linalg.norm(grad):.4g} "
          f"({args.sensitivity}: first call {first:.2f} s, warm {warm * 1e3:.1f} ms)")
    _, g_fd = prob.nllh_and_grad(sensitivity="fd")
    scale = max(float(np.max(np.abs(g_fd))), 1e-300)
    print(f"gradient vs central differences (step 1e-5, PEtab scale): max |g - g_fd| / max |g_fd| = "
          f"{float(np.max(np.abs(grad - g_fd))) / scale:.2e}")
    if prob.steady_state_counts:
        print("steady states: " + ", ".join(f"{k} {v}" for k, v in sorted(prob.steady_state_counts.items())))
    if args.fit:
        best = _fit(prob, max(args.starts, 1), args.seed, args.sensitivity)
        print(f"best: nllh = {best.fun:.10g}")
        for pid, scale, v in zip(prob.parameter_ids, prob.scales, best.x):
            print(f"  {pid:30s} {scale:6s} {v: .6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
