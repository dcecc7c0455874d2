"""Piecewise-linear control inputs ``w(t)`` sampled on a time grid."""

from __future__ import annotations

from typing import Any, final

import numpy as np

from .errors import ModelError

__all__ = ["Controls"]


@final
class Controls:
    """Piecewise-linear control inputs ``w(t)``.

    Parameters
    ----------
    t_grid : array_like, shape (n_grid,)
        Strictly increasing finite times. A single point (``n_grid == 1``)
        means a constant input.
    values : array_like, shape (n_grid, n_controls)
        Finite control values at the grid times; a 1-D array of length
        n_grid is read as one control.

    Attributes
    ----------
    t : numpy.ndarray, shape (n_grid,)
        Read-only, C-contiguous float64 copy of `t_grid`.
    values : numpy.ndarray, shape (n_grid, n_controls)
        Read-only, C-contiguous float64 copy of `values`.
    n_grid, n_controls : int

    Raises
    ------
    ModelError
        On a non-1-D, empty, non-finite or not strictly increasing grid, or
        on values of the wrong shape or with non-finite entries.

    Notes
    -----
    Between grid points ``w`` is interpolated linearly; outside the grid it
    is held at the first or last value (as `numpy.interp`). Kernels read
    `t` and `values` directly; the gradient with respect to controls is
    returned on the same grid, shape ``(n_grid, n_controls)``.
    """

    __slots__ = ("_t", "_values")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("sciode.Controls is final and cannot be subclassed")

    def __init__(self, t_grid: Any, values: Any) -> None:
        self._t = _grid(t_grid)
        self._values = _values(values, len(self._t))

    @property
    def t(self) -> np.ndarray:
        """Grid times, shape ``(n_grid,)``."""
        return self._t

    @property
    def values(self) -> np.ndarray:
        """Values at the grid times, shape ``(n_grid, n_controls)``."""
        return self._values

    @property
    def n_grid(self) -> int:
        """Number of grid points."""
        return len(self._t)

    @property
    def n_controls(self) -> int:
        """Number of control inputs."""
        return self._values.shape[1]

    def __call__(self, t: float) -> np.ndarray:
        """Evaluate ``w(t)``.

        Parameters
        ----------
        t : float
            Time; any finite value (constant extrapolation outside the grid).

        Returns
        -------
        numpy.ndarray
            Shape ``(n_controls,)``, float64.
        """
        t = float(t)
        grid, values = self._t, self._values
        if t <= grid[0]:
            return values[0].copy()
        if t >= grid[-1]:
            return values[-1].copy()
        # searchsorted 'right' gives the interval [grid[i-1], grid[i]) that holds t.
        i = int(np.searchsorted(grid, t, side="right"))
        theta = (t - grid[i - 1]) / (grid[i] - grid[i - 1])
        return (1.0 - theta) * values[i - 1] + theta * values[i]

    def __repr__(self) -> str:
        return (
            f"Controls(n_grid={self.n_grid}, n_controls={self.n_controls}, "
            f"t=[{float(self._t[0])!r}, {float(self._t[-1])!r}])"
        )


def _float_array(value: Any, what: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"`{what}` is not an array of numbers: {exc}") from None
    if raw.dtype.kind not in "iuf" and raw.dtype != object:
        raise ModelError(f"`{what}` must hold real numbers, got dtype {raw.dtype}")
    try:
        array = np.array(raw, dtype=np.float64, order="C")
    except (TypeError, ValueError) as exc:
        raise ModelError(f"`{what}` has a value that is not a real number: {exc}") from None
    # Read-only so a caller mutating its array after construction cannot
    # change inputs under a cached solve.
    array.setflags(write=False)
    return array


def _grid(t_grid: Any) -> np.ndarray:
    t = _float_array(t_grid, "t_grid")
    if t.ndim != 1 or t.size == 0:
        raise ModelError(f"`t_grid` must be 1-D with at least one point, got shape {t.shape}")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise ModelError(f"`t_grid[{bad[0]}]` = {t[bad[0]]} is not finite")
    steps = np.flatnonzero(np.diff(t) <= 0)
    if steps.size:
        i = steps[0]
        raise ModelError(
            f"`t_grid` must be strictly increasing: t_grid[{i}] = {float(t[i])!r} >= "
            f"t_grid[{i + 1}] = {float(t[i + 1])!r}"
        )
    return t


def _values(values: Any, n_grid: int) -> np.ndarray:
    w = _float_array(values, "values")
    if w.ndim == 1 and w.shape[0] == n_grid:
        w = w.reshape(n_grid, 1)
    if w.ndim != 2 or w.shape[0] != n_grid or w.shape[1] == 0:
        raise ModelError(
            f"`values` has shape {w.shape}, expected (n_grid, n_controls) with "
            f"n_grid = {n_grid} (len(t_grid)) and n_controls >= 1"
        )
    bad = np.argwhere(~np.isfinite(w))
    if bad.size:
        i, j = bad[0]
        raise ModelError(f"`values[{i}, {j}]` = {w[i, j]} is not finite")
    return w
