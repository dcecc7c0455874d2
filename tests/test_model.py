"""Tests of `sciode.Model`, the safe string parser and `sciode.Controls`."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from sciode._parse import MAX_DEPTH, MAX_LENGTH, parse_expression
from sciode.controls import Controls
from sciode.errors import ModelError, SciodeError, SolverError
from sciode.model import Model

x, v, k, c, w, t = sp.symbols("x v k c w t")


def oscillator(**overrides):
    kwargs = dict(states=[x, v], rhs=[v, -k * x - c * v], params=[k, c], name="oscillator")
    kwargs.update(overrides)
    return Model(**kwargs)


# --- errors -------------------------------------------------------------------


def test_error_hierarchy():
    assert issubclass(ModelError, SciodeError) and issubclass(ModelError, ValueError)
    assert issubclass(SolverError, SciodeError) and issubclass(SolverError, RuntimeError)


# --- good models ----------------------------------------------------------------


def test_model_attributes():
    m = oscillator()
    assert m.states == (x, v) and isinstance(m.states, tuple)
    assert m.params == (k, c) and isinstance(m.params, tuple)
    assert m.controls == () and m.t == sp.Symbol("t")
    assert m.rhs == (v, -k * x - c * v) and isinstance(m.rhs, tuple)
    assert (m.n_states, m.n_params, m.n_controls) == (2, 2, 0)
    assert m.name == "oscillator"
    assert repr(m) == "Model(name='oscillator', states=(x, v), params=(k, c), controls=())"


def test_model_numbers_in_rhs_become_sympy():
    m = Model(states=[x, v], rhs=[np.float64(0.5), 3])
    assert m.rhs == (sp.Float(0.5), sp.Integer(3))
    assert all(isinstance(e, sp.Expr) for e in m.rhs)


def test_model_with_controls_and_custom_time():
    tau = sp.Symbol("tau")
    m = Model(states=[x], rhs=[-k * x + w * tau], params=[k], controls=[w], t=tau)
    assert m.controls == (w,) and m.t == tau and m.n_controls == 1


def test_model_is_final():
    with pytest.raises(TypeError, match="final"):
        type("Sub", (Model,), {})


def test_content_key_is_deterministic_and_ignores_name():
    a = oscillator()
    b = oscillator(name="other")
    assert a.content_key() == b.content_key()
    assert a.content_key() != oscillator(rhs=[v, -k * x]).content_key()
    assert "Symbol('k')" in a.content_key()


def test_from_strings_matches_direct_model():
    direct = oscillator()
    parsed = Model.from_strings(
        states=["x", "v"], params=["k", "c"], rhs=["v", "-k*x - c*v"], name="oscillator"
    )
    assert parsed.states == direct.states and parsed.params == direct.params
    for a, b in zip(parsed.rhs, direct.rhs):
        assert sp.simplify(a - b) == 0


def test_from_strings_functions_constants_and_exact_rationals():
    m = Model.from_strings(
        states=["x"], params=["a"], controls=["u"],
        rhs=["1/2*exp(-a*t) + sqrt(abs(x))*sin(pi*t) - Max(x, u, 0)**2 + E"],
    )
    a, u = sp.symbols("a u")
    expected = (
        sp.Rational(1, 2) * sp.exp(-a * t) + sp.sqrt(sp.Abs(x)) * sp.sin(sp.pi * t)
        - sp.Max(x, u, 0) ** 2 + sp.E
    )
    assert sp.simplify(m.rhs[0] - expected) == 0


def test_from_strings_user_symbol_shadows_constant():
    m = Model.from_strings(states=["x"], params=["pi"], rhs=["-pi*x"])
    assert m.rhs[0] == -sp.Symbol("pi") * x


def test_long_sum_is_not_deep_nesting():
    # 300 chained terms is a long polynomial, not 300 levels of nesting.
    text = " + ".join(f"{i}*x**{i}" for i in range(300))
    expr = parse_expression(text, {"x": x})
    assert sp.expand(expr - sum(i * x**i for i in range(300))) == 0


# --- bad declarations ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rhs=[v]), r"2 states but 1 rhs"),
        (dict(states=[], rhs=[]), r"no states"),
        (dict(states=[x, "v"]), r"states\[1\].*sympy.Symbol.*from_strings"),
        (dict(params=[k, 2]), r"params\[1\].*sympy.Symbol"),
        (dict(controls=[w * 2]), r"controls\[0\].*sympy.Symbol"),
        (dict(t="t"), r"`t` must be a sympy.Symbol"),
        (dict(name=3), r"`name` must be a str"),
        (dict(states=x), r"`states` must be a sequence.*single Symbol"),
        (dict(rhs=[v, "-k*x"]), r"rhs\[1\] \(d v/dt\).*string.*Model.from_strings"),
        (dict(rhs=[v, True]), r"rhs\[1\].*bool"),
        (dict(rhs=[v, 1j]), r"rhs\[1\].*complex"),
        (dict(rhs=[v, float("nan")]), r"rhs\[1\].*non-finite"),
        (dict(rhs=[v, sp.Eq(x, 1)]), r"rhs\[1\].*not an arithmetic expression"),
    ],
)
def test_bad_declarations(kwargs, match):
    with pytest.raises(ModelError, match=match):
        oscillator(**kwargs)


def test_undeclared_symbol_named_with_entry():
    m_sym = sp.Symbol("m")
    with pytest.raises(ModelError, match=r"rhs\[1\] \(d v/dt\) uses undeclared symbol `m`"):
        oscillator(rhs=[v, -k * x / m_sym])


def test_same_name_different_assumptions_explained():
    x_real = sp.Symbol("x", real=True)
    with pytest.raises(ModelError, match=r"rhs\[1\].*`x`.*assumptions.*differ"):
        oscillator(rhs=[v, -k * x_real])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(states=[x, x], rhs=[v, v]), r"duplicate name `x`"),
        (dict(params=[k, sp.Symbol("x")]), r"duplicate name `x`.*state.*param"),
        # Same name, different assumptions: unequal to SymPy, still a clash.
        (dict(params=[k, sp.Symbol("x", positive=True)]), r"duplicate name `x`"),
        (dict(params=[k, c], controls=[sp.Symbol("k")]), r"duplicate name `k`.*control"),
        (dict(params=[k, c, sp.Symbol("t")]), r"duplicate name `t`.*time symbol"),
    ],
)
def test_duplicate_names(kwargs, match):
    with pytest.raises(ModelError, match=match):
        oscillator(**kwargs)


@pytest.mark.parametrize(
    "bad, match",
    [
        (sp.zoo * x, r"rhs\[1\].*non-finite constant `zoo`"),
        (x + sp.nan, r"rhs\[1\].*non-finite constant `nan`"),
        (x + sp.oo, r"rhs\[1\].*non-finite constant `oo`"),
        (x - sp.oo, r"rhs\[1\].*non-finite constant"),
        (sp.Float(1e308) * sp.Float(1e308) * x, r"rhs\[1\].*not finite in float64"),
        (sp.I * x, r"rhs\[1\].*imaginary unit `I`"),
        (sp.Function("u")(t) * x, r"rhs\[1\].*undefined function `u\(t\)`.*`controls`"),
        (sp.Derivative(sp.Function("f")(x), x), r"rhs\[1\]"),
        (sp.Derivative(x**3, x, evaluate=False), r"rhs\[1\].*unevaluated Derivative"),
        (sp.Integral(k * sp.Symbol("s"), (sp.Symbol("s"), 0, 1)), r"rhs\[1\].*unevaluated Integral"),
    ],
)
def test_bad_rhs_expressions(bad, match):
    with pytest.raises(ModelError, match=match):
        oscillator(rhs=[v, bad])


# --- from_strings and the parser -------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(states=["x", "2v"]), r"states\[1\].*'2v' is not a valid name"),
        (dict(states=["x", "lambda"]), r"states\[1\].*'lambda' is not a valid name"),
        (dict(params=["k", "_c"]), r"params\[1\].*'_c' must not start with `_`"),
        (dict(params=["k", "__class__"]), r"params\[1\].*must not start with `_`"),
        (dict(params=["k", 3]), r"params\[1\].*must be a name"),
        (dict(t="t t"), r"`t` = 't t' is not a valid name"),
        (dict(params=["k", "x"]), r"duplicate name `x`"),
        (dict(rhs=["v", "-k*x - c*v - m"]), r"rhs\[1\] \(d v/dt\).*unknown name `m`"),
        (dict(rhs=["v"]), r"2 states but 1 rhs"),
        (dict(rhs="v"), r"`rhs` must be a sequence"),
    ],
)
def test_from_strings_bad_input(kwargs, match):
    base = dict(states=["x", "v"], params=["k", "c"], rhs=["v", "-k*x - c*v"])
    base.update(kwargs)
    with pytest.raises(ModelError, match=match):
        Model.from_strings(**base)


@pytest.mark.parametrize(
    "text, match",
    [
        ("x^2", r"`\^`.*use `\*\*`"),
        ("x.real", r"attribute access `x.real`"),
        ("x[0]", r"subscript `x\[0\]`"),
        ("x if k else v", r"conditional expression"),
        ("x < k", r"comparison `x < k`"),
        ("x and k", r"boolean operator"),
        ("x // k", r"operator `//`"),
        ("x % k", r"operator `%`"),
        ("~x", r"operator `~`"),
        ("(x, k)", r"tuple"),
        ("'x'", r"constant `'x'` \(str\)"),
        ("True", r"constant `True` \(bool\)"),
        ("2j", r"constant `2j` \(complex\)"),
        ("1e999", r"non-finite constant `1e999`"),
        ("foo(x)", r"`foo` is not a supported function"),
        ("k(x)", r"`k` is a symbol, not a function"),
        ("sin(x, k)", r"`sin` takes exactly one argument, got 2"),
        ("sin()", r"`sin` takes exactly one argument, got 0"),
        ("Max()", r"`Max` takes at least one argument"),
        ("log(x, base=2)", r"keyword argument `base`"),
        ("sin(*x)", r"starred argument"),
        ("exp", r"function `exp` used without calling it"),
        ("__name__", r"dunder name `__name__`"),
        ("x +", r"invalid expression syntax"),
        ("x; k", r"invalid expression syntax"),
        ("", r"empty expression"),
        ("2**10**10", r"power .* too large"),
        ("sin(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1), r"deeper than 100 levels"),
        ("-" * 9000 + "x", r"too deeply nested"),
        ("x+" * 5001, r"characters long, more than the limit of 10000"),
    ],
)
def test_parser_rejects_with_named_construct(text, match):
    symbols = {"x": x, "k": k, "v": v}
    with pytest.raises(ModelError, match=match) as info:
        parse_expression(text, symbols)
    # Every message quotes (a prefix of) the input string.
    assert repr(text[:40])[1:-1] in str(info.value) or len(text) > MAX_LENGTH


def test_parser_rejects_non_string():
    with pytest.raises(ModelError, match="expected an expression string"):
        parse_expression(x, {"x": x})


@pytest.mark.parametrize(
    "template",
    [
        "__import__('os').system('touch {path}')",
        "().__class__.__bases__[0].__subclasses__()",
        "open('{path}', 'w')",
        "(lambda: open('{path}', 'w'))()",
        "[open('{path}', 'w') for x in (1,)]",
        "x.__class__",
        "exec(\"open('{path}', 'w')\")",
        "eval(\"open('{path}', 'w')\")",
        "sin(open('{path}', 'w'))",
        "x + __builtins__",
        "getattr(x, '__class__')",
    ],
)
def test_malicious_strings_never_run(template, tmp_path):
    target = tmp_path / "pwned"
    text = template.format(path=target)
    with pytest.raises(ModelError):
        Model.from_strings(states=["x"], rhs=[text])
    with pytest.raises(ModelError):
        parse_expression(text, {"x": x})
    assert not target.exists(), "the payload ran"


# --- numeric vectors ---------------------------------------------------------------


def test_param_vector_sequence_and_mapping():
    m = oscillator()
    np.testing.assert_array_equal(m.param_vector([1, 2.5]), [1.0, 2.5])
    np.testing.assert_array_equal(m.param_vector({c: 2.5, k: 1}), [1.0, 2.5])
    np.testing.assert_array_equal(m.param_vector({"c": 2.5, "k": 1}), [1.0, 2.5])
    np.testing.assert_array_equal(m.param_vector({"c": sp.Float(2.5), k: np.int64(1)}), [1.0, 2.5])
    out = m.param_vector(np.array([1.0, 2.0]))
    assert out.dtype == np.float64 and out.shape == (2,)
    assert oscillator(params=[], rhs=[v, -x]).param_vector(None).shape == (0,)


@pytest.mark.parametrize(
    "params, match",
    [
        (None, r"has params \(`k`, `c`\)"),
        ([1.0], r"shape \(1,\), expected \(2,\)"),
        ([[1.0, 2.0]], r"shape \(1, 2\), expected \(2,\)"),
        ([1.0, float("nan")], r"non-finite values: `c` = nan"),
        ([1.0, float("inf")], r"non-finite values: `c` = inf"),
        ([1.0, 1j], r"complex"),
        (["a", "b"], r"real numbers"),
        ("12", r"string"),
        ({"k": 1.0}, r"missing values for \(`c`\)"),
        ({"k": 1.0, "c": 2.0, "m": 3.0}, r"unknown keys 'm'"),
        ({k: 1.0, c: 2.0, sp.Symbol("q"): 3.0}, r"unknown keys `q`"),
        ({k: 1.0, "k": 1.0, c: 2.0}, r"gives `k` twice"),
    ],
)
def test_param_vector_errors(params, match):
    with pytest.raises(ModelError, match=match):
        oscillator().param_vector(params)


def test_state_vector():
    m = oscillator()
    np.testing.assert_array_equal(m.state_vector([1, 0]), [1.0, 0.0])
    np.testing.assert_array_equal(m.state_vector({"v": 0.5, x: 1}), [1.0, 0.5])
    with pytest.raises(ModelError, match=r"shape \(3,\), expected \(2,\)"):
        m.state_vector([1, 2, 3])
    with pytest.raises(ModelError, match=r"non-finite values: `x` = nan"):
        m.state_vector([math.nan, 0])
    with pytest.raises(ModelError, match=r"`y0` is required"):
        m.state_vector(None)


# --- controls ---------------------------------------------------------------------


def test_controls_match_numpy_interp():
    grid = np.array([0.0, 0.5, 2.0, 3.0])
    values = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 0.0], [4.0, 4.0]])
    ctl = Controls(grid, values)
    assert ctl.n_controls == 2 and ctl.n_grid == 4
    assert ctl.t.flags.c_contiguous and ctl.values.flags.c_contiguous
    assert ctl.t.dtype == np.float64 and ctl.values.dtype == np.float64
    # Points inside, on, and outside the grid (constant extrapolation).
    for tq in [-1.0, 0.0, 0.25, 0.5, 1.7, 2.0, 2.999, 3.0, 10.0]:
        expected = [np.interp(tq, grid, values[:, j]) for j in range(2)]
        np.testing.assert_allclose(ctl(tq), expected, rtol=0, atol=1e-15)
        assert ctl(tq).shape == (2,)


def test_controls_one_dimensional_values_and_constant():
    ctl = Controls([0.0, 1.0], [1.0, 3.0])
    assert ctl.values.shape == (2, 1)
    np.testing.assert_allclose(ctl(0.25), [1.5])
    const = Controls([0.0], [[2.0, 5.0]])
    np.testing.assert_array_equal(const(-3.0), [2.0, 5.0])
    np.testing.assert_array_equal(const(7.0), [2.0, 5.0])


def test_controls_copy_inputs():
    grid, values = np.array([0.0, 1.0]), np.array([1.0, 2.0])
    ctl = Controls(grid, values)
    values[0] = 99.0
    assert ctl.values[0, 0] == 1.0
    with pytest.raises(ValueError):
        ctl.values[0, 0] = 5.0


@pytest.mark.parametrize(
    "grid, values, match",
    [
        ([0.0, 1.0, 1.0], [1, 2, 3], r"strictly increasing: t_grid\[1\] = 1.0 >= t_grid\[2\]"),
        ([0.0, 2.0, 1.0], [1, 2, 3], r"strictly increasing"),
        ([0.0, np.inf], [1, 2], r"t_grid\[1\]` = inf is not finite"),
        ([0.0, np.nan], [1, 2], r"t_grid\[1\]` = nan is not finite"),
        ([], [], r"`t_grid` must be 1-D with at least one point"),
        ([[0.0, 1.0]], [1, 2], r"`t_grid` must be 1-D"),
        ([0.0, 1.0], [1, 2, 3], r"`values` has shape \(3,\)"),
        ([0.0, 1.0], [[1, 2, 3]], r"`values` has shape \(1, 3\)"),
        ([0.0, 1.0], [[1.0], [np.nan]], r"values\[1, 0\]` = nan is not finite"),
        ([0.0, 1.0], ["a", "b"], r"real numbers"),
    ],
)
def test_controls_bad_input(grid, values, match):
    with pytest.raises(ModelError, match=match):
        Controls(grid, values)
