"""``sciode.solve_ensemble`` / ``value_and_grad_ensemble`` on the CPU.

Checks: every member equals ``sciode.solve`` / ``value_and_grad`` of that
member alone (same steps, same numbers); values and gradients against
references that share no code with sciode (closed forms; complex-step
derivatives of SciPy's ``solve_ivp`` on a hand-written right-hand side); a
failed member is flagged and leaves the others alone; bad input raises.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp

import sciode
from sciode.errors import ModelError, SolverError

TOL = {"rtol": 1e-6, "atol": 1e-6}
TE = np.linspace(0.0, 1.0, 6)


@pytest.fixture(scope="module")
def lorenz_members():
    """12 Lorenz members: rho over [0, 28], the others perturbed (seed 1)."""
    rng = np.random.default_rng(1)
    N = 12
    P = np.column_stack([10 + rng.random(N), np.linspace(0, 28, N), 8 / 3 + 0.1 * rng.random(N)])
    Z0 = 1 + 0.2 * rng.random((N, 3))
    return Z0, P


@pytest.fixture(scope="module")
def ens_decay():
    x, k = sp.symbols("x k")
    return sciode.Model(states=[x], rhs=[-k * x], params=[k], name="ens_decay")


@pytest.fixture(scope="module")
def ens_blowup():
    """``y' = q y^2``, ``y(0) = 1``: ``1/(1 - q t)`` blows up at ``t = 1/q``."""
    y, q = sp.symbols("y q")
    return sciode.Model(states=[y], rhs=[q * y**2], params=[q], name="ens_blowup")


# -- member by member ----------------------------------------------------------------------


@pytest.mark.parametrize("threads", [1, 2])
def test_members_equal_solve_alone(lorenz, lorenz_members, threads):
    """Same loop, same steps: bit-identical to ``sciode.solve`` per member."""
    Z0, P = lorenz_members
    ens = sciode.solve_ensemble(lorenz, Z0, (0.0, 1.0), P, t_eval=TE, threads=threads, **TOL)
    assert ens.y.shape == (12, TE.size, 3) and ens.success.all()
    for m in range(Z0.shape[0]):
        ref = sciode.solve(lorenz, Z0[m], (0.0, 1.0), P[m], t_eval=TE, **TOL)
        np.testing.assert_array_equal(ens.y[m], ref.y)
        for key in ("nfev", "nsteps", "naccepted", "nrejected"):
            assert ens.stats[key][m] == ref.stats[key]
    # members with a larger rho are harder: the steps really are per member
    assert ens.stats["nsteps"][-1] > 2 * ens.stats["nsteps"][0]


def test_backward_span_and_shared_inputs(lorenz, lorenz_members):
    """``t1 < t0`` integrates backward; a 1-D ``y0`` is shared by all members."""
    _, P = lorenz_members
    te = TE[::-1].copy()
    ens = sciode.solve_ensemble(lorenz, [1.0, 2.0, 3.0], (1.0, 0.0), P, t_eval=te, **TOL)
    for m in (0, 7):
        ref = sciode.solve(lorenz, [1.0, 2.0, 3.0], (1.0, 0.0), P[m], t_eval=te, **TOL)
        np.testing.assert_array_equal(ens.y[m], ref.y)


def test_closed_form_decay(ens_decay):
    """``x = x0 exp(-k t)`` per member, to the tolerance."""
    k = np.linspace(0.1, 3.0, 40)[:, None]
    x0 = np.linspace(0.5, 2.0, 40)[:, None]
    ens = sciode.solve_ensemble(ens_decay, x0, (0.0, 2.0), k, t_eval=np.linspace(0, 2, 9),
                                rtol=1e-10, atol=1e-12)
    exact = x0 * np.exp(-k * np.linspace(0, 2, 9)[None, :])
    np.testing.assert_allclose(ens.y[:, :, 0], exact, rtol=1e-8)


def test_failed_member_is_flagged_and_alone(ens_blowup):
    """The member with ``q = 2`` blows up at ``t = 0.5``: it reports its status
    and where it stopped, its rows past that are NaN, the others are exact."""
    q = np.array([[0.1], [0.5], [2.0], [0.3]])
    te = np.linspace(0.0, 0.9, 10)
    ens = sciode.solve_ensemble(ens_blowup, [1.0], (0.0, 0.9), q, t_eval=te, rtol=1e-9, atol=1e-12)
    assert ens.success.tolist() == [True, True, False, True]
    assert ens.failed.tolist() == [2]
    assert 0.45 < ens.t_reached[2] <= 0.5
    assert "t=" in ens.message(2)
    assert np.isnan(ens.y[2, te > 0.5]).all() and np.isfinite(ens.y[2, te < 0.45]).all()
    np.testing.assert_allclose(ens.y[2, te < 0.45, 0], 1 / (1 - 2.0 * te[te < 0.45]), rtol=1e-7)
    good = [0, 1, 3]
    np.testing.assert_allclose(ens.y[good, :, 0], 1 / (1 - q[good] * te[None, :]), rtol=1e-7)
    with pytest.raises(SolverError, match="member 2 of 4"):
        sciode.solve_ensemble(ens_blowup, [1.0], (0.0, 0.9), q, t_eval=te, raise_on_failure=True)


# -- gradients ------------------------------------------------------------------------------


def test_gradients_closed_form(ens_decay):
    """``J = x(T)^2 + int x^2 dt`` for ``x = x0 exp(-k t)``:
    ``J = x0^2 e^{-2kT} + x0^2 (1 - e^{-2kT}) / (2k)``, differentiated by hand."""
    x = ens_decay.states[0]
    cost = sciode.Cost(terminal=x**2, running=x**2)
    k = np.linspace(0.2, 2.0, 24)
    x0 = np.linspace(0.5, 1.5, 24)
    T = 1.5
    g = sciode.value_and_grad_ensemble(ens_decay, cost, x0[:, None], (0.0, T), k[:, None],
                                       rtol=1e-10, atol=1e-12)
    e = np.exp(-2 * k * T)
    J = x0**2 * e + x0**2 * (1 - e) / (2 * k)
    dJdk = -2 * T * x0**2 * e + x0**2 * (2 * T * e * 2 * k - 2 * (1 - e)) / (4 * k**2)
    dJdx0 = 2 * x0 * e + x0 * (1 - e) / k
    assert g.success.all()
    np.testing.assert_allclose(g.value, J, rtol=1e-7)
    np.testing.assert_allclose(g.grad_params[:, 0], dJdk, rtol=1e-7)
    np.testing.assert_allclose(g.grad_y0[:, 0], dJdx0, rtol=1e-7)


def _lorenz_complex(t, u, s, r, b):
    x, y, z = u
    return [s * (y - x), x * (r - z) - y, x * y - b * z]


def _misfit_complex_step(z0, p, t_obs, y_obs):
    """``0.5 sum (y(t_i) - y_obs_i)^2`` and its gradient in ``[y0, p]`` by
    complex steps through SciPy's DOP853 (no sciode code)."""
    h = 1e-30
    base = np.r_[z0, p].astype(complex)
    out = np.empty(6)
    for j in range(6):
        v = base.copy()
        v[j] += 1j * h
        sol = solve_ivp(_lorenz_complex, (0.0, 1.0), v[:3], args=tuple(v[3:]), t_eval=t_obs,
                        method="DOP853", rtol=1e-13, atol=1e-13)
        J = 0.5 * np.sum((sol.y.T - y_obs) ** 2)
        out[j] = J.imag / h
    return J.real, out


def test_gradients_against_complex_step_and_alone(lorenz, lorenz_members):
    """Least-squares misfit on Lorenz: every member equals ``value_and_grad``
    alone (same code path, so to rounding), and three members (rho 0, 10, 28)
    agree with complex-step derivatives through SciPy to 1e-6."""
    Z0, P = lorenz_members
    t_obs = np.linspace(0.1, 1.0, 7)
    y_obs = np.zeros((7, 3)) + 1.0
    data = sciode.LeastSquares(t_obs, y_obs)
    tol = {"rtol": 1e-10, "atol": 1e-10}
    g = sciode.value_and_grad_ensemble(lorenz, data, Z0, (0.0, 1.0), P, threads=2, **tol)
    assert g.grad_params.shape == (12, 3) and g.grad_y0.shape == (12, 3)
    for m in range(12):
        r = sciode.value_and_grad(lorenz, data, Z0[m], (0.0, 1.0), P[m], **tol)
        np.testing.assert_allclose(g.value[m], r.value, rtol=1e-14)
        np.testing.assert_allclose(g.grad_params[m], r.grad_params, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g.grad_y0[m], r.grad_y0, rtol=1e-12, atol=1e-12)
    for m in (0, 4, 11):
        J, ref = _misfit_complex_step(Z0[m], P[m], t_obs, y_obs)
        assert g.value[m] == pytest.approx(J, rel=1e-8)
        ours = np.r_[g.grad_y0[m], g.grad_params[m]]
        assert np.abs(ours - ref).max() <= 1e-6 * np.abs(ref).max()


def test_reduce_sum_and_controls(controlled):
    """``reduce="sum"``: shared params and controls get the summed gradient,
    per-member ``y0`` keeps its rows; the per-member gradients (controls
    included) equal ``value_and_grad`` alone."""
    x = controlled.states[0]
    ctrl = sciode.Controls(np.linspace(0, 1, 5), np.linspace(0.0, 1.0, 5)[:, None] ** 2)
    cost = sciode.Cost(terminal=(x - 1) ** 2, running=controlled.controls[0] ** 2)
    x0 = np.linspace(-1, 1, 20)[:, None]
    p = np.array([-0.5, 2.0])
    per = sciode.value_and_grad_ensemble(controlled, cost, x0, (0.0, 1.0), p, controls=ctrl, **TOL)
    assert per.grad_controls.shape == (20, 5, 1)
    for m in (0, 13):
        r = sciode.value_and_grad(controlled, cost, x0[m], (0.0, 1.0), p, controls=ctrl, **TOL)
        np.testing.assert_allclose(per.grad_controls[m], r.grad_controls, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(per.grad_params[m], r.grad_params, rtol=1e-12)
    tot = sciode.value_and_grad_ensemble(controlled, cost, x0, (0.0, 1.0), p, controls=ctrl,
                                         reduce="sum", **TOL)
    assert tot.value == pytest.approx(per.value.sum(), rel=1e-14)
    np.testing.assert_allclose(tot.grad_params, per.grad_params.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(tot.grad_controls, per.grad_controls.sum(axis=0), rtol=1e-13)
    assert tot.grad_y0.shape == (20, 1)


def test_failed_member_gradient(ens_blowup):
    """A failed member's gradient is NaN with its status set (never a number);
    ``reduce="sum"`` refuses to sum over a failure."""
    y = ens_blowup.states[0]
    cost = sciode.Cost(terminal=y**2)
    q = np.array([[0.1], [2.0], [0.3]])
    g = sciode.value_and_grad_ensemble(ens_blowup, cost, [1.0], (0.0, 0.9), q)
    assert g.success.tolist() == [True, False, True]
    assert np.isnan(g.grad_params[1]).all() and np.isnan(g.value[1])
    assert "forward pass" in g.message(1)
    # closed form for the others: J = (1 - q T)^-2, dJ/dq = 2 T (1 - q T)^-3
    T = 0.9
    np.testing.assert_allclose(g.grad_params[[0, 2], 0], 2 * T / (1 - q[[0, 2], 0] * T) ** 3,
                               rtol=1e-5)
    with pytest.raises(SolverError, match="member 1 of 3"):
        sciode.value_and_grad_ensemble(ens_blowup, cost, [1.0], (0.0, 0.9), q, reduce="sum")


# -- bad input -----------------------------------------------------------------------------


def test_bad_input(lorenz, lorenz_members):
    Z0, P = lorenz_members
    with pytest.raises(ValueError, match="12 members but `params` 5"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), P[:5])
    with pytest.raises(ModelError, match="3 states"):
        sciode.solve_ensemble(lorenz, Z0[:, :2], (0, 1), P)
    with pytest.raises(ModelError, match="3 params"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), P[:, :2])
    with pytest.raises(ValueError, match="device"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), P, device="tpu")
    with pytest.raises(ValueError, match="CUDA"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), P, device="cuda")
    with pytest.raises(ValueError, match="non-finite"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), np.where(P > 20, np.nan, P))
    with pytest.raises(ValueError, match="`reduce`"):
        sciode.value_and_grad_ensemble(lorenz, sciode.Cost(), Z0, (0, 1), P, reduce="mean")
    with pytest.raises(TypeError, match="checkpoints"):
        sciode.value_and_grad_ensemble(lorenz, sciode.Cost(), Z0, (0, 1), P, checkpoints=4)
    with pytest.raises(ValueError, match="threads"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), P, threads=0)
    with pytest.raises(ValueError, match="fixed-step"):
        sciode.solve_ensemble(lorenz, Z0, (0, 1), P, method="rk4")


# -- stiff methods ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def robertson_model():
    y1, y2, y3 = sp.symbols("y1 y2 y3")
    k1, k2, k3 = sp.symbols("k1 k2 k3")
    return sciode.Model(states=[y1, y2, y3],
                        rhs=[-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3,
                             k2 * y2**2],
                        params=[k1, k2, k3], name="robertson")


def test_stiff_members_equal_solve_and_value_and_grad_alone(robertson_model):
    """Robertson (rates 9 decades apart) with rodas4 and kvaerno5: each member's
    trajectory and gradient equal ``solve`` / ``value_and_grad`` of that member
    alone (the same stiff loops run per member)."""
    P = np.array([[0.04, 3e7, 1e4], [0.05, 2e7, 1e4], [0.03, 3e7, 2e4]])
    te = np.array([0.0, 1.0, 100.0, 1e4])
    tol = {"rtol": 1e-6, "atol": 1e-10}
    ens = sciode.solve_ensemble(robertson_model, [1.0, 0.0, 0.0], (0.0, 1e4), P, t_eval=te,
                                method="rodas4", **tol)
    assert ens.success.all()
    y3 = robertson_model.states[2]
    cost = sciode.Cost(terminal=y3)
    g = sciode.value_and_grad_ensemble(robertson_model, cost, [1.0, 0.0, 0.0], (0.0, 100.0), P,
                                       method="kvaerno5", **tol)
    assert g.success.all()
    for m in range(3):
        ref = sciode.solve(robertson_model, [1.0, 0.0, 0.0], (0.0, 1e4), P[m], t_eval=te,
                           method="rodas4", **tol)
        np.testing.assert_array_equal(ens.y[m], ref.y)
        r = sciode.value_and_grad(robertson_model, cost, [1.0, 0.0, 0.0], (0.0, 100.0), P[m],
                                  method="kvaerno5", **tol)
        np.testing.assert_allclose(g.grad_params[m], r.grad_params, rtol=1e-12)
        np.testing.assert_allclose(g.value[m], r.value, rtol=1e-14)
