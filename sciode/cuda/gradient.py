"""Per-member gradients on the GPU: the discrete adjoint of each member's own
Runge--Kutta steps, one thread per member (``sciode.adjoint.discrete`` on the CPU).

The thread integrates ``z = [y, q]`` with ``q' = L(t, y, p)`` (so the running
cost is integrated by the same scheme, as on the CPU), records each accepted
step's start ``(t_k, h_k, z_k)`` in global memory, then runs the steps
backward with the step sizes held fixed: for ``Y_i = z + h sum_j A_ij K_j``,
``K_i = F(t + c_i h, Y_i)``, ``z' = z + h sum_i b_i K_i`` and the adjoint
``a'`` of ``z'``, in reverse stage order::

    Kbar_i = h b_i a' + h sum_{j>i} A_ji Ybar_j,   Ybar_i = (dF/dz)(Y_i)^T Kbar_i
    a      = a' + sum_i Ybar_i,                     pbar += (dF/dp)(Y_i)^T Kbar_i

starting from ``a = [dPhi/dy(y(t1)), 1]``.  The stages are recomputed from
``z_k`` (the same inputs give the same numbers as the forward pass).  The
result is the exact derivative of the computed solution, and equals the CPU's
``value_and_grad(..., sensitivity="discrete")`` member by member (same steps).
Costs: terminal and running terms (least-squares data on the GPU: not yet).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside kernels

from ..cpu.status import MAX_STEPS
from .forward import THREADS_PER_BLOCK, _device
from .loop import build_loop, stage_functions

_KERNELS: dict = {}
#: Bytes of step records per launch: members are launched in batches below it.
STORE_BYTES = 1 << 30


def _kernel(mk, ck, tab, dtype):
    key = (mk.digest, ck.digest, tab.name, np.dtype(dtype).str)
    k = _KERNELS.get(key)
    if k is not None:
        return k
    ftype = numba.float64 if np.dtype(dtype) == np.float64 else numba.float32
    n, n_p = mk.n_states, mk.n_params
    NA, S, S_tot = n + 1, tab.s, tab.s_total
    NP = max(n_p, 1)
    NW = max(mk.n_controls, 1)
    f = cuda.jit(device=True)(mk.module.rhs)
    vjp_y = cuda.jit(device=True)(mk.module.vjp_y)
    vjp_p = cuda.jit(device=True)(mk.module.vjp_p)
    L = cuda.jit(device=True)(ck.module.L)
    dLdy = cuda.jit(device=True)(ck.module.dLdy)
    dLdp = cuda.jit(device=True)(ck.module.dLdp)
    Phi = cuda.jit(device=True)(ck.module.Phi)
    dPhidy = cuda.jit(device=True)(ck.module.dPhidy)
    dPhidp = cuda.jit(device=True)(ck.module.dPhidp)
    A = np.ascontiguousarray(tab.A[:S, :S], dtype=dtype)
    b = np.ascontiguousarray(tab.b, dtype=dtype)
    c = np.ascontiguousarray(tab.c, dtype=dtype)

    @cuda.jit(device=True)
    def F(t, z, p, w, out):
        # [f, L] of the augmented state [y, q]
        f(t, z[:n], p, w, out[:n])
        L(t, z[:n], p, w, out[n:])

    integrate = build_loop(F, NA, tab, dtype)
    stages = stage_functions(F, NA, tab, dtype)[0]

    @cuda.jit(device=True)
    def stage_vjp(t, Y, p, w, kbar, ybar, pbar, tmp_n, tmp_p):
        # ybar = (dF/dz)^T kbar, pbar += (dF/dp)^T kbar for F = [f, L]  (discrete._stage_vjp)
        vjp_y(t, Y[:n], p, w, kbar[:n], ybar[:n])
        dLdy(t, Y[:n], p, w, tmp_n)
        for i in range(n):
            ybar[i] += kbar[n] * tmp_n[i]
        ybar[n] = 0.0
        if n_p > 0:
            vjp_p(t, Y[:n], p, w, kbar[:n], tmp_p)
            for j in range(n_p):
                pbar[j] += tmp_p[j]
            dLdp(t, Y[:n], p, w, tmp_p)
            for j in range(n_p):
                pbar[j] += kbar[n] * tmp_p[j]

    @cuda.jit
    def gradient(P, Z0, t0, t1, rtol, atol, h_init, hmax, max_steps, no_eval, Ts, Hs, Zs, value,
                 G, status, t_out, stats):
        mem = cuda.grid(1)
        if mem >= Z0.shape[0]:
            return
        p = P[mem]
        z = cuda.local.array(NA, ftype)
        z_new = cuda.local.array(NA, ftype)
        work = cuda.local.array(NA, ftype)
        K = cuda.local.array((S_tot, NA), ftype)  # the loop's stages (no output times: no extras used)
        wts = cuda.local.array(S_tot, ftype)
        w = cuda.local.array(NW, ftype)
        nothing = cuda.local.array((1, 1), ftype)
        for m in range(n):
            z[m] = Z0[mem, m]
        z[n] = 0.0
        st, t = integrate(p, w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, no_eval, nothing,
                          Ts[mem], Hs[mem], Zs[mem], True, K, z_new, work, wts, stats[mem])
        status[mem] = st
        t_out[mem] = t
        if st != 0:
            value[mem] = math.nan
            for j in range(n + n_p):
                G[mem, j] = math.nan
            return
        # value and the adjoint's start: a = [dPhi/dy, 1], pbar = dPhi/dp
        a = cuda.local.array(NA, ftype)
        pbar = cuda.local.array(NP, ftype)
        tmp_n = cuda.local.array(NA, ftype)
        tmp_p = cuda.local.array(NP, ftype)
        one = cuda.local.array(1, ftype)
        Phi(t1, z[:n], p, w, one)
        value[mem] = one[0] + z[n]
        dPhidy(t1, z[:n], p, w, a[:n])
        a[n] = 1.0
        for j in range(n_p):
            pbar[j] = 0.0
        Kbar = cuda.local.array((S, NA), ftype)
        Y = cuda.local.array(NA, ftype)
        Ybar = cuda.local.array(NA, ftype)
        zk = cuda.local.array(NA, ftype)
        n_acc = stats[mem, 2]
        for k in range(n_acc - 1, -1, -1):
            h = Hs[mem, k]
            tk = Ts[mem, k]
            for m in range(NA):
                zk[m] = Zs[mem, k, m]
            # the step's stages again, by the forward loop's own stage function
            # (the same inputs and operations, so the same numbers)
            F(tk, zk, p, w, K[0])
            stages(tk, zk, h, p, w, K, work)
            for i in range(S):
                for m in range(NA):
                    Kbar[i, m] = h * b[i] * a[m]
            for i in range(S - 1, -1, -1):
                nonzero = False
                for m in range(NA):
                    if Kbar[i, m] != 0.0:
                        nonzero = True
                if not nonzero:
                    continue
                for m in range(NA):
                    acc = 0.0
                    for j in range(i):
                        acc += A[i, j] * K[j, m]
                    Y[m] = zk[m] + h * acc
                stage_vjp(tk + c[i] * h, Y, p, w, Kbar[i], Ybar, pbar, tmp_n, tmp_p)
                for m in range(NA):
                    a[m] += Ybar[m]
                for j in range(i):
                    if A[i, j] != 0.0:
                        for m in range(NA):
                            Kbar[j, m] += h * A[i, j] * Ybar[m]
        dPhidp(t1, z[:n], p, w, tmp_p)
        for j in range(n_p):
            G[mem, j] = pbar[j] + tmp_p[j]
        for m in range(n):
            G[mem, n_p + m] = a[m]

    _KERNELS[key] = gradient
    return gradient


def value_and_grad(mk, ck, P, Z0, t0: float, t1: float, tab, rtol: float, atol: np.ndarray,
                   h_init: float = 0.0, hmax: float = np.inf, max_steps: int = 4096):
    """``value (N,)``, ``G (N, n_p + n)`` = ``[dJ/dp, dJ/dy0]``, ``status (N,)``,
    ``t_reached (N,)``, ``stats (N, 4)`` (host arrays) for every member.

    ``atol`` covers the states; the cost quadrature ``q`` gets the smallest
    (as the CPU's augmented solve).  A member needs room for its accepted
    steps: ``max_steps`` of them; beyond, it stops with ``MAX_STEPS``.
    Members are launched in batches that keep the step records under
    ``STORE_BYTES``.
    """
    dtype = np.dtype(getattr(Z0, "dtype", np.float64))
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"CUDA ensembles run in float64 or float32, got {dtype}")
    N, n = Z0.shape
    n_p = mk.n_params
    kernel = _kernel(mk, ck, tab, dtype)
    aug = np.empty(n + 1, dtype=dtype)
    aug[:n] = atol
    aug[n] = np.min(atol)
    at = cuda.to_device(aug)
    cap = int(max_steps)
    per_member = (cap * (n + 3)) * dtype.itemsize
    batch = max(1, min(N, STORE_BYTES // max(per_member, 1)))
    Pd, Zd = _device(P, dtype), _device(Z0, dtype)
    no_eval = cuda.to_device(np.zeros(0))
    value = np.empty(N)
    G = np.empty((N, n_p + n))
    status = np.empty(N, dtype=np.int64)
    t_out = np.empty(N)
    stats = np.empty((N, 4), dtype=np.int64)
    for lo in range(0, N, batch):
        hi = min(N, lo + batch)
        m = hi - lo
        Ts = cuda.device_array((m, cap), dtype=dtype)
        Hs = cuda.device_array((m, cap), dtype=dtype)
        Zs = cuda.device_array((m, cap, n + 1), dtype=dtype)
        v = cuda.device_array(m, dtype=dtype)
        g = cuda.device_array((m, n_p + n), dtype=dtype)
        s = cuda.device_array(m, dtype=np.int64)
        tr = cuda.device_array(m, dtype=np.float64)
        sts = cuda.to_device(np.zeros((m, 4), dtype=np.int64))
        blocks = max(1, math.ceil(m / THREADS_PER_BLOCK))
        kernel[blocks, THREADS_PER_BLOCK](Pd[lo:hi], Zd[lo:hi], float(t0), float(t1), float(rtol),
                                          at, float(h_init), float(hmax), cap, no_eval, Ts, Hs,
                                          Zs, v, g, s, tr, sts)
        value[lo:hi], G[lo:hi] = v.copy_to_host(), g.copy_to_host()
        status[lo:hi], t_out[lo:hi] = s.copy_to_host(), tr.copy_to_host()
        stats[lo:hi] = sts.copy_to_host()
    return value, G, status, t_out, stats


__all__ = ["MAX_STEPS", "STORE_BYTES", "value_and_grad"]
