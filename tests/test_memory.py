"""Stored floats of the memory-bounded sensitivity modes vs the number of steps.

An oscillator run 10x longer takes ~10x more steps: the interpolating adjoint
stores every step (grows ~10x); backsolve stores a fixed number of vectors; the
checkpoint mode with checkpoints in proportion stores ~the same per segment.
"""

import numpy as np
import pytest
import sympy as sp

import sciode


@pytest.fixture(scope="module")
def oscillator():
    x, v, k = sp.symbols("x v k")
    model = sciode.Model([x, v], [v, -k * x], [k], name="memory_oscillator")
    return model, sciode.Cost(terminal=x**2 + v**2)


def _run(problem, mode, t1, **kw):
    model, cost = problem
    return sciode.value_and_grad(model, cost, [1.0, 0.0], (0.0, t1), [4.0], sensitivity=mode,
                                 rtol=1e-8, atol=1e-10, **kw)


def test_backsolve_memory_does_not_grow_with_steps(oscillator):
    short, long = _run(oscillator, "backsolve", 10.0), _run(oscillator, "backsolve", 100.0)
    assert long.stats["forward"]["naccepted"] > 8 * short.stats["forward"]["naccepted"]
    assert long.stats["peak_stored_floats"] == short.stats["peak_stored_floats"]
    ref = _run(oscillator, "forward", 100.0)
    assert np.allclose(long.grad_params, ref.grad_params, rtol=1e-5)  # and is still right


def test_adjoint_memory_grows_and_checkpoint_memory_is_bounded(oscillator):
    a_short, a_long = _run(oscillator, "adjoint", 10.0), _run(oscillator, "adjoint", 100.0)
    assert a_long.stats["peak_stored_floats"] > 8 * a_short.stats["peak_stored_floats"]
    c_short = _run(oscillator, "checkpoint", 10.0, checkpoints=4)
    c_long = _run(oscillator, "checkpoint", 100.0, checkpoints=40)
    assert c_long.stats["peak_stored_floats"] < 1.5 * c_short.stats["peak_stored_floats"]
    assert np.allclose(c_long.grad_params, a_long.grad_params, rtol=1e-6)


def _closed_form_grad(k, t1):
    """d/dk of x(T)^2 + v(T)^2 for x'' = -k x, x(0) = 1, v(0) = 0:
    J = cos^2(th) + k sin^2(th), th = sqrt(k) T, so
    dJ/dk = sin^2(th) + (k - 1) sin(2 th) T / (2 sqrt(k))."""
    th = np.sqrt(k) * t1
    return np.sin(th) ** 2 + (k - 1.0) * np.sin(2 * th) * t1 / (2 * np.sqrt(k))


def test_memory_budget_that_fits_runs_the_adjoint(oscillator):
    plain = _run(oscillator, "adjoint", 30.0)
    res = _run(oscillator, "adjoint", 30.0, memory_budget=1e9)
    info = res.stats["memory"]
    assert info["mode"] == "adjoint"
    assert info["forward_steps"] == plain.stats["forward"]["naccepted"]
    assert np.array_equal(res.grad_params, plain.grad_params)


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_memory_budget_too_small_for_the_trajectory_checkpoints_within_it(oscillator, mode):
    plain = _run(oscillator, "adjoint", 30.0)
    per_step = 8 * (2 + 2 * (1 + 7))  # dopri5: 7 interpolant stages, n = 2
    assert plain.stats["peak_stored_floats"] * 8 >= 0.9 * per_step * plain.stats["forward"]["naccepted"]
    budget = plain.stats["peak_stored_floats"] * 8 / 4  # a quarter of what the adjoint stores
    res = _run(oscillator, mode, 30.0, memory_budget=budget)
    info = res.stats["memory"]
    assert info["mode"] == "checkpoint" and info["bytes_per_step"] == per_step
    assert res.stats["checkpoints"] >= 8
    assert 3 * info["peak_stored_bytes"] <= budget  # growth headroom included
    ref = _closed_form_grad(4.0, 30.0)
    assert abs(res.grad_params[0] - ref) <= 1e-5 * max(1.0, abs(ref))
    assert abs(res.grad_params[0] - plain.grad_params[0]) <= 1e-6 * max(1.0, abs(ref))


@pytest.mark.parametrize("bad", [0, -5.0, float("nan"), "lots"])
def test_memory_budget_rejects_what_is_not_a_positive_byte_count(oscillator, bad):
    with pytest.raises(ValueError, match="memory_budget"):
        _run(oscillator, "adjoint", 1.0, memory_budget=bad)


def test_memory_budget_names_what_it_cannot_do(oscillator):
    with pytest.raises(ValueError, match="cannot hold two steps"):
        _run(oscillator, "adjoint", 1.0, memory_budget=100)
    with pytest.raises(ValueError, match="sensitivity='forward'"):
        _run(oscillator, "forward", 1.0, memory_budget=1e9)
