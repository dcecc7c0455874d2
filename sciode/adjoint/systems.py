"""Augmented systems integrated by the sensitivity drivers.

Each is a ``NamedTuple`` of kernels and arrays registered with
``sciode.cpu.systems`` so the unchanged stepping loops integrate it.

- ``CostateSystem``: ``z = [lambda, mu, q, G]`` integrated backward with the
  state ``y(t)`` read from the forward dense output (or, in ``backsolve``
  mode, carried along: ``BacksolveSystem``, ``z = [y, lambda, mu, q, G]``)::

      lambda' = -(df/dy)^T lambda - dL/dy          (= -dH/dy)
      mu'     = -(df/dp)^T lambda - dL/dp          (mu(t0) = int dH/dp dt)
      q'      = -L                                 (q(t0) = int L dt)
      G_k'    = -phi_k(t) dH/dw                    (G_k(t0) = int phi_k dH/dw dt)

  where ``phi_k`` are the hat functions of the piecewise-linear control grid.
- ``SensitivitySystem``: ``z = [y, S, q, dq]`` forward, with
  ``S = [dy/dp, dy/dy0]`` (``n x (n_p + n)``), ``S' = J S + [f_p, 0]``,
  ``q' = L`` and ``dq' = dL/dy S + [dL/dp, 0]``.
- ``QuadratureSystem``: ``z = [y, q]`` with ``q' = L`` (the discrete adjoint
  differentiates the scheme applied to this system).
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from ..cpu.controls import control_at, control_segment
from ..cpu.dense import locate_step
from ..cpu.explicit import dense_point
from ..cpu.systems import register_system

CostateSystem = namedtuple("CostateSystem", [
    "vjp_y", "vjp_p", "vjp_w", "L", "dLdy", "dLdp", "dLdw", "jac_y", "jac_p",
    "p", "tw", "W", "wbuf", "ts", "hs", "zs", "Ks", "P",
    "ybuf", "tmp_n", "tmp_p", "tmp_w", "tmp_w2", "wts", "one"])

BacksolveSystem = namedtuple("BacksolveSystem", [
    "rhs", "vjp_y", "vjp_p", "vjp_w", "L", "dLdy", "dLdp", "dLdw",
    "p", "tw", "W", "wbuf", "tmp_n", "tmp_p", "tmp_w", "tmp_w2", "one"])

SensitivitySystem = namedtuple("SensitivitySystem", [
    "rhs", "jac_y", "sens_rhs", "L", "dLdy", "dLdp", "p", "tw", "W", "wbuf", "tmp_n", "tmp_p", "one",
    "n_cols"])

QuadratureSystem = namedtuple("QuadratureSystem", ["rhs", "jac_y", "L", "dLdy", "p", "tw", "W", "wbuf",
                                                   "one", "tmp_n"])


@nb.njit(cache=True, nogil=True)
def _controls(sys, t):
    if sys.wbuf.shape[0] > 0:
        control_at(t, sys.tw, sys.W, sys.wbuf)


@nb.njit(cache=True, nogil=True)
def costate_rates(sys, t, y, lam, out_lam, out_mu, out_G):
    """``-dH/dy``, ``-dH/dp``, ``-L`` (returned) and ``-phi_k dH/dw`` at ``(t, y, lambda)``."""
    n, n_p, nw = lam.shape[0], out_mu.shape[0], sys.wbuf.shape[0]
    sys.vjp_y(t, y, sys.p, sys.wbuf, lam, sys.tmp_n)
    sys.dLdy(t, y, sys.p, sys.wbuf, out_lam)
    for i in range(n):
        out_lam[i] = -(out_lam[i] + sys.tmp_n[i])
    if n_p > 0:
        sys.vjp_p(t, y, sys.p, sys.wbuf, lam, sys.tmp_p)
        sys.dLdp(t, y, sys.p, sys.wbuf, out_mu)
        for j in range(n_p):
            out_mu[j] = -(out_mu[j] + sys.tmp_p[j])
    sys.L(t, y, sys.p, sys.wbuf, sys.one)
    if nw > 0:
        sys.vjp_w(t, y, sys.p, sys.wbuf, lam, sys.tmp_w)
        sys.dLdw(t, y, sys.p, sys.wbuf, sys.tmp_w2)
        out_G[:] = 0.0
        k, s = control_segment(t, sys.tw)
        n_grid = sys.tw.shape[0]
        for c in range(nw):
            g = sys.tmp_w[c] + sys.tmp_w2[c]
            out_G[k * nw + c] -= (1.0 - s) * g
            if n_grid > 1:
                out_G[(k + 1) * nw + c] -= s * g
    return -sys.one[0]


@nb.njit(cache=True, nogil=True)
def _costate_rhs(sys, t, z, out):
    n = sys.ybuf.shape[0]
    n_p = sys.tmp_p.shape[0]
    k = locate_step(sys.ts, t)
    dense_point(sys.zs[k], sys.hs[k], sys.Ks[k], sys.P, (t - sys.ts[k]) / sys.hs[k], sys.wts, sys.ybuf)
    _controls(sys, t)
    out[n + n_p] = costate_rates(sys, t, sys.ybuf, z[:n], out[:n], out[n:n + n_p], out[n + n_p + 1:])


@nb.njit(cache=True, nogil=True)
def _costate_jac(sys, t, z, out):
    # d/dz of the costate system: only the lambda columns are nonzero.
    n = sys.ybuf.shape[0]
    n_p = sys.tmp_p.shape[0]
    k = locate_step(sys.ts, t)
    dense_point(sys.zs[k], sys.hs[k], sys.Ks[k], sys.P, (t - sys.ts[k]) / sys.hs[k], sys.wts, sys.ybuf)
    _controls(sys, t)
    out[:] = 0.0
    J = out[:n, :n].copy()
    sys.jac_y(t, sys.ybuf, sys.p, sys.wbuf, J)
    for i in range(n):
        for j in range(n):
            out[i, j] = -J[j, i]
    if n_p > 0:
        Fp = out[:n, :n_p].copy()
        sys.jac_p(t, sys.ybuf, sys.p, sys.wbuf, Fp)
        for j in range(n_p):
            for i in range(n):
                out[n + j, i] = -Fp[i, j]


@nb.njit(cache=True, nogil=True)
def _costate_dfdt(sys, t, z, out):
    # The costate system is non-autonomous through y(t); Rosenbrock methods
    # need dF/dt, approximated by a forward difference (order of the method
    # is kept to O(h * eps^(1/2)), far below the tolerances used).
    n = z.shape[0]
    f0 = z.copy()
    f1 = z.copy()
    _costate_rhs(sys, t, z, f0)
    dt = 1e-7 * max(1.0, abs(t))
    _costate_rhs(sys, t + dt, z, f1)
    for i in range(n):
        out[i] = (f1[i] - f0[i]) / dt


register_system(CostateSystem, _costate_rhs, _costate_jac, _costate_dfdt)


@nb.njit(cache=True, nogil=True)
def _backsolve_rhs(sys, t, z, out):
    n = sys.tmp_n.shape[0]
    n_p = sys.tmp_p.shape[0]
    _controls(sys, t)
    y = z[:n]
    sys.rhs(t, y, sys.p, sys.wbuf, out[:n])
    off = 2 * n
    out[off + n_p] = costate_rates(sys, t, y, z[n:off], out[n:off], out[off:off + n_p], out[off + n_p + 1:])


register_system(BacksolveSystem, _backsolve_rhs)


@nb.njit(cache=True, nogil=True)
def _sensitivity_rhs(sys, t, z, out):
    n = sys.tmp_n.shape[0]
    n_p = sys.tmp_p.shape[0]
    m = sys.n_cols
    _controls(sys, t)
    y = z[:n]
    sys.rhs(t, y, sys.p, sys.wbuf, out[:n])
    S = z[n:n + n * m].reshape((n, m))
    dS = out[n:n + n * m].reshape((n, m))
    sys.sens_rhs(t, y, sys.p, sys.wbuf, S, dS)
    q = n + n * m
    sys.L(t, y, sys.p, sys.wbuf, sys.one)
    out[q] = sys.one[0]
    sys.dLdy(t, y, sys.p, sys.wbuf, sys.tmp_n)
    sys.dLdp(t, y, sys.p, sys.wbuf, sys.tmp_p)
    for c in range(m):
        acc = sys.tmp_p[c] if c < n_p else 0.0
        for i in range(n):
            acc += sys.tmp_n[i] * S[i, c]
        out[q + 1 + c] = acc


@nb.njit(cache=True, nogil=True)
def _sensitivity_jac(sys, t, z, out):
    # Block-diagonal approximation diag(J, J, ..., J, 0): it drops d(J S)/dy
    # (second derivatives).  Good enough for Newton (ESDIRK), not for a
    # Rosenbrock method, which ``augmented_method`` refuses for this system.
    n = sys.tmp_n.shape[0]
    m = sys.n_cols
    _controls(sys, t)
    out[:] = 0.0
    J = np.zeros((n, n))
    sys.jac_y(t, z[:n], sys.p, sys.wbuf, J)
    for i in range(n):
        for j in range(n):
            out[i, j] = J[i, j]
            for c in range(m):
                out[n + i * m + c, n + j * m + c] = J[i, j]


register_system(SensitivitySystem, _sensitivity_rhs, _sensitivity_jac)


@nb.njit(cache=True, nogil=True)
def _quadrature_rhs(sys, t, z, out):
    n = z.shape[0] - 1
    _controls(sys, t)
    sys.rhs(t, z[:n], sys.p, sys.wbuf, out[:n])
    sys.L(t, z[:n], sys.p, sys.wbuf, sys.one)
    out[n] = sys.one[0]


@nb.njit(cache=True, nogil=True)
def _quadrature_jac(sys, t, z, out):
    # exact: d[f, L]/d[y, q] = [[J, 0], [dL/dy, 0]]
    n = z.shape[0] - 1
    _controls(sys, t)
    out[:] = 0.0
    J = np.zeros((n, n))
    sys.jac_y(t, z[:n], sys.p, sys.wbuf, J)
    out[:n, :n] = J
    sys.dLdy(t, z[:n], sys.p, sys.wbuf, sys.tmp_n)
    for j in range(n):
        out[n, j] = sys.tmp_n[j]


@nb.njit(cache=True, nogil=True)
def _quadrature_dfdt(sys, t, z, out):
    # dF/dt by a forward difference (Rosenbrock methods need it for
    # non-autonomous systems; the error is far below usual tolerances)
    f0 = np.empty_like(z)
    _quadrature_rhs(sys, t, z, f0)
    dt = 1e-7 * max(1.0, abs(t))
    _quadrature_rhs(sys, t + dt, z, out)
    for i in range(z.shape[0]):
        out[i] = (out[i] - f0[i]) / dt


register_system(QuadratureSystem, _quadrature_rhs, _quadrature_jac, _quadrature_dfdt)
