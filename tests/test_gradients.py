"""Gradients of ``sciode.value_and_grad``, every mode against an independent reference.

The ladder (``shared/STYLE.md``, Tests): closed forms first (sympy derivatives
of exact solutions, ``scipy.linalg.expm_frechet``), then central differences
and the forward-sensitivity gradient (a different derivation from the adjoint
modes), then cross-mode agreement. Each test first checks that the cost moves
with what it differentiates (a frozen parameter would pass any gradient test
with a zero gradient), and states its tolerance and why.

Errors are measured norm-wise, ``max|g - g_ref| / max|g_ref|``, so a
component that happens to be tiny is judged on the gradient's scale.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import sympy as sp

import sciode

t = sp.Symbol("t")  # the models' default time symbol

#: Solver tolerances for every accuracy test: at rtol=1e-10 the global error of
#: an 8-stage explicit method on these smooth problems is ~1e-9 relative, so a
#: gradient within 1e-7 of the exact one is a real check of the method, with
#: two orders of margin against discretization noise.
TIGHT = dict(rtol=1e-10, atol=1e-12)
CLOSED_FORM_RTOL = 1e-7

ALL_MODES = ("adjoint", "checkpoint", "forward", "backsolve", "discrete", "fd")
ADJOINT_LIKE = ("adjoint", "checkpoint", "backsolve", "discrete")


# --- helpers -----------------------------------------------------------------------------


def rel_err(g, ref) -> float:
    """Norm-wise relative error ``max|g - ref| / max|ref|``."""
    g, ref = np.atleast_1d(np.asarray(g, float)), np.atleast_1d(np.asarray(ref, float))
    assert g.shape == ref.shape
    return float(np.max(np.abs(g - ref)) / np.max(np.abs(ref)))


def vg(model, cost, y0, span, p, mode, **kw):
    """``value_and_grad`` with the tight tolerances unless overridden.

    Backsolve's drift check compares the re-integrated ``y(t0)`` with ``y0`` in
    tolerance units; at rtol=1e-10 the backward pass's own global error on a
    non-contracting problem is a few hundred units while the gradient is still
    right to ~1e-8, so the agreement tests silence that warning (its purpose is
    tested on its own in ``test_backsolve_warns_on_chaotic_problem``).
    """
    opts = {**TIGHT, **kw}
    with warnings.catch_warnings():
        if mode == "backsolve":
            warnings.filterwarnings("ignore", message="backsolve: the state re-integrated",
                                    category=RuntimeWarning)
        return sciode.value_and_grad(model, cost, y0, span, p, sensitivity=mode, **opts)


def assert_moves(model, cost, y0, span, p, **kw):
    """Every parameter and initial state changes the cost (the "frozen" check).

    Each entry is moved by 1% of its scale; the cost must change by more than
    1e-6 of its scale, far above the 1e-10 solve noise.
    """
    p, y0 = np.asarray(p, float), np.asarray(y0, float)
    base = vg(model, cost, y0, span, p, "forward", **kw).value
    theta = np.concatenate([p, y0])
    for k in range(theta.size):
        th = theta.copy()
        th[k] += 1e-2 * max(abs(th[k]), 1.0)
        moved = vg(model, cost, th[p.size:], span, th[:p.size], "forward", **kw).value
        assert abs(moved - base) > 1e-6 * max(abs(base), 1.0), f"cost is frozen in entry {k}"


def full_grad(res) -> np.ndarray:
    return np.concatenate([res.grad_params, res.grad_y0])


# --- models (session-scoped: generating and compiling kernels is the slow part) ----------


@pytest.fixture(scope="session")
def decay():
    """``x' = -k x``; param k."""
    x, k = sp.symbols("x k")
    return sciode.Model(states=[x], rhs=[-k * x], params=[k], name="grad_decay")


@pytest.fixture(scope="session")
def decay_weighted():
    """``x' = -k x`` with a second param ``w`` used only by the running cost."""
    x, k, w = sp.symbols("x k w")
    return sciode.Model(states=[x], rhs=[-k * x], params=[k, w], name="grad_decay_weighted")


@pytest.fixture(scope="session")
def logistic():
    """``x' = r x (1 - x/K)``; params (r, K)."""
    x, r, K = sp.symbols("x r K")
    return sciode.Model(states=[x], rhs=[r * x * (1 - x / K)], params=[r, K], name="grad_logistic")


@pytest.fixture(scope="session")
def linear3():
    """``x' = A x`` with the nine entries of ``A`` (row-major) as params."""
    xs = sp.symbols("x0:3")
    a = sp.symbols("a0:9")
    A = sp.Matrix(3, 3, a)
    return sciode.Model(states=list(xs), rhs=list(A * sp.Matrix(xs)), params=list(a), name="grad_linear3")


@pytest.fixture(scope="session")
def lv(lotka_volterra):
    """Lotka-Volterra (``conftest``); states (x, y), params (a, b, c, d)."""
    return lotka_volterra


@pytest.fixture(scope="session")
def vdp():
    """Van der Pol; states (x, v), param mu."""
    x, v, mu = sp.symbols("x v mu")
    return sciode.Model(states=[x, v], rhs=[v, mu * (1 - x**2) * v - x], params=[mu], name="grad_vdp")


@pytest.fixture(scope="session")
def lorenz3(lorenz):
    """Lorenz (``conftest``); states (x, y, z), params (sigma, rho, beta)."""
    return lorenz


@pytest.fixture(scope="session")
def osc(oscillator):
    """Damped oscillator (``conftest``); states (x, v), params (k, c)."""
    return oscillator


@pytest.fixture(scope="session")
def driven():
    """``x' = -a x + u(t)``; param a, control u."""
    x, u, a = sp.symbols("x u a")
    return sciode.Model(states=[x], rhs=[-a * x + u], params=[a], controls=[u], name="grad_driven")


@pytest.fixture(scope="session")
def blowup():
    """``y' = q y^2``: with q = y0 = 1 the solution 1/(1 - t) blows up at t = 1."""
    y, q = sp.symbols("y q")
    return sciode.Model(states=[y], rhs=[q * y**2], params=[q], name="grad_blowup")


# --- closed forms ------------------------------------------------------------------------

K0, X0, T_DECAY = 0.7, 1.3, 2.0


def _decay_reference(kind):
    """Exact J(k, x0) for ``x = x0 exp(-k t)`` and its sympy gradient."""
    k, x0, T = sp.symbols("k x0 T", positive=True)
    terminal = x0**2 * sp.exp(-2 * k * T)                       # Phi = x(T)^2
    running = sp.integrate((x0 * sp.exp(-k * t)) ** 2, (t, 0, T))  # int x^2 dt
    J = {"terminal": terminal, "running": running, "both": terminal + running}[kind]
    at = {k: K0, x0: X0, T: T_DECAY}
    return float(J.subs(at)), np.array([float(sp.diff(J, v).subs(at)) for v in (k, x0)])


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("kind", ["terminal", "running", "both"])
def test_exponential_decay_closed_form(decay, mode, kind):
    """Tolerance 1e-7 relative: see ``TIGHT``; the reference is exact."""
    x = decay.states[0]
    cost = sciode.Cost(terminal=x**2 if kind != "running" else None,
                       running=x**2 if kind != "terminal" else None)
    assert_moves(decay, cost, [X0], (0.0, T_DECAY), [K0])
    value, grad = _decay_reference(kind)
    res = vg(decay, cost, [X0], (0.0, T_DECAY), [K0], mode)
    assert res.value == pytest.approx(value, rel=CLOSED_FORM_RTOL)
    assert rel_err(full_grad(res), grad) < CLOSED_FORM_RTOL


@pytest.mark.parametrize("mode", ("adjoint", "forward", "fd"))
def test_parameter_dependent_initial_state(decay_weighted, mode):
    """``x(0) = w^2``, ``x' = -k x``, ``Phi = x(T)^2 = w^4 e^{-2kT}``: the chain rule
    ``dJ/dw = lambda(0) dx0/dw`` against the closed form; tolerance as ``TIGHT``."""
    x = decay_weighted.states[0]
    k_s, w_s = decay_weighted.params
    k, w, T = 0.4, 2.0, 1.5
    J = w**4 * np.exp(-2 * k * T)
    res = vg(decay_weighted, sciode.Cost(terminal=x**2), [w_s**2], (0.0, T), [k, w], mode)
    assert res.value == pytest.approx(J, rel=CLOSED_FORM_RTOL)
    assert rel_err(res.grad_params, [-2 * T * J, 4 * w**3 * np.exp(-2 * k * T)]) < CLOSED_FORM_RTOL
    assert rel_err(res.grad_y0, [2 * w**2 * np.exp(-2 * k * T)]) < CLOSED_FORM_RTOL


def test_residual_jacobian_with_parameter_dependent_initial_state(decay_weighted):
    """``x(0) = w^2``, ``x' = -k x``, residuals ``r_i = (w^2 e^{-k t_i} - y_i) / s``:
    the forward mode's residual Jacobian carries ``dr/dx0 . dx0/dw`` in its ``w``
    column (closed form), as ``grad_params`` does."""
    k_s, w_s = decay_weighted.params
    k, w, s = 0.4, 2.0, 0.5
    t = np.array([0.5, 1.0, 2.0])
    y = np.array([3.0, 2.5, 1.5])
    res = vg(decay_weighted, sciode.LeastSquares(t, y[:, None], sigma=s), [w_s**2], (0.0, 2.0),
             [k, w], "forward")
    e = np.exp(-k * t)
    J = res.extra["residual_jacobian"]
    np.testing.assert_allclose(res.extra["residuals"], (w**2 * e - y) / s, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(J[:, 0], -t * w**2 * e / s, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(J[:, 1], 2 * w * e / s, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(J[:, 2], e / s, rtol=CLOSED_FORM_RTOL)  # d r / d x0 itself
    # the state sensitivities at the rows carry the chain rule too: dx(t_i)/dw = 2 w e^{-k t_i}
    S = res.extra["S_rows"][:, 0, :]
    np.testing.assert_allclose(S[:, 1], 2 * w * e, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(S[:, 0], -t * w**2 * e, rtol=CLOSED_FORM_RTOL)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_logistic_terminal_closed_form(logistic, mode):
    """``x(t) = K x0 e^{rt} / (K + x0 (e^{rt} - 1))``, ``Phi = (x(T) - K/2)^2``
    (depends on K directly too, exercising ``dPhi/dp``); tolerance as ``TIGHT``."""
    xs, r, K = logistic.states[0], *logistic.params
    x0, T = sp.symbols("x0 T", positive=True)
    sol = K * x0 * sp.exp(r * T) / (K + x0 * (sp.exp(r * T) - 1))
    J = (sol - K / 2) ** 2
    at = {r: 0.8, K: 2.0, x0: 0.3, T: 3.0}
    ref = np.array([float(sp.diff(J, v).subs(at)) for v in (r, K, x0)])
    cost = sciode.Cost(terminal=(xs - K / 2) ** 2)
    args = (logistic, cost, [0.3], (0.0, 3.0), [0.8, 2.0])
    assert_moves(*args)
    res = vg(*args, mode)
    assert res.value == pytest.approx(float(J.subs(at)), rel=CLOSED_FORM_RTOL)
    assert rel_err(full_grad(res), ref) < CLOSED_FORM_RTOL


A_LIN = np.array([[-0.5, 1.0, 0.2], [-1.0, -0.3, 0.4], [0.1, -0.2, -0.8]])
X0_LIN = np.array([1.0, 0.5, -0.3])
T_LIN = 2.0


def _linear_reference():
    """``J = 0.5 |x(T)|^2`` with ``x(T) = expm(A T) x0``.

    ``dJ/dA_ij = x(T) . (d expm(A T)/dA_ij) x0`` and ``d expm(A T)/dA_ij`` is
    the Frechet derivative of expm at ``A T`` in the direction ``E_ij T``;
    ``dJ/dx0 = expm(A T)^T x(T)``.
    """
    M = scipy.linalg.expm(A_LIN * T_LIN)
    xT = M @ X0_LIN
    gA = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            E = np.zeros((3, 3))
            E[i, j] = T_LIN
            _, dM = scipy.linalg.expm_frechet(A_LIN * T_LIN, E)
            gA[i, j] = xT @ (dM @ X0_LIN)
    return 0.5 * xT @ xT, np.concatenate([gA.ravel(), M.T @ xT])


@pytest.mark.parametrize("mode", ALL_MODES)
def test_linear_system_gradient_matches_expm_frechet(linear3, mode):
    """Tolerance 1e-7 relative (``TIGHT``); the reference is scipy's expm and its
    Frechet derivative, independent of any ODE solver."""
    xs = sp.Matrix(linear3.states)
    cost = sciode.Cost(terminal=(xs.T * xs)[0] / 2)
    args = (linear3, cost, X0_LIN, (0.0, T_LIN), A_LIN.ravel())
    assert_moves(*args)
    value, grad = _linear_reference()
    res = vg(*args, mode)
    assert res.value == pytest.approx(value, rel=CLOSED_FORM_RTOL)
    assert rel_err(full_grad(res), grad) < CLOSED_FORM_RTOL


@pytest.mark.parametrize("mode", ALL_MODES)
def test_param_only_in_running_cost(decay_weighted, mode):
    """``J = int_0^T (w sin(t) x + x^2) dt`` with ``x = x0 e^{-kt}``: ``w`` never
    enters the dynamics, so its gradient comes from ``dL/dp`` alone
    (``int sin(t) x dt``); the explicit time dependence checks that ``L`` is
    evaluated at the right ``t``. Closed form by sympy; tolerance ``TIGHT``."""
    xs, (k, w) = decay_weighted.states[0], decay_weighted.params
    cost = sciode.Cost(running=w * sp.sin(t) * xs + xs**2)
    x0, T = sp.symbols("x0 T", positive=True)
    kk = sp.Symbol("kk", positive=True)
    sol = x0 * sp.exp(-kk * t)
    J = sp.integrate(w * sp.sin(t) * sol + sol**2, (t, 0, T)).subs(kk, k)
    at = {k: 0.7, w: 1.5, x0: 1.3, T: 3.0}
    ref = np.array([float(sp.diff(J, v).subs(at)) for v in (k, w, x0)])
    args = (decay_weighted, cost, [1.3], (0.0, 3.0), [0.7, 1.5])
    assert_moves(*args)
    res = vg(*args, mode)
    assert res.value == pytest.approx(float(J.subs(at)), rel=CLOSED_FORM_RTOL)
    assert rel_err(full_grad(res), ref) < CLOSED_FORM_RTOL
    # the w-entry is exactly int sin(t) x dt, a separate closed form
    assert res.grad_params[1] == pytest.approx(float(sp.integrate(sp.sin(t) * sol, (t, 0, T)).subs(
        {kk: 0.7, x0: 1.3, T: 3.0})), rel=CLOSED_FORM_RTOL)


# --- least squares -----------------------------------------------------------------------

LV_TRUE = np.array([1.0, 0.5, 0.4, 0.9])
LV_P = np.array([1.1, 0.45, 0.43, 0.85])  # away from the optimum: the gradient is not ~0
LV_Y0 = np.array([1.5, 1.0])
LV_SPAN = (0.0, 10.0)


@pytest.fixture(scope="session")
def lv_data(lv):
    """21 noisy observations of both states (seed 0), four entries missing."""
    t_obs = np.linspace(*LV_SPAN, 21)
    sol = sciode.solve(lv, LV_Y0, LV_SPAN, LV_TRUE, t_eval=t_obs, **TIGHT)
    rng = np.random.default_rng(0)
    sigma = np.array([0.1, 0.2])
    y = sol.y + rng.normal(size=sol.y.shape) * sigma
    y[[2, 7], 0] = np.nan
    y[[5, 13], 1] = np.nan
    return sciode.LeastSquares(t_obs, y, sigma=sigma)


@pytest.fixture(scope="session")
def lv_reference(lv, lv_data):
    """Forward-sensitivity and central-difference gradients of the LV misfit."""
    args = (lv, lv_data, LV_Y0, LV_SPAN, LV_P)
    return full_grad(vg(*args, "forward")), full_grad(vg(*args, "fd"))


def test_lotka_volterra_references_agree(lv, lv_data, lv_reference):
    """Forward sensitivities and central differences (relative step 1e-6, solves
    at 1e-10: error ~ (1e-6)^2 + 1e-10/1e-6 ~ 1e-4 worst case, observed far
    better) agree to 1e-5 relative; NaN entries are skipped, not propagated."""
    assert_moves(lv, lv_data, LV_Y0, LV_SPAN, LV_P)
    fwd, fd = lv_reference
    assert np.all(np.isfinite(fwd))
    assert rel_err(fd, fwd) < 1e-5
    # the misfit skips exactly the NaN entries: compare with LeastSquares.value
    # a writeable copy: `solve` rejects read-only `t_eval` arrays (reported separately)
    sol = sciode.solve(lv, LV_Y0, LV_SPAN, LV_P, t_eval=np.array(lv_data.t_obs), **TIGHT)
    value = vg(lv, lv_data, LV_Y0, LV_SPAN, LV_P, "adjoint").value
    assert value == pytest.approx(lv_data.value(sol.y), rel=1e-8)


@pytest.mark.parametrize("mode", ADJOINT_LIKE)
def test_lotka_volterra_least_squares_modes(lv, lv_data, lv_reference, mode):
    """Every mode within 1e-6 of the forward sensitivities (two derivations
    each accurate to ~1e-8 at rtol=1e-10) and 1e-5 of central differences."""
    fwd, fd = lv_reference
    g = full_grad(vg(lv, lv_data, LV_Y0, LV_SPAN, LV_P, mode))
    assert rel_err(g, fwd) < 1e-6
    assert rel_err(g, fd) < 1e-5


@pytest.mark.parametrize("mode", ("adjoint", "forward"))
def test_repeated_calls_follow_params_and_y0(lv, lv_data, mode, monkeypatch):
    """A fit calls ``value_and_grad`` with the same model, data and options and
    new ``params``/``y0``: the kept plan (``common.prepare``) must serve the new
    values, bit for bit what a fresh call computes."""
    from sciode.adjoint import common

    first = vg(lv, lv_data, LV_Y0, LV_SPAN, LV_P, mode)
    p2, y2 = LV_P * 1.05, LV_Y0 * 0.9
    again = vg(lv, lv_data, y2, LV_SPAN, p2, mode)
    monkeypatch.setattr(common, "_STATIC", {})
    fresh = vg(lv, lv_data, y2, LV_SPAN, p2, mode)
    assert again.value == fresh.value and again.value != first.value
    assert np.array_equal(full_grad(again), full_grad(fresh))
    assert not np.array_equal(full_grad(again), full_grad(first))


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint", "forward", "discrete"))
def test_nonlinear_observable(lv, mode):
    """Observable ``h = x y`` (its ``dh/dy`` depends on the state) with data on
    a product, sigma 0.3; tolerance 1e-5 against central differences."""
    x, y = lv.states
    t_obs = np.linspace(0.5, 6.0, 12)
    data = sciode.LeastSquares(t_obs, np.linspace(1.0, 2.0, 12), observables=[x * y], sigma=0.3)
    args = (lv, data, LV_Y0, (0.0, 6.0), LV_P)
    assert_moves(*args)
    fd = full_grad(vg(*args, "fd"))
    assert rel_err(full_grad(vg(*args, mode)), fd) < 1e-5


# --- observation-time edge cases ----------------------------------------------------------

#: t0 (twice), step boundaries of rk4 with dt = 0.1, a replicate at 1.0, and t1.
EDGE_T = np.array([0.0, 0.0, 0.1, 0.5, 1.0, 1.0, 1.0, 1.5, 1.9, 2.0, 2.0])


@pytest.fixture(scope="session")
def edge_data(lv):
    y = np.column_stack([np.linspace(1.0, 2.0, EDGE_T.size), np.linspace(1.2, 0.6, EDGE_T.size)])
    return sciode.LeastSquares(EDGE_T, y, sigma=[0.5, 0.25])


def _own_central_diff(fn, theta, rel=1e-6):
    g = np.empty(theta.size)
    for k in range(theta.size):
        h = rel * max(abs(theta[k]), 1.0)
        tp, tm = theta.copy(), theta.copy()
        tp[k] += h
        tm[k] -= h
        g[k] = (fn(tp) - fn(tm)) / (2 * h)
    return g


def test_observations_on_fixed_step_boundaries_discrete(lv, edge_data):
    """rk4 with dt = 0.1 and observations at t0, t1, replicates and step
    boundaries: the discrete adjoint equals central differences (relative step
    1e-6) of the same rk4 scheme to 1e-8 (difference error ~1e-12 truncation +
    ~1e-10 rounding)."""
    cost = edge_data + sciode.Cost(terminal=lv.states[0] * lv.states[1])
    theta = np.concatenate([LV_P, LV_Y0])

    def value(th):
        return vg(lv, cost, th[4:], (0.0, 2.0), th[:4], "discrete", method="rk4", dt=0.1).value

    assert_moves(lv, cost, LV_Y0, (0.0, 2.0), LV_P)
    res = vg(lv, cost, LV_Y0, (0.0, 2.0), LV_P, "discrete", method="rk4", dt=0.1)
    assert res.extra["step_sizes"].size == 20
    assert rel_err(full_grad(res), _own_central_diff(value, theta)) < 1e-8


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint", "forward", "backsolve"))
def test_observations_at_ends_and_replicates_continuous(lv, edge_data, mode):
    """The same observation set with dopri5 at 1e-10: each continuous mode
    within 1e-6 of central differences of the cost (both ~1e-8 accurate)."""
    cost = edge_data + sciode.Cost(terminal=lv.states[0] * lv.states[1])
    args = (lv, cost, LV_Y0, (0.0, 2.0), LV_P)
    fd = full_grad(vg(*args, "fd"))
    assert rel_err(full_grad(vg(*args, mode)), fd) < 1e-6


def test_observations_at_t0_only_affect_y0_gradient_by_residual(lv):
    """A datum at t0 contributes exactly ``(y0 - y_obs)/sigma^2`` to dJ/dy0 and
    nothing to dJ/dp (the state at t0 does not depend on p); tolerance 1e-9."""
    data0 = sciode.LeastSquares([0.0], [[1.0, 0.5]], sigma=[0.5, 2.0])
    res = vg(lv, data0, LV_Y0, (0.0, 1.0), LV_P, "adjoint")
    np.testing.assert_allclose(res.grad_y0, (LV_Y0 - [1.0, 0.5]) / np.array([0.25, 4.0]), rtol=1e-9)
    np.testing.assert_allclose(res.grad_params, 0.0, atol=1e-12)


# --- Van der Pol: cross-mode agreement -----------------------------------------------------

VDP_Y0, VDP_SPAN = [2.0, 0.5], (0.0, 6.0)


def _vdp_cost(vdp):
    x, v = vdp.states
    return sciode.Cost(terminal=x**2 + 0.5 * v, running=0.1 * x**2)


VDP_CASES = [(m, mu) for mu in (1.0, 5.0) for m in ("adjoint", "checkpoint", "discrete")]


@pytest.mark.parametrize("mode, mu", VDP_CASES + [("backsolve", 1.0)])
def test_van_der_pol_modes_agree_with_forward(vdp, mode, mu):
    """dopri5 on [0, 6] (a full relaxation cycle at mu=5, with rejected steps);
    terminal plus running cost. Within 1e-6 of the forward sensitivities (two
    derivations, each ~1e-8 accurate at rtol=1e-10). Backsolve only at mu=1: at
    mu=5 the limit cycle repels backward in time (next test)."""
    args = (vdp, _vdp_cost(vdp), VDP_Y0, VDP_SPAN, [mu])
    assert_moves(*args)
    fwd = vg(*args, "forward")
    res = vg(*args, mode)
    assert res.stats["forward"]["nrejected"] > 0
    assert res.value == pytest.approx(fwd.value, rel=1e-8)
    assert rel_err(full_grad(res), full_grad(fwd)) < 1e-6


# --- backsolve: fails loudly, and the workaround works ----------------------------------------

LORENZ_P, LORENZ_Y0, LORENZ_SPAN = [10.0, 28.0, 8.0 / 3.0], [1.0, 1.0, 1.0], (0.0, 2.0)
#: moderate tolerances: at 1e-8 backsolve still finishes (on [0, 3] it runs into
#: max_steps instead, a SolverError) but its y(t0) is off by ~1e2.
LORENZ_TOL = dict(rtol=1e-8, atol=1e-10)


def test_backsolve_warns_on_chaotic_problem(lorenz3):
    """Re-integrating Lorenz backward amplifies errors along the contracting
    direction (~e^{14.5 t}), so the recomputed y(t0) is far from y0."""
    cost = sciode.Cost(terminal=lorenz3.states[2])
    with pytest.warns(RuntimeWarning, match="sensitivity='adjoint'"):
        res = sciode.value_and_grad(lorenz3, cost, LORENZ_Y0, LORENZ_SPAN, LORENZ_P,
                                    sensitivity="backsolve", **LORENZ_TOL)
    assert res.stats["y0_drift"] > 1e6


def test_backsolve_warns_on_van_der_pol(vdp):
    """mu = 5: the attracting limit cycle repels backward in time."""
    with pytest.warns(RuntimeWarning, match="gradient is unreliable"):
        sciode.value_and_grad(vdp, _vdp_cost(vdp), VDP_Y0, VDP_SPAN, [5.0],
                              sensitivity="backsolve", **TIGHT)


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint"))
def test_backsolve_workaround_is_right(lorenz3, mode):
    """The suggested modes give the forward-sensitivity gradient to 1e-6 (the
    forward problem is well conditioned on [0, 2]: e^{0.9 * 2} ~ 6; solves at
    1e-10), while backsolve's gradient on the same problem is far off."""
    cost = sciode.Cost(terminal=lorenz3.states[2])
    args = (lorenz3, cost, LORENZ_Y0, LORENZ_SPAN, LORENZ_P)
    assert_moves(*args)
    fwd = full_grad(vg(*args, "forward"))
    assert rel_err(full_grad(vg(*args, mode)), fwd) < 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bad = full_grad(sciode.value_and_grad(*args, sensitivity="backsolve", **LORENZ_TOL))
    assert not rel_err(bad, fwd) < 1e-2


# --- checkpoint memory ---------------------------------------------------------------------------


def test_checkpoint_memory_bounded(osc):
    """Ten times the span with ten times the checkpoints: checkpoint mode's
    stored floats stay within 1.5x (one segment plus the checkpoints), the
    interpolating adjoint's grow ~10x; both still agree on the gradient (1e-6)."""
    x, v = osc.states
    cost = sciode.Cost(terminal=x**2 + v**2, running=0.01 * x**2)
    p, y0 = [1.0, 0.02], [1.0, 0.0]
    mem = {}
    for span, n_ck in ((10.0, 4), (100.0, 40)):
        adj = vg(osc, cost, y0, (0.0, span), p, "adjoint")
        ck = vg(osc, cost, y0, (0.0, span), p, "checkpoint", checkpoints=n_ck)
        assert rel_err(full_grad(ck), full_grad(adj)) < 1e-6
        mem[span] = adj.stats["peak_stored_floats"], ck.stats["peak_stored_floats"]
        assert ck.stats["checkpoints"] == n_ck
    adj_ratio = mem[100.0][0] / mem[10.0][0]
    ck_ratio = mem[100.0][1] / mem[10.0][1]
    assert adj_ratio > 7, mem
    assert ck_ratio < 1.5, mem
    assert mem[100.0][1] < mem[100.0][0] / 5, mem


def test_forward_without_sensitivity_error_control_keeps_the_states_test(lorenz3):
    """``sens_error_control=False``: the sensitivities leave the error test and the
    states keep theirs at the user's tolerances, so the forward-sensitivity solve
    takes exactly the steps of the plain solve (before, the RMS over all entries
    loosened the states' test by sqrt(size / n) and it took fewer)."""
    x = lorenz3.states[0]
    kw = {"rtol": 1e-6, "atol": 1e-6}
    res = vg(lorenz3, sciode.Cost(terminal=x**2), [1.0, 1.0, 1.0], (0.0, 2.0), [10.0, 28.0, 8 / 3],
             "forward", sens_error_control=False, **kw)
    plain = sciode.solve(lorenz3, [1.0, 1.0, 1.0], (0.0, 2.0), [10.0, 28.0, 8 / 3], **kw)
    assert res.stats["forward"]["nsteps"] == plain.stats["nsteps"]
    assert res.value == pytest.approx(plain.y[-1, 0] ** 2, rel=1e-12)


# --- controls --------------------------------------------------------------------------------

CTRL_GRID = np.linspace(0.0, 2.0, 9)          # spacing 1/4, exact in binary
CTRL_VALUES = np.sin(2.0 * CTRL_GRID) + 0.3


def _control_case(driven, mode, **kw):
    """``x' = -a x + u``, ``L = x^2 + u^2``, ``Phi = x``: the cost is exactly
    quadratic in the grid values (x is linear in u), so central differences
    have no truncation error and any difference step is exact but for solver
    noise. Returns (value function of the grid values, result at CTRL_VALUES)."""
    x, u = driven.states[0], driven.controls[0]
    cost = sciode.Cost(running=x**2 + u**2, terminal=x)

    def run(vals, m=mode):
        ctrl = sciode.Controls(CTRL_GRID, np.reshape(vals, (-1, 1)))
        return vg(driven, cost, [1.0], (0.0, 2.0), [0.8], m, controls=ctrl, **kw)

    base = CTRL_VALUES.copy()
    for k in range(base.size):  # each grid value moves the cost
        moved = base.copy()
        moved[k] += 0.05
        assert abs(run(moved).value - run(base).value) > 1e-6
    return (lambda vals: run(vals).value), run(base), run(base, "forward")


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint", "backsolve", "discrete", "fd", "forward"))
def test_control_gradient_grid_aligned_steps(driven, mode):
    """rk4 with dt = 2^-8 (steps land on every control grid point, so the
    integrand is smooth inside each step; the O(dt^4) ~ 1e-10 error of the
    continuous adjoint is the only gap; the discrete adjoint and fd differentiate
    the scheme itself): ``grad_controls`` equals central differences (step
    1e-3) of the same scheme's cost to 1e-9."""
    value, res, fwd = _control_case(driven, mode, method="rk4", dt=2.0**-8)
    assert res.grad_controls.shape == (CTRL_GRID.size, 1)
    # fd's own step (1e-6) makes it rounding-limited: ~eps |J| / h, observed 2e-9
    tol = 5e-9 if mode == "fd" else 1e-9
    assert rel_err(res.grad_controls[:, 0], _own_central_diff(value, CTRL_VALUES, rel=1e-3)) < tol
    assert rel_err(full_grad(res), full_grad(fwd)) < tol


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint", "backsolve", "discrete", "fd", "forward"))
def test_control_gradient_adaptive(driven, mode):
    """dopri5 at 1e-10 against central differences with step 0.1 (exact for a
    quadratic cost). The adaptive loop does not stop at control grid points and
    the embedded error estimate is unreliable across the kinks of ``u``: the
    cost itself is only ~1e-8 accurate (observed 2e-8 relative between modes),
    so a difference step of 1e-6 would measure noise (~1e-2), and even step 0.1
    carries ~2e-7 of it (observed 1.4e-7 to 4.8e-7): tolerance 5e-6."""
    value, res, fwd = _control_case(driven, mode)
    assert rel_err(res.grad_controls[:, 0], _own_central_diff(value, CTRL_VALUES, rel=0.1)) < 5e-6
    assert rel_err(full_grad(res), full_grad(fwd)) < 1e-6


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint", "backsolve", "discrete", "fd", "forward"))
def test_control_gradient_with_data_and_running_cost(driven, mode):
    """Controls, observation data and a running cost together (rk4 on the
    control grid as above): every mode's ``grad_controls`` equals central
    differences of the cost (step 1e-3; the cost is quadratic in the grid
    values, x being linear in u) to 1e-9 (fd: rounding-limited, 5e-9)."""
    x, u = driven.states[0], driven.controls[0]
    data = sciode.LeastSquares(np.array([0.3, 0.75, 1.25, 2.0]), np.array([[0.9], [0.5], [0.8], [0.2]]),
                               sigma=0.1)
    cost = sciode.Cost(running=x**2 + 0.5 * u**2, data=data)

    def run(vals, m=mode):
        ctrl = sciode.Controls(CTRL_GRID, np.reshape(vals, (-1, 1)))
        return vg(driven, cost, [1.0], (0.0, 2.0), [0.8], m, controls=ctrl, method="rk4",
                  dt=2.0**-8)

    res = run(CTRL_VALUES)
    ref = _own_central_diff(lambda v: run(v).value, CTRL_VALUES, rel=1e-3)
    assert rel_err(res.grad_controls[:, 0], ref) < (5e-9 if mode == "fd" else 1e-9)


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
def test_gradient_of_failed_solve_raises(blowup, mode):
    """``y' = y^2`` from 1 blows up at t = 1 < 2: no gradient, a SolverError."""
    cost = sciode.Cost(terminal=blowup.states[0])
    with pytest.raises(sciode.SolverError):
        sciode.value_and_grad(blowup, cost, [1.0], (0.0, 2.0), [1.0], sensitivity=mode)


@pytest.mark.parametrize("mode", ("adjoint", "checkpoint"))
def test_failed_backward_pass_raises(lv, lv_data, mode):
    """A costate sweep that runs out of steps (the sweep lands on every
    observation, so it needs more steps than the forward pass: 113 forward
    against 189 backward at 1e-6) is a SolverError naming the backward pass,
    not a gradient."""
    args = (lv, lv_data, LV_Y0, LV_SPAN, LV_P)
    fwd = sciode.value_and_grad(*args, sensitivity=mode, rtol=1e-6, atol=1e-6, checkpoints=1)
    steps = fwd.stats["forward"]["nsteps"]
    assert fwd.stats["backward"]["nsteps"] > steps + 10
    with pytest.raises(sciode.SolverError, match="backward"):
        sciode.value_and_grad(*args, sensitivity=mode, rtol=1e-6, atol=1e-6, checkpoints=1,
                              max_steps=steps + 5)


def test_unknown_sensitivity_and_option_raise(decay):
    cost = sciode.Cost(terminal=decay.states[0])
    with pytest.raises(ValueError, match="sensitivity"):
        sciode.value_and_grad(decay, cost, [1.0], (0.0, 1.0), [1.0], sensitivity="adjiont")
    with pytest.raises(TypeError, match="checkpionts"):
        sciode.value_and_grad(decay, cost, [1.0], (0.0, 1.0), [1.0], checkpionts=4)
