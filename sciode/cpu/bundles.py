"""Typed bundles of the compiled entry points: inputs, loop options, results.

An entry point takes a few named tuples instead of a positional list of 30-40
arguments, and returns one:

- ``abi.ModelFns`` / ``abi.CostFns``: the kernels;
- ``Inputs``: what the kernels read besides ``t`` and ``y``: parameters ``p``,
  the control grid ``tw`` and values ``W``, and the scratch ``wbuf`` that
  holds the controls at ``t``;
- ``Loop``: one stepping loop's method tuple and step control: ``rtol``,
  ``atol`` (per entry), ``h_init`` (0: automatic), ``hmax``, ``dt`` (> 0:
  fixed steps), ``max_steps``, and ``stops``, the times a step must land on
  (control kinks, a costate's observation times), ordered in the direction
  of integration;
- ``LoopResult``: what every loop returns (``integrate``).

An entry's signature is derived from these (``INPUTS``, ``loop_type``), with
the method tuples' types filled in per call (``drivers.entry``): compiled
once per (entry, method kinds) and installation.  The dispatcher types a
bundle of arrays and numbers from its fingerprint, in C (about a
microsecond); the kernel bundles' types are constants
(``_numba_compat.declare_type``).
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np
from numba import types

from .. import abi

F8, I8 = types.float64, types.int64
A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]

#: The method slot of ``LOOP_FIELDS``: its type is the method tuple's (``loop_type``).
METHOD = "<method>"


Inputs = namedtuple("Inputs", ["p", "tw", "W", "wbuf"])
Inputs.__doc__ = """Parameters ``p (n_p,)``, control grid ``tw (k,)`` and values
``W (k, n_w)``, and ``wbuf (n_w,)``, the controls at the current ``t``."""
INPUTS = types.NamedTuple((A1, A1, A2, A1), Inputs)

LOOP_FIELDS = {"method": METHOD, "rtol": F8, "atol": A1, "h_init": F8, "hmax": F8, "dt": F8,
               "max_steps": I8, "stops": A1}
Loop = namedtuple("Loop", list(LOOP_FIELDS))
Loop.__doc__ = """A stepping loop's method tuple and step control (module doc); ``make_loop``
builds one with its fields as the entries type them."""

_EMPTY = np.zeros(0)


def make_loop(method, rtol, atol, h_init=0.0, hmax=float("inf"), dt=0.0, max_steps=100_000,
              stops=None) -> Loop:
    """A ``Loop`` with its scalars as the entry points type them (``float``,
    ``int``) and ``stops`` empty unless given."""
    return Loop(method, float(rtol), np.ascontiguousarray(atol, dtype=np.float64), float(h_init),
                float(hmax), float(dt), int(max_steps),
                _EMPTY if stops is None else np.ascontiguousarray(stops, dtype=np.float64))


#: ``status``, ``t_reached``; ``n_stored`` accepted steps kept in ``ts (n_stored,)``,
#: ``zs (n_stored, n)``, ``hs`` and ``Ks (n_stored - 1, s, n)`` (dense output, or
#: empty); ``z_eval (m, n)`` at the output times; ``stats`` (``nfev, nsteps,
#: naccepted, nrejected``, then the stiff loops' ``njev, nlu``).
LoopResult = namedtuple("LoopResult", ["status", "t_reached", "n_stored", "ts", "zs", "hs", "Ks",
                                       "z_eval", "stats"])


_METHOD_TYPES: dict = {}
_LOOP_TYPES: dict = {}


def _kinds(value):
    """What ``typeof`` of a method tuple depends on: its class and, field by
    field, array dtype and rank, nested tuples' kinds, else the Python type."""
    if isinstance(value, np.ndarray):
        return value.dtype.str, value.ndim
    if isinstance(value, tuple):
        return type(value), tuple(_kinds(v) for v in value)
    return type(value)


def method_type(method):
    """``numba.typeof(method)``, memoised on its kinds (``_kinds``): ``typeof``
    of a tuple of arrays costs ~0.2 ms per call."""
    key = _kinds(method)
    t = _METHOD_TYPES.get(key)
    if t is None:
        t = _METHOD_TYPES[key] = nb.typeof(method)
    return t


def loop_type(method):
    """The Numba type of a ``Loop`` for the method tuple type ``method`` (the
    other bundles' types are constants: ``INPUTS``, ``abi.MODEL_FNS``...)."""
    t = _LOOP_TYPES.get(method)
    if t is None:
        t = _LOOP_TYPES[method] = types.NamedTuple(
            tuple(method if t == METHOD else t for t in LOOP_FIELDS.values()), Loop)
    return t
