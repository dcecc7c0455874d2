"""``sciode.solve`` with the explicit Runge--Kutta methods.

Every problem has a closed form (or, for Lorenz, a tight SciPy reference).
Tolerances and their reasons:

* Convergence order: the slope of log(error) against log(h) over four step
  sizes in the asymptotic range (checked: above roundoff, below the
  pre-asymptotic bend) is within 0.3 of the method's order (brief).
* Adaptive accuracy is judged in tolerance units, RMS of
  ``err / (atol + rtol |y|)`` < 5 (scipy ``_ivp/tests/test_ivp.py``
  ``compute_error``); on the same problems SciPy's RK23/RK45/DOP853 land at the
  same values (bosh3 ~ 4 on the oscillator, as does RK23).
* Exact identities (stats counts, step sequences, the state at ``t0``) are
  compared exactly; values that only differ by summation order (the
  interpolant at ``theta = 1`` against the step's ``b`` weights) to 1e-13.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import sympy as sp
from scipy.integrate import solve_ivp

import sciode
from sciode.methods.tableaus import DOPRI5 as DOPRI5_TAB
from sciode.cpu import solvers
from sciode.cpu.status import MAX_STEPS, NONFINITE, STEP_UNDERFLOW
from sciode.methods.tableaus import EXPLICIT_TABLEAUS

ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dop853"]
ORDER = {"euler": 1, "midpoint": 2, "rk4": 4, "bosh3": 3, "dopri5": 5, "tsit5": 5, "dop853": 8}
#: one step that no error test rejects: run an adaptive method at fixed step h
HUGE_TOL = dict(rtol=1e10, atol=1e10)


def fixed_step(method, h):
    """Keyword arguments that make ``solve`` take steps of exactly ``h``."""
    if not EXPLICIT_TABLEAUS[method].adaptive:
        return dict(dt=h)
    return dict(first_step=h, max_step=h, **HUGE_TOL)


def tol_units(y, exact, rtol, atol):
    """RMS of ``err / (atol + rtol |y|)`` (scipy ``compute_error``)."""
    return float(np.sqrt(np.mean(((y - exact) / (atol + rtol * np.abs(exact))) ** 2)))


def reached_t(msg):
    """The time a failure message names (``... at t=<float>``)."""
    m = re.search(r"t=([-+0-9.eE]+)", msg)
    assert m, f"no 't=' in message {msg!r}"
    return float(m.group(1))


# -- models (built once per session) -------------------------------------------


@pytest.fixture(scope="session")
def rotation():
    """``x' = -(1+t) y, y' = (1+t) x``: angle ``t + t^2/2`` (non-autonomous)."""
    x, y, t = sp.symbols("x y t")
    return sciode.Model(states=[x, y], rhs=[-(1 + t) * y, (1 + t) * x], name="rotation_t")


@pytest.fixture(scope="session")
def decay():
    y, k = sp.symbols("y k")
    return sciode.Model(states=[y], rhs=[-k * y], params=[k], name="decay")


@pytest.fixture(scope="session")
def harmonic():
    x, v, w = sp.symbols("x v w")
    return sciode.Model(states=[x, v], rhs=[v, -w**2 * x], params=[w], name="harmonic")


@pytest.fixture(scope="session")
def logistic():
    y, r = sp.symbols("y r")
    return sciode.Model(states=[y], rhs=[r * y * (1 - y)], params=[r], name="logistic")


@pytest.fixture(scope="session")
def lorenz_model():
    x, y, z = sp.symbols("x y z")
    s, r, b = sp.symbols("sigma rho beta")
    return sciode.Model(states=[x, y, z], rhs=[s * (y - x), x * (r - z) - y, x * y - b * z],
                        params=[s, r, b], name="lorenz_solve")


@pytest.fixture(scope="session")
def blowup():
    """``y' = y^2``, ``y(0) = 1``: ``y = 1/(1 - t)`` blows up at ``t = 1``."""
    y = sp.Symbol("y")
    return sciode.Model(states=[y], rhs=[y**2], name="blowup")


@pytest.fixture(scope="session")
def sqrt_model():
    """``x' = -1, y' = sqrt(x)``: the rhs is NaN once ``x < 0``, i.e. for ``t > x0``."""
    x, y = sp.symbols("x y")
    return sciode.Model(states=[x, y], rhs=[-1, sp.sqrt(x)], name="sqrt_nan")


@pytest.fixture(scope="session")
def integrator():
    """``x' = u(t)``: the state is the integral of the control."""
    x, u = sp.symbols("x u")
    return sciode.Model(states=[x], rhs=[u], controls=[u], name="integrator")


LORENZ_P = [10.0, 28.0, 8.0 / 3.0]

# closed forms: (fixture name, y0, params, t_span, exact(t) -> (m, n), atol / rtol)
# The oscillator's components cross zero, where a relative scale means nothing;
# its atol is at the amplitude scale (1) and the span one period.
CLOSED = {
    "decay": ("decay", [1.0], [0.7], (0.0, 10.0),
              lambda t: np.exp(-0.7 * t)[:, None], 1e-2),
    "harmonic": ("harmonic", [1.0, 0.0], [2.0], (0.0, math.pi),
                 lambda t: np.stack([np.cos(2 * t), -2 * np.sin(2 * t)], 1), 1.0),
    "logistic": ("logistic", [0.1], [1.5], (0.0, 10.0),
                 lambda t: (1.0 / (1.0 + 9.0 * np.exp(-1.5 * t)))[:, None], 1e-2),
}


# -- convergence order -----------------------------------------------------------

ROT_T1 = 4.0
ROT_EXACT = np.array([math.cos(ROT_T1 + ROT_T1**2 / 2), math.sin(ROT_T1 + ROT_T1**2 / 2)])
#: step sizes in each method's asymptotic range: errors stay above ~1e-12
#: (roundoff) and tsit5 starts below h = 0.1, where its 6th-order terms still
#: dominate (measured local slope 5.7 there).
STEPS = {
    "euler": [0.01, 0.005, 0.0025, 0.00125],
    "midpoint": [0.02, 0.01, 0.005, 0.0025],
    "rk4": [0.1, 0.05, 0.025, 0.0125],
    "bosh3": [0.04, 0.02, 0.01, 0.005],
    "dopri5": [0.1, 0.05, 0.025, 0.0125],
    "tsit5": [0.05, 0.025, 0.0125, 0.00625],
    "dop853": [0.4, 0.2, 0.1, 0.05],
}


@pytest.mark.parametrize("method", sorted(EXPLICIT_TABLEAUS))
def test_convergence_order(rotation, method):
    errs = []
    for h in STEPS[method]:
        sol = sciode.solve(rotation, [1.0, 0.0], (0.0, ROT_T1), method=method, **fixed_step(method, h))
        assert sol.success, sol.message
        # a genuine fixed-step run: every step taken, none rejected
        assert sol.stats["nrejected"] == 0
        assert sol.stats["nsteps"] == round(ROT_T1 / h)
        errs.append(np.linalg.norm(sol.y[-1] - ROT_EXACT))
    slope = np.polyfit(np.log(STEPS[method]), np.log(errs), 1)[0]
    assert abs(slope - ORDER[method]) < 0.3, (method, slope, errs)


def test_every_explicit_method_is_covered():
    assert set(STEPS) == set(EXPLICIT_TABLEAUS) == set(ORDER)


# -- adaptive accuracy -------------------------------------------------------------

RTOLS = [1e-4, 1e-6, 1e-8, 1e-10]


@pytest.mark.parametrize("problem", sorted(CLOSED))
@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_error_in_tolerance_units(request, problem, method):
    name, y0, p, span, exact, arat = CLOSED[problem]
    model = request.getfixturevalue(name)
    max_errs = []
    for rtol in RTOLS:
        atol = arat * rtol
        sol = sciode.solve(model, y0, span, params=p, method=method, rtol=rtol, atol=atol)
        assert sol.success, sol.message
        ex = exact(sol.t)
        assert tol_units(sol.y, ex, rtol, atol) < 5.0, (rtol, tol_units(sol.y, ex, rtol, atol))
        max_errs.append(np.abs(sol.y - ex).max())
    # tolerance proportionality: 100x tighter rtol buys at least 10x accuracy
    ratios = np.array(max_errs[:-1]) / np.array(max_errs[1:])
    assert np.all(ratios > 10.0), (max_errs, ratios)


def test_lorenz_against_tight_scipy_reference(lorenz_model):
    """Chaos: the largest Lyapunov exponent (~0.9) amplifies local errors by about
    e^(0.9 * 10) ~ 8e3 over [0, 10], so per-step errors ~1e-10 may grow to ~1e-6;
    1e-4 relative leaves that margin and is still far below the O(1) error of a
    wrong trajectory. The reference (DOP853 at 1e-13) agrees with a 1e-12 run to
    ~2e-12 relative, so its own error is negligible."""
    def f(t, u):
        s, r, b = LORENZ_P
        return [s * (u[1] - u[0]), u[0] * (r - u[2]) - u[1], u[0] * u[1] - b * u[2]]

    ref = solve_ivp(f, (0.0, 10.0), [1.0, 1.0, 1.0], method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]
    for method in ADAPTIVE:
        sol = sciode.solve(lorenz_model, [1.0, 1.0, 1.0], (0.0, 10.0), params=LORENZ_P,
                           method=method, rtol=1e-10, atol=1e-10)
        assert sol.success, sol.message
        rel = np.linalg.norm(sol.y[-1] - ref) / np.linalg.norm(ref)
        assert rel < 1e-4, (method, rel)


# -- backward integration ----------------------------------------------------------


@pytest.mark.parametrize("method", ADAPTIVE + ["rk4"])
def test_backward_matches_forward_closed_form(decay, harmonic, method):
    k = 0.7
    te = np.linspace(3.0, 0.0, 13)  # descending: the direction of integration
    kw = dict(dt=0.01) if method == "rk4" else dict(rtol=1e-8, atol=1e-10)
    sol = sciode.solve(decay, [math.exp(-3 * k)], (3.0, 0.0), params=[k], t_eval=te, method=method, **kw)
    assert sol.success, sol.message
    np.testing.assert_array_equal(sol.t, te)
    # rk4 at dt = 0.01: global error ~ t (k dt)^4 / 120 ~ 1e-11, within the same units
    assert tol_units(sol.y[:, 0], np.exp(-k * te), 1e-8, 1e-10) < 5.0
    # a whole period backward on the oscillator: steps are negative
    sol = sciode.solve(harmonic, [1.0, 0.0], (math.pi, 0.0), params=[2.0], method=method, **kw)
    assert sol.success and sol.t[-1] == 0.0
    assert np.all(np.diff(sol.t) < 0)
    np.testing.assert_allclose(sol.y[-1], [1.0, 0.0], atol=1e-6)  # ~100x rtol, 1 period


# -- t_eval and dense output -------------------------------------------------------


def _logistic_run(logistic, method, t_eval=None, dense=False, rtol=1e-7, atol=1e-9):
    return sciode.solve(logistic, [0.1], (0.0, 10.0), params=[1.5], method=method, rtol=rtol,
                        atol=atol, t_eval=t_eval, dense=dense)


TE = np.linspace(0.0, 10.0, 397)  # includes t0 and t1 exactly; off-step elsewhere


@pytest.mark.parametrize("method", ADAPTIVE)
@pytest.mark.parametrize("problem", ["logistic", "harmonic"])
def test_t_eval_dense_values_within_tolerance(request, method, problem):
    name, y0, p, span, exact, arat = CLOSED[problem]
    model = request.getfixturevalue(name)
    te = np.linspace(span[0], span[1], 397)
    for rtol in (1e-5, 1e-8):
        atol = arat * rtol
        sol = sciode.solve(model, y0, span, params=p, method=method, rtol=rtol, atol=atol, t_eval=te)
        assert sol.success
        steps = sol.extra["raw"].ts
        assert np.isin(te[1:-1], steps).mean() < 0.05  # genuinely off-step points
        assert tol_units(sol.y, exact(te), rtol, atol) < 5.0


@pytest.mark.parametrize("method", ADAPTIVE + ["rk4"])
def test_t_eval_is_dense_output_not_step_shortening(logistic, method):
    kw = dict(dt=0.05) if method == "rk4" else {}
    plain = sciode.solve(logistic, [0.1], (0.0, 10.0), params=[1.5], method=method, **kw)
    with_te = sciode.solve(logistic, [0.1], (0.0, 10.0), params=[1.5], method=method, t_eval=TE,
                           dense=True, **kw)
    # same steps, bit for bit
    np.testing.assert_array_equal(with_te.extra["raw"].ts, plain.t)
    np.testing.assert_array_equal(with_te.extra["raw"].zs, plain.y)
    for key in ("nsteps", "naccepted", "nrejected"):
        assert with_te.stats[key] == plain.stats[key]
    tab = EXPLICIT_TABLEAUS[method]
    # only DOP853's extra dense stages cost evaluations (3 per step with dense=True)
    extra = tab.s_extra * with_te.stats["naccepted"]
    assert with_te.stats["nfev"] == plain.stats["nfev"] + extra
    # t0 is served exactly; t1 from the interpolant at theta=1, which equals the
    # step's b-weighted update up to summation order (P row sums == b to 1e-13)
    assert with_te.t[0] == 0.0 and with_te.t[-1] == 10.0
    np.testing.assert_array_equal(with_te.y[0], [0.1])
    np.testing.assert_allclose(with_te.y[-1], plain.y[-1], rtol=1e-13)
    # sol.dense(t) is the same interpolant the loop used for t_eval
    np.testing.assert_allclose(with_te.dense(TE), with_te.y, rtol=1e-13, atol=1e-15)


def test_dop853_extra_stages_only_for_steps_with_output(logistic):
    """Without ``dense=True`` the loop computes DOP853's 3 extra stages only in steps
    that hold a t_eval point: exactly 3 evaluations per such step."""
    plain = _logistic_run(logistic, "dop853")
    te = np.array([0.0, 0.05, 0.051, 4.3, 9.999, 10.0])
    sol = _logistic_run(logistic, "dop853", t_eval=te)
    ts = plain.t
    steps_with_output = sum(np.any((te > ts[k]) & (te <= ts[k + 1])) for k in range(ts.size - 1))
    assert sol.stats["nfev"] == plain.stats["nfev"] + 3 * steps_with_output
    assert tol_units(sol.y[:, 0], 1.0 / (1.0 + 9.0 * np.exp(-1.5 * te)), 1e-7, 1e-9) < 5.0


# -- controls ------------------------------------------------------------------------

GRID = np.array([0.0, 0.3, 1.0, 1.7, 2.0, 3.1, 4.0])
WVALS = np.array([0.0, 2.0, -1.0, 0.5, 3.0, -2.0, 1.0])


def _integral_of_interpolant(t):
    """Exact integral of the piecewise-linear interpolant from 0 to each ``t``."""
    out = []
    for tt in np.atleast_1d(t):
        knots = np.concatenate([GRID[GRID < tt], [tt]])
        vals = np.interp(knots, GRID, WVALS)
        out.append(np.sum(np.diff(knots) * (vals[1:] + vals[:-1]) / 2.0))
    return np.array(out)


def test_controls_integrate_to_exact_integral(integrator):
    """Each kink of ``u`` is a jump in ``x''``: a step across one is only O(h^2)
    accurate, and the error estimate under-reports it (SciPy's RK45 with np.interp:
    5e-9 at 1e-10).  Adaptive steps therefore land on the control grid points; in
    between, ``x`` is a quadratic that dopri5 integrates exactly, so the result is
    exact to roundoff even at a loose tolerance, with no rejected step."""
    controls = sciode.Controls(GRID, WVALS)
    te = np.linspace(0.0, 4.0, 41)
    exact = _integral_of_interpolant(te)
    sol = sciode.solve(integrator, [0.0], (0.0, 4.0), controls=controls, t_eval=te, rtol=1e-6, atol=1e-9)
    assert sol.success, sol.message
    assert np.abs(sol.y[:, 0] - exact).max() < 1e-12
    assert sol.stats["nrejected"] == 0
    full = sciode.solve(integrator, [0.0], (0.0, 4.0), controls=controls, rtol=1e-6, atol=1e-9)
    assert set(GRID[(GRID > 0) & (GRID < 4)]) <= set(full.t)  # every kink is a step boundary


def test_controls_restart_at_grid_points_is_exact(integrator):
    """Workaround for the kinks: integrate grid segment by grid segment. Within one
    segment ``x`` is a quadratic, which dopri5 integrates exactly (up to roundoff)."""
    controls = sciode.Controls(GRID, WVALS)
    x = 0.0
    for a, b in zip(GRID[:-1], GRID[1:]):
        sol = sciode.solve(integrator, [x], (a, b), controls=controls, rtol=1e-6, atol=1e-9)
        assert sol.success and sol.stats["nrejected"] == 0
        x = sol.y[-1, 0]
    assert abs(x - _integral_of_interpolant(4.0)[0]) < 1e-13


# -- failure modes ---------------------------------------------------------------------


@pytest.mark.parametrize("method", ADAPTIVE)
def test_blowup_reports_where(blowup, method):
    sol = sciode.solve(blowup, [1.0], (0.0, 2.0), method=method)
    assert not sol.success and sol.status in (STEP_UNDERFLOW, NONFINITE)
    assert "underflow" in sol.message or "non-finite" in sol.message
    t_fail = reached_t(sol.message)
    assert abs(t_fail - 1.0) < 1e-3 and t_fail == sol.t_reached
    # what it does return is the true solution (not garbage): ends at t_reached
    assert sol.t[-1] == sol.t_reached
    early = sol.t < 0.9
    np.testing.assert_allclose(sol.y[early, 0], 1.0 / (1.0 - sol.t[early]), rtol=1e-4)


def test_huge_finite_derivative_starts_without_dividing_by_zero():
    """``y' = c`` with ``c = 1e300``: ``|f| / (atol + rtol |y|)`` overflows its
    square, so Hairer's starting-step norm is infinite; the loop used to divide
    by the resulting zero step (a ``ZeroDivisionError`` out of compiled code).
    Now it starts small and follows ``y = 1 + c t`` (every tableau is exact on
    a constant right-hand side)."""
    y, c = sp.symbols("y c")
    model = sciode.Model(states=[y], rhs=[c], params=[c], name="huge_constant_rate")
    sol = sciode.solve(model, [1.0], (0.0, 1.0), [1e300], t_eval=[0.0, 0.5, 1.0])
    assert sol.success, sol.message
    np.testing.assert_allclose(sol.y[:, 0], [1.0, 0.5e300, 1e300], rtol=1e-12)


@pytest.mark.parametrize("method", ["dopri5", "dop853", "kvaerno5", "rodas4"])
def test_first_step_is_never_below_the_resolution_of_t(method):
    """A component that starts at zero with a huge rate (a costate sweep's
    gradient quadrature, PEtab Boehm at a random start: rates ~1e12, atol
    1e-12) beside a large one: Hairer's starting-step estimate
    ``0.01 d0 / d1`` is then ~1e-18, far below ``eps t`` at ``t0 = 240``, and
    the solve used to end as a step-size underflow before its first trial.
    The first step is now floored at CVODES's ``100 eps max(|t0|, |t1|)``
    (the error test shortens it if it must) and the solve follows the closed
    form ``y1 = a e^{-k s}``, ``y2 = c a (1 - e^{-k s}) / k``, ``s = t - t0``."""
    model = _quadrature_model()
    a, kv, cv, t0, t1 = 1e6, 0.01, 1e6, 240.0, 300.0
    ts = np.array([t0, 250.0, t1])
    sol = sciode.solve(model, [a, 0.0], (t0, t1), [kv, cv], t_eval=ts, method=method,
                       rtol=1e-8, atol=1e-12)
    assert sol.success, sol.message
    assert sol.method == method  # the name, for stiff methods too (not the loop's tuple)
    e = np.exp(-kv * (ts - t0))
    exact = np.stack([a * e, cv * a * (1.0 - e) / kv], axis=1)
    np.testing.assert_allclose(sol.y, exact, rtol=1e-6)


_QUAD = {}


def _quadrature_model():
    if "m" not in _QUAD:
        y1, y2, k, c = sp.symbols("y1 y2 k c")
        _QUAD["m"] = sciode.Model(states=[y1, y2], rhs=[-k * y1, c * y1], params=[k, c],
                                  name="huge_quadrature")
    return _QUAD["m"]


def test_blowup_fixed_step_is_nonfinite(blowup):
    sol = sciode.solve(blowup, [1.0], (0.0, 2.0), method="rk4", dt=0.01)
    assert not sol.success and sol.status == NONFINITE and "non-finite" in sol.message
    assert 1.0 <= reached_t(sol.message) < 1.1  # rk4 overshoots the pole by a few steps


def test_max_steps(lorenz_model):
    sol = sciode.solve(lorenz_model, [1.0, 1.0, 1.0], (0.0, 10.0), params=LORENZ_P, max_steps=10)
    assert not sol.success and sol.status == MAX_STEPS
    assert "max_steps=10" in sol.message
    assert reached_t(sol.message) == sol.t_reached < 10.0
    assert sol.stats["nsteps"] == 10


@pytest.mark.parametrize("method", ["dopri5", "dop853", "rk4"])
def test_nan_rhs_is_nonfinite(sqrt_model, method):
    kw = dict(dt=0.3) if method == "rk4" else {}
    te = np.linspace(0.0, 2.0, 21)
    sol = sciode.solve(sqrt_model, [1.0, 0.0], (0.0, 2.0), method=method, t_eval=te, **kw)
    assert not sol.success and sol.status == NONFINITE
    assert "non-finite" in sol.message
    t_fail = reached_t(sol.message)
    # adaptive: shrinks steps against the NaN down to t=1; rk4's stages from
    # t=0.9 with dt=0.3 evaluate sqrt(x < 0)
    assert (abs(t_fail - 1.0) < 1e-6) if method != "rk4" else (t_fail == pytest.approx(0.9))
    # only the t_eval points actually reached come back, all finite and right
    assert np.all(sol.t <= t_fail) and np.all(np.isfinite(sol.y))
    # y = 2/3 (1 - (1-t)^1.5): adaptive runs meet the default tolerances; rk4 at
    # dt = 0.3 meets y'' ~ (1-t)^-0.5 near t = 1 and is only ~2e-4 accurate there
    atol = 1e-3 if method == "rk4" else 1e-6
    np.testing.assert_allclose(sol.y[:, 1], (1 - (1 - sol.t) ** 1.5) * 2 / 3, rtol=0, atol=atol)



def test_backward_failure_on_first_step_returns_no_garbage(sqrt_model):
    """``x0 < 0``: the rhs is NaN at t0 already; integrating backward, only the
    t_eval point at t0 was reached."""
    sol = sciode.solve(sqrt_model, [-1.0, 0.0], (0.0, -1.0), t_eval=[0.0, -0.5, -1.0])
    assert not sol.success and sol.status == NONFINITE
    np.testing.assert_array_equal(sol.t, [0.0])
    np.testing.assert_array_equal(sol.y, [[-1.0, 0.0]])


def test_raise_on_failure(lorenz_model, blowup):
    with pytest.raises(sciode.SolverError, match="max_steps=10"):
        sciode.solve(lorenz_model, [1.0, 1.0, 1.0], (0.0, 10.0), params=LORENZ_P, max_steps=10,
                     raise_on_failure=True)
    with pytest.raises(sciode.SolverError, match=r"t=1\.0"):
        sciode.solve(blowup, [1.0], (0.0, 2.0), raise_on_failure=True)


# -- invalid arguments ---------------------------------------------------------------------


def _bad_calls(decay, integrator):
    ok = dict(model=decay, y0=[1.0], t_span=(0.0, 1.0), params=[0.5])
    return {
        "rtol zero": (dict(ok, rtol=0.0), ValueError, r"rtol.*positive"),
        "rtol negative": (dict(ok, rtol=-1e-6), ValueError, r"rtol.*positive"),
        "atol negative": (dict(ok, atol=-1e-9), ValueError, r"atol.*positive"),
        "t_eval outside": (dict(ok, t_eval=[0.0, 1.5]), ValueError, r"t_eval.*within.*1\.5"),
        "t_eval outside backward": (dict(ok, t_span=(1.0, 0.0), t_eval=[-0.1]), ValueError, "within"),
        "t_eval unsorted": (dict(ok, t_eval=[0.0, 0.7, 0.3]), ValueError, r"t_eval.*sorted"),
        "t_eval ascending backward": (dict(ok, t_span=(1.0, 0.0), t_eval=[0.2, 0.8]), ValueError,
                                      "direction of integration"),
        "y0 wrong length": (dict(ok, y0=[1.0, 2.0]), sciode.ModelError, "y0"),
        "y0 non-finite": (dict(ok, y0=[np.nan]), sciode.ModelError, "y0"),
        "euler without dt": (dict(ok, method="euler"), ValueError, r"fixed-step.*dt"),
        "rk4 without dt": (dict(ok, method="rk4"), ValueError, r"fixed-step.*dt"),
        "rk4 negative dt": (dict(ok, method="rk4", dt=-0.1), ValueError, "dt"),
        "unknown method": (dict(ok, method="rk45"), ValueError,
                           r"'euler'.*'rk4'.*'bosh3'.*'dopri5'.*'tsit5'.*'dop853'.*'rk45'"),
        "params missing": (dict(ok, params=None), sciode.ModelError, "params"),
        "params wrong length": (dict(ok, params=[0.5, 1.0]), sciode.ModelError, "params"),
        "controls missing": (dict(model=integrator, y0=[0.0], t_span=(0.0, 1.0)), sciode.ModelError,
                             "controls"),
        "max_steps zero": (dict(ok, max_steps=0), ValueError, "max_steps"),
        "t_span infinite": (dict(ok, t_span=(0.0, np.inf)), ValueError, "t_span"),
        "first_step negative": (dict(ok, first_step=-0.1), ValueError, "first_step"),
        "max_step zero": (dict(ok, max_step=0.0), ValueError, "max_step"),
    }


BAD = ["rtol zero", "rtol negative", "atol negative", "t_eval outside", "t_eval outside backward",
       "t_eval unsorted", "t_eval ascending backward", "y0 wrong length", "y0 non-finite",
       "euler without dt", "rk4 without dt", "rk4 negative dt", "unknown method", "params missing",
       "params wrong length", "controls missing", "max_steps zero", "t_span infinite",
       "first_step negative", "max_step zero"]


@pytest.mark.parametrize("case", BAD)
def test_invalid_arguments_raise(decay, integrator, case):
    kwargs, exc, pattern = _bad_calls(decay, integrator)[case]
    with pytest.raises(exc, match=pattern):
        sciode.solve(**kwargs)


def test_first_step_is_capped_by_max_step(decay):
    sol = sciode.solve(decay, [1.0], (0.0, 1.0), params=[0.5], first_step=0.5, max_step=0.1)
    assert sol.success and np.all(np.abs(np.diff(sol.t)) <= 0.1 * (1 + 1e-15))


# -- stats ----------------------------------------------------------------------------------


def _expected_nfev(method, stats, hinit, dense_steps=0):
    """Initial f(t0, y0), Hairer's hinit probe (automatic first step only), s - 1 stages
    per attempted step, f(t, y_new) per accepted step unless FSAL, extra stages."""
    tab = EXPLICIT_TABLEAUS[method]
    return (1 + hinit + (tab.s - 1) * stats["nsteps"] + (0 if tab.fsal else stats["naccepted"])
            + tab.s_extra * dense_steps)


@pytest.mark.parametrize("method", sorted(EXPLICIT_TABLEAUS))
def test_stats_are_consistent(lorenz_model, method):
    kw = dict(dt=1e-3) if not EXPLICIT_TABLEAUS[method].adaptive else dict(rtol=1e-8, atol=1e-8)
    sol = sciode.solve(lorenz_model, [1.0, 1.0, 1.0], (0.0, 2.0), params=LORENZ_P, method=method, **kw)
    st = sol.stats
    assert sol.success and set(st) >= {"nfev", "nsteps", "naccepted", "nrejected"}
    assert st["naccepted"] + st["nrejected"] == st["nsteps"]
    assert st["naccepted"] == sol.t.size - 1
    hinit = 1 if EXPLICIT_TABLEAUS[method].adaptive else 0
    assert st["nfev"] == _expected_nfev(method, st, hinit)


def test_dopri5_nfev_is_six_per_step_plus_two(logistic):
    sol = _logistic_run(logistic, "dopri5")
    assert sol.stats["nfev"] == 6 * sol.stats["nsteps"] + 2
    # with a given first step there is no hinit probe
    sol = sciode.solve(logistic, [0.1], (0.0, 10.0), params=[1.5], first_step=0.01)
    assert sol.stats["nfev"] == 6 * sol.stats["nsteps"] + 1


def test_stats_with_rejected_steps(lorenz_model, decay):
    """Two cases with rejections: DOP853 on Lorenz at 1e-8 (about 50 rejected of ~250;
    SciPy's DOP853 spends the same 2978 evaluations), and a first step of 1.0 on a
    decay at rtol 1e-10 (local error ~ (k h)^6 / 720 ~ 2e-5 >> 1e-10: rejected)."""
    sol = sciode.solve(lorenz_model, [1.0, 1.0, 1.0], (0.0, 10.0), params=LORENZ_P, method="dop853",
                       rtol=1e-8, atol=1e-8)
    st = sol.stats
    assert sol.success and st["nrejected"] >= 10
    assert st["naccepted"] + st["nrejected"] == st["nsteps"]
    assert st["nfev"] == 12 * st["nsteps"] + 2
    sol = sciode.solve(decay, [1.0], (0.0, 5.0), params=[1.0], first_step=1.0, rtol=1e-10, atol=1e-12)
    st = sol.stats
    assert sol.success and st["nrejected"] >= 1 and sol.t[1] < 1.0
    assert st["nfev"] == 6 * st["nsteps"] + 1
    assert abs(sol.y[-1, 0] - math.exp(-5.0)) < 1e-11  # tolerance units: ~10 * rtol * y


# -- kernel reuse ----------------------------------------------------------------------------


def test_new_parameter_values_do_not_recompile(decay):
    from sciode.codegen import model_kernels

    a = sciode.solve(decay, [1.0], (0.0, 1.0), params=[0.5])
    b = sciode.solve(decay, [2.0], (0.0, 3.0), params={"k": 2.0}, rtol=1e-9, t_eval=[0.0, 1.0])
    assert abs(a.y[-1, 0] - math.exp(-0.5)) < 1e-6 and abs(b.y[-1, 0] - 2 * math.exp(-2.0)) < 1e-8
    assert len(model_kernels(decay)["rhs"].signatures) == 1
    assert len(solvers.entry("forward", solvers.rk_method(DOPRI5_TAB)).signatures) == 1
