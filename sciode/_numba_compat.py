"""Every use of Numba's private internals, each beside its public-API fallback.

sciode's compiled layer is fast because of eight things Numba does not promise
to keep (checked against Numba 0.59-0.68):

==================================  ==================================  =================================
fast path (private)                 why                                 portable fallback (public API)
==================================  ==================================  =================================
``KernelType``: a first-class       Numba's own unboxing of a           ``types.FunctionType`` of a
function type unboxed from two      ``FunctionType`` argument costs     ``Kernel`` that implements the
addresses the ``Kernel`` computed   ~1.2 us per kernel per call         wrapper-address protocol
once (the private layout of
``FunctionModel``)
kernel addresses read from          the loops call a kernel through     ``numba.cfunc(sig).address``
``get_compile_result(sig).library`` its Numba-convention address        (a second compile per kernel)
a cache locator subclassing         one source hash over the package    Numba's own locator (the
``caching._CacheLocator``, inserted stamps every loop, so editing a     ``NUMBA_CACHE_DIR`` or
in ``CacheImpl._locator_classes``   callee recompiles its callers       ``__pycache__``), stamped per file
borrowed views (``borrow1..3``):    Numba increfs/decrefs every array   the arrays themselves, reference
arrays without a meminfo            of a system tuple at each use       counted as usual
``_nrt=False`` on the allocation-   no reference counting in the        reference counting (Numba's
free stepping cores                 inner loops                         default)
``_numba_type_`` on the kernel      read by the dispatcher's C typeof:  ``typeof_impl.register`` (a Python
bundles (``abi.ModelFns``)          ~3 us less per bundle per call      call per bundle per call)
a dispatcher's pickled UUID set     a closure over a compiled function  no disk cache for those closures
(``_set_uuid``) to a stable name    (``cpu.specialized``) gets the      (compiled once per process)
                                    same cache key in every process
quiet ``NumbaIRAssumptionWarning``  (inlining on purpose; first-class   the same: they are warnings about
and the experimental-feature        functions are the design)           our design, in both modes
warning while compiling the loops
generated kernels compiled to       Numba compiles a kernel at ~25 ms   the kernels compiled by Numba
machine code by ``codegen.native``  per line; llvmlite in milliseconds  (``numba.njit``)
with the argument types Numba's
data model gives an array and the
C address a loop calls
(``DirectKernel``)
==================================  ==================================  =================================

At import a self-test compares the private layouts with what the fast path
was written for (``self_test``).  A mismatch (a new Numba release) selects
the portable path and warns once; ``SCIODE_PORTABLE=1`` forces it.  The
portable path may be slower, never different: both compute the same floating
point operations (``tests/test_numba_compat.py``; CI runs the solve and
gradient tests a second time with ``SCIODE_PORTABLE=1``).

The two paths keep separate on-disk caches: the fast path's locator writes
under ``$SCIODE_CACHE_DIR/numba/<source hash>``, Numba's own under
``NUMBA_CACHE_DIR`` (or next to the sources).  Numba's own locator stamps a
loop with its file's modification time only, so a developer who edits a
callee in another module and runs with ``SCIODE_PORTABLE=1`` should clear
that cache; installed packages never change under it.

No other module of sciode imports from ``numba.core``, ``numba.experimental``
or passes private options (``tests/test_numba_compat.py`` checks the sources).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import warnings
from pathlib import Path

import numba as nb
from numba import types

#: Numba versions the fast path was checked against, [low, high).
TESTED_NUMBA = ((0, 59), (0, 69))
#: Field names of ``numba.experimental.function_type.FunctionModel`` that
#: ``KernelType``'s unboxing fills.
EXPECTED_FUNCTION_FIELDS = ("c_addr", "py_addr", "jit_addr")
#: Field names of Numba's array struct; a borrowed view leaves ``meminfo`` null.
EXPECTED_ARRAY_FIELDS = ("meminfo", "parent", "nitems", "itemsize", "data", "shape", "strides")
_LOCATOR_METHODS = ("ensure_cache_path", "get_cache_path", "get_source_stamp",
                    "get_disambiguator", "from_function")


def self_test(expected_function_fields=EXPECTED_FUNCTION_FIELDS,
              expected_array_fields=EXPECTED_ARRAY_FIELDS) -> str | None:
    """Why the fast path must not be used with this Numba, or ``None`` if it may.

    Checks the version range and, without compiling anything, every private
    name and layout the fast path touches.
    """
    m = re.match(r"(\d+)\.(\d+)", nb.__version__)
    version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    low, high = TESTED_NUMBA
    if not low <= version < high:
        return (f"Numba {nb.__version__} is outside the range the fast path was checked "
                f"against ({'.'.join(map(str, low))} <= version < {'.'.join(map(str, high))})")
    try:
        from numba.core import caching, cgutils, funcdesc  # noqa: F401
        from numba.core.datamodel import default_manager
        from numba.core.dispatcher import Dispatcher
        from numba.core.extending import NativeValue, register_model, unbox  # noqa: F401
        from numba.experimental.function_type import FunctionModel  # noqa: F401

        fields = tuple(default_manager.lookup(types.FunctionType(types.void(types.float64)))._fields)
        if sorted(fields) != sorted(expected_function_fields):
            return (f"numba.experimental.function_type.FunctionModel has the fields {fields}, "
                    f"not {tuple(expected_function_fields)}")
        fields = tuple(default_manager.lookup(types.float64[::1])._fields)
        if fields != tuple(expected_array_fields):
            return f"Numba's array struct has the fields {fields}, not {tuple(expected_array_fields)}"
        missing = [name for name in _LOCATOR_METHODS if not hasattr(caching._CacheLocator, name)]
        if missing or not isinstance(caching.CacheImpl._locator_classes, list):
            return f"numba.core.caching changed (_CacheLocator lacks {missing} or no _locator_classes list)"
        for owner, name in ((Dispatcher, "get_compile_result"), (Dispatcher, "_set_uuid"),
                            (Dispatcher, "_MemoMixin__uuid"),
                            (funcdesc.FunctionDescriptor, "llvm_func_name"),
                            (funcdesc.FunctionDescriptor, "llvm_cfunc_wrapper_name")):
            if not hasattr(owner, name):
                return f"{owner.__module__}.{owner.__name__} has no `{name}`"
    except (ImportError, AttributeError, KeyError, TypeError) as exc:
        return f"a Numba internal the fast path uses is gone ({type(exc).__name__}: {exc})"
    return None


def _select() -> tuple[bool, str | None]:
    if os.environ.get("SCIODE_PORTABLE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True, "SCIODE_PORTABLE is set"
    reason = self_test()
    if reason is not None:
        warnings.warn(f"sciode: {reason}; using the portable path (public Numba API only: slower, "
                      "same results). Set SCIODE_PORTABLE=1 to silence this.", RuntimeWarning, stacklevel=3)
        return True, reason
    return False, None


#: ``True`` when the portable path (public Numba API only) is in use; ``REASON`` says why.
PORTABLE, REASON = _select()

#: njit options of the allocation-free stepping cores: no reference counting
#: on the fast path, Numba's default on the portable one.
NO_NRT: dict = {} if PORTABLE else {"_nrt": False}


@contextlib.contextmanager
def quiet_compile():
    """Compile sciode's loops without two warnings about its own design:
    Numba's pedantic IR check flags variables renamed by ``inline="always"``
    (the system and stage helpers are inlined on purpose), and first-class
    functions are flagged experimental (they are how one loop serves every
    model, ``sciode.abi``)."""
    from numba.core.errors import NumbaExperimentalFeatureWarning, NumbaIRAssumptionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaIRAssumptionWarning)
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        yield


# --- kernels as arguments -------------------------------------------------------------------

class _KernelBase:
    """A compiled kernel handed to the loops (``codegen.KernelSet`` makes them).

    ``dispatcher`` is the Numba dispatcher compiled for ``sig`` (Python calls
    go through it); ``options`` are its compile options, which the portable
    path's C-callable twin must share.
    """

    def __init__(self, dispatcher, sig, **options):
        self.dispatcher = dispatcher
        self._sig = sig
        self._options = options

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


if not PORTABLE:
    from numba.core import cgutils
    from numba.core.extending import NativeValue, register_model, unbox
    from numba.experimental.function_type import FunctionModel

    class KernelType(types.FunctionType):
        """The Numba type of a compiled kernel (``Kernel``) as an argument.

        A first-class function like Numba's ``FunctionType`` (same data model,
        called through its jit address), but unboxed from the two addresses
        the ``Kernel`` computed once (``_addresses``).  Numba's own
        unboxing of a ``FunctionType`` argument imports a module and unpickles
        the signature twice per kernel per call, ~1.2 us: an entry point with
        seven kernels spent more time unboxing them than a small sweep takes.
        """

    register_model(KernelType)(FunctionModel)

    @unbox(KernelType)
    def _unbox_kernel(typ, obj, c):
        # one attribute, ``Kernel._addresses``: 16 bytes holding (c_addr, jit_addr)
        fn = cgutils.create_struct_proxy(typ)(c.context, c.builder)
        addresses = c.pyapi.object_getattr_string(obj, "_addresses")
        is_error = cgutils.is_null(c.builder, addresses)
        with c.builder.if_then(c.builder.not_(is_error), likely=True):
            # (a missing attribute, not a Kernel: its AttributeError propagates)
            raw = c.builder.bitcast(c.pyapi.bytes_as_string(addresses),
                                    c.context.get_value_type(types.voidptr).as_pointer())
            fn.c_addr = c.builder.load(raw)
            fn.jit_addr = c.builder.load(c.builder.gep(raw, [cgutils.int32_t(1)]))
            c.pyapi.decref(addresses)  # the Kernel keeps its bytes alive
        fn.py_addr = c.builder.bitcast(obj, c.context.get_value_type(types.voidptr))
        return NativeValue(fn._getvalue(), is_error=is_error)

    def kernel_type(sig):
        """The Numba type of a kernel argument with signature ``sig``."""
        return KernelType(sig)

    class Kernel(_KernelBase):
        """A kernel passed to the loops by its addresses, computed once.

        The loops call it through its jit address (Numba's calling
        convention), the C wrapper being the fallback.
        """

        def __init__(self, dispatcher, sig, **options):
            super().__init__(dispatcher, sig, **options)
            cres = dispatcher.get_compile_result(sig)
            self._c_addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_cfunc_wrapper_name)
            self._jit_addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
            # what the unboxing reads, in one attribute
            self._addresses = struct.pack("PP", self._c_addr, self._jit_addr)
            self._numba_type_ = KernelType(sig)  # numba's typeof reads this first

        def __wrapper_address__(self) -> int:
            return self._c_addr

        def jit_address(self) -> int:
            """Address of the compiled function itself (Numba's calling convention)."""
            return self._jit_addr

else:
    def kernel_type(sig):
        """The Numba type of a kernel argument with signature ``sig``."""
        return types.FunctionType(sig)

    class Kernel(_KernelBase, types.WrapperAddressProtocol):
        """A kernel passed to the loops through Numba's wrapper-address
        protocol: a ``numba.cfunc`` twin of the dispatcher, compiled with the
        same options, supplies the C-callable address.  The generated kernels
        never raise (``error_model="numpy"``), so the C calling convention,
        which cannot carry an exception, loses nothing."""

        def __init__(self, dispatcher, sig, **options):
            super().__init__(dispatcher, sig, **options)
            self._cfunc = nb.cfunc(sig, cache=True, **options)(dispatcher.py_func)

        def __wrapper_address__(self) -> int:
            return self._cfunc.address


def declare_type(cls, numba_type) -> None:
    """Make every instance of ``cls`` have the Numba type ``numba_type`` (for
    bundles whose fields' types are fixed, such as ``abi.ModelFns``)."""
    from numba.extending import typeof_impl

    typeof_impl.register(cls)(lambda val, c: numba_type)
    if not PORTABLE:
        cls._numba_type_ = numba_type


# --- kernels compiled without Numba (``codegen.native``) -----------------------------------------
#: The LLVM-level signature of a kernel that Numba's loops call through its
#: C address (a first-class function's ``c_addr``, when ``jit_addr`` is null):
#: ``arg_types`` as Numba's data model gives them (an array is its struct, by
#: value), ``ndims`` (``None`` for a float argument), ``ret_type`` (Numba's
#: ``void``), the struct's ``data`` and ``shape`` fields, the data pointer's
#: type and ``make_array(builder, ndim, data, shape)``.
DirectABI = None
DirectKernel = None

if not PORTABLE:
    from collections import namedtuple as _namedtuple

    DirectABI = _namedtuple("DirectABI", ["arg_types", "ndims", "ret_type", "data_field", "shape_field",
                                          "data_type", "make_array"])
    _DIRECT_ABIS: dict = {}

    def direct_kernel_abi(sig):
        """The ``DirectABI`` of the kernel signature ``sig`` (float64 scalars and
        C-contiguous float64 arrays), from Numba's own data model: the same
        types the loops' call through a first-class function's C address
        passes (``numba.experimental.function_type.FunctionProtoModel``)."""
        hit = _DIRECT_ABIS.get(sig)
        if hit is not None:
            return hit
        from llvmlite import ir
        from numba.core.datamodel import default_manager

        ndims = []
        for a in sig.args:
            if a == types.float64:
                ndims.append(None)
            elif isinstance(a, types.Array) and a.dtype == types.float64 and a.layout == "C":
                ndims.append(a.ndim)
            else:
                raise TypeError(f"no direct kernel ABI for an argument of type {a}")
        # the function type a loop calls a first-class function's C address through
        # (``FunctionProtoModel``): the kernel is defined with exactly these types
        call_type = getattr(default_manager.lookup(types.FunctionType(sig).ftype).get_value_type(),
                            "pointee", None)
        if not isinstance(call_type, ir.FunctionType):
            raise TypeError("Numba's first-class function prototype is not a pointer to a function type")
        arg_types, ret_type = list(call_type.args), call_type.return_type
        if arg_types != [default_manager.lookup(a).get_value_type() for a in sig.args]:
            raise TypeError("Numba calls a first-class function's C address with other argument types")
        fields = list(EXPECTED_ARRAY_FIELDS)
        data_field, shape_field = fields.index("data"), fields.index("shape")
        data_type = default_manager.lookup(types.float64[::1]).get_value_type().elements[data_field]

        def make_array(builder, nd, data, shape):
            sty = default_manager.lookup(types.Array(types.float64, nd, "C")).get_value_type()
            i64 = ir.IntType(64)
            nitems = shape[0]
            for extent in shape[1:]:
                nitems = builder.mul(nitems, extent)
            strides, step = [], ir.Constant(i64, 8)
            for extent in reversed(shape):
                strides.insert(0, step)
                step = builder.mul(step, extent)
            v = ir.Constant(sty, None)
            values = {"meminfo": ir.Constant(sty.elements[0], None), "parent": ir.Constant(sty.elements[1], None),
                      "nitems": nitems, "itemsize": ir.Constant(i64, 8), "data": data}
            for name, value in values.items():
                v = builder.insert_value(v, value, fields.index(name))
            for k in range(nd):
                v = builder.insert_value(v, shape[k], [shape_field, k])
                v = builder.insert_value(v, strides[k], [fields.index("strides"), k])
            return v

        hit = _DIRECT_ABIS[sig] = DirectABI(arg_types, tuple(ndims), ret_type, data_field, shape_field,
                                            data_type, make_array)
        return hit

    class DirectKernel(_KernelBase):
        """A kernel whose machine code ``codegen.native`` made: the loops call
        it through its C address (``jit_addr`` null), Python through ``call``.
        ``dispatcher``, for the code that compiles the kernel's source into a
        loop of its own (``cpu.specialized``), is Numba's compile of the same
        source with the same arithmetic (``options``: no fast-math flags),
        made on first use."""

        def __init__(self, fn, sig, address, call, **options):
            self._fn = fn
            self._sig = sig
            self._options = options
            self._dispatcher = None
            self._c_addr = address
            self._addresses = struct.pack("PP", address, 0)
            self._numba_type_ = KernelType(sig)
            self._call = call

        @property
        def dispatcher(self):
            if self._dispatcher is None:
                self._dispatcher = nb.njit(self._sig, cache=True, nogil=True, **self._options)(self._fn)
            return self._dispatcher

        def __call__(self, *args):
            return self._call(*args)

        def __wrapper_address__(self) -> int:
            return self._c_addr

        def jit_address(self) -> int:
            """0: the loops call this kernel through its C address."""
            return 0


# --- borrowed views ----------------------------------------------------------------------------
# A system tuple (``sciode.cpu.systems``) is handed to inlined helpers several
# times per stage.  When an inlined helper has more than one basic block, Numba
# increfs and decrefs every array in the tuple at each use (its reference-count
# pruning works within a basic block), ~5-10 ns of atomic work per array.
# Views built with ``numba.carray`` from the data pointer carry no meminfo, so
# those operations become no-ops: measured 68 -> 26 ns per model evaluation on
# Lorenz (numba 0.68).  Safety rests on where Numba places decrefs: a borrowed
# view does not keep its array alive, so borrow only arrays that outlive every
# use of the view: entry-point arguments, or locals that the entry point uses
# again after the loop (``keep_alive``).

if not PORTABLE:
    from numba.extending import intrinsic

    @intrinsic
    def _data_pointer(typingctx, a):
        """The data pointer of the array ``a``, typed ``CPointer(a.dtype)`` (no reference taken)."""
        sig = types.CPointer(a.dtype)(a)

        def codegen(context, builder, signature, args):
            return context.make_array(signature.args[0])(context, builder, args[0]).data

        return sig, codegen

    @nb.njit(cache=True, nogil=True, inline="always")
    def borrow1(a):
        """A view of the 1-D C-contiguous ``a`` without a reference count."""
        return nb.carray(_data_pointer(a), a.shape[0])

    @nb.njit(cache=True, nogil=True, inline="always")
    def borrow2(a):
        """A view of the 2-D C-contiguous ``a`` without a reference count."""
        return nb.carray(_data_pointer(a), (a.shape[0], a.shape[1]))

    @nb.njit(cache=True, nogil=True, inline="always")
    def borrow3(a):
        """A view of the 3-D C-contiguous ``a`` without a reference count."""
        return nb.carray(_data_pointer(a), (a.shape[0], a.shape[1], a.shape[2]))

else:
    @nb.njit(cache=True, nogil=True, inline="always")
    def borrow1(a):
        """``a`` itself (portable path: reference counted as usual)."""
        return a

    borrow2 = borrow3 = borrow1


@nb.njit(cache=True, nogil=True)
def keep_alive(*arrays):
    """Use each array once more, so Numba keeps it alive until this point."""
    acc = 0
    for a in arrays:
        acc += a.size
    return acc


# --- the compiled loops' disk cache ------------------------------------------------------------

def install_cache_locator(package_dir: Path, cache_root, stamp: str):
    """Make Numba cache every function defined under ``package_dir`` in
    ``cache_root() / stamp / <subpackage>``, stamped ``stamp`` (a hash over
    the package's sources; see ``sciode._numba_cache``).  Returns the locator
    class, or ``None`` on the portable path, where Numba's own locator
    (``NUMBA_CACHE_DIR``) is used, in a folder named by ``stamp``."""
    if PORTABLE:
        # Numba's own locator stamps a function with its own file only, so an
        # edited callee in another file leaves its callers' machine code stale
        # (measured: rodas4 adjoint gradients of the wrong sign after an edit of
        # cpu/linalg.py alone).  One cache folder per source hash, set before
        # any sciode loop is decorated, keeps them consistent.
        base = Path(nb.config.CACHE_DIR) if nb.config.CACHE_DIR else cache_root().parent / "numba-portable"
        nb.config.CACHE_DIR = str(base / f"sciode-{stamp}")
        return None
    from numba.core import caching

    class SciodeCacheLocator(caching._CacheLocator):
        """Locator for functions defined in the sciode package."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            rel = Path(py_file).resolve().relative_to(package_dir)
            self._cache_path = str(cache_root() / stamp / rel.parent)

        def get_cache_path(self):
            return self._cache_path

        def ensure_cache_path(self):
            # the cache root is the user's alone (0700), as the kernel modules' directory
            missing, p = [], cache_root()
            while not p.exists() and p.parent != p:
                missing.append(p)
                p = p.parent
            for d in reversed(missing):
                try:
                    d.mkdir(mode=0o700)
                except FileExistsError:
                    pass
            super().ensure_cache_path()

        def get_source_stamp(self):
            return stamp

        def get_disambiguator(self):
            return Path(self._py_file).stem

        @classmethod
        def from_function(cls, py_func, py_file):
            try:
                Path(py_file).resolve().relative_to(package_dir)
            except ValueError:
                return None
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:
                return None
            return self

    for old in [c for c in caching.CacheImpl._locator_classes if c.__name__ == "SciodeCacheLocator"]:
        caching.CacheImpl._locator_classes.remove(old)
    caching.CacheImpl._locator_classes.insert(0, SciodeCacheLocator)
    return SciodeCacheLocator


# --- closures over compiled functions in the disk cache ----------------------------------------

#: Whether closures that capture compiled functions (``cpu.specialized``) can
#: be cached on disk: on the fast path only (``stable_identity``).
CACHE_CLOSURES = not PORTABLE


def stable_identity(dispatcher, name: str):
    """Give ``dispatcher`` the identity ``name`` in the pickles Numba makes of it.

    Numba keys a cached closure by a pickle of the values it captures, and
    pickles a captured dispatcher with a random per-process UUID, so a closure
    over a compiled function would miss the disk cache in every new process
    (and add a new entry to it each time).  Naming the UUID after what the
    dispatcher compiles (a model's digest, a tableau, a function) makes the
    key the same in every process.  A dispatcher that was already pickled
    keeps its UUID: its closures then compile per process, correctly.  On
    the portable path closures over compiled functions are not cached at all
    (``CACHE_CLOSURES``) and this does nothing.
    """
    if CACHE_CLOSURES and getattr(dispatcher, "_MemoMixin__uuid", "set") is None:
        dispatcher._set_uuid(name)
    return dispatcher
