"""Tableaus: validation, order conditions, SciPy lockstep and convergence.

Tolerances: identities of published 16-30 digit coefficients hold to ~1e-14
(scaled by the size of the entries); lockstep with SciPy is to 1e-13 relative
(same arithmetic up to summation order); convergence slopes are judged
within 0.3 (global order) and 0.5 (local dense-output order) as in the brief.
"""

import dataclasses

import numpy as np
import pytest
from scipy.integrate import DOP853 as ScipyDOP853
from scipy.integrate import RK23, RK45

from sciode.methods.tableaus import (
    EXPLICIT_TABLEAUS,
    KVAERNO5,
    RODAS4,
    RODAS5,
    STIFF_TABLEAUS,
    Tableau,
    dense_weights,
    get_tableau,
)

EXPLICIT = sorted(EXPLICIT_TABLEAUS)


# -- rooted trees and elementary weights ---------------------------------------


def _grow(tree):
    """All trees obtained by attaching one leaf to a node of ``tree``."""
    out = {tuple(sorted(tree + ((),)))}
    for i, child in enumerate(tree):
        for grown in _grow(child):
            out.add(tuple(sorted(tree[:i] + (grown,) + tree[i + 1:])))
    return out


def rooted_trees(max_order):
    """Rooted trees by order (a tree is the sorted tuple of its subtrees)."""
    levels = {1: {()}}
    for n in range(2, max_order + 1):
        levels[n] = set().union(*(_grow(t) for t in levels[n - 1]))
    return levels


TREES = rooted_trees(8)


def test_tree_counts():
    assert [len(TREES[n]) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]


def _order(tree):
    return 1 + sum(_order(c) for c in tree)


def _gamma(tree):
    return _order(tree) * np.prod([_gamma(c) for c in tree])


def _phi(A, tree):
    """Stage vector of the elementary weight: prod over children of A @ phi(child)."""
    out = np.ones(A.shape[0])
    for child in tree:
        out = out * (A @ _phi(A, child))
    return out


def order_residuals(A, weights, order):
    """Max |weights . phi(t) - 1/gamma(t)| over trees of each order 1..order."""
    return {
        n: max(abs(weights @ _phi(A, t) - 1.0 / _gamma(t)) for t in TREES[n])
        for n in range(1, order + 1)
    }


def extended_A(tab):
    A = np.zeros((tab.s_total, tab.s_total))
    A[: tab.s, : tab.s] = tab.A
    A[tab.s:] = tab.A_extra
    return A


# -- validation ----------------------------------------------------------------


@pytest.mark.parametrize("name", EXPLICIT)
def test_explicit_tableau_is_frozen_and_consistent(name):
    tab = EXPLICIT_TABLEAUS[name]
    assert tab.name == name
    for field in ("A", "b", "c", "e", "P", "A_extra", "c_extra"):
        arr = getattr(tab, field)
        assert arr.dtype == np.float64 and arr.flags.c_contiguous and not arr.flags.writeable
    with pytest.raises(ValueError):
        tab.A[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        tab.order = 99
    assert tab.P.shape == (tab.s_total, tab.P.shape[1])
    if tab.fsal:
        np.testing.assert_array_equal(tab.A[-1], tab.b)
        assert tab.c[-1] == 1.0 and tab.b[-1] == 0.0


def _fields(tab):
    return {f.name: getattr(tab, f.name) for f in dataclasses.fields(tab)}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"c": [0.0, 0.5, 0.6, 1.0]}, "row sums of `A`"),
        ({"b": [1 / 6, 1 / 3, 1 / 3, 0.2]}, "sum(b)"),
        ({"A": np.eye(4)}, "strictly lower triangular"),
        ({"P": np.ones((4, 3))}, "theta=1"),
        ({"A": np.zeros((3, 3))}, "shape"),
        ({"e": [0.1, 0.0, 0.0, 0.0]}, "fixed-step"),
    ],
)
def test_bad_tableau_raises_naming_it(change, message):
    kwargs = _fields(EXPLICIT_TABLEAUS["rk4"]) | {"name": "broken"} | change
    with pytest.raises(ValueError, match="`broken`") as info:
        Tableau(**kwargs)
    assert message in str(info.value)


def test_step_controller_is_tableau_data_read_by_every_backend():
    """The controller's exponent and PI stabilisation live on the tableau
    (``dopri5.f``: BETA = 0.04; ``dop853.f``: EXPO1 = 1/8), not inferred from
    array shapes, and the CPU loop, the torch path and the CUDA kernels read them."""
    import sympy as sp

    import sciode
    from sciode.codegen import model_kernels
    from sciode.cpu import solvers
    from sciode.torch.methods import METHODS

    want = {"bosh3": (3.0, 0.0), "dopri5": (5.0, 0.04), "tsit5": (5.0, 0.04), "dop853": (8.0, 0.0)}
    for name, (q, beta) in want.items():
        tab = EXPLICIT_TABLEAUS[name]
        assert (tab.controller_q, tab.pi_beta) == (q, beta)
        assert (solvers.rk_method(tab).q, solvers.rk_method(tab).beta) == (q, beta)
        assert (METHODS[name].q, METHODS[name].beta) == (q, beta)
    with pytest.raises(ValueError, match="pi_beta"):
        dataclasses.replace(EXPLICIT_TABLEAUS["dopri5"], name="unstable", pi_beta=0.5)
    # the compiled loop takes beta from the tableau: without it, another step sequence
    x, y = sp.symbols("x y")
    model = sciode.Model([x, y], [x * (1 - y), -y * (1 - x)], [], name="controller_data")
    mk = model_kernels(model)
    steps = {}
    for beta in (0.04, 0.0):
        tab = dataclasses.replace(EXPLICIT_TABLEAUS["dopri5"], name=f"dopri5_beta{beta}", pi_beta=beta)
        raw = solvers.run_explicit(mk, tab, np.zeros(0), None, np.array([1.2, 0.7]), 0.0, 20.0,
                                   np.zeros(0), 1e-8, np.full(2, 1e-8), 0.0, np.inf, 0.0, 100_000, False)
        steps[beta] = int(raw.stats["nsteps"])
    assert steps[0.04] != steps[0.0]


def test_adaptive_needs_zero_sum_error_weights():
    kwargs = _fields(EXPLICIT_TABLEAUS["bosh3"]) | {"e": [0.1, 0.0, 0.0, 0.0]}
    with pytest.raises(ValueError, match="sum\\(e\\)"):
        Tableau(**kwargs)


def test_registry_lookup():
    assert get_tableau("DOPRI5") is EXPLICIT_TABLEAUS["dopri5"]
    assert get_tableau("rodas4") is RODAS4
    assert get_tableau("RODAS5") is RODAS5
    assert set(STIFF_TABLEAUS) == {"rodas4", "rodas5", "kvaerno5"}
    with pytest.raises(ValueError, match="`dopri5`"):
        get_tableau("rk45")


# -- order conditions ----------------------------------------------------------


@pytest.mark.parametrize("name", EXPLICIT)
def test_order_conditions(name):
    tab = EXPLICIT_TABLEAUS[name]
    res = order_residuals(tab.A, tab.b, tab.order)
    assert max(res.values()) < 1e-12, res
    if tab.order < 8:  # the next order must fail, or `order` is understated
        assert order_residuals(tab.A, tab.b, tab.order + 1)[tab.order + 1] > 1e-6


@pytest.mark.parametrize("name", [n for n in EXPLICIT if EXPLICIT_TABLEAUS[n].adaptive])
def test_embedded_order(name):
    tab = EXPLICIT_TABLEAUS[name]
    p = tab.error_order
    res = order_residuals(tab.A, tab.b - tab.e, p + 1)
    assert max(res[n] for n in range(1, p + 1)) < 1e-12, res
    assert res[p + 1] > 1e-6  # b_hat is exactly order p, not p + 1


@pytest.mark.parametrize("name", [n for n in EXPLICIT if EXPLICIT_TABLEAUS[n].adaptive])
def test_error_weights_kill_low_order_terms(name):
    """e . phi(t) = 0 for |t| <= error_order, nonzero at error_order + 1.

    This pins `e` up to its overall sign; the sign only decides whether the
    estimate is y_new - y_hat or y_hat - y_new, which no error norm sees. For
    tsit5 we store OrdinaryDiffEq.jl's `btilde` (e[6] = +1/66), documented as
    b - b_hat.
    """
    tab = EXPLICIT_TABLEAUS[name]
    p = tab.error_order
    for n in range(1, p + 2):
        worst = max(abs(tab.e @ _phi(tab.A, t)) for t in TREES[n])
        assert (worst < 1e-12) if n <= p else (worst > 1e-6), (n, worst)


def test_dop853_third_order_estimator():
    tab = EXPLICIT_TABLEAUS["dop853"]
    res = order_residuals(tab.A, tab.b - tab.e3, 3)
    assert max(res.values()) < 1e-12
    assert abs(tab.e3.sum()) < 1e-14


@pytest.mark.parametrize("name", EXPLICIT)
@pytest.mark.parametrize("theta", [0.2, 0.5, 0.9])
def test_continuous_order_conditions(name, theta):
    """sum_i b_i(theta) phi_i(t) = theta^|t| / gamma(t) for |t| <= dense_order."""
    tab = EXPLICIT_TABLEAUS[name]
    A, w = extended_A(tab), dense_weights(tab, theta)
    for n in range(1, tab.dense_order + 1):
        for t in TREES[n]:
            assert abs(w @ _phi(A, t) - theta**n / _gamma(t)) < 1e-12, (n, t)


def test_dense_weights_endpoints():
    for tab in EXPLICIT_TABLEAUS.values():
        np.testing.assert_array_equal(dense_weights(tab, 0.0), 0.0)
        np.testing.assert_allclose(
            dense_weights(tab, 1.0)[: tab.s], tab.b, atol=1e-13
        )


# -- a standalone numpy step from the tableau ----------------------------------


def rk_step(tab, f, t, y, h):
    """One step; returns y_new and all s_total stage derivatives."""
    K = np.zeros((tab.s_total, y.size))
    for i in range(tab.s):
        K[i] = f(t + tab.c[i] * h, y + h * (tab.A[i, :i] @ K[:i]))
    y_new = y + h * (tab.b @ K[: tab.s])
    for m in range(tab.s_extra):
        i = tab.s + m
        K[i] = f(t + tab.c_extra[m] * h, y + h * (tab.A_extra[m, :i] @ K[:i]))
    return y_new, K


def dense(tab, y, h, K, theta):
    return y + h * (dense_weights(tab, theta) @ K)


def lotka(t, y):
    return np.array([y[0] * (1.0 - y[1]) + 0.3 * np.sin(t), -y[1] * (1.0 - y[0])])


@pytest.mark.parametrize(
    "name, scipy_cls", [("bosh3", RK23), ("dopri5", RK45), ("dop853", ScipyDOP853)]
)
def test_lockstep_with_scipy(name, scipy_cls):
    tab = EXPLICIT_TABLEAUS[name]
    t0, y0, h = 0.3, np.array([1.2, 0.7]), 0.2
    # Loose tolerances so SciPy accepts its first step as given.
    solver = scipy_cls(lotka, t0, y0, 10.0, first_step=h, rtol=1e3, atol=1e3)
    solver.step()
    assert solver.t == pytest.approx(t0 + h, rel=1e-15)
    y_new, K = rk_step(tab, lotka, t0, y0, h)
    np.testing.assert_allclose(y_new, solver.y, rtol=1e-13, atol=0)
    sol = solver.dense_output()
    for theta in (0.3, 0.7):
        np.testing.assert_allclose(
            dense(tab, y0, h, K, theta), sol(t0 + theta * h), rtol=1e-13, atol=0
        )


def test_error_weights_match_scipy():
    # SciPy's E is b_hat - b; ours is b - b_hat.
    np.testing.assert_allclose(EXPLICIT_TABLEAUS["bosh3"].e, -RK23.E, atol=1e-16)
    np.testing.assert_allclose(EXPLICIT_TABLEAUS["dopri5"].e, -RK45.E, atol=1e-16)
    np.testing.assert_allclose(EXPLICIT_TABLEAUS["dop853"].e, ScipyDOP853.E5, atol=1e-16)
    np.testing.assert_allclose(EXPLICIT_TABLEAUS["dop853"].e3, ScipyDOP853.E3, atol=1e-16)


# -- convergence ---------------------------------------------------------------
# Manufactured nonlinear, non-autonomous problem with an entire solution (so
# steps of ~0.4 are already in the asymptotic regime):
#   y' = cos(t) y - y^2 + exp(2 sin t),   y = exp(sin t).


def f_nl(t, y):
    return np.cos(t) * y - y**2 + np.exp(2.0 * np.sin(t))


def y_nl(t):
    return np.array([np.exp(np.sin(t))])


def _jac_nl(t, y):
    return np.array([[np.cos(t) - 2.0 * y[0]]])


def _dfdt_nl(t, y):
    return -np.sin(t) * y + 2.0 * np.cos(t) * np.exp(2.0 * np.sin(t))


# Global convergence on a rotation with time-varying speed (norm-preserving, so
# the global error grows like h^p * t and does not decay away):
#   y' = w(t) [-y1, y0],  w = 1 + cos(t)/2,  y = (cos a, sin a),  a = t + sin(t)/2.
# Nonlinear couplings are covered by the order conditions and the lockstep test.


def f_rot(t, y):
    return (1.0 + 0.5 * np.cos(t)) * np.array([-y[1], y[0]])


def y_rot(t):
    a = t + 0.5 * np.sin(t)
    return np.array([np.cos(a), np.sin(a)])


# Step counts over one period chosen so that the finest error stays well above
# round-off (>1e-12, vs ~1e-15 round-off) and the coarsest is in the asymptotic regime.
STEPS = {"euler": 64, "midpoint": 32, "rk4": 16, "bosh3": 16, "dopri5": 32, "tsit5": 64, "dop853": 8}


def _global_error(tab, n, t_end=2.0 * np.pi):
    h, y = t_end / n, y_rot(0.0)
    for k in range(n):
        y, _ = rk_step(tab, f_rot, k * h, y, h)
    return np.max(np.abs(y - y_rot(t_end)))


@pytest.mark.parametrize("name", EXPLICIT)
def test_global_convergence(name):
    tab = EXPLICIT_TABLEAUS[name]
    errs = [_global_error(tab, STEPS[name] * 2**k) for k in range(3)]
    slope = np.log2(errs[1] / errs[2])
    assert errs[2] > 1e-12
    assert abs(slope - tab.order) < 0.3, (errs, slope)


@pytest.mark.parametrize("name", EXPLICIT)
def test_dense_output_local_order(name):
    """One step from the exact y(t0): interpolant error is O(h^(dense_order+1))."""
    tab = EXPLICIT_TABLEAUS[name]
    t0, theta = 0.4, 0.37
    # dop853's interpolant error reaches round-off below h = 0.1.
    hs = [0.4, 0.2, 0.1] if tab.dense_order >= 7 else [0.1, 0.05, 0.025]
    errs = []
    for h in hs:
        y0 = y_nl(t0)
        _, K = rk_step(tab, f_nl, t0, y0, h)
        errs.append(abs(dense(tab, y0, h, K, theta) - y_nl(t0 + theta * h))[0])
    slope = np.log2(errs[1] / errs[2])
    assert abs(slope - (tab.dense_order + 1)) < 0.5, (errs, slope)


# -- stiff methods -------------------------------------------------------------


def test_stiff_tableaus_frozen():
    for tab in STIFF_TABLEAUS.values():
        for f in dataclasses.fields(tab):
            arr = getattr(tab, f.name)
            if isinstance(arr, np.ndarray):
                assert arr.dtype == np.float64 and not arr.flags.writeable


def test_rodas4_identities():
    tab = RODAS4
    # Stiffly accurate: Y6 = Y5 + U5 and y_new = Y6 + U6, so the error is U6.
    np.testing.assert_array_equal(tab.A[5, :4], tab.A[4, :4])
    assert tab.A[5, 4] == 1.0
    np.testing.assert_array_equal(tab.m, np.append(tab.A[5, :5], 1.0))
    np.testing.assert_array_equal(tab.e, np.eye(6)[5])
    assert tab.alpha[4] == tab.alpha[5] == 1.0
    alpha_ij, Gamma, b, b_hat = tab.untransformed()
    np.testing.assert_allclose(np.diag(Gamma), tab.gamma, rtol=1e-14)
    np.testing.assert_allclose(alpha_ij.sum(axis=1), tab.alpha, atol=1e-14)
    np.testing.assert_allclose(Gamma.sum(axis=1), tab.gamma_sum, atol=1e-14)
    # Classical Rosenbrock order conditions (Hairer & Wanner II, Table IV.7.1),
    # with beta = alpha_ij + gamma_ij (off-diagonal) and g = gamma.
    g, a = tab.gamma, alpha_ij.sum(axis=1)
    beta = alpha_ij + Gamma - np.diag(np.diag(Gamma))
    bp = beta.sum(axis=1)
    conds = [
        (b.sum(), 1.0),
        (b @ bp, 0.5 - g),
        (b @ a**2, 1 / 3),
        (b @ beta @ bp, 1 / 6 - g + g**2),
        (b @ a**3, 1 / 4),
        (b @ (a * (alpha_ij @ bp)), 1 / 8 - g / 3),
        (b @ beta @ a**2, 1 / 12 - g / 3),
        (b @ beta @ beta @ bp, 1 / 24 - g / 2 + 1.5 * g**2 - g**3),
    ]
    for value, target in conds:
        assert value == pytest.approx(target, abs=1e-13)
    emb = [(b_hat.sum(), 1.0), (b_hat @ bp, 0.5 - g), (b_hat @ a**2, 1 / 3),
           (b_hat @ beta @ bp, 1 / 6 - g + g**2)]
    for value, target in emb:
        assert value == pytest.approx(target, abs=1e-13)


def rodas_step(tab, f, jac, dfdt, t, y, h):
    """One step exactly as the RosenbrockTableau docstring states it."""
    s, n = tab.m.size, y.size
    M = np.eye(n) / (h * tab.gamma) - jac(t, y)
    ft = dfdt(t, y)
    U = np.zeros((s, n))
    for i in range(s):
        rhs = f(t + tab.alpha[i] * h, y + tab.A[i, :i] @ U[:i])
        rhs = rhs + (tab.C[i, :i] @ U[:i]) / h + h * tab.gamma_sum[i] * ft
        U[i] = np.linalg.solve(M, rhs)
    return y + tab.m @ U, tab.e @ U, U


def rodas_dense(tab, y, y_new, U, theta):
    """The RosenbrockTableau docstring's interpolant (any number of rows of ``H``)."""
    d = sum(theta**r * row for r, row in enumerate(tab.H @ U))
    return (1 - theta) * y + theta * y_new + theta * (1 - theta) * d


@pytest.mark.parametrize("tab, t0", [(RODAS4, 0.4), (RODAS5, 2.0)], ids=["rodas4", "rodas5"])
def test_rodas_convergence_error_estimate_and_dense(tab, t0):
    """One step as the docstring states it: local error h^(order+1), estimate
    h^(error_order+1), interpolant h^(dense_order+1) (RODAS4: 5, 4, 4; RODAS5:
    6, 5, 5).  RODAS5 from t0 = 2: for t0 <= 1.3 the embedded solution's h^5
    coefficient on this problem is small enough that its h^6 term still
    competes at h = 0.05 (slopes 3.7..4.6 there)."""
    hs = [0.1, 0.05, 0.025]
    theta = 0.37
    local, est, dens = [], [], []
    for h in hs:
        y0 = y_nl(t0)
        y1, err, U = rodas_step(tab, f_nl, _jac_nl, _dfdt_nl, t0, y0, h)
        local.append(abs(y1 - y_nl(t0 + h))[0])
        est.append(abs(err)[0])
        dens.append(abs(rodas_dense(tab, y0, y1, U, theta) - y_nl(t0 + theta * h))[0])
    slope = lambda e: np.log2(e[1] / e[2])  # noqa: E731
    assert abs(slope(local) - (tab.order + 1)) < 0.5, local
    assert abs(slope(est) - (tab.error_order + 1)) < 0.5, est
    assert abs(slope(dens) - (tab.dense_order + 1)) < 0.5, dens


def _rosenbrock_phi(alpha_ij, B, tree):
    """Elementary weight of a Rosenbrock method (Hairer & Wanner II, Sec. IV.7):
    a vertex with one child carries ``B = alpha_ij + Gamma`` (diagonal included),
    one with several children the product of ``alpha_ij @ phi(child)``."""
    if len(tree) == 1:
        return B @ _rosenbrock_phi(alpha_ij, B, tree[0])
    out = np.ones(B.shape[0])
    for child in tree:
        out = out * (alpha_ij @ _rosenbrock_phi(alpha_ij, B, child))
    return out


def rosenbrock_residuals(tab, weights, order, theta=1.0):
    """Max |weights . phi(t) - theta^|t| / gamma(t)| over trees of each order;
    ``weights`` multiply the untransformed increments (``b``, ``b_hat``, or the
    interpolant's weights at ``theta``)."""
    alpha_ij, Gamma, _, _ = tab.untransformed()
    B = alpha_ij + Gamma
    return {n: max(abs(weights @ _rosenbrock_phi(alpha_ij, B, t) - theta**n / _gamma(t))
                   for t in TREES[n])
            for n in range(1, order + 1)}


def test_rosenbrock_tree_conditions_reproduce_rodas4_table():
    """The tree form above agrees with Table IV.7.1 as checked for RODAS4 by hand."""
    _, _, b, b_hat = RODAS4.untransformed()
    res = rosenbrock_residuals(RODAS4, b, 5)
    assert max(res[n] for n in range(1, 5)) < 1e-13 and res[5] > 1e-4, res
    res_hat = rosenbrock_residuals(RODAS4, b_hat, 4)
    assert max(res_hat[n] for n in range(1, 4)) < 1e-13 and res_hat[4] > 1e-4, res_hat


def test_rodas5_identities_and_orders():
    tab = RODAS5
    s = tab.m.size
    assert s == 8 and tab.gamma == 0.19 and tab.H.shape == (3, 8)
    # Stiffly accurate: Y7 = Y6 + U6, Y8 = Y7 + U7, y_new = Y8 + U8; error U8.
    np.testing.assert_array_equal(tab.A[6, :5], tab.A[5, :5])
    np.testing.assert_array_equal(tab.A[7, :5], tab.A[5, :5])
    np.testing.assert_array_equal(tab.A[7, 5:7], [1.0, 1.0])
    np.testing.assert_array_equal(tab.m, np.append(tab.A[7, :7], 1.0))
    np.testing.assert_array_equal(tab.e, np.eye(s)[7])
    np.testing.assert_array_equal(tab.alpha[5:], 1.0)
    alpha_ij, Gamma, b, b_hat = tab.untransformed()
    np.testing.assert_allclose(np.diag(Gamma), tab.gamma, rtol=1e-14)
    # Di Marzo's classical coefficients (10 digits as published)
    np.testing.assert_allclose(alpha_ij[1, 0], 0.38, atol=1e-13)
    np.testing.assert_allclose(b, [0.464601884, 0.0, -1.72090751, 0.29104802, 1.82177886,
                                   -0.02674488, -0.01977638, 0.19], atol=1e-8)
    # order 5, embedded order 4: residuals at rounding level up to the order, not beyond
    res = rosenbrock_residuals(tab, b, 6)
    assert max(res[n] for n in range(1, 6)) < 1e-12 and res[6] > 1e-4, res
    res_hat = rosenbrock_residuals(tab, b_hat, 5)
    assert max(res_hat[n] for n in range(1, 5)) < 1e-12 and res_hat[5] > 1e-4, res_hat
    # the continuous extension is of order 4 at every theta (weights of the U's
    # are theta m + theta (1 - theta) sum_r theta^r H[r], untransformed by Gamma)
    for theta in (0.2, 0.5, 0.9):
        w_U = theta * tab.m + theta * (1 - theta) * sum(theta**r * row for r, row in enumerate(tab.H))
        res_d = rosenbrock_residuals(tab, w_U @ Gamma, 5, theta)
        assert max(res_d[n] for n in range(1, 5)) < 1e-12 and res_d[5] > 1e-5, (theta, res_d)
    # L-stable: R(z) = 1 + z b (I - z B)^{-1} 1 -> 0 as z -> -inf (and |R| <= 1 on the left)
    B = alpha_ij + Gamma
    R = lambda z: 1 + z * b @ np.linalg.solve(np.eye(s) - z * B, np.ones(s))
    assert abs(R(-1e12)) < 1e-9
    assert max(abs(R(z)) for z in (-0.1, -1.0, -10.0, -1e3, 5j, -1 + 20j)) <= 1.0


def test_rodas5_error_estimate_is_blind_to_t_only_rates():
    """Why the registry refuses rodas5's backward sweeps (one reason): on ``y' = g(t)``
    the estimate U8 vanishes to rounding while the step's error does not (RODAS4's
    estimate is of the size of its error there). Every order-4 embedded weight
    vector of the tableau differs from ``b`` on stages 6-8 only (null space of
    the order <= 4 conditions), all evaluated at ``t + h`` with zero sum."""
    g = lambda t, y: np.array([np.exp(-40.0 * t)])
    jac = lambda t, y: np.zeros((1, 1))
    dgdt = lambda t, y: np.array([-40.0 * np.exp(-40.0 * t)])
    h, exact = 0.1, (1.0 - np.exp(-4.0)) / 40.0
    for tab, blind in ((RODAS5, True), (RODAS4, False)):
        y1, err, _ = rodas_step(tab, g, jac, dgdt, 0.0, np.zeros(1), h)
        true = abs(y1[0] - exact)
        assert true > 1e-4
        assert (abs(err[0]) < 1e-14) == blind, (tab.name, err, true)
    alpha_ij, Gamma, b, b_hat = RODAS5.untransformed()
    B = alpha_ij + Gamma
    M = np.array([_rosenbrock_phi(alpha_ij, B, t) for n in range(1, 5) for t in TREES[n]])
    null = np.linalg.svd(M)[2][np.linalg.matrix_rank(M, tol=1e-10):]
    assert null.shape[0] == 2 and np.max(np.abs(null[:, :5])) < 1e-10
    np.testing.assert_allclose(null.sum(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose((b - b_hat)[:5], 0.0, atol=1e-12)


def test_kvaerno5_identities_and_orders():
    tab = KVAERNO5
    assert tab.s == 7 and tab.A[0, 0] == 0.0
    np.testing.assert_array_equal(np.diag(tab.A)[1:], tab.gamma)
    np.testing.assert_array_equal(tab.b, tab.A[-1])  # stiffly accurate
    assert tab.c[-1] == 1.0
    res = order_residuals(tab.A, tab.b, 6)
    assert max(res[n] for n in range(1, 6)) < 1e-13, res
    assert res[6] > 1e-6
    res_hat = order_residuals(tab.A, tab.b - tab.e, 5)
    assert max(res_hat[n] for n in range(1, 5)) < 1e-13, res_hat
    assert res_hat[5] > 1e-6
    assert abs(tab.e.sum()) < 1e-15
    for theta in (0.3, 0.8):  # cubic Hermite: continuous order 3
        w = tab.P @ theta ** np.arange(1, tab.P.shape[1] + 1)
        for n in range(1, 4):
            for t in TREES[n]:
                assert abs(w @ _phi(tab.A, t) - theta**n / _gamma(t)) < 1e-13
