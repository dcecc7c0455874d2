"""Run by ``test_ensemble_cuda.py`` in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``
(the simulator must be chosen before Numba is imported).  Prints one JSON
object of results for the test to check; no assertions here."""

from __future__ import annotations

import json
import os

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

import numpy as np
import sympy as sp

import sciode


def lorenz():
    x, y, z = sp.symbols("x y z")
    s, r, b = sp.symbols("sigma rho beta")
    return sciode.Model(states=[x, y, z], rhs=[s * (y - x), x * (r - z) - y, x * y - b * z],
                        params=[s, r, b], name="lorenz")


def blowup():
    y, q = sp.symbols("y q")
    return sciode.Model(states=[y], rhs=[q * y**2], params=[q], name="cudasim_blowup")


def members_vs_solve(model, y0, span, P, te, method, **tol):
    """Per member: max |ensemble - solve|, and whether steps and nfev agree."""
    ens = sciode.solve_ensemble(model, y0, span, P, t_eval=te, method=method, device="cuda", **tol)
    out = []
    for m in range(P.shape[0]):
        ref = sciode.solve(model, y0, span, P[m], t_eval=te, method=method, **tol)
        out.append({"diff": float(np.abs(ens.y[m] - ref.y).max()),
                    "same_steps": int(ens.stats["nsteps"][m]) == ref.stats["nsteps"],
                    "same_nfev": int(ens.stats["nfev"][m]) == ref.stats["nfev"]})
    return out


def main():
    from numba import cuda

    res = {}
    L = lorenz()
    N = 5
    P = np.column_stack([np.full(N, 10.0), np.linspace(0, 28, N), np.full(N, 8 / 3)])
    te = np.linspace(0.0, 1.0, 5)
    for method in ("dopri5", "tsit5", "bosh3", "dop853"):
        res[method] = members_vs_solve(L, [1.0, 1.0, 1.0], (0.0, 1.0), P, te, method,
                                       rtol=1e-6, atol=1e-6)
    res["backward"] = members_vs_solve(L, [1.0, 2.0, 3.0], (0.3, 0.0), P[:3], te[::-1] * 0.3,
                                       "dopri5", rtol=1e-7, atol=1e-7)
    # float32: the loop in single precision, against float64 to its tolerance
    e32 = sciode.solve_ensemble(L, np.ones(3, np.float32), (0.0, 0.5), P[:3].astype(np.float32),
                                t_eval=[0.0, 0.5], rtol=1e-4, atol=1e-4, device="cuda")
    e64 = sciode.solve_ensemble(L, np.ones(3), (0.0, 0.5), P[:3], t_eval=[0.0, 0.5], rtol=1e-10,
                                atol=1e-10)
    res["f32"] = {"dtype": str(e32.y.dtype),
                  "rel": float(np.abs(e32.y[:, -1] - e64.y[:, -1]).max() / np.abs(e64.y[:, -1]).max())}
    # device arrays in (no copy), and a member that blows up
    q = np.array([[0.1], [2.0], [0.3]])
    eb = sciode.solve_ensemble(blowup(), cuda.to_device(np.ones((3, 1))), (0.0, 0.9),
                               cuda.to_device(q), t_eval=np.linspace(0, 0.9, 10), rtol=1e-9,
                               atol=1e-12, device="cuda")
    exact = 1 / (1 - q[[0, 2]] * np.linspace(0, 0.9, 10)[None, :])
    res["blowup"] = {"status": eb.status.tolist(), "t_reached": eb.t_reached.tolist(),
                     "others_rel": float(np.abs(eb.y[[0, 2], :, 0] / exact - 1).max()),
                     "nan_after": bool(np.isnan(eb.y[1, -1, 0]))}
    # gradients: the discrete adjoint of each member's steps, against the CPU's
    x, y, z = L.states
    cost = sciode.Cost(terminal=x**2 + y**2 + z**2, running=0.1 * x * y)
    rows = []
    for method, members in (("dopri5", range(N)), ("dop853", range(2))):
        g = sciode.value_and_grad_ensemble(L, cost, [1.0, 1.0, 1.0], (0.0, 1.0), P[list(members)],
                                           rtol=1e-6, atol=1e-6, device="cuda", method=method)
        for i, m in enumerate(members):
            ref = sciode.value_and_grad(L, cost, [1.0, 1.0, 1.0], (0.0, 1.0), P[m], method=method,
                                        sensitivity="discrete", rtol=1e-6, atol=1e-6)
            rows.append({"value": abs(g.value[i] - ref.value) / abs(ref.value),
                         "grad": float(np.abs(np.r_[g.grad_params[i] - ref.grad_params,
                                                   g.grad_y0[i] - ref.grad_y0]).max()
                                       / np.abs(np.r_[ref.grad_params, ref.grad_y0]).max())})
    res["grad_vs_discrete"] = rows
    # closed form: x' = -k x, J = x(T)^2 + int x^2 dt (see test_ensemble.py)
    xs, ks = sp.symbols("x k")
    decay = sciode.Model(states=[xs], rhs=[-ks * xs], params=[ks], name="cudasim_decay")
    k = np.linspace(0.2, 2.0, 6)
    x0 = np.linspace(0.5, 1.5, 6)
    T = 1.5
    gd = sciode.value_and_grad_ensemble(decay, sciode.Cost(terminal=xs**2, running=xs**2),
                                        x0[:, None], (0.0, T), k[:, None], rtol=1e-10,
                                        atol=1e-12, device="cuda")
    e = np.exp(-2 * k * T)
    J = x0**2 * e + x0**2 * (1 - e) / (2 * k)
    dJdk = -2 * T * x0**2 * e + x0**2 * (2 * T * e * 2 * k - 2 * (1 - e)) / (4 * k**2)
    dJdx0 = 2 * x0 * e + x0 * (1 - e) / k
    res["grad_closed_form"] = float(max(np.abs(gd.value / J - 1).max(),
                                        np.abs(gd.grad_params[:, 0] / dJdk - 1).max(),
                                        np.abs(gd.grad_y0[:, 0] / dJdx0 - 1).max()))
    tot = sciode.value_and_grad_ensemble(decay, sciode.Cost(terminal=xs**2), x0[:, None], (0.0, T),
                                         [0.7], reduce="sum", device="cuda")
    res["reduce_sum_shape"] = list(np.shape(tot.grad_params))
    few = sciode.value_and_grad_ensemble(L, cost, np.ones(3), (0.0, 1.0), P[:2], max_steps=5,
                                         device="cuda")
    res["few_steps"] = {"status": few.status[:, 0].tolist(),
                        "nan": bool(np.isnan(few.grad_params).all()),
                        "message": few.message(0)}
    errors = {}
    data = sciode.LeastSquares([0.5, 1.0], np.ones((2, 3)))
    calls = {
        "rk4": lambda: sciode.solve_ensemble(L, np.ones(3), (0, 1), P, device="cuda",
                                             method="rk4", dt=0.1),
        "data": lambda: sciode.value_and_grad_ensemble(L, data, np.ones(3), (0, 1), P,
                                                       device="cuda"),
    }
    for name, call in calls.items():
        try:
            call()
            errors[name] = None
        except ValueError as exc:
            errors[name] = str(exc)
    res["errors"] = errors
    # the benchmark's hand-written kernel computes what sciode's does
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.suite_cuda import _size_row

    res["hand_vs_sciode"] = float(_size_row(8)[5])
    print(json.dumps(res))


if __name__ == "__main__":
    main()
