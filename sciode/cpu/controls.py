"""Piecewise-linear control inputs evaluated inside compiled loops."""

import numba as nb


@nb.njit(cache=True, nogil=True)
def control_segment(t, tw):
    """Index ``i`` with ``tw[i] <= t < tw[i+1]`` (clamped), and the weight of ``tw[i+1]``."""
    n = tw.shape[0]
    if n == 1 or t <= tw[0]:
        return 0, 0.0
    if t >= tw[n - 1]:
        return n - 2, 1.0
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tw[mid] <= t:
            lo = mid
        else:
            hi = mid
    return lo, (t - tw[lo]) / (tw[hi] - tw[lo])


@nb.njit(cache=True, nogil=True)
def control_at(t, tw, W, out):
    """``out = w(t)``: linear interpolation of ``W`` (``(n_grid, n_controls)``) on
    grid ``tw``, constant outside ``[tw[0], tw[-1]]``; O(log n_grid)."""
    if out.shape[0] == 0:
        return
    if tw.shape[0] == 1:
        for k in range(out.shape[0]):
            out[k] = W[0, k]
        return
    i, s = control_segment(t, tw)
    for k in range(out.shape[0]):
        out[k] = (1.0 - s) * W[i, k] + s * W[i + 1, k]
