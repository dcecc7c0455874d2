"""Compiled entry points for the gradients of the members of an ensemble.

Like ``sciode.cpu.ensemble``, each entry runs members ``lo <= m < hi`` and
releases the GIL.  ``ensemble_gradient`` calls the single trajectory's
whole-gradient routine (``entries._adjoint_gradient``) per member, so every
member's value and gradient are exactly ``sciode.value_and_grad``'s for it
alone; ``ensemble_costate`` is the backward pass of ``y -> sum G . y`` with
the jumps ``G`` given (for a caller that owns the loss, such as torch).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types

from .. import abi
from .._numba_compat import borrow1, borrow2
from ..cpu.drivers import METHOD, METHOD2, register_entry
from ..cpu.integrate import integrate
from ..cpu.status import SUCCESS
from ..cpu.stepping import copy_flat
from ..cpu.systems import ModelSystem
from .entries import _RATE_FNS, _adjoint_gradient, costate_sweep

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8 = types.float64, types.int64
S2 = types.int64[:, ::1]
VEC, VJP, MAT = abi.VEC, abi.VJP, abi.MAT

#: The single-trajectory gradient, callable from the member loop.
_member_gradient = nb.njit(nogil=True)(_adjoint_gradient)


def _ensemble_gradient(rhs, jac_y, dfdt, vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_p,
                       obs, obs_vjp_y, obs_vjp_p, Phi, dPhidy, dPhidp,
                       P, tw, W, Z0, t0, t1, t_rows, Yobs, Wt, fwd_stops, bwd_stops, n_g,
                       fmethod, rtol, atol, hmax, dt, max_steps, bmethod, brtol, batol,
                       lo, hi, value, Z, status, t_reached, stats):
    """``sciode.value_and_grad`` (interpolating adjoint) of members ``lo..hi-1``.

    ``value[m]`` is the cost without the running-cost quadrature (the caller
    adds ``Z[m, n + n_p]``); ``Z[m]`` = ``[lambda(t0), mu(t0), q, G]``;
    ``status[m] = (forward, backward)``, ``t_reached[m]`` likewise;
    ``stats[m]`` = the forward loop's six counters, then the sweep's.
    """
    wbuf = np.zeros(W.shape[1])
    for m in range(lo, hi):
        fst, f_reached, fs, bst, b_reached, bs, v, z, _ = _member_gradient(
            rhs, jac_y, dfdt, vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_p, obs, obs_vjp_y,
            obs_vjp_p, Phi, dPhidy, dPhidp, P[m].copy(), tw, W, wbuf, Z0[m].copy(), t0, t1, t_rows,
            Yobs, Wt, fwd_stops, bwd_stops, n_g, fmethod, rtol, atol, hmax, dt, max_steps, bmethod,
            brtol, batol)
        status[m, 0] = fst
        status[m, 1] = bst
        t_reached[m, 0] = f_reached
        t_reached[m, 1] = b_reached
        for k in range(6):
            stats[m, k] = fs[k]
            stats[m, 6 + k] = bs[k]
        value[m] = v
        copy_flat(Z[m], z)  # no slice assignment: see cpu.stepping.copy_flat
    return 0


register_entry("ensemble_gradient", _ensemble_gradient,
               (VEC, MAT, VEC) + _RATE_FNS + (MAT, VEC, VJP, VJP, VEC, VEC, VEC,
                                              A2, A1, A2, A2, F8, F8, A1, A2, A2, A1, A1, I8,
                                              METHOD, F8, A1, F8, F8, I8, METHOD2, F8, A1,
                                              I8, I8, A1, A2, S2, A2, S2))


def _ensemble_costate(rhs, jac_y, dfdt, vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_p, P, tw, W, Z0,
                      t_rows, G, fwd_stops, bwd_stops, fmethod, rtol, atol, hmax, dt, max_steps,
                      bmethod, brtol, batol, lo, hi, Z, status, t_reached, stats):
    """The costate of ``sum_i G[m, i] . y_m(t_rows[i])`` for members ``lo..hi-1``.

    Per member: the forward solve with dense output, then the costate
    ``lambda' = -f_y^T lambda``, ``mu' = -f_p^T lambda`` swept from the last
    row back to ``t_rows[0]``, jumping by ``G[m, i]`` at each row (the
    interpolating adjoint of ``_adjoint_gradient`` with the jumps given
    instead of computed from a cost: the backward pass of ``y -> sum G . y``
    for a caller that owns the loss, such as torch's autograd).
    ``Z[m] = [lambda(t0), mu(t0)]`` with every jump applied (the row at
    ``t0`` included); ``status[m]`` = (forward, backward) and ``t_reached[m]``
    likewise; ``stats[m]`` = forward and backward (nfev, nsteps).
    """
    wbuf = np.zeros(W.shape[1])
    n_r = t_rows.shape[0]
    n = Z0.shape[1]
    n_p = P.shape[1]
    jump_t = np.ascontiguousarray(t_rows[::-1])
    JP = np.zeros((n_r, n_p))
    JY = np.zeros((n_r, n))
    t0, t1 = t_rows[0], t_rows[n_r - 1]
    for m in range(lo, hi):
        pm = P[m].copy()
        sys = ModelSystem(rhs, jac_y, dfdt, borrow1(pm), borrow1(tw), borrow2(W), borrow1(wbuf))
        fst, f_reached, _, ts, zs, hs, Ks, _, fs = integrate(
            fmethod, sys, Z0[m].copy(), t0, t1, rtol, atol, 0.0, hmax, dt, max_steps,
            np.zeros(0), 1, fwd_stops)
        stats[m, 0] = fs[0]
        stats[m, 1] = fs[1]
        status[m, 0] = fst
        t_reached[m, 0] = f_reached
        if fst != SUCCESS:
            continue
        for i in range(n_r):
            JY[i, :] = G[m, n_r - 1 - i]
        z1 = np.zeros(n + n_p + 1)
        bst, b_reached, z, bs, _ = costate_sweep(
            vjp_yp, L_grad, has_L, vjp_w, dLdw, jac_y, jac_p, pm, tw, W, wbuf, ts, hs, zs,
            Ks, np.ascontiguousarray(fmethod.P), z1, t1, t0, jump_t, JY, JP, bwd_stops, bmethod,
            brtol, batol, 0.0, hmax, dt, max_steps)
        status[m, 1] = bst
        t_reached[m, 1] = b_reached
        stats[m, 2] = bs[0]
        stats[m, 3] = bs[1]
        Z[m, :] = z[:n + n_p]
    return 0


register_entry("ensemble_costate", _ensemble_costate,
               (VEC, MAT, VEC) + _RATE_FNS
               + (MAT, A2, A1, A2, A2, A1, A3, A1, A1, METHOD, F8, A1, F8, F8, I8,
                  METHOD2, F8, A1, I8, I8, A2, S2, A2, S2))
