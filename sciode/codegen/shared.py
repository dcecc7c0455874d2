"""What every generated kernel shares, compiled with the loops: the compile
options, and the kernels that write zeros.

Kept apart from ``codegen/__init__`` (Python that writes, caches and loads
generated modules) so that only this compiled code enters the loops' cache
hash (``sciode._numba_cache``): a change of the code generator or of
``CODEGEN_API`` regenerates the kernels, not the loops.
"""

from __future__ import annotations

import numba

from .. import _numba_compat, abi

#: A compiled kernel handed to the loops (see ``sciode._numba_compat``).
Kernel = _numba_compat.Kernel


#: LLVM flags for the generated kernels: reassociation lets a sum over a band
#: (a parameter's column of a discretised PDE) run in SIMD lanes (Brusselator
#: ``vjp_yp`` 200 -> 100 ns).  No contraction into fused multiply-adds, so an
#: expression evaluates as Python evaluates it, and no flag that assumes
#: finite values: the loops detect NaN and inf from the kernels.  Numba's
#: cache does not key on these flags: change them with ``CODEGEN_API``.
KERNEL_FASTMATH = {"reassoc"}
#: Compile options of every generated kernel.  NumPy's error model: a division
#: by zero gives inf or nan, which the loops report as a non-finite state
#: (a failed solve with its time), instead of an exception out of compiled code;
#: it also leaves out a zero test per division, and lets the portable path call
#: kernels through C wrappers, which cannot carry an exception.
KERNEL_OPTIONS = {"fastmath": KERNEL_FASTMATH, "error_model": "numpy"}


def _zero_vec(t, y, p, w, out):
    for i in range(out.shape[0]):
        out[i] = 0.0


def _zero_vjp(t, y, p, w, v, out):
    for i in range(out.shape[0]):
        out[i] = 0.0


def _zero_mat(t, y, p, w, out):
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = 0.0


def _zero_sens(t, y, p, w, S, out):
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = 0.0


def compile_kernel(fn, sig) -> Kernel:
    """``fn`` (a generated kernel) compiled for the ABI signature ``sig`` with
    ``KERNEL_OPTIONS`` and Numba's disk cache (keyed by the generated module)."""
    return Kernel(numba.njit(sig, cache=True, nogil=True, **KERNEL_OPTIONS)(fn), sig, **KERNEL_OPTIONS)


_ZERO_KERNELS: dict = {}


def zero_kernel(sig) -> Kernel:
    """The shared kernel that writes zeros, for the ABI signature ``sig``: it
    stands for every generated kernel whose outputs are structurally zero (an
    autonomous model's ``dfdt``, a cost without a terminal term's ``Phi``...),
    compiled once per installation with the loops instead of once per model."""
    for kind, fn in ((abi.VEC_SIG, _zero_vec), (abi.VJP_SIG, _zero_vjp), (abi.MAT_SIG, _zero_mat),
                     (abi.SENS_SIG, _zero_sens)):
        if sig == kind:
            k = _ZERO_KERNELS.get(fn.__name__)
            if k is None:
                k = _ZERO_KERNELS[fn.__name__] = compile_kernel(fn, sig)
            return k
    raise ValueError(f"no zero kernel for the signature {sig}")
