"""Models declared in matrix form (``MatrixSymbol`` states and parameters).

Checked three ways: the structured kernels equal the kernels of the same
model declared entry by entry (to rounding); gradients of a linear model
``x' = A x`` equal the closed form (``scipy.linalg.expm_frechet``); gradients
of a small neural ODE equal SciPy complex-step derivatives of a hand-written
NumPy right-hand side (`validation.independent`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg as sla
import sympy as sp

import sciode
from sciode import ModelError, codegen
from validation.independent import engine as ref


def _mlp_matrix(n, h, extra=True):
    """``W2 tanh(W1 y + b1) + b2`` (plus ``-k sin(t) y + y .* y c`` when ``extra``)."""
    y = sp.MatrixSymbol("y", n, 1)
    W1, b1 = sp.MatrixSymbol("W1", h, n), sp.MatrixSymbol("b1", h, 1)
    W2, b2 = sp.MatrixSymbol("W2", n, h), sp.MatrixSymbol("b2", n, 1)
    rhs = W2 * (W1 * y + b1).applyfunc(sp.tanh) + b2
    params = [W1, b1, W2, b2]
    if extra:
        k, c, t = sp.symbols("k c t")
        rhs = rhs - k * sp.sin(t) * y + c * sp.HadamardProduct(y, y) / 10
        params += [k, c]
    return sciode.Model(states=[y], params=params, rhs=[rhs], name=f"mlp{n}x{h}")


@pytest.fixture(scope="module")
def pair():
    """One structured model with most node kinds, and its entry-by-entry twin."""
    x, y = sp.MatrixSymbol("x", 2, 1), sp.Symbol("z")
    A, B = sp.MatrixSymbol("A", 2, 2), sp.MatrixSymbol("B", 2, 3)
    k, t, u = sp.symbols("k t u")
    explicit = sp.Matrix([[0, 1], [-k, -y]])
    rhs_x = (A * x + explicit * x + (B * B.T) * x / 4 + sp.HadamardPower(x, 2) * u
             + (A ** 2) * x / 10 + sp.Identity(2) * x * sp.cos(t) + sp.ones(2, 1) * y)
    rhs_y = -k * y + x[0, 0] * A[1, 0]
    structured = sciode.Model(states=[x, y], params=[A, B, k], controls=[u],
                              rhs=[rhs_x.applyfunc(lambda e: e / (1 + e ** 2)), rhs_y], name="kinds")
    scalar = sciode.Model(states=list(structured.states), params=list(structured.params),
                          controls=list(structured.controls), rhs=list(structured.rhs), name="kinds_scalar")
    return structured, scalar


def _all_kernels(model, rng):
    K = codegen.model_kernels(model)
    n, n_p, n_w = model.n_states, model.n_params, model.n_controls
    t, y, p, w = 0.7, rng.standard_normal(n), rng.standard_normal(n_p), rng.standard_normal(n_w)
    v = rng.standard_normal(n)
    S = rng.standard_normal((n, n_p + n))
    out = {}
    nnz = K.jac_pattern[0].size
    for name, shape, extra in [("rhs", n, ()), ("dfdt", n, ()), ("jac_y", (n, n), ()), ("jac_nz", (1, nnz), ()),
                               ("jac_p", (n, n_p), ()), ("vjp_y", n, (v,)), ("vjp_p", n_p, (v,)),
                               ("vjp_w", n_w, (v,)), ("vjp_yp", n + n_p, (v,)), ("sens_rhs", S.shape, (S,))]:
        o = np.full(shape, np.nan)
        K[name](t, y, p, w, *extra, o)
        out[name] = o
    return out, K


def test_structured_kernels_equal_the_scalar_declarations(pair):
    structured, scalar = pair
    assert structured.structure is not None and scalar.structure is None
    a, ka = _all_kernels(structured, np.random.default_rng(1))
    b, kb = _all_kernels(scalar, np.random.default_rng(1))
    assert "np.zeros" in Path(ka.path).read_text()  # the structured module, not the scalar one
    for name in a:
        assert np.all(np.isfinite(a[name])), name
        np.testing.assert_allclose(a[name], b[name], rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(ka.jac_pattern[0], kb.jac_pattern[0])
    np.testing.assert_array_equal(ka.jac_pattern[1], kb.jac_pattern[1])
    rows, cols = ka.jac_pattern
    np.testing.assert_array_equal(a["jac_nz"][0], a["jac_y"][rows, cols])  # the pattern's values
    assert np.count_nonzero(a["jac_y"]) == rows.size


def test_flat_symbols_and_declaration_errors():
    y, W = sp.MatrixSymbol("y", 2, 1), sp.MatrixSymbol("W", 2, 2)
    m = sciode.Model(states=[y], params=[W], rhs=[W * y])
    assert [s.name for s in m.states] == ["y[0]", "y[1]"]
    assert [s.name for s in m.params] == ["W[0, 0]", "W[0, 1]", "W[1, 0]", "W[1, 1]"]
    assert m.rhs[0] == m.params[0] * m.states[0] + m.params[1] * m.states[1]
    assert m.flat(y[1, 0] * W[0, 1]) == m.states[1] * m.params[1]
    with pytest.raises(ModelError, match="shape"):
        sciode.Model(states=[y], params=[W], rhs=[W])
    with pytest.raises(ModelError, match="matrix `V`, which is not declared"):
        sciode.Model(states=[y], params=[W], rhs=[sp.MatrixSymbol("V", 2, 2) * y])
    with pytest.raises(ModelError, match="duplicate name"):
        sciode.Model(states=[y], params=[sp.MatrixSymbol("y", 2, 2)], rhs=[W * y])
    with pytest.raises(ModelError, match="model.flat"):
        sciode.Cost(terminal=y[0, 0] ** 2).check(m)
    sciode.Cost(terminal=m.flat(y[0, 0] ** 2)).check(m)
    np.testing.assert_array_equal(m.param_vector({W: [[1, 2], [3, 4]]}), [1, 2, 3, 4])
    np.testing.assert_array_equal(m.state_vector({"y": [5, 6]}), [5, 6])
    with pytest.raises(ModelError, match="shape"):
        m.param_vector({W: np.ones(3)})
    assert repr(m) == "Model(name='model', states=(y (2x1)), params=(W (2x2)), controls=())"
    trace = sciode.Model(states=[y], params=[W], rhs=[W * y * sp.Trace(W)])
    with pytest.raises(ModelError, match="Trace"):
        codegen.model_kernels(trace)


def test_linear_matrix_model_gradient_is_the_closed_form():
    """``x' = A x``, ``J = |x(T)|^2 / 2``: ``dJ/dA_ij = x(T)^T L(A T, E_ij T) x0``."""
    x, A = sp.MatrixSymbol("x", 3, 1), sp.MatrixSymbol("A", 3, 3)
    model = sciode.Model(states=[x], params=[A], rhs=[A * x])
    rng = np.random.default_rng(3)
    Av = rng.standard_normal((3, 3)) * 0.5 - np.eye(3)
    x0, T = rng.standard_normal(3), 1.5
    E = sla.expm(Av * T)
    xT = E @ x0
    ref_g = np.array([xT @ (sla.expm_frechet(Av * T, np.eye(9)[k].reshape(3, 3) * T, compute_expm=False) @ x0)
                      for k in range(9)])
    cost = sciode.Cost(terminal=sum(s ** 2 for s in model.states) / 2)
    for mode, method in [("adjoint", "dopri5"), ("forward", "dopri5"), ("adjoint", "kvaerno5")]:
        r = sciode.value_and_grad(model, cost, x0, (0.0, T), params=Av.ravel(), sensitivity=mode,
                                  method=method, rtol=1e-10, atol=1e-12)
        assert r.value == pytest.approx(0.5 * xT @ xT, rel=1e-8)
        np.testing.assert_allclose(r.grad_params, ref_g, rtol=1e-7, atol=1e-9 * np.abs(ref_g).max(),
                                   err_msg=f"{mode}/{method}")
        np.testing.assert_allclose(r.grad_y0, E.T @ xT, rtol=1e-7, err_msg=f"{mode}/{method}")


def _numpy_mlp(n, h):
    def f(t, y, p, w):
        W1 = p[:h * n].reshape(h, n)
        b1 = p[h * n:h * n + h]
        W2 = p[h * n + h:2 * h * n + h].reshape(n, h)
        b2 = p[2 * h * n + h:2 * h * n + h + n]
        k, c = p[-2], p[-1]
        return W2 @ np.tanh(W1 @ y + b1) + b2 - k * np.sin(t) * y + c * y * y / 10
    return f


def test_neural_ode_gradient_matches_complex_step():
    n, h = 2, 5
    model = _mlp_matrix(n, h)
    rng = np.random.default_rng(7)
    p = rng.standard_normal(model.n_params) * 0.5
    y0 = np.array([0.8, -0.3])
    T = 2.0
    spec = ref.Spec(
        system=ref.System(n=n, n_p=p.size, f=_numpy_mlp(n, h), f_y=None, f_p=None),
        objective=ref.Objective(phi=lambda x, p: float(np.real(x @ x)) if np.isrealobj(x) else x @ x,
                                phi_y=None, phi_p=None),
        y0=y0, t_span=(0.0, T), params=p)
    expected = ref.complex_step(spec, rtol=1e-12)
    cost = sciode.Cost(terminal=sum(s ** 2 for s in model.states))
    for mode in ("adjoint", "checkpoint", "forward"):
        r = sciode.value_and_grad(model, cost, y0, (0.0, T), params=p, sensitivity=mode,
                                  method="dopri5", rtol=1e-10, atol=1e-12)
        assert r.value == pytest.approx(expected.value, rel=1e-8)
        assert ref.rel_error(r.grad_params, expected.params) < 1e-7, mode
        assert ref.rel_error(r.grad_y0, expected.y0) < 1e-7, mode


def _evaluate(expr, values):
    """A matrix expression at numbers: matrices and scalars substituted, then evaluated."""
    from sympy.matrices.expressions.hadamard import HadamardPower

    e = expr.xreplace(values)
    # SymPy's doit leaves a Hadamard power of an explicit matrix unevaluated
    e = e.replace(lambda a: isinstance(a, HadamardPower),
                  lambda a: sp.ImmutableMatrix(a.args[0].doit()).applyfunc(lambda x: x ** a.args[1]))
    e = e.doit() if hasattr(e, "doit") else e
    return np.array(sp.Matrix(e).evalf(), dtype=float) if getattr(e, "is_Matrix", False) else float(e)


def test_derive_adjoint_prints_the_matrix_forms_the_kernels_run(pair):
    """``derive_adjoint(...).matrix_vjp``: ``(df/dX)^T Lambda`` per declared block,
    written with the model's matrices (the gradient by ``W1`` an outer product),
    evaluates to what the compiled ``vjp_yp`` kernel returns."""
    for model in (_mlp_matrix(2, 3), pair[0]):
        adj = sciode.symbolic.derive_adjoint(model)
        forms = adj.matrix_vjp
        assert forms is not None
        st = model.structure
        rng = np.random.default_rng(5)
        y, p, w = (rng.uniform(0.2, 0.8, n) for n in (model.n_states, model.n_params, model.n_controls))
        v = rng.standard_normal(model.n_states)
        t = 0.4
        values = {model.t: t}
        for syms, vec in ((model.states, y), (model.params, p), (model.controls, w)):
            values.update(zip(syms, vec))  # flat entries (in scalar expressions)
        for group, vec in ((st.states, y), (st.params, p), (st.controls, w)):
            for b in group:
                block = vec[b.offset:b.offset + b.size]
                values[b.symbol] = sp.ImmutableMatrix(*b.shape, block.tolist()) if b.is_matrix else block[0]
        for b in st.states:
            name = f"lambda_{b.symbol.name}"
            lam = v[b.offset:b.offset + b.size]
            key = sp.MatrixSymbol(name, *b.shape) if b.is_matrix else sp.Symbol(name)
            values[key] = sp.ImmutableMatrix(*b.shape, lam.tolist()) if b.is_matrix else lam[0]
        out = np.zeros(model.n_states + model.n_params)
        codegen.model_kernels(model)["vjp_yp"](t, y, p, w, v, out)
        flat_index = {s: i for i, s in enumerate(model.states)}
        flat_index.update({s: model.n_states + j for j, s in enumerate(model.params)})
        expected = np.zeros_like(out)
        for key, expr in forms.items():
            got = _evaluate(expr, values)
            blocks = [b for b in (*st.states, *st.params) if b.symbol == key]
            if blocks:  # a declared block (matrix or scalar)
                b = blocks[0]
                base = b.offset if b in st.states else model.n_states + b.offset
                expected[base:base + b.size] += np.ravel(got)
            elif key in flat_index:  # a flat entry used in a scalar expression
                expected[flat_index[key]] += got
        np.testing.assert_allclose(expected, out, rtol=1e-10, atol=1e-12, err_msg=model.name)
    W1 = sp.MatrixSymbol("W1", 3, 2)
    assert isinstance(_mlp_matrix(2, 3, extra=False).structure, sciode.blocks.Structure)
    mlp_forms = sciode.symbolic.derive_adjoint(_mlp_matrix(2, 3, extra=False)).matrix_vjp
    assert mlp_forms[W1].shape == (3, 2) and "lambda_y" in str(mlp_forms[W1])


def test_matrix_form_models_are_refused_on_cuda_with_the_way_out(monkeypatch):
    """A matrix-form model's kernels allocate arrays, which a GPU thread cannot:
    device='cuda' says so (before any launch) and names the flat declaration."""
    from sciode import cuda

    monkeypatch.setattr(cuda, "available", lambda: True)
    model = _mlp_matrix(2, 3, extra=False)
    p = np.zeros((2, model.n_params))
    with pytest.raises(ValueError, match="matrix form"):
        sciode.solve_ensemble(model, [0.1, 0.2], (0.0, 1.0), params=p, device="cuda")
    cost = sciode.Cost(terminal=model.states[0] ** 2)
    with pytest.raises(ValueError, match="matrix form"):
        sciode.value_and_grad_ensemble(model, cost, [0.1, 0.2], (0.0, 1.0), params=p, device="cuda")
