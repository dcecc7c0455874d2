"""Compiled entry points: one per (loop driver, method kind), shared by every model.

An entry point takes the model's kernels as first-class function arguments
(``sciode.abi``), packs them into a system tuple and calls
``integrate(method, sys, ...)``.  Its signature is fixed, so it is compiled
once per installation (and per method kind: explicit RK, Rosenbrock, ...)
and loaded from Numba's disk cache afterwards; only the model's small kernels
compile per model.  Entry points are compiled lazily, on first use.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

import numba as nb
import numpy as np
from numba import types

from .. import abi
from .._numba_compat import borrow1, borrow2, quiet_compile
from .integrate import integrate
from .systems import ModelSystem

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8, B1 = types.float64, types.int64, types.boolean

#: Placeholders in an entry's argument types for the method tuples' types
#: (``METHOD2``: a second method, for entries that run two loops).
METHOD = "<method>"
METHOD2 = "<method2>"

#: ``t0, t1, method, rtol, atol, h_init, hmax, dt, max_steps, t_eval, store, t_stops``;
#: ``store``: 1 steps with dense output, 0 steps, -1 final state only (see ``rk_integrate``)
LOOP_ARGS = (F8, F8, METHOD, F8, A1, F8, F8, F8, I8, A1, I8, A1)
#: ``method, rtol, atol, h_init, hmax, dt, max_steps`` (the sweeps' tail)
SWEEP_ARGS = (METHOD, F8, A1, F8, F8, F8, I8)


def _forward(rhs, jac_y, dfdt, p, tw, W, wbuf, z0, t0, t1, method, rtol, atol, h_init, hmax, dt,
             max_steps, t_eval, store_dense, t_stops):
    # borrowed views of the arguments (alive for the whole call): see borrow.py
    sys = ModelSystem(rhs, jac_y, dfdt, borrow1(p), borrow1(tw), borrow2(W), borrow1(wbuf))
    return integrate(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
                     store_dense, t_stops)


_ENTRIES = {
    "forward": (_forward, (abi.VEC, abi.MAT, abi.VEC, A1, A1, A2, A1, A1) + LOOP_ARGS),
}
_COMPILED: dict = {}


_METHOD_TYPES: dict = {}


def method_type(method):
    """``numba.typeof(method)``, memoised on the tuple's class and field kinds
    (``typeof`` of a tuple of arrays costs ~0.2 ms per call)."""
    key = (type(method), tuple((a.dtype.str, a.ndim) if isinstance(a, np.ndarray) else type(a)
                               for a in method))
    t = _METHOD_TYPES.get(key)
    if t is None:
        t = _METHOD_TYPES[key] = nb.typeof(method)
    return t


_BY_IDENTITY: dict = {}


def entry(name: str, method=None, method2=None):
    """The compiled entry point ``name`` for the kinds of ``method`` (and
    ``method2``), compiled or loaded on first use.

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
        slots = {METHOD: mtypes[0], METHOD2: mtypes[1]}
        sig = tuple(slots[a] if isinstance(a, str) else a for a in argtypes)
        with quiet_compile(), _compile_notice(name):  # warnings about sciode's design: _numba_compat
            fn = _COMPILED[(name,) + mtypes] = nb.njit(sig, cache=True, nogil=True)(py)
    if len(_BY_IDENTITY) > 256:  # stiff method tuples are rebuilt per call: keep this small
        _BY_IDENTITY.clear()
    # holds the methods: their ids cannot be reused meanwhile
    _BY_IDENTITY[(name, id(method), id(method2))] = (method, method2, fn)
    return fn


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
    """Add an entry point (used by the sensitivity drivers); ``METHOD`` (and
    ``METHOD2``) mark the method slots."""
    _ENTRIES[name] = (py_func, tuple(argtypes))
