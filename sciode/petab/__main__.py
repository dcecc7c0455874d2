"""``python -m sciode.petab PROBLEM.yaml [--fit --starts N]``: the PEtab runner.

Prints the problem's sizes, the log-likelihood at the nominal parameters and
the gradient there (with timings).  ``--fit`` minimises the negative
log-likelihood in PEtab scale within the parameter table's bounds with
L-BFGS-B on the gradient, from the nominal point and ``N - 1`` points drawn
uniformly in the bounds (seeded), and prints the best result.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _fit(prob, starts: int, seed: int, sensitivity: str):
    from scipy.optimize import minimize

    from ..errors import SolverError

    lo, hi = prob.lower, prob.upper
    rng = np.random.default_rng(seed)
    points = [np.clip(prob.nominal, lo, hi)] + [lo + (hi - lo) * rng.random(lo.size) for _ in range(starts - 1)]

    # Where the model cannot be simulated (or the likelihood is infinite) a
    # large finite value makes L-BFGS-B's line search back off; inf would end
    # the run as "converged".
    penalty = 1e10 * (1.0 + abs(prob.nllh()))

    def fun(theta):
        try:
            v, g = prob.nllh_and_grad(theta, sensitivity=sensitivity)
        except SolverError:
            return penalty, np.zeros_like(theta)
        return (v, g) if np.isfinite(v) and np.all(np.isfinite(g)) else (penalty, np.zeros_like(theta))

    results = []
    for k, x0 in enumerate(points):
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
    args = parser.parse_args(argv)

    from . import import_problem

    t0 = time.perf_counter()
    prob = import_problem(args.problem, method=args.method, rtol=args.rtol, atol=args.atol)
    print(f"{prob}  (import {time.perf_counter() - t0:.2f} s)")
    t0 = time.perf_counter()
    value, grad = prob.nllh_and_grad(sensitivity=args.sensitivity)
    print(f"nominal: llh = {-value:.10g}, |grad nllh| = {np.linalg.norm(grad):.4g} "
          f"({args.sensitivity}, first call {time.perf_counter() - t0:.2f} s)")
    if args.fit:
        best = _fit(prob, max(args.starts, 1), args.seed, args.sensitivity)
        print(f"best: nllh = {best.fun:.10g}")
        for pid, scale, v in zip(prob.parameter_ids, prob.scales, best.x):
            print(f"  {pid:30s} {scale:6s} {v: .6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
