"""Stiff methods (``rodas4``, ``rodas5``, ``kvaerno5``) and their linear algebra.

References are closed forms (``expm`` for linear systems) or SciPy's Radau
solved far tighter than the method under test, on right-hand sides and exact
Jacobians written by hand in NumPy below (``*_fun``): a reference shares no
code with sciode, so a fault in the generated kernels cannot move it along
with what it checks (issue 11). Accuracy is judged in tolerance units as scipy
does (``compute_error``): RMS of ``err / (atol + rtol |y_ref|)``. A tolerance
of 5 such units would be scipy's; stiff problems with long transients
accumulate global error over many steps, so the bounds below say why they
are larger where they are.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import sympy as sp
from scipy.integrate import solve_ivp

import sciode
from sciode.codegen import model_kernels
from sciode.cpu import linalg, solvers, stiff
from sciode.cpu.status import MAX_STEPS, NONFINITE, SINGULAR
from validation.independent.engine import complex_step_jacobian
from validation.independent.stiff_set import robertson as robertson_fun

METHODS = ["rodas4", "rodas5", "kvaerno5"]
ORDER = {"rodas4": 4, "rodas5": 5, "kvaerno5": 5}


def tol_units(y, y_ref, rtol, atol):
    """RMS of the error in units of the requested tolerance."""
    return float(np.sqrt(np.mean(((y - y_ref) / (atol + rtol * np.abs(y_ref))) ** 2)))


# --- hand-written references (NumPy only: no sciode kernels) --------------------------


def vdp_fun(mu):
    """``f``, ``J`` of the ``vdp`` fixture: ``x' = v``, ``v' = mu (1 - x^2) v - x``."""

    def f(t, y):
        x, v = y
        return np.array([v, mu * (1.0 - x * x) * v - x])

    def J(t, y):
        x, v = y
        return np.array([[0.0, 1.0], [-2.0 * mu * x * v - 1.0, mu * (1.0 - x * x)]])

    return f, J


def bruss_fun(N, A, B, alpha):
    """``f``, ``J`` of ``brusselator(N)`` (states ``[u_1..u_N, v_1..v_N]``, boundary u = 1, v = 3)."""
    c = alpha * (N + 1) ** 2
    off = np.eye(N, k=1) + np.eye(N, k=-1)

    def second_difference(w, edge):
        """``w[i-1] - 2 w[i] + w[i+1]`` with ``w[0] = w[N+1] = edge``."""
        d = -2.0 * w
        d[1:] += w[:-1]
        d[:-1] += w[1:]
        d[0] += edge
        d[-1] += edge
        return d

    def f(t, y):
        u, v = y[:N], y[N:]
        fu = A + u * u * v - (B + 1.0) * u + c * second_difference(u, 1.0)
        fv = B * u - u * u * v + c * second_difference(v, 3.0)
        return np.concatenate([fu, fv])

    def J(t, y):
        u, v = y[:N], y[N:]
        return np.block([[np.diag(2.0 * u * v - (B + 1.0) - 2.0 * c) + c * off, np.diag(u * u)],
                         [np.diag(B - 2.0 * u * v), np.diag(-u * u - 2.0 * c) + c * off]])

    return f, J


def raw_solve(model, y0, t_span, params, method, **kw):
    """Call a stiff runner directly (for its internal options ``dt`` and ``linalg``)."""
    mk = model_kernels(model)
    rtol = kw.pop("rtol", 1e-6)
    atol = np.full(model.n_states, kw.pop("atol", 1e-9))
    te = np.ascontiguousarray(kw.pop("t_eval", np.zeros(0)), dtype=float)
    runner = {"rodas4": stiff.run_rodas4, "rodas5": stiff.run_rodas5,
              "kvaerno5": stiff.run_kvaerno5}[method]
    return runner(
        mk, np.asarray(params, dtype=float), None, np.asarray(y0, dtype=float), *t_span, te,
        rtol, atol, 0.0, np.inf, kw.pop("max_steps", 100_000), kw.pop("dense", False), **kw)


# --- models ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def forced():
    """``y' = -lam (y - sin t) + cos t``: ``y = sin t + (y0) exp(-lam t)`` (non-autonomous)."""
    y, t, lam = sp.symbols("y t lam")
    return sciode.Model(states=[y], rhs=[-lam * (y - sp.sin(t)) + sp.cos(t)], params=[lam], t=t,
                        name="forced")


def forced_exact(t, lam, y0=1.0):
    return np.sin(t) + y0 * np.exp(-lam * np.asarray(t))


@pytest.fixture(scope="session")
def robertson():
    y1, y2, y3 = sp.symbols("y1 y2 y3")
    k1, k2, k3 = sp.symbols("k1 k2 k3")
    return sciode.Model(states=[y1, y2, y3],
                        rhs=[-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2],
                        params=[k1, k2, k3], name="robertson")


@pytest.fixture(scope="session")
def vdp():
    x, v, mu = sp.symbols("x v mu")
    return sciode.Model(states=[x, v], rhs=[v, mu * (1 - x**2) * v - x], params=[mu], name="vdp")


LINEAR_A = np.array([[-5000.5, 4999.5], [4999.5, -5000.5]])  # eigenvalues -1 and -1e4


@pytest.fixture(scope="session")
def linear_stiff():
    y = sp.symbols("y0:2")
    rhs = [sum(sp.Float(LINEAR_A[i, j]) * y[j] for j in range(2)) for i in range(2)]
    return sciode.Model(states=list(y), rhs=rhs, params=[], name="linear_stiff")


def brusselator(N):
    """Hairer's 1-D Brusselator (BRUSS), states block-wise ``[u_1..u_N, v_1..v_N]``."""
    u = sp.symbols(f"u0:{N}")
    v = sp.symbols(f"v0:{N}")
    A, B, alpha = sp.symbols("A B alpha")
    c = alpha * (N + 1) ** 2
    ue = [sp.Integer(1), *u, sp.Integer(1)]
    ve = [sp.Integer(3), *v, sp.Integer(3)]
    fu = [A + u[i] ** 2 * v[i] - (B + 1) * u[i] + c * (ue[i] - 2 * u[i] + ue[i + 2]) for i in range(N)]
    fv = [B * u[i] - u[i] ** 2 * v[i] + c * (ve[i] - 2 * v[i] + ve[i + 2]) for i in range(N)]
    return sciode.Model(states=[*u, *v], rhs=fu + fv, params=[A, B, alpha], name=f"bruss{N}")


def bruss_y0(N):
    x = np.arange(1, N + 1) / (N + 1)
    return np.r_[1 + np.sin(2 * np.pi * x), np.full(N, 3.0)]


BRUSS_P = [1.0, 3.0, 1 / 50]


@pytest.fixture(scope="session")
def bruss64():
    return brusselator(64)


# --- the references themselves ---------------------------------------------------------


@pytest.mark.parametrize("fun,y", [
    (robertson_fun(0.04, 3e7, 1e4), np.array([0.7, 3e-5, 0.3])),
    (vdp_fun(1000.0), np.array([1.7, -0.3])),
    (bruss_fun(64, *BRUSS_P), bruss_y0(64) * np.linspace(0.9, 1.1, 128)),
], ids=["robertson", "vdp", "bruss64"])
def test_hand_written_jacobians_match_complex_step(fun, y):
    # a slip in J would not move Radau's answer (J only feeds its Newton iteration)
    # but could slow or stall it; check each J against its own f to rounding (the
    # complex step has no cancellation). A slip in f moves the reference and is
    # caught by the accuracy tests below, since sciode's f is derived separately.
    f, J = fun
    np.testing.assert_allclose(J(0.0, y), complex_step_jacobian(f, y), rtol=1e-13,
                               atol=1e-14 * np.max(np.abs(J(0.0, y))))


# --- linear algebra ------------------------------------------------------------------


def test_dense_lu_solves_and_pivots():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(7, 7))
    M[0, 0] = 0.0  # needs a row interchange
    b = rng.normal(size=7)
    LU, piv, x = M.copy(), np.zeros(7, dtype=np.int64), b.copy()
    assert linalg.lu_factor(LU, piv)
    linalg.lu_solve(LU, piv, x)
    np.testing.assert_allclose(M @ x, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kl,ku", [(1, 1), (2, 3), (3, 0)])
def test_band_lu_matches_dense_solve(kl, ku):
    n = 20
    rng = np.random.default_rng(kl * 10 + ku)
    M = np.zeros((n, n))
    for i in range(n):
        for j in range(max(0, i - kl), min(n, i + ku + 1)):
            M[i, j] = rng.normal()
    rows, cols = np.nonzero(M)
    mode = linalg.linear_mode(n, rows, cols, force="banded").typed()
    d = 0.0  # build_and_factor forms d I - J: pass J = -M
    T = linalg.matrix_storage(n, mode)
    piv = np.zeros(n, dtype=np.int64)
    J = linalg.jacobian_storage(n, mode)
    assert J.shape == (1, mode.rows.size)  # the pattern's values: no n x n matrix
    J[0] = -M[mode.rows, mode.cols]
    assert linalg.build_and_factor(J, d, mode, T, piv)
    b = rng.normal(size=n)
    x = b.copy()
    linalg.solve_in_place(T, piv, mode, x, np.empty(n))
    np.testing.assert_allclose(x, np.linalg.solve(M, b), rtol=1e-10, atol=1e-12)


def test_block_mode_solves_the_interleaved_block_diagonal_system():
    """``linalg.block_mode(n, m)``: ``d I - diag(B, B (m copies, interleaved), 0)``
    solved with one ``n x n`` LU equals NumPy's solve of the whole matrix."""
    n, m, tail = 4, 3, 5
    rng = np.random.default_rng(7)
    B = rng.normal(size=(n, n))
    N = n * (1 + m) + tail
    full = np.zeros((N, N))
    full[:n, :n] = B
    for c in range(m):
        idx = n + np.arange(n) * m + c
        full[np.ix_(idx, idx)] = B
    d = 2.5
    mode = linalg.block_mode(n, m).typed()
    assert (mode.block, mode.stride) == (n, m)
    M = linalg.matrix_storage(N, mode)
    assert M.shape == (n + 1, n)  # never N x N
    J = linalg.jacobian_storage(N, mode)
    assert J.shape == (n, n)
    J[:] = B
    piv = np.zeros(N, dtype=np.int64)
    assert linalg.build_and_factor(J, d, mode, M, piv)
    b = rng.normal(size=N)
    x = b.copy()
    linalg.solve_in_place(M, piv, mode, x, np.empty(N))
    np.testing.assert_allclose(x, np.linalg.solve(d * np.eye(N) - full, b), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("banded", [False, True])
def test_lead_mode_solves_the_block_lower_triangular_system(banded):
    """``linalg.lead_mode``: ``d I - [[B, 0], [C, 0]]`` (the costate system:
    ``B = -J^T``, ``C = -F_p^T``) solved by factoring ``B``'s block alone
    (dense, or banded from its pattern) equals NumPy's solve of the whole
    matrix, and never stores an ``N x N`` matrix."""
    n, tail = 40, 7
    rng = np.random.default_rng(11)
    B = np.zeros((n, n))
    for i in range(n):  # a tridiagonal block with a far coupling, as a PDE's after RCM
        for j in (i - 1, i, i + 1, (i + n // 2) % n):
            if 0 <= j < n:
                B[i, j] = rng.normal()
    C = rng.normal(size=(tail, n))
    N = n + tail
    rows, cols = np.nonzero(B)
    mode = linalg.lead_mode(linalg.linear_mode(n, rows, cols, "banded" if banded else "dense"), n).typed()
    assert mode.banded == banded and mode.block == n and mode.stride == linalg.LEAD
    J = linalg.jacobian_storage(N, mode)
    if banded:  # B's values on its pattern, then C row-major: no N x n matrix either
        assert J.shape == (1, mode.rows.size + (N - n) * n)
        J[0, :mode.rows.size] = B[mode.rows, mode.cols]
        J[0, mode.rows.size:] = C.ravel()
    else:
        assert J.shape == (N, n)
        J[:n], J[n:] = B, C
    M = linalg.matrix_storage(N, mode)
    assert M.shape[0] == N + 1 and M.shape[1] == n  # rows: the block, C, d; never N x N
    d = 3.0
    piv = np.zeros(N, dtype=np.int64)
    assert linalg.build_and_factor(J, d, mode, M, piv)
    full = np.zeros((N, N))
    full[:n, :n], full[n:, :n] = B, C
    b = rng.normal(size=N)
    x = b.copy()
    linalg.solve_in_place(M, piv, mode, x, np.empty(N))
    np.testing.assert_allclose(x, np.linalg.solve(d * np.eye(N) - full, b), rtol=1e-11, atol=1e-12)


def test_singular_pivot_detected():
    M = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert not linalg.lu_factor(M.copy(), np.zeros(2, dtype=np.int64))
    T = np.zeros((2, 4))  # kl = ku = 1
    T[:, 2] = [1.0, 4.0]
    T[1, 1], T[0, 3] = 2.0, 2.0
    assert not linalg.band_factor(T, 1, 1, np.zeros(2, dtype=np.int64))


def test_rcm_makes_blockwise_brusselator_banded(bruss64):
    mk = model_kernels(bruss64)
    rows, cols = mk.jac_pattern
    natural = linalg.bandwidths(rows, cols, np.arange(128))
    assert natural == (64, 64)  # u_i <-> v_i couples states N apart
    mode = stiff.model_linear_mode(mk)
    assert mode.banded and mode.kl + mode.ku + 1 <= 8


def test_small_system_stays_dense(robertson):
    assert not stiff.model_linear_mode(model_kernels(robertson)).banded


# --- accuracy ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_fixed_step_convergence_order(forced, method):
    lam, T = 2.0, 4.0
    ns = [16, 32, 64] if method == "rodas4" else [8, 16, 32]
    errs = []
    for n in ns:
        raw = raw_solve(forced, [1.0], (0.0, T), [lam], method, dt=T / n, rtol=1e-13, atol=1e-14)
        assert raw.status == 0 and raw.stats["naccepted"] == n
        errs.append(abs(raw.zs[-1, 0] - forced_exact(T, lam)))
    slopes = -np.diff(np.log(errs)) / np.log(2.0)
    assert np.all(np.abs(slopes - ORDER[method]) < 0.3), (errs, slopes)


#: order of the interpolant's global error at fixed steps: min(order, dense order + 1)
DENSE_SLOPE = {"rodas4": 4, "rodas5": 5, "kvaerno5": 4}


@pytest.mark.parametrize("method", METHODS)
def test_fixed_step_dense_output_order(forced, method):
    """``t_eval`` inside fixed steps (never on a step boundary) against the closed
    form: the error there is the global error at the step start plus the
    interpolant's local error h^(dense_order + 1)."""
    lam, T = 2.0, 4.0
    errs = []
    for n in (32, 64, 128):  # asymptotic from ~32 steps (slopes 0.3 lower at 8 -> 16)
        t_eval = (np.arange(n) + 0.37) * (T / n)
        raw = raw_solve(forced, [1.0], (0.0, T), [lam], method, dt=T / n, t_eval=t_eval,
                        rtol=1e-13, atol=1e-14)
        assert raw.status == 0 and raw.stats["naccepted"] == n
        errs.append(np.max(np.abs(raw.z_eval[:, 0] - forced_exact(t_eval, lam))))
    slopes = -np.diff(np.log(errs)) / np.log(2.0)
    assert np.all(np.abs(slopes - DENSE_SLOPE[method]) < 0.3), (errs, slopes)


@pytest.mark.parametrize("method", METHODS)
def test_error_falls_with_tolerance(forced, method):
    lam, T = 1e3, 5.0  # stiff: explicit methods would need ~1e3 steps
    errs = []
    for rtol in (1e-4, 1e-6, 1e-8):
        sol = sciode.solve(forced, [1.0], (0.0, T), [lam], method=method, rtol=rtol, atol=rtol * 1e-2)
        assert sol.success
        errs.append(np.max(np.abs(sol.y[:, 0] - forced_exact(sol.t, lam))))
    if method == "rodas5":
        # A Prothero-Robinson problem (y' = -lam (y - g) + g'): RODAS5 does not
        # satisfy the extra PR conditions (Steinebach's RODAS5P does) and its
        # error is not monotone at loose tolerances (measured 2.5e-5, 2.6e-6,
        # 1.6e-9; 1.2e-5 at rtol 1e-5): the error stays within 5 rtol (|y| <= 2)
        # and falls 1e4-fold over the four decades.
        assert all(err < 5 * rtol for err, rtol in zip(errs, (1e-4, 1e-6, 1e-8))), errs
        assert errs[0] > 5 * errs[1] > 100 * errs[2] and errs[2] < 1e-7, errs
    else:
        assert errs[0] > 10 * errs[1] > 100 * errs[2] and errs[2] < 1e-7, errs


@pytest.mark.parametrize("method", METHODS)
def test_linear_stiff_system_against_expm(linear_stiff, method):
    y0, T = np.array([1.0, 0.0]), 10.0
    t_eval = np.linspace(0.0, T, 11)
    sol = sciode.solve(linear_stiff, y0, (0.0, T), method=method, t_eval=t_eval, rtol=1e-6, atol=1e-9)
    assert sol.success
    ref = np.array([scipy.linalg.expm(LINEAR_A * t) @ y0 for t in t_eval])
    assert tol_units(sol.y, ref, 1e-6, 1e-9) < 5
    assert sol.stats["naccepted"] < 200  # stable at h >> 2/1e4 (an explicit method needs ~5e4)


@pytest.fixture(scope="session")
def robertson_ref():
    p, t_eval = [0.04, 3e7, 1e4], np.array([1e-2, 1.0, 1e2, 1e4, 1e5])
    f, J = robertson_fun(*p)
    ref = solve_ivp(f, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", jac=J, t_eval=t_eval,
                    rtol=1e-12, atol=1e-14)
    return p, t_eval, ref.y.T


@pytest.mark.parametrize("method", METHODS)
def test_robertson(robertson, robertson_ref, method):
    p, t_eval, ref = robertson_ref
    rtol, atol = 1e-6, 1e-8
    sol = sciode.solve(robertson, [1.0, 0.0, 0.0], (0.0, 1e5), p, t_eval=t_eval, method=method,
                       rtol=rtol, atol=atol)
    assert sol.success, sol.message
    # y2 ~ 1e-8..1e-5 sits at atol: judge it with its own scale (atol 1e-8 would swallow it)
    assert tol_units(sol.y[:, [0, 2]], ref[:, [0, 2]], rtol, atol) < 20
    np.testing.assert_allclose(sol.y[:, 1], ref[:, 1], rtol=1e-3)
    np.testing.assert_allclose(sol.y[-1], [1.7865921e-2, 7.2747505e-8, 9.8213407e-1], rtol=2e-4)
    assert sol.stats["njev"] >= 1 and sol.stats["nlu"] >= sol.stats["njev"] // 2


@pytest.fixture(scope="session")
def vdp_ref():
    p, T = [1000.0], 3000.0
    t_eval = np.linspace(0.0, T, 31)
    f, J = vdp_fun(*p)
    ref = solve_ivp(f, (0.0, T), [2.0, 0.0], method="Radau", jac=J, t_eval=t_eval,
                    rtol=1e-11, atol=1e-11)
    return p, T, t_eval, ref.y.T


@pytest.mark.parametrize("method", METHODS)
def test_van_der_pol_mu_1000(vdp, vdp_ref, method):
    p, T, t_eval, ref = vdp_ref
    rtol, atol = 1e-6, 1e-6
    sol = sciode.solve(vdp, [2.0, 0.0], (0.0, T), p, t_eval=t_eval, method=method, rtol=rtol, atol=atol)
    assert sol.success, sol.message
    # x jumps by ~4 within ~1/mu near t = 807, 1614, ...: a relative phase error of
    # 1e-6 over 3000 time units would be an O(1) error at a sample inside a jump,
    # and none of the 31 samples is; away from jumps x is smooth, so 1e-2 absolute
    # (x ~ 2) bounds the global error of the slow phases.
    assert np.max(np.abs(sol.y[:, 0] - ref[:, 0])) < 1e-2
    assert sol.stats["naccepted"] < 5000


@pytest.mark.parametrize("method", METHODS)
def test_dense_output_off_step_points(forced, method):
    lam, T, rtol, atol = 50.0, 3.0, 1e-8, 1e-10
    sol = sciode.solve(forced, [1.0], (0.0, T), [lam], method=method, rtol=rtol, atol=atol, dense=True)
    assert sol.success and sol.dense is not None
    mid = 0.5 * (sol.t[:-1] + sol.t[1:])
    y_mid = sol.dense(mid)[:, 0]
    # cubic/quartic interpolants are one order below the steps: allow 50 tolerance units
    assert tol_units(y_mid, forced_exact(mid, lam), rtol, atol) < 50
    np.testing.assert_allclose(sol.dense(sol.t), sol.y, rtol=1e-12, atol=1e-14)
    # t_eval is served by the same interpolant inside the loop
    te = np.sort(mid[::3])
    sol_te = sciode.solve(forced, [1.0], (0.0, T), [lam], method=method, rtol=rtol, atol=atol, t_eval=te)
    np.testing.assert_allclose(sol_te.y[:, 0], sol.dense(te)[:, 0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["rodas4", "rodas5"])
def test_rodas_dense_form_equals_hairer_interpolant(name):
    from sciode.cpu.rosenbrock import rodas_P
    from sciode.methods.stiff_tableaus import STIFF_TABLEAUS

    tab = STIFF_TABLEAUS[name]
    s, d = tab.m.size, tab.H.shape[0]
    rng = np.random.default_rng(1)
    U, y, h = rng.normal(size=(s, 3)), rng.normal(size=3), 0.37
    y_new = y + tab.m @ U
    P = rodas_P(tab.m, tab.H)
    assert P.shape == (s, d + 1)
    for th in (0.0, 0.3, 0.77, 1.0):
        corr = sum(th**r * (tab.H[r] @ U) for r in range(d))
        hairer = (1 - th) * y + th * y_new + th * (1 - th) * corr
        poly = y + h * (U / h).T @ (P @ th ** np.arange(1, d + 2))
        np.testing.assert_allclose(poly, hairer, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["rodas4", "rodas5"])
def test_backward_integration(forced, method):
    lam = 2.0
    y1 = forced_exact(2.0, lam)
    sol = sciode.solve(forced, [y1], (2.0, 0.0), [lam], method=method, rtol=1e-8, atol=1e-10)
    assert sol.success and abs(sol.y[-1, 0] - 1.0) < 1e-6


# --- banded path ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def bruss64_ref():
    """SciPy Radau on the hand-written BRUSS, at ``t = 0, 2, ..., 10`` (shared by both methods)."""
    f, J = bruss_fun(64, *BRUSS_P)
    t_eval = np.linspace(0.0, 10.0, 6)
    return solve_ivp(f, (0.0, 10.0), bruss_y0(64), method="Radau", jac=J, t_eval=t_eval,
                     rtol=1e-10, atol=1e-12).y.T


@pytest.mark.parametrize("method", METHODS)
def test_banded_agrees_with_dense_and_scipy(bruss64, bruss64_ref, method):
    y0, T, rtol, atol = bruss_y0(64), 10.0, 1e-6, 1e-8
    t_eval = np.linspace(0.0, T, 6)
    banded = raw_solve(bruss64, y0, (0.0, T), BRUSS_P, method, rtol=rtol, atol=atol, t_eval=t_eval)
    dense = raw_solve(bruss64, y0, (0.0, T), BRUSS_P, method, rtol=rtol, atol=atol, t_eval=t_eval,
                      linalg="dense")
    assert banded.status == dense.status == 0
    if method.startswith("rodas"):
        # same steps, same arithmetic up to the order of operations in the LU
        np.testing.assert_allclose(banded.z_eval, dense.z_eval, rtol=1e-9, atol=1e-11)
    else:
        # kvaerno5 refreshes J less eagerly in banded mode (sdirk.SLOW_RATE_BANDED),
        # so the step sequences differ: agreement is at the tolerance level
        assert tol_units(banded.z_eval, dense.z_eval, rtol, atol) < 10
    assert tol_units(banded.z_eval, bruss64_ref, rtol, atol) < 20


# --- failures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def degenerate():
    """``y1' = y2' = k (y1 - y2)``: with ``k = 1e300``, ``I/(h gamma) - J`` is singular in float64."""
    y1, y2, k = sp.symbols("y1 y2 k")
    return sciode.Model(states=[y1, y2], rhs=[k * (y1 - y2), k * (y1 - y2)], params=[k], name="degenerate")


@pytest.mark.parametrize("method", METHODS)
def test_singular_matrix_reported(degenerate, method):
    sol = sciode.solve(degenerate, [1.0, 1.0], (0.0, 1.0), [1e300], method=method)
    assert not sol.success and sol.status == SINGULAR
    assert "singular" in sol.message and "t=0.0" in sol.message
    with pytest.raises(sciode.SolverError, match="singular"):
        sciode.solve(degenerate, [1.0, 1.0], (0.0, 1.0), [1e300], method=method, raise_on_failure=True)


@pytest.mark.parametrize("method", METHODS)
def test_nonfinite_reported(forced, method):
    # y' = 1e3 y (lam = -1e3) overflows float64 near t = 0.71
    sol = sciode.solve(forced, [1.0], (0.0, 5.0), [-1e3], method=method)
    assert not sol.success and sol.status == NONFINITE, sol.message
    assert "non-finite" in sol.message and 0.5 < sol.t_reached < 1.0
    assert np.all(np.isfinite(sol.y))


@pytest.mark.parametrize("method", METHODS)
def test_max_steps_reported(robertson, method):
    sol = sciode.solve(robertson, [1.0, 0.0, 0.0], (0.0, 1e5), [0.04, 3e7, 1e4], method=method,
                       max_steps=10)
    assert not sol.success and sol.status == MAX_STEPS
    assert "max_steps=10" in sol.message and sol.t_reached < 1e5


@pytest.mark.parametrize("method", METHODS)
def test_stats_have_jacobian_and_lu_counts(robertson, method):
    sol = sciode.solve(robertson, [1.0, 0.0, 0.0], (0.0, 1.0), [0.04, 3e7, 1e4], method=method)
    st = sol.stats
    assert set(st) == {"nfev", "nsteps", "naccepted", "nrejected", "njev", "nlu"}
    assert st["nsteps"] == st["naccepted"] + st["nrejected"]
    assert 1 <= st["njev"] <= st["naccepted"] + 1 and st["nlu"] >= 1


def test_method_names_include_stiff():
    assert {"rodas4", "rodas5", "kvaerno5"} <= set(solvers.method_names())
