"""Sensitivity drivers: one module per mode over ``common``.

Each mode builds an augmented system (``systems``) and calls the same
stepping loops as ``solve``; the loops know nothing of costs.
"""

from __future__ import annotations

from . import entries  # noqa: F401  (registers the compiled entry points)
from . import backsolve, checkpoint, discrete, fd, forward, interpolating, memory
from .common import GradResult, prepare

MODES = {
    "adjoint": interpolating.run,
    "backsolve": backsolve.run,
    "checkpoint": checkpoint.run,
    "forward": forward.run,
    "discrete": discrete.run,
    "fd": fd.run,
}

_OPTIONS = {"checkpoints", "dt", "max_step", "fd_step", "sens_error_control", "drift_tol",
            "quad_error_control", "memory_budget"}


def value_and_grad(model, cost, y0, t_span, params=None, sensitivity="adjoint", method="dopri5",
                   rtol=1e-6, atol=1e-9, controls=None, max_steps=100_000, **options) -> GradResult:
    """Value of ``J = Phi(y(t1), p) + int L dt + sum_i ell_i`` and its gradients.

    Parameters
    ----------
    model : Model
    cost : Cost or LeastSquares
    y0, t_span, params, method, rtol, atol, controls, max_steps : as ``sciode.solve``
    sensitivity : one of ``"adjoint"``, ``"backsolve"``, ``"checkpoint"``,
        ``"forward"``, ``"discrete"``, ``"fd"`` (see each module's docstring)
    **options : ``checkpoints`` (checkpoint mode, default 8), ``dt`` (fixed-step
        methods), ``max_step``, ``fd_step`` (default 1e-6), ``sens_error_control``
        (forward mode, default True), ``drift_tol`` (backsolve warning at ``drift_tol * sqrt(steps)``
        tolerance units of drift, default 100),
        ``quad_error_control`` (adjoint, checkpoint, backsolve: keep the quadratures
        ``dJ/dp`` in the backward error test; default False for explicit methods
        as in CVODES, True for stiff ones, see ``common.sweep_tolerances``),
        ``memory_budget`` (adjoint, checkpoint: bytes the stored forward
        trajectory may take, ``8 (2 + n (1 + s))`` a step for a method whose
        interpolant has ``s`` stages, up to 3x that while it grows; the adjoint
        switches to checkpoints placed by step count when it would not fit,
        see ``sciode.adjoint.memory``; ``stats["memory"]`` says what ran)

    Returns
    -------
    GradResult
        ``value``, ``grad_params`` (n_params,), ``grad_y0`` (n_states,),
        ``grad_controls`` ((n_grid, n_controls) or None), ``stats``.

    Raises
    ------
    SolverError
        When the forward or backward pass fails (never a NaN gradient).
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid options are {sorted(_OPTIONS)}")
    if sensitivity not in MODES:
        raise ValueError(f"`sensitivity` must be one of {list(MODES)}; got {sensitivity!r}")
    from ..methods import registry

    registry.check(method, sensitivity=sensitivity)  # a pair that does not exist, before compiling
    if "memory_budget" in options:
        memory.check_budget(options["memory_budget"], sensitivity)
    y0_num, dy0dp = initial_state(model, y0, params)
    prob = prepare(model, cost, y0_num, t_span, params, method, rtol, atol, controls, max_steps, options)
    if "memory_budget" in options:
        res = memory.run(prob, sensitivity)
    else:
        res = MODES[sensitivity](prob)
    if dy0dp is not None:
        # x0 = x0(p): dJ/dp gains lambda(t0) . dx0/dp
        res.grad_params = res.grad_params + dy0dp.T @ res.grad_y0
        n_p = model.n_params
        J = res.extra.get("residual_jacobian")
        if J is not None:  # dr/dp gains dr/dx0 . dx0/dp likewise (columns [p, y0])
            J = J.copy()
            J[:, :n_p] += J[:, n_p:] @ dy0dp
            res.extra["residual_jacobian"] = J
        for key in ("S_rows", "S_end"):  # dy/dp gains dy/dx0 . dx0/dp (columns [p, y0])
            S = res.extra.get(key)
            if S is not None:
                S = S.copy()
                S[..., :n_p] += S[..., n_p:] @ dy0dp
                res.extra[key] = S
    return res


def initial_state(model, y0, params):
    """Numeric ``y0`` and ``dy0/dp`` when ``y0`` holds SymPy expressions in the params.

    Returns ``(y0, None)`` for a numeric ``y0``.
    """
    import numpy as np
    import sympy as sp

    from ..errors import ModelError

    if isinstance(y0, (dict, np.ndarray)) and getattr(y0, "dtype", None) != object:
        return y0, None  # numeric array or {state: value}: nothing symbolic
    if not any(isinstance(v, sp.Basic) for v in np.ravel(np.asarray(y0, dtype=object))):
        return y0, None
    items = list(y0)
    if len(items) != model.n_states:
        raise ModelError(f"`y0` has {len(items)} entries but the model has {model.n_states} states")
    p = model.param_vector(params)
    exprs = tuple(e if isinstance(e, sp.Basic) else sp.Float(float(e)) for e in items)
    key = (id(model), exprs)
    hit = _INITIAL_STATES.get(key)
    if hit is None or hit[0] is not model:
        # derived once per (model, expressions): a fit calls this at every iteration
        for i, e in enumerate(exprs):
            extra = e.free_symbols - set(model.params)
            if extra:
                raise ModelError(f"`y0[{i}]` = {e} uses {sorted(map(str, extra))}, which are not "
                                 "parameters")
        jac = sp.Matrix(exprs).jacobian(list(model.params)) if model.n_params else None
        if len(_INITIAL_STATES) > 64:
            _INITIAL_STATES.clear()
        hit = _INITIAL_STATES[key] = (model, exprs, jac)
    _, exprs, jac = hit
    values = dict(zip(model.params, p))
    y = np.array([float(e.xreplace(values)) for e in exprs])
    D = np.zeros((model.n_states, model.n_params))
    if jac is not None:
        for (i, j), d in jac.todok().items():
            D[i, j] = float(d.xreplace(values))
    return y, D


#: ``initial_state``'s derivatives by (model identity, expressions); the entry
#: holds the model, so its id cannot be reused meanwhile.
_INITIAL_STATES: dict = {}


__all__ = ["value_and_grad", "GradResult", "MODES"]
