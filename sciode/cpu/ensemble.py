"""Compiled entry point that solves the members of an ensemble.

``ensemble_forward`` runs members ``lo <= m < hi`` of arrays that hold one
row per member (``P[m]``, ``Z0[m]``, outputs ``Y[m]``), calling the same
stepping loop (``integrate``) as ``sciode.solve``, so every member takes
exactly the steps it would take alone.  The entry releases the GIL
(``nogil``): ``sciode.ensemble.runner`` runs disjoint member ranges on several
threads at once, and one compiled call per range replaces a Python call per
member (tens of microseconds of dispatch each, more than a small model's
solve).  A failed member writes its status and stops only itself.  The
gradient entries are in ``sciode.adjoint.ensemble``.
"""

from __future__ import annotations

import numpy as np
from numba import types

from .. import abi
from .._numba_compat import borrow1, borrow2
from .drivers import LOOP, register_entry
from .integrate import integrate
from .status import SUCCESS
from .stepping import copy_flat
from .systems import ModelSystem

A1, A2, A3 = abi.ARRAY, abi.MATRIX, types.float64[:, :, ::1]
F8, I8 = types.float64, types.int64
I1 = types.int64[::1]
S2 = types.int64[:, ::1]


def _ensemble_forward(f, P, tw, W, Z0, t0, t1, loop, t_eval, lo, hi, Y, status, t_reached, stats):
    """Solve members ``lo..hi-1`` of the model ``f`` (``abi.ModelFns``): ``Y[m]``
    (``len(t_eval), n``) from ``Z0[m]`` with parameters ``P[m]`` and the shared
    controls ``tw, W``; ``status[m]``, ``t_reached[m]``, ``stats[m]`` (the loop's
    six counters).  A failed member's rows past ``t_reached[m]`` stay as the
    caller set them."""
    wbuf = np.zeros(W.shape[1])
    d = 1.0 if t1 >= t0 else -1.0
    for m in range(lo, hi):
        sys = ModelSystem(f.rhs, f.jac, f.dfdt, borrow1(P[m]), borrow1(tw), borrow2(W), borrow1(wbuf))
        out = integrate(sys, Z0[m].copy(), t0, t1, loop, t_eval, -1)
        st, tr, s = out.status, out.t_reached, out.stats
        status[m] = st
        t_reached[m] = tr
        for k in range(min(s.shape[0], stats.shape[1])):
            stats[m, k] = s[k]
        for i in range(t_eval.shape[0]):
            # a failed member keeps the rows it reached (as ``sciode.solve``)
            if st == SUCCESS or (t_eval[i] - tr) * d <= 0.0:
                copy_flat(Y[m, i], out.z_eval[i])  # no slice assignment: see copy_flat
    return 0


register_entry("ensemble_forward", _ensemble_forward,
               (abi.MODEL_FNS, A2, A1, A2, A2, F8, F8, LOOP, A1, I8, I8, A3, I1, A1, S2))
