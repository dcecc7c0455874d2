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
from ..cpu.bundles import Inputs
from ..cpu.drivers import LOOP, LOOP2, register_entry
from ..cpu.integrate import integrate
from ..cpu.status import SUCCESS
from ..cpu.stepping import copy_flat
from ..cpu.systems import ModelSystem
from .entries import ROWS, Jumps, _adjoint_gradient, costate_sweep

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8 = types.float64, types.int64
S2 = types.int64[:, ::1]
MODEL, COST = abi.MODEL_FNS, abi.COST_FNS

#: The single-trajectory gradient, callable from the member loop.
_member_gradient = nb.njit(nogil=True)(_adjoint_gradient)


def _ensemble_gradient(f, c, P, tw, W, Z0, rows, t0, t1, n_g, fwd, bwd,
                       lo, hi, value, Z, status, t_reached, stats):
    """``sciode.value_and_grad`` (interpolating adjoint) of members ``lo..hi-1``
    with parameters ``P[m]`` from ``Z0[m]`` (the shared controls ``tw, W``).

    ``value[m]`` is the cost without the running-cost quadrature (the caller
    adds ``Z[m, n + n_p]``); ``Z[m]`` = ``[lambda(t0), mu(t0), q, G]``;
    ``status[m] = (forward, backward)``, ``t_reached[m]`` likewise;
    ``stats[m]`` = the forward loop's six counters, then the sweep's.
    """
    wbuf = np.zeros(W.shape[1])
    for m in range(lo, hi):
        out = _member_gradient(f, c, Inputs(P[m].copy(), tw, W, wbuf), rows, Z0[m].copy(), t0, t1,
                               n_g, fwd, bwd)
        status[m, 0] = out.forward.status
        status[m, 1] = out.backward.status
        t_reached[m, 0] = out.forward.t_reached
        t_reached[m, 1] = out.backward.t_reached
        for k in range(6):
            stats[m, k] = out.forward.stats[k] if k < out.forward.stats.shape[0] else 0
            stats[m, 6 + k] = out.backward.stats[k]
        value[m] = out.value
        copy_flat(Z[m], out.z)  # no slice assignment: see cpu.stepping.copy_flat
    return 0


register_entry("ensemble_gradient", _ensemble_gradient,
               (MODEL, COST, A2, A1, A2, A2, ROWS, F8, F8, I8, LOOP, LOOP2,
                I8, I8, A1, A2, S2, A2, S2))


def _ensemble_costate(f, c, P, tw, W, Z0, t_rows, G, fwd, bwd, lo, hi, Z, status, t_reached, stats):
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
    JP = np.zeros((n_r, n_p))
    JY = np.zeros((n_r, n))
    jumps = Jumps(np.ascontiguousarray(t_rows[::-1]), JY, JP)
    t0, t1 = t_rows[0], t_rows[n_r - 1]
    P_fw = np.ascontiguousarray(fwd.method.P)
    for m in range(lo, hi):
        a = Inputs(P[m].copy(), tw, W, wbuf)
        sys = ModelSystem(f.rhs, f.jac, f.dfdt, borrow1(a.p), borrow1(tw), borrow2(W), borrow1(wbuf))
        fw = integrate(sys, Z0[m].copy(), t0, t1, fwd, np.zeros(0), 1)
        stats[m, 0] = fw.stats[0]
        stats[m, 1] = fw.stats[1]
        status[m, 0] = fw.status
        t_reached[m, 0] = fw.t_reached
        if fw.status != SUCCESS:
            continue
        for i in range(n_r):
            JY[i, :] = G[m, n_r - 1 - i]
        back = costate_sweep(f, c, a, fw, P_fw, np.zeros(n + n_p + 1), t1, t0, jumps, bwd)
        status[m, 1] = back.status
        t_reached[m, 1] = back.t_reached
        stats[m, 2] = back.stats[0]
        stats[m, 3] = back.stats[1]
        Z[m, :] = back.z[:n + n_p]
    return 0


register_entry("ensemble_costate", _ensemble_costate,
               (MODEL, COST, A2, A1, A2, A2, A1, A3, LOOP, LOOP2, I8, I8, A2, S2, A2, S2))
