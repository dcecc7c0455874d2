"""``sciode.solve_ensemble`` and ``sciode.value_and_grad_ensemble``
(``shared/API.md``, "Ensembles"): one model, many parameter sets or initial
states, each member with its own adaptive steps, on all CPU cores."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from ..checks import (
    _check_model,
    check_controls,
    check_span,
    check_steps,
    check_t_eval,
    check_tolerances,
)
from ..cpu import solvers, specialized
from ..cpu.bundles import make_loop
from ..cpu.status import SUCCESS, message
from ..errors import ModelError, SolverError
from ..methods.tableaus import Tableau
from . import runner

DEVICES = ("cpu", "cuda")
_GRAD_OPTIONS = {"max_step", "dt", "quad_error_control"}
_STAT_NAMES = ("nfev", "nsteps", "naccepted", "nrejected", "njev", "nlu")


@dataclass
class EnsembleSolution:
    """Trajectories of ``N`` members, member-major.

    Attributes
    ----------
    t : (T,) output times
    y : (N, T, n_states); a failed member's rows past ``t_reached`` are NaN
    status : (N,) int, 0 on success (codes of ``sciode.cpu.status``)
    success : (N,) bool
    t_reached : (N,) where each member stopped
    stats : dict of (N,) int arrays: ``nfev``, ``nsteps``, ``naccepted``,
        ``nrejected`` (and ``njev``, ``nlu`` for implicit methods)
    """

    t: np.ndarray
    y: np.ndarray
    status: np.ndarray
    t_reached: np.ndarray
    stats: dict
    method: str
    max_steps: int

    @property
    def success(self) -> np.ndarray:
        return self.status == SUCCESS

    @property
    def failed(self) -> np.ndarray:
        """Indices of the members that failed."""
        return np.flatnonzero(self.status != SUCCESS)

    def message(self, i: int) -> str:
        """Member ``i``'s solver message."""
        return message(int(self.status[i]), float(self.t_reached[i]), self.max_steps)

    def __repr__(self) -> str:
        return (f"EnsembleSolution(members={self.y.shape[0]}, n_times={self.t.size}, "
                f"method={self.method!r}, failed={self.failed.size})")


@dataclass
class EnsembleGradResult:
    """Values and gradients of a cost for every member (``value_and_grad_ensemble``).

    With ``reduce=None``: ``value (N,)``, ``grad_params (N, n_params)``,
    ``grad_y0 (N, n_states)``, ``grad_controls (N, n_grid, n_controls)`` or
    None; a failed member's entries are NaN and its ``status`` says why.
    With ``reduce="sum"``: the value and gradients of the sum of the members'
    costs, with respect to the inputs as given: a shared ``params`` (1-D)
    gets one summed gradient, a per-member one keeps its rows (and the same
    for ``y0``); ``grad_controls`` is summed.
    """

    value: np.ndarray | float
    grad_params: np.ndarray
    grad_y0: np.ndarray
    grad_controls: np.ndarray | None
    status: np.ndarray
    t_reached: np.ndarray
    stats: dict
    max_steps: int
    extra: dict = field(default_factory=dict)

    @property
    def success(self) -> np.ndarray:
        return (self.status == SUCCESS).all(axis=1)

    @property
    def failed(self) -> np.ndarray:
        return np.flatnonzero(~self.success)

    def message(self, i: int) -> str:
        """Member ``i``'s message (the failed pass's, else success)."""
        k = 0 if self.status[i, 0] != SUCCESS else 1
        what = ("forward", "backward (costate)")[k]
        return f"{what} pass: " + message(int(self.status[i, k]), float(self.t_reached[i, k]),
                                          self.max_steps)

    def __repr__(self) -> str:
        return (f"EnsembleGradResult(members={self.status.shape[0]}, "
                f"failed={self.failed.size}, value={self.value!r})")


def _check_cuda_model(model) -> None:
    if model.structure is not None:
        raise ValueError(
            f"device='cuda' needs a model declared entry by entry; {model.name!r} is in matrix form, "
            "whose kernels allocate their intermediate arrays, which a GPU thread cannot. Declare the "
            "same model with its flat symbols: sciode.Model(states=list(m.states), "
            "params=list(m.params), controls=list(m.controls), rhs=list(m.rhs))")


def _check_device(device) -> None:
    if device not in DEVICES:
        raise ValueError(f"`device` must be one of {DEVICES}; got {device!r}")
    if device == "cuda":
        from .. import cuda

        if not cuda.available():
            raise ValueError("device='cuda' but no CUDA device is available (numba.cuda found "
                             "none; install `sciode[cuda]` on a machine with an NVIDIA GPU, or "
                             "set NUMBA_ENABLE_CUDASIM=1 for the simulator)")


def _rows(model, y0, params):
    """``(Z0 (N, n), P (N, n_p), y0_shared, p_shared)`` after broadcasting
    ``y0`` ``(n,)|(N, n)`` and ``params`` ``(n_p,)|(N, n_p)``."""
    n, n_p = model.n_states, model.n_params
    if isinstance(y0, dict) or (not isinstance(y0, np.ndarray) and y0 is not None
                                and np.ndim(np.asarray(y0, dtype=object)) == 1
                                and any(not isinstance(v, (int, float, np.number)) for v in y0)):
        y0 = model.state_vector(y0)  # a mapping, or a list that may hold SymPy (raises there)
    y = np.asarray(y0, dtype=np.float64)
    if params is None or isinstance(params, dict):
        params = model.param_vector(params)
    p = np.asarray(params, dtype=np.float64)
    if y.ndim not in (1, 2) or y.shape[-1] != n:
        raise ModelError(f"`y0` has shape {y.shape}; model {model.name!r} has {n} states, so it "
                         f"must be ({n},) or (N, {n})")
    if p.ndim not in (1, 2) or p.shape[-1] != n_p:
        raise ModelError(f"`params` has shape {p.shape}; model {model.name!r} has {n_p} params "
                         f"{[s.name for s in model.params]}, so it must be ({n_p},) or (N, {n_p})")
    sizes = {a.shape[0] for a in (y, p) if a.ndim == 2}
    if len(sizes) > 1:
        raise ValueError(f"`y0` has {y.shape[0]} members but `params` {p.shape[0]}; give both the "
                         "same number of rows, or one of them 1-D (shared by all members)")
    N = sizes.pop() if sizes else 1
    if N == 0:
        raise ValueError("an ensemble needs at least one member (got 0 rows)")
    for name, a in (("y0", y), ("params", p)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"`{name}` holds non-finite values")
    Z0 = np.ascontiguousarray(np.broadcast_to(y, (N, n)), dtype=np.float64).copy()
    P = np.ascontiguousarray(np.broadcast_to(p, (N, n_p)), dtype=np.float64).copy()
    return Z0, P, y.ndim == 1, p.ndim == 1


def _method_tuple(mk, spec):
    if isinstance(spec, Tableau):
        return solvers.rk_method(spec)
    from ..cpu.stiff import model_linear_mode

    return spec.build(model_linear_mode(mk))


def _stats(raw: np.ndarray) -> dict:
    out = {k: raw[:, i].copy() for i, k in enumerate(_STAT_NAMES[:4])}
    for i, k in enumerate(_STAT_NAMES[4:], start=4):
        if raw.shape[1] > i and raw[:, i].any():
            out[k] = raw[:, i].copy()
    return out


def solve_ensemble(model, y0, t_span, params=None, t_eval=None, method="dopri5", rtol=1e-6,
                   atol=1e-9, controls=None, dt=None, max_steps=100_000, first_step=None,
                   max_step=np.inf, device="cpu", threads=None,
                   raise_on_failure=False) -> EnsembleSolution:
    """Solve ``y_m' = f(t, y_m, p_m, w(t))``, ``y_m(t0) = y0_m`` for every member ``m``.

    Each member is integrated by the same compiled loop as ``sciode.solve``
    with its own step sizes and error control, so member ``m`` equals
    ``sciode.solve(model, y0[m], t_span, params[m], ...)`` to the last bit;
    the members run in parallel on ``threads`` threads (default: every CPU
    this process may use, or ``SCIODE_NUM_THREADS``).

    Parameters
    ----------
    model : Model
    y0 : (n_states,) or (N, n_states); a 1-D ``y0`` is shared by all members
    t_span : (t0, t1)
    params : (n_params,) or (N, n_params); 1-D is shared
    t_eval : (T,) output times (default ``(t0, t1)``)
    method, rtol, atol, controls, dt, max_steps, first_step, max_step :
        as ``sciode.solve`` (``controls`` are shared by all members)
    device : ``"cpu"`` (threads) or ``"cuda"`` (one GPU thread per member;
        methods bosh3, dopri5, tsit5, dop853; float64 or float32 as ``y0``; inputs
        may be device arrays: ``sciode.cuda``)
    threads : int, optional
    raise_on_failure : raise ``SolverError`` naming the first failed member

    Returns
    -------
    EnsembleSolution
        A failed member is flagged in ``status`` and does not stop the others.
    """
    _check_model(model)
    _check_device(device)
    from ..codegen import model_kernels

    t0, t1 = check_span(t_span)
    te = check_t_eval(t_eval, t0, t1) if t_eval is not None else np.array([t0, t1])
    if te.size == 0:
        raise ValueError("`t_eval` is empty: give at least one output time")
    rtol, atol_arr = check_tolerances(rtol, atol, model.n_states)
    controls = check_controls(model, controls)
    spec = solvers.lookup_method(method)
    h_init, max_step, max_steps, dt = check_steps(
        first_step, max_step, max_steps, spec if isinstance(spec, Tableau) else None, dt, method)
    mk = model_kernels(model)
    if device == "cuda":
        from .. import cuda

        _check_cuda_model(model)
        if not cuda.forward.supported(spec.name):
            raise ValueError(f"device='cuda' supports the adaptive explicit methods (bosh3, dopri5, "
                             f"tsit5, dop853); got method={method!r}")
        if controls is not None:
            raise ValueError("device='cuda' does not take controls yet; use device='cpu'")
        Z0, P = _cuda_rows(model, y0, params)
        Y, status, t_reached, stats = cuda.solve(mk, P, Z0, t0, t1, te, spec, rtol, atol_arr,
                                                 h_init, max_step, max_steps)
    else:
        Z0, P, _, _ = _rows(model, y0, params)
        fast = isinstance(spec, Tableau) and specialized.supports(spec, model.n_controls)
        # same steps and numbers, faster (``cpu.specialized``)
        if fast and specialized.use(mk, spec, "ensemble_forward"):
            Y, status, t_reached, stats = specialized.forward_members(
                mk, spec, P, Z0, t0, t1, te, rtol, atol_arr, h_init, max_step, max_steps, threads)
        else:
            loop = make_loop(_method_tuple(mk, spec), rtol, atol_arr, h_init, max_step, dt, max_steps)
            tw, W, _ = solvers.control_arrays(controls, model.n_controls)
            ctrl = runner.Controls(tw, W, solvers.control_stops(controls, t0, t1))
            with specialized.Timer(mk, spec) if fast else contextlib.nullcontext():
                Y, status, t_reached, stats = runner.forward(mk, P, Z0, t0, t1, te, loop, ctrl, threads)
    sol = EnsembleSolution(te, Y, status, t_reached, _stats(stats), spec.name, max_steps)
    if raise_on_failure and sol.failed.size:
        i = int(sol.failed[0])
        raise SolverError(f"{spec.name}: member {i} of {Z0.shape[0]} failed "
                          f"({sol.failed.size} in all): {sol.message(i)}")
    return sol


def _cuda_rows(model, y0, params):
    """``(Z0, P)`` for the GPU: device arrays as they are (``_device_rows``),
    host arrays as ``_rows`` makes them, in float32 when both inputs are."""
    if hasattr(y0, "__cuda_array_interface__") or hasattr(params, "__cuda_array_interface__"):
        return _device_rows(model, y0, params)
    Z0, P, _, _ = _rows(model, y0, params)
    if all(getattr(a, "dtype", None) == np.float32 for a in (y0, params)):
        return Z0.astype(np.float32), P.astype(np.float32)  # the kernel runs in float32
    return Z0, P


def _device_rows(model, y0, params):
    """``(Z0, P)`` for inputs on the GPU (``__cuda_array_interface__``): both
    must be ``(N, n)`` / ``(N, n_p)`` device arrays of one float dtype (no
    broadcasting on the device, no copies)."""
    from numba import cuda

    n, n_p = model.n_states, model.n_params
    if not (hasattr(y0, "__cuda_array_interface__") and hasattr(params, "__cuda_array_interface__")):
        raise ValueError("device arrays: pass both `y0` (N, n_states) and `params` (N, n_params) "
                         "on the GPU, or both as host arrays")
    Z0, P = cuda.as_cuda_array(y0), cuda.as_cuda_array(params)
    if Z0.ndim != 2 or Z0.shape[1] != n or P.ndim != 2 or P.shape[1] != n_p \
            or Z0.shape[0] != P.shape[0]:
        raise ValueError(f"device arrays must be y0 (N, {n}) and params (N, {n_p}); got "
                         f"{Z0.shape} and {P.shape}")
    if Z0.dtype != P.dtype:
        raise ValueError(f"`y0` is {Z0.dtype} but `params` {P.dtype}; use one dtype")
    return Z0, P


#: Accepted steps a member may record for the GPU's reverse pass (the step
#: records live in GPU memory: ``max_steps`` beyond this must be asked for).
CUDA_MAX_STEPS = 4096


def _gradients_cuda(prob, P, Z0, options) -> EnsembleGradResult:
    """``value_and_grad_ensemble(..., device="cuda")``: the discrete adjoint of
    each member's steps, one GPU thread per member (``sciode.cuda.gradient``)."""
    from .. import cuda

    spec = prob.spec
    if not (isinstance(spec, Tableau) and cuda.forward.supported(spec.name)):
        raise ValueError(f"device='cuda' supports the adaptive explicit methods (bosh3, dopri5, "
                         f"tsit5, dop853); got method={prob.method!r}")
    if prob.controls is not None:
        raise ValueError("device='cuda' does not take controls yet; use device='cpu'")
    if prob.t_rows.size:
        raise ValueError("device='cuda' gradients take terminal and running costs; least-squares "
                         "data: use device='cpu'")
    if set(options) - {"max_step"}:
        raise ValueError(f"device='cuda' takes the option max_step only; got {sorted(options)}")
    max_steps = min(prob.max_steps, CUDA_MAX_STEPS)
    value, G, status, t_reached, stats = cuda.gradient.value_and_grad(
        prob.mk, prob.ck, P, Z0, prob.t0, prob.t1, spec, prob.rtol, prob.atol, 0.0,
        float(options.get("max_step", np.inf)), max_steps)
    n_p = prob.n_p
    st2 = np.zeros((status.shape[0], 2), dtype=np.int64)
    st2[:, 0] = status
    tr2 = np.column_stack([t_reached, np.full(status.shape[0], prob.t0)])
    return EnsembleGradResult(value, G[:, :n_p].copy(), G[:, n_p:].copy(), None, st2, tr2,
                              {"forward": _stats(stats), "backward": {}}, max_steps,
                              {"sensitivity": "discrete"})


def value_and_grad_ensemble(model, cost, y0, t_span, params=None, method="dopri5", rtol=1e-6,
                            atol=1e-9, controls=None, max_steps=100_000, reduce=None,
                            device="cpu", threads=None, raise_on_failure=False,
                            **options) -> EnsembleGradResult:
    """Values ``J_m`` and gradients ``dJ_m/dp_m``, ``dJ_m/dy0_m`` of a cost
    ``J = Phi(y(t1), p) + int L dt + sum_i ell_i`` for every member ``m``.

    On the CPU each member runs the interpolating adjoint of
    ``sciode.value_and_grad`` (``sensitivity="adjoint"``) with its own
    forward steps and its own costate error control, so member ``m`` equals
    ``value_and_grad`` of that member alone; members run in parallel as in
    ``solve_ensemble``.  With ``device="cuda"`` each GPU thread runs the
    discrete adjoint of its member's steps (``sensitivity="discrete"`` of
    ``value_and_grad``, member by member; terminal and running costs,
    methods bosh3/dopri5/tsit5, at most ``CUDA_MAX_STEPS`` accepted steps
    unless ``max_steps`` is smaller).

    Parameters
    ----------
    model, cost : as ``sciode.value_and_grad`` (data of a ``LeastSquares``
        are shared by all members)
    y0, params : as ``solve_ensemble`` (1-D: shared)
    reduce : None (per member) or ``"sum"``: ``J = sum_m J_m``, with the
        gradients of shared inputs summed (particles under one control)
    options : ``max_step``, ``dt`` (fixed-step methods), ``quad_error_control``
    raise_on_failure : raise ``SolverError`` for a failed member (always so
        with ``reduce="sum"``: a summed gradient is never built on a failure)

    Returns
    -------
    EnsembleGradResult
    """
    _check_model(model)
    _check_device(device)
    from ..adjoint import common, interpolating

    unknown = set(options) - _GRAD_OPTIONS
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; valid options are "
                        f"{sorted(_GRAD_OPTIONS)}")
    if reduce not in (None, "sum"):
        raise ValueError(f"`reduce` must be None or 'sum'; got {reduce!r}")
    Z0, P, y_shared, p_shared = _rows(model, y0, params)
    prob = common.prepare(model, cost, Z0[0], t_span, P[0], method, rtol, atol, controls,
                          max_steps, options)
    if int(max_steps) < 1:
        raise ValueError(f"`max_steps` must be >= 1, got {max_steps}")
    n, n_p, N = prob.n, prob.n_p, Z0.shape[0]
    if device == "cuda":
        _check_cuda_model(prob.model)
        res = _gradients_cuda(prob, P, Z0, options)
    else:
        value, Z, status, t_reached, stats = runner.gradient(prob, interpolating.plan(prob), P, Z0,
                                                             threads)
        value = value + Z[:, n + n_p]
        g_y0, g_p = Z[:, :n].copy(), Z[:, n:n + n_p].copy()
        g_w = (Z[:, n + n_p + 1:].reshape(N, prob.tw.size, model.n_controls).copy()
               if prob.n_g else None)
        res = EnsembleGradResult(value, g_p, g_y0, g_w, status, t_reached,
                                 {"forward": _stats(stats[:, :6]),
                                  "backward": _stats(stats[:, 6:])}, int(max_steps))
    bad = ~res.success
    for a in (res.value, res.grad_params, res.grad_y0, res.grad_controls):
        if a is not None:
            a[bad] = np.nan  # flagged in `status`; never a number built on a failed pass
    if bad.any() and (raise_on_failure or reduce == "sum"):
        i = int(np.flatnonzero(bad)[0])
        raise SolverError(f"{prob.method}: member {i} of {N} failed ({int(bad.sum())} in all): "
                          + res.message(i))
    if reduce == "sum":
        res.value = float(res.value.sum())
        if p_shared:
            res.grad_params = res.grad_params.sum(axis=0)
        if y_shared:
            res.grad_y0 = res.grad_y0.sum(axis=0)
        if res.grad_controls is not None:
            res.grad_controls = res.grad_controls.sum(axis=0)
    return res
