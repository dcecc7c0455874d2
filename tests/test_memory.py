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
