"""Piecewise-linear control inputs evaluated inside compiled loops."""

import numba as nb


@nb.njit(cache=True, nogil=True)
def control_at(t, tw, W, out):
    """``out = w(t)``: linear interpolation of ``W`` on grid ``tw``.

    Constant extrapolation outside ``[tw[0], tw[-1]]``; ``W`` has shape
    ``(n_grid, n_controls)``.  Binary search, so O(log n_grid) per call.
    """
    nw = out.shape[0]
    if nw == 0:
        return
    n = tw.shape[0]
    if n == 1 or t <= tw[0]:
        for k in range(nw):
            out[k] = W[0, k]
        return
    if t >= tw[n - 1]:
        for k in range(nw):
            out[k] = W[n - 1, k]
        return
    lo, hi = 0, n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if tw[mid] <= t:
            lo = mid
        else:
            hi = mid
    s = (t - tw[lo]) / (tw[hi] - tw[lo])
    for k in range(nw):
        out[k] = (1.0 - s) * W[lo, k] + s * W[hi, k]


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
