"""Argument checks shared by the user API (``api``, ``adjoint``, ``ensemble``,
``fit``): below all of them, so that none imports upward to validate.

Each check returns the validated, normalized value or raises ``ValueError``
/ ``ModelError`` / ``TypeError`` naming the argument.
"""

from __future__ import annotations

import math

import numpy as np

from .controls import Controls
from .errors import ModelError
from .model import Model


def _check_model(model):
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be a sciode.Model, got {type(model).__name__}")


def check_span(t_span):
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"`t_span` must be a pair (t0, t1) of numbers, got {t_span!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"`t_span` must be finite, got {t_span!r}")
    return t0, t1


def check_t_eval(t_eval, t0, t1):
    if t_eval is None:
        return np.zeros(0)
    # a private, writeable copy: the compiled loops take no read-only arrays
    te = np.array(t_eval, dtype=np.float64, ndmin=1)
    if te.ndim != 1:
        raise ValueError("`t_eval` must be a 1-D array of finite times")
    if te.size == 0:
        return te
    # min and max carry a NaN or an infinity along: one pass each instead of
    # a mask per test (small solves in a loop pay these microseconds each)
    first, last = float(te.min()), float(te.max())
    if not (math.isfinite(first) and math.isfinite(last)):
        raise ValueError("`t_eval` must be a 1-D array of finite times")
    lo, hi = min(t0, t1), max(t0, t1)
    if first < lo or last > hi:
        outside = te[(te < lo) | (te > hi)]
        raise ValueError(f"`t_eval` values must lie within `t_span` [{lo}, {hi}]; {outside[0]} does not")
    if te.size > 1 and bool(np.any(te[1:] < te[:-1]) if t1 >= t0 else np.any(te[1:] > te[:-1])):
        raise ValueError("`t_eval` must be sorted in the direction of integration")
    return te


def check_tolerances(rtol, atol, n):
    rtol = float(rtol)
    if not (rtol > 0 and math.isfinite(rtol)):
        raise ValueError(f"`rtol` must be positive and finite, got {rtol}")
    if isinstance(atol, (int, float)) and not isinstance(atol, bool):  # the common case, ~1 us
        if not (atol > 0 and math.isfinite(atol)):
            raise ValueError(f"`atol` must be positive and finite (scalar or one per state), got {atol!r}")
        return rtol, np.full(n, float(atol))
    atol_arr = np.ascontiguousarray(np.broadcast_to(np.asarray(atol, dtype=np.float64), (n,)).copy())
    if not np.all(atol_arr > 0) or not np.all(np.isfinite(atol_arr)):
        raise ValueError(f"`atol` must be positive and finite (scalar or one per state), got {atol!r}")
    return rtol, atol_arr


def check_controls(model, controls):
    if model.n_controls == 0:
        if controls is not None:
            raise ModelError("`controls` given but the model declares no controls")
        return None
    if not isinstance(controls, Controls):
        raise ModelError(f"model declares controls {model.controls}; pass `controls=sciode.Controls(t_grid, values)`")
    if controls.n_controls != model.n_controls:
        raise ModelError(f"`controls` has {controls.n_controls} columns but the model declares "
                         f"{model.n_controls} controls {model.controls}")
    return controls


def check_steps(first_step, max_step, max_steps, spec=None, dt=None, method=None):
    """``(h_init, max_step, max_steps, dt)`` of a solve, validated: ``max_steps >= 1``,
    ``max_step > 0`` (inf: no bound), ``first_step`` positive and finite (capped
    at ``max_step``; 0.0 when None: automatic), and for a fixed-step tableau
    ``spec`` a positive finite ``dt`` (0.0 for adaptive methods)."""
    if int(max_steps) < 1:
        raise ValueError(f"`max_steps` must be >= 1, got {max_steps}")
    max_step = float(max_step)
    if not max_step > 0:
        raise ValueError(f"`max_step` must be positive (inf for no bound), got {max_step}")
    h_init = 0.0
    if first_step is not None:
        if not (float(first_step) > 0 and math.isfinite(float(first_step))):
            raise ValueError(f"`first_step` must be positive and finite, got {first_step!r}")
        h_init = min(float(first_step), max_step)
    fixed = spec is not None and not getattr(spec, "adaptive", True)
    if fixed and (dt is None or not (float(dt) > 0 and math.isfinite(float(dt)))):
        raise ValueError(f"method {method!r} is fixed-step: pass a positive `dt`, got {dt!r}")
    return h_init, max_step, int(max_steps), float(dt) if fixed else 0.0
