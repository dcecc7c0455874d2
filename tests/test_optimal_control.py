"""``sciode.optimal_control`` (issue 16, part 2) against closed forms and independent references.

References are independent of sciode: Riccati ODEs solved with
``scipy.integrate.solve_ivp`` on hand-written right-hand sides (rtol 1e-12),
``scipy.linalg.solve_continuous_are``, and closed-form optimal controls.

Error budget on a control grid of spacing ``h``.  The answer is piecewise
linear on the grid, so a smooth optimum ``u*`` is met only to ``O(h^2)``: the
discrete optimum of ``"lbfgs"`` is close to the L2 projection of ``u*`` onto
the hat functions, whose nodal error is ``-(h^2/12) u*''`` (mass-matrix
expansion: ``M c = (u*, phi)`` with ``M ~ h (1 + (h^2/6) d^2)`` and
``(u*, phi_k) ~ h (u* + (h^2/12) u*'')``); the sweep's nodal fixed point has
an error of the same order.  Tolerances on ``u`` are therefore
``2 * (h^2/12) max|u*''| / max|u*|`` (``grid_budget``), computed from the
reference.  Measured at 201 points: scalar LQR, u 2.2e-6 (lbfgs) and 1.1e-6
(sweep) vs budget 4.3e-6; matrix LQR, 4.6e-6 and 2.5e-6 vs 9.1e-6.  States and
costates depend on ``w`` only through integrals, to which the projection error
is orthogonal (the error of an L2 projection is orthogonal to the hat
functions): with lbfgs they are ~1e-10 accurate (measured 5e-10 and 1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp
from scipy.linalg import solve_continuous_are

import sciode
from sciode.optimal import problem as oc_problem
from sciode.optimal import trajectory as oc_trajectory

#: Riccati and closed-loop references: far below every tolerance used here.
REF = {"rtol": 1e-12, "atol": 1e-14}


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def grid_budget(t, u):
    """``2 (h^2/12) max|u''| / max|u|`` on a uniform grid (module docstring)."""
    h = t[1] - t[0]
    upp = np.gradient(np.gradient(u, t), t)
    return 2.0 * h**2 / 12.0 * float(np.max(np.abs(upp))) / float(np.max(np.abs(u)))


# --- LQR references ----------------------------------------------------------------------------


def lqr_reference(A, B, Q, R, QT, T, x0, t):
    """``u* = -R^-1 B^T P x``, ``x``, ``lambda = P x`` on ``t`` from the Riccati ODE
    ``-P' = A^T P + P A + Q - P B R^-1 B^T P``, ``P(T) = QT``, and the closed loop."""
    n = A.shape[0]
    Ri = np.linalg.inv(R)

    def riccati(_, p):
        P = p.reshape(n, n)
        return -(A.T @ P + P @ A + Q - P @ B @ Ri @ B.T @ P).ravel()

    ric = solve_ivp(riccati, (T, 0.0), QT.ravel(), dense_output=True, **REF)
    P = lambda s: ric.sol(s).reshape(n, n)
    K = lambda s: Ri @ B.T @ P(s)
    cl = solve_ivp(lambda s, x: (A - B @ K(s)) @ x, (0.0, T), x0, t_eval=t, **REF)
    X = cl.y.T
    U = np.array([-K(s) @ X[k] for k, s in enumerate(t)])
    Lam = np.array([P(s) @ X[k] for k, s in enumerate(t)])
    return U, X, Lam


# Scalar LQR x' = a x + b u, J = qT x(T)^2/2 + int (q x^2 + r u^2)/2: an unstable
# open loop (a > 0), T = 1, 201 grid points.  (With r = 0.5 the sweep's map already
# expands: see test_sweep_that_does_not_contract_fails_loudly_and_lbfgs_solves_it.)
SC = {"a": 0.2, "b": 1.0, "q": 1.0, "r": 1.0, "qT": 1.0, "T": 1.0, "x0": 1.0}


@pytest.fixture(scope="module")
def scalar_lqr():
    x, u = sp.symbols("x u")
    c = SC
    model = sciode.Model([x], [c["a"] * x + c["b"] * u], controls=[u], name="oc_lqr1")
    cost = sciode.Cost(terminal=c["qT"] * x**2 / 2, running=(c["q"] * x**2 + c["r"] * u**2) / 2)
    t = np.linspace(0.0, c["T"], 201)
    ref = lqr_reference(np.array([[c["a"]]]), np.array([[c["b"]]]), np.array([[c["q"]]]),
                        np.array([[c["r"]]]), np.array([[c["qT"]]]), c["T"], np.array([c["x0"]]), t)
    return model, cost, t, ref


@pytest.mark.parametrize("method, kw", [("lbfgs", {"tol": 1e-8}),
                                        ("sweep", {"tol": 1e-10})])
def test_scalar_lqr_matches_riccati(scalar_lqr, method, kw):
    """u, x and lambda = P x against the scalar Riccati ODE, within the grid budget."""
    model, cost, t, (U, X, Lam) = scalar_lqr
    oc = sciode.optimal_control(model, cost, [SC["x0"]], (0.0, SC["T"]),
                                sciode.Controls(t, np.zeros(t.size)), method=method, **kw)
    assert oc.success, oc.message
    assert f"method={method!r}" in repr(oc) and "success=True" in repr(oc)
    budget = grid_budget(t, U[:, 0])
    assert 1e-6 < budget < 1e-5  # h = 0.005: (h^2/12) ~ 2e-6 times max|u''|/max|u| ~ 1
    assert rel_err(oc.controls.values, U) < budget
    assert rel_err(oc.y, X) < budget
    assert rel_err(oc.costate, Lam) < budget
    if method == "lbfgs":  # module docstring: states and costates see only integrals of w
        assert rel_err(oc.y, X) < 1e-7 and rel_err(oc.costate, Lam) < 1e-7
    # J at the optimum: the value function x0 P(0) x0 / 2 (Riccati), to solver accuracy
    # plus the second-order effect of the O(h^2) control error.
    assert oc.cost == pytest.approx(0.5 * SC["x0"] * Lam[0, 0], rel=1e-8)
    assert oc.controls.t is not t and np.array_equal(oc.controls.t, t)
    assert oc.y.shape == oc.costate.shape == (t.size, 1)
    assert oc.dH_dw_residual.shape == (t.size, 1)
    # dH/dw = r u + b lambda at the nodes vanishes to O(h^2) (lbfgs) or to the tolerance (sweep)
    assert np.max(oc.dH_dw_residual) < budget * np.max(np.abs(U))


# --- matrix LQR: a double integrator -----------------------------------------------------------

A2 = np.array([[0.0, 1.0], [0.0, 0.0]])
B2 = np.array([[0.0], [1.0]])


@pytest.fixture(scope="module")
def double_integrator():
    x1, x2, u = sp.symbols("x1 x2 u")
    return sciode.Model([x1, x2], [x2, u], controls=[u], name="oc_double_integrator")


def quadratic_cost(model, Q, R, QT):
    x1, x2 = model.states
    u = model.controls[0]
    return sciode.Cost(terminal=(QT[0, 0] * x1**2 + QT[1, 1] * x2**2) / 2,
                       running=(Q[0, 0] * x1**2 + Q[1, 1] * x2**2 + R[0, 0] * u**2) / 2)


@pytest.mark.parametrize("method, kw", [("lbfgs", {"tol": 1e-8}),
                                        ("sweep", {"tol": 1e-10})])
def test_matrix_lqr_matches_matrix_riccati(double_integrator, method, kw):
    """Double integrator, Q = R = QT = I, T = 1, 201 points: u, x, lambda = P x
    against the 2x2 Riccati ODE."""
    Q, R, QT, T, x0 = np.eye(2), np.eye(1), np.eye(2), 1.0, np.array([1.0, 0.0])
    t = np.linspace(0.0, T, 201)
    U, X, Lam = lqr_reference(A2, B2, Q, R, QT, T, x0, t)
    oc = sciode.optimal_control(double_integrator, quadratic_cost(double_integrator, Q, R, QT), x0,
                                (0.0, T), sciode.Controls(t, np.zeros(t.size)), method=method, **kw)
    assert oc.success, oc.message
    budget = grid_budget(t, U[:, 0])
    assert rel_err(oc.controls.values, U) < budget
    assert rel_err(oc.y, X) < budget
    assert rel_err(oc.costate, Lam) < budget


def test_long_horizon_lqr_gives_stationary_gain(double_integrator):
    """T = 10, QT = 0: at t = 0 the Riccati solution has converged to the ARE's
    (closed-loop poles -0.87 +- 0.5i, so |P(0) - P_are| ~ exp(-2 * 0.87 * 10) ~ 3e-8):
    u(0) = -R^-1 B^T P_are x0 and lambda(0) = P_are x0 (solve_continuous_are)."""
    Q, R, T, x0 = np.eye(2), np.eye(1), 10.0, np.array([1.0, 0.5])
    P = solve_continuous_are(A2, B2, Q, R)
    t = np.linspace(0.0, T, 201)
    oc = sciode.optimal_control(double_integrator,
                                quadratic_cost(double_integrator, Q, R, np.zeros((2, 2))), x0,
                                (0.0, T), sciode.Controls(t, np.zeros(t.size)), tol=1e-8)
    assert oc.success, oc.message
    U, _, _ = lqr_reference(A2, B2, Q, R, np.zeros((2, 2)), T, x0, t)
    assert rel_err(oc.costate[0], P @ x0) < 1e-6  # integrals of w only: measured 2.3e-7
    # h = 0.05: the control's O(h^2) budget, 1.1e-3 here (measured error 5.9e-4)
    assert abs(oc.controls.values[0, 0] - (-np.linalg.solve(R, B2.T @ P) @ x0)[0]) \
        < grid_budget(t, U[:, 0]) * np.max(np.abs(U))


def test_sweep_that_does_not_contract_fails_loudly_and_lbfgs_solves_it(double_integrator):
    """T = 2: the sweep's map w -> -lambda_2 is expanding (its gain grows like T^3),
    so relaxation 0.5 diverges; it must stop with success=False (not run to
    overflow), and lbfgs solves the same problem (vs the Riccati ODE)."""
    Q, R, QT, T, x0 = np.eye(2), np.eye(1), np.eye(2), 2.0, np.array([1.0, 0.0])
    t = np.linspace(0.0, T, 101)
    cost = quadratic_cost(double_integrator, Q, R, QT)
    start = sciode.Controls(t, np.zeros(t.size))
    bad = sciode.optimal_control(double_integrator, cost, x0, (0.0, T), start, method="sweep")
    assert not bad.success and "does not contract" in bad.message
    assert bad.nit < 30
    good = sciode.optimal_control(double_integrator, cost, x0, (0.0, T), start, tol=1e-8)
    U, _, _ = lqr_reference(A2, B2, Q, R, QT, T, x0, t)
    assert good.success and rel_err(good.controls.values, U) < grid_budget(t, U[:, 0])


# --- minimum-energy transfer -------------------------------------------------------------------


def min_energy_penalty(T, W):
    """x'' = u, (0, 0) -> near (1, 0), J = int u^2/2 + W/2 ((x1(T) - 1)^2 + x2(T)^2).

    Pontryagin: lambda_1 = alpha = W (x1(T) - 1), lambda_2(t) = beta + alpha (T - t)
    with beta = W x2(T), and u = -lambda_2 is linear in t, so
    x2(T) = -beta T - alpha T^2/2 and x1(T) = -beta T^2/2 - alpha T^3/3.  Returns
    (alpha, beta) from that 2x2 linear system; u(t) = -beta - alpha (T - t)."""
    M = np.array([[1 + W * T**3 / 3, W * T**2 / 2], [W * T**2 / 2, 1 + W * T]])
    return np.linalg.solve(M, [-W, 0.0])


@pytest.mark.parametrize("method, W, T", [("lbfgs", 1e4, 2.0), ("sweep", 1.0, 1.0)])
def test_minimum_energy_transfer(double_integrator, method, W, T):
    """The optimal u is linear in t, so the piecewise-linear grid holds it exactly
    (a coarse grid of 11 points has no discretization error): u, x and lambda
    against the closed form with penalty weight W to 1e-7.  W = 1e4 also
    approaches the hard constraint u = 6/T^2 - 12 t/T^3 (x(T) = (1, 0)) to O(1/W)
    (the sweep's map has a gain ~ W T^3, so it runs with W = T = 1, where it contracts)."""
    n = 11
    x1, x2 = double_integrator.states
    u = double_integrator.controls[0]
    cost = sciode.Cost(running=u**2 / 2, terminal=W / 2 * ((x1 - 1) ** 2 + x2**2))
    t = np.linspace(0.0, T, n)
    oc = sciode.optimal_control(double_integrator, cost, [0.0, 0.0], (0.0, T),
                                sciode.Controls(t, np.zeros(n)), method=method,
                                tol=1e-10 if method == "sweep" else 1e-9)
    assert oc.success, oc.message
    alpha, beta = min_energy_penalty(T, W)
    U = -beta - alpha * (T - t)
    X = np.column_stack([-beta * t**2 / 2 - alpha * (T * t**2 / 2 - t**3 / 6),
                         -beta * t - alpha * (T * t - t**2 / 2)])
    Lam = np.column_stack([np.full(n, alpha), beta + alpha * (T - t)])
    assert rel_err(oc.controls.values[:, 0], U) < 1e-7
    assert rel_err(oc.y, X) < 1e-7
    assert rel_err(oc.costate, Lam) < 1e-7
    if W > 100:
        hard = 6 / T**2 - 12 * t / T**3
        assert rel_err(oc.controls.values[:, 0], hard) < 10 / W
        assert rel_err(oc.controls.values[:, 0], hard) > 1e-2 / W  # the penalty is still visible


# --- bang-bang ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lbfgs", "sweep"])
def test_bang_bang_switch_time(method):
    """x' = x + u, |u| <= 1, J = int x dt - x(T)/2, T = 2.  H = x + lambda (x + u) is
    linear in u; lambda' = -1 - lambda, lambda(T) = -1/2 gives
    lambda(t) = -1 + exp(T - t)/2, so u = -1 while lambda > 0 and +1 after the
    switch t_s = T - ln 2 = 1.3069 (a grid point sits 0.0069 from it).  The
    switch of the answer (where w crosses 0) lies within one grid spacing of t_s;
    the costate and state match their closed forms away from the switch."""
    x, u = sp.symbols("x u")
    model = sciode.Model([x], [x + u], controls=[u], name="oc_bang_bang")
    T, x0 = 2.0, 0.5
    t = np.linspace(0.0, T, 41)
    h, ts = t[1] - t[0], T - np.log(2.0)
    oc = sciode.optimal_control(model, sciode.Cost(running=x, terminal=-x / 2), [x0], (0.0, T),
                                sciode.Controls(t, np.zeros(t.size)), bounds=(-1.0, 1.0),
                                method=method, tol=1e-9)
    assert oc.success, oc.message
    w = oc.controls.values[:, 0]
    k = int(np.flatnonzero(w > 0)[0])  # first node past the switch
    t_cross = t[k - 1] + (t[k] - t[k - 1]) * (0 - w[k - 1]) / (w[k] - w[k - 1])
    assert abs(t_cross - ts) < h
    far = np.abs(t - ts) > h
    assert np.all(w[far] == np.where(t[far] < ts, -1.0, 1.0))  # exactly on the bounds
    # lambda does not depend on u here: closed form to solver accuracy
    assert rel_err(oc.costate[:, 0], -1 + np.exp(T - t) / 2) < 1e-8
    # before the switch x' = x - 1 exactly (w = -1 on whole intervals)
    before = t < t[k - 1]
    assert rel_err(oc.y[before, 0], 1 + (x0 - 1) * np.exp(t[before])) < 1e-8
    # projected residual: 0 on the bounds with the right sign, |dH/du| = |lambda| elsewhere
    assert np.all(oc.dH_dw_residual[far] == 0)


# --- parameters and data -----------------------------------------------------------------------


def test_fit_params_jointly_with_controls():
    """x' = u + p, x(0) = 0, J = int (u^2 + c p^2)/2 + W/2 (x(T) - 1)^2.  The costate is
    constant, so u = v is constant and J = T (v^2 + c p^2)/2 + W/2 ((v + p) T - 1)^2:
    dJ/dv = dJ/dp = 0 give v = c p and p = W / (c + W (c + 1) T)."""
    x, u, p = sp.symbols("x u p")
    model = sciode.Model([x], [u + p], params=[p], controls=[u], name="oc_fit_param")
    c, W, T = 2.0, 1.0, 1.0
    cost = sciode.Cost(running=(u**2 + c * p**2) / 2, terminal=W / 2 * (x - 1) ** 2)
    t = np.linspace(0.0, T, 11)
    oc = sciode.optimal_control(model, cost, [0.0], (0.0, T), sciode.Controls(t, np.zeros(11)),
                                params=[0.0], fit_params=True, tol=1e-10)
    assert oc.success, oc.message
    p_star = W / (c + W * (c + 1) * T)
    assert oc.params["p"] == pytest.approx(p_star, rel=1e-7)
    assert np.allclose(oc.controls.values, c * p_star, rtol=1e-7, atol=0)
    fixed = sciode.optimal_control(model, cost, [0.0], (0.0, T), sciode.Controls(t, np.zeros(11)),
                                   params=[0.0], tol=1e-10)
    assert fixed.params == {"p": 0.0}
    assert fixed.cost > oc.cost + 1e-3  # fitting p lowers the cost: it is really free


def test_costate_with_data_is_the_tail_gradient():
    """x' = u with data at t = 0.5 and t = 1: lambda(t_k) = dJ_k/dx(t_k) with J_k the
    tail cost is  sum_{t_i >= t_k} (x(t_i) - d_i) / sigma^2  (dx(t_i)/dx(t_k) = 1), a jump
    at t = 0.5 included at t_k = 0.5 (left limit)."""
    x, u = sp.symbols("x u")
    model = sciode.Model([x], [u], controls=[u], name="oc_tracking")
    sigma = 0.5
    data = sciode.LeastSquares([0.5, 1.0], [1.0, 0.2], sigma=sigma)
    cost = sciode.Cost(running=u**2 / 2) + data
    t = np.linspace(0.0, 1.0, 21)
    oc = sciode.optimal_control(model, cost, [0.0], (0.0, 1.0), sciode.Controls(t, np.zeros(21)),
                                max_iter=3)  # any controls: this checks the costate's definition
    x_half, x_one = oc.y[10, 0], oc.y[20, 0]
    expected = np.where(t <= 0.5, (x_half - 1.0) + (x_one - 0.2), x_one - 0.2) / sigma**2
    assert abs(x_half - 1.0) > 0.1 and abs(x_one - 0.2) > 0.01  # both jumps are visible
    assert rel_err(oc.costate[:, 0], expected) < 1e-8


# --- failures ----------------------------------------------------------------------------------


def test_failed_trial_solve_is_a_rejected_point(scalar_lqr, monkeypatch):
    """A scripted failure of the second evaluation (the first trial point): L-BFGS-B
    backtracks, the count is reported, and the answer is unchanged."""
    model, cost, t, (U, _, _) = scalar_lqr
    real = oc_problem.ControlProblem.value_and_grad
    calls = {"n": 0}

    def flaky(self, controls, p, cost=None, y0=None, t_span=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise sciode.SolverError("forward pass failed (dopri5): planted")
        return real(self, controls, p, cost, y0, t_span)

    monkeypatch.setattr(oc_problem.ControlProblem, "value_and_grad", flaky)
    oc = sciode.optimal_control(model, cost, [SC["x0"]], (0.0, SC["T"]),
                                sciode.Controls(t, np.zeros(t.size)), tol=1e-8)
    assert oc.success and oc.n_failed_solves == 1 and "planted" in oc.message
    assert rel_err(oc.controls.values, U) < grid_budget(t, U[:, 0])


def test_failed_solves_are_never_a_silent_success(scalar_lqr, monkeypatch):
    model, cost, t, _ = scalar_lqr
    start = sciode.Controls(t, np.zeros(t.size))
    # at the start: nothing to descend from
    with pytest.raises(sciode.SolverError, match="controls0"):
        sciode.optimal_control(model, cost, [SC["x0"]], (0.0, SC["T"]), start, max_steps=3)
    with pytest.raises(sciode.SolverError, match="controls0"):
        sciode.optimal_control(model, cost, [SC["x0"]], (0.0, SC["T"]), start, max_steps=3,
                               method="sweep")
    # every solve after the first fails: L-BFGS-B cannot move, and the final trajectories fail
    real = oc_problem.ControlProblem.value_and_grad
    calls = {"n": 0}

    def broken(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] > 1:
            raise sciode.SolverError("planted")
        return real(self, *args, **kw)

    monkeypatch.setattr(oc_problem.ControlProblem, "value_and_grad", broken)
    oc = sciode.optimal_control(model, cost, [SC["x0"]], (0.0, SC["T"]), start)
    assert not oc.success and "planted" in oc.message
    assert np.isnan(oc.cost) and np.all(np.isnan(oc.costate))
    # the sweep: a failure at the second sweep stops it, returning the first iterate
    monkeypatch.setattr(oc_problem.ControlProblem, "value_and_grad", real)
    states = oc_trajectory.states
    sweeps = {"n": 0}

    def states_then_fail(prob, controls, p):
        sweeps["n"] += 1
        if sweeps["n"] == 2:
            raise sciode.SolverError("planted")
        return states(prob, controls, p)

    monkeypatch.setattr(oc_trajectory, "states", states_then_fail)
    oc = sciode.optimal_control(model, cost, [SC["x0"]], (0.0, SC["T"]), start, method="sweep")
    assert not oc.success and "planted" in oc.message and oc.nit == 1
    assert np.array_equal(oc.controls.values, start.values)


# --- bad input ---------------------------------------------------------------------------------


def test_bounds_forms():
    """The accepted forms of `bounds`: one pair for all, one pair per control, a
    mapping by name or symbol; None or +-inf for an open side."""
    x1, x2, u = sp.symbols("x1 x2 u")
    two = sciode.Model([x1, x2], [u, x2], controls=[u, sp.Symbol("v")], name="oc_two_controls")
    v = two.controls[1]
    cases = [((-1, 2), [-1, -1], [2, 2]),
             ([(-1, None), (0, np.inf)], [-1, 0], [np.inf, np.inf]),
             ({"v": (None, 3.0)}, [-np.inf, -np.inf], [np.inf, 3.0]),
             ({v: (0.5, 1.0), u: (-np.inf, 0.0)}, [-np.inf, 0.5], [0.0, 1.0]),
             (None, [-np.inf, -np.inf], [np.inf, np.inf])]
    for bounds, lo, hi in cases:
        got_lo, got_hi = oc_problem.control_bounds(bounds, two)
        assert np.array_equal(got_lo, lo) and np.array_equal(got_hi, hi), bounds


def test_bad_input_raises_clear_errors(scalar_lqr):
    model, cost, t, _ = scalar_lqr
    span, y0 = (0.0, SC["T"]), [SC["x0"]]
    start = sciode.Controls(t, np.zeros(t.size))

    def run(**kw):
        args = {"model": model, "cost": cost, "y0": y0, "t_span": span, "controls0": start}
        args.update(kw)
        return sciode.optimal_control(**args)

    with pytest.raises(sciode.ModelError, match="must be a sciode.Controls"):
        run(controls0=np.zeros((t.size, 1)))
    with pytest.raises(sciode.ModelError, match="2 columns"):
        run(controls0=sciode.Controls(t, np.zeros((t.size, 2))))
    with pytest.raises(sciode.ModelError, match="must start at t0"):
        run(controls0=sciode.Controls(np.linspace(0.0, 0.5, 11), np.zeros(11)))
    with pytest.raises(ValueError, match=r"`method` must be one of \['lbfgs', 'sweep'\]"):
        run(method="newton")
    with pytest.raises(ValueError, match="need lo < hi"):
        run(bounds=(1.0, -1.0))
    with pytest.raises(ValueError, match="must be a number or None"):
        run(bounds=("low", 1.0))
    with pytest.raises(ValueError, match="3 entries but the model has 1 control"):
        run(bounds=[(0, 1), (0, 1), (0, 1)])
    with pytest.raises(ValueError, match="not a control"):
        run(bounds={"v": (0, 1)})
    with pytest.raises(ValueError, match="outside its bounds"):
        run(controls0=sciode.Controls(t, np.full(t.size, 2.0)), bounds=(-1, 1))
    with pytest.raises(ValueError, match="t0 < t1"):
        run(t_span=(1.0, 0.0))
    with pytest.raises(ValueError, match="fit_params"):
        run(method="sweep", fit_params=True)
    with pytest.raises(ValueError, match="relaxation"):
        run(method="sweep", relaxation=0.0)
    with pytest.raises(ValueError, match="not a parameter"):
        run(fit_params=["k"])
    x = sp.Symbol("x")
    with pytest.raises(sciode.ModelError, match="declares no controls"):
        run(model=sciode.Model([x], [-x], name="oc_no_controls"), cost=sciode.Cost(terminal=x**2))


def test_sweep_needs_an_explicit_unique_minimizer_of_H():
    """Fails loudly where dH/dw = 0 has no unique explicit solution (u^3 + lambda = 0:
    three roots) or H is linear in u without bounds; lbfgs, which needs only the
    gradient, solves the quartic case: at the nodes u^3 = -lambda to O(h^2)."""
    x, u = sp.symbols("x u")
    model = sciode.Model([x], [-x + u], controls=[u], name="oc_quartic")
    quartic = sciode.Cost(running=(x**2 + u**4) / 4, terminal=x**2)
    t = np.linspace(0.0, 1.0, 41)
    start = sciode.Controls(t, np.zeros(t.size))
    with pytest.raises(ValueError, match="3 explicit solutions.*method='lbfgs'"):
        sciode.optimal_control(model, quartic, [1.0], (0.0, 1.0), start, method="sweep")
    with pytest.raises(ValueError, match="linear in control `u`.*finite `bounds`"):
        sciode.optimal_control(model, sciode.Cost(running=x**2 + u), [1.0], (0.0, 1.0), start,
                               method="sweep")
    oc = sciode.optimal_control(model, quartic, [1.0], (0.0, 1.0), start, tol=1e-8)
    assert oc.success, oc.message
    w, lam = oc.controls.values[:, 0], oc.costate[:, 0]
    assert np.max(np.abs(w)) > 0.3  # a nontrivial control
    assert rel_err(w**3, -lam) < 1e-3  # h = 0.025: the O(h^2) nodal error of lbfgs
