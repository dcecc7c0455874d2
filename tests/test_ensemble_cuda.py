"""``solve_ensemble`` / ``value_and_grad_ensemble`` with ``device="cuda"``: the
kernels' logic under Numba's CUDA simulator (in a subprocess: the simulator is
chosen before Numba loads), member by member against ``sciode.solve`` and
``value_and_grad(..., sensitivity="discrete")``, and against closed forms; on
a real GPU when there is one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sciode

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def sim():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, str(HERE / "cudasim_ensemble.py")], check=False, env=env,
                         capture_output=True, text=True, timeout=600, cwd=HERE.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dop853"])
def test_members_take_the_steps_of_solve(sim, method):
    """Same steps, same function evaluations, same numbers (the kernel mirrors
    the CPU loop's operations; the simulator runs them in float64)."""
    for member in sim[method]:
        assert member["same_steps"] and member["same_nfev"]
        assert member["diff"] <= 1e-12


def test_backward_in_time(sim):
    for member in sim["backward"]:
        assert member["same_steps"] and member["diff"] <= 1e-12


def test_float32(sim):
    """The loop in single precision, rtol 1e-4: within 1e-3 of float64."""
    assert sim["f32"]["dtype"] == "float32" and sim["f32"]["rel"] < 1e-3


def test_failed_member_and_device_inputs(sim):
    """Device arrays in; ``y' = q y^2`` with q = 2 blows up at t = 0.5: that
    member alone is flagged, the others match ``1/(1 - q t)``."""
    b = sim["blowup"]
    assert b["status"][0] == 0 and b["status"][2] == 0 and b["status"][1] != 0
    assert 0.45 < b["t_reached"][1] <= 0.5 and b["nan_after"]
    assert b["others_rel"] < 1e-7


def test_benchmark_hand_kernel_agrees(sim):
    """``benchmarks/cuda_hand.py`` (the GPU limit the suite compares against)
    integrates the same problem to rounding."""
    assert sim["hand_vs_sciode"] < 1e-10


def test_gradients_are_the_discrete_adjoint_of_each_member(sim):
    """Terminal plus running cost on Lorenz: every member's value and gradient
    equal ``value_and_grad(..., sensitivity="discrete")`` of that member on
    the CPU (the same steps differentiated the same way)."""
    for row in sim["grad_vs_discrete"]:
        assert row["value"] <= 1e-13 and row["grad"] <= 1e-12


def test_gradients_closed_form(sim):
    """``x' = -k x``, ``J = x(T)^2 + int x^2 dt`` by hand, at rtol 1e-10."""
    assert sim["grad_closed_form"] < 1e-7


def test_gradient_options_and_failures(sim):
    """``reduce="sum"`` with shared params sums them; a member out of room for
    its step records stops with max_steps, its gradient NaN and flagged."""
    assert sim["reduce_sum_shape"] == [1]
    assert sim["few_steps"]["status"] == [3, 3] and sim["few_steps"]["nan"]
    assert "max_steps=5" in sim["few_steps"]["message"]


def test_unsupported_is_a_clear_error(sim):
    assert "bosh3, dopri5, tsit5, dop853" in sim["errors"]["rk4"]
    assert "least-squares" in sim["errors"]["data"]


def test_cuda_without_a_device_is_a_clear_error(lorenz):
    from sciode import cuda

    if cuda.available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        sciode.solve_ensemble(lorenz, np.ones(3), (0, 1), [10, 28, 8 / 3], device="cuda")


@pytest.mark.skipif(not __import__("sciode.cuda", fromlist=["available"]).available(),
                    reason="needs CUDA")
def test_real_gpu_matches_cpu(lorenz):
    """On a GPU (fused multiply-adds, other libm): to the tolerance, same step counts
    for most members."""
    P = np.column_stack([np.full(256, 10.0), np.linspace(0, 28, 256), np.full(256, 8 / 3)])
    kw = {"t_eval": np.linspace(0, 1, 5), "rtol": 1e-8, "atol": 1e-8}
    gpu = sciode.solve_ensemble(lorenz, np.ones(3), (0, 1), P, device="cuda", **kw)
    cpu = sciode.solve_ensemble(lorenz, np.ones(3), (0, 1), P, **kw)
    assert gpu.success.all()
    np.testing.assert_allclose(gpu.y, cpu.y, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not __import__("sciode.cuda", fromlist=["available"]).available(),
                    reason="needs CUDA")
def test_real_gpu_gradients_match_cpu_discrete(lorenz):
    x, y, z = lorenz.states
    cost = sciode.Cost(terminal=x**2 + y**2 + z**2)
    P = np.column_stack([np.full(64, 10.0), np.linspace(0, 28, 64), np.full(64, 8 / 3)])
    g = sciode.value_and_grad_ensemble(lorenz, cost, np.ones(3), (0, 1), P, rtol=1e-8, atol=1e-8,
                                       device="cuda")
    assert g.success.all()
    for m in (0, 31, 63):
        ref = sciode.value_and_grad(lorenz, cost, np.ones(3), (0, 1), P[m], sensitivity="discrete",
                                    rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(g.grad_params[m], ref.grad_params, rtol=1e-6)
