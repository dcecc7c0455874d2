"""Compiled entry points of the sensitivity drivers.

Like ``sciode.cpu.drivers``, each entry takes the model's and the cost's
kernels as first-class functions and is compiled once per installation.  The
backward sweeps run in one pass of the stepping loop: observation times are
stops of the loop, where the costate system applies its jumps
``lambda += (dh/dy)^T r_i`` (``systems.apply_jumps``) and the step-size
controller carries on, instead of restarting at every observation.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

from .. import abi
from .._numba_compat import NO_NRT, borrow1, borrow2, borrow3, keep_alive
from ..cpu.controls import control_at
from ..cpu.drivers import LOOP_ARGS, METHOD, METHOD2, SWEEP_ARGS, register_entry
from ..cpu.integrate import integrate
from ..cpu.status import SUCCESS
from ..cpu.systems import ModelSystem
from .systems import (POLY_CACHE_MAX_STATES, BacksolveSystem, CostateSystem, QuadratureSystem,
                      SensitivitySystem, apply_jumps)

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8, B1 = types.float64, types.int64, types.boolean
VEC, VJP, MAT, SENS = abi.VEC, abi.VJP, abi.MAT, abi.SENS


def _obs_jumps(obs, obs_vjp_y, obs_vjp_p, p, tw, W, wbuf, t_rows, Y, Yobs, Wt, n_p):
    """Observables ``h`` at each row, residual weights and costate jumps."""
    m, n = Y.shape
    n_h = Yobs.shape[1]
    H = np.zeros((m, n_h))
    JY = np.zeros((m, n))
    JP = np.zeros((m, n_p))
    _obs_rows(obs, obs_vjp_y, obs_vjp_p, p, tw, W, wbuf, t_rows, Y, Yobs, Wt, n_p, H, JY, JP,
              np.zeros(n_h))
    return H, JY, JP


@nb.njit(cache=True, nogil=True, **NO_NRT)
def _obs_rows(obs, obs_vjp_y, obs_vjp_p, p, tw, W, wbuf, t_rows, Y, Yobs, Wt, n_p, H, JY, JP, r):
    # the row loop of _obs_jumps, without reference counting (a view per row)
    m, n_h = Y.shape[0], Yobs.shape[1]
    for i in range(m):
        if wbuf.shape[0] > 0:
            control_at(t_rows[i], tw, W, wbuf)
        obs(t_rows[i], Y[i], p, wbuf, H[i])
        for j in range(n_h):
            r[j] = (H[i, j] - Yobs[i, j]) * Wt[i, j]
        obs_vjp_y(t_rows[i], Y[i], p, wbuf, r, JY[i])
        if n_p > 0:
            obs_vjp_p(t_rows[i], Y[i], p, wbuf, r, JP[i])


register_entry("obs_jumps", _obs_jumps, (VEC, VJP, VJP, A1, A1, A2, A1, A1, A2, A2, A2, I8))
obs_jumps = nb.njit(cache=True, nogil=True)(_obs_jumps)


def _obs_jacobians(obs_vjp_y, obs_vjp_p, p, tw, W, wbuf, t_rows, Y, n_h):
    """``dh/dy`` ``(m, n_h, n)`` and ``dh/dp`` ``(m, n_h, n_p)`` at each row (by unit cotangents)."""
    m, n = Y.shape
    n_p = p.shape[0]
    DY = np.zeros((m, n_h, n))
    DP = np.zeros((m, n_h, n_p))
    e = np.zeros(n_h)
    for i in range(m):
        if wbuf.shape[0] > 0:
            control_at(t_rows[i], tw, W, wbuf)
        for j in range(n_h):
            e[j] = 1.0
            obs_vjp_y(t_rows[i], Y[i], p, wbuf, e, DY[i, j])
            if n_p > 0:
                obs_vjp_p(t_rows[i], Y[i], p, wbuf, e, DP[i, j])
            e[j] = 0.0
    return DY, DP


register_entry("obs_jacobians", _obs_jacobians, (VJP, VJP, A1, A1, A2, A1, A1, A2, I8))


@nb.njit(cache=True, nogil=True, inline="always")  # one compiled layer less (``cpu.integrate``)
def sweep(sys, z, t_start, t_stop, t_stops, method, rtol, atol, h_init, hmax, dt, max_steps):
    """Integrate the costate system ``sys`` from ``t_start`` to ``t_stop`` in one pass.

    The observation rows held by ``sys`` (``JUMP_FIELDS``) jump the costate:
    a row at ``t_start`` before the first step, rows inside at the loop's
    stops (``t_stops`` must contain their times), rows at ``t_stop`` after
    the last step.  The step-size controller runs on through the jumps.
    Returns ``(status, t_reached, z, stats, n_steps_stored)``.
    """
    apply_jumps(sys, t_start, z)
    status, t_reached, n_st, ts, zs, hs, Ks, z_eval, st = integrate(
        method, sys, z, t_start, t_stop, rtol, atol, h_init, hmax, dt, max_steps, np.zeros(0), -1,
        t_stops)
    stats = np.zeros(6, dtype=np.int64)
    for k in range(min(st.shape[0], 6)):
        stats[k] = st[k]
    z_end = zs[n_st - 1].copy()
    if status == SUCCESS:
        apply_jumps(sys, t_stop, z_end)
    return status, t_reached, z_end, stats, n_st


def sweeps_on_steps(method):
    """Whether a costate sweep with ``method`` must land on the stored forward
    steps (``cpu.implicit.ImplicitMethod.sweep_on_steps``; compiled code only)."""
    raise NotImplementedError


@overload(sweeps_on_steps, inline="always")
def _sweeps_on_steps(method):
    if "sweep_on_steps" in getattr(method, "fields", ()):
        return lambda method: method.sweep_on_steps
    return lambda method: False


@nb.njit(cache=True, nogil=True)
def with_forward_steps(t_stops, ts, t_start, t_stop):
    """``t_stops`` and the forward step times ``ts`` strictly between ``t_stop``
    and ``t_start``, ordered from ``t_start`` to ``t_stop``."""
    lo, hi = min(t_start, t_stop), max(t_start, t_stop)
    inner = ts[(ts > lo) & (ts < hi)]
    u = np.unique(np.concatenate((t_stops, inner)))
    return u[::-1].copy() if t_stop < t_start else u


@nb.njit(cache=True, nogil=True)
def _scratch(n, n_p, nw, e0, e1, e2=0):
    """Offsets in one scratch block of ``gy``, ``gL``, ``tmp_w``, ``tmp_w2`` (the
    ``costate_rates`` buffers), then blocks of ``e0`` and ``e1`` floats, ``jnext``
    (1), ``khint`` (3) and ``e2`` floats: ``o[i]:o[i + 1]`` is block ``i``."""
    return np.cumsum(np.array([0, n + n_p, n + n_p + 1, nw, nw, e0, e1, 1, 3, e2]))


@nb.njit(cache=True, nogil=True)
def costate_sweep(vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_y, jac_p, p, tw, W, wbuf,
                  ts, hs, zs, Ks, P, z1, t1, t0, jump_t, JY, JP, t_stops,
                  method, rtol, atol, h_init, hmax, dt, max_steps):
    """``sweep`` of the costate system over the stored forward steps
    ``ts, hs, zs, Ks`` (interpolant ``P``) from ``t1`` to ``t0``, starting at ``z1``."""
    n = zs.shape[1]
    # one scratch block, kept alive below; the system holds borrowed views (borrow.py)
    n_poly = P.shape[1] * n if n <= POLY_CACHE_MAX_STATES else 0
    o = _scratch(n, p.shape[0], wbuf.shape[0], n, P.shape[0], n_poly)  # e0 ybuf, e1 wts, e2 cbuf
    buf = np.zeros(o[-1])
    buf[o[7]] = ts.shape[0] - 2  # khint: the sweep starts in the last stored step,
    buf[o[7] + 1] = -1.0  # no polynomial cached yet,
    buf[o[7] + 2] = np.nan  # no state interpolated yet
    b = borrow1(buf)
    sys = CostateSystem(vjp_yp, L_grad, has_L, vjp_w, dLdw, borrow1(p), borrow1(tw), borrow2(W),
                        borrow1(wbuf), b[o[0]:o[1]], b[o[1]:o[2]], b[o[2]:o[3]], b[o[3]:o[4]],
                        jac_y, jac_p, borrow1(ts), borrow1(hs), borrow2(zs), borrow3(Ks), borrow2(P),
                        b[o[4]:o[5]], b[o[5]:o[6]], b[o[7]:o[8]], b[o[8]:o[9]],
                        borrow1(jump_t), borrow2(JY), borrow2(JP), b[o[6]:o[7]], 0, n)
    if sweeps_on_steps(method):
        t_stops = with_forward_steps(t_stops, ts, t1, t0)
    out = sweep(sys, z1.copy(), t1, t0, t_stops, method, rtol, atol, h_init, hmax, dt, max_steps)
    keep_alive(buf)
    return out


_RATE_FNS = (VJP, VEC, B1, VJP, VEC)


@nb.njit(cache=True, nogil=True)
def _misfit_and_terminal(obs, obs_vjp_y, obs_vjp_p, Phi, dPhidy, dPhidp, p, tw, W, wbuf, t_rows,
                         Y_rows, Yobs, Wt, t1, y1, z1):
    """``Phi(y1) + 0.5 sum Wt (h - Yobs)^2`` and the costate jumps ``JY, JP`` of
    the rows; ``z1[:n + n_p] = [dPhi/dy, dPhi/dp]`` (the costate at ``t1``)."""
    n, n_p = y1.shape[0], p.shape[0]
    H, JY, JP = obs_jumps(obs, obs_vjp_y, obs_vjp_p, p, tw, W, wbuf, t_rows, Y_rows, Yobs, Wt, n_p)
    value = 0.0
    for i in range(H.shape[0]):
        for j in range(H.shape[1]):
            value += 0.5 * Wt[i, j] * (H[i, j] - Yobs[i, j]) ** 2
    control_at(t1, tw, W, wbuf)
    phi = np.zeros(1)
    Phi(t1, y1, p, wbuf, phi)
    dPhidy(t1, y1, p, wbuf, z1[:n])
    dPhidp(t1, y1, p, wbuf, z1[n:n + n_p])
    return value + phi[0], JY, JP


def _adjoint_gradient(rhs, jac_y, dfdt, vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_p,
                      obs, obs_vjp_y, obs_vjp_p, Phi, dPhidy, dPhidp,
                      p, tw, W, wbuf, y0, t0, t1, t_rows, Yobs, Wt, fwd_stops, bwd_stops, n_g,
                      fmethod, rtol, atol, hmax, dt, max_steps, bmethod, brtol, batol):
    """The whole interpolating adjoint in one call (``interpolating.run``).

    Forward pass with dense output and the states at the observation rows
    ``t_rows``; the misfit ``0.5 sum Wt (h - Yobs)^2`` and the jumps
    ``(dh/d[y, p])^T r``; the terminal cost and its gradient, which start the
    costate ``z(t1) = [dPhi/dy, dPhi/dp, 0, 0]``; the costate sweep back to
    ``t0`` (``costate_sweep``).  One compiled call instead of five: on small
    problems the calls' fixed costs were half of the gradient's time.

    Returns ``(forward status, t reached, forward stats, backward status,
    t reached, backward stats, Phi + misfit, z(t0), stored floats)``; after a
    failed forward pass the backward fields are placeholders.
    """
    n, n_p = y0.shape[0], p.shape[0]
    sys = ModelSystem(rhs, jac_y, dfdt, borrow1(p), borrow1(tw), borrow2(W), borrow1(wbuf))
    fstatus, f_reached, n_st, ts, zs, hs, Ks, Y, fst = integrate(
        fmethod, sys, y0, t0, t1, rtol, atol, 0.0, hmax, dt, max_steps, t_rows, 1, fwd_stops)
    z1 = np.zeros(n + n_p + 1 + n_g)
    if fstatus != SUCCESS:
        return fstatus, f_reached, fst, SUCCESS, t0, np.zeros(6, dtype=np.int64), 0.0, z1, 0
    value, JY, JP = _misfit_and_terminal(obs, obs_vjp_y, obs_vjp_p, Phi, dPhidy, dPhidp, p, tw, W,
                                         wbuf, t_rows, Y, Yobs, Wt, t1, zs[n_st - 1], z1)
    bstatus, b_reached, z, bst, _ = costate_sweep(
        vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_y, jac_p, p, tw, W, wbuf, ts, hs, zs, Ks,
        np.ascontiguousarray(fmethod.P), z1, t1, t0, np.ascontiguousarray(t_rows[::-1]),
        np.ascontiguousarray(JY[::-1]), np.ascontiguousarray(JP[::-1]), bwd_stops, bmethod, brtol,
        batol, 0.0, hmax, dt, max_steps)
    stored = ts.shape[0] + hs.shape[0] + zs.size + Ks.size
    return fstatus, f_reached, fst, bstatus, b_reached, bst, value, z, stored


register_entry("adjoint_gradient", _adjoint_gradient,
               (VEC, MAT, VEC) + _RATE_FNS + (MAT, VEC, VJP, VJP, VEC, VEC, VEC,
                                              A1, A1, A2, A1, A1, F8, F8, A1, A2, A2, A1, A1, I8,
                                              METHOD, F8, A1, F8, F8, I8, METHOD2, F8, A1))


def _checkpoint_gradient(rhs, jac_y, dfdt, vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_p,
                         obs, obs_vjp_y, obs_vjp_p, Phi, dPhidy, dPhidp,
                         p, tw, W, wbuf, y0, t0, t1, t_rows, Yobs, Wt, fwd_stops, bwd_stops, n_g,
                         tc, fmethod, rtol, atol, hmax, dt, max_steps, bmethod, brtol, batol):
    """The checkpointed adjoint in one call (``checkpoint.run``).

    A forward pass keeps the final state only and serves the checkpoints
    ``tc`` and the observation rows; then, from the last segment back, each
    segment is re-solved forward from its checkpoint with dense output and
    the costate swept back over it (its observation rows jump it).  The
    stops ``fwd_stops``/``bwd_stops`` are the whole span's: each loop uses
    those inside its own segment.

    Returns ``(forward status, t reached, forward stats, failed pass (0 none,
    1 a re-solve, 2 a sweep), its segment, its status, t reached, re-solve
    stats, sweep stats, Phi + misfit, z(t0), peak stored floats)``.
    """
    n, n_p, m = y0.shape[0], p.shape[0], t_rows.shape[0]
    n_ck = tc.shape[0] - 1
    d = 1.0 if t1 >= t0 else -1.0
    sys = ModelSystem(rhs, jac_y, dfdt, borrow1(p), borrow1(tw), borrow2(W), borrow1(wbuf))
    te = np.concatenate((tc, t_rows))
    order = np.argsort(te * d, kind="mergesort")  # stable: a row at a checkpoint keeps its place
    fstatus, f_reached, n_st, _, zs, _, _, Ys, fst = integrate(
        fmethod, sys, y0, t0, t1, rtol, atol, 0.0, hmax, dt, max_steps, te[order], -1, fwd_stops)
    z = np.zeros(n + n_p + 1 + n_g)
    rst = np.zeros(6, dtype=np.int64)
    bst = np.zeros(6, dtype=np.int64)
    if fstatus != SUCCESS:
        return fstatus, f_reached, fst, 0, 0, SUCCESS, t0, rst, bst, 0.0, z, 0
    Y = np.empty_like(Ys)
    for i in range(te.shape[0]):
        Y[order[i]] = Ys[i]
    Yc, Y_rows = Y[:n_ck + 1], np.ascontiguousarray(Y[n_ck + 1:])
    value, JY, JP = _misfit_and_terminal(obs, obs_vjp_y, obs_vjp_p, Phi, dPhidy, dPhidp, p, tw, W,
                                         wbuf, t_rows, Y_rows, Yobs, Wt, t1, zs[n_st - 1], z)
    P = np.ascontiguousarray(fmethod.P)
    peak = 0
    hi = m  # rows [lo, hi) lie in the current segment (t_rows run in the direction d)
    for k in range(n_ck - 1, -1, -1):
        sstatus, s_reached, _, ts, szs, hs, Ks, _, sst = integrate(
            fmethod, sys, Yc[k].copy(), tc[k], tc[k + 1], rtol, atol, 0.0, hmax, dt, max_steps,
            np.zeros(0), 1, fwd_stops)
        for c in range(6):
            rst[c] += sst[c]
        if sstatus != SUCCESS:
            return fstatus, f_reached, fst, 1, k, sstatus, s_reached, rst, bst, 0.0, z, peak
        peak = max(peak, ts.shape[0] + hs.shape[0] + szs.size + Ks.size)
        lo = hi
        while lo > 0 and ((t_rows[lo - 1] - tc[k]) * d > 0 or (k == 0 and t_rows[lo - 1] == tc[0])):
            lo -= 1
        bstatus, b_reached, z, sbt, _ = costate_sweep(
            vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_y, jac_p, p, tw, W, wbuf, ts, hs, szs, Ks, P, z,
            tc[k + 1], tc[k], np.ascontiguousarray(t_rows[lo:hi][::-1]),
            np.ascontiguousarray(JY[lo:hi][::-1]), np.ascontiguousarray(JP[lo:hi][::-1]), bwd_stops,
            bmethod, brtol, batol, 0.0, hmax, dt, max_steps)
        for c in range(6):
            bst[c] += sbt[c]
        if bstatus != SUCCESS:
            return fstatus, f_reached, fst, 2, k, bstatus, b_reached, rst, bst, 0.0, z, peak
        hi = lo
    return fstatus, f_reached, fst, 0, 0, SUCCESS, t0, rst, bst, value, z, peak + Ys.size


register_entry("checkpoint_gradient", _checkpoint_gradient,
               (VEC, MAT, VEC) + _RATE_FNS + (MAT, VEC, VJP, VJP, VEC, VEC, VEC,
                                              A1, A1, A2, A1, A1, F8, F8, A1, A2, A2, A1, A1, I8, A1,
                                              METHOD, F8, A1, F8, F8, I8, METHOD2, F8, A1))


def _backsolve_sweep(rhs, vjp_yp, L_grad, has_L, vjp_w, dLdw, p, tw, W, wbuf,
                     z1, t1, t0, jump_t, JY, JP, t_stops,
                     method, rtol, atol, h_init, hmax, dt, max_steps):
    n = JY.shape[1]
    o = _scratch(n, p.shape[0], wbuf.shape[0], n, n)  # e0 ybuf, e1 fy
    buf = np.zeros(o[-1])
    b = borrow1(buf)  # borrowed views of one scratch block, kept alive below
    sys = BacksolveSystem(vjp_yp, L_grad, has_L, vjp_w, dLdw, borrow1(p), borrow1(tw), borrow2(W),
                          borrow1(wbuf), b[o[0]:o[1]], b[o[1]:o[2]], b[o[2]:o[3]], b[o[3]:o[4]],
                          rhs, b[o[4]:o[5]], b[o[5]:o[6]],
                          borrow1(jump_t), borrow2(JY), borrow2(JP), b[o[6]:o[7]], n, 2 * n)
    out = sweep(sys, z1.copy(), t1, t0, t_stops, method, rtol, atol, h_init, hmax, dt, max_steps)
    keep_alive(buf)
    return out


register_entry("backsolve_sweep", _backsolve_sweep,
               (VEC,) + _RATE_FNS + (A1, A1, A2, A1, A1, F8, F8, A1, A2, A2, A1) + SWEEP_ARGS)


def _sensitivity_entry(rhs, jac_y, sens_rhs, L, dLdy, dLdp, vjp_w, dLdw, p, tw, W, wbuf, n, z0, t0,
                       t1, method, rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense,
                       t_stops):
    n_p, n_w = p.shape[0], wbuf.shape[0]
    n_cols = n_p + n + tw.shape[0] * n_w  # [p, y0, control grid values]
    buf = np.zeros(2 * n + n_p + 1 + n_w)
    b = borrow1(buf)  # borrowed views of one scratch block, kept alive below
    o = n + n_p + 1
    sys = SensitivitySystem(rhs, jac_y, sens_rhs, L, dLdy, dLdp, vjp_w, dLdw, borrow1(p),
                            borrow1(tw), borrow2(W), borrow1(wbuf), b[:n], b[n:n + n_p],
                            b[n + n_p:o], b[o:o + n_w], b[o + n_w:], n_cols)
    out = integrate(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
                    store_dense, t_stops)
    keep_alive(buf)
    return out


register_entry("sensitivity", _sensitivity_entry,
               (VEC, MAT, SENS, VEC, VEC, VEC, VJP, VEC, A1, A1, A2, A1, I8, A1) + LOOP_ARGS)


def _quadrature_entry(rhs, jac_y, L, dLdy, p, tw, W, wbuf, z0, t0, t1, method, rtol, atol, h_init,
                      hmax, dt, max_steps, t_eval, store_dense, t_stops):
    buf = np.zeros(z0.shape[0])
    b = borrow1(buf)  # borrowed views of one scratch block, kept alive below
    sys = QuadratureSystem(rhs, jac_y, L, dLdy, borrow1(p), borrow1(tw), borrow2(W), borrow1(wbuf),
                           b[:1], b[1:])
    out = integrate(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
                    store_dense, t_stops)
    keep_alive(buf)
    return out


register_entry("quadrature", _quadrature_entry, (VEC, MAT, VEC, VEC, A1, A1, A2, A1, A1) + LOOP_ARGS)

