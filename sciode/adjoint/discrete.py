"""``sensitivity="discrete"``: the exact gradient of the discrete solution.

Differentiates the Runge--Kutta scheme the forward pass actually ran, with
its accepted step sizes held fixed (reverse-mode over the steps, as
backpropagation through a ResNet is for forward Euler).  For the step
``Y_i = z + h sum_j A_ij K_j``, ``K_i = F(t + c_i h, Y_i)``,
``z' = z + h sum_i b_i K_i`` and an adjoint ``a'`` of ``z'``, in reverse stage
order::

    Kbar_i = h b_i a' + h sum_{j>i} A_ji Ybar_j,   Ybar_i = (dF/dz)(Y_i)^T Kbar_i
    a      = a' + sum_i Ybar_i,                     pbar += (dF/dp)(Y_i)^T Kbar_i

Observations read from the dense output ``z + h sum_i w_i(theta) K_i`` add
``r`` to ``a`` and ``h w_i(theta) r`` to ``Kbar_i`` (DOP853's extra stages
are stages like the others).  A stage at time ``tau`` reads the controls
``w(tau) = (1 - s) W_k + s W_{k+1}``, so the grid values gain
``(1 - s, s) (dF/dw)(Y_i)^T Kbar_i`` (``grad_controls``).  The system is ``z = [y, q]`` with ``q' = L``,
so a running cost is integrated by the same scheme.  The result matches
finite differences of the same scheme on the same step sequence to rounding.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .. import abi
from ..cpu import solvers
from ..cpu.bundles import INPUTS
from ..cpu.controls import control_at, control_segment
from ..cpu.drivers import entry, register_entry
from ..cpu.stepping import interp_weights
from . import common

A1, A2 = abi.ARRAY, abi.MATRIX
A3 = nb.types.float64[:, :, ::1]


@nb.njit(cache=True, nogil=True)
def _stage_vjp(vjp_y, vjp_p, dLdy, dLdp, t, Y, p, w, kbar, ybar, pbar, tmp_n, tmp_p):
    """``ybar = (dF/dz)^T kbar`` and ``pbar += (dF/dp)^T kbar`` for ``F = [f, L]``."""
    n = tmp_n.shape[0]
    y = Y[:n]
    vjp_y(t, y, p, w, kbar[:n], ybar[:n])
    dLdy(t, y, p, w, tmp_n)
    for i in range(n):
        ybar[i] += kbar[n] * tmp_n[i]
    ybar[n] = 0.0
    if tmp_p.shape[0] > 0:
        vjp_p(t, y, p, w, kbar[:n], tmp_p)
        for j in range(tmp_p.shape[0]):
            pbar[j] += tmp_p[j]
        dLdp(t, y, p, w, tmp_p)
        for j in range(tmp_p.shape[0]):
            pbar[j] += kbar[n] * tmp_p[j]


@nb.njit(cache=True, nogil=True)
def _stage_control_vjp(vjp_w, dLdw, t, Y, p, w, kbar, tw, Gw, tmp_w, tmp_w2):
    """``Gw[k:k+2] += (1 - s, s) (dF/dw)^T kbar`` at stage time ``t`` (hat weights)."""
    n = Y.shape[0] - 1
    vjp_w(t, Y[:n], p, w, kbar[:n], tmp_w)
    dLdw(t, Y[:n], p, w, tmp_w2)
    k, s = control_segment(t, tw)
    for j in range(tmp_w.shape[0]):
        g = tmp_w[j] + kbar[n] * tmp_w2[j]
        Gw[k, j] += (1.0 - s) * g
        if s != 0.0:
            Gw[k + 1, j] += s * g


def _discrete_reverse(f, c, a_in, ts, hs, zs, Ks, Af, bf, cf, P, abar, t_rows, JY):
    """The reverse sweep over the stored steps ``ts, hs, zs, Ks`` of ``z = [y, q]``
    (module doc) with the full stage tableau ``Af, bf, cf`` (``full_stages``) and
    interpolant ``P``, from ``abar = dJ/dz(t1)``, adding the rows' jumps ``JY``
    at ``t_rows``: ``(dJ/dz0, dJ/dp, dJ/dW)``."""
    vjp_y, vjp_p, vjp_w, dLdy, dLdp, dLdw = f.vjp_y, f.vjp_p, f.vjp_w, c.dLdy, c.dLdp, c.dLdw
    p, tw, W, wbuf = a_in.p, a_in.tw, a_in.W, a_in.wbuf
    n = JY.shape[1]
    nz = zs.shape[1]
    s_tot = Af.shape[0]
    n_steps = hs.shape[0]
    d = 1.0 if ts[n_steps] >= ts[0] else -1.0
    a = abar.copy()
    pbar = np.zeros(p.shape[0])
    Kbar = np.zeros((s_tot, nz))
    Ybar = np.zeros(nz)
    Y = np.zeros(nz)
    tmp_n = np.zeros(n)
    tmp_p = np.zeros(p.shape[0])
    n_w = wbuf.shape[0]
    Gw = np.zeros((tw.shape[0] if n_w > 0 else 0, n_w))
    tmp_w, tmp_w2 = np.zeros(n_w), np.zeros(n_w)
    wts = np.zeros(P.shape[0])
    r = t_rows.shape[0] - 1
    for k in range(n_steps - 1, -1, -1):
        h = hs[k]
        K = Ks[k]
        z = zs[k]
        Kbar[:] = 0.0
        for i in range(s_tot):
            for m in range(nz):
                Kbar[i, m] = h * bf[i] * a[m]
        while r >= 0 and (t_rows[r] - ts[k]) * d > 0.0:
            interp_weights(P, (t_rows[r] - ts[k]) / h, wts)
            for i in range(P.shape[0]):
                for m in range(n):
                    Kbar[i, m] += h * wts[i] * JY[r, m]
            for m in range(n):
                a[m] += JY[r, m]
            r -= 1
        for i in range(s_tot - 1, -1, -1):
            nonzero = False
            for m in range(nz):
                if Kbar[i, m] != 0.0:
                    nonzero = True
                    break
            if not nonzero:
                continue
            for m in range(nz):
                acc = 0.0
                for j in range(i):
                    acc += Af[i, j] * K[j, m]
                Y[m] = z[m] + h * acc
            tt = ts[k] + cf[i] * h
            if wbuf.shape[0] > 0:
                control_at(tt, tw, W, wbuf)
            _stage_vjp(vjp_y, vjp_p, dLdy, dLdp, tt, Y, p, wbuf, Kbar[i], Ybar, pbar, tmp_n, tmp_p)
            if n_w > 0:
                _stage_control_vjp(vjp_w, dLdw, tt, Y, p, wbuf, Kbar[i], tw, Gw, tmp_w, tmp_w2)
            for m in range(nz):
                a[m] += Ybar[m]
            for j in range(i):
                if Af[i, j] != 0.0:
                    for m in range(nz):
                        Kbar[j, m] += h * Af[i, j] * Ybar[m]
    while r >= 0:  # observations at t0 read z0 itself
        for m in range(n):
            a[m] += JY[r, m]
        r -= 1
    return a, pbar, Gw


register_entry("discrete_reverse", _discrete_reverse,
               (abi.MODEL_FNS, abi.COST_FNS, INPUTS, A1, A1, A2, A3, A2, A1, A1, A2, A1, A1, A2))


def full_stages(tab):
    """``A``, ``b``, ``c`` over all ``s_total`` stages (main + extra dense stages)."""
    s, s_tot = tab.s, tab.s_total
    Af = np.zeros((s_tot, s_tot))
    Af[:s, :s] = tab.A[:s, :s]
    bf = np.zeros(s_tot)
    bf[:s] = tab.b
    cf = np.zeros(s_tot)
    cf[:s] = tab.c
    if s_tot > s:
        Af[s:, :] = tab.A_extra
        cf[s:] = tab.c_extra
    return Af, bf, cf


def quadrature_forward(prob, dense: bool):
    """Forward solve of ``[y, q]`` (``q' = L``) with the observations' ``h``."""
    z0 = np.concatenate([prob.y0, [0.0]])
    atol = prob.aug_atol(z0.size, prob.n)
    method = common.augmented_method(prob, "discrete/fd")
    out = entry("quadrature", method)(
        prob.mk.fns(method), prob.ck.fns(("L", "dLdy")), common.inputs(prob), z0, prob.t0, prob.t1,
        common.model_loop(prob, method, atol), np.ascontiguousarray(prob.t_rows, dtype=float),
        int(dense))
    common.check_status(out.status, out.t_reached, prob, "forward")
    raw = solvers.RawResult(int(out.status), float(out.t_reached), out.ts, out.zs, out.hs, out.Ks,
                            out.z_eval, solvers.loop_stats(out.stats), method.P)
    z_eval = out.z_eval
    H = common.observation_jumps(prob, np.ascontiguousarray(z_eval[:, :prob.n]))[0] if prob.t_rows.size else np.zeros((0, prob.ck.n_obs))
    return raw, H


def run(prob) -> common.GradResult:
    tab = common.explicit_tableau(prob, "discrete", ": the discrete adjoint differentiates "
                                  "an explicit Runge-Kutta scheme")
    raw, _ = quadrature_forward(prob, dense=True)
    Y_rows = np.ascontiguousarray(raw.z_eval[:, :prob.n])
    H, JY, JP = common.observation_jumps(prob, Y_rows)
    zN = raw.zs[-1]
    phi, dPhidy, dPhidp = common.terminal(prob, zN[:prob.n])
    abar = np.concatenate([dPhidy, [1.0]])
    Af, bf, cf = full_stages(tab)
    mk, ck = prob.mk, prob.ck
    a, pbar, Gw = entry("discrete_reverse")(
        mk.fns(uses=("vjp_y", "vjp_p", "vjp_w")), ck.fns(("dLdy", "dLdp", "dLdw")),
        common.inputs(prob), raw.ts, raw.hs, raw.zs, raw.Ks, Af, bf, cf, solvers.rk_method(tab).P,
        abar, prob.t_rows, np.ascontiguousarray(JY))
    value = phi + zN[prob.n] + common.misfit(prob, H)
    grad_p = pbar + dPhidp + JP.sum(axis=0)
    stats = {"forward": dict(raw.stats), "peak_stored_floats": int(raw.Ks.size + raw.zs.size)}
    g_w = Gw if prob.controls is not None else None
    return common.GradResult(value, grad_p, a[:prob.n].copy(), g_w, stats,
                             {"step_sizes": raw.hs.copy()})
