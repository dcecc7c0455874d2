"""The theory examples (issue 16, item 3) in their fast configurations, each asserting its claim.

See ``docs/theory.md`` for the equivalences they demonstrate; each example's
docstring states its claim, its references and the reasoning behind each
tolerance.  Every reference here is computed without the code under test:
the ResNet written as a loop (NumPy, hand-written backpropagation, torch
autograd), the isotonic regression of scikit-learn, SciPy's ``solve_ivp`` on
hand-written right-hand sides, the exact trace from SymPy.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from examples import (  # after the torch skip
    augmented_node,
    continuous_flow,
    irregular_time_series,
    resnet_is_euler,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- 1. ResNet = forward Euler; backpropagation = discrete adjoint ---------------------------


def test_resnet_is_euler_and_backprop_is_the_discrete_adjoint():
    out = resnet_is_euler.main(fast=True)
    fwd, grad, conv = out["forward"], out["gradient"], out["convergence"]
    # forward: every layer's activation is the Euler (midpoint) step, to rounding;
    # h = 1/8 makes the Euler grid exact in binary, so that one is bit for bit
    assert fwd["euler"]["max_abs_diff"] == 0.0
    assert fwd["midpoint"]["max_abs_diff"] < 1e-15
    assert fwd["euler"]["steps"] == fwd["midpoint"]["steps"] == 8  # one step per block
    # backward: hand-written backprop and torch autograd = sensitivity="discrete"
    for block, row in grad.items():
        assert row["grad_norm"] > 0.1, block  # the gradient is not trivially zero
        for key, rel in row.items():
            if key != "grad_norm":
                assert rel < 1e-13, (block, key, rel)
    assert {"hand_params", "hand_y0"} <= set(grad["euler"])
    # untied blocks (weights as controls at the layer times) run the same forward pass
    untied = out["untied"]
    assert untied["max_abs_diff"] < 1e-15
    # and backprop through untied blocks is the discrete mode's control gradient
    assert untied["grad_rel_err"] is not None and untied["grad_rel_err"] < 1e-13
    # the discrete gradient tends to the continuous adjoint at the scheme's order
    for block, order in (("euler", 1.0), ("midpoint", 2.0)):
        assert all(abs(o - order) < 0.15 for o in conv[block]["orders"]), (block, conv[block])


# -- 2. Augmented Neural ODE: trajectories of a 1-D ODE cannot cross ---------------------------


def test_augmented_node_learns_x_to_minus_x_and_the_plain_one_cannot():
    out = augmented_node.main(fast=True, quiet=True)
    n = out["config"].n_points
    # the bound: mean(x^2) on the grid, = the isotonic regression's error, -> 1/3
    assert out["monotone_bound"] == pytest.approx((n + 1) / (3 * (n - 1)), rel=1e-12)
    assert out["isotonic_bound"] == pytest.approx(out["monotone_bound"], rel=1e-12)
    # the trained plain flow kept the order of its inputs, hence cannot beat the bound
    assert out["plain_min_increment"] > 0.0
    assert out["plain_mse"] >= out["monotone_bound"]
    # it did train (it is not stuck at its initial error): it went down to near the bound
    hist = out["history"]["plain"]
    assert hist[-1] < hist[0] and out["plain_mse"] < 1.1 * out["monotone_bound"]
    # the augmented one learns the map
    assert out["augmented_mse"] < 0.05
    # and the map is exactly representable in 2-D (rotation by pi)
    assert out["rotation_error"] < 1e-8


# -- 3. Continuous normalizing flow: instantaneous change of variables -----------------------


@pytest.fixture(scope="module")
def cnf():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return continuous_flow.main(fast=True)
    finally:
        torch.set_num_threads(threads)


def test_cnf_trace_is_symbolic_and_log_density_is_liouville(cnf):
    import sympy as sp

    x = sp.Symbol("x")
    assert sp.simplify(cnf["trace"] - (sp.Rational(3, 5) * sp.cos(x) - sp.Rational(1, 2))) == 0
    cov = cnf["change_of_variables"]
    assert np.ptp(cov["l_T"]) > 0.5  # the log-density change varies from point to point
    assert cov["max_abs_diff"] < 1e-6


def test_cnf_density_integrates_to_one(cnf):
    norm = cnf["normalization"]
    assert abs(norm["mass"] - 1.0) < norm["tolerance"]
    # the quadrature has converged: halving the spacing changes nothing at that level
    assert abs(norm["mass_half_spacing"] - norm["mass"]) < 1e-6
    assert norm["l1_to_base"] > 0.5  # p_T is not p_0


def test_cnf_hutchinson_is_unbiased_with_the_stated_variance(cnf):
    k = cnf["config"].probes
    rows = cnf["hutchinson_pointwise"]
    assert len(rows) == 2 * len(continuous_flow.POINTS)
    for r in rows:
        assert abs(r["z"]) < 4.0, r
        if r["probe"] == "rademacher":
            assert r["var"] == pytest.approx(r["var_theory"], rel=0.05), r
        else:
            rel = 4 * continuous_flow.gaussian_variance_rel_sd(k)
            assert r["var"] == pytest.approx(r["var_theory"], rel=rel), r
    integ = cnf["hutchinson_integrated"]
    assert abs(integ["exact"]) > 0.5  # a log-density change well away from zero
    for kind in ("rademacher", "gaussian"):
        assert abs(integ[kind]["z"]) < 4.0, integ
        assert abs(integ["exact"]) > 5 * integ[kind]["se"]  # the check can tell 0 from exact


# -- 4. Irregular time series with missing entries ---------------------------------------------


def test_irregular_time_series_fit():
    out = irregular_time_series.main(fast=True)
    fit = out["fit"]
    assert fit.success
    assert set(out["z"]) == {"k", "c", "x(t0)", "v(t0)"}
    for name, z in out["z"].items():
        assert abs(z) < 3.0, (name, z)
    # one residual per observed entry (NaN skipped), and the cost SciPy computes
    assert fit.n_residuals == out["n_observed"] < out["data"].y_obs.size
    assert fit.cost == pytest.approx(out["scipy_cost"], rel=1e-6)
