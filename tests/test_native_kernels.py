"""Generated kernels compiled by ``codegen.native`` (llvmlite) against Numba's
compile of the same source.

The native compiler translates the generated module's syntax tree itself, so
its machine code shares nothing with Numba's lowering but the source: every
kernel of several models (every math function the printer emits, integer and
float powers, piecewise expressions, kernels folded into loops, sparse
Jacobians, the sensitivity kernel's column loop, matrix-form kernels with
stack temporaries, cost and observable kernels) must give the same bits as
Numba's compile of that source without fast-math flags (to rounding where a
loop accumulates a sum, which may be reordered), on random inputs, called
from Python and from compiled code.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import sympy as sp

import sciode
from sciode import _numba_compat, abi, codegen

pytestmark = pytest.mark.skipif(_numba_compat.PORTABLE or not codegen.native_enabled(),
                                reason="the portable path compiles kernels with Numba only")


def _functions_model():
    x, y, z, a, b, c = sp.symbols("x y z a b c")
    w = sp.Symbol("w")
    rhs = [a * (y - x) + sp.tanh(x) ** 3 / (1 + y ** 2) - sp.exp(-z) * x ** -2 + sp.sin(w * x),
           sp.log(1 + x ** 2) * sp.cos(y) - sp.sqrt(1 + z ** 2) + sp.Abs(x) ** sp.Rational(3, 2) + c ** 2.5,
           sp.Piecewise((x * y, x > 0.2), (-z, True)) + sp.atan(y) * sp.sinh(b) - 1 / sp.sqrt(2 + y ** 2)
           + sp.erf(z) * sp.log(2 + sp.cosh(z)) + sp.Abs(x - y) * c + sp.Max(0, x * c) + sp.Min(y, z, 0.3)]
    return sciode.Model(states=[x, y, z], rhs=rhs, params=[a, b, c], controls=[w], name="native_functions")


def _brusselator(cells: int = 40):
    """2 x ``cells`` states: more rows than ``emit.ROLL_THRESHOLD``, so the
    kernels are folded into loops, and ``A`` enters every row (a long column)."""
    u = sp.symbols(f"u0:{cells}")
    v = sp.symbols(f"v0:{cells}")
    A, B, alpha = sp.symbols("A B alpha")
    du, dv = [], []
    for i in range(cells):
        lap_u = u[i - 1] - 2 * u[i] + u[(i + 1) % cells]
        lap_v = v[i - 1] - 2 * v[i] + v[(i + 1) % cells]
        du.append(B + u[i] ** 2 * v[i] - (A + 1) * u[i] + alpha * lap_u)
        dv.append(A * u[i] - u[i] ** 2 * v[i] + alpha * lap_v)
    return sciode.Model(states=[*u, *v], rhs=du + dv, params=[A, B, alpha], name="native_brusselator")


def _matrix_model():
    """A 2-3-2 neural field in matrix form: kernels with stack temporaries,
    constant index tables and row copies (``codegen/structured.py``)."""
    yv = sp.MatrixSymbol("y", 2, 1)
    W1, b1, W2 = sp.MatrixSymbol("W1", 3, 2), sp.MatrixSymbol("b1", 3, 1), sp.MatrixSymbol("W2", 2, 3)
    return sciode.Model(states=[yv], params=[W1, b1, W2], rhs=[W2 * (W1 * yv + b1).applyfunc(sp.tanh)],
                        name="native_matrix_field")


MODELS = {"functions": _functions_model, "brusselator": _brusselator, "matrix": _matrix_model}


def _cost(model):
    y = model.states
    obs = [y[0] * y[1], sp.exp(-y[-1]) + model.params[0]]
    data = sciode.LeastSquares(np.linspace(0.1, 1.0, 4), np.ones((4, 2)), observables=obs, sigma=0.5)
    return sciode.Cost(terminal=y[0] ** 2 + model.params[1] * y[-1], running=0.1 * y[1] ** 2 * model.params[0],
                       data=data)


def _arrays(sig, name, sizes, rng):
    """Random inputs and a zeroed output for a kernel of signature ``sig``."""
    n, n_p, n_w, n_h, nnz = sizes
    out_len = {"rhs": n, "dfdt": n, "vjp_y": n, "vjp_p": n_p, "vjp_w": n_w, "vjp_yp": n + n_p,
               "L": 1, "dLdy": n, "dLdp": n_p, "dLdw": n_w, "L_grad": n + n_p + 1, "Phi": 1,
               "dPhidy": n, "dPhidp": n_p, "obs": n_h, "obs_vjp_y": n, "obs_vjp_p": n_p}
    head = [0.37, rng.normal(size=n), rng.normal(size=n_p), rng.normal(size=n_w)]
    if sig == abi.VEC_SIG:
        return head + [np.zeros(out_len[name])]
    if sig == abi.VJP_SIG:
        return head + [rng.normal(size=n_h if name.startswith("obs") else n), np.zeros(out_len[name])]
    if sig == abi.MAT_SIG:
        shape = {"jac_y": (n, n), "jac_nz": (1, nnz), "jac_p": (n, n_p)}[name]
        return head + [np.full(shape, 7.0)]  # not zeroed: the kernel writes every entry it owns
    return head + [rng.normal(size=(n, n_p + n)), np.zeros((n, n_p + n))]


def _reduces_in_loops(ks, name) -> bool:
    """Whether kernel ``name`` has an augmented assignment inside a loop."""
    import ast

    tree = next(n for n in ast.parse(ks.module.__sciode_source__).body
                if isinstance(n, ast.FunctionDef) and n.name == name)
    return any(isinstance(m, ast.AugAssign) for n in ast.walk(tree) if isinstance(n, ast.For) for m in ast.walk(n))


@pytest.fixture(scope="module", params=sorted(MODELS))
def kernel_sets(request):
    model = MODELS[request.param]()
    return model, codegen.model_kernels(model), codegen.cost_kernels(model, _cost(model))


def test_every_kernel_equals_numbas_compile_of_its_source(kernel_sets):
    model, mk, ck = kernel_sets
    rng = np.random.default_rng(3)
    nnz = len(mk.module.JAC_ROWS)
    sizes = (model.n_states, model.n_params, model.n_controls, ck.n_obs, nnz)
    native = 0
    for ks, table in ((mk, abi.MODEL_KERNELS), (ck, abi.COST_KERNELS)):
        for name, sig in table.items():
            k = ks[name]
            if not isinstance(k, _numba_compat.DirectKernel):
                assert name in ks.module.ZERO_KERNELS, (name, codegen.NATIVE_FALLBACKS.get(
                    (ks.module.__name__, name)))
                continue
            native += 1
            strict = numba.njit(sig, error_model="numpy")(getattr(ks.module, name))
            for _ in range(3):
                args = _arrays(sig, name, sizes, rng)
                mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
                k(*mine)
                strict(*args)
                if _reduces_in_loops(ks, name):  # ``reassoc`` on those sums: equal to rounding
                    np.testing.assert_allclose(mine[-1], args[-1], rtol=1e-12,
                                               atol=1e-14 * np.abs(args[-1]).max(), err_msg=name)
                else:
                    assert np.array_equal(mine[-1], args[-1], equal_nan=True), name
                assert np.isfinite(args[-1]).any(), name
    assert native >= 15


def test_loops_call_the_native_kernel_through_its_address(kernel_sets):
    """A compiled caller reaches the kernel through the first-class function's
    C address (the direct kernel has no Numba entry): same bits as from Python."""
    model, mk, _ = kernel_sets
    k = mk["rhs"]
    assert isinstance(k, _numba_compat.DirectKernel) and k.jit_address() == 0
    assert numba.typeof(k) == abi.VEC

    @numba.njit((abi.VEC, abi.ARRAY, abi.ARRAY, abi.ARRAY, abi.ARRAY))
    def call(f, y, p, w, out):
        f(0.25, y, p, w, out)

    rng = np.random.default_rng(5)
    y, p, w = rng.normal(size=model.n_states), rng.normal(size=model.n_params), rng.normal(size=model.n_controls)
    a, b = np.zeros(model.n_states), np.zeros(model.n_states)
    call(k, y, p, w, a)
    k(0.25, y, p, w, b)
    assert np.array_equal(a, b) and np.abs(a).sum() > 0


def test_solutions_and_gradients_match_the_numba_kernels(monkeypatch):
    """End to end: a solve and an adjoint gradient on native kernels equal those
    on Numba-compiled kernels (these carry ``reassoc``: equal to rounding)."""
    x, y, z, a, b, c, w = sp.symbols("x y z a b c w")
    model = sciode.Model(states=[x, y, z], params=[a, b, c], controls=[w], name="native_smooth",
                         rhs=[a * (y - x) + sp.sin(w * x), -b * y + c * sp.tanh(x) + sp.exp(-z ** 2),
                              x * y - c * z + sp.sqrt(1 + x ** 2) / 10])
    y0, p = np.array([0.8, -0.4, 0.3]), np.array([0.9, 0.2, 0.4])
    cost = _cost(model)
    tg = np.linspace(0.0, 1.0, 6)
    controls = sciode.Controls(tg, np.cos(tg)[:, None])
    kw = dict(method="dopri5", rtol=1e-9, atol=1e-9, controls=controls)
    sol = sciode.solve(model, y0, (0.0, 1.0), params=p, t_eval=[0.5, 1.0], **kw)
    g = sciode.value_and_grad(model, cost, y0, (0.0, 1.0), params=p, **kw)
    assert isinstance(codegen.model_kernels(model)["rhs"], _numba_compat.DirectKernel)
    monkeypatch.setenv(codegen.KERNEL_COMPILER_ENV, "numba")
    monkeypatch.setattr(codegen, "_SETS", {})
    assert isinstance(codegen.model_kernels(model)["rhs"], _numba_compat.Kernel)
    sol2 = sciode.solve(model, y0, (0.0, 1.0), params=p, t_eval=[0.5, 1.0], **kw)
    g2 = sciode.value_and_grad(model, cost, y0, (0.0, 1.0), params=p, **kw)
    np.testing.assert_allclose(sol.y, sol2.y, rtol=1e-12, atol=0)
    np.testing.assert_allclose(g.value, g2.value, rtol=1e-12)
    np.testing.assert_allclose(g.grad_params, g2.grad_params, rtol=1e-10)


def test_matrix_form_kernels_against_the_closed_form():
    yv = sp.MatrixSymbol("y", 2, 1)
    W = sp.MatrixSymbol("W", 2, 2)
    model = sciode.Model(states=[yv], params=[W], rhs=[W * yv.applyfunc(sp.tanh)], name="native_matrix")
    mk = codegen.model_kernels(model)
    assert "np.empty" in mk.module.__sciode_source__ or "np.zeros" in mk.module.__sciode_source__
    assert all(isinstance(mk[name], _numba_compat.DirectKernel) for name in ("rhs", "vjp_yp", "jac_y"))
    out = np.zeros(2)
    mk["rhs"](0.0, np.array([0.5, -1.0]), np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(0), out)
    t = np.tanh([0.5, -1.0])
    np.testing.assert_allclose(out, [t[0] + 2 * t[1], 3 * t[0] + 4 * t[1]], rtol=1e-15)


def test_python_calls_check_their_arrays():
    mk = codegen.model_kernels(_functions_model())
    k = mk["rhs"]
    y, p, w = np.ones(3), np.ones(3), np.ones(1)
    with pytest.raises(TypeError, match="C-contiguous float64"):
        k(0.0, y.astype(np.float32), p, w, np.zeros(3))
    with pytest.raises(TypeError, match="C-contiguous float64"):
        k(0.0, np.ones(6)[::2], p, w, np.zeros(3))
    with pytest.raises(TypeError, match="takes 5 arguments"):
        k(0.0, y, p, np.zeros(3))


def test_the_translator_refuses_python_outside_its_subset():
    from sciode.codegen import native

    src = '''
def rhs(t, y, p, w, out):
    while True:
        out[0] = 1.0

def two(t, y, p, w, out):
    a = y[0]
    a = y[1]
    out[0] = a

def lib(t, y, p, w, out):
    out[0] = math.floor(y[0])

def reread(t, y, p, w, out):
    a = out[0]
    out[0] = a + y[0]
    a = out[0]
    out[1] = a
'''
    functions, consts = native.parse_module(src)
    abi_ = _numba_compat.direct_kernel_abi(abi.VEC_SIG)
    for name, why in (("rhs", "While"), ("two", "two different values"), ("lib", "math"),
                      ("reread", "two different values")):
        with pytest.raises(native.Unsupported, match=why):
            native.compile_function(functions[name], consts, abi_, "test-source")


_STORE_CHILD = """
import json, sys
import numpy as np
import sympy as sp
import sciode
from sciode import codegen
from sciode.codegen import native
compiled = []
optimize = native._optimize
native._optimize = lambda *a: (compiled.append(1), optimize(*a))
x, y, a = sp.symbols("x y a")
model = sciode.Model(states=[x, y], params=[a], rhs=[a * sp.tanh(y) - x ** 3, sp.exp(-x) * y], name="native_store")
mk = codegen.model_kernels(model)
out = np.zeros(2)
mk["rhs"](0.0, np.array([0.3, -1.2]), np.array([0.7]), np.zeros(0), out)
print(json.dumps({"type": type(mk["rhs"]).__name__, "out": out.tolist(), "compiled": len(compiled)}))
"""


def test_machine_code_is_stored_and_loaded_by_the_next_process(tmp_path):
    """A second process loads a kernel's object code from the cache (compiling
    nothing) and computes the same bits; a stored object that does not match
    its digest is compiled again, never loaded."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, SCIODE_CACHE_DIR=str(tmp_path))

    def run(mode):
        r = subprocess.run([sys.executable, "-c", _STORE_CHILD, mode], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = run("compile")
    stored = sorted((tmp_path / "kernels" / "native").glob("*.o"))
    assert first["type"] == "DirectKernel" and first["compiled"] == 1 and len(stored) == 1
    assert (tmp_path / "kernels" / "native").stat().st_mode & 0o777 == 0o700
    second = run("load")
    assert second == dict(first, compiled=0)
    data = bytearray(stored[0].read_bytes())  # corrupt the stored object: compiled again
    data[-1] ^= 0xFF
    stored[0].write_bytes(bytes(data))
    assert run("load") == first
    assert run("load") == second


def test_one_process_holds_many_models_kernels_of_one_name():
    """Every model has an ``rhs``: each native kernel's symbols carry its key,
    so two models' kernels in one process stay apart."""
    x, a = sp.symbols("x a")
    ks = [codegen.model_kernels(sciode.Model(states=[x], params=[a], rhs=[e], name=f"native_twin{i}"))
          for i, e in enumerate((a * x, a + x))]
    outs = []
    for k in ks:
        out = np.zeros(1)
        k["rhs"](0.0, np.array([3.0]), np.array([2.0]), np.zeros(0), out)
        outs.append(out[0])
    assert outs == [6.0, 5.0]


def test_a_failing_native_compile_costs_speed_never_a_result(monkeypatch):
    """An llvmlite the translator does not fit (or a translator bug): Numba
    compiles the kernel, with one warning per process, and the numbers stand."""
    from sciode.codegen import native

    def broken(*a, **k):
        raise RuntimeError("planted")

    monkeypatch.setattr(native, "compile_function", broken)
    monkeypatch.setattr(codegen, "_WARNED", [])
    x, a = sp.symbols("x a")
    mk = codegen.model_kernels(sciode.Model(states=[x], params=[a], rhs=[a * x ** 2], name="native_broken"))
    with pytest.warns(RuntimeWarning, match="planted"):
        k = mk["rhs"]
    assert type(k) is _numba_compat.Kernel
    assert codegen.NATIVE_FALLBACKS[(mk.module.__name__, "rhs")].startswith("error: RuntimeError")
    out = np.zeros(1)
    k(0.0, np.array([3.0]), np.array([2.0]), np.zeros(0), out)
    assert out[0] == 18.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert type(mk["vjp_y"]) is _numba_compat.Kernel  # no second warning
