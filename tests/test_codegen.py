"""Generated kernels against `sympy.lambdify` of the same expressions.

Every kernel of the ABI (`sciode.abi.MODEL_KERNELS`, `COST_KERNELS`) is
evaluated at random points and compared with SymPy's own numeric evaluation
of the derived expressions; the tolerance is ``rtol=1e-12`` because both
sides evaluate the same formulas in float64, only in a different order (CSE).
Then the properties of generated source (no user names, comments, exact
floats, clear errors) and of the caches (no recompiles, reuse across
processes, concurrent builds).
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
import warnings

import numba
import numpy as np
from numba import types
import pytest
import sympy as sp

import sciode
from sciode import _numba_compat, abi, codegen
from sciode.symbolic import derive_cost, derive_model
from sciode.symbolic.derive import dense

RTOL = 1e-12
# Absolute floor for entries that cancel to ~0: a few ulps of the O(10) terms.
ATOL = 1e-13
N_POINTS = 4


# --- test models -----------------------------------------------------------------


def _functions_model():
    """A model and cost using exp, sin, sqrt, Piecewise, Min and Abs."""
    x, y, k, c = sp.symbols("x y k c")
    model = sciode.Model(
        states=[x, y],
        rhs=[
            sp.exp(-k * x) * sp.sin(y) + sp.sqrt(1 + x**2),
            sp.Piecewise((c * x, x > 0), (-(x**2), True)) + sp.Min(x, y) + sp.Abs(y - c),
        ],
        params=[k, c],
        name="functions",
    )
    data = sciode.LeastSquares([0.0, 1.0], [[1.0], [2.0]], observables=[sp.sin(x) + k * sp.Abs(y)])
    cost = sciode.Cost(terminal=sp.cos(x) * c, running=sp.exp(-(x**2)) * sp.Abs(y)) + data
    return model, cost


def _odd_names_model():
    """Symbols named like the kernel's own arguments, temporaries and modules."""
    y, out, math_ = sp.symbols("y out math")
    p, lam, c0, j00, k, v, w = sp.symbols("p lambda_ _c0 _J0_0 k v w")
    t_control, tau = sp.symbols("t S")
    model = sciode.Model(
        states=[y, out, math_],
        rhs=[
            p * out - math_ * lam + t_control,
            c0 * y * math_ - v * out + j00,
            w - k * math_ + sp.sin(tau),
        ],
        params=[p, lam, c0, j00, k, v, w],
        controls=[t_control],
        t=tau,
        name="odd",
    )
    cost = sciode.Cost(terminal=y * p, running=t_control**2 * out + lam * math_)
    cost = cost + sciode.LeastSquares([0.0], [[1.0]], observables=[y * out * k])
    return model, cost


def _model_and_cost(name, request):
    if name == "functions":
        return _functions_model()
    if name == "odd_names":
        return _odd_names_model()
    model = request.getfixturevalue(name)
    s = model.states
    if name == "lorenz":
        sigma, rho, beta = model.params
        data = sciode.LeastSquares([0.5, 1.0], np.ones((2, 2)), observables=[s[0] * s[1], s[2] + beta])
        return model, sciode.Cost(terminal=s[0] ** 2 + rho * s[2], running=sigma * s[1] ** 2) + data
    if name == "lotka_volterra":
        data = sciode.LeastSquares([0.5, 1.0], np.ones((2, 2)))
        return model, sciode.Cost(terminal=s[0] * s[1]) + data
    if name == "controlled":
        (x,), (u,), (a, b) = model.states, model.controls, model.params
        return model, sciode.Cost(terminal=x**2, running=a * x**2 + 0.5 * u**2 + b * u * x)
    raise KeyError(name)


MODELS = ["lorenz", "lotka_volterra", "controlled", "functions", "odd_names"]


# --- references ------------------------------------------------------------------


def _lambdify(model, expr):
    """``f(t, y, p, w)`` evaluating `expr` (a Matrix) to a float array."""
    args = [model.t, list(model.states), list(model.params), list(model.controls)]
    # dummify: symbols named `math`, `y`, ... must not shadow lambdify's namespace.
    fn = sp.lambdify(args, sp.Matrix(expr), modules=["math", "numpy"], dummify=True)
    return lambda t, y, p, w: np.asarray(fn(t, y, p, w), dtype=np.float64)


def _column(exprs):
    return sp.Matrix(len(exprs), 1, list(exprs))


def _model_references(model, pattern=((), ())):
    """kernel name -> ``(t, y, p, w, extra) -> expected out``."""
    der = derive_model(model)
    n, n_p, n_w = model.n_states, model.n_params, model.n_controls
    f = _lambdify(model, _column(der.f))
    dfdt = _lambdify(model, _column(der.dfdt))
    jac_y = _lambdify(model, dense(der.dfdy, (n, n)))
    jac_p = _lambdify(model, dense(der.dfdp, (n, n_p)))
    jac_w = _lambdify(model, dense(der.dfdw, (n, n_w)))

    def sens(t, y, p, w, S):
        fp = np.zeros_like(S)
        fp[:, :n_p] = jac_p(t, y, p, w)
        return jac_y(t, y, p, w) @ S + fp

    return {
        "rhs": lambda t, y, p, w, _: f(t, y, p, w).ravel(),
        "dfdt": lambda t, y, p, w, _: dfdt(t, y, p, w).ravel(),
        "jac_y": lambda t, y, p, w, _: jac_y(t, y, p, w),
        # the pattern's values; the pattern itself is checked against der.dfdy's keys
        "jac_nz": lambda t, y, p, w, _: jac_y(t, y, p, w)[pattern][None, :],
        "jac_p": lambda t, y, p, w, _: jac_p(t, y, p, w),
        "vjp_y": lambda t, y, p, w, v: jac_y(t, y, p, w).T @ v,
        "vjp_p": lambda t, y, p, w, v: jac_p(t, y, p, w).T @ v,
        "vjp_w": lambda t, y, p, w, v: jac_w(t, y, p, w).T @ v,
        "vjp_yp": lambda t, y, p, w, v: np.concatenate([jac_y(t, y, p, w).T @ v, jac_p(t, y, p, w).T @ v]),
        "sens_rhs": sens,
    }


def _direct_gradient(expr, symbols):
    return _column([sp.diff(expr, s) for s in symbols])


def _cost_references(model, cost):
    der = derive_cost(model, cost)
    y, p = model.states, model.params
    n_h = len(der.h)
    vec = {
        "L": _column([der.L]),
        "dLdy": _column(der.dLdy),
        "dLdp": _column(der.dLdp),
        "dLdw": _column(der.dLdw),
        "Phi": _column([der.Phi]),
        "dPhidy": _column(der.dPhidy),
        "dPhidp": _column(der.dPhidp),
        "obs": _column(der.h),
        "L_grad": _column([*der.dLdy, *der.dLdp, der.L]),
    }
    refs = {name: _lambdify(model, m) for name, m in vec.items()}
    out = {name: (lambda fn: lambda t, y_, p_, w_, _: fn(t, y_, p_, w_).ravel())(fn) for name, fn in refs.items()}
    dhdy = _lambdify(model, dense(der.dhdy, (n_h, len(y))))
    dhdp = _lambdify(model, dense(der.dhdp, (n_h, len(p))))
    out["obs_vjp_y"] = lambda t, y_, p_, w_, v: dhdy(t, y_, p_, w_).T @ v
    out["obs_vjp_p"] = lambda t, y_, p_, w_, v: dhdp(t, y_, p_, w_).T @ v
    return out, der


def _shapes(model, n_h, nnz=0):
    """kernel name -> (shape of v or S or None, shape of out)."""
    n, n_p, n_w = model.n_states, model.n_params, model.n_controls
    sens = (n, n_p + n)  # S = [dy/dp, dy/dy0]: more columns than params
    return {
        "rhs": (None, (n,)), "dfdt": (None, (n,)), "jac_y": (None, (n, n)), "jac_p": (None, (n, n_p)),
        "jac_nz": (None, (1, nnz)),
        "vjp_y": ((n,), (n,)), "vjp_p": ((n,), (n_p,)), "vjp_w": ((n,), (n_w,)), "sens_rhs": (sens, sens),
        "vjp_yp": ((n,), (n + n_p,)), "L_grad": (None, (n + n_p + 1,)),
        "L": (None, (1,)), "dLdy": (None, (n,)), "dLdp": (None, (n_p,)), "dLdw": (None, (n_w,)),
        "Phi": (None, (1,)), "dPhidy": (None, (n,)), "dPhidp": (None, (n_p,)), "obs": (None, (n_h,)),
        "obs_vjp_y": ((n_h,), (n,)), "obs_vjp_p": ((n_h,), (n_p,)),
    }


def _random_point(model, rng):
    t = float(rng.uniform(0.0, 2.0))
    y = rng.uniform(-2.0, 2.0, model.n_states)
    p = rng.uniform(0.5, 2.0, model.n_params)
    w = rng.uniform(-1.0, 1.0, model.n_controls)
    return t, y, p, w


def _call(kernel, point, extra, out_shape):
    """Run `kernel` into a NaN-filled output so unwritten entries show up."""
    out = np.full(out_shape, np.nan)
    args = (*point, extra) if extra is not None else point
    kernel(*args, out)
    return out


def _check_kernels(kernels, references, shapes, model, seed):
    rng = np.random.default_rng(seed)
    for _ in range(N_POINTS):
        point = _random_point(model, rng)
        for name, reference in references.items():
            extra_shape, out_shape = shapes[name]
            extra = None if extra_shape is None else rng.standard_normal(extra_shape)
            got = _call(kernels[name], point, extra, out_shape)
            expected = reference(*point, extra)
            np.testing.assert_allclose(got, expected.reshape(out_shape), rtol=RTOL, atol=ATOL, err_msg=name)


# --- agreement with lambdify ------------------------------------------------------


def test_references_cover_the_abi(lorenz):
    assert set(_model_references(lorenz)) == set(abi.MODEL_KERNELS)
    refs, _ = _cost_references(lorenz, sciode.Cost())
    assert set(refs) == set(abi.COST_KERNELS)


@pytest.mark.parametrize("name", MODELS)
def test_model_kernels_match_lambdify(name, request):
    model, _ = _model_and_cost(name, request)
    kernels = codegen.model_kernels(model)
    rows, cols = kernels.jac_pattern
    assert set(zip(rows.tolist(), cols.tolist())) == set(derive_model(model).dfdy)
    assert np.all(np.diff(cols - rows) >= 0)  # jac_nz's order: by diagonal (abi)
    shapes = _shapes(model, 0, rows.size)
    _check_kernels(kernels, _model_references(model, (rows, cols)), shapes, model, seed=MODELS.index(name))


@pytest.mark.parametrize("name", MODELS)
def test_cost_kernels_match_lambdify(name, request):
    model, cost = _model_and_cost(name, request)
    kernels = codegen.cost_kernels(model, cost)
    references, der = _cost_references(model, cost)
    assert kernels.n_obs == len(der.h)
    _check_kernels(kernels, references, _shapes(model, len(der.h)), model, seed=10 + MODELS.index(name))


def test_cost_gradients_match_direct_sympy_diff(request):
    # derive_cost is itself checked here against a plain sympy.diff.
    model, cost = _model_and_cost("controlled", request)
    kernels = codegen.cost_kernels(model, cost)
    point = _random_point(model, np.random.default_rng(3))
    for name, symbols in (("dLdy", model.states), ("dLdp", model.params), ("dLdw", model.controls)):
        expected = _lambdify(model, _direct_gradient(cost.running, symbols))(*point).ravel()
        got = _call(kernels[name], point, None, (len(symbols),))
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=name)


def test_vjp_and_sens_kernels_are_consistent_with_jacobians(lotka_volterra):
    # Kernel against kernel: vjp_y = J^T v, vjp_p = f_p^T v, sens_rhs = J S + [f_p, 0].
    kernels = codegen.model_kernels(lotka_volterra)
    rng = np.random.default_rng(7)
    n, n_p = lotka_volterra.n_states, lotka_volterra.n_params
    point = _random_point(lotka_volterra, rng)
    jy = _call(kernels["jac_y"], point, None, (n, n))
    jp = _call(kernels["jac_p"], point, None, (n, n_p))
    v = rng.standard_normal(n)
    np.testing.assert_allclose(_call(kernels["vjp_y"], point, v, (n,)), jy.T @ v, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(_call(kernels["vjp_p"], point, v, (n_p,)), jp.T @ v, rtol=RTOL, atol=ATOL)
    S = rng.standard_normal((n, n_p + n))
    expected = jy @ S
    expected[:, :n_p] += jp
    np.testing.assert_allclose(_call(kernels["sens_rhs"], point, S, S.shape), expected, rtol=RTOL, atol=ATOL)


# --- generated source ----------------------------------------------------------


def _source(kernels):
    with open(kernels.path) as fh:
        return fh.read()


def test_user_symbol_names_never_reach_source():
    names = ["lambda_", "zeta_state", "Kd_param", "gamma_rate", "drive_u", "tau_time"]
    lam, zeta, kd, gamma, drive, tau = sp.symbols(names)
    model = sciode.Model(
        states=[lam, zeta],
        rhs=[kd * zeta - gamma * lam + drive, sp.exp(-lam) * sp.cos(tau)],
        params=[kd, gamma],
        controls=[drive],
        t=tau,
        name="m",
    )
    cost = sciode.Cost(terminal=lam**2, running=drive**2 * zeta)
    cost = cost + sciode.LeastSquares([0.0], [[1.0]], observables=[lam * kd])
    for kernels in (codegen.model_kernels(model), codegen.cost_kernels(model, cost)):
        source = _source(kernels)
        for name in names:
            assert name not in source


def test_generated_source_is_valid_and_commented(request):
    model, cost = _model_and_cost("lorenz", request)
    for kernels, expected in ((codegen.model_kernels(model), abi.MODEL_KERNELS),
                              (codegen.cost_kernels(model, cost), abi.COST_KERNELS)):
        source = _source(kernels)
        tree = ast.parse(source)
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert functions == set(expected)
        # Entry assignments (`out[2] = `, `out[1, k] = `, `_J0_1 = `); the
        # zero fill `out[:] = 0.0` is not an entry.
        output_lines = [line for line in source.splitlines() if re.match(r"\s*(out\[\d|_J\d|_F\d)", line)]
        assert output_lines
        for line in output_lines:
            assert "  # " in line, f"output line without a comment: {line!r}"


def test_floats_roundtrip_exactly():
    x = sp.Symbol("x")
    c = 0.1 + 1e-17  # the float after 0.1, lost by a 15-digit printer
    assert c != 0.1
    model = sciode.Model(states=[x], rhs=[sp.Float(c) * x + sp.Rational(1, 3)], name="floats")
    kernels = codegen.model_kernels(model)
    source = _source(kernels)
    assert repr(c) in source and repr(1 / 3) in source
    out = _call(kernels["rhs"], (0.0, np.array([3.0]), np.zeros(0), np.zeros(0)), None, (1,))
    assert out[0] == c * 3.0 + 1 / 3


def test_unsupported_function_fails_at_codegen(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIODE_CACHE_DIR", str(tmp_path))
    x, k = sp.symbols("x k")
    model = sciode.Model(states=[x], rhs=[sp.besselj(0, k * x)], params=[k], name="bessel")
    with pytest.raises(sciode.ModelError, match="besselj"):
        codegen.model_kernels(model)
    # Nothing half-built is left in the cache.
    assert list((tmp_path / "kernels").glob("*.py")) == []


def test_supported_function_workaround_compiles(tmp_path, monkeypatch):
    # Workaround for the error above: express the function with supported ones.
    monkeypatch.setenv("SCIODE_CACHE_DIR", str(tmp_path))
    x, k = sp.symbols("x k")
    model = sciode.Model(states=[x], rhs=[sp.cos(k * x)], params=[k], name="cosine")
    out = _call(codegen.model_kernels(model)["rhs"], (0.0, np.array([0.5]), np.array([2.0]), np.zeros(0)), None, (1,))
    assert out[0] == pytest.approx(math.cos(1.0), rel=RTOL)


# --- caches --------------------------------------------------------------------------


def test_kernels_do_not_recompile_for_new_numbers(lorenz):
    kernels = codegen.model_kernels(lorenz)
    rng = np.random.default_rng(11)
    for name, shape in (("rhs", (3,)), ("jac_y", (3, 3))):
        kernel = kernels[name]
        for _ in range(3):
            _call(kernel, _random_point(lorenz, rng), None, shape)
        assert len(kernel.signatures) == 1, name


_CHILD = """
import json, sys
import numpy as np, sympy as sp, sciode
from sciode import codegen
x, y, z, s, r, b = sp.symbols("x y z sigma rho beta")
m = sciode.Model(states=[x, y, z], rhs=[s*(y - x), x*(r - z) - y, x*y - b*z], params=[s, r, b])
ks = codegen.model_kernels(m)
k = ks["rhs"]
out = np.zeros(3)
k(0.0, np.array([1.0, 2.0, 3.0]), np.array([10.0, 28.0, 8.0/3.0]), np.zeros(0), out)
print(json.dumps({"stats": dict(codegen.STATS), "hits": sum(k.stats.cache_hits.values()),
                  "path": ks.path, "source": open(ks.path).read(), "out": out.tolist()}))
"""


def _child_env(cache):
    env = dict(os.environ, SCIODE_CACHE_DIR=str(cache))
    env.pop("NUMBA_CACHE_DIR", None)  # numba's cache must sit beside the module
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def _child_result(proc_stdout, proc_stderr, returncode):
    assert returncode == 0, proc_stderr
    return json.loads(proc_stdout.strip().splitlines()[-1])


def test_second_process_reuses_source_and_machine_code(tmp_path):
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", _CHILD], env=_child_env(tmp_path),
                              capture_output=True, text=True, timeout=120)
        runs.append(_child_result(proc.stdout, proc.stderr, proc.returncode))
    first, second = runs
    assert first["stats"]["generated"] >= 1 and first["hits"] == 0
    assert second["stats"]["generated"] == 0 and second["stats"]["reused"] >= 1
    assert second["hits"] >= 1  # numba loaded the machine code from disk
    assert first["out"] == second["out"] and first["path"] == second["path"]


def test_concurrent_builds_agree(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD], env=_child_env(tmp_path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        results.append(_child_result(stdout, stderr, proc.returncode))
    a, b = results
    assert a["path"] == b["path"] and a["source"] == b["source"] and a["out"] == b["out"]
    kernel_dir = tmp_path / "kernels"
    assert [p.name for p in kernel_dir.glob("*.py")] == [os.path.basename(a["path"])]
    assert list(kernel_dir.glob("*.tmp")) == []


@pytest.mark.parametrize("damage", ["edited", "truncated", "no digest"])
def test_damaged_cached_module_is_rebuilt_not_run(tmp_path, monkeypatch, damage):
    """A cached module that is not the file sciode wrote (an edit, a write cut
    short by a full disk, a file from elsewhere) is reported and rebuilt; its
    text never runs."""
    from sciode.codegen import cache

    monkeypatch.setenv("SCIODE_CACHE_DIR", str(tmp_path))
    digest = f"probe{damage.replace(' ', '')}"
    name = f"sciode_generated_probe_{digest}"
    mod = cache.load_or_build("probe", digest, lambda: "X = 1\n")
    assert mod.X == 1
    path = cache.module_path("probe", digest)
    good = path.read_text()
    assert good.startswith(cache.DIGEST_PREFIX)
    bad = {"edited": good.replace("X = 1", "raise RuntimeError('ran')"),
           "truncated": good[: len(good) // 2],
           "no digest": "raise RuntimeError('ran')\n"}[damage]
    path.write_text(bad)
    monkeypatch.delitem(sys.modules, name)
    with pytest.warns(cache.CacheIntegrityWarning, match="does not match its digest"):
        mod = cache.load_or_build("probe", digest, lambda: "X = 1\n")
    assert mod.X == 1 and path.read_text() == good
    monkeypatch.delitem(sys.modules, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound file loads silently
        assert cache.load_or_build("probe", digest, lambda: "X = 2\n").X == 1


def test_cache_directories_are_private(tmp_path, monkeypatch):
    from sciode.codegen import cache

    root = tmp_path / "fresh" / "root"
    monkeypatch.setenv("SCIODE_CACHE_DIR", str(root))
    kernels = cache.cache_dir()
    for d in (tmp_path / "fresh", root, kernels):
        assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o700, d
    # and the compiled loops' cache root, made by a new process on first compile
    from sciode import _numba_cache

    monkeypatch.setenv("SCIODE_CACHE_DIR", str(tmp_path / "other"))
    if _numba_cache.SciodeCacheLocator is None:  # portable path: Numba's own locator and its modes
        return
    loc = _numba_cache.SciodeCacheLocator.from_function(None, _numba_cache.__file__)
    assert loc is not None
    for d in (tmp_path / "other", tmp_path / "other" / "numba"):
        assert (d.stat().st_mode & 0o777) == 0o700, d


@pytest.mark.skipif(_numba_compat.PORTABLE, reason="the fast path's addresses (the portable path: "
                    "tests/test_numba_compat.py)")
def test_kernel_addresses_match_numba(lorenz, monkeypatch):
    """A kernel is unboxed from the addresses it computed once (``abi.KernelType``);
    for a kernel Numba compiled they must be Numba's own answers for the
    dispatcher, and the loops must call through them (the kernel's output
    reaches the caller).  (Kernels of ``codegen.native``:
    ``tests/test_native_kernels.py``.)"""
    from numba.experimental import function_type as ft

    monkeypatch.setenv(codegen.KERNEL_COMPILER_ENV, "numba")
    monkeypatch.setattr(codegen, "_SETS", {})
    k = codegen.model_kernels(lorenz)["rhs"]
    assert type(k) is _numba_compat.Kernel
    sig = abi.MODEL_KERNELS["rhs"]
    assert k.__wrapper_address__() == ft._get_wrapper_address(k.dispatcher, sig)
    assert k.jit_address() == ft._get_jit_address(k.dispatcher, sig)
    assert numba.typeof(k) == abi.VEC

    @numba.njit((abi.VEC, abi.ARRAY, abi.ARRAY, abi.ARRAY))
    def call(f, y, p, out):
        f(0.0, y, p, np.zeros(0), out)

    y, p, out = np.array([1.0, 2.0, 3.0]), np.array([10.0, 28.0, 8.0 / 3.0]), np.zeros(3)
    call(k, y, p, out)
    expected = np.zeros(3)
    k(0.0, y, p, np.zeros(0), expected)
    assert np.array_equal(out, expected) and np.abs(out).sum() > 0

    class Impostor:  # typed as a kernel, without the addresses: an error, never a wild call
        _numba_type_ = abi.VEC

    with pytest.raises(AttributeError):
        call(Impostor(), y, p, out)

# --- what users read is what runs -------------------------------------------------


@pytest.mark.parametrize("name", ["lotka_volterra", "controlled", "lorenz"])
def test_printed_adjoint_is_what_the_compiled_costate_computes(name, request):
    """``derive_adjoint``'s costate right-hand side ``-dH/dy``, ``dH/dp`` and
    ``dH/dw`` (SymPy, evaluated by substitution) equal what the compiled
    costate system computes from the generated kernels at random points:
    ``-(f_y^T lambda + L_y)``, ``f_p^T lambda + L_p``, ``f_w^T lambda + L_w``."""
    model = request.getfixturevalue(name)
    y_, p_ = model.states, model.params
    running = sum((k + 1) * s**2 for k, s in enumerate(y_)) / 3 + (p_[0] * y_[0] if p_ else 0)
    if model.controls:
        running = running + model.controls[0] ** 2 * y_[0]
    cost = sciode.Cost(running=running)
    adj = sciode.symbolic.derive_adjoint(model, cost)
    mk, ck = codegen.model_kernels(model), codegen.cost_kernels(model, cost)
    n, n_p, n_w = model.n_states, model.n_params, model.n_controls
    rng = np.random.default_rng(11)
    for _ in range(5):
        t, y, p, w = _random_point(model, rng)
        lam = rng.standard_normal(n)
        at = {model.t: t, **dict(zip(y_, y)), **dict(zip(p_, p)), **dict(zip(model.controls, w)),
              **dict(zip(adj.costates, lam))}
        printed = [float(e.xreplace(at)) for e in adj.costate_rhs]
        printed_p = [float(e.xreplace(at)) for e in adj.param_gradient]
        printed_w = [float(e.xreplace(at)) for e in adj.control_gradient]
        vjp = _call(mk["vjp_yp"], (t, y, p, w), lam, (n + n_p,))
        lg = _call(ck["L_grad"], (t, y, p, w), None, (n + n_p + 1,))
        np.testing.assert_allclose(printed, -(vjp[:n] + lg[:n]), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(printed_p, vjp[n:] + lg[n:n + n_p], rtol=RTOL, atol=ATOL)
        if n_w:
            vw = _call(mk["vjp_w"], (t, y, p, w), lam, (n_w,))
            dw = _call(ck["dLdw"], (t, y, p, w), None, (n_w,))
            np.testing.assert_allclose(printed_w, vw + dw, rtol=RTOL, atol=ATOL)


def test_structurally_zero_kernels_are_one_shared_kernel(lorenz):
    """An autonomous model's ``dfdt`` and a data-only cost's terminal and running
    kernels are the shared zero kernels (compiled once per installation), they
    write zeros, and a kernel that is not zero keeps its own code."""
    import sympy as sp

    mk = codegen.model_kernels(lorenz)
    ck = codegen.cost_kernels(lorenz, sciode.LeastSquares(np.array([0.5, 1.0]), np.ones((2, 3))))
    vec0, vjp0 = codegen.zero_kernel(abi.VEC_SIG), codegen.zero_kernel(abi.VJP_SIG)
    assert mk["dfdt"] is vec0 and mk["vjp_w"] is vjp0
    for name in ("Phi", "dPhidy", "dPhidp", "L", "L_grad", "dLdw"):
        assert ck[name] is vec0, name
    assert ck["obs"] is not vec0 and mk["rhs"] is not vec0
    out = np.full(3, 7.0)
    vec0(0.0, np.ones(3), np.ones(3), np.zeros(0), out)
    assert np.array_equal(out, np.zeros(3))
    x, t = sp.symbols("x t")
    forced = sciode.Model([x], [sp.sin(t) - x], t=t, name="forced_zero_check")
    assert codegen.model_kernels(forced)["dfdt"] is not vec0
    sens0 = codegen.zero_kernel(abi.SENS_SIG)  # the bundles' stand-in for sens_rhs
    out2 = np.full((3, 2), 7.0)
    sens0(0.0, np.ones(3), np.ones(3), np.zeros(0), np.ones((3, 2)), out2)
    assert np.array_equal(out2, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no zero kernel"):
        codegen.zero_kernel(types.void(types.float64))
