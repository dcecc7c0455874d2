"""Gradients with stiff methods, and the residual Jacobian of forward mode.

References: forward sensitivities integrated with Kvaerno5 (a different
derivation than the costate), and central differences of the residuals.
"""

import numpy as np
import pytest
import sympy as sp

import sciode


@pytest.fixture(scope="module")
def robertson():
    y1, y2, y3 = sp.symbols("y1 y2 y3")
    l1, l2, l3 = sp.symbols("l1 l2 l3")
    k1, k2, k3 = sp.exp(l1), sp.exp(l2), sp.exp(l3)
    model = sciode.Model([y1, y2, y3], [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2**2,
                                        k2 * y2**2], [l1, l2, l3], name="robertson_grad")
    return model, sciode.Cost(terminal=y1 + 1e4 * y2), np.log([0.04, 3e7, 1e4])


@pytest.mark.parametrize("method", ["rodas4", "rodas5", "kvaerno5"])
@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_stiff_costate_matches_forward_sensitivities(robertson, method, mode):
    """Stiffness ratio ~1e7 at t=40: the costate is integrated backward with the
    same implicit method; 1e-6 relative at rtol=1e-9 (the error falls ~1e2 per
    decade of tolerance, see the validation suite)."""
    model, cost, p = robertson
    ref = sciode.value_and_grad(model, cost, [1.0, 0.0, 0.0], (0.0, 40.0), p, sensitivity="forward",
                                method="kvaerno5", rtol=1e-11, atol=1e-13)
    res = sciode.value_and_grad(model, cost, [1.0, 0.0, 0.0], (0.0, 40.0), p, sensitivity=mode,
                                method=method, rtol=1e-9, atol=1e-11)
    assert abs(res.value - ref.value) < 1e-7 * abs(ref.value)
    err = np.max(np.abs(res.grad_params - ref.grad_params)) / np.max(np.abs(ref.grad_params))
    assert err < 1e-6
    assert np.max(np.abs(res.grad_y0 - ref.grad_y0)) < 1e-6 * np.max(np.abs(ref.grad_y0))
    assert res.stats["backward"]["njev"] > 0  # the backward pass really was implicit


@pytest.fixture(scope="module")
def forced_model():
    """``y' = -lam (y - sin t) + cos t``: ``y(t) = sin t + y0 exp(-lam t)``."""
    y, t, lam = sp.symbols("y t lam")
    return sciode.Model([y], [-lam * (y - sp.sin(t)) + sp.cos(t)], [lam], t=t, name="forced_grad")


def forced_cost_exact(y0, lam, T, running):
    """``(J, dJ/dlam, dJ/dy0)`` of ``J = y(T)^2`` (plus ``int_0^T y dt`` if ``running``)."""
    E = np.exp(-lam * T)
    yT = np.sin(T) + y0 * E
    value, d_lam, d_y0 = yT**2, -2.0 * yT * T * y0 * E, 2.0 * yT * E
    if running:
        value += 1.0 - np.cos(T) + y0 * (1.0 - E) / lam
        d_lam += y0 * (T * E / lam - (1.0 - E) / lam**2)
        d_y0 += (1.0 - E) / lam
    return value, d_lam, d_y0


def forced_cost(model, running):
    y = model.states[0]
    return sciode.Cost(terminal=y**2, running=y if running else None)


@pytest.mark.parametrize("method, running, T", [("rodas4", True, 2.0), ("rodas5", True, 2.0),
                                                ("rodas5", False, 0.1), ("kvaerno5", True, 2.0)])
@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_stiff_gradients_match_closed_form(forced_model, method, running, T, mode):
    """An independent reference (no sciode solve): the closed form above, with
    lam = 40 (stiff next to the O(1) forcing); 1e-7 relative at rtol=1e-10."""
    y0, lam = 1.5, 40.0
    value, d_lam, d_y0 = forced_cost_exact(y0, lam, T, running)
    res = sciode.value_and_grad(forced_model, forced_cost(forced_model, running), [y0], (0.0, T),
                                [lam], sensitivity=mode, method=method, rtol=1e-10, atol=1e-12)
    assert abs(res.value - value) < 1e-8 * abs(value)
    assert abs(res.grad_params[0] - d_lam) < 1e-7 * abs(d_lam), (res.grad_params, d_lam)
    assert abs(res.grad_y0[0] - d_y0) < 1e-7 * abs(d_y0), (res.grad_y0, d_y0)


@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_rodas5_sweep_lands_on_every_forward_step(mode):
    """Stiff Van der Pol (mu = 1000 on [0, 500]) against SciPy Radau forward
    sensitivities of a hand-written right-hand side (``validation.independent``).
    RODAS5's error estimate does not see the costate system's dependence on t,
    and the interpolated forward state is only piecewise smooth: a backward
    step across a forward step boundary lost order unseen, and dJ/d[mu, y0]
    was 1.3e-4 off at rtol 1e-8.  Landing on every forward step
    (``ImplicitMethod.sweep_on_steps``): 1.1e-7."""
    from validation.independent.engine import forward_sensitivities
    from validation.independent.problems import van_der_pol_stiff

    spec = van_der_pol_stiff()
    ref = forward_sensitivities(spec, rtol=1e-12)
    x, v, mu = sp.symbols("x v mu")
    model = sciode.Model([x, v], [v, mu * (1 - x**2) * v - x], [mu], name="vdp_stiff_rodas5")
    res = sciode.value_and_grad(model, sciode.Cost(terminal=x**2 + v**2), list(spec.y0), spec.t_span,
                                spec.params, sensitivity=mode, method="rodas5", rtol=1e-8, atol=1e-8)
    g, g_ref = np.concatenate([res.grad_params, res.grad_y0]), np.concatenate([ref.params, ref.y0])
    assert np.max(np.abs(g - g_ref)) < 1e-6 * np.max(np.abs(g_ref))


def test_rodas5_fd_gradient(forced_model):
    """``sensitivity='fd'`` with rodas5 and the running cost (integrated forward
    with the state, whose error the estimate does see): central differences of
    rodas5 solves agree with the closed form to the differencing error."""
    y0, lam, T = 1.5, 40.0, 2.0
    value, d_lam, d_y0 = forced_cost_exact(y0, lam, T, True)
    res = sciode.value_and_grad(forced_model, forced_cost(forced_model, True), [y0], (0.0, T),
                                [lam], sensitivity="fd", method="rodas5", rtol=1e-11, atol=1e-13)
    assert abs(res.value - value) < 1e-8 * abs(value)
    assert abs(res.grad_params[0] - d_lam) < 1e-5 * abs(d_lam)
    assert abs(res.grad_y0[0] - d_y0) < 1e-5 * abs(d_y0)


def test_rosenbrock_refused_where_the_jacobian_is_approximate(robertson):
    model, cost, p = robertson
    for method in ("rodas4", "rodas5"):
        with pytest.raises(ValueError, match="kvaerno5"):
            sciode.value_and_grad(model, cost, [1.0, 0.0, 0.0], (0.0, 1.0), p,
                                  sensitivity="forward", method=method)
    with pytest.raises(ValueError, match="unstable"):
        sciode.value_and_grad(model, cost, [1.0, 0.0, 0.0], (0.0, 1.0), p, sensitivity="backsolve",
                              method="rodas4")
    with pytest.raises(ValueError, match="explicit"):
        sciode.value_and_grad(model, cost, [1.0, 0.0, 0.0], (0.0, 1.0), p, sensitivity="discrete",
                              method="kvaerno5")


def test_residual_jacobian_matches_central_differences():
    """``extra['residual_jacobian']`` is d r / d[p, y0] of the weighted residuals
    r = (h - y_obs)/sigma of observed entries; central differences with h=1e-6
    at rtol=1e-11 are good to ~1e-8 relative."""
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d")
    model = sciode.Model([x, y], [a * x - b * x * y, c * x * y - d * y], [a, b, c, d], name="lv_resid")
    t_obs = np.linspace(0.5, 5.0, 6)
    y_obs = np.column_stack([np.linspace(1, 2, 6), np.linspace(2, 1, 6)])
    y_obs[2, 1] = np.nan
    data = sciode.LeastSquares(t_obs, y_obs, observables=[x * y, x + y], sigma=[0.3, 0.5])
    theta = np.array([1.4, 1.1, 0.9, 3.1, 1.0, 1.0])

    def run(th):
        return sciode.value_and_grad(model, data, th[4:], (0.0, 5.0), th[:4], sensitivity="forward",
                                     rtol=1e-11, atol=1e-12)

    res = run(theta)
    r, J = res.extra["residuals"], res.extra["residual_jacobian"]
    assert r.shape == (11,) and J.shape == (11, 6)  # 12 entries, one unobserved
    assert abs(0.5 * r @ r - res.value) < 1e-12 * res.value
    assert np.allclose(J.T @ r, np.r_[res.grad_params, res.grad_y0], rtol=1e-10, atol=0)
    h = 1e-6
    fd = np.column_stack([(run(theta + h * e).extra["residuals"] - run(theta - h * e).extra["residuals"]) / (2 * h)
                          for e in np.eye(6)])
    assert np.max(np.abs(fd - J)) < 1e-7 * np.max(np.abs(J))


@pytest.fixture(scope="module")
def vdp_data():
    x, v, mu = sp.symbols("x v mu")
    model = sciode.Model([x, v], [v, mu * (1 - x**2) * v - x], [mu], name="vdp_stiff_ls")
    t_obs = np.linspace(0.0, 2.0, 21)  # at t0, inside, and at t1
    data = sciode.LeastSquares(t_obs, np.column_stack([np.cos(t_obs), np.sin(t_obs)]))
    return model, data


@pytest.mark.parametrize("method", ["rodas4", "kvaerno5"])
@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_stiff_costate_jumps_at_observations(vdp_data, method, mode):
    """Least squares with 21 observations: the implicit loops land on each
    observation time and the costate system jumps there (``sys_stop``).
    Reference: Kvaerno5 forward sensitivities at rtol=1e-10; 1e-7 relative at
    rtol=1e-9 (measured ~1e-9)."""
    model, data = vdp_data
    ref = sciode.value_and_grad(model, data, [2.0, 0.0], (0.0, 2.0), [5.0], sensitivity="forward",
                                method="kvaerno5", rtol=1e-10, atol=1e-10)
    res = sciode.value_and_grad(model, data, [2.0, 0.0], (0.0, 2.0), [5.0], sensitivity=mode,
                                method=method, rtol=1e-9, atol=1e-9)
    assert abs(res.value - ref.value) < 1e-8 * abs(ref.value)
    assert np.max(np.abs(res.grad_params - ref.grad_params)) < 1e-7 * np.max(np.abs(ref.grad_params))
    assert np.max(np.abs(res.grad_y0 - ref.grad_y0)) < 1e-7 * np.max(np.abs(ref.grad_y0))


# --- banded Jacobians: the costate's leading block factored as a band -------------------

N_BAND = 40


@pytest.fixture(scope="module")
def advection_diffusion():
    """``x' = A(p) x`` with ``A = D L + a U - k I`` (``L`` the Dirichlet Laplacian,
    ``U`` an upwind difference: non-symmetric, so ``-J^T`` differs from ``-J``),
    the states stored in a scrambled order (the band appears only after the
    reverse Cuthill--McKee permutation).  Returns the model, ``A``'s parts in
    the stored order, and the permutation."""
    n = N_BAND
    h2 = float((n + 1) ** 2)
    L = h2 * (np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1))
    U = (n + 1) * (np.diag(-np.ones(n)) + np.diag(np.ones(n - 1), -1))
    order = np.random.default_rng(3).permutation(n)  # stored state s holds grid point order[s]
    Lp, Up = L[np.ix_(order, order)], U[np.ix_(order, order)]
    x = sp.symbols(f"x0:{n}")
    D, a, k = sp.symbols("D a k")
    rhs = [sum((D * Lp[i, j] + a * Up[i, j]) * x[j] for j in range(n) if Lp[i, j] or Up[i, j]) - k * x[i]
           for i in range(n)]
    model = sciode.Model(list(x), rhs, [D, a, k], name="advection_diffusion_scrambled")
    return model, (Lp, Up), order


@pytest.mark.parametrize("method", ["rodas4", "kvaerno5", "bdf"])
@pytest.mark.parametrize("mode", ["adjoint", "checkpoint"])
def test_banded_costate_matches_expm_frechet(advection_diffusion, method, mode, monkeypatch):
    """``J = sum_i c_i x_i(T)^2``: ``x(T) = expm(A T) x0``, ``dx(T)/dp_k`` the Frechet
    derivative of ``expm`` at ``A T`` in the direction ``(dA/dp_k) T`` (SciPy), so
    the reference shares no code with the solver.  The loops get the pattern's
    values (``jac_nz``), never the dense ``jac_y``."""
    from scipy.linalg import expm, expm_frechet

    from sciode.codegen import KernelSet, model_kernels
    from sciode.cpu import stiff

    model, (Lp, Up), _ = advection_diffusion
    n = N_BAND
    assert stiff.model_linear_mode(model_kernels(model)).banded
    p = np.array([0.05, 0.4, 0.3])
    T = 0.2
    x0 = np.sin(np.linspace(0.3, 2.8, n))
    c = np.linspace(1.0, 2.0, n)
    y = model.states
    cost = sciode.Cost(terminal=sum(float(ci) * yi ** 2 for ci, yi in zip(c, y)))
    A = p[0] * Lp + p[1] * Up - p[2] * np.eye(n)
    E = expm(A * T)
    xT = E @ x0
    ref_value = float(c @ xT ** 2)
    g = 2.0 * c * xT  # dJ/dx(T)
    ref_p = np.array([g @ (expm_frechet(A * T, dA * T, compute_expm=False) @ x0)
                      for dA in (Lp, Up, -np.eye(n))])
    ref_y0 = E.T @ g

    asked = []
    getitem = KernelSet.__getitem__
    monkeypatch.setattr(KernelSet, "__getitem__", lambda self, name: asked.append(name) or getitem(self, name))
    # kernel bundles memoised by earlier cases would not ask the set again (``KernelSet.fns``)
    monkeypatch.setattr(model_kernels(model), "_fns", {})
    res = sciode.value_and_grad(model, cost, x0, (0.0, T), p, sensitivity=mode, method=method,
                                rtol=1e-9, atol=1e-11)
    assert "jac_nz" in asked and "jac_y" not in asked
    assert res.stats["backward"]["njev"] > 0
    assert abs(res.value - ref_value) < 1e-7 * abs(ref_value)
    assert np.max(np.abs(res.grad_params - ref_p)) < 1e-6 * np.max(np.abs(ref_p))
    assert np.max(np.abs(res.grad_y0 - ref_y0)) < 1e-6 * np.max(np.abs(ref_y0))


def _robertson_log_rate_sensitivities(p, t1):
    """``d(y1 + 1e4 y2)(t1) / d log k`` from SciPy's Radau on the hand-written
    forward-sensitivity system ``S' = J S + F_k diag(k)`` with its full
    Jacobian (coupling ``d(J S)/dy`` included): shares no code with sciode."""
    from scipy.integrate import solve_ivp

    k1, k2, k3 = np.exp(p)

    def jac_y(y):
        return np.array([[-k1, k3 * y[2], k3 * y[1]],
                         [k1, -k3 * y[2] - 2 * k2 * y[1], -k3 * y[1]],
                         [0.0, 2 * k2 * y[1], 0.0]])

    def rhs(t, z):
        y, S = z[:3], z[3:].reshape(3, 3)
        f = [-k1 * y[0] + k3 * y[1] * y[2], k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2, k2 * y[1] ** 2]
        Fk = np.array([[-y[0], 0.0, y[1] * y[2]], [y[0], -y[1] ** 2, -y[1] * y[2]], [0.0, y[1] ** 2, 0.0]])
        return np.concatenate([f, (jac_y(y) @ S + Fk * [k1, k2, k3]).ravel()])

    def jac(t, z):
        y, S = z[:3], z[3:].reshape(3, 3)
        A = np.zeros((12, 12))
        A[:3, :3] = jac_y(y)
        for c in range(3):
            rows = [3 + 3 * i + c for i in range(3)]
            A[np.ix_(rows, rows)] = jac_y(y)
            s1, s2, s3 = S[:, c]
            kc = [k1, k2, k3][c]
            # d/dy of (J S)[:, c] + F_k[:, c] k_c
            dJS = np.array([[0.0, k3 * s3, k3 * s2],
                            [0.0, -k3 * s3 - 2 * k2 * s2, -k3 * s2],
                            [0.0, 2 * k2 * s2, 0.0]])
            dF = [np.array([[-1.0, 0, 0], [1.0, 0, 0], [0, 0, 0]]),
                  np.array([[0, 0, 0], [0, -2 * y[1], 0], [0, 2 * y[1], 0]]),
                  np.array([[0, y[2], y[1]], [0, -y[2], -y[1]], [0, 0, 0]])][c]
            A[rows, :3] = dJS + dF * kc
        return A

    z0 = np.zeros(12)
    z0[0] = 1.0
    sol = solve_ivp(rhs, (0.0, t1), z0, method="Radau", rtol=1e-11, atol=1e-16, jac=jac)
    assert sol.success
    S = sol.y[3:, -1].reshape(3, 3)
    return S.T @ np.array([1.0, 1e4, 0.0])


@pytest.mark.parametrize("method", ["bdf", "kvaerno5"])
def test_forward_sensitivities_at_tight_atol_take_about_the_states_steps(robertson, method):
    """Robertson to t = 1e5 at atol 1e-12 with the sensitivities in the error
    test: Newton's block-diagonal matrix leaves out ``d(J S)/dy``, and one joint
    convergence test collapsed the steps (100,000 steps by t = 1440).  The
    staggered Newton (``newton.newton_phases``) takes at most 2x the state's
    steps, and the gradient matches SciPy's Radau on the full system."""
    model, cost, p = robertson
    y0, span = [1.0, 0.0, 0.0], (0.0, 1e5)
    alone = sciode.solve(model, y0, span, params=p, method=method, rtol=1e-6, atol=1e-12)
    res = sciode.value_and_grad(model, cost, y0, span, p, sensitivity="forward", method=method,
                                rtol=1e-6, atol=1e-12, max_steps=5000)
    assert res.stats["forward"]["naccepted"] <= 2 * alone.stats["naccepted"]
    ref = _robertson_log_rate_sensitivities(p, span[1])
    # rtol 1e-6: the states' own error, ~1e-5 of the gradient
    assert np.max(np.abs(res.grad_params - ref)) < 3e-5 * np.max(np.abs(ref)), (res.grad_params, ref)
