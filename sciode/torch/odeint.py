"""``sciode.torch.odeint``: the public entry of the torch path (``shared/API.md``, "Torch path")."""

from __future__ import annotations

import math

import torch

from ..cpu.status import SUCCESS, message
from ..errors import ModelError, SolverError
from ..model import Model
from . import compiled
from .adjoint import OdeintAdjoint, Problem
from .kernels import model_kernels
from .loop import Config, integrate
from .methods import get_method
from .systems import FuncSystem, Layout, ModelSystem

#: ``options`` keys (torchdiffeq's names for the ones sciode has).
OPTIONS = ("step_size", "first_step", "max_num_steps")
BATCH_STEPS = ("per_trajectory", "shared")
BACKENDS = ("auto", "torch", "compiled")
MAX_NUM_STEPS = 100_000


def odeint(func, y0, t, params=None, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
           adjoint=False, adjoint_params=None, batch_step="per_trajectory", *, backend="auto"):
    """Solve ``dy/dt = func(t, y)`` at the times ``t``, differentiably.

    Parameters
    ----------
    func : sciode.Model or callable
        A ``Model`` (its kernels are generated for torch, batched) or any
        ``f(t, y)`` such as a ``torch.nn.Module``.  With per-trajectory steps
        a callable receives ``t`` of shape ``(*batch, 1)`` and must treat the
        rows of ``y`` independently; with ``batch_step="shared"`` (or no
        batch) it receives a 0-d ``t``, exactly as in torchdiffeq.
    y0 : tensor ``(*batch, n)`` or tuple of tensors
        Initial state.  Leading dimensions are independent trajectories.  A
        tuple's components share their leading dimensions (else the tuple is
        one trajectory).
    t : tensor ``(T,)``
        Strictly increasing or decreasing output times; ``t[0]`` is the start.
    params : tensor ``(n_params,)`` or ``(*batch, n_params)``
        A ``Model``'s parameters (required when it has any).
    rtol, atol : float or tensor broadcastable to ``y0`` (tuple: one per component)
    method : str
        ``euler``, ``midpoint``, ``rk4`` (fixed step), ``bosh3``, ``dopri5``,
        ``tsit5``, ``dop853`` (adaptive).
    options : dict, optional
        ``step_size`` (fixed-step methods; default: step from output time to
        output time), ``first_step``, ``max_num_steps`` (per trajectory,
        default 100000).  Other keys raise.
    adjoint : bool
        Gradients by a continuous adjoint (memory flat in the number of
        steps) instead of backpropagation through the solver: per member,
        the interpolating adjoint on the compiled path (see ``backend``),
        else the backsolve adjoint.
    adjoint_params : sequence of tensors, optional
        With ``adjoint=True`` and a callable: the tensors to differentiate
        (default: the module's parameters).
    batch_step : {"per_trajectory", "shared"}
    backend : {"auto", "torch", "compiled"}
        Where a ``Model`` is integrated.  ``"compiled"``: the compiled
        per-member loops of ``sciode.solve_ensemble`` on all cores, with the
        per-member interpolating adjoint of ``sciode.value_and_grad`` as the
        backward (CPU float64 tensors, per-trajectory steps, an adaptive
        method, scalar ``rtol``, ``atol`` scalar or per state).  ``"torch"``:
        the batched torch loop (any device and dtype; backsolve adjoint).
        ``"auto"`` (default) takes ``"compiled"`` where it applies and the
        gradient is the adjoint's (``adjoint=True``, or nothing requires a
        gradient), else ``"torch"``.

    Returns
    -------
    tensor ``(T, *y0.shape)`` (tuple for a tuple state), on ``y0``'s device and dtype.

    Raises
    ------
    ValueError, ModelError
        Mismatched shapes, dtypes or devices, bad ``t``, unknown options.
    SolverError
        A trajectory failed (step size underflow, non-finite state, max_num_steps).
    """
    return _odeint(func, y0, t, params, rtol, atol, method, options, adjoint, adjoint_params,
                   batch_step, backend=backend)


def odeint_adjoint(func, y0, t, params=None, rtol=1e-7, atol=1e-9, method="dopri5", options=None,
                   adjoint_params=None, batch_step="per_trajectory", *, adjoint_rtol=None,
                   adjoint_atol=None, adjoint_method=None, adjoint_options=None, backend="auto"):
    """``odeint(..., adjoint=True)``; ``adjoint_rtol`` / ``adjoint_atol`` /
    ``adjoint_method`` / ``adjoint_options`` set the backward pass (default:
    the forward's), as in torchdiffeq."""
    return _odeint(func, y0, t, params, rtol, atol, method, options, True, adjoint_params,
                   batch_step, adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options,
                   backend)


def _odeint(func, y0, t, params, rtol, atol, method, options, adjoint, adjoint_params, batch_step,
            adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None,
            backend="auto"):
    if batch_step not in BATCH_STEPS:
        raise ValueError(f"`batch_step` must be one of {BATCH_STEPS}; got {batch_step!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}; got {backend!r}.")
    shared = batch_step == "shared"
    is_model = isinstance(func, Model)
    like = _check_state(y0)
    t, direction = _check_times(t, like)
    if is_model:
        if adjoint_params is not None:
            raise ValueError("`adjoint_params` is for a callable `func`; a `sciode.Model`'s "
                             "gradients go to `params`.")
        y0, p = _check_model_inputs(func, y0, params, like)
        layout = Layout(batch=tuple(y0.shape[:-1]), shapes=(tuple(y0.shape),), is_tuple=False)
    else:
        if params is not None:
            raise ValueError("`params` is for a `sciode.Model`; a callable `func` closes over its "
                             "parameters (list them in `adjoint_params` for `adjoint=True`).")
        layout = _layout(y0)
        p = None
    tau = t * direction
    z0 = layout.flatten(y0)
    cfg = _config(method, options, rtol, atol, layout, like, shared)
    adj_cfg = _config(adjoint_method or method, adjoint_options if adjoint_options is not None
                      else options, rtol if adjoint_rtol is None else adjoint_rtol,
                      atol if adjoint_atol is None else adjoint_atol, layout, like, shared)
    if is_model and backend != "torch":
        plan = None
        if not shared and t.shape[0] >= 2:
            plan = compiled.plan(func, like, rtol, atol, method, options, adjoint_rtol,
                                 adjoint_atol, adjoint_method, adjoint_options)
        wants_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (t, y0, p))
        if plan is None and backend == "compiled":
            raise ValueError("backend='compiled' needs CPU float64 tensors, a model without "
                             "controls, batch_step='per_trajectory', an adaptive method, a float "
                             "`rtol` and `atol` a float or one per state; use backend='auto'.")
        if plan is not None and (adjoint or not wants_grad or backend == "compiled"):
            zs = compiled.CompiledOdeint.apply(plan, t, layout.flatten(y0), p)
            return layout.unflatten(zs, lead=(t.shape[0],))
    kernels = model_kernels(func) if is_model else None

    def make_system(tensors):
        if is_model:
            return ModelSystem(kernels, tensors[0], direction)
        return FuncSystem(func, layout, direction, shared)

    def check(res, what):
        _raise_on_failure(res, what, direction, cfg.max_steps)

    if adjoint:
        if is_model:
            tensors = (p,)
        else:
            tensors = _adjoint_params(func, adjoint_params)
        problem = Problem(make_system=make_system, cfg=cfg, adjoint_cfg=adj_cfg, check=check,
                          is_model=is_model)
        zs = OdeintAdjoint.apply(problem, tau, z0, *tensors)
    else:
        res = integrate(make_system((p,)), z0, tau, cfg)
        check(res, "the forward pass")
        zs = res.zs
    return layout.unflatten(zs, lead=(t.shape[0],))


# -- input checks -------------------------------------------------------------------------


def _check_state(y0) -> torch.Tensor:
    """The first component of ``y0``, after checking all share a float dtype and a device."""
    parts = y0 if isinstance(y0, tuple) else (y0,)
    if not parts or not all(isinstance(c, torch.Tensor) for c in parts):
        raise ValueError("`y0` must be a tensor or a non-empty tuple of tensors.")
    first = parts[0]
    if first.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"`y0` must be a float32 or float64 tensor; got {first.dtype}.")
    for i, c in enumerate(parts[1:], 1):
        if c.dtype != first.dtype or c.device != first.device:
            raise ValueError(f"every component of `y0` must share one dtype and device: component 0 "
                             f"is {first.dtype} on {first.device}, component {i} is {c.dtype} on "
                             f"{c.device}.")
    return first


def _check_times(t, like) -> tuple:
    """``(t, direction)``: ``t`` in ``y0``'s dtype (cast as torchdiffeq does) and the
    direction of time, ``+1.0`` or ``-1.0``."""
    if isinstance(t, torch.Tensor):
        if t.device != like.device:
            raise ValueError(f"`t` is on {t.device} but `y0` on {like.device}; move both to one device.")
        if not t.is_floating_point():
            raise ValueError(f"`t` must be a floating-point tensor; got {t.dtype}.")
        t = t.to(like.dtype)
    else:
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.ndim != 1 or t.shape[0] < 1:
        raise ValueError(f"`t` must be a 1-D tensor of output times; got shape {tuple(t.shape)}.")
    if t.shape[0] < 2:
        return t, 1.0
    d = torch.diff(t.detach())
    # host sync, once per call: the monotonicity check and the direction of time
    increasing, decreasing = torch.stack([(d > 0).all(), (d < 0).all()]).tolist()
    if not (increasing or decreasing):
        raise ValueError("`t` must be strictly increasing or strictly decreasing.")
    return t, 1.0 if increasing else -1.0


def _check_model_inputs(model: Model, y0, params, like):
    """``(y0, p)`` broadcast to a common batch: ``(*batch, n)``, ``(*batch, n_p)``."""
    if isinstance(y0, tuple):
        raise ModelError(f"`y0` for model {model.name!r} must be one tensor (..., {model.n_states}), "
                         "not a tuple.")
    if y0.ndim == 0 or y0.shape[-1] != model.n_states:
        raise ModelError(f"`y0` has shape {tuple(y0.shape)}; model {model.name!r} has "
                         f"{model.n_states} states, so its last dimension must be {model.n_states}.")
    if params is None:
        if model.n_params:
            raise ModelError(f"model {model.name!r} has {model.n_params} params "
                             f"{[s.name for s in model.params]}: pass `params`.")
        params = like.new_zeros(0)
    if not isinstance(params, torch.Tensor):
        params = torch.as_tensor(params, dtype=like.dtype, device=like.device)
    if params.device != like.device:
        raise ValueError(f"`params` is on {params.device} but `y0` on {like.device}.")
    if params.dtype != like.dtype:
        raise ValueError(f"`params` is {params.dtype} but `y0` {like.dtype}; use one dtype.")
    if params.ndim == 0 or params.shape[-1] != model.n_params:
        raise ModelError(f"`params` has shape {tuple(params.shape)}; model {model.name!r} has "
                         f"{model.n_params} params {[s.name for s in model.params]}, so its last "
                         f"dimension must be {model.n_params}.")
    try:
        batch = torch.broadcast_shapes(y0.shape[:-1], params.shape[:-1])
    except RuntimeError:
        raise ValueError(f"the batch shapes of `y0` {tuple(y0.shape[:-1])} and `params` "
                         f"{tuple(params.shape[:-1])} do not broadcast.") from None
    y0 = y0.expand(*batch, model.n_states)
    p = params.expand(*batch, model.n_params).reshape(-1, model.n_params)
    return y0, p


def _layout(y0) -> Layout:
    if not isinstance(y0, tuple):
        if y0.ndim == 0:
            raise ValueError("`y0` must have at least one dimension (its states).")
        return Layout(batch=tuple(y0.shape[:-1]), shapes=(tuple(y0.shape),), is_tuple=False)
    shapes = tuple(tuple(c.shape) for c in y0)
    batches = {s[:-1] for s in shapes if len(s) >= 1}
    common = len(batches) == 1 and all(len(s) >= 1 for s in shapes)
    return Layout(batch=batches.pop() if common else (), shapes=shapes, is_tuple=True)


def _tolerance(tol, layout: Layout, like, name: str) -> torch.Tensor:
    """A tolerance as ``(B, N)`` (or a 0-d tensor for a float)."""
    if isinstance(tol, (int, float)):
        if not (tol >= 0):
            raise ValueError(f"`{name}` must be >= 0; got {tol}.")
        return torch.full((), float(tol), dtype=like.dtype, device=like.device)  # no host-to-device copy
    if layout.is_tuple:
        if not isinstance(tol, (tuple, list)) or len(tol) != len(layout.shapes):
            raise ValueError(f"`{name}` for a tuple state is a float or one entry per component.")
        parts = [torch.broadcast_to(torch.as_tensor(v, dtype=like.dtype, device=like.device), s)
                 for v, s in zip(tol, layout.shapes)]
        return layout.flatten(tuple(parts))
    tol = torch.as_tensor(tol, dtype=like.dtype, device=like.device)
    try:
        return layout.flatten(torch.broadcast_to(tol, layout.shapes[0]))
    except RuntimeError:
        raise ValueError(f"`{name}` of shape {tuple(tol.shape)} does not broadcast to `y0`'s "
                         f"{layout.shapes[0]}.") from None


def _config(method, options, rtol, atol, layout, like, shared) -> Config:
    m = get_method(method)
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown `options` {unknown}; valid keys are {list(OPTIONS)}.")
    step_size = options.get("step_size")
    if step_size is not None and m.tab.adaptive:
        raise ValueError(f"`step_size` is for the fixed-step methods; `{m.name}` is adaptive "
                         "(use `first_step`).")
    if options.get("first_step") is not None and not m.tab.adaptive:
        raise ValueError(f"`first_step` is for adaptive methods; `{m.name}` is fixed-step "
                         "(use `step_size`).")
    for key in ("step_size", "first_step"):
        v = options.get(key)
        if v is not None and not (float(v) > 0 and math.isfinite(float(v))):
            raise ValueError(f"`options['{key}']` must be a positive finite number; got {v!r}.")
    return Config(method=m, rtol=_tolerance(rtol, layout, like, "rtol"),
                  atol=_tolerance(atol, layout, like, "atol"), shared=shared,
                  first_step=options.get("first_step"), step_size=step_size,
                  max_steps=int(options.get("max_num_steps", MAX_NUM_STEPS)))


def _adjoint_params(func, adjoint_params) -> tuple:
    if adjoint_params is None:
        adjoint_params = func.parameters() if isinstance(func, torch.nn.Module) else ()
    params = tuple(adjoint_params)
    for p in params:
        if not isinstance(p, torch.Tensor):
            raise ValueError("`adjoint_params` must be tensors.")
    return tuple(p for p in params if p.requires_grad)


def _raise_on_failure(res, what: str, direction: float, max_steps: int) -> None:
    failed = res.status != SUCCESS
    if not bool(failed.any()):  # host sync, once per solve
        return
    i = int(failed.nonzero()[0, 0])
    status = int(res.status[i])
    t = float(res.t[i]) * direction
    raise SolverError(f"{what} failed for trajectory {i} (flat batch index) of "
                      f"{res.status.shape[0]}: " + message(status, t, max_steps)
                      + " (torch: `options={'max_num_steps': ...}`)" * (status == 3))
