"""Tests of `sciode.Cost`, `sciode.LeastSquares` and `sciode.cost.as_cost`."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from sciode.cost import Cost, LeastSquares, as_cost
from sciode.errors import ModelError
from sciode.model import Model

x, v, k, c, w, t = sp.symbols("x v k c w t")
MODEL = Model(states=[x, v], rhs=[v, -k * x - c * v + w], params=[k, c], controls=[w])

T_OBS = np.array([0.0, 0.5, 0.5, 1.0])
Y_OBS = np.array([[1.0, 0.0], [0.9, np.nan], [0.8, -0.1], [np.nan, -0.3]])


# --- LeastSquares construction -------------------------------------------------------


def test_least_squares_attributes_and_defaults():
    data = LeastSquares(T_OBS, Y_OBS)
    assert data.observables is None
    assert data.resolved(MODEL) == (x, v)
    np.testing.assert_array_equal(data.sigma, [1.0, 1.0])
    assert data.y_obs.shape == (4, 2) and data.n_obs == 4 and data.n_observables == 2
    np.testing.assert_array_equal(data.observed, ~np.isnan(Y_OBS))
    data.check(MODEL, t_span=(0.0, 1.0))


def test_least_squares_one_dimensional_data_and_sigma_vector():
    data = LeastSquares([0.0, 1.0], [1.0, 2.0], observables=[x + k], sigma=0.5)
    assert data.y_obs.shape == (2, 1)
    np.testing.assert_array_equal(data.sigma, [0.5])
    assert data.observables == (x + k,)
    data2 = LeastSquares(T_OBS, Y_OBS, observables=[x, 2], sigma=[1.0, 3.0])
    assert data2.observables == (x, sp.Integer(2))
    np.testing.assert_array_equal(data2.sigma, [1.0, 3.0])


def test_least_squares_value_skips_nan():
    sigma = np.array([0.5, 2.0])
    data = LeastSquares(T_OBS, Y_OBS, sigma=sigma)
    predictions = np.array([[1.5, 0.5], [1.0, 7.0], [0.8, 0.1], [3.0, -0.5]])
    observed = ~np.isnan(Y_OBS)
    expected = 0.5 * np.sum((((predictions - np.nan_to_num(Y_OBS)) / sigma) ** 2)[observed])
    assert data.value(predictions) == pytest.approx(expected, rel=1e-15)
    # Unobserved predictions do not move the value.
    shifted = predictions.copy()
    shifted[~observed] += 100.0
    assert data.value(shifted) == data.value(predictions)
    with pytest.raises(ModelError, match=r"`predictions` has shape \(2,\)"):
        data.value([1.0, 2.0])


def test_least_squares_arrays_are_copies_and_read_only():
    y = Y_OBS.copy()
    data = LeastSquares(T_OBS, y)
    y[0, 0] = 42.0
    assert data.y_obs[0, 0] == 1.0
    for array in (data.t_obs, data.y_obs, data.sigma):
        with pytest.raises(ValueError):
            array[0] = 0.0


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([0.0, 1.0, 0.5], np.zeros((3, 2))), {}, r"non-decreasing: t_obs\[1\] = 1.0 > t_obs\[2\] = 0.5"),
        (([0.0, np.nan], np.zeros((2, 2))), {}, r"`t_obs\[1\]` = nan is not finite"),
        (([0.0, np.inf], np.zeros((2, 2))), {}, r"`t_obs\[1\]` = inf is not finite"),
        (([[0.0, 1.0]], np.zeros((2, 2))), {}, r"`t_obs` must be 1-D"),
        (([], np.zeros((0, 2))), {}, r"`t_obs` must be 1-D and non-empty"),
        (([0.0, 1.0], np.zeros((3, 2))), {}, r"`y_obs` has 3 rows but `t_obs` has 2"),
        (([0.0, 1.0], np.zeros((2, 2, 1))), {}, r"`y_obs` must be 2-D"),
        (([0.0, 1.0], [[1.0, np.inf], [0.0, 0.0]]), {}, r"`y_obs\[0, 1\]` = inf"),
        (([0.0, 1.0], [[1.0, 0.0], [-np.inf, 0.0]]), {}, r"`y_obs\[1, 0\]` = -inf"),
        (([0.0, 1.0], [["a"], ["b"]]), {}, r"`y_obs` must hold real numbers"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(sigma=0.0), r"`sigma\[0\]` = 0.0; sigma must be positive"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(sigma=[1.0, -1.0]), r"`sigma\[1\]` = -1.0"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(sigma=[1.0, np.nan]), r"`sigma\[1\]` = nan"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(sigma=[1.0, 2.0, 3.0]), r"`sigma` has shape \(3,\), expected a scalar or \(2,\)"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(observables=[x]), r"1 observables but `y_obs` has 2 columns"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(observables=[x, "v"]), r"`observables\[1\]` is the string 'v'"),
        (([0.0, 1.0], np.zeros((2, 2))), dict(observables=[]), r"`observables` is empty"),
    ],
)
def test_least_squares_bad_construction(args, kwargs, match):
    with pytest.raises(ModelError, match=match):
        LeastSquares(*args, **kwargs)


@pytest.mark.parametrize(
    "kwargs, t_span, match",
    [
        (dict(observables=[x, w]), None, r"observables\[1\] uses `w`, but observables may not depend on controls"),
        (dict(observables=[x, sp.Symbol("q")]), None, r"observables\[1\] uses undeclared symbol `q`"),
        (dict(observables=[x, sp.zoo]), None, r"observables\[1\] contains the non-finite constant `zoo`"),
        ({}, (0.0, 0.75), r"t_obs\[3\] = 1.0 lies outside t_span \[0.0, 0.75\]"),
        ({}, (0.25, 1.0), r"t_obs\[0\] = 0.0 lies outside t_span"),
        ({}, (0.0, np.nan), r"`t_span` must be two finite numbers"),
    ],
)
def test_least_squares_check_errors(kwargs, t_span, match):
    data = LeastSquares(T_OBS, Y_OBS, **kwargs)
    with pytest.raises(ModelError, match=match):
        data.check(MODEL, t_span=t_span)


def test_least_squares_default_observables_need_one_column_per_state():
    data = LeastSquares(T_OBS, Y_OBS[:, :1])
    with pytest.raises(ModelError, match=r"`y_obs` has 1 columns but model 'model' has 2 states"):
        data.resolved(MODEL)
    with pytest.raises(ModelError, match=r"has 2 states"):
        data.check(MODEL)


def test_least_squares_check_accepts_params_and_time_and_reversed_span():
    data = LeastSquares(T_OBS, Y_OBS, observables=[k * x + t, sp.exp(-c) * v])
    data.check(MODEL, t_span=(1.0, 0.0))  # a backward span covers the same interval


# --- Cost ---------------------------------------------------------------------


def test_cost_defaults_and_numbers():
    cost = Cost()
    assert cost.terminal == 0 and cost.running == 0 and cost.data == ()
    cost = Cost(terminal=2, running=0.5)
    assert cost.terminal == sp.Integer(2) and cost.running == sp.Float(0.5)
    single = LeastSquares(T_OBS, Y_OBS)
    assert Cost(data=single).data == (single,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(terminal="x**2"), r"`terminal` is the string 'x\*\*2'"),
        (dict(running="v"), r"`running` is the string 'v'"),
        (dict(terminal=float("inf")), r"`terminal` is the non-finite number"),
        (dict(terminal=sp.Eq(x, 1)), r"`terminal` is a Equality"),
        (dict(data=[object()]), r"`data\[0\]` must be a sciode.LeastSquares"),
        (dict(data="abc"), r"`data` must be a sequence"),
    ],
)
def test_cost_bad_construction(kwargs, match):
    with pytest.raises(ModelError, match=match):
        Cost(**kwargs)


def test_cost_check_good():
    Cost(terminal=x**2 + k, running=0.1 * v**2 + w**2 + t).check(MODEL, t_span=(0, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(terminal=x * w), r"terminal cost uses `w`, but the terminal cost may not depend on controls"),
        (dict(terminal=sp.Symbol("q")), r"terminal cost uses undeclared symbol `q`"),
        (dict(running=v * sp.Symbol("m")), r"running cost uses undeclared symbol `m`"),
        (dict(running=x + sp.nan), r"running cost contains the non-finite constant `nan`"),
        (dict(terminal=sp.I * x), r"terminal cost contains the imaginary unit"),
        (dict(running=sp.Function("u")(t)), r"running cost uses the undefined function `u\(t\)`"),
        (dict(data=[LeastSquares([0.0, 2.0], [[0.0, 0.0], [0.0, 0.0]])]), r"data\[0\]: t_obs\[1\] = 2.0 lies outside"),
    ],
)
def test_cost_check_errors(kwargs, match):
    with pytest.raises(ModelError, match=match):
        Cost(**kwargs).check(MODEL, t_span=(0.0, 1.0))


def test_cost_addition_and_sum():
    a = Cost(terminal=x**2)
    b = Cost(running=v**2)
    d1 = LeastSquares(T_OBS, Y_OBS)
    d2 = LeastSquares(T_OBS, Y_OBS, sigma=2.0)
    total = a + b + d1
    assert isinstance(total, Cost)
    assert total.terminal == x**2 and total.running == v**2 and total.data == (d1,)
    assert (d1 + d2).data == (d1, d2)
    assert (d1 + a).terminal == x**2 and (d1 + a).data == (d1,)
    assert (a + 0) is a and (0 + a) is a
    summed = sum([a, b, d1, d2, Cost(terminal=k)])
    assert summed.terminal == x**2 + k and summed.running == v**2
    assert summed.data == (d1, d2)
    assert sum([d1, d2]).data == (d1, d2)
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        a + x


def test_as_cost():
    data = LeastSquares(T_OBS, Y_OBS)
    cost = Cost(terminal=x)
    assert as_cost(cost) is cost
    assert as_cost(data).data == (data,)
    with pytest.raises(ModelError, match="expected a sciode.Cost or sciode.LeastSquares, got int"):
        as_cost(3)


def test_content_keys_are_deterministic_and_sensitive():
    def build(y=Y_OBS, sigma=1.0):
        return Cost(terminal=x**2, running=v**2) + LeastSquares(T_OBS, y, sigma=sigma)

    base = build().content_key()
    assert base == build().content_key()
    assert base != build(sigma=2.0).content_key()
    y = Y_OBS.copy()
    y[0, 0] += 1e-12
    assert base != build(y=y).content_key()
    assert base != (Cost(terminal=x**2) + LeastSquares(T_OBS, Y_OBS)).content_key()
    # NaN payloads differ bit-wise but mean the same thing.
    y = Y_OBS.copy()
    y[1, 1] = -np.nan
    assert base == build(y=y).content_key()
    assert "Pow(Symbol('x'), Integer(2))" in base
