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

Methods: the adaptive explicit tableaus (``bosh3``, ``dopri5``, ``tsit5``,
``dop853`` with its extra dense-output stages).  float64 and float32 (the loop's arithmetic in the
state's dtype).  Inputs may be NumPy arrays (copied to the device) or device
arrays of any library with ``__cuda_array_interface__`` (CuPy, torch, Numba;
not copied).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside kernels

from ..methods.registry import METHODS
from .loop import build_loop

THREADS_PER_BLOCK = 128
_KERNELS: dict = {}


def available() -> bool:
    """Whether a CUDA device (or Numba's simulator) can run the kernels."""
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001  (a broken driver install reports here)
        return False


def supported(method: str) -> bool:
    """Whether ``method`` runs on the GPU (``sciode.methods.registry``)."""
    info = METHODS.get(str(method).lower())
    return info is not None and "cuda" in info.devices


def _kernel(mk, tab, dtype):
    """The forward kernel for one model, tableau and dtype (built once per process)."""
    key = (mk.digest, tab.name, np.dtype(dtype).str)
    k = _KERNELS.get(key)
    if k is not None:
        return k
    ftype = numba.float64 if np.dtype(dtype) == np.float64 else numba.float32
    rhs = cuda.jit(device=True)(mk.module.rhs)
    N, S = mk.n_states, tab.s_total  # with DOP853's extra dense-output stages
    NW = max(mk.n_controls, 1)
    integrate = build_loop(rhs, N, tab, dtype)

    @cuda.jit
    def forward(P, Z0, t_eval, t0, t1, rtol, atol, h_init, hmax, max_steps, Y, status, t_out,
                stats):
        mem = cuda.grid(1)
        if mem >= Z0.shape[0]:
            return
        z = cuda.local.array(N, ftype)
        z_new = cuda.local.array(N, ftype)
        work = cuda.local.array(N, ftype)
        K = cuda.local.array((S, N), ftype)
        wts = cuda.local.array(S, ftype)
        w = cuda.local.array(NW, ftype)
        nothing = cuda.local.array((1, 1), ftype)
        for m in range(N):
            z[m] = Z0[mem, m]
        st, t = integrate(P[mem], w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, t_eval, Y[mem],
                          nothing[0], nothing[0], nothing, False, K, z_new, work, wts, stats[mem])
        status[mem] = st
        t_out[mem] = t

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
