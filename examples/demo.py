"""Demo on an embedded example: declare a model, derive its adjoint, solve it.

Run with ``make demo`` (or ``python -m examples.demo``).
"""

import numpy as np
import sympy as sp

import sciode


def main() -> None:
    x, v = sp.symbols("x v")
    k, c = sp.symbols("k c")
    model = sciode.Model(states=[x, v], rhs=[v, -k * x - c * v], params=[k, c], name="oscillator")
    cost = sciode.Cost(terminal=x**2, running=sp.Rational(1, 10) * v**2)
    adj = sciode.symbolic.derive_adjoint(model, cost)
    print("Model:", model)
    print("Hamiltonian H =", adj.hamiltonian)
    for lam, rhs in zip(adj.costates, adj.costate_rhs):
        print(f"  d{lam}/dt =", rhs)
    print("lambda(t1) =", adj.terminal_costate)
    print("dH/dp =", adj.param_gradient)
    sol = sciode.solve(model, [1.0, 0.0], (0.0, 10.0), params=[4.0, 0.1],
                       t_eval=np.linspace(0, 10, 6), rtol=1e-8, atol=1e-10)
    print(sol)
    for t, y in zip(sol.t, sol.y):
        print(f"  t={t:5.2f}  x={y[0]: .6f}  v={y[1]: .6f}")


if __name__ == "__main__":
    main()
