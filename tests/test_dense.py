"""``DenseOutput``: the continuous solution kept by ``solve(..., dense=True)``.

At a step's start the interpolant is ``z + h * sum(0 * K) == z`` exactly, so a
forward solve's interior boundaries return the stored states bit for bit. The
end of the last step (and, backward, each boundary, which is located as the end
of the preceding step) is the interpolant at ``theta = 1``: the step's update up
to summation order, hence 1e-13 relative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import sciode
from sciode.cpu.dense import DenseOutput

METHODS = ["bosh3", "dopri5", "tsit5", "dop853", "rk4"]
#: the interpolant at theta = 1 is z + h sum(w K) with w == b up to rounding: a few
#: dozen ulps of the state scale (|z| <= 1 here)
END_ATOL = 1e-13


@pytest.fixture(scope="session")
def spiral():
    """Damped rotation ``z' = (-a + i w) z`` in real form: ``x, y``."""
    x, y, a, w = sp.symbols("x y a w")
    return sciode.Model(states=[x, y], rhs=[-a * x - w * y, w * x - a * y], params=[a, w], name="spiral")


def spiral_exact(t, a=0.3, w=2.0):
    t = np.asarray(t, dtype=float)
    r = np.exp(-a * t)
    return np.stack([r * np.cos(w * t), r * np.sin(w * t)], -1)


def _solve(model, method, span=(0.0, 5.0)):
    kw = dict(dt=0.01) if method == "rk4" else dict(rtol=1e-8, atol=1e-10)
    sol = sciode.solve(model, spiral_exact(span[0]), span, params=[0.3, 2.0], method=method, dense=True, **kw)
    assert sol.success and isinstance(sol.dense, DenseOutput)
    return sol


@pytest.mark.parametrize("method", METHODS)
def test_step_boundaries_return_stored_states(spiral, method):
    sol = _solve(spiral, method)
    d = sol.dense
    np.testing.assert_array_equal(d(sol.t[:-1]), sol.y[:-1])
    np.testing.assert_allclose(d(sol.t[-1]), sol.y[-1], rtol=0, atol=END_ATOL)


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_step_boundaries_backward(spiral, method):
    sol = _solve(spiral, method, span=(5.0, 0.0))
    assert np.all(np.diff(sol.t) < 0)
    # every boundary but t1 is the start of a step: exact
    np.testing.assert_array_equal(sol.dense(sol.t[:-1]), sol.y[:-1])
    np.testing.assert_allclose(sol.dense(sol.t[-1]), sol.y[-1], rtol=0, atol=END_ATOL)
    # and in between: the closed form within a few tolerance units; the spiral grows
    # backward and its components cross zero, so errors are measured against the
    # amplitude scale (atol = rtol), as for the oscillator in test_solve.py
    tq = np.linspace(5.0, 0.0, 101)
    assert _tol_units(tq, sol.dense(tq), atol=1e-8) < 5.0


def _tol_units(t, y, rtol=1e-8, atol=1e-10):
    return np.sqrt(np.mean(((y - spiral_exact(t)) / (atol + rtol * np.abs(spiral_exact(t)))) ** 2))


@pytest.mark.parametrize("method", METHODS)
def test_off_step_values_match_closed_form(spiral, method):
    sol = _solve(spiral, method)
    tq = np.linspace(0.0, 5.0, 503)
    if method == "rk4":
        # dt = 0.01, |lambda| = 2.02: global error ~ t dt^4 |lambda|^5 / 120 ~ 1.4e-8 and
        # the cubic Hermite interpolant's local error ~ dt^4 |lambda|^4 / 384 ~ 4e-10
        assert np.abs(sol.dense(tq) - spiral_exact(tq)).max() < 2e-8
    elif method == "bosh3":
        # bosh3's global error over 1.6 turns of the spiral is ~18 tolerance units at
        # the steps already (SciPy's RK23: 18.24, same steps); the interpolant must
        # not add to it
        assert _tol_units(tq, sol.dense(tq)) < 1.5 * _tol_units(sol.t, sol.y)
    else:  # within tolerance units (RMS < 5, scipy's compute_error)
        assert _tol_units(tq, sol.dense(tq)) < 5.0


def test_input_shapes(spiral):
    sol = _solve(spiral, "dopri5")
    d = sol.dense
    assert d(1.25).shape == (2,)
    assert d(np.float64(1.25)).shape == (2,)
    assert d(np.array(1.25)).shape == (2,)
    assert d([1.25]).shape == (1, 2)
    assert d(np.array([0.5, 1.25, 4.0])).shape == (3, 2)
    assert d(np.zeros(0)).shape == (0, 2)
    # the scalar is the row of the array call (same code path)
    np.testing.assert_array_equal(d(1.25), d([0.5, 1.25])[1])
    assert d(1).dtype == np.float64  # integers are promoted


def test_dense_not_kept_unless_asked(spiral):
    sol = sciode.solve(spiral, [1.0, 0.0], (0.0, 1.0), params=[0.3, 2.0])
    assert sol.dense is None


def test_zero_length_span(spiral):
    sol = sciode.solve(spiral, [1.0, 0.0], (2.0, 2.0), params=[0.3, 2.0], dense=True)
    assert sol.success and sol.stats["nsteps"] == 0
    np.testing.assert_array_equal(sol.dense(2.0), [1.0, 0.0])


def test_stored_floats_counts_every_array(spiral):
    sol = _solve(spiral, "dop853")
    d = sol.dense
    m = d.hs.size
    # m steps: m + 1 times and states, m step sizes, 16 stages (13 + 3 extra) of 2 each
    assert d.stored_floats == (m + 1) + m + 2 * (m + 1) + m * 16 * 2
    assert math.isclose(d.ts[-1], 5.0)


@pytest.mark.parametrize("forward", [True, False])
def test_locate_step_near_agrees_with_the_search(forward):
    """The hinted lookup of the costate sweeps returns what the binary search does,
    whatever the hint: at step boundaries, both ends, outside the span."""
    from sciode.cpu.dense import locate_step, locate_step_near

    rng = np.random.default_rng(3)
    ts = np.concatenate([[0.0], np.cumsum(rng.uniform(0.1, 1.0, 12))])
    if not forward:
        ts = ts[::-1].copy()
    queries = np.concatenate([ts, rng.uniform(ts.min() - 0.5, ts.max() + 0.5, 200)])
    for t in queries:
        expected = locate_step(ts, t)
        for hint in range(-2, ts.size + 1):
            assert locate_step_near(ts, t, hint) == expected
