"""Closed-form values and gradients for the cases that have one.

Each function takes the case's ``engine.Spec`` (for its numbers only) and
returns an ``engine.Gradient``.  Sources:

- ``x' = -k x``: ``x(t) = x0 e^{-kt}``;
- logistic growth: ``x(t) = K x0 e^{rt} / (K + x0 (e^{rt} - 1))``
  (Verhulst's solution), differentiated by SymPy;
- linear systems ``x' = A(p) x``: ``x(T) = expm(A T) x0`` and
  ``dx(T)/dp = L_exp(A T, (dA/dp) T) x0`` with the Frechet derivative of the
  matrix exponential (``scipy.linalg.expm_frechet``; Al-Mohy & Higham 2009);
- scalar closed-loop LQR: the running cost integrated by SymPy in closed form.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import sympy as sp

from .engine import Gradient

__all__ = ["CLOSED_FORMS"]


def _grad(value, g_p, g_y):
    return Gradient(float(value), np.asarray(g_p, float), np.asarray(g_y, float), None, "closed form")


def exp_decay(spec):
    x0, k, T = spec.y0[0], spec.params[0], spec.t_span[1]
    J = x0**2 * np.exp(-2 * k * T)
    return _grad(J, [-2 * T * J], [2 * x0 * np.exp(-2 * k * T)])


def param_terminal(spec):
    # J = k x0^2 e^{-2kT}
    x0, k, T = spec.y0[0], spec.params[0], spec.t_span[1]
    e = np.exp(-2 * k * T)
    return _grad(k * x0**2 * e, [x0**2 * e * (1 - 2 * k * T)], [2 * k * x0 * e])


def exp_running(spec):
    # J = int_0^T x0^2 e^{-2kt} + k^2 dt
    k, x0, T, t = sp.symbols("k x0 T t", positive=True)
    J = sp.integrate(x0**2 * sp.exp(-2 * k * t) + k**2, (t, 0, T))
    vals = {k: spec.params[0], x0: spec.y0[0], T: spec.t_span[1]}
    return _grad(float(J.subs(vals)), [float(sp.diff(J, k).subs(vals))], [float(sp.diff(J, x0).subs(vals))])


def logistic(spec):
    r, K, x0, t = sp.symbols("r K x0 t", positive=True)
    xT = K * x0 * sp.exp(r * t) / (K + x0 * (sp.exp(r * t) - 1))
    vals = {r: spec.params[0], K: spec.params[1], x0: spec.y0[0], t: spec.t_span[1]}
    ev = lambda e: float(e.subs(vals))
    return _grad(ev(xT), [ev(sp.diff(xT, r)), ev(sp.diff(xT, K))], [ev(sp.diff(xT, x0))])


def _linear(A, dA, T, x0):
    """``J = |x(T)|^2 / 2`` for ``x' = A x``: value and gradients by expm / expm_frechet."""
    E = sla.expm(A * T)
    xT = E @ x0
    g = [xT @ (sla.expm_frechet(A * T, D * T, compute_expm=False) @ x0) for D in dA]
    return _grad(0.5 * xT @ xT, g, E.T @ xT)


def damped_oscillator(spec):
    k, c = spec.params
    dA = [np.array([[0.0, 0.0], [-1.0, 0.0]]), np.array([[0.0, 0.0], [0.0, -1.0]])]
    return _linear(np.array([[0.0, 1.0], [-k, -c]]), dA, spec.t_span[1], np.asarray(spec.y0, float))


def linear3(spec):
    units = []
    for i in range(3):
        for j in range(3):
            E = np.zeros((3, 3))
            E[i, j] = 1.0
            units.append(E)
    return _linear(spec.params.reshape(3, 3), units, spec.t_span[1], np.asarray(spec.y0, float))


def lqr_feedback(spec):
    a, b, K, x0, t = sp.symbols("a b K x0 t")
    xt = x0 * sp.exp((a - b * K) * t)
    J = sp.integrate(2 * xt**2 + (K * xt) ** 2 / 2, (t, 0, spec.t_span[1]))
    vals = {a: spec.params[0], b: spec.params[1], K: spec.params[2], x0: spec.y0[0]}
    ev = lambda e: float(sp.N(e.subs(vals)))
    return _grad(ev(J), [ev(sp.diff(J, s)) for s in (a, b, K)], [ev(sp.diff(J, x0))])


def param_initial_state(spec):
    k, a, T = spec.params[0], spec.params[1], spec.t_span[1]
    J = a**4 * np.exp(-2 * k * T)
    return _grad(J, [-2 * T * J, 4 * a**3 * np.exp(-2 * k * T)], [2 * a**2 * np.exp(-2 * k * T)])


def observation_edges(spec):
    (data,) = spec.objective.data
    k, x0, sigma = spec.params[0], spec.y0[0], data.sigma[0]
    obs = ~np.isnan(data.y_obs[:, 0])
    t, y = data.t_obs[obs], data.y_obs[obs, 0]
    pred = x0 * np.exp(-k * t)
    r = (pred - y) / sigma
    return _grad(0.5 * np.sum(r**2), [np.sum(r / sigma * (-t * pred))], [np.sum(r / sigma * pred / x0)])


#: case name -> closed form
CLOSED_FORMS = {
    "exp_decay": exp_decay,
    "param_terminal": param_terminal,
    "exp_running": exp_running,
    "logistic": logistic,
    "damped_oscillator": damped_oscillator,
    "linear3": linear3,
    "lqr_feedback": lqr_feedback,
    "param_initial_state": param_initial_state,
    "observation_edges": observation_edges,
}
