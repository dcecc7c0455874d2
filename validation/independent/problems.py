"""Every validation problem, written by hand in NumPy with its derivatives.

Each function returns an ``engine.Spec``: the right-hand side, its Jacobians
with respect to states, parameters and controls, the cost pieces and their
derivatives, and the numbers (initial state, span, parameters, data).  The
SymPy declarations in ``validation/cases.py`` take their *numbers* from here
and write their *equations* again, independently; a transcription slip on
either side shows up as a disagreement, never as a shared error.

Functions accept complex arguments (the complex-step route): no ``abs``, no
``float()``, arrays built with the inputs' dtype.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from .engine import Data, Objective, Spec, System

__all__ = ["SPECS"]


def _zeros(n, *args):
    return np.zeros(n, dtype=np.result_type(*args))


def _stack(rows):
    return np.array(rows, dtype=np.result_type(*[np.asarray(v) for r in rows for v in r]))


# -- scalar decay family ---------------------------------------------------------

def _decay_system():
    return System(1, 1, f=lambda t, x, p, w: -p[0] * x,
                  f_y=lambda t, x, p, w: -p[0] * np.ones((1, 1)),
                  f_p=lambda t, x, p, w: (-x).reshape(1, 1))


def exp_decay():
    obj = Objective(phi=lambda x, p: x[0] ** 2, phi_y=lambda x, p: 2 * x, phi_p=lambda x, p: np.zeros(1))
    return Spec(_decay_system(), obj, [1.3], (0.0, 2.0), np.array([0.7]))


def exp_running():
    obj = Objective(L=lambda t, x, p, w: x[0] ** 2 + p[0] ** 2, L_y=lambda t, x, p, w: 2 * x,
                    L_p=lambda t, x, p, w: 2 * p)
    return Spec(_decay_system(), obj, [1.3], (0.0, 2.0), np.array([0.7]))


def param_terminal():
    """``Phi = k x(T)^2``: the terminal cost depends on a parameter (``dPhi/dp != 0``)."""
    obj = Objective(phi=lambda x, p: p[0] * x[0] ** 2, phi_y=lambda x, p: 2 * p[0] * x,
                    phi_p=lambda x, p: x**2)
    return Spec(_decay_system(), obj, [1.3], (0.0, 2.0), np.array([0.7]))


def param_initial_state():
    """``x(0) = a^2``: the initial state is a function of the parameter ``a``."""
    sysm = System(1, 2, f=lambda t, x, p, w: -p[0] * x, f_y=lambda t, x, p, w: -p[0] * np.ones((1, 1)),
                  f_p=lambda t, x, p, w: _stack([[-x[0], 0.0 * x[0]]]))
    obj = Objective(phi=lambda x, p: x[0] ** 2, phi_y=lambda x, p: 2 * x, phi_p=lambda x, p: np.zeros(2))
    return Spec(sysm, obj, lambda p: (np.array([p[1] ** 2]), np.array([[0.0, 2 * p[1]]])), (0.0, 1.5),
                np.array([0.4, 2.0]))


def observation_edges():
    """Data at ``t0``, at ``t1``, twice at one time (once NaN)."""
    t_obs = np.array([0.0, 0.5, 0.5, 1.0, 2.0])
    y_obs = np.array([[1.0], [0.6], [np.nan], [0.4], [0.2]])
    obj = Objective(data=(Data(t_obs, y_obs, np.array([0.1])),))
    return Spec(_decay_system(), obj, [1.0], (0.0, 2.0), np.array([0.9]))


def logistic():
    def f(t, x, p, w):
        return p[0] * x * (1 - x / p[1])

    sysm = System(1, 2, f, f_y=lambda t, x, p, w: (p[0] * (1 - 2 * x / p[1])).reshape(1, 1),
                  f_p=lambda t, x, p, w: _stack([[x[0] * (1 - x[0] / p[1]), p[0] * x[0] ** 2 / p[1] ** 2]]))
    obj = Objective(phi=lambda x, p: x[0], phi_y=lambda x, p: np.ones(1), phi_p=lambda x, p: np.zeros(2))
    return Spec(sysm, obj, [0.1], (0.0, 3.0), np.array([1.2, 2.0]))


# -- linear systems ----------------------------------------------------------------

def damped_oscillator():
    sysm = System(2, 2, f=lambda t, x, p, w: _stack([[x[1]], [-p[0] * x[0] - p[1] * x[1]]])[:, 0],
                  f_y=lambda t, x, p, w: _stack([[0.0, 1.0], [-p[0], -p[1]]]),
                  f_p=lambda t, x, p, w: _stack([[0.0 * x[0], 0.0 * x[0]], [-x[0], -x[1]]]))
    obj = Objective(phi=lambda x, p: 0.5 * (x[0] ** 2 + x[1] ** 2), phi_y=lambda x, p: x.copy(),
                    phi_p=lambda x, p: np.zeros(2))
    return Spec(sysm, obj, [1.0, 0.5], (0.0, 5.0), np.array([4.0, 0.3]))


A3 = np.array([[-0.5, 1.0, 0.2], [-1.0, -0.3, 0.4], [0.1, -0.2, -0.8]])


def linear3():
    """``x' = A x`` with the nine entries of ``A`` (row-major) as parameters."""
    def f_p(t, x, p, w):
        out = np.zeros((3, 9), dtype=x.dtype)
        for i in range(3):
            out[i, 3 * i:3 * i + 3] = x
        return out

    sysm = System(3, 9, f=lambda t, x, p, w: p.reshape(3, 3) @ x, f_y=lambda t, x, p, w: p.reshape(3, 3),
                  f_p=f_p)
    obj = Objective(phi=lambda x, p: 0.5 * np.sum(x * x), phi_y=lambda x, p: x.copy(),
                    phi_p=lambda x, p: np.zeros(9))
    return Spec(sysm, obj, [1.0, -0.5, 0.3], (0.0, 2.0), A3.ravel().copy())


def lqr_feedback():
    """``x' = (a - b K) x``, ``L = 2 x^2 + (K x)^2 / 2``."""
    sysm = System(1, 3, f=lambda t, x, p, w: (p[0] - p[1] * p[2]) * x,
                  f_y=lambda t, x, p, w: (p[0] - p[1] * p[2]).reshape(1, 1),
                  f_p=lambda t, x, p, w: _stack([[x[0], -p[2] * x[0], -p[1] * x[0]]]))
    obj = Objective(L=lambda t, x, p, w: 2 * x[0] ** 2 + 0.5 * (p[2] * x[0]) ** 2,
                    L_y=lambda t, x, p, w: (4 + p[2] ** 2) * x,
                    L_p=lambda t, x, p, w: _stack([[0.0 * x[0], 0.0 * x[0], p[2] * x[0] ** 2]])[0])
    return Spec(sysm, obj, [1.5], (0.0, 1.0), np.array([0.5, 1.0, 1.2]))


# -- nonlinear problems --------------------------------------------------------------

def _lv_f(t, x, p, w):
    a, b, c, d = p
    return _stack([[a * x[0] - b * x[0] * x[1]], [c * x[0] * x[1] - d * x[1]]])[:, 0]


LV_TRUTH = np.array([1.5, 1.0, 1.0, 3.0])


def _synthetic(f, y0, t_span, p, t_obs, sigma, seed):
    """Noisy observations of every state, from SciPy at rtol 1e-12, seeded."""
    sol = solve_ivp(lambda t, x: f(t, x, p, None), t_span, np.asarray(y0, float), method="DOP853",
                    t_eval=t_obs, rtol=1e-12, atol=1e-12)
    y = sol.y.T
    return y + sigma * np.random.default_rng(seed).standard_normal(y.shape)


def lotka_volterra():
    def f_y(t, x, p, w):
        a, b, c, d = p
        return _stack([[a - b * x[1], -b * x[0]], [c * x[1], c * x[0] - d]])

    def f_p(t, x, p, w):
        z = 0.0 * x[0]
        return _stack([[x[0], -x[0] * x[1], z, z], [z, z, x[0] * x[1], -x[1]]])

    t_obs = np.linspace(0.0, 10.0, 21)
    y_obs = _synthetic(_lv_f, [1.0, 1.0], (0.0, 10.0), LV_TRUTH, t_obs, 0.1, 1)
    obj = Objective(data=(Data(t_obs, y_obs, np.array([0.1, 0.1])),))
    return Spec(System(2, 4, _lv_f, f_y, f_p), obj, [1.0, 1.0], (0.0, 10.0), LV_TRUTH * 1.05)


FHN_TRUTH = np.array([0.7, 0.8, 12.5, 0.5])


def _fhn_f(t, x, p, w):
    a, b, tau, current = p
    v, u = x
    return _stack([[v - v**3 / 3 - u + current], [(v + a - b * u) / tau]])[:, 0]


def fitzhugh_nagumo():
    def f_y(t, x, p, w):
        a, b, tau, current = p
        return _stack([[1 - x[0] ** 2, -1.0], [1 / tau, -b / tau]])

    def f_p(t, x, p, w):
        a, b, tau, current = p
        v, u = x
        z = 0.0 * v
        return _stack([[z, z, z, z + 1.0], [1 / tau + z, -u / tau, -(v + a - b * u) / tau**2, z]])

    t_obs = np.linspace(0.5, 20.0, 30)
    y_obs = _synthetic(_fhn_f, [-1.0, 1.0], (0.0, 20.0), FHN_TRUTH, t_obs, 0.05, 2)
    obj = Objective(data=(Data(t_obs, y_obs, np.array([0.05, 0.05])),))
    return Spec(System(2, 4, _fhn_f, f_y, f_p), obj, [-1.0, 1.0], (0.0, 20.0), FHN_TRUTH * 0.97)


def damped_pendulum():
    def f(t, x, p, w):
        g, length, c = p
        return _stack([[x[1]], [-g / length * np.sin(x[0]) - c * x[1]]])[:, 0]

    def f_y(t, x, p, w):
        g, length, c = p
        return _stack([[0.0 * x[0], 1.0 + 0.0 * x[0]], [-g / length * np.cos(x[0]), -c + 0.0 * x[0]]])

    def f_p(t, x, p, w):
        g, length, c = p
        z = 0.0 * x[0]
        s = np.sin(x[0])
        return _stack([[z, z, z], [-s / length, g * s / length**2, -x[1]]])

    obj = Objective(phi=lambda x, p: x[0] ** 2 + x[1] ** 2 / 10, phi_y=lambda x, p: _stack([[2 * x[0], x[1] / 5]])[0],
                    phi_p=lambda x, p: np.zeros(3))
    return Spec(System(2, 3, f, f_y, f_p), obj, [1.0, 0.0], (0.0, 5.0), np.array([9.81, 1.0, 0.2]))


def lorenz():
    def f(t, x, p, w):
        s, r, b = p
        return _stack([[s * (x[1] - x[0])], [x[0] * (r - x[2]) - x[1]], [x[0] * x[1] - b * x[2]]])[:, 0]

    def f_y(t, x, p, w):
        s, r, b = p
        z = 0.0 * x[0]
        return _stack([[-s + z, s + z, z], [r - x[2], z - 1.0, -x[0]], [x[1], x[0], -b + z]])

    def f_p(t, x, p, w):
        z = 0.0 * x[0]
        return _stack([[x[1] - x[0], z, z], [z, x[0], z], [z, z, -x[2]]])

    obj = Objective(phi=lambda x, p: x[2], phi_y=lambda x, p: np.array([0.0, 0.0, 1.0]),
                    phi_p=lambda x, p: np.zeros(3))
    return Spec(System(3, 3, f, f_y, f_p), obj, [1.0, 1.0, 1.0], (0.0, 1.0), np.array([10.0, 28.0, 8 / 3]))


def _vdp_system():
    def f(t, x, p, w):
        return _stack([[x[1]], [p[0] * (1 - x[0] ** 2) * x[1] - x[0]]])[:, 0]

    def f_y(t, x, p, w):
        mu = p[0]
        return _stack([[0.0 * x[0], 1.0 + 0.0 * x[0]], [-2 * mu * x[0] * x[1] - 1, mu * (1 - x[0] ** 2)]])

    def f_p(t, x, p, w):
        return _stack([[0.0 * x[0]], [(1 - x[0] ** 2) * x[1]]])

    return System(2, 1, f, f_y, f_p)


def van_der_pol():
    obj = Objective(phi=lambda x, p: x[0] ** 2, phi_y=lambda x, p: _stack([[2 * x[0], 0.0 * x[0]]])[0],
                    phi_p=lambda x, p: np.zeros(1),
                    L=lambda t, x, p, w: x[1] ** 2 / 100, L_y=lambda t, x, p, w: _stack([[0.0 * x[1], x[1] / 50]])[0],
                    L_p=lambda t, x, p, w: np.zeros(1))
    return Spec(_vdp_system(), obj, [2.0, 0.0], (0.0, 6.0), np.array([2.0]))


def van_der_pol_stiff():
    """mu = 1000 on [0, 500]: the slow branch of the relaxation cycle (period ~1614)."""
    obj = Objective(phi=lambda x, p: x[0] ** 2 + x[1] ** 2, phi_y=lambda x, p: 2 * x,
                    phi_p=lambda x, p: np.zeros(1))
    return Spec(_vdp_system(), obj, [2.0, 0.0], (0.0, 500.0), np.array([1000.0]), stiff=True)


MLP_HIDDEN = 16


def mlp_params():
    """The 82 parameters ``[W1 (16x2, row-major), b1, W2 (2x16, row-major), b2]``."""
    rng = np.random.default_rng(3)
    return np.concatenate([rng.normal(0, 0.5, 32), rng.normal(0, 0.1, 16), rng.normal(0, 0.3, 32), [0.0, 0.0]])


def _mlp_unpack(p):
    H = MLP_HIDDEN
    return p[:2 * H].reshape(H, 2), p[2 * H:3 * H], p[3 * H:5 * H].reshape(2, H), p[5 * H:5 * H + 2]


def mlp82():
    """``x' = W2 tanh(W1 x + b1) + b2``; derivatives by the chain rule, written out."""
    H = MLP_HIDDEN

    def f(t, x, p, w):
        W1, b1, W2, b2 = _mlp_unpack(p)
        return W2 @ np.tanh(W1 @ x + b1) + b2

    def f_y(t, x, p, w):
        W1, b1, W2, _ = _mlp_unpack(p)
        s = 1 - np.tanh(W1 @ x + b1) ** 2
        return (W2 * s[None, :]) @ W1

    def f_p(t, x, p, w):
        W1, b1, W2, _ = _mlp_unpack(p)
        h = np.tanh(W1 @ x + b1)
        G = W2 * (1 - h**2)[None, :]  # d f / d (W1 x + b1), (2, H)
        out = np.zeros((2, 5 * H + 2), dtype=np.result_type(x, p))
        out[:, :2 * H] = (G[:, :, None] * x[None, None, :]).reshape(2, 2 * H)  # dW1[a, b] = G[:, a] x[b]
        out[:, 2 * H:3 * H] = G
        out[0, 3 * H:4 * H] = h  # dW2[i, a] = delta_i h[a]
        out[1, 4 * H:5 * H] = h
        out[:, 5 * H:] = np.eye(2)
        return out

    obj = Objective(phi=lambda x, p: (x[0] - 1) ** 2 + x[1] ** 2,
                    phi_y=lambda x, p: _stack([[2 * (x[0] - 1), 2 * x[1]]])[0],
                    phi_p=lambda x, p: np.zeros(5 * H + 2))
    return Spec(System(2, 5 * H + 2, f, f_y, f_p), obj, [0.5, -0.5], (0.0, 1.0), mlp_params())


def controlled():
    """``x' = -a x + u(t)``, ``u`` piecewise linear on 5 grid points; ``L = x^2 + u^2``, ``Phi = x^2``."""
    sysm = System(1, 1, f=lambda t, x, p, w: -p[0] * x + w[0],
                  f_y=lambda t, x, p, w: -p[0] * np.ones((1, 1)),
                  f_p=lambda t, x, p, w: (-x).reshape(1, 1),
                  f_w=lambda t, x, p, w: np.ones((1, 1)), n_w=1)
    obj = Objective(phi=lambda x, p: x[0] ** 2, phi_y=lambda x, p: 2 * x, phi_p=lambda x, p: np.zeros(1),
                    L=lambda t, x, p, w: x[0] ** 2 + w[0] ** 2, L_y=lambda t, x, p, w: 2 * x,
                    L_p=lambda t, x, p, w: np.zeros(1), L_w=lambda t, x, p, w: 2 * w)
    grid = np.linspace(0.0, 2.0, 5)
    return Spec(sysm, obj, [1.0], (0.0, 2.0), np.array([0.8]), controls=(grid, np.sin(grid)[:, None]))


def robertson():
    """Robertson's kinetics with log rate constants ``l = log(k)``, ``Phi = y1 + 1e4 y2``."""
    def f(t, y, p, w):
        k1, k2, k3 = np.exp(p)
        r1, r2, r3 = k1 * y[0], k2 * y[1] ** 2, k3 * y[1] * y[2]
        return _stack([[-r1 + r3], [r1 - r3 - r2], [r2]])[:, 0]

    def f_y(t, y, p, w):
        k1, k2, k3 = np.exp(p)
        z = 0.0 * y[0]
        return _stack([[-k1 + z, k3 * y[2], k3 * y[1]],
                       [k1 + z, -k3 * y[2] - 2 * k2 * y[1], -k3 * y[1]],
                       [z, 2 * k2 * y[1], z]])

    def f_p(t, y, p, w):
        k1, k2, k3 = np.exp(p)
        r1, r2, r3 = k1 * y[0], k2 * y[1] ** 2, k3 * y[1] * y[2]  # d r / d l = r
        z = 0.0 * r1
        return _stack([[-r1, z, r3], [r1, -r2, -r3], [z, r2, z]])

    obj = Objective(phi=lambda y, p: y[0] + 1e4 * y[1], phi_y=lambda y, p: np.array([1.0, 1e4, 0.0]),
                    phi_p=lambda y, p: np.zeros(3))
    return Spec(System(3, 3, f, f_y, f_p), obj, [1.0, 0.0, 0.0], (0.0, 40.0), np.log([0.04, 3e7, 1e4]),
                stiff=True, atol_scale=1e-4)


#: case name -> hand-written reference problem
SPECS = {
    "exp_decay": exp_decay,
    "exp_running": exp_running,
    "logistic": logistic,
    "damped_oscillator": damped_oscillator,
    "linear3": linear3,
    "lqr_feedback": lqr_feedback,
    "param_terminal": param_terminal,
    "param_initial_state": param_initial_state,
    "observation_edges": observation_edges,
    "lotka_volterra": lotka_volterra,
    "fitzhugh_nagumo": fitzhugh_nagumo,
    "damped_pendulum": damped_pendulum,
    "lorenz": lorenz,
    "van_der_pol": van_der_pol,
    "mlp82": mlp82,
    "controlled": controlled,
    "van_der_pol_stiff": van_der_pol_stiff,
    "robertson": robertson,
}
