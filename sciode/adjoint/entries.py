"""Compiled entry points of the sensitivity drivers.

Like ``sciode.cpu.drivers``, each entry takes typed bundles (``abi.ModelFns``,
``abi.CostFns``, ``bundles.Inputs``, ``bundles.Loop``, and this module's
``Rows`` and ``Jumps``) and is compiled once per installation.  The
backward sweeps run in one pass of the stepping loop: observation times are
stops of the loop, where the costate system applies its jumps
``lambda += (dh/dy)^T r_i`` (``systems.apply_jumps``) and the step-size
controller carries on, instead of restarting at every observation.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np
from numba import types
from numba.extending import overload

from .. import abi
from .._numba_compat import NO_NRT, borrow1, borrow2, borrow3, keep_alive
from ..cpu.bundles import INPUTS, Loop
from ..cpu.controls import control_at
from ..cpu.drivers import LOOP, LOOP2, register_entry
from ..cpu.integrate import integrate
from ..cpu.status import SUCCESS
from ..cpu.systems import ModelSystem
from .systems import (POLY_CACHE_MAX_STATES, BacksolveSystem, CostateSystem, QuadratureSystem,
                      SensitivitySystem, apply_jumps)

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8 = types.float64, types.int64
MODEL, COST = abi.MODEL_FNS, abi.COST_FNS

#: Observation rows (``common.data_rows``): times ``t (m,)``, targets
#: ``Yobs (m, n_h)`` and weights ``Wt (m, n_h)`` of the misfit
#: ``0.5 sum Wt (h(t_i, y(t_i)) - Yobs)^2``.
Rows = namedtuple("Rows", ["t", "Yobs", "Wt"])
ROWS = types.NamedTuple((A1, A2, A2), Rows)
#: A costate's jumps: at ``t[i]`` (ordered in the sweep's direction) ``lambda``
#: jumps by ``JY[i]`` and ``mu`` by ``JP[i]``.
Jumps = namedtuple("Jumps", ["t", "JY", "JP"])
JUMPS = types.NamedTuple((A1, A2, A2), Jumps)
#: One pass of a loop as a gradient entry reports it: ``status``, ``t_reached``
#: and the loop's counters (``cpu.solvers.loop_stats``).
Pass = namedtuple("Pass", ["status", "t_reached", "stats"])
#: ``sweep``'s result: ``z`` at the end (jumps there applied) and ``n_stored``
#: steps kept by the loop.
SweepResult = namedtuple("SweepResult", ["status", "t_reached", "z", "stats", "n_stored"])
#: ``adjoint_gradient``'s result: the forward and backward ``Pass``, ``value`` =
#: ``Phi + misfit`` (the running cost is ``z[n + n_p]``), ``z(t0) = [lambda,
#: mu, q, G]``, and the floats the forward pass stored.
AdjointResult = namedtuple("AdjointResult", ["forward", "backward", "value", "z", "stored"])
#: ``checkpoint_gradient``'s result: ``Pass``es of the forward solve, the
#: segments' re-solves and their sweeps (a failed one's status, and
#: ``segment``, the segment it failed in), then as ``AdjointResult``, with
#: ``peak`` the most floats stored at once.
CheckpointResult = namedtuple("CheckpointResult", ["forward", "recompute", "backward", "segment",
                                                   "value", "z", "peak"])


def _obs_jumps(c, a, rows, Y, n_p):
    """Observables ``h`` at each row ``Y[i] = y(rows.t[i])``, and the costate
    jumps ``JY = (dh/dy)^T r``, ``JP = (dh/dp)^T r`` of the weighted residuals
    ``r = Wt (h - Yobs)``."""
    m, n = Y.shape
    n_h = rows.Yobs.shape[1]
    H = np.zeros((m, n_h))
    JY = np.zeros((m, n))
    JP = np.zeros((m, n_p))
    _obs_rows(c, a, rows, Y, n_p, H, JY, JP, np.zeros(n_h))
    return H, JY, JP


@nb.njit(cache=True, nogil=True, **NO_NRT)
def _obs_rows(c, a, rows, Y, n_p, H, JY, JP, r):
    # the row loop of _obs_jumps, without reference counting (a view per row)
    m, n_h = Y.shape[0], rows.Yobs.shape[1]
    for i in range(m):
        t = rows.t[i]
        if a.wbuf.shape[0] > 0:
            control_at(t, a.tw, a.W, a.wbuf)
        c.obs(t, Y[i], a.p, a.wbuf, H[i])
        for j in range(n_h):
            r[j] = (H[i, j] - rows.Yobs[i, j]) * rows.Wt[i, j]
        c.obs_vjp_y(t, Y[i], a.p, a.wbuf, r, JY[i])
        if n_p > 0:
            c.obs_vjp_p(t, Y[i], a.p, a.wbuf, r, JP[i])


register_entry("obs_jumps", _obs_jumps, (COST, INPUTS, ROWS, A2, I8))
obs_jumps = nb.njit(cache=True, nogil=True)(_obs_jumps)


def _obs_jacobians(c, a, t_rows, Y, n_h):
    """``dh/dy`` ``(m, n_h, n)`` and ``dh/dp`` ``(m, n_h, n_p)`` at each row (by unit cotangents)."""
    m, n = Y.shape
    n_p = a.p.shape[0]
    DY = np.zeros((m, n_h, n))
    DP = np.zeros((m, n_h, n_p))
    e = np.zeros(n_h)
    for i in range(m):
        if a.wbuf.shape[0] > 0:
            control_at(t_rows[i], a.tw, a.W, a.wbuf)
        for j in range(n_h):
            e[j] = 1.0
            c.obs_vjp_y(t_rows[i], Y[i], a.p, a.wbuf, e, DY[i, j])
            if n_p > 0:
                c.obs_vjp_p(t_rows[i], Y[i], a.p, a.wbuf, e, DP[i, j])
            e[j] = 0.0
    return DY, DP


register_entry("obs_jacobians", _obs_jacobians, (COST, INPUTS, A1, A2, I8))


@nb.njit(cache=True, nogil=True, inline="always")  # one compiled layer less (``cpu.integrate``)
def sweep(sys, z, t_start, t_stop, loop):
    """Integrate the costate system ``sys`` from ``t_start`` to ``t_stop`` in one pass.

    The observation rows held by ``sys`` (``JUMP_FIELDS``) jump the costate:
    a row at ``t_start`` before the first step, rows inside at the loop's
    stops (``loop.stops`` must contain their times), rows at ``t_stop`` after
    the last step.  The step-size controller runs on through the jumps.
    Returns a ``SweepResult``.
    """
    apply_jumps(sys, t_start, z)
    out = integrate(sys, z, t_start, t_stop, loop, np.zeros(0), -1)
    stats = np.zeros(6, dtype=np.int64)
    for k in range(min(out.stats.shape[0], 6)):
        stats[k] = out.stats[k]
    z_end = out.zs[out.n_stored - 1].copy()
    if out.status == SUCCESS:
        apply_jumps(sys, t_stop, z_end)
    return SweepResult(out.status, out.t_reached, z_end, stats, out.n_stored)


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


#: A sweep's scratch, one zeroed block in named views (``sweep_scratch``): the
#: ``costate_rates`` buffers ``gy (n + n_p)``, ``gL (n + n_p + 1)``, ``tmp_w``
#: and ``tmp_w2`` (``n_w`` each); ``ybuf (n)``, the state at ``t``; ``aux``, the
#: system's own (the costate's interpolation weights, backsolve's ``f(y)``);
#: ``jnext (1)``, the next jump row (``systems.apply_jumps``); ``khint (3)`` and
#: ``cbuf``, the interpolation's hints and cached polynomial
#: (``systems.interp_state``).
SweepScratch = namedtuple("SweepScratch", ["gy", "gL", "tmp_w", "tmp_w2", "ybuf", "aux", "jnext",
                                           "khint", "cbuf"])


@nb.njit(cache=True, nogil=True)
def sweep_scratch(n, n_p, n_w, n_aux, n_cbuf):
    """``(block, SweepScratch)``: one zeroed block and borrowed views of it
    (``borrow.py``); the caller keeps ``block`` alive (``keep_alive``)."""
    o = np.cumsum(np.array([0, n + n_p, n + n_p + 1, n_w, n_w, n, n_aux, 1, 3, n_cbuf]))
    block = np.zeros(o[-1])
    b = borrow1(block)
    return block, SweepScratch(b[o[0]:o[1]], b[o[1]:o[2]], b[o[2]:o[3]], b[o[3]:o[4]],
                               b[o[4]:o[5]], b[o[5]:o[6]], b[o[6]:o[7]], b[o[7]:o[8]],
                               b[o[8]:o[9]])


@nb.njit(cache=True, nogil=True)
def costate_sweep(f, c, a, fw, P, z1, t1, t0, jumps, loop):
    """``sweep`` of the costate system over the forward pass ``fw`` (a
    ``LoopResult`` with dense output, interpolant ``P``) from ``t1`` to
    ``t0``, starting at ``z1`` and jumping by ``jumps``."""
    n = fw.zs.shape[1]
    n_poly = P.shape[1] * n if n <= POLY_CACHE_MAX_STATES else 0
    block, w = sweep_scratch(n, a.p.shape[0], a.wbuf.shape[0], P.shape[0], n_poly)
    w.khint[0] = fw.ts.shape[0] - 2  # the sweep starts in the last stored step,
    w.khint[1] = -1.0  # no polynomial cached yet,
    w.khint[2] = np.nan  # no state interpolated yet
    # the system holds borrowed views (borrow.py): of ``block``, kept alive below, and of arguments
    sys = CostateSystem(f.vjp_yp, c.L_grad, c.has_L, f.vjp_w, c.dLdw, borrow1(a.p), borrow1(a.tw),
                        borrow2(a.W), borrow1(a.wbuf), w.gy, w.gL, w.tmp_w, w.tmp_w2, f.jac, f.jac_p,
                        borrow1(fw.ts), borrow1(fw.hs), borrow2(fw.zs), borrow3(fw.Ks), borrow2(P),
                        w.ybuf, w.aux, w.khint, w.cbuf, borrow1(jumps.t), borrow2(jumps.JY),
                        borrow2(jumps.JP), w.jnext, 0, n)
    if sweeps_on_steps(loop.method):
        loop = Loop(loop.method, loop.rtol, loop.atol, loop.h_init, loop.hmax, loop.dt,
                    loop.max_steps, with_forward_steps(loop.stops, fw.ts, t1, t0))
    out = sweep(sys, z1.copy(), t1, t0, loop)
    keep_alive(block)
    return out


@nb.njit(cache=True, nogil=True)
def _misfit_and_terminal(c, a, rows, Y_rows, t1, y1, z1):
    """``Phi(y1) + 0.5 sum Wt (h - Yobs)^2`` and the costate jumps ``JY, JP`` of
    the rows; ``z1[:n + n_p] = [dPhi/dy, dPhi/dp]`` (the costate at ``t1``)."""
    n, n_p = y1.shape[0], a.p.shape[0]
    H, JY, JP = obs_jumps(c, a, rows, Y_rows, n_p)
    value = 0.0
    for i in range(H.shape[0]):
        for j in range(H.shape[1]):
            value += 0.5 * rows.Wt[i, j] * (H[i, j] - rows.Yobs[i, j]) ** 2
    control_at(t1, a.tw, a.W, a.wbuf)
    phi = np.zeros(1)
    c.Phi(t1, y1, a.p, a.wbuf, phi)
    c.dPhidy(t1, y1, a.p, a.wbuf, z1[:n])
    c.dPhidp(t1, y1, a.p, a.wbuf, z1[n:n + n_p])
    return value + phi[0], JY, JP


@nb.njit(cache=True, nogil=True, inline="always")
def _reversed_jumps(t_rows, JY, JP):
    """The rows' jumps in the backward sweep's order."""
    return Jumps(np.ascontiguousarray(t_rows[::-1]), np.ascontiguousarray(JY[::-1]),
                 np.ascontiguousarray(JP[::-1]))


def _adjoint_gradient(f, c, a, rows, y0, t0, t1, n_g, fwd, bwd):
    """The whole interpolating adjoint in one call (``interpolating.run``).

    Forward pass (``fwd``) with dense output and the states at the observation
    rows; the misfit ``0.5 sum Wt (h - Yobs)^2`` and the jumps
    ``(dh/d[y, p])^T r``; the terminal cost and its gradient, which start the
    costate ``z(t1) = [dPhi/dy, dPhi/dp, 0, 0]`` (``n_g`` control-gradient
    entries last); the costate sweep back to ``t0`` (``costate_sweep``,
    ``bwd``).  One compiled call instead of five: on small problems the
    calls' fixed costs were half of the gradient's time.

    Returns an ``AdjointResult``; after a failed forward pass the backward
    fields are placeholders.
    """
    n, n_p = y0.shape[0], a.p.shape[0]
    sys = ModelSystem(f.rhs, f.jac, f.dfdt, borrow1(a.p), borrow1(a.tw), borrow2(a.W),
                      borrow1(a.wbuf))
    fw = integrate(sys, y0, t0, t1, fwd, rows.t, 1)
    forward = Pass(fw.status, fw.t_reached, fw.stats)
    z1 = np.zeros(n + n_p + 1 + n_g)
    if fw.status != SUCCESS:
        return AdjointResult(forward, Pass(SUCCESS, t0, np.zeros(6, dtype=np.int64)), 0.0, z1, 0)
    value, JY, JP = _misfit_and_terminal(c, a, rows, fw.z_eval, t1, fw.zs[fw.n_stored - 1], z1)
    back = costate_sweep(f, c, a, fw, np.ascontiguousarray(fwd.method.P), z1, t1, t0,
                         _reversed_jumps(rows.t, JY, JP), bwd)
    stored = fw.ts.shape[0] + fw.hs.shape[0] + fw.zs.size + fw.Ks.size
    return AdjointResult(forward, Pass(back.status, back.t_reached, back.stats), value, back.z,
                         stored)


register_entry("adjoint_gradient", _adjoint_gradient,
               (MODEL, COST, INPUTS, ROWS, A1, F8, F8, I8, LOOP, LOOP2))


def _checkpoint_gradient(f, c, a, rows, y0, t0, t1, n_g, tc, fwd, bwd):
    """The checkpointed adjoint in one call (``checkpoint.run``).

    A forward pass keeps the final state only and serves the checkpoints
    ``tc`` and the observation rows; then, from the last segment back, each
    segment is re-solved forward from its checkpoint with dense output and
    the costate swept back over it (its observation rows jump it).  The
    stops of ``fwd``/``bwd`` are the whole span's: each loop uses those
    inside its own segment.  Returns a ``CheckpointResult``.
    """
    n, n_p, m = y0.shape[0], a.p.shape[0], rows.t.shape[0]
    t_rows = rows.t
    n_ck = tc.shape[0] - 1
    d = 1.0 if t1 >= t0 else -1.0
    sys = ModelSystem(f.rhs, f.jac, f.dfdt, borrow1(a.p), borrow1(a.tw), borrow2(a.W),
                      borrow1(a.wbuf))
    te = np.concatenate((tc, t_rows))
    order = np.argsort(te * d, kind="mergesort")  # stable: a row at a checkpoint keeps its place
    fw = integrate(sys, y0, t0, t1, fwd, te[order], -1)
    forward = Pass(fw.status, fw.t_reached, fw.stats)
    z = np.zeros(n + n_p + 1 + n_g)
    rst = np.zeros(6, dtype=np.int64)
    bst = np.zeros(6, dtype=np.int64)
    if fw.status != SUCCESS:
        return CheckpointResult(forward, Pass(SUCCESS, t0, rst), Pass(SUCCESS, t0, bst), 0, 0.0, z, 0)
    Y = np.empty_like(fw.z_eval)
    for i in range(te.shape[0]):
        Y[order[i]] = fw.z_eval[i]
    Yc, Y_rows = Y[:n_ck + 1], np.ascontiguousarray(Y[n_ck + 1:])
    value, JY, JP = _misfit_and_terminal(c, a, rows, Y_rows, t1, fw.zs[fw.n_stored - 1], z)
    P = np.ascontiguousarray(fwd.method.P)
    peak = 0
    hi = m  # rows [lo, hi) lie in the current segment (t_rows run in the direction d)
    for k in range(n_ck - 1, -1, -1):
        seg = integrate(sys, Yc[k].copy(), tc[k], tc[k + 1], fwd, np.zeros(0), 1)
        for i in range(6):
            rst[i] += seg.stats[i] if i < seg.stats.shape[0] else 0
        if seg.status != SUCCESS:
            return CheckpointResult(forward, Pass(seg.status, seg.t_reached, rst),
                                    Pass(SUCCESS, t0, bst), k, 0.0, z, peak)
        peak = max(peak, seg.ts.shape[0] + seg.hs.shape[0] + seg.zs.size + seg.Ks.size)
        lo = hi
        while lo > 0 and ((t_rows[lo - 1] - tc[k]) * d > 0 or (k == 0 and t_rows[lo - 1] == tc[0])):
            lo -= 1
        back = costate_sweep(f, c, a, seg, P, z, tc[k + 1], tc[k],
                             _reversed_jumps(t_rows[lo:hi], JY[lo:hi], JP[lo:hi]), bwd)
        z = back.z
        for i in range(6):
            bst[i] += back.stats[i]
        if back.status != SUCCESS:
            return CheckpointResult(forward, Pass(SUCCESS, t0, rst),
                                    Pass(back.status, back.t_reached, bst), k, 0.0, z, peak)
        hi = lo
    return CheckpointResult(forward, Pass(SUCCESS, t0, rst), Pass(SUCCESS, t0, bst), 0, value, z,
                            peak + fw.z_eval.size)


register_entry("checkpoint_gradient", _checkpoint_gradient,
               (MODEL, COST, INPUTS, ROWS, A1, F8, F8, I8, A1, LOOP, LOOP2))


def _backsolve_sweep(f, c, a, z1, t1, t0, jumps, loop):
    """The backsolve sweep of ``z = [y, lambda, mu, q, G]`` from ``t1`` to ``t0``
    (``backsolve.run``): a ``SweepResult``."""
    n = jumps.JY.shape[1]
    block, w = sweep_scratch(n, a.p.shape[0], a.wbuf.shape[0], n, 0)
    sys = BacksolveSystem(f.vjp_yp, c.L_grad, c.has_L, f.vjp_w, c.dLdw, borrow1(a.p),
                          borrow1(a.tw), borrow2(a.W), borrow1(a.wbuf), w.gy, w.gL, w.tmp_w,
                          w.tmp_w2, f.rhs, w.ybuf, w.aux, borrow1(jumps.t), borrow2(jumps.JY),
                          borrow2(jumps.JP), w.jnext, n, 2 * n)
    out = sweep(sys, z1.copy(), t1, t0, loop)
    keep_alive(block)
    return out


register_entry("backsolve_sweep", _backsolve_sweep, (MODEL, COST, INPUTS, A1, F8, F8, JUMPS, LOOP))


def _sensitivity_entry(f, c, a, n, z0, t0, t1, loop, t_eval):
    """The forward-sensitivity system ``z = [y, S, q, dq]`` (``SensitivitySystem``)
    from ``t0`` to ``t1``, final state only: a ``LoopResult``."""
    n_p, n_w = a.p.shape[0], a.wbuf.shape[0]
    n_cols = n_p + n + a.tw.shape[0] * n_w  # [p, y0, control grid values]
    buf = np.zeros(2 * n + n_p + 1 + n_w)
    b = borrow1(buf)  # borrowed views of one scratch block, kept alive below
    o = n + n_p + 1
    sys = SensitivitySystem(f.rhs, f.jac, f.sens_rhs, c.L, c.dLdy, c.dLdp, f.vjp_w, c.dLdw,
                            borrow1(a.p), borrow1(a.tw), borrow2(a.W), borrow1(a.wbuf), b[:n],
                            b[n:n + n_p], b[n + n_p:o], b[o:o + n_w], b[o + n_w:], n_cols)
    out = integrate(sys, z0, t0, t1, loop, t_eval, -1)
    keep_alive(buf)
    return out


register_entry("sensitivity", _sensitivity_entry, (MODEL, COST, INPUTS, I8, A1, F8, F8, LOOP, A1))


def _quadrature_entry(f, c, a, z0, t0, t1, loop, t_eval, store_dense):
    """``z = [y, q]`` with ``q' = L`` (``QuadratureSystem``): a ``LoopResult``."""
    buf = np.zeros(z0.shape[0])
    b = borrow1(buf)  # borrowed views of one scratch block, kept alive below
    sys = QuadratureSystem(f.rhs, f.jac, c.L, c.dLdy, borrow1(a.p), borrow1(a.tw), borrow2(a.W),
                           borrow1(a.wbuf), b[:1], b[1:])
    out = integrate(sys, z0, t0, t1, loop, t_eval, store_dense)
    keep_alive(buf)
    return out


register_entry("quadrature", _quadrature_entry, (MODEL, COST, INPUTS, A1, F8, F8, LOOP, A1, I8))
