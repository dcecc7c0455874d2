"""A validated optimal-control problem: the control grid, bounds and what is free.

``build`` checks every argument of ``sciode.optimal_control`` before any
solve and returns a ``ControlProblem``.  The optimization variables are the
values of the piecewise-linear controls ``w(t)`` on the grid of
``controls0`` (and, with ``fit_params``, some model parameters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy as sp

from ..adjoint import initial_state, value_and_grad
from ..checks import check_span
from ..controls import Controls
from ..cost import as_cost
from ..errors import ModelError
from ..model import Model

#: Names accepted by ``method``.
METHODS = ("lbfgs", "sweep")


@dataclass
class ControlProblem:
    """Everything the two methods share (see ``build``).

    Attributes
    ----------
    grid : (n_grid,) the control grid, ``grid[0] = t0``, ``grid[-1] = t1``
    w0 : (n_grid, n_controls) start values
    lo, hi : (n_controls,) bounds, ``-inf``/``inf`` where absent
    p0 : (n_params,) parameter values (start values of the fitted ones)
    free : (n_free,) indices into ``model.params`` of the fitted parameters
    p_lo, p_hi : (n_free,) their bounds
    solver : keyword arguments of every ``value_and_grad``/``solve`` call
    """

    model: Model
    cost: Any
    y0: Any
    t0: float
    t1: float
    grid: np.ndarray
    w0: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    p0: np.ndarray
    free: np.ndarray
    p_lo: np.ndarray
    p_hi: np.ndarray
    solver: dict

    @property
    def n_grid(self) -> int:
        return self.grid.size

    @property
    def n_controls(self) -> int:
        return self.model.n_controls

    @property
    def lumped_mass(self) -> np.ndarray:
        """``m_k = int phi_k dt`` of each hat function ``phi_k`` of the grid, (n_grid,).

        ``dJ/dw_k = int dH/dw phi_k dt ~ m_k dH/dw(t_k)``: dividing the control
        gradient by ``m_k`` gives the Hamiltonian's derivative, independent of
        the grid spacing.
        """
        h = np.diff(self.grid)
        m = np.zeros(self.n_grid)
        m[:-1] += h / 2
        m[1:] += h / 2
        return m

    def controls(self, values) -> Controls:
        return Controls(self.grid, values)

    def numeric_y0(self, p: np.ndarray) -> np.ndarray:
        """``y0`` as numbers (it may be SymPy expressions of the params)."""
        y, _ = initial_state(self.model, self.y0, p)
        return np.asarray(self.model.state_vector(y), dtype=float)

    def value_and_grad(self, controls: Controls, p: np.ndarray, cost=None, y0=None, t_span=None):
        """``sciode.value_and_grad`` (adjoint mode) at ``controls`` and params ``p``;
        ``cost``, ``y0`` and ``t_span`` default to the problem's own."""
        return value_and_grad(self.model, self.cost if cost is None else cost,
                              self.y0 if y0 is None else y0,
                              (self.t0, self.t1) if t_span is None else t_span, p,
                              sensitivity="adjoint", controls=controls, **self.solver)

    def param_dict(self, p: np.ndarray) -> dict:
        return {s.name: float(v) for s, v in zip(self.model.params, p)}


def build(model, cost, y0, t_span, controls0, bounds, params, fit_params, param_bounds, method,
          solver) -> ControlProblem:
    """Validate the arguments of ``sciode.optimal_control`` (see there)."""
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be a sciode.Model, got {type(model).__name__}")
    if model.n_controls == 0:
        raise ModelError(f"model {model.name!r} declares no controls, so there is nothing to "
                         "optimize; declare them with `sciode.Model(..., controls=[u, ...])`")
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {list(METHODS)}; got {method!r}")
    cost = as_cost(cost)
    t0, t1 = check_span(t_span)
    if not t1 > t0:
        raise ValueError(f"`t_span` must run forward (t0 < t1), got {t_span!r}")
    cost.check(model, (t0, t1))
    grid, w0 = _control_grid(controls0, model, t0, t1)
    lo, hi = control_bounds(bounds, model)
    _check_start(w0, lo, hi, grid, model)
    p0 = np.asarray(model.param_vector(params), dtype=float)
    free = _free_params(fit_params, model)
    if (fit_params is True or free.size) and method != "lbfgs":
        raise ValueError("`fit_params` needs method='lbfgs': the sweep updates controls only")
    p_lo, p_hi = _param_bounds(param_bounds, model, free, p0)
    # y0 is validated (and evaluated, when it holds parameter expressions) once here.
    initial_state(model, y0, p0)
    return ControlProblem(model, cost, y0, t0, t1, grid, w0, lo, hi, p0, free, p_lo, p_hi,
                          dict(solver))


def _control_grid(controls0, model, t0, t1):
    if not isinstance(controls0, Controls):
        raise ModelError(f"`controls0` must be a sciode.Controls (the start values on the "
                         f"optimization grid), got {type(controls0).__name__}")
    if controls0.n_controls != model.n_controls:
        raise ModelError(f"`controls0` has {controls0.n_controls} columns but the model declares "
                         f"{model.n_controls} controls {tuple(s.name for s in model.controls)}")
    grid = np.array(controls0.t)
    if grid.size < 2 or grid[0] != t0 or grid[-1] != t1:
        raise ModelError(f"the grid of `controls0` must start at t0 = {t0!r} and end at t1 = {t1!r} "
                         f"with at least 2 points, got {grid.size} point(s) on "
                         f"[{float(grid[0])!r}, {float(grid[-1])!r}]; e.g. "
                         f"`sciode.Controls(numpy.linspace(t0, t1, n), values)`")
    return grid, np.array(controls0.values)


def _bound_value(v, what: str, default: float) -> float:
    if v is None:
        return default
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number or None, got {v!r}") from None
    if math.isnan(x):
        raise ValueError(f"{what} is NaN")
    return x


def _pair(pair, what: str) -> tuple[float, float]:
    if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
        raise ValueError(f"{what} must be a pair (lo, hi), got {pair!r}")
    lo = _bound_value(pair[0], f"{what}[0]", -math.inf)
    hi = _bound_value(pair[1], f"{what}[1]", math.inf)
    if not lo < hi or lo == math.inf or hi == -math.inf:
        raise ValueError(f"{what} = {pair!r}: need lo < hi (None or +-inf for no bound)")
    return lo, hi


def _is_pair_like(v) -> bool:
    return hasattr(v, "__len__") and not isinstance(v, (str, bytes))


def control_bounds(bounds, model) -> tuple[np.ndarray, np.ndarray]:
    """Per-control ``(lo, hi)`` arrays from ``bounds`` (see ``optimal_control``)."""
    n = model.n_controls
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    if bounds is None:
        return lo, hi
    if isinstance(bounds, Mapping):
        index = {**{s: j for j, s in enumerate(model.controls)},
                 **{s.name: j for j, s in enumerate(model.controls)}}
        for key, pair in bounds.items():
            if key not in index:
                raise ValueError(f"`bounds` names {key!r}, which is not a control; the controls "
                                 f"are {[s.name for s in model.controls]}")
            lo[index[key]], hi[index[key]] = _pair(pair, f"`bounds[{key!r}]`")
        return lo, hi
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__"):
        raise ValueError(f"`bounds` must be None, a pair (lo, hi), one pair per control or a "
                         f"mapping control -> (lo, hi); got {bounds!r}")
    if len(bounds) == 2 and not any(_is_pair_like(v) for v in bounds):
        lo[:], hi[:] = _pair(bounds, "`bounds`")
        return lo, hi
    if len(bounds) != n:
        raise ValueError(f"`bounds` has {len(bounds)} entries but the model has {n} control(s); "
                         f"give a pair (lo, hi) for all, one pair per control, or a mapping")
    for j, pair in enumerate(bounds):
        lo[j], hi[j] = _pair(pair, f"`bounds[{j}]`")
    return lo, hi


def _check_start(w0, lo, hi, grid, model):
    bad = np.argwhere((w0 < lo) | (w0 > hi))
    if bad.size:
        k, j = bad[0]
        raise ValueError(f"`controls0` value {w0[k, j]!r} of `{model.controls[j].name}` at "
                         f"t = {float(grid[k])!r} lies outside its bounds [{lo[j]}, {hi[j]}]")


def _free_params(fit_params, model) -> np.ndarray:
    if fit_params is False or fit_params is None:
        return np.zeros(0, dtype=int)
    if fit_params is True:
        return np.arange(model.n_params)
    names = [fit_params] if isinstance(fit_params, (str, sp.Symbol)) else list(fit_params)
    index = {s.name: i for i, s in enumerate(model.params)}
    out = []
    for name in names:
        key = name.name if isinstance(name, sp.Symbol) else name
        if key not in index:
            raise ValueError(f"`fit_params` names {name!r}, which is not a parameter; the "
                             f"parameters are {list(index)}")
        out.append(index[key])
    return np.array(sorted(set(out)), dtype=int)


def _param_bounds(param_bounds, model, free, p0):
    lo, hi = np.full(free.size, -np.inf), np.full(free.size, np.inf)
    if param_bounds is None:
        return lo, hi
    if not isinstance(param_bounds, Mapping):
        raise TypeError(f"`param_bounds` must be a mapping name -> (lo, hi), got {param_bounds!r}")
    where = {model.params[i].name: k for k, i in enumerate(free)}
    for key, pair in param_bounds.items():
        name = key.name if isinstance(key, sp.Symbol) else key
        if name not in where:
            raise ValueError(f"`param_bounds` names {key!r}, which is not a fitted parameter "
                             f"(fitted: {list(where)})")
        k = where[name]
        lo[k], hi[k] = _pair(pair, f"`param_bounds[{key!r}]`")
        if not lo[k] <= p0[free[k]] <= hi[k]:
            raise ValueError(f"the start value {p0[free[k]]!r} of `{name}` lies outside "
                             f"`param_bounds[{key!r}]` = {pair!r}")
    return lo, hi
