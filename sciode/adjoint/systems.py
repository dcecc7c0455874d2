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
  ``S = [dy/dp, dy/dy0, dy/dW]`` (``n x (n_p + n + n_grid n_w)``),
  ``S' = J S + [f_p, 0, f_w phi_k]``, ``q' = L`` and
  ``dq' = dL/dy S + [dL/dp, 0, dL/dw phi_k]`` (the control columns only
  with controls: ``W_kj`` moves ``w_j(t)`` by the hat function ``phi_k(t)``).
- ``QuadratureSystem``: ``z = [y, q]`` with ``q' = L`` (the discrete adjoint
  differentiates the scheme applied to this system).
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from .._numba_compat import NO_NRT
from ..cpu.controls import control_at, control_segment
from ..cpu.dense import locate_step_near
from ..cpu.stepping import dense_point
from ..cpu.systems import register_system

#: The jump fields shared by the costate systems: rows ``i`` of ``jump_t`` (in
#: the direction of integration) add ``JY[i]`` to ``z[lam_off:]`` and ``JP[i]``
#: to ``z[mu_off:]`` when the sweep reaches ``jump_t[i]``; ``jnext[0]`` is the
#: next row (a float: the system's scratch block is float64).
JUMP_FIELDS = ["jump_t", "JY", "JP", "jnext", "lam_off", "mu_off"]

#: The fields ``costate_rates`` reads: the fused kernels ``vjp_yp`` and
#: ``L_grad`` (``sciode.abi``), ``has_L`` (False: the running cost is zero and
#: ``L_grad`` is skipped), scratch ``gy`` (n + n_p), ``gL`` (n + n_p + 1),
#: ``tmp_w``, ``tmp_w2`` (n_w).  ``lambda`` is read from ``z`` in place: it is
#: the ``mu_off - lam_off`` entries from ``lam_off`` (``JUMP_FIELDS``).
RATE_FIELDS = ["vjp_yp", "L_grad", "has_L", "vjp_w", "dLdw", "p", "tw", "W", "wbuf",
               "gy", "gL", "tmp_w", "tmp_w2"]

CostateSystem = namedtuple("CostateSystem", RATE_FIELDS + [
    "jac_y", "jac_p", "ts", "hs", "zs", "Ks", "P", "ybuf", "wts", "khint", "cbuf"] + JUMP_FIELDS)

BacksolveSystem = namedtuple("BacksolveSystem", RATE_FIELDS + ["rhs", "ybuf", "fy"] + JUMP_FIELDS)

SensitivitySystem = namedtuple("SensitivitySystem", [
    "rhs", "jac_y", "sens_rhs", "L", "dLdy", "dLdp", "vjp_w", "dLdw", "p", "tw", "W", "wbuf",
    "tmp_n", "tmp_p", "one", "tmp_w", "unit", "n_cols"])

QuadratureSystem = namedtuple("QuadratureSystem", ["rhs", "jac_y", "L", "dLdy", "p", "tw", "W", "wbuf",
                                                   "one", "tmp_n"])


@nb.njit(cache=True, nogil=True, **NO_NRT)
def apply_jumps(sys, t, z):
    """The costate jumps ``lambda += (dh/dy)^T r_i``, ``mu += (dh/dp)^T r_i`` of
    every observation row at time ``t`` not yet applied; True if any was.
    (No reference counting: it runs at every observation of a sweep.)"""
    i = int(sys.jnext[0])
    m, n, n_p = sys.jump_t.shape[0], sys.JY.shape[1], sys.JP.shape[1]
    changed = False
    while i < m and sys.jump_t[i] == t:
        for k in range(n):
            z[sys.lam_off + k] += sys.JY[i, k]
        for k in range(n_p):
            z[sys.mu_off + k] += sys.JP[i, k]
        i += 1
        changed = True
    sys.jnext[0] = i
    return changed


@nb.njit(cache=True, nogil=True, inline="always")
def _controls(sys, t):
    if sys.wbuf.shape[0] > 0:
        control_at(t, sys.tw, sys.W, sys.wbuf)


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def hamiltonian_rates(vjp_yp, L_grad, has_L, t, y, p, w, gy, gL, z, lam_off, out, off):
    """``out[off:off + n + n_p + 1] = [-dH/dy, -dH/dp, -L]`` at ``(t, y, lambda)``,
    ``lambda = z[lam_off:lam_off + n]``, ``H = L + lambda . f``:
    ``dH/d[y, p] = [(df/dy)^T lambda, (df/dp)^T lambda] + [dL/dy, dL/dp]``, one call
    of the fused ``vjp_yp`` (plus ``L_grad`` when there is a running cost).

    Inlined into the stepping core, which runs without reference counting
    (``explicit.rk_steps``): there the arrays of the system tuple and the view
    of ``lambda`` cost nothing (a call on plain arrays cost ~20 ns per
    evaluation; inline with reference counting, 80 ns).
    """
    m = gy.shape[0]
    # lambda as a view of z: free here (no reference counting), a copy saved
    vjp_yp(t, y, p, w, z[lam_off:lam_off + m - p.shape[0]], gy)
    if has_L:
        L_grad(t, y, p, w, gL)
        for i in range(m):
            out[off + i] = -(gy[i] + gL[i])
        out[off + m] = -gL[m]
    else:
        for i in range(m):
            out[off + i] = -gy[i]
        out[off + m] = 0.0


@nb.njit(cache=True, nogil=True, inline="always")
def costate_rates(sys, t, y, z, lam_off, out, off):
    """``hamiltonian_rates`` into ``out[off:]``, then the control-gradient
    quadratures ``-phi_k dH/dw`` (``sys.wbuf`` non-empty)."""
    hamiltonian_rates(sys.vjp_yp, sys.L_grad, sys.has_L, t, y, sys.p, sys.wbuf, sys.gy, sys.gL, z,
                      lam_off, out, off)
    nw = sys.wbuf.shape[0]
    if nw > 0:
        p, w = sys.p, sys.wbuf
        sys.vjp_w(t, y, p, w, z[lam_off:lam_off + sys.mu_off - sys.lam_off], sys.tmp_w)
        sys.dLdw(t, y, p, w, sys.tmp_w2)
        g0 = off + sys.gy.shape[0] + 1
        for i in range(g0, out.shape[0]):
            out[i] = 0.0
        k, s = control_segment(t, sys.tw)
        n_grid = sys.tw.shape[0]
        for c in range(nw):
            g = sys.tmp_w[c] + sys.tmp_w2[c]
            out[g0 + k * nw + c] -= (1.0 - s) * g
            if n_grid > 1:
                out[g0 + (k + 1) * nw + c] -= s * g


#: Up to this many states the costate sweep caches the interpolant of the
#: forward step it is in as a polynomial in theta (``interp_state``).
POLY_CACHE_MAX_STATES = 8


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def interp_state(ts, hs, zs, Ks, P, wts, khint, cbuf, t, y):
    """``y = y(t)`` from stored steps: the step's own interpolant (no views, no
    reference counting: see ``hamiltonian_rates``).

    ``khint = [step found last time, step whose coefficients cbuf holds, time
    y holds]``: a second read at the same time returns at once (the last two
    stages of dopri5 and tsit5 both sit at the step's end).
    With ``cbuf`` empty, ``y = z_k + h sum_i K_i sum_j P_ij theta^(j+1)``
    (``s d + s n`` multiply-adds).  With ``cbuf`` of ``d n`` floats, the
    step's polynomial ``C_j = h sum_i P_ij K_i`` is formed once per step
    (``s d n``) and each read is a Horner sum (``d n``): cheaper for a few
    states, read ~6-11 times per forward step by the sweep's stages.
    """
    if t == khint[2]:
        return
    khint[2] = t
    k = locate_step_near(ts, t, int(khint[0]))
    khint[0] = k
    h = hs[k]
    theta = (t - ts[k]) / h
    n = y.shape[0]
    if cbuf.shape[0] == 0:
        dense_point(zs[k], h, Ks[k], P, theta, wts, y)
        return
    d = P.shape[1]
    if khint[1] != k:
        for j in range(d):
            for m in range(n):
                acc = 0.0
                for i in range(P.shape[0]):
                    acc += P[i, j] * Ks[k, i, m]
                cbuf[j * n + m] = h * acc
        khint[1] = k
    for m in range(n):
        acc = cbuf[(d - 1) * n + m]
        for j in range(d - 2, -1, -1):
            acc = acc * theta + cbuf[j * n + m]
        y[m] = zs[k, m] + acc * theta


@nb.njit(cache=True, nogil=True, inline="always")
def dense_state(sys, t):
    """``sys.ybuf = y(t)`` from the stored forward steps."""
    interp_state(sys.ts, sys.hs, sys.zs, sys.Ks, sys.P, sys.wts, sys.khint, sys.cbuf, t, sys.ybuf)


@nb.njit(cache=True, nogil=True, inline="always")
def _costate_rhs(sys, t, z, out):
    dense_state(sys, t)
    _controls(sys, t)
    costate_rates(sys, t, sys.ybuf, z, 0, out, 0)


@nb.njit(cache=True, nogil=True)
def _costate_jac(sys, t, z, out):
    # d/dz of the costate system: only the lambda columns are nonzero, and the stiff
    # loops run it in ``linalg``'s lead mode (``common.augmented_method``), so ``out``
    # is ``(size, n)``: [-J^T; -F_p^T; 0], or with a banded leading block
    # (``linalg.jacobian_storage``) ``(1, nnz + (size - n) n)``: the values of -J on
    # its pattern (they are -J^T's on the transposed pattern the mode was built
    # from; ``sys.jac_y`` is then ``jac_nz``), then [-F_p^T; 0] row-major
    n = sys.ybuf.shape[0]
    n_p = sys.p.shape[0]
    dense_state(sys, t)
    _controls(sys, t)
    out[:] = 0.0
    if out.shape[0] < z.shape[0]:
        v = out[0]
        nnz = v.shape[0] - (z.shape[0] - n) * n
        sys.jac_y(t, sys.ybuf, sys.p, sys.wbuf, out)
        for k in range(nnz):
            v[k] = -v[k]
        if n_p > 0:
            Fp = np.zeros((n, n_p))
            sys.jac_p(t, sys.ybuf, sys.p, sys.wbuf, Fp)
            for j in range(n_p):
                for i in range(n):
                    v[nnz + j * n + i] = -Fp[i, j]
        return
    J = out[:n]  # df/dy written in place, then turned into -J^T (no n x n scratch per call)
    sys.jac_y(t, sys.ybuf, sys.p, sys.wbuf, J)
    for i in range(n):
        J[i, i] = -J[i, i]
        for j in range(i + 1, n):
            a = J[i, j]
            J[i, j] = -J[j, i]
            J[j, i] = -a
    if n_p > 0:
        Fp = np.zeros((n, n_p))
        sys.jac_p(t, sys.ybuf, sys.p, sys.wbuf, Fp)
        for j in range(n_p):
            for i in range(n):
                out[n + j, i] = -Fp[i, j]


@nb.njit(cache=True, nogil=True, inline="always")
def _costate_coupled(sys, n):
    return sys.mu_off  # z = [(y,) lambda, mu, q, G]: F reads up to lambda


# dF/dt (Rosenbrock methods: the costate system is non-autonomous through
# y(t)): ``cpu.systems``' forward difference
register_system(CostateSystem, _costate_rhs, _costate_jac, stop=apply_jumps, coupled=_costate_coupled)


@nb.njit(cache=True, nogil=True, inline="always")
def _backsolve_rhs(sys, t, z, out):
    n = sys.lam_off  # z = [y, lambda, ...]: y has as many entries as lambda
    _controls(sys, t)
    y = sys.ybuf
    for i in range(n):
        y[i] = z[i]
    sys.rhs(t, y, sys.p, sys.wbuf, sys.fy)
    for i in range(n):
        out[i] = sys.fy[i]
    costate_rates(sys, t, y, z, n, out, n)


register_system(BacksolveSystem, _backsolve_rhs, stop=apply_jumps, coupled=_costate_coupled)


@nb.njit(cache=True, nogil=True, inline="always")
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
    n_w = sys.wbuf.shape[0]
    if m > n_p + n and n_w > 0:
        # control columns: W_kj moves w_j by (1 - s) at k and s at k + 1
        k, s = control_segment(t, sys.tw)
        c0 = n_p + n + k * n_w
        for i in range(n):  # f_w row i, by a unit cotangent (no f_w kernel)
            sys.unit[i] = 1.0
            sys.vjp_w(t, y, sys.p, sys.wbuf, sys.unit, sys.tmp_w)
            sys.unit[i] = 0.0
            for j in range(n_w):
                dS[i, c0 + j] += (1.0 - s) * sys.tmp_w[j]
                if s != 0.0:
                    dS[i, c0 + n_w + j] += s * sys.tmp_w[j]
        sys.dLdw(t, y, sys.p, sys.wbuf, sys.tmp_w)
        for j in range(n_w):
            out[q + 1 + c0 + j] += (1.0 - s) * sys.tmp_w[j]
            if s != 0.0:
                out[q + 1 + c0 + n_w + j] += s * sys.tmp_w[j]


@nb.njit(cache=True, nogil=True)
def _sensitivity_jac(sys, t, z, out):
    # Newton's block-diagonal approximation diag(J, J, ..., J, 0), which drops
    # d(J S)/dy (second derivatives): good enough for Newton (ESDIRK), not for a
    # Rosenbrock method (the registry refuses that pair).  The stiff loops run
    # this system in ``linalg.block_mode`` (``augmented_method``), so ``out`` is
    # the one (n, n) block J.
    n = sys.tmp_n.shape[0]
    _controls(sys, t)
    sys.jac_y(t, z[:n], sys.p, sys.wbuf, out)


register_system(SensitivitySystem, _sensitivity_rhs, _sensitivity_jac)


@nb.njit(cache=True, nogil=True, inline="always")
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
    for i in range(n):  # not a slice assignment: see ``cpu.stepping.copy_flat``
        for j in range(n):
            out[i, j] = J[i, j]
    sys.dLdy(t, z[:n], sys.p, sys.wbuf, sys.tmp_n)
    for j in range(n):
        out[n, j] = sys.tmp_n[j]


register_system(QuadratureSystem, _quadrature_rhs, _quadrature_jac)  # dF/dt: cpu.systems' difference
