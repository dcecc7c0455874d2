"""Code generation: SymPy derivatives -> cached Numba kernels.

This is where SymPy stops.  ``model_kernels(model)`` and
``cost_kernels(model, cost)`` return ``KernelSet`` objects holding compiled
Numba functions with the signatures of ``sciode.abi``; downstream code
(integrators, sensitivity drivers) sees only those.
"""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np
from sympy.printing.codeprinter import PrintMethodNotImplementedError

from .. import abi
from ..cost import as_cost
from ..errors import ModelError
from . import cache
from .cache import STATS, cache_dir
from .shared import KERNEL_FASTMATH, KERNEL_OPTIONS, Kernel, compile_kernel, zero_kernel  # noqa: F401  (re-exported)


#: Which compiler makes the generated kernels' machine code: ``native``
#: (``codegen.native``, through llvmlite, in milliseconds; Numba for a kernel it
#: does not translate) or ``numba``.  The portable path always uses Numba.
KERNEL_COMPILER_ENV = "SCIODE_KERNEL_COMPILER"
#: Why kernels fell back to Numba: ``{(module, kernel): reason}``.
NATIVE_FALLBACKS: dict = {}
_PARSED: dict = {}
_WARNED: list = []


def native_enabled() -> bool:
    """Whether generated kernels are compiled by ``codegen.native``."""
    from .. import _numba_compat

    choice = os.environ.get(KERNEL_COMPILER_ENV, "native").strip().lower()
    if choice not in ("native", "numba"):
        raise ValueError(f"{KERNEL_COMPILER_ENV} must be 'native' or 'numba', got {choice!r}")
    return choice == "native" and not _numba_compat.PORTABLE


def native_kernel(module, name: str, sig):
    """The kernel ``name`` of the generated ``module`` compiled by
    ``codegen.native`` (a ``_numba_compat.DirectKernel``), or ``None`` where
    that is off or the kernel uses Python it does not translate."""
    if not native_enabled():
        return None
    from .. import _numba_compat
    from . import native

    source = getattr(module, "__sciode_source__", None)
    if source is None:
        return None
    parsed = _PARSED.get(module.__name__)
    if parsed is None:
        import hashlib

        parsed = _PARSED[module.__name__] = (*native.parse_module(source),
                                             hashlib.sha256(source.encode()).hexdigest())
    functions, consts, source_key = parsed
    tree = functions.get(name)
    if tree is None:
        return None
    abi_ = _numba_compat.direct_kernel_abi(sig)
    try:
        address, py_address = native.compile_function(tree, consts, abi_, source_key,
                                                      native.ObjectStore(cache_dir() / "native"))
    except (native.Unsupported, RecursionError) as exc:  # (an expression nested too deep to walk)
        NATIVE_FALLBACKS[(module.__name__, name)] = str(exc) or type(exc).__name__
        return None
    except Exception as exc:  # a translator bug must cost speed, never a result
        NATIVE_FALLBACKS[(module.__name__, name)] = f"error: {type(exc).__name__}: {exc}"
        if _WARNED:
            return None
        _WARNED.append(True)  # once per process: an llvmlite the translator does not fit fails every kernel
        warnings.warn(f"sciode: the native kernel compiler failed on `{name}` of {module.__name__} "
                      f"({type(exc).__name__}: {str(exc)[:200]}); Numba compiles it instead (and any other "
                      f"kernel the native compiler fails on: `codegen.NATIVE_FALLBACKS` lists them)",
                      RuntimeWarning, stacklevel=3)
        return None
    options = {k: v for k, v in KERNEL_OPTIONS.items() if k != "fastmath"}
    return _numba_compat.DirectKernel(getattr(module, name), sig, address,
                                      native.python_caller(py_address, abi_.ndims), **options)


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
        self._fns: dict = {}  # bundles handed out by ``fns`` (``_bundle``)

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
            fn = native_kernel(self.module, name, sig)
            if fn is None:
                fn = compile_kernel(getattr(self.module, name), sig)
            self._compiled[name] = fn
        return fn

    def _bundle(self, key, build):
        """``build(take)`` memoised under ``key``, where ``take(name)`` is
        ``self[name]`` (``build`` runs, and checks its arguments, on a miss only).
        A memoised bundle serves while every kernel it took is still this set's:
        replacing a kernel (the fault-injection tests do) rebuilds it, as it
        reaches every caller of ``self[name]``."""
        hit = self._fns.get(key)
        if hit is not None and tuple(map(self._compiled.get, hit[1])) == hit[2]:
            return hit[0]
        taken = {}

        def take(name):
            k = taken[name] = self[name]
            return k

        out = build(take)
        self._fns[key] = (out, tuple(taken), tuple(taken.values()))
        return out

    def compile_all(self) -> "KernelSet":
        for name in self._signatures:
            self[name]
        return self

    def __repr__(self) -> str:
        return f"KernelSet({self.path!r}, kernels={sorted(self._signatures)})"


def _signature(field: str, kernels: dict):
    """The ABI signature of a bundle field (``jac`` is ``jac_y``'s)."""
    return kernels["jac_y" if field == "jac" else field]


def _newton_names(methods) -> dict:
    """``{field: kernel name}`` of the Newton kernels (``ModelKernels.fns``) of
    loops running ``methods``: empty for explicit methods."""
    banded = {bool(m.lin.banded) for m in methods if hasattr(m, "lin")}
    if len(banded) > 1:
        raise ValueError("these methods store the Jacobian both densely and banded; "
                         "one set of kernels serves one storage")
    if not banded:
        return {}
    return {"jac": "jac_nz" if banded.pop() else "jac_y", "dfdt": "dfdt", "jac_p": "jac_p"}


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

    def fns(self, *methods, uses: tuple = ("rhs",)) -> abi.ModelFns:
        """The ``abi.ModelFns`` bundle of an entry point that runs the method
        tuples ``methods`` and calls the kernels named in ``uses``.

        The stiff loops also call ``jac``, ``dfdt`` and ``jac_p`` (their Newton
        matrices): ``jac`` in the storage of the methods' linear mode, the dense
        ``jac_y`` ``(n, n)``, or the pattern's values ``jac_nz`` ``(1, nnz)`` where
        the mode is banded (``cpu.linalg.jacobian_storage``), so a banded solve
        never fills an ``n x n`` matrix; the methods of one call share it, so
        they must agree.  Every other field, and those three for explicit
        methods, holds the shared zero kernel of its kind, so a new model
        compiles only the kernels its call runs."""
        # keyed cheaply on what the bundle depends on: every solve asks for one
        key = (uses, tuple(m.lin.banded if hasattr(m, "lin") else None for m in methods))

        def build(take):
            names = _newton_names(methods)
            for name in uses:
                if name not in abi.MODEL_FNS_FIELDS or name in ("jac", "dfdt", "jac_p"):
                    raise ValueError(f"`uses`: no model kernel {name!r} outside the Newton kernels")
            names.update((name, name) for name in uses)
            return abi.ModelFns(**{
                f: take(names[f]) if f in names else zero_kernel(_signature(f, abi.MODEL_KERNELS))
                for f in abi.MODEL_FNS_FIELDS})

        return self._bundle(key, build)

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

    def fns(self, uses: tuple) -> abi.CostFns:
        """The ``abi.CostFns`` bundle of an entry point that calls the kernels
        named in ``uses`` (the others: the shared zero kernel of their kind);
        ``has_L``: whether the running cost is not structurally zero, read from
        the generated module once (the costate skips ``L_grad`` otherwise)."""
        def build(take):
            for name in uses:
                if name not in abi.COST_KERNELS:
                    raise ValueError(f"`uses`: no cost kernel {name!r}")
            return abi.CostFns(**{name: take(name) if name in uses else zero_kernel(sig)
                                  for name, sig in abi.COST_KERNELS.items()},
                               has_L="L" not in getattr(self.module, "ZERO_KERNELS", ()))

        return self._bundle(uses, build)


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
