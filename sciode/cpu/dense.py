"""Dense output over a whole solve: the stored stages of every accepted step."""

from __future__ import annotations

import numba as nb
import numpy as np

from .._numba_compat import NO_NRT
from .stepping import dense_point


@nb.njit(cache=True, nogil=True, **NO_NRT)
def locate_step(ts, t):
    """Index ``k`` of the step ``[ts[k], ts[k+1]]`` containing ``t`` (either direction).

    At a boundary ``t == ts[k]`` (``k < n``) it is the step that starts there, in
    both directions, so the interpolant (``theta = 0``) returns ``zs[k]`` exactly.
    """
    n = ts.shape[0] - 1
    forward = ts[n] >= ts[0]
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (ts[mid] <= t) if forward else (ts[mid] >= t):
            lo = mid
        else:
            hi = mid
    return lo


@nb.njit(cache=True, nogil=True, **NO_NRT, inline="always")
def _owns(ts, t, k, n, forward):
    """Whether ``locate_step(ts, t)`` is ``k``: the last step start not past ``t``
    (or step 0 when every start is)."""
    if k > 0 and ((ts[k] > t) if forward else (ts[k] < t)):
        return False
    return k == n - 1 or ((ts[k + 1] > t) if forward else (ts[k + 1] < t))


@nb.njit(cache=True, nogil=True, **NO_NRT)
def locate_step_near(ts, t, k):
    """``locate_step(ts, t)``, trying step ``k`` and its neighbours first.

    A sweep reads the interpolant at times that move monotonically, a few
    stages per step: the answer is almost always the last one or next to it,
    and the binary search (unpredictable branches, ~40 ns on 100 steps) was
    the costliest part of a small costate step.
    """
    n = ts.shape[0] - 1
    forward = ts[n] >= ts[0]
    for j in (k, k - 1, k + 1):
        if 0 <= j < n and _owns(ts, t, j, n, forward):
            return j
    return locate_step(ts, t)


@nb.njit(cache=True, nogil=True)
def dense_eval(ts, hs, zs, Ks, P, tq, out):
    """``out[i] = z(tq[i])`` from the method's continuous extension."""
    wbuf = np.empty(P.shape[0])
    for i in range(tq.shape[0]):
        k = locate_step(ts, tq[i])
        theta = (tq[i] - ts[k]) / hs[k]
        dense_point(zs[k], hs[k], Ks[k], P, theta, wbuf, out[i])


class DenseOutput:
    """The continuous solution ``z(t)`` of one solve.

    Parameters
    ----------
    ts : (m + 1,) step boundaries; hs : (m,) signed steps; zs : (m + 1, n)
    Ks : (m, s_total, n) stages of each step; P : (s_total, d) interpolant.
    """

    def __init__(self, ts, hs, zs, Ks, P):
        self.ts, self.hs, self.zs, self.Ks, self.P = ts, hs, zs, Ks, np.ascontiguousarray(P)

    @property
    def stored_floats(self) -> int:
        return self.ts.size + self.hs.size + self.zs.size + self.Ks.size

    def __call__(self, t):
        tq = np.atleast_1d(np.asarray(t, dtype=np.float64))
        out = np.empty((tq.size, self.zs.shape[1]))
        if self.hs.size == 0:
            out[:] = self.zs[0]
        else:
            dense_eval(self.ts, self.hs, self.zs, self.Ks, self.P, np.ascontiguousarray(tq), out)
        return out[0] if np.ndim(t) == 0 else out
