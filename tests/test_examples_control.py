"""The control examples (issue 16, item 3) in their fast configurations, each asserting its claims.

``examples/neural_ode_adjoint.py``: the continuous adjoint and backpropagation
through dopri5 give the same gradient of a small Neural ODE within the
solver-tolerance budget of its docstring, both close to a tight reference
(``g*``, backpropagation at tol 1e-12), and the symbolic ``sciode.Model`` of
the same field gives torch's adjoint gradient; the adjoint's saved memory is
the same at every horizon and tolerance while backpropagation's grows with the
number of steps.

``examples/mean_field_resnet.py``: a ResNet as particles under shared
controls, trained by ``sciode.optimal_control``; the loss decreases, the
Pontryagin residual ``dH/dw`` falls by more than 100x from the initial controls
(computed from its definition, independently), the optimal cost matches a SciPy
``solve_ivp`` simulation on a hand-written right-hand side, and the ensemble of
one-particle models gives the stacked model's control gradient.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

from examples import mean_field_resnet, neural_ode_adjoint  # after the torch skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_adjoint_matches_backprop_with_flat_memory():
    out = neural_ode_adjoint.main(fast=True, quiet=True)
    cfg, runs = out["config"], out["runs"]
    assert set(runs) == {(T, tol) for T in cfg.horizons for tol in cfg.tols}
    for (T, tol), row in runs.items():
        adj, bp = row["adjoint"], row["backprop"]
        # gradients: each within the budget of g*, and of each other
        assert row["budget"] == pytest.approx(10 * tol * max(1.0, row["kappa"]))
        assert adj["err"] < row["budget"], (T, tol, adj["err"])
        assert bp["err"] < row["budget"], (T, tol, bp["err"])
        assert row["diff"] < 2 * row["budget"], (T, tol, row["diff"])
        # the same forward solve; only the adjoint calls the field backward
        assert adj["nfe_forward"] == bp["nfe_forward"] >= 8
        assert adj["nfe_backward"] > 0 and bp["nfe_backward"] == 0
        assert adj["loss"] == pytest.approx(bp["loss"], rel=1e-12)
    # the difference is discretization error: it shrinks with the tolerance
    loose, tight = cfg.tols
    for T in cfg.horizons:
        assert runs[(T, tight)]["diff"] < runs[(T, loose)]["diff"] / 10, T

    # memory: the adjoint's is the same in every run; backprop's grows with the steps
    adj_bytes = {row["adjoint"]["memory_bytes"] for row in runs.values()}
    assert len(adj_bytes) == 1 and adj_bytes.pop() > 0
    bp_rows = sorted((row["backprop"] for row in runs.values()), key=lambda r: r["nfe_forward"])
    nfe = [r["nfe_forward"] for r in bp_rows]
    mem = [r["memory_bytes"] for r in bp_rows]
    assert nfe[0] < nfe[-1]  # the longer horizon / tighter tolerance took more steps
    for (n_a, m_a), (n_b, m_b) in itertools.pairwise(zip(nfe, mem)):
        # more evaluations, more memory; the same number (T = 1 at 1e-9 and T = 4 at
        # 1e-6 both take 50), the same bytes: memory is a function of the steps only
        assert (m_a < m_b) if n_a < n_b else (m_a == m_b), (nfe, mem)
    per_eval = [m / n for m, n in zip(mem, nfe)]  # linear in the steps: a constant per evaluation
    assert max(per_eval) < 1.05 * min(per_eval), per_eval
    assert min(mem) > 10 * runs[(cfg.horizons[0], loose)]["adjoint"]["memory_bytes"]
    # at a fixed tolerance, the longer horizon: more steps, the same adjoint memory
    short, long = (runs[(T, loose)] for T in (cfg.horizons[0], cfg.horizons[-1]))
    assert long["backprop"]["nfe_forward"] > short["backprop"]["nfe_forward"]
    assert long["backprop"]["memory_bytes"] > short["backprop"]["memory_bytes"]
    assert long["adjoint"]["memory_bytes"] == short["adjoint"]["memory_bytes"]

    # the symbolic Model's CPU adjoint = torch's adjoint through the nn.Module
    sym = out["symbolic"]
    kappa = runs[(sym["T"], loose)]["kappa"]
    assert sym["budget"] == pytest.approx(100 * sym["tol"] * max(1.0, kappa))
    assert sym["rel_err"] < sym["budget"], sym
    assert sym["nfe_forward"] > 0 and sym["nfe_backward"] > 0


def test_mean_field_resnet_trains_and_satisfies_pontryagin():
    out = mean_field_resnet.main(fast=True, quiet=True)
    cfg, oc = out["config"], out["oc"]
    ini, opt, res = out["initial"], out["optimal"], out["residual"]
    assert oc.success, oc.message
    assert oc.y.shape == (cfg.n_grid, 2 * cfg.n_particles)
    # 1. training works: the loss and the total cost go down, no point is lost
    assert opt["loss"] < 0.5 * ini["loss"], (ini["loss"], opt["loss"])
    assert opt["cost"] < ini["cost"]
    assert opt["accuracy"] >= ini["accuracy"] and opt["accuracy"] >= 0.9
    # 2. Pontryagin: dH/dw at the optimum is < 1e-2 of its value at the start, whose
    # computation from the definition also reproduces the library's residual at the optimum
    assert res["initial"] > 0.1
    assert res["optimal"] < 1e-2 * res["initial"], res
    assert res["definition_vs_oc"] < 1e-6 * res["initial"], res
    assert res["optimal_by_definition"] == pytest.approx(res["optimal"], rel=1e-4)
    # 3. the optimal cost = a SciPy simulation of the hand-written particle system
    sc = out["scipy"]
    assert sc["rel_err"] < 1e-7, sc
    assert sc["initial_rel_err"] < 1e-9, sc
    # 4. one-particle ensemble with shared controls, summed = the stacked model
    ens = out["ensemble"]
    assert ens["grad_norm"] > 0.1
    assert ens["value_rel_err"] < 1e-6 and ens["grad_rel_err"] < 1e-6, ens
