"""Compiled entry points: one per (loop, system) pair, shared by every model.

An entry point takes the model's kernels as first-class function arguments
(``sciode.abi``), packs them into a system tuple and runs a stepping loop.
Its signature is fixed, so it is compiled once per installation and loaded
from Numba's disk cache afterwards; only the model's small kernels compile
per model.  Entry points are compiled lazily, on first use.
"""

from __future__ import annotations

import numba as nb
from numba import types

from .. import abi
from .explicit import rk_integrate
from .systems import ModelSystem

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8, B1 = types.float64, types.int64, types.boolean

#: the arguments every explicit loop takes after the system and ``z0``.
RK_ARGS = (F8, F8, A2, A1, A1, A1, A1, A2, A2, A1, B1, B1, I8, F8, F8, A1, F8, F8, F8, I8, A1, B1, A1)


def _forward_rk(rhs, jac_y, dfdt, p, tw, W, wbuf, z0, t0, t1, A, b, c, e, e3, P, A_ext, c_ext,
                fsal, adaptive, order, q, rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense,
                t_stops):
    sys = ModelSystem(rhs, jac_y, dfdt, p, tw, W, wbuf)
    return rk_integrate(sys, z0, t0, t1, A, b, c, e, e3, P, A_ext, c_ext, fsal, adaptive,
                        order, q, rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense, t_stops)


_ENTRIES = {
    "forward_rk": (_forward_rk, (abi.VEC, abi.MAT, abi.VEC, A1, A1, A2, A1, A1) + RK_ARGS),
}
_COMPILED: dict = {}


def entry(name: str):
    """The compiled entry point ``name`` (compiled or loaded on first use)."""
    fn = _COMPILED.get(name)
    if fn is None:
        py, argtypes = _ENTRIES[name]
        fn = _COMPILED[name] = nb.njit(argtypes, cache=True, nogil=True)(py)
    return fn


def register_entry(name: str, py_func, argtypes) -> None:
    """Add an entry point (used by the stiff loops and sensitivity drivers)."""
    _ENTRIES[name] = (py_func, tuple(argtypes))
