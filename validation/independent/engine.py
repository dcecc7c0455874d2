"""SciPy references for hand-written systems: forward sensitivities and complex step.

A reference problem is a hand-written system (``System``: ``f`` and its
derivatives ``f_y``, ``f_p``, ``f_w``), an objective (``Objective``: terminal,
running and least-squares data terms with their derivatives), an initial state
(possibly a function of the parameters) and optional piecewise-linear controls.
Its cost is

    J(p, x0, V) = Phi(x(t1), p) + int_{t0}^{t1} L(t, x, p, w(t)) dt
                  + sum_k 0.5 sum_j ((h_j(x(t_k), p) - d_kj) / sigma_j)^2

with ``w(t) = sum_i V_i phi_i(t)`` (hat functions on the control grid, held
constant outside it).  Two routes give ``dJ/dtheta``, ``theta = (p, x0, V)``,
sharing nothing but ``f``:

1. ``forward_sensitivities``: integrate ``x' = f``, ``S' = f_y S + [f_p, 0, f_w dw/dV]``
   (``S = dx/dtheta``, ``S(t0) = [0, I, 0]``) and the quadratures
   ``q' = L``, ``g' = L_y S + [L_p, 0, L_w dw/dV]`` with SciPy, then
   ``dJ/dtheta = Phi_y S(t1) + [Phi_p, 0, 0] + g(t1) + sum_k r_k/sigma (h_y S(t_k) + [h_p, 0, 0])``.
   This uses the hand-written derivatives.
2. ``complex_step``: ``dJ/dtheta_k = Im J(theta + i h e_k) / h`` with ``h = 1e-30``,
   the same SciPy integration run in complex arithmetic (no subtraction, so
   no cancellation: the derivative of the discrete solution to round-off).
   This uses ``f`` only, so it checks the hand-written derivatives of route 1.

The integration is split at observation times and control grid points, so the
kinks of ``w`` and the data terms never fall inside a step.  When
``x0 = x0(p)``, ``dJ/dp`` gains ``(dx0/dp)^T dJ/dx0``, as in sciode's convention
(``grad_y0`` is ``dJ/dx0``).

Nothing here imports sciode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

__all__ = [
    "Data",
    "Gradient",
    "Objective",
    "Spec",
    "System",
    "complex_step",
    "complex_step_jacobian",
    "forward_sensitivities",
    "rel_error",
    "rk4_complex_step",
]


@dataclass(frozen=True)
class System:
    """``x' = f(t, x, p, w)`` with hand-written ``f_y`` (n, n), ``f_p`` (n, n_p), ``f_w`` (n, n_w)."""

    n: int
    n_p: int
    f: Callable
    f_y: Callable
    f_p: Callable
    f_w: Callable | None = None
    n_w: int = 0


@dataclass(frozen=True)
class Data:
    """Least-squares term: ``0.5 sum ((h(x(t_k), p) - y_obs[k]) / sigma)^2`` over observed entries.

    ``h``, ``h_y``, ``h_p`` default to observing every state."""

    t_obs: np.ndarray
    y_obs: np.ndarray
    sigma: np.ndarray
    h: Callable | None = None
    h_y: Callable | None = None
    h_p: Callable | None = None


@dataclass(frozen=True)
class Objective:
    """Terminal ``Phi(x, p)``, running ``L(t, x, p, w)`` and data terms, with their derivatives."""

    phi: Callable | None = None
    phi_y: Callable | None = None
    phi_p: Callable | None = None
    L: Callable | None = None
    L_y: Callable | None = None
    L_p: Callable | None = None
    L_w: Callable | None = None
    data: tuple = ()


@dataclass(frozen=True)
class Spec:
    """A complete reference problem.

    ``y0`` is an array, or a callable ``p -> (x0, dx0/dp)``.  ``controls`` is
    ``(t_grid, values)`` with ``values`` of shape ``(n_grid, n_w)``, or None.
    ``stiff`` selects Radau (with the hand-written Jacobian) instead of DOP853.
    """

    system: System
    objective: Objective
    y0: object
    t_span: tuple
    params: np.ndarray
    controls: tuple | None = None
    stiff: bool = False
    atol_scale: float = 1.0  # absolute tolerance = rtol * atol_scale

    def initial_state(self, p):
        if callable(self.y0):
            return self.y0(p)
        return np.asarray(self.y0, dtype=float), None


@dataclass
class Gradient:
    """Value and gradient blocks of a reference computation."""

    value: float
    params: np.ndarray
    y0: np.ndarray
    controls: np.ndarray | None
    route: str
    info: dict = field(default_factory=dict)

    def blocks(self) -> dict:
        out = {"params": self.params, "y0": self.y0}
        if self.controls is not None:
            out["controls"] = self.controls
        return out


def rel_error(g, ref) -> float:
    """Norm-wise relative error ``max |g - ref| / max |ref|``."""
    g, ref = np.asarray(g), np.asarray(ref)
    return float(np.max(np.abs(g - ref), initial=0.0) / max(np.max(np.abs(ref), initial=0.0), 1e-300))


# -- piecewise-linear controls ------------------------------------------------

def _hat_weights(t, grid):
    """``phi_i(t)`` for every grid point: ``w(t) = phi(t) @ values`` (np.interp's rule)."""
    phi = np.zeros(grid.size)
    if grid.size == 1 or t <= grid[0]:
        phi[0] = 1.0
    elif t >= grid[-1]:
        phi[-1] = 1.0
    else:
        i = int(np.searchsorted(grid, t, side="right")) - 1
        s = (t - grid[i]) / (grid[i + 1] - grid[i])
        phi[i], phi[i + 1] = 1.0 - s, s
    return phi


class _Controls:
    def __init__(self, controls, values=None):
        if controls is None:
            self.grid, self.values = np.zeros(1), np.zeros((1, 0))
        else:
            self.grid = np.asarray(controls[0], dtype=float)
            self.values = np.asarray(controls[1] if values is None else values)
        self.n_w = self.values.shape[1]

    def w(self, t):
        return _hat_weights(t, self.grid) @ self.values

    def dw_dV(self, t):
        """``dw/dV`` as (n_w, n_grid * n_w), ``V`` flattened row-major (grid-major)."""
        phi = _hat_weights(t, self.grid)
        return np.kron(phi[None, :], np.eye(self.n_w))


# -- the segmented integration -------------------------------------------------

def _stops(spec: Spec):
    t0, t1 = spec.t_span
    pts = [t0, t1]
    for d in spec.objective.data:
        pts += list(np.asarray(d.t_obs, dtype=float))
    if spec.controls is not None:
        pts += [t for t in np.asarray(spec.controls[0], dtype=float) if t0 < t < t1]
    return np.unique(np.asarray(pts, dtype=float))


def _integrate(spec, rhs, jac, z0, rtol, atol, stops, stiff_method="Radau"):
    """Integrate ``z' = rhs(t, z)`` through ``stops``; returns ``{t: z(t)}`` and the step count."""
    out = {float(stops[0]): z0}
    z, steps = z0, 0
    method = stiff_method if spec.stiff else "DOP853"
    for a, b in zip(stops[:-1], stops[1:]):
        kw = {"jac": jac} if spec.stiff else {}
        sol = solve_ivp(rhs, (a, b), z, method=method, rtol=rtol, atol=atol, **kw)
        if sol.status != 0:
            raise RuntimeError(f"SciPy {method} failed on [{a}, {b}]: {sol.message}")
        z = sol.y[:, -1]
        steps += sol.t.size - 1
        out[float(b)] = z
    return out, steps


def _data_value(spec, states, p):
    J = 0.0
    for d in spec.objective.data:
        for k, t in enumerate(np.asarray(d.t_obs, dtype=float)):
            x = states[float(t)]
            h = x if d.h is None else d.h(x, p)
            obs = ~np.isnan(d.y_obs[k])
            r = (h[obs] - d.y_obs[k][obs]) / np.asarray(d.sigma)[obs]
            J = J + 0.5 * np.sum(r * r)
    return J


def cost_value(spec: Spec, p, x0, values=None, rtol=1e-13):
    """``J`` at ``(p, x0, V)`` (complex inputs allowed: the complex-step route)."""
    sysm, obj = spec.system, spec.objective
    ctrl = _Controls(spec.controls, values)
    n = sysm.n
    dtype = np.result_type(p, x0, ctrl.values)

    def rhs(t, z):
        w = ctrl.w(t)
        x = z[:n]
        dz = np.zeros(n + 1, dtype=dtype)
        dz[:n] = sysm.f(t, x, p, w)
        if obj.L is not None:
            dz[n] = obj.L(t, x, p, w)
        return dz

    def jac(t, z):
        Jm = np.zeros((n + 1, n + 1), dtype=dtype)
        Jm[:n, :n] = sysm.f_y(t, z[:n], p, ctrl.w(t))
        return Jm

    z0 = np.zeros(n + 1, dtype=dtype)
    z0[:n] = x0
    atol = rtol * spec.atol_scale
    # stiff: SciPy's BDF, the one implicit SciPy method that runs in complex
    # arithmetic (Radau does not), and a second integrator beside route 1's Radau
    traj, steps = _integrate(spec, rhs, jac, z0, rtol, atol, _stops(spec), stiff_method="BDF")
    zT = traj[float(spec.t_span[1])]
    states = {t: z[:n] for t, z in traj.items()}
    J = zT[n] + _data_value(spec, states, p)
    if obj.phi is not None:
        J = J + obj.phi(zT[:n], p)
    return J, steps


def forward_sensitivities(spec: Spec, rtol: float = 1e-13) -> Gradient:
    """Route 1: value and ``dJ/d(p, x0, V)`` from the hand-written sensitivity system."""
    sysm, obj = spec.system, spec.objective
    p = np.asarray(spec.params, dtype=float)
    x0, dx0dp = spec.initial_state(p)
    ctrl = _Controls(spec.controls)
    n, n_p = sysm.n, sysm.n_p
    n_v = ctrl.values.size if spec.controls is not None else 0
    K = n_p + n + n_v
    i_S, i_q, i_g = n, n + n * K, n + n * K + 1
    size = i_g + K

    def forcing(t, x, w, dx_p, dx_w, d_p=None, d_w=None):
        """``[d_p, 0, d_w dw/dV]`` as a (rows, K) block."""
        rows = dx_p.shape[0]
        B = np.zeros((rows, K))
        B[:, :n_p] = dx_p
        if n_v:
            B[:, n_p + n:] = dx_w @ ctrl.dw_dV(t)
        return B

    def rhs(t, z):
        w = ctrl.w(t)
        x = z[:n]
        S = z[i_S:i_q].reshape(n, K)
        dz = np.empty(size)
        dz[:n] = sysm.f(t, x, p, w)
        fw = sysm.f_w(t, x, p, w) if n_v else None
        dz[i_S:i_q] = (sysm.f_y(t, x, p, w) @ S + forcing(t, x, w, sysm.f_p(t, x, p, w), fw)).ravel()
        if obj.L is not None:
            dz[i_q] = obj.L(t, x, p, w)
            Lw = obj.L_w(t, x, p, w)[None, :] if n_v else None
            dz[i_g:] = obj.L_y(t, x, p, w) @ S + forcing(t, x, w, obj.L_p(t, x, p, w)[None, :], Lw)[0]
        else:
            dz[i_q:] = 0.0
        return dz

    def jac(t, z):
        # Newton matrix only: block-diagonal in S (the second derivatives of f that
        # couple S to x are left out; Radau's simplified Newton converges to the
        # same solution, the Jacobian only sets how fast).
        fy = sysm.f_y(t, z[:n], p, ctrl.w(t))
        Jm = np.zeros((size, size))
        Jm[:n, :n] = fy
        Jm[i_S:i_q, i_S:i_q] = np.kron(fy, np.eye(K))
        return Jm

    z0 = np.zeros(size)
    z0[:n] = x0
    z0[i_S:i_q] = np.hstack([np.zeros((n, n_p)), np.eye(n), np.zeros((n, n_v))]).ravel()
    atol = np.full(size, rtol * spec.atol_scale)
    traj, steps = _integrate(spec, rhs, jac, z0, rtol, atol, _stops(spec))
    zT = traj[float(spec.t_span[1])]
    xT, ST = zT[:n], zT[i_S:i_q].reshape(n, K)
    value = zT[i_q]
    grad = zT[i_g:].copy()
    if obj.phi is not None:
        value += obj.phi(xT, p)
        grad += obj.phi_y(xT, p) @ ST
        grad[:n_p] += obj.phi_p(xT, p)
    for d in obj.data:
        sig = np.asarray(d.sigma, dtype=float)
        for k, t in enumerate(np.asarray(d.t_obs, dtype=float)):
            z = traj[float(t)]
            x, S = z[:n], z[i_S:i_q].reshape(n, K)
            h = x if d.h is None else d.h(x, p)
            hy = np.eye(n) if d.h_y is None else d.h_y(x, p)
            obs = ~np.isnan(d.y_obs[k])
            r = np.where(obs, (h - np.where(obs, d.y_obs[k], 0.0)) / sig, 0.0)
            value += 0.5 * np.sum(r * r)
            wr = r / sig
            grad += wr @ hy @ S
            if d.h_p is not None:
                grad[:n_p] += wr @ d.h_p(x, p)
    g_p, g_y0 = grad[:n_p], grad[n_p:n_p + n]
    if dx0dp is not None:
        g_p = g_p + dx0dp.T @ g_y0
    g_w = grad[n_p + n:].reshape(ctrl.values.shape) if n_v else None
    return Gradient(float(value), g_p, g_y0, g_w, "SciPy fwd-sens",
                    {"steps": steps, "rtol": rtol, "method": "Radau" if spec.stiff else "DOP853"})


def _complex_step_gradient(spec: Spec, J, h: float):
    """``(value, dJ/dp, dJ/dx0, dJ/dV)`` of ``J(p, x0, V)`` by complex steps, one call per entry.

    ``x0(p)`` is held fixed while ``p`` is bumped and applied by the chain rule
    afterwards, as sciode reports ``grad_params``.
    """
    p = np.asarray(spec.params, dtype=float)
    x0, dx0dp = spec.initial_state(p)
    V = None if spec.controls is None else np.asarray(spec.controls[1], dtype=float)

    def bump(a, idx):
        out = a.astype(complex)
        out[idx] += 1j * h
        return out

    g_p = np.array([J(bump(p, k), x0, V).imag / h for k in range(p.size)])
    g_y = np.array([J(p, bump(x0, k), V).imag / h for k in range(x0.size)])
    if dx0dp is not None:
        g_p = g_p + dx0dp.T @ g_y
    g_w = None
    if V is not None:
        g_w = np.empty(V.shape)
        for idx in np.ndindex(V.shape):
            g_w[idx] = J(p, x0, bump(V, idx)).imag / h
    return float(np.real(J(p, x0, V))), g_p, g_y, g_w


def complex_step(spec: Spec, rtol: float = 1e-13, h: float = 1e-30) -> Gradient:
    """Route 2: ``dJ/dtheta_k = Im J(theta + i h e_k) / h``, one complex solve per entry."""
    steps = []

    def J(p, x0, V):
        value, n = cost_value(spec, p, x0, V, rtol)
        steps.append(n)
        return value

    value, g_p, g_y, g_w = _complex_step_gradient(spec, J, h)
    return Gradient(value, g_p, g_y, g_w, "SciPy complex step",
                    {"steps": steps[-1], "rtol": rtol, "h": h, "method": "BDF" if spec.stiff else "DOP853"})


def complex_step_jacobian(f, y, h: float = 1e-30) -> np.ndarray:
    """``df/dy`` of ``f(t, y)`` at ``t = 0`` to rounding: column ``j`` is ``Im f(y + i h e_j) / h``.

    Checks a hand-written Jacobian against its right-hand side (``f`` must be
    analytic and accept complex ``y``).
    """
    y = np.asarray(y, dtype=float)
    cols = []
    for j in range(y.size):
        z = y.astype(complex)
        z[j] += 1j * h
        cols.append(np.imag(f(0.0, z)) / h)
    return np.array(cols).T


# -- a fixed-step scheme, for the discrete (discretise-then-differentiate) mode ----------

def rk4_cost(spec: Spec, n_steps: int, p, x0, values=None):
    """``J`` of the classical RK4 scheme (Kutta 1901) on ``n_steps`` equal steps.

    The running cost is integrated by the same scheme as the state
    (``z = [x, q]``, ``q' = L``); data terms must fall on the step grid, where
    the scheme's own values are read (no interpolant is involved).  Complex
    inputs give the exact derivative of the scheme by complex step.
    """
    sysm, obj = spec.system, spec.objective
    ctrl = _Controls(spec.controls, values)
    n = sysm.n
    t0, t1 = spec.t_span
    dt = (t1 - t0) / n_steps
    grid = t0 + dt * np.arange(n_steps + 1)
    dtype = np.result_type(p, x0, ctrl.values)

    def F(t, z):
        w = ctrl.w(t)
        out = np.zeros(n + 1, dtype=dtype)
        out[:n] = sysm.f(t, z[:n], p, w)
        if obj.L is not None:
            out[n] = obj.L(t, z[:n], p, w)
        return out

    z = np.zeros(n + 1, dtype=dtype)
    z[:n] = x0
    states = {0: z[:n]}
    for i in range(n_steps):
        t = grid[i]
        k1 = F(t, z)
        k2 = F(t + dt / 2, z + dt / 2 * k1)
        k3 = F(t + dt / 2, z + dt / 2 * k2)
        k4 = F(t + dt, z + dt * k3)
        z = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        states[i + 1] = z[:n]
    J = z[n]
    for d in obj.data:
        for k, t in enumerate(np.asarray(d.t_obs, dtype=float)):
            i = int(round((t - t0) / dt))
            if abs(grid[i] - t) > 1e-9 * max(1.0, abs(t)):
                raise ValueError(f"observation time {t} is not on the RK4 grid (dt = {dt})")
            x = states[i]
            h = x if d.h is None else d.h(x, p)
            obs = ~np.isnan(d.y_obs[k])
            r = (h[obs] - d.y_obs[k][obs]) / np.asarray(d.sigma)[obs]
            J = J + 0.5 * np.sum(r * r)
    if obj.phi is not None:
        J = J + obj.phi(z[:n], p)
    return J


def rk4_complex_step(spec: Spec, n_steps: int, h: float = 1e-30) -> Gradient:
    """Exact value and gradient of the RK4 scheme's cost by complex step."""
    value, g_p, g_y, g_w = _complex_step_gradient(spec, lambda p, x0, V: rk4_cost(spec, n_steps, p, x0, V), h)
    return Gradient(value, g_p, g_y, g_w, "complex step of a hand-written RK4 scheme", {"n_steps": n_steps})
