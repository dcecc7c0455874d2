"""``sensitivity="discrete"``: the exact gradient of the discrete solution.

The reference is central differences of the *same* scheme on the *same* step
sequence. Fixed-step ``rk4``/``euler`` keep their steps by construction; the
adaptive tableaus are pinned to uniform steps by ``max_step=h`` with
tolerances so loose (1e3) that every step is accepted at exactly ``h``, which
each test checks, for the base point and every perturbed point.

Tolerance: differences with relative step 1e-6 have truncation error
~(1e-6)^2 and rounding error ~1e-16/1e-6 = 1e-10 relative to the cost, so the
discrete adjoint must match to 1e-8 (norm-wise relative error, as in
``test_gradients.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

import sciode
from sciode.methods.tableaus import DOP853

P0 = np.array([1.1, 0.45, 0.43, 0.85])
Y0 = np.array([1.5, 1.0])
SPAN = (0.0, 4.0)
#: t0, t1 and times off every step grid used below (dense output inside steps).
T_OBS = np.array([0.0, 0.33, 1.17, 1.17, 2.5, 3.01, 3.99, 4.0])

#: ``(method, options, step)``: fixed steps, and adaptive tableaus pinned to ``step``.
SCHEMES = [
    ("rk4", dict(dt=0.1), 0.1),
    ("euler", dict(dt=0.05), 0.05),
    ("bosh3", dict(max_step=0.25, rtol=1e3, atol=1e3), 0.25),
    ("dopri5", dict(max_step=0.25, rtol=1e3, atol=1e3), 0.25),
    ("tsit5", dict(max_step=0.25, rtol=1e3, atol=1e3), 0.25),
    ("dop853", dict(max_step=0.25, rtol=1e3, atol=1e3), 0.25),
]


def rel_err(g, ref) -> float:
    """Norm-wise relative error ``max|g - ref| / max|ref|``."""
    return float(np.max(np.abs(np.asarray(g) - ref)) / np.max(np.abs(ref)))


@pytest.fixture(scope="session")
def disc_lv(lotka_volterra):
    """Lotka-Volterra (``conftest``); states (x, y), params (a, b, c, d)."""
    return lotka_volterra


@pytest.fixture(scope="session")
def disc_cost(disc_lv):
    """Data off the step grid (a NaN entry, a replicate), a terminal cost and a
    running cost with a parameter in it."""
    x, y = disc_lv.states
    c = disc_lv.params[2]
    y_obs = np.column_stack([np.linspace(1.0, 2.0, T_OBS.size), np.linspace(1.2, 0.6, T_OBS.size)])
    y_obs[3, 1] = np.nan
    data = sciode.LeastSquares(T_OBS, y_obs, sigma=[0.3, 0.2])
    return data + sciode.Cost(terminal=x * y, running=0.1 * x**2 + c * y)


def discrete(model, cost, theta, method, opts):
    return sciode.value_and_grad(model, cost, theta[4:], SPAN, theta[:4], sensitivity="discrete",
                                 method=method, **opts)


def assert_uniform(steps, h):
    """Every step is exactly ``h`` but the last, which may differ by rounding."""
    assert np.all(steps[:-1] == h), steps
    assert abs(steps[-1] - h) < 1e-12


def scheme_central_diff(model, cost, theta, method, opts, steps, rel=1e-6):
    """Central differences of the discrete cost, checking the step sequence
    is unchanged at every perturbed point (else it is not the same scheme)."""
    g = np.empty(theta.size)
    for k in range(theta.size):
        h = rel * max(abs(theta[k]), 1.0)
        vals = []
        for sgn in (1.0, -1.0):
            th = theta.copy()
            th[k] += sgn * h
            res = discrete(model, cost, th, method, opts)
            np.testing.assert_array_equal(res.extra["step_sizes"], steps)
            vals.append(res.value)
        g[k] = (vals[0] - vals[1]) / (2 * h)
    return g


@pytest.mark.parametrize("method, opts, h", SCHEMES, ids=[s[0] for s in SCHEMES])
def test_discrete_equals_differences_of_the_scheme(disc_lv, disc_cost, method, opts, h):
    theta = np.concatenate([P0, Y0])
    res = discrete(disc_lv, disc_cost, theta, method, opts)
    steps = res.extra["step_sizes"]
    assert_uniform(steps, h)
    assert steps.size == round((SPAN[1] - SPAN[0]) / h)
    fd = scheme_central_diff(disc_lv, disc_cost, theta, method, opts, steps)
    # the cost moves with every entry (a frozen entry would give fd == 0 == grad)
    assert np.all(np.abs(fd) > 1e-3)
    assert rel_err(np.concatenate([res.grad_params, res.grad_y0]), fd) < 1e-8


def test_dop853_observations_use_extra_stages(disc_lv, disc_cost):
    """DOP853's dense output needs three extra stages; observations strictly
    inside steps read them, so the discrete adjoint must differentiate them.
    Only the observation part is isolated here (no terminal/running cost)."""
    assert DOP853.s_total > DOP853.s
    data = disc_cost.data[0]
    opts = dict(max_step=0.25, rtol=1e3, atol=1e3)
    theta = np.concatenate([P0, Y0])
    res = discrete(disc_lv, data, theta, "dop853", opts)
    steps = res.extra["step_sizes"]
    assert_uniform(steps, 0.25)
    inside = (T_OBS / 0.25) % 1 != 0
    assert inside.sum() >= 4  # most observations fall strictly inside a step
    fd = scheme_central_diff(disc_lv, data, theta, "dop853", opts, steps)
    assert rel_err(np.concatenate([res.grad_params, res.grad_y0]), fd) < 1e-8


def test_discrete_vs_continuous_adjoint_at_coarse_steps(disc_lv, disc_cost):
    """On a coarse uniform dopri5 grid (h = 0.5) the discrete and continuous
    adjoints differentiate different things: the discrete one the scheme
    (matches its differences to 1e-8), the continuous one the exact flow
    (off from the scheme's differences by the O(h^5) discretization error,
    here ~1e-4). Both approximate the true gradient (forward sensitivities
    at 1e-10) to the scheme's accuracy, 1e-2."""
    opts = dict(max_step=0.5, rtol=1e3, atol=1e3)
    theta = np.concatenate([P0, Y0])
    disc = discrete(disc_lv, disc_cost, theta, "dopri5", opts)
    steps = disc.extra["step_sizes"]
    assert_uniform(steps, 0.5)
    fd = scheme_central_diff(disc_lv, disc_cost, theta, "dopri5", opts, steps)
    adj = sciode.value_and_grad(disc_lv, disc_cost, Y0, SPAN, P0, sensitivity="adjoint",
                                method="dopri5", **opts)
    # same forward states, but the adjoint integrates the running cost backward
    # with the costate (its own steps), so the values agree only to discretization
    assert adj.value == pytest.approx(disc.value, rel=1e-5)
    err_disc = rel_err(np.concatenate([disc.grad_params, disc.grad_y0]), fd)
    err_adj = rel_err(np.concatenate([adj.grad_params, adj.grad_y0]), fd)
    assert err_disc < 1e-8
    assert err_adj > 1e-6
    assert err_adj > 1e3 * err_disc
    exact = sciode.value_and_grad(disc_lv, disc_cost, Y0, SPAN, P0, sensitivity="forward",
                                  rtol=1e-10, atol=1e-12)
    g_exact = np.concatenate([exact.grad_params, exact.grad_y0])
    assert rel_err(np.concatenate([disc.grad_params, disc.grad_y0]), g_exact) < 1e-2
    assert rel_err(np.concatenate([adj.grad_params, adj.grad_y0]), g_exact) < 1e-2


def test_discrete_matches_library_fd_mode(disc_lv, disc_cost):
    """``sensitivity="fd"`` evaluates the same scheme (same options, same
    steps): it agrees with the discrete adjoint to 1e-8, which also checks
    that both modes compute the same cost value."""
    opts = dict(dt=0.1)
    disc = sciode.value_and_grad(disc_lv, disc_cost, Y0, SPAN, P0, sensitivity="discrete",
                                 method="rk4", **opts)
    fd = sciode.value_and_grad(disc_lv, disc_cost, Y0, SPAN, P0, sensitivity="fd",
                               method="rk4", **opts)
    assert disc.value == pytest.approx(fd.value, rel=1e-14)
    assert rel_err(np.concatenate([disc.grad_params, disc.grad_y0]),
                   np.concatenate([fd.grad_params, fd.grad_y0])) < 1e-8
