"""`sciode.symbolic` against hand-derived expressions.

Each case writes the Hamiltonian, costate equation, terminal costate and
gradient integrands out by hand and asks SymPy whether the difference with
`derive_adjoint`'s result simplifies to zero.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import sciode
from sciode.symbolic import derive_adjoint, derive_model, sparse_jacobian


def assert_same(derived, expected):
    """Entrywise ``simplify(derived - expected) == 0``, lengths included."""
    derived, expected = list(derived), list(expected)
    assert len(derived) == len(expected)
    for i, (a, b) in enumerate(zip(derived, expected)):
        assert sp.simplify(a - b) == 0, f"entry {i}: derived {a} != expected {b}"


def lqr_model():
    """Scalar LQR ``x' = a x + b u``, ``L = q x^2 + r u^2``; weights are params."""
    x, u, a, b, q, r = sp.symbols("x u a b q r")
    model = sciode.Model(states=[x], rhs=[a * x + b * u], params=[a, b, q, r], controls=[u], name="lqr")
    return model, sciode.Cost(running=q * x**2 + r * u**2)


def test_oscillator_adjoint_matches_hand_derivation(oscillator):
    x, v = oscillator.states
    k, c = oscillator.params
    adj = derive_adjoint(oscillator, sciode.Cost(terminal=x**2, running=0.1 * v**2))
    lx, lv = adj.costates
    assert_same([adj.hamiltonian], [0.1 * v**2 + lx * v + lv * (-k * x - c * v)])
    # lambda' = -dH/dy
    assert_same(adj.costate_rhs, [k * lv, -(2 * 0.1 * v + lx - c * lv)])
    assert_same(adj.terminal_costate, [2 * x, 0])
    assert_same(adj.param_gradient, [-x * lv, -v * lv])
    assert adj.control_gradient == ()


def test_lqr_adjoint_matches_hand_derivation():
    model, cost = lqr_model()
    (x,), (u,) = model.states, model.controls
    a, b, q, r = model.params
    adj = derive_adjoint(model, cost)
    (lam,) = adj.costates
    assert_same([adj.hamiltonian], [q * x**2 + r * u**2 + lam * (a * x + b * u)])
    assert_same(adj.costate_rhs, [-2 * q * x - a * lam])
    assert_same(adj.control_gradient, [2 * r * u + b * lam])
    assert_same(adj.param_gradient, [lam * x, lam * u, x**2, u**2])
    assert_same(adj.terminal_costate, [0])


def test_least_squares_adjoint_is_minus_jacobian_transpose(lotka_volterra):
    x, y = lotka_volterra.states
    a, b, c, d = lotka_volterra.params
    t_obs = np.linspace(0.0, 1.0, 5)
    data = sciode.LeastSquares(t_obs, np.ones((5, 2)))
    adj = derive_adjoint(lotka_volterra, data)
    lx, ly = adj.costates
    jac = sp.Matrix([[a - b * y, -b * x], [c * y, c * x - d]])
    # No running cost: the costate only sees the dynamics between observations.
    assert_same(adj.costate_rhs, -jac.T * sp.Matrix([lx, ly]))
    assert_same(adj.terminal_costate, [0, 0])
    assert_same(adj.param_gradient, [lx * x, -lx * x * y, ly * x * y, -ly * y])
    assert adj.observation_jacobian == sp.eye(2)


def test_observation_jacobian_of_explicit_observables(lotka_volterra):
    x, y = lotka_volterra.states
    a = lotka_volterra.params[0]
    data = sciode.LeastSquares([0.0, 1.0], [[1.0, 2.0], [3.0, 4.0]], observables=[x * y, a * y**2])
    adj = derive_adjoint(lotka_volterra, data)
    expected = sp.Matrix([[y, x], [0, 2 * a * y]])
    assert_same(adj.observation_jacobian, expected)


def test_sensitivity_rhs_is_jacobian_times_s_plus_fp(lorenz):
    x, y, z = lorenz.states
    sigma, rho, beta = lorenz.params
    adj = derive_adjoint(lorenz)
    S = adj.sensitivity_symbols
    assert S.shape == (3, 3) and all(isinstance(s, sp.Symbol) for s in S)
    jac = sp.Matrix([[-sigma, sigma, 0], [rho - z, -1, -x], [y, x, -beta]])
    fp = sp.Matrix([[y - x, 0, 0], [0, x, 0], [0, 0, -z]])
    assert_same(adj.sensitivity_rhs, jac * S + fp)


def test_zero_cost_adjoint_is_neural_ode_adjoint(lorenz):
    adj = derive_adjoint(lorenz)
    lam = sp.Matrix(adj.costates)
    jac = sp.Matrix(lorenz.rhs).jacobian(lorenz.states)
    assert_same(adj.costate_rhs, -jac.T * lam)
    assert_same([adj.hamiltonian], [(lam.T * sp.Matrix(lorenz.rhs))[0]])


def test_costates_never_clash_with_model_symbols():
    # A param already named like the default costate of state `x`.
    x, lam_x = sp.symbols("x lambda_x")
    model = sciode.Model(states=[x], rhs=[-lam_x * x], params=[lam_x])
    adj = derive_adjoint(model)
    (costate,) = adj.costates
    assert costate != lam_x and costate not in model.symbols
    assert_same(adj.costate_rhs, [lam_x * costate])


def test_derived_objects_are_plain_sympy(oscillator):
    x, v = oscillator.states
    data = sciode.LeastSquares([0.0, 1.0], [1.0, 2.0], observables=x)
    adj = derive_adjoint(oscillator, sciode.Cost(terminal=x**2, running=0.1 * v**2) + data)
    pieces = [
        adj.hamiltonian, *adj.costates, *adj.costate_rhs, *adj.terminal_costate,
        *adj.param_gradient, adj.observation_jacobian, adj.sensitivity_rhs,
    ]
    for piece in pieces:
        assert isinstance(piece, (sp.Basic, sp.MatrixBase))
        assert isinstance(sp.latex(piece), str) and sp.latex(piece)
    assert sp.latex(adj.costates[0]).startswith(r"\lambda")


def test_sparse_jacobian_lists_structural_nonzeros_only(lorenz):
    x, y, z = lorenz.states
    # Lorenz: only d(dx/dt)/dz is structurally zero.
    entries = sparse_jacobian(lorenz.rhs, lorenz.states)
    assert set(entries) == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)}
    # An expression that contains `y` but whose y-derivative cancels to 0.
    cancelling = sp.Add(x, y, -y, evaluate=False)
    assert sparse_jacobian([cancelling, 3, y * z], [x, y, z]) == {(0, 0): 1, (2, 1): z, (2, 2): y}
    assert all(e != 0 for e in entries.values())


def test_sparse_jacobian_of_a_chain_is_banded():
    n = 12
    u = sp.symbols(f"u0:{n}")
    rhs = [(u[i - 1] if i else 0) - 2 * u[i] + (u[i + 1] if i < n - 1 else 0) for i in range(n)]
    entries = sparse_jacobian(rhs, u)
    assert set(entries) == {(i, j) for i in range(n) for j in range(n) if abs(i - j) <= 1}
    assert all(entries[(i, i)] == -2 for i in range(n))


@pytest.mark.parametrize("fn, expected", [
    (sp.Abs, sp.sign),
    (lambda e: sp.Max(e, 0), lambda e: sp.Heaviside(e)),
])
def test_derivatives_of_real_functions_need_no_re_im(fn, expected):
    # Plain Symbols carry no `real` assumption; the derivative must still be
    # the real one (sign, Heaviside), never re()/im()/Derivative terms that no
    # kernel can evaluate.
    x, k = sp.symbols("x k")
    model = sciode.Model(states=[x], rhs=[fn(x - k)], params=[k])
    der = derive_model(model)
    dfdy, dfdp = der.dfdy[(0, 0)], der.dfdp[(0, 0)]
    for d in (dfdy, dfdp):
        assert not d.has(sp.re, sp.im, sp.Derivative)
    assert_same([dfdy, dfdp], [expected(x - k), -expected(x - k)])


def test_symengine_derivatives_equal_sympy_and_keep_the_symbols(monkeypatch):
    """The SymEngine route gives SymPy's derivatives (equal at random points;
    the algebraic form may differ: ``d sqrt(x y)/dx`` is ``y / (2 sqrt(x y))``
    there, ``sqrt(x y) / (2 x)`` in SymPy), in the user's symbols (assumptions
    kept); SymPy alone is the fallback."""
    from sciode.symbolic import derive as d

    assert d._se is not None, "symengine is a dependency"
    x, y = sp.symbols("x y")
    k = sp.Symbol("k", positive=True)
    r = sp.Dummy("r")
    exprs = [sp.exp(-k * x) * sp.sin(y) + sp.Rational(1, 3) * x ** 3 / y,
             sp.log(1 + x ** 2) * sp.tanh(k * y) + sp.sqrt(x * y) - 0.1 * sp.atan(x) * r,
             sp.cos(x) ** 2 + sp.asinh(y) * sp.cosh(x) - sp.pi * sp.acos(y / 3) + sp.tan(x * k),
             sp.Abs(x) * y + sp.Piecewise((x, y > 0), (2 * x, True))]  # SymPy's route (not whitelisted)
    assert [d._symengine_can(e) for e in exprs] == [True, True, True, False]
    variables = [x, y, k, r]
    fast = d.sparse_jacobian(exprs, variables)
    monkeypatch.setattr(d, "_se", None)
    slow = d.sparse_jacobian(exprs, variables)
    assert fast.keys() == slow.keys()
    rng = np.random.default_rng(0)
    for key in fast:
        for _ in range(3):
            point = dict(zip(variables, rng.uniform(0.2, 0.9, 4)))
            a, b = float(fast[key].subs(point)), float(slow[key].subs(point))
            assert a == pytest.approx(b, rel=1e-13, abs=1e-14), key
    assert any(k in e.free_symbols for e in fast.values())  # the positive k itself, not a plain twin
    assert all(e.free_symbols <= {x, y, k, r} for e in fast.values())
