"""Compiled entry points: one per (loop driver, method kind), shared by every model.

An entry point takes typed bundles (``abi.ModelFns``, the model's kernels as
first-class functions; ``bundles.Inputs``; ``bundles.Loop``, a method tuple
and its step control), packs a system tuple and calls
``integrate(sys, ..., loop, ...)``.  Its signature is fixed, so it is compiled
once per installation (and per method kind: explicit RK, Rosenbrock, ...)
and loaded from Numba's disk cache afterwards; only the model's small kernels
compile per model.  Entry points are compiled lazily, on first use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading

import numba as nb
from numba import types

from .. import abi
from .._numba_compat import borrow1, borrow2, quiet_compile
from .bundles import INPUTS, loop_type, method_type
from .integrate import integrate
from .systems import ModelSystem

A1, F8, I8 = abi.ARRAY, types.float64, types.int64

#: Placeholders for ``Loop`` bundles in an entry's argument types, typed per
#: call from the method tuple inside (``LOOP2``: a second loop's).
LOOP = "<loop>"
LOOP2 = "<loop2>"


def _forward(f, a, z0, t0, t1, loop, t_eval, store_dense):
    """``integrate`` of the model ``f`` (``abi.ModelFns``) with inputs ``a``
    (``bundles.Inputs``) from ``z0``: a ``LoopResult``."""
    # borrowed views of the arguments (alive for the whole call): see borrow.py
    sys = ModelSystem(f.rhs, f.jac, f.dfdt, borrow1(a.p), borrow1(a.tw), borrow2(a.W),
                      borrow1(a.wbuf))
    return integrate(sys, z0, t0, t1, loop, t_eval, store_dense)


_ENTRIES = {
    "forward": (_forward, (abi.MODEL_FNS, INPUTS, A1, F8, F8, LOOP, A1, I8)),
}
_COMPILED: dict = {}


_BY_IDENTITY: dict = {}


def entry(name: str, method=None, method2=None):
    """The compiled entry point ``name`` for the kinds of ``method`` (and
    ``method2``), the method tuples of its ``Loop`` arguments, compiled or
    loaded on first use.

    Looked up first by the method tuples' identities (the explicit methods are
    cached tuples): hashing a Numba tuple type walks all its fields, ~10 us.
    """
    hit = _BY_IDENTITY.get((name, id(method), id(method2)))
    if hit is not None and hit[0] is method and hit[1] is method2:
        return hit[2]
    mtypes = tuple(None if m is None else method_type(m) for m in (method, method2))
    fn = _COMPILED.get((name,) + mtypes)
    if fn is None:
        py, argtypes = _ENTRIES[name]
        slots = {LOOP: mtypes[0] and loop_type(mtypes[0]), LOOP2: mtypes[1] and loop_type(mtypes[1])}
        sig = tuple(slots[a] if isinstance(a, str) else a for a in argtypes)
        with quiet_compile(), _compile_notice(name):  # warnings about sciode's design: _numba_compat
            fn = _COMPILED[(name,) + mtypes] = nb.njit(sig, cache=True, nogil=True)(py)
        with contextlib.suppress(OSError):  # a read-only cache only loses the shortcut
            marker = _ready_marker((name,) + mtypes)
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
    if len(_BY_IDENTITY) > 256:  # stiff method tuples are rebuilt per call: keep this small
        _BY_IDENTITY.clear()
    # holds the methods: their ids cannot be reused meanwhile
    _BY_IDENTITY[(name, id(method), id(method2))] = (method, method2, fn)
    return fn


def _ready_marker(key):
    """The file that says the entry ``key`` (name and method types) is in the
    disk cache of this source hash and path (fast or portable)."""
    from .._numba_cache import SOURCE_HASH, numba_cache_root
    from .._numba_compat import PORTABLE

    tag = hashlib.sha256(str(key).encode()).hexdigest()[:20]
    return numba_cache_root() / SOURCE_HASH / ("ready-portable" if PORTABLE else "ready") / f"{key[0]}-{tag}"


def is_compiled(name: str, method=None, method2=None) -> bool:
    """Whether the entry ``entry(name, method, method2)`` is compiled in this
    process or loads from the disk cache (an earlier process compiled it), so
    that asking for it costs no compile (``cpu.specialized`` weighs that)."""
    mtypes = tuple(None if m is None else method_type(m) for m in (method, method2))
    return (name,) + mtypes in _COMPILED or _ready_marker((name,) + mtypes).exists()


_NOTICE = {"shown": False}
#: seconds an entry may take to load before the one-time compile is announced
NOTICE_AFTER_S = 1.0


@contextlib.contextmanager
def _compile_notice(name: str):
    """Announce on stderr, once per process, a loop compile that is taking a
    while (a cache hit loads in well under ``NOTICE_AFTER_S``), so that a first
    call names what it waits for.  ``SCIODE_QUIET=1`` silences it."""
    if _NOTICE["shown"] or os.environ.get("SCIODE_QUIET", "") not in ("", "0"):
        yield
        return

    def show():
        _NOTICE["shown"] = True
        print(f"sciode: compiling the solver loops ({name}), once per installation: about a "
              "minute per method family on two cores; `sciode precompile` compiles them all "
              "ahead", file=sys.stderr, flush=True)

    timer = threading.Timer(NOTICE_AFTER_S, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def register_entry(name: str, py_func, argtypes) -> None:
    """Add an entry point (used by the sensitivity drivers); ``LOOP`` (and
    ``LOOP2``) mark its ``Loop`` arguments."""
    _ENTRIES[name] = (py_func, tuple(argtypes))
