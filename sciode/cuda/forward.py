"""One CUDA thread per member: the explicit adaptive loop of ``sciode.cpu``
(``explicit.rk_steps``) for a batch of parameter sets and initial states.

Every member keeps its state, stages and step size in registers / local
memory and takes its own steps (no warp-wide step size): Hairer's starting
step, the stage sums, the RMS error norm of ``err / (atol + rtol max(|z|,
|z_new|))``, the PI controller (``SAFETY``, ``FAC_MIN``, ``FAC_MAX``, beta
0.04 for 5th-order pairs), the landing on ``t1`` and the dense output at
``t_eval`` with the tableau's own interpolant, in the same order of
operations as the CPU loop, so that a member takes the steps
``sciode.solve`` takes for it (checked under the simulator).  The model's
right-hand side is its generated plain-Python kernel compiled as a device
function; the tableau's arrays are captured as constants.

Methods: the adaptive tableaus without extra dense-output stages (``bosh3``,
``dopri5``, ``tsit5``).  float64 and float32 (the loop's arithmetic in the
state's dtype).  Inputs may be NumPy arrays (copied to the device) or device
arrays of any library with ``__cuda_array_interface__`` (CuPy, torch, Numba;
not copied).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside kernels

from ..cpu.explicit import FAC_MAX, FAC_MIN, SAFETY
from ..cpu.status import MAX_STEPS, NONFINITE, STEP_UNDERFLOW, SUCCESS
from ..methods.tableaus import EXPLICIT_TABLEAUS

THREADS_PER_BLOCK = 128
_KERNELS: dict = {}


def available() -> bool:
    """Whether a CUDA device (or Numba's simulator) can run the kernels."""
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001  (a broken driver install reports here)
        return False


def supported(method: str) -> bool:
    tab = EXPLICIT_TABLEAUS.get(str(method).lower())
    return tab is not None and tab.adaptive and tab.e3 is None and tab.s_extra == 0


def _kernel(mk, tab, dtype):
    """The forward kernel for one model, tableau and dtype (built once per process)."""
    key = (mk.digest, tab.name, np.dtype(dtype).str)
    k = _KERNELS.get(key)
    if k is not None:
        return k
    ftype = numba.float64 if np.dtype(dtype) == np.float64 else numba.float32
    rhs = cuda.jit(device=True)(mk.module.rhs)
    N, S = mk.n_states, tab.s
    NW = max(mk.n_controls, 1)
    A = np.ascontiguousarray(tab.A[:S, :S], dtype=dtype)
    b = np.ascontiguousarray(tab.b, dtype=dtype)
    c = np.ascontiguousarray(tab.c, dtype=dtype)
    e = np.ascontiguousarray(tab.e, dtype=dtype)
    Pd = np.ascontiguousarray(tab.P, dtype=dtype)
    D = Pd.shape[1]
    fsal = bool(tab.fsal)
    order = int(tab.order)
    q = float(tab.error_order + 1)
    beta = 0.04 if q >= 5.0 else 0.0
    expo = 1.0 / q - 0.75 * beta
    eps = float(np.finfo(np.float64).eps)  # the CPU loop's guards, in float64

    @cuda.jit(device=True)
    def stage_sum(h, row, K, out, z):
        # out = z + h sum_j row[j] K[j]  (scaled_sum's order: dot product, then h, then z)
        for m in range(N):
            acc = 0.0
            for j in range(row.shape[0]):
                acc += row[j] * K[j, m]
            out[m] = h * acc + z[m]

    @cuda.jit(device=True)
    def stages(t, z, h, p, w, K, work):
        for i in range(1, S):
            for m in range(N):
                acc = 0.0
                for j in range(i):
                    acc += A[i, j] * K[j, m]
                work[m] = h * acc
            for m in range(N):
                work[m] += z[m]
            rhs(t + c[i] * h, work, p, w, K[i])

    @cuda.jit(device=True)
    def finite(v):
        for m in range(N):
            if not math.isfinite(v[m]):
                return False
        return True

    @cuda.jit(device=True)
    def rms(v, z, z2, rtol, atol):
        acc = 0.0
        for m in range(N):
            sc = atol[m] + rtol * max(abs(z[m]), abs(z2[m]))
            acc += (v[m] / sc) ** 2
        return math.sqrt(acc / max(N, 1))

    @cuda.jit(device=True)
    def error_norm(h, K, z, z_new, rtol, atol, work):
        for m in range(N):
            acc = 0.0
            for j in range(S):
                acc += e[j] * K[j, m]
            work[m] = h * acc
        return rms(work, z, z_new, rtol, atol)

    @cuda.jit(device=True)
    def initial_step(t0, z0, f0, direction, rtol, atol, hmax, span, p, w, work, f1):
        d0 = rms(z0, z0, z0, rtol, atol)
        d1 = rms(f0, z0, z0, rtol, atol)
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, hmax, span)
        for m in range(N):
            work[m] = z0[m] + direction * h0 * f0[m]
        rhs(t0 + direction * h0, work, p, w, f1)
        for m in range(N):
            work[m] = f1[m] - f0[m]
        d2 = rms(work, z0, z0, rtol, atol) / h0
        dmax = max(d1, d2)
        if not math.isfinite(dmax):
            return h0 * 1e-3
        h1 = max(1e-6, h0 * 1e-3) if dmax <= 1e-15 else (0.01 / dmax) ** (1.0 / (order + 1))
        return min(100.0 * h0, h1, hmax, span)

    @cuda.jit(device=True)
    def dense(z, h, K, theta, wts, out):
        for i in range(S):
            acc = 0.0
            pw = theta
            for j in range(D):
                acc += Pd[i, j] * pw
                pw *= theta
            wts[i] = acc
        stage_sum(h, wts, K, out, z)

    @cuda.jit
    def forward(P, Z0, t_eval, t0, t1, rtol, atol, h_init, hmax, max_steps, Y, status, t_out,
                stats):
        mem = cuda.grid(1)
        if mem >= Z0.shape[0]:
            return
        p = P[mem]
        z = cuda.local.array(N, ftype)
        z_new = cuda.local.array(N, ftype)
        work = cuda.local.array(N, ftype)
        K = cuda.local.array((S, N), ftype)
        wts = cuda.local.array(S, ftype)
        w = cuda.local.array(NW, ftype)
        for m in range(N):
            z[m] = Z0[mem, m]
        m_eval = t_eval.shape[0]
        direction = 1.0 if t1 >= t0 else -1.0
        span = abs(t1 - t0)
        i_eval = 0
        while i_eval < m_eval and t_eval[i_eval] == t0:
            for m in range(N):
                Y[mem, i_eval, m] = z[m]
            i_eval += 1
        nfev, nsteps, nacc, nrej = 0, 0, 0, 0
        t = t0
        st = SUCCESS
        if span > 0.0:
            rhs(t, z, p, w, K[0])
            nfev += 1
            if not finite(K[0]) or not finite(z):
                st = NONFINITE
        if span > 0.0 and st == SUCCESS:
            if h_init > 0.0:
                h = abs(h_init)
            else:
                h = initial_step(t, z, K[0], direction, rtol, atol, hmax, span, p, w, work, K[1])
                nfev += 1
            err_prev = 1e-4
            rejected_last = False
            saw_nonfinite = False
            while (t1 - t) * direction > 0.0:
                if nsteps >= max_steps:
                    st = MAX_STEPS
                    break
                if h < 10.0 * eps * max(abs(t), 1e-300):
                    st = NONFINITE if saw_nonfinite else STEP_UNDERFLOW
                    break
                reach = (t + direction * h - t1) * direction >= -100.0 * eps * max(abs(t1), span)
                hh = (t1 - t) if reach else direction * h
                stages(t, z, hh, p, w, K, work)
                nfev += S - 1
                nsteps += 1
                stage_sum(hh, b, K, z_new, z)
                ok = finite(z_new)
                err = error_norm(hh, K, z, z_new, rtol, atol, work) if ok else math.inf
                if not math.isfinite(err):
                    saw_nonfinite = True
                    nrej += 1
                    h = abs(hh) * FAC_MIN
                    rejected_last = True
                    continue
                if err > 1.0:
                    nrej += 1
                    h = abs(hh) * max(FAC_MIN, SAFETY * err ** (-1.0 / q))
                    rejected_last = True
                    continue
                fac = FAC_MAX if err == 0.0 else SAFETY * err ** (-expo) * err_prev ** beta
                fac = min(FAC_MAX, max(FAC_MIN, fac))
                if rejected_last:
                    fac = min(fac, 1.0)
                h_next = min(abs(hh) * fac, hmax)
                err_prev = max(err, 1e-4)
                t_new = t1 if reach else t + hh
                while i_eval < m_eval and (t_eval[i_eval] - t_new) * direction <= 0.0:
                    dense(z, hh, K, (t_eval[i_eval] - t) / hh, wts, Y[mem, i_eval])
                    i_eval += 1
                nacc += 1
                t = t_new
                for m in range(N):
                    z[m] = z_new[m]
                rejected_last = False
                h = h_next
                if fsal:
                    for m in range(N):
                        K[0, m] = K[S - 1, m]
                else:
                    rhs(t, z, p, w, K[0])
                    nfev += 1
                    if not finite(K[0]):
                        st = NONFINITE
                        break
        status[mem] = st
        t_out[mem] = t
        stats[mem, 0] = nfev
        stats[mem, 1] = nsteps
        stats[mem, 2] = nacc
        stats[mem, 3] = nrej

    _KERNELS[key] = forward
    return forward


def _device(x, dtype):
    """A device array for ``x`` (no copy when it already lives on the device)."""
    if hasattr(x, "__cuda_array_interface__"):
        return cuda.as_cuda_array(x)
    return cuda.to_device(np.ascontiguousarray(x, dtype=dtype))


def solve(mk, P, Z0, t0: float, t1: float, t_eval: np.ndarray, tab, rtol: float,
          atol: np.ndarray, h_init: float = 0.0, hmax: float = np.inf, max_steps: int = 100_000,
          to_host: bool = True):
    """Launch the forward kernel: ``Y (N, T, n)``, ``status (N,)``, ``t_reached
    (N,)``, ``stats (N, 4)`` as host arrays (``Y`` NaN past a failure), or as
    device arrays with ``to_host=False``.

    ``P (N, n_p)`` and ``Z0 (N, n)``: NumPy or device arrays; their dtype
    (float64 or float32) is the kernel's.
    """
    dtype = np.dtype(getattr(Z0, "dtype", np.float64))
    if dtype not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"CUDA ensembles run in float64 or float32, got {dtype}")
    N, n = Z0.shape
    kernel = _kernel(mk, tab, dtype)
    Pd, Zd = _device(P, dtype), _device(Z0, dtype)
    Y = cuda.to_device(np.full((N, t_eval.shape[0], n), np.nan, dtype=dtype))
    status = cuda.to_device(np.zeros(N, dtype=np.int64))
    t_out = cuda.to_device(np.zeros(N, dtype=np.float64))
    stats = cuda.to_device(np.zeros((N, 4), dtype=np.int64))
    te = cuda.to_device(np.ascontiguousarray(t_eval, dtype=np.float64))
    at = cuda.to_device(np.ascontiguousarray(atol, dtype=dtype))
    blocks = max(1, math.ceil(N / THREADS_PER_BLOCK))
    kernel[blocks, THREADS_PER_BLOCK](Pd, Zd, te, float(t0), float(t1), float(rtol), at,
                                      float(h_init), float(hmax), int(max_steps), Y, status,
                                      t_out, stats)
    if not to_host:
        return Y, status, t_out, stats
    return Y.copy_to_host(), status.copy_to_host(), t_out.copy_to_host(), stats.copy_to_host()
