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
from numba.core.types.function_type import WrapperAddressProtocol
from numba.experimental import function_type as _function_type
from sympy.printing.codeprinter import PrintMethodNotImplementedError

from .. import abi
from ..cost import as_cost
from ..errors import ModelError
from . import cache
from .cache import STATS, cache_dir

# Numba's own address lookups, taken before ``_kernel_addresses`` wraps them.
_WRAPPER_ADDRESS = getattr(_function_type, "_get_wrapper_address", None)
_JIT_ADDRESS = getattr(_function_type, "_get_jit_address", lambda func, sig: 0)


class Kernel(WrapperAddressProtocol):
    """A compiled kernel, passed to the loops by its cached address.

    Numba accepts a dispatcher as a first-class function argument too, but
    looks its wrapper address up on every call (~50 us per kernel, measured
    with numba 0.68): for an entry point taking ten kernels that dwarfs a
    small solve.  This wrapper computes the address once.
    """

    def __init__(self, dispatcher, sig):
        self.dispatcher = dispatcher
        self._sig = sig
        self._address = None
        self._jit_address = None
        # numba's typeof checks this attribute first (no FunctionType built per call)
        self._numba_type_ = numba.types.FunctionType(sig)

    def __wrapper_address__(self) -> int:
        if self._address is None:
            self._address = _WRAPPER_ADDRESS(self.dispatcher, self._sig)
        return self._address

    def jit_address(self) -> int:
        """Address of the compiled function itself (Numba's calling convention):
        a loop that has it calls the kernel directly, not through the C wrapper."""
        if self._jit_address is None:
            self._jit_address = _JIT_ADDRESS(self.dispatcher, self._sig)
        return self._jit_address

    def signature(self):
        return self._sig

    def __call__(self, *args):
        return self.dispatcher(*args)

    @property
    def signatures(self):
        return self.dispatcher.signatures

    @property
    def stats(self):
        return self.dispatcher.stats


def _kernel_addresses() -> None:
    """Answer Numba's per-call address lookups for a ``Kernel`` from its cache.

    Unboxing a first-class function argument calls
    ``function_type._get_wrapper_address`` and ``_get_jit_address`` (looked up
    by name at run time) for every kernel on every call; for other objects
    they check the signature's precision, ~4 us per kernel: with ten kernels
    per entry point that was most of a small solve's fixed cost.  Anything
    that is not a ``Kernel`` goes to Numba's own functions.
    """
    wrapper = getattr(_function_type, "_get_wrapper_address", None)
    jit = getattr(_function_type, "_get_jit_address", None)
    if wrapper is None or jit is None or getattr(wrapper, "_sciode", False):
        return  # another Numba layout: keep its own lookups (slower, still correct)

    def wrapper_address(func, sig):
        return func.__wrapper_address__() if type(func) is Kernel else wrapper(func, sig)

    def jit_address(func, sig):
        return func.jit_address() if type(func) is Kernel else jit(func, sig)

    wrapper_address._sciode = jit_address._sciode = True
    _function_type._get_wrapper_address = wrapper_address
    _function_type._get_jit_address = jit_address


_kernel_addresses()


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
            fn = Kernel(numba.njit(sig, cache=True, nogil=True)(getattr(self.module, name)), sig)
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

    @property
    def jac_pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the structural nonzeros of ``df/dy``."""
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
        from ..symbolic.derive import derive_model
        from .modules import model_module_source

        header = _HEADER.format(api=cache.CODEGEN_API, what=f"model {model.name!r}")
        with _unsupported_as_model_error(f"model {model.name!r}"):
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
def _unsupported_as_model_error(what: str):
    """Turn SymPy's 'no print method' into a ModelError naming the function."""
    try:
        yield
    except PrintMethodNotImplementedError as exc:
        expr = getattr(exc, "expr", None)
        name = type(expr).__name__ if expr is not None else str(exc)
        raise ModelError(
            f"cannot generate kernels for {what}: the function `{name}` has no "
            "Numba translation (kernels support the `math` module functions, "
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


__all__ = ["KernelSet", "ModelKernels", "CostKernels", "model_kernels", "cost_kernels", "cache_dir", "STATS"]
