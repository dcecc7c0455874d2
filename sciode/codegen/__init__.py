"""Code generation: SymPy derivatives -> cached Numba kernels.

This is where SymPy stops.  ``model_kernels(model)`` and
``cost_kernels(model, cost)`` return ``KernelSet`` objects holding compiled
Numba functions with the signatures of ``sciode.abi``; downstream code
(integrators, sensitivity drivers) sees only those.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
from sympy.printing.codeprinter import PrintMethodNotImplementedError

from .. import _numba_compat, abi
from ..cost import as_cost
from ..errors import ModelError
from . import cache
from .cache import STATS, cache_dir

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


_ZERO_KERNELS: dict = {}


def zero_kernel(sig) -> Kernel:
    """The shared kernel that writes zeros, for the ABI signature ``sig``: it
    stands for every generated kernel whose outputs are structurally zero (an
    autonomous model's ``dfdt``, a cost without a terminal term's ``Phi``...),
    compiled once per installation with the loops instead of once per model."""
    for kind, fn in ((abi.VEC_SIG, _zero_vec), (abi.VJP_SIG, _zero_vjp), (abi.MAT_SIG, _zero_mat)):
        if sig == kind:
            k = _ZERO_KERNELS.get(fn.__name__)
            if k is None:
                k = _ZERO_KERNELS[fn.__name__] = Kernel(
                    numba.njit(sig, cache=True, nogil=True, **KERNEL_OPTIONS)(fn), sig, **KERNEL_OPTIONS)
            return k
    raise ValueError(f"no zero kernel for the signature {sig}")


class KernelSet:
    """Compiled kernels of one generated module, compiled lazily by name.

    Each kernel is compiled on first use with its fixed ABI signature and
    Numba's disk cache, so a process pays only for the kernels it calls, and
    a second process loads them from disk.
    """

    def __init__(self, module, signatures: dict, digest: str):
        self.module = module
        self.digest = digest
        self._signatures = dict(signatures)
        self._compiled: dict = {}

    @property
    def path(self) -> str:
        return self.module.__file__

    def __getitem__(self, name: str):
        fn = self._compiled.get(name)
        if fn is None:
            if name not in self._signatures:
                raise KeyError(f"no kernel `{name}`; kernels are {sorted(self._signatures)}")
            sig = self._signatures[name]
            if name in getattr(self.module, "ZERO_KERNELS", ()):
                fn = self._compiled[name] = zero_kernel(sig)
                return fn
            fn = Kernel(numba.njit(sig, cache=True, nogil=True, **KERNEL_OPTIONS)(
                getattr(self.module, name)), sig, **KERNEL_OPTIONS)
            self._compiled[name] = fn
        return fn

    def compile_all(self) -> "KernelSet":
        for name in self._signatures:
            self[name]
        return self

    def __repr__(self) -> str:
        return f"KernelSet({self.path!r}, kernels={sorted(self._signatures)})"


class ModelKernels(KernelSet):
    """Kernels of a model's right-hand side (see ``sciode.abi.MODEL_KERNELS``)."""

    @property
    def n_states(self) -> int:
        return self.module.N_STATES

    @property
    def n_params(self) -> int:
        return self.module.N_PARAMS

    @property
    def n_controls(self) -> int:
        return self.module.N_CONTROLS

    def newton(self, *methods) -> tuple:
        """``(jac, dfdt, jac_p)``, the kernels that only the stiff loops call (their
        Newton matrices), for loops that run the method tuples ``methods``.

        ``jac`` is the Jacobian in the storage of the methods' linear mode: the
        dense ``jac_y`` ``(n, n)``, or the pattern's values ``jac_nz`` ``(1, nnz)``
        where the mode is banded (``cpu.linalg.jacobian_storage``), so a banded
        solve never fills an ``n x n`` matrix.  The methods of one call share the
        kernel, so they must agree.  Explicit methods only (no ``banded`` field):
        the shared zero kernel stands in for each (the explicit loops never call
        them), so that a new model compiles only the kernels its method runs."""
        banded = {bool(m.banded) for m in methods if hasattr(m, "banded")}
        names = ("jac_y", "dfdt", "jac_p")
        if not banded:
            return tuple(zero_kernel(self._signatures[name]) for name in names)
        if len(banded) > 1:
            raise ValueError("these methods store the Jacobian both densely and banded; "
                             "one set of kernels serves one storage")
        return (self["jac_nz" if banded.pop() else "jac_y"], self["dfdt"], self["jac_p"])

    @property
    def jac_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the structural nonzeros of ``df/dy``, in the
        order of ``jac_nz``'s values (``sciode.abi``)."""
        return (np.asarray(self.module.JAC_ROWS, dtype=np.int64),
                np.asarray(self.module.JAC_COLS, dtype=np.int64))


class CostKernels(KernelSet):
    """Kernels of a cost (see ``sciode.abi.COST_KERNELS``)."""

    @property
    def n_obs(self) -> int:
        return self.module.N_OBS


_HEADER = '"""Generated by sciode.codegen (API {api}) for {what}. Do not edit."""\n'


def model_kernels(model, use_cse: bool = True) -> ModelKernels:
    """Generated, cached kernels for ``model``'s right-hand side.

    The symbolic derivation runs only when the module is not in the cache.
    """
    key = (model.content_key(), use_cse)
    digest = _MODEL_DIGESTS.get(key)  # the key string caches its own hash: O(1) after the first call
    if digest is None:
        digest = _MODEL_DIGESTS[key] = cache.content_hash("model", key[0], f"cse={use_cse}")

    def build():
        header = _HEADER.format(api=cache.CODEGEN_API, what=f"model {model.name!r}")
        with _unsupported_as_model_error(f"model {model.name!r}"):
            if model.structure is not None:
                # matrix form: derived and written as loops over the blocks
                from ..symbolic.matrix import lower
                from .structured import model_module_source as structured_source

                return structured_source(lower(model), header)
            from ..symbolic.derive import derive_model
            from .modules import model_module_source

            return model_module_source(derive_model(model), header, use_cse)

    module = cache.load_or_build("model", digest, build)
    return _memo(ModelKernels, module, abi.MODEL_KERNELS, digest)


def cost_structure_key(model, cost) -> str:
    """Content key of a cost's expressions (not of its data values)."""
    import sympy as sp

    from ..symbolic.derive import observables

    cost = as_cost(cost)
    return "|".join((sp.srepr(cost.terminal), sp.srepr(cost.running), sp.srepr(observables(model, cost))))


def cost_kernels(model, cost, use_cse: bool = True) -> CostKernels:
    """Generated, cached kernels for ``cost`` on ``model``."""
    cost = as_cost(cost)
    cost.check(model)
    key = (cost.structure(model), use_cse)
    digest = _COST_DIGESTS.get(key)  # srepr of the expressions is slow: once per structure
    if digest is None:
        digest = _COST_DIGESTS[key] = cache.content_hash(
            "cost", model.content_key(), cost_structure_key(model, cost), f"cse={use_cse}")

    def build():
        from ..symbolic.derive import derive_cost
        from .modules import cost_module_source

        header = _HEADER.format(api=cache.CODEGEN_API, what=f"a cost on model {model.name!r}")
        with _unsupported_as_model_error(f"the cost on model {model.name!r}"):
            return cost_module_source(model, derive_cost(model, cost), header, use_cse)

    module = cache.load_or_build("cost", digest, build)
    return _memo(CostKernels, module, abi.COST_KERNELS, digest)


@contextlib.contextmanager
def _unsupported_as_model_error(what: str, backend: str = "Numba"):
    """Turn SymPy's 'no print method' into a ModelError naming the function."""
    try:
        yield
    except PrintMethodNotImplementedError as exc:
        expr = getattr(exc, "expr", None)
        name = type(expr).__name__ if expr is not None else str(exc)
        raise ModelError(
            f"cannot generate kernels for {what}: the function `{name}` has no "
            f"{backend} translation (kernels support the `math` module functions, "
            "Piecewise, Min/Max, Abs, sign and Heaviside); rewrite it with those, "
            "or add a state whose ODE produces it"
        ) from None


_SETS: dict = {}
_MODEL_DIGESTS: dict = {}
_COST_DIGESTS: dict = {}


def _memo(cls, module, signatures, digest):
    ks = _SETS.get(digest)
    if ks is None:
        ks = _SETS[digest] = cls(module, signatures, digest)
    return ks


__all__ = ["zero_kernel", "KernelSet", "ModelKernels", "CostKernels", "model_kernels", "cost_kernels", "cache_dir", "STATS"]
