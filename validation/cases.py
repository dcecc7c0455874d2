"""The validation catalog: problems with an independent gradient reference.

A ``Case`` builds its model, cost and inputs, and says where its reference
comes from:

- ``analytic``: a closed form (``reference`` returns value, dJ/dp, dJ/dy0);
- ``sensitivities``: sciode's forward-sensitivity gradient at rtol=1e-12,
  itself checked against Richardson-extrapolated central differences
  (``sciode.gradcheck.richardson_differences``) before it is used.

Closed forms cite where they come from; the linear ones use the matrix
exponential and its Frechet derivative (``scipy.linalg.expm_frechet``):
for ``x' = A(p) x``, ``dx(T)/dp = L_exp(A T, (dA/dp) T) x0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.linalg as sla
import sympy as sp

import sciode

ALL_MODES = ("adjoint", "checkpoint", "backsolve", "forward", "discrete")


@dataclass
class Problem:
    model: sciode.Model
    cost: object
    y0: object
    t_span: tuple
    params: np.ndarray
    method: str = "dopri5"
    solve_kw: dict = field(default_factory=dict)


@dataclass
class Case:
    name: str
    description: str
    build: Callable[[], Problem]
    reference: Callable[[Problem], tuple] | None = None  # analytic (value, dJ/dp, dJ/dy0)
    modes: tuple = ALL_MODES
    tolerances: tuple = (1e-6, 1e-8, 1e-10)
    grad_tol: float = 1e-6  # relative error allowed at the tightest tolerance
    fast: bool = False
    symbolic_check: Callable[[], list] | None = None  # list of (label, derived, hand) pairs
    reference_tol: float = 1e-12  # rtol of the sensitivity reference
    fd_params_only: bool = False  # FD check of the reference over params only (y0 at a domain edge)

    @property
    def reference_kind(self) -> str:
        return "analytic" if self.reference is not None else "sensitivities+fd"


def _linear_reference(A_of_p, dA, T, x0, weight_terminal):
    """J = 0.5 |x(T)|^2 for x' = A x: value and gradients by expm / expm_frechet."""
    def ref(prob):
        A = A_of_p(prob.params)
        E = sla.expm(A * T)
        xT = E @ x0
        g = np.array([xT @ (sla.expm_frechet(A * T, D * T, compute_expm=False) @ x0) for D in dA(prob.params)])
        return weight_terminal * 0.5 * xT @ xT, weight_terminal * g, weight_terminal * (E.T @ xT)
    return ref


# -- closed forms -------------------------------------------------------------

def exp_decay():
    x, k = sp.symbols("x k")
    m = sciode.Model([x], [-k * x], [k], name="exp_decay")
    return Problem(m, sciode.Cost(terminal=x**2), [1.3], (0.0, 2.0), np.array([0.7]))


def exp_decay_ref(prob):
    x0, k, T = 1.3, prob.params[0], 2.0
    J = x0**2 * np.exp(-2 * k * T)
    return J, np.array([-2 * T * J]), np.array([2 * x0 * np.exp(-2 * k * T)])


def exp_running():
    x, k = sp.symbols("x k")
    m = sciode.Model([x], [-k * x], [k], name="exp_running")
    return Problem(m, sciode.Cost(running=x**2 + k**2), [1.3], (0.0, 2.0), np.array([0.7]))


def exp_running_ref(prob):
    # J = int_0^T x0^2 e^{-2kt} + k^2 dt  (closed form, differentiated by sympy)
    k, x0, T, t = sp.symbols("k x0 T t", positive=True)
    J = sp.integrate(x0**2 * sp.exp(-2 * k * t) + k**2, (t, 0, T))
    vals = {k: prob.params[0], x0: 1.3, T: 2.0}
    return (float(J.subs(vals)), np.array([float(sp.diff(J, k).subs(vals))]),
            np.array([float(sp.diff(J, x0).subs(vals))]))


def logistic():
    x, r, K = sp.symbols("x r K")
    m = sciode.Model([x], [r * x * (1 - x / K)], [r, K], name="logistic")
    return Problem(m, sciode.Cost(terminal=x), [0.1], (0.0, 3.0), np.array([1.2, 2.0]))


def logistic_ref(prob):
    # x(t) = K x0 e^{rt} / (K + x0 (e^{rt} - 1))
    r, K, x0, t = sp.symbols("r K x0 t", positive=True)
    xT = K * x0 * sp.exp(r * t) / (K + x0 * (sp.exp(r * t) - 1))
    vals = {r: prob.params[0], K: prob.params[1], x0: 0.1, t: 3.0}
    ev = lambda e: float(e.subs(vals))  # noqa: E731
    return ev(xT), np.array([ev(sp.diff(xT, r)), ev(sp.diff(xT, K))]), np.array([ev(sp.diff(xT, x0))])


def oscillator():
    x, v, k, c = sp.symbols("x v k c")
    m = sciode.Model([x, v], [v, -k * x - c * v], [k, c], name="damped_oscillator")
    cost = sciode.Cost(terminal=sp.Rational(1, 2) * (x**2 + v**2))
    return Problem(m, cost, [1.0, 0.5], (0.0, 5.0), np.array([4.0, 0.3]))


oscillator_ref = _linear_reference(
    lambda p: np.array([[0.0, 1.0], [-p[0], -p[1]]]),
    lambda p: [np.array([[0.0, 0.0], [-1.0, 0.0]]), np.array([[0.0, 0.0], [0.0, -1.0]])],
    5.0, np.array([1.0, 0.5]), 1.0)


_A3 = np.array([[-0.5, 1.0, 0.2], [-1.0, -0.3, 0.4], [0.1, -0.2, -0.8]])


def linear3():
    xs = sp.symbols("x0:3")
    a = sp.symbols("a0:9")
    A = sp.Matrix(3, 3, a)
    rhs = list(A * sp.Matrix(xs))
    m = sciode.Model(list(xs), rhs, list(a), name="linear3")
    cost = sciode.Cost(terminal=sp.Rational(1, 2) * sum(v**2 for v in xs))
    return Problem(m, cost, [1.0, -0.5, 0.3], (0.0, 2.0), _A3.ravel().copy())


def _unit(i, j):
    E = np.zeros((3, 3))
    E[i, j] = 1.0
    return E


linear3_ref = _linear_reference(lambda p: p.reshape(3, 3), lambda p: [_unit(i, j) for i in range(3) for j in range(3)],
                                2.0, np.array([1.0, -0.5, 0.3]), 1.0)


def lqr_feedback():
    # Closed-loop scalar LQR: x' = (a - b K) x, L = q x^2 + r (K x)^2
    x, a, b, K = sp.symbols("x a b K")
    m = sciode.Model([x], [(a - b * K) * x], [a, b, K], name="lqr_feedback")
    cost = sciode.Cost(running=2 * x**2 + sp.Rational(1, 2) * (K * x) ** 2)
    return Problem(m, cost, [1.5], (0.0, 1.0), np.array([0.5, 1.0, 1.2]))


def lqr_feedback_ref(prob):
    a, b, K, x0, t = sp.symbols("a b K x0 t")
    xt = x0 * sp.exp((a - b * K) * t)
    J = sp.integrate(2 * xt**2 + (K * xt) ** 2 / 2, (t, 0, 1))
    vals = {a: prob.params[0], b: prob.params[1], K: prob.params[2], x0: 1.5}
    ev = lambda e: float(sp.N(e.subs(vals)))  # noqa: E731
    return ev(J), np.array([ev(sp.diff(J, s)) for s in (a, b, K)]), np.array([ev(sp.diff(J, x0))])


def lqr_symbolic():
    x, u, a, b, q, r = sp.symbols("x u a b q r")
    m = sciode.Model([x], [a * x + b * u], [a, b, q, r], controls=[u], name="lqr")
    adj = sciode.symbolic.derive_adjoint(m, sciode.Cost(running=q * x**2 + r * u**2))
    lam = adj.costates[0]
    return [("H", adj.hamiltonian, q * x**2 + r * u**2 + lam * (a * x + b * u)),
            ("lambda'", adj.costate_rhs[0], -2 * q * x - a * lam),
            ("dH/du", adj.control_gradient[0], 2 * r * u + b * lam)]


def param_initial_state():
    x, k, a = sp.symbols("x k a")
    m = sciode.Model([x], [-k * x], [k, a], name="param_initial_state")
    return Problem(m, sciode.Cost(terminal=x**2), [a**2], (0.0, 1.5), np.array([0.4, 2.0]))


def param_initial_state_ref(prob):
    k, a, T = prob.params[0], prob.params[1], 1.5
    J = a**4 * np.exp(-2 * k * T)
    return J, np.array([-2 * T * J, 4 * a**3 * np.exp(-2 * k * T)]), np.array([2 * a**2 * np.exp(-2 * k * T)])


def oscillator_symbolic():
    x, v, k, c = sp.symbols("x v k c")
    m = sciode.Model([x, v], [v, -k * x - c * v], [k, c])
    adj = sciode.symbolic.derive_adjoint(m, sciode.Cost(terminal=x**2, running=v**2 / 10))
    lx, lv = adj.costates
    return [("H", adj.hamiltonian, v**2 / 10 + lx * v + lv * (-k * x - c * v)),
            ("lambda_x'", adj.costate_rhs[0], k * lv),
            ("lambda_v'", adj.costate_rhs[1], -v / 5 - lx + c * lv),
            ("lambda(t1)", sp.Matrix(adj.terminal_costate), sp.Matrix([2 * x, 0])),
            ("dH/dp", sp.Matrix(adj.param_gradient), sp.Matrix([-lv * x, -lv * v]))]


# -- nonlinear problems, referenced by sensitivities + finite differences ------

def _noisy(model, y0, t_span, params, t_obs, sigma, seed, observables=None):
    sol = sciode.solve(model, y0, t_span, params, t_eval=t_obs, rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(seed)
    y = sol.y if observables is None else sol.y[:, :len(observables)]
    return sciode.LeastSquares(t_obs, y + sigma * rng.standard_normal(y.shape), sigma=sigma)


def lotka_volterra():
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d")
    m = sciode.Model([x, y], [a * x - b * x * y, c * x * y - d * y], [a, b, c, d], name="lotka_volterra")
    truth = np.array([1.5, 1.0, 1.0, 3.0])
    data = _noisy(m, [1.0, 1.0], (0.0, 10.0), truth, np.linspace(0.0, 10.0, 21), 0.1, 1)
    return Problem(m, data, [1.0, 1.0], (0.0, 10.0), truth * 1.05)


def fitzhugh_nagumo():
    v, w = sp.symbols("v w")
    a, b, tau, I = sp.symbols("a b tau I")
    m = sciode.Model([v, w], [v - v**3 / 3 - w + I, (v + a - b * w) / tau], [a, b, tau, I], name="fitzhugh_nagumo")
    truth = np.array([0.7, 0.8, 12.5, 0.5])
    data = _noisy(m, [-1.0, 1.0], (0.0, 20.0), truth, np.linspace(0.5, 20.0, 30), 0.05, 2)
    return Problem(m, data, [-1.0, 1.0], (0.0, 20.0), truth * 0.97)


def pendulum():
    th, om = sp.symbols("theta omega")
    g, l, c = sp.symbols("g l c")
    m = sciode.Model([th, om], [om, -g / l * sp.sin(th) - c * om], [g, l, c], name="damped_pendulum")
    return Problem(m, sciode.Cost(terminal=th**2 + om**2 / 10), [1.0, 0.0], (0.0, 5.0), np.array([9.81, 1.0, 0.2]))


def lorenz():
    x, y, z = sp.symbols("x y z")
    s, r, b = sp.symbols("sigma rho beta")
    m = sciode.Model([x, y, z], [s * (y - x), x * (r - z) - y, x * y - b * z], [s, r, b], name="lorenz")
    return Problem(m, sciode.Cost(terminal=z), [1.0, 1.0, 1.0], (0.0, 1.0), np.array([10.0, 28.0, 8 / 3]))


def van_der_pol():
    x, v, mu = sp.symbols("x v mu")
    m = sciode.Model([x, v], [v, mu * (1 - x**2) * v - x], [mu], name="van_der_pol")
    return Problem(m, sciode.Cost(terminal=x**2, running=v**2 / 100), [2.0, 0.0], (0.0, 6.0), np.array([2.0]))


def mlp82():
    """x' = W2 tanh(W1 x + b1) + b2: a 2-16-2 tanh network, 82 parameters."""
    xs = sp.symbols("x0:2")
    W1 = sp.Matrix(16, 2, sp.symbols("W1_0:32"))
    b1 = sp.Matrix(sp.symbols("b1_0:16"))
    W2 = sp.Matrix(2, 16, sp.symbols("W2_0:32"))
    b2 = sp.Matrix(sp.symbols("b2_0:2"))
    hidden = (W1 * sp.Matrix(xs) + b1).applyfunc(sp.tanh)
    rhs = list(W2 * hidden + b2)
    params = [*W1, *b1, *W2, *b2]
    m = sciode.Model(list(xs), rhs, params, name="mlp82")
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.normal(0, 0.5, 32), rng.normal(0, 0.1, 16), rng.normal(0, 0.3, 32), [0.0, 0.0]])
    cost = sciode.Cost(terminal=(xs[0] - 1) ** 2 + xs[1] ** 2)
    return Problem(m, cost, [0.5, -0.5], (0.0, 1.0), p)


def controlled():
    x, u, a = sp.symbols("x u a")
    m = sciode.Model([x], [-a * x + u], [a], controls=[u], name="controlled")
    grid = np.linspace(0.0, 2.0, 5)
    ctrl = sciode.Controls(grid, np.sin(grid)[:, None])
    return Problem(m, sciode.Cost(running=x**2 + u**2, terminal=x**2), [1.0], (0.0, 2.0), np.array([0.8]),
                   solve_kw={"controls": ctrl})


def observations_on_edges():
    x, k = sp.symbols("x k")
    m = sciode.Model([x], [-k * x], [k], name="observation_edges")
    t_obs = np.array([0.0, 0.5, 0.5, 1.0, 2.0])
    y_obs = np.array([[1.0], [0.6], [np.nan], [0.4], [0.2]])
    return Problem(m, sciode.LeastSquares(t_obs, y_obs, sigma=0.1), [1.0], (0.0, 2.0), np.array([0.9]))


def observation_edges_ref(prob):
    k = prob.params[0]
    t = np.array([0.0, 0.5, 1.0, 2.0])
    y = np.array([1.0, 0.6, 0.4, 0.2])
    pred = np.exp(-k * t)
    r = (pred - y) / 0.1
    J = 0.5 * np.sum(r**2)
    dJdk = np.sum(r / 0.1 * (-t * pred))
    dJdx0 = np.sum(r / 0.1 * pred)
    return J, np.array([dJdk]), np.array([dJdx0])


def van_der_pol_stiff(method):
    def build():
        x, v, mu = sp.symbols("x v mu")
        m = sciode.Model([x, v], [v, mu * (1 - x**2) * v - x], [mu], name="van_der_pol_stiff")
        # [0, 500]: the slow branch of the relaxation cycle (period ~1614); across a
        # jump the gradient is ill-conditioned for every method alike
        return Problem(m, sciode.Cost(terminal=x**2 + v**2), [2.0, 0.0], (0.0, 500.0), np.array([1000.0]),
                       method=method)
    return build


def robertson(method):
    def build():
        y1, y2, y3 = sp.symbols("y1 y2 y3")
        l1, l2, l3 = sp.symbols("l1 l2 l3")  # log rate constants
        k1, k2, k3 = sp.exp(l1), sp.exp(l2), sp.exp(l3)
        m = sciode.Model([y1, y2, y3], [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2**2, k2 * y2**2],
                         [l1, l2, l3], name="robertson")
        return Problem(m, sciode.Cost(terminal=y1 + 1e4 * y2), [1.0, 0.0, 0.0], (0.0, 40.0),
                       np.log([0.04, 3e7, 1e4]), method=method)
    return build


STIFF_MODES = ("adjoint", "checkpoint")

CASES = [
    Case("exp_decay", "x' = -k x, Phi = x(T)^2", exp_decay, exp_decay_ref, fast=True),
    Case("exp_running", "x' = -k x, L = x^2 + k^2", exp_running, exp_running_ref),
    Case("logistic", "logistic growth, Phi = x(T)", logistic, logistic_ref, fast=True),
    Case("damped_oscillator", "x'' + c x' + k x = 0 via expm_frechet", oscillator, oscillator_ref,
         symbolic_check=oscillator_symbolic),
    Case("linear3", "x' = A x, 9 entries of A, via expm_frechet", linear3, linear3_ref, fast=True),
    Case("lqr_feedback", "closed-loop scalar LQR, running cost", lqr_feedback, lqr_feedback_ref,
         symbolic_check=lqr_symbolic),
    Case("param_initial_state", "x(0) = a^2 depends on a parameter", param_initial_state,
         param_initial_state_ref),
    Case("observation_edges", "data at t0, t1, repeated times, NaN", observations_on_edges,
         observation_edges_ref, fast=True),
    Case("lotka_volterra", "LV with 21 noisy observations", lotka_volterra, fast=True),
    # Backsolve is left out here on purpose: FHN's attracting limit cycle is
    # repelling backward in time, so re-integrating the state backward blows up
    # (a documented limitation of backsolve; it raises or warns, see
    # tests/test_gradients.py), and adjoint/checkpoint are the workaround.
    Case("fitzhugh_nagumo", "FHN with 30 noisy observations of v and w (no backsolve: unstable backward)",
         fitzhugh_nagumo, modes=("adjoint", "checkpoint", "forward", "discrete")),
    Case("damped_pendulum", "nonlinear pendulum, terminal cost", pendulum),
    Case("lorenz", "Lorenz on [0, 1], Phi = z", lorenz),
    Case("van_der_pol", "Van der Pol mu=2, terminal + running", van_der_pol),
    Case("mlp82", "2-16-2 tanh MLP dynamics, 82 parameters", mlp82, tolerances=(1e-6, 1e-9)),
    Case("controlled", "x' = -a x + u(t), running cost in u", controlled),
    Case("van_der_pol_stiff_rodas4", "Van der Pol mu=1000 on [0, 500], RODAS4", van_der_pol_stiff("rodas4"),
         modes=STIFF_MODES),
    Case("van_der_pol_stiff_kvaerno5", "Van der Pol mu=1000 on [0, 500], Kvaerno5",
         van_der_pol_stiff("kvaerno5"), modes=STIFF_MODES + ("forward",)),
    Case("robertson_rodas4", "Robertson to t=40 in log-rate parameters, RODAS4", robertson("rodas4"),
         modes=STIFF_MODES, fast=True, tolerances=(1e-5, 1e-7, 1e-9), reference_tol=1e-10, grad_tol=1e-5, fd_params_only=True),
    Case("robertson_kvaerno5", "Robertson to t=40 in log-rate parameters, Kvaerno5",
         robertson("kvaerno5"), modes=STIFF_MODES + ("forward",), tolerances=(1e-5, 1e-7, 1e-9),
         reference_tol=1e-10, grad_tol=1e-5, fd_params_only=True),
]
