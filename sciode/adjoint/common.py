"""What every sensitivity mode shares: problem set-up, data rows, results.

A ``Problem`` holds the validated inputs, the generated kernels and the data
of the least-squares terms flattened into *rows*: row ``i`` is an observation
time ``t_rows[i]`` with targets ``Yobs[i]`` and weights ``Wt[i]`` (``1/sigma^2``
where observed, 0 where not observed or where the column belongs to another
data term), so that the misfit is ``0.5 sum_ij Wt_ij (h_j(y(t_i)) - Yobs_ij)^2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..checks import check_controls, check_span, check_tolerances
from ..cost import as_cost
from ..cpu import solvers
from ..cpu.bundles import Inputs, make_loop
from ..cpu.drivers import entry
from ..cpu.status import SUCCESS, message
from ..errors import SolverError
from ..methods import registry
from ..methods.tableaus import Tableau
from ..model import Model
from .entries import Rows


@dataclass
class GradResult:
    """Value and gradients of a cost (see ``sciode.value_and_grad``)."""

    value: float
    grad_params: np.ndarray
    grad_y0: np.ndarray
    grad_controls: np.ndarray | None
    stats: dict
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"GradResult(value={self.value!r}, grad_params={self.grad_params!r}, "
                f"grad_y0={self.grad_y0!r}, stats={self.stats})")


@dataclass
class Problem:
    model: Model
    cost: object
    mk: object
    ck: object
    p: np.ndarray
    y0: np.ndarray
    t0: float
    t1: float
    controls: object
    tw: np.ndarray
    W: np.ndarray
    rtol: float
    atol: np.ndarray
    method: str
    spec: object
    max_steps: int
    t_rows: np.ndarray
    Yobs: np.ndarray
    Wt: np.ndarray
    options: dict
    #: What a mode derives from the inputs other than ``y0`` and ``p`` (its
    #: compiled entry, kernels, tolerances, stops), shared by every call with
    #: the same static inputs (``prepare``): a fit reuses it at each iteration.
    plan: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.model.n_states

    @property
    def n_p(self) -> int:
        return self.model.n_params

    @property
    def n_g(self) -> int:
        """Number of control-gradient quadratures (grid points x controls)."""
        return 0 if self.controls is None else self.tw.size * self.model.n_controls

    def wbuf(self) -> np.ndarray:
        return np.zeros(self.model.n_controls)

    def aug_atol(self, size: int, lead: int = 0) -> np.ndarray:
        """Absolute tolerances of an augmented state: the states' own for the
        first ``lead`` entries, the smallest state tolerance elsewhere."""
        a = np.empty(size)
        a[lead:] = self.atol.min()
        a[:lead] = self.atol[:lead] if lead <= self.atol.size else np.resize(self.atol, lead)
        return a


def data_rows(cost, n_h):
    """Flatten the least-squares terms into rows sorted by time (stable)."""
    ts, Ys, Ws = [], [], []
    off = 0
    for term in cost.data:
        k = term.y_obs.shape[1]
        Y = np.zeros((term.t_obs.size, n_h))
        Wt = np.zeros((term.t_obs.size, n_h))
        observed = ~np.isnan(term.y_obs)
        Y[:, off:off + k] = np.where(observed, term.y_obs, 0.0)
        Wt[:, off:off + k] = observed / np.asarray(term.sigma, dtype=float) ** 2
        ts.append(np.asarray(term.t_obs, dtype=float))
        Ys.append(Y)
        Ws.append(Wt)
        off += k
    if not ts:
        return np.zeros(0), np.zeros((0, n_h)), np.zeros((0, n_h))
    t = np.concatenate(ts)
    order = np.argsort(t, kind="stable")
    return (np.ascontiguousarray(t[order]), np.ascontiguousarray(np.concatenate(Ys)[order]),
            np.ascontiguousarray(np.concatenate(Ws)[order]))


_STATIC: dict = {}


def _static_key(model, cost, t_span, method, rtol, atol, controls, max_steps, options):
    """Key of the inputs other than ``y0`` and ``params``, or None (not cacheable).

    Objects enter by identity (models, costs and controls are immutable); the
    cache entry holds them, so their ids cannot be reused meanwhile.
    """
    try:
        key = (id(model), id(cost), tuple(map(float, t_span)), method, float(rtol),
               float(atol) if isinstance(atol, (int, float)) else np.asarray(atol, float).tobytes(),
               id(controls), int(max_steps), tuple(sorted(options.items())))
        hash(key)
    except (TypeError, ValueError):
        return None
    return key


def prepare(model, cost, y0, t_span, params, method, rtol, atol, controls, max_steps, options) -> Problem:
    """Validate the inputs of ``value_and_grad`` and fetch the kernels.

    Everything but ``y0`` and ``params`` is validated once per distinct set of
    static inputs and kept (``_STATIC``): ~15 us a call, which is a tenth of a
    small gradient.
    """
    key = _static_key(model, cost, t_span, method, rtol, atol, controls, max_steps, options)
    hit = _STATIC.get(key) if key is not None else None
    if hit is not None and hit[0] is model and hit[1] is cost and hit[2] is controls:
        base = hit[3]
        z0 = np.ascontiguousarray(model.state_vector(y0))
        p = np.ascontiguousarray(model.param_vector(params))
        return Problem(model, base.cost, base.mk, base.ck, p, z0, base.t0, base.t1, base.controls,
                       base.tw, base.W, base.rtol, base.atol, base.method, base.spec, base.max_steps,
                       base.t_rows, base.Yobs, base.Wt, base.options, base.plan)
    prob = _prepare(model, cost, y0, t_span, params, method, rtol, atol, controls, max_steps, options)
    if key is not None:
        if len(_STATIC) > 64:
            _STATIC.clear()
        _STATIC[key] = (model, cost, controls, prob)
    return prob


def _prepare(model, cost, y0, t_span, params, method, rtol, atol, controls, max_steps, options) -> Problem:
    if not isinstance(model, Model):
        raise TypeError(f"`model` must be a sciode.Model, got {type(model).__name__}")
    cost = as_cost(cost)
    t0, t1 = check_span(t_span)
    cost.check(model, (t0, t1))
    z0 = np.ascontiguousarray(model.state_vector(y0))
    p = np.ascontiguousarray(model.param_vector(params))
    rtol, atol_arr = check_tolerances(rtol, atol, model.n_states)
    controls = check_controls(model, controls)
    spec = solvers.lookup_method(method)
    tw, W, _ = solvers.control_arrays(controls, model.n_controls)
    # (imported here: this module sits in the compiled loops' import chain, which
    # the code generator stays out of; see sciode._numba_cache.UNCOMPILED)
    from ..codegen import cost_kernels, model_kernels

    mk = model_kernels(model)
    ck = cost_kernels(model, cost)
    t_rows, Yobs, Wt = data_rows(cost, ck.n_obs)
    if t1 < t0:
        t_rows, Yobs, Wt = t_rows[::-1].copy(), Yobs[::-1].copy(), Wt[::-1].copy()
    return Problem(model, cost, mk, ck, p, z0, t0, t1, controls, tw, W, rtol, atol_arr,
                   method, spec, int(max_steps), t_rows, Yobs, Wt, dict(options))


def explicit_tableau(prob: Problem, mode: str, why: str = "") -> Tableau:
    if not isinstance(prob.spec, Tableau):
        raise ValueError(f"sensitivity={mode!r} supports the explicit methods "
                         f"{list(solvers.EXPLICIT_TABLEAUS)}; got method={prob.method!r}{why}")
    return prob.spec


def is_stiff(prob: Problem) -> bool:
    """Whether the problem's method is a stiff (Newton) one."""
    return not isinstance(prob.spec, Tableau)


def model_method(prob: Problem):
    """The method tuple for the model's own forward solve."""
    if isinstance(prob.spec, Tableau):
        return solvers.rk_method(prob.spec)
    from ..cpu.stiff import model_linear_mode

    return prob.spec.build(model_linear_mode(prob.mk))


def augmented_method(prob: Problem, mode: str, exact_jacobian: bool = True, block=None):
    """The method tuple for an augmented system of ``mode``.

    Stiff methods factor the augmented Jacobian densely, or, with ``block =
    (n, m)``, as ``1 + m`` copies of one ``(n, n)`` block (``linalg.block_mode``:
    the forward-sensitivity system); the costate systems of ``adjoint`` and
    ``checkpoint`` factor their leading ``(n, n)`` block only (``linalg.lead_mode``).  ``exact_jacobian`` False means the system
    registers only an approximate Jacobian, which a Rosenbrock method cannot
    use (it would lose order).
    """
    if isinstance(prob.spec, Tableau):
        return solvers.rk_method(prob.spec)
    if prob.spec.exact_jacobian and not exact_jacobian:
        raise ValueError(f"sensitivity={mode!r} with a stiff method needs a Newton-based method "
                         f"(the augmented Jacobian is approximated); use method='kvaerno5' or 'bdf' "
                         f"instead of {prob.method!r}, or sensitivity='adjoint'")
    if mode in ("adjoint", "checkpoint", "forward"):
        # every driver (value_and_grad, ensembles, PEtab) reaches the method tuple
        # here: the registry's table of (method, mode) pairs is the one authority
        registry.check(prob.method, sensitivity=mode)
    from ..cpu.linalg import block_mode, lead_mode, linear_mode

    if block is not None:
        return prob.spec.build(block_mode(*block))
    if mode in ("adjoint", "checkpoint"):
        # the costate system [lambda, mu, q, G] has the Jacobian [[-J^T, 0], [-F_p^T, 0]]:
        # factor the (n, n) block -J^T only, dense or banded as the transposed pattern allows
        rows, cols = prob.mk.jac_pattern
        return prob.spec.build(lead_mode(linear_mode(prob.n, cols, rows), prob.n))
    empty = np.zeros(0, dtype=np.int64)
    return prob.spec.build(linear_mode(0, empty, empty, "dense"))


def check_status(status, t_reached, prob: Problem, what: str) -> None:
    """Raise ``SolverError`` for a failed pass: a gradient is never built on one."""
    if status != SUCCESS:
        raise SolverError(f"{what} pass failed ({prob.method}): {message(status, t_reached, prob.max_steps)}")


def sweep_loop(prob: Problem, method, size: int, lead: int, stops: np.ndarray, h_init: float = 0.0):
    """The ``Loop`` of a sweep over ``z`` of ``size`` entries whose first ``lead``
    are the error-controlled ones (``sweep_tolerances``), landing on ``stops``."""
    rtol, atol = sweep_tolerances(prob, size, lead)
    return make_loop(method, rtol, atol, h_init, float(prob.options.get("max_step", np.inf)),
                     fixed_step(prob), prob.max_steps, stops)


def sweep_tolerances(prob: Problem, size: int, lead: int):
    """``rtol, atol`` of a backward sweep: only the first ``lead`` entries (costate,
    and the state in backsolve) are in the error test unless the option
    ``quad_error_control`` is set.

    The quadratures (``mu``, ``q``, ``G``) do not feed back into the costate,
    and their accuracy follows from it; leaving them out is CVODES' default
    too (``errconQ``), and saves steps.  The loops take the RMS over all
    entries, so the quadratures get ``atol = inf`` and both tolerances are
    scaled by ``sqrt(lead / size)``: then that RMS equals the RMS over the
    leading entries at the user's tolerances.

    Stiff methods keep the quadratures in the test by default: there the
    costate can be smooth while its quadrature integrand is not (a fast
    transient in ``dH/dp``), and the PEtab problem Fujita_SciSignal2010 gave
    ``dJ/dp`` wrong by a factor ~1e5 without it (agreeing with forward
    sensitivities to 3e-9 with it, at no measured cost).
    """
    stiff = not isinstance(prob.spec, Tableau)
    return quadratures_out_of_test(prob.rtol, prob.aug_atol(size, lead), lead,
                                   prob.options.get("quad_error_control", stiff))


def quadratures_out_of_test(rtol: float, atol: np.ndarray, lead: int, keep: bool = False):
    """``rtol, atol`` that leave entries ``lead:`` of an augmented state out of
    the RMS error test, with the RMS over the first ``lead`` entries held at
    ``rtol, atol[:lead]`` (see ``sweep_tolerances``); ``keep`` leaves them in."""
    size = atol.shape[0]
    if keep or lead >= size:
        return rtol, atol
    atol = atol.copy()
    scale = np.sqrt(lead / size)
    atol[:lead] *= scale
    atol[lead:] = np.inf
    return rtol * scale, atol


def sweep_stops(prob: Problem, t_start: float, t_stop: float, jump_t: np.ndarray) -> np.ndarray:
    """Stops of a backward sweep: control grid points and the observation times
    ``jump_t`` (given in the direction of integration), in that direction (the
    loop lands on each)."""
    if prob.controls is None:  # jump_t is in the sweep's direction already (repeats are harmless)
        return np.ascontiguousarray(jump_t)
    g = np.union1d(solvers.control_stops(prob.controls, t_start, t_stop), jump_t)
    return np.ascontiguousarray(g if t_stop >= t_start else g[::-1])


#: The kernels a costate sweep calls (``systems.costate_rates``) besides the
#: stiff methods' Newton kernels (``codegen.ModelKernels.fns``) ...
COSTATE_MODEL_KERNELS = ("rhs", "vjp_yp", "vjp_w")
COSTATE_COST_KERNELS = ("L_grad", "dLdw")
#: ... the observables' (``entries.obs_jumps``), and what a whole gradient adds
OBS_KERNELS = ("obs", "obs_vjp_y", "obs_vjp_p")
GRADIENT_COST_KERNELS = COSTATE_COST_KERNELS + OBS_KERNELS + ("Phi", "dPhidy", "dPhidp")


def costate_fns(prob: Problem, *methods, cost_kernels=COSTATE_COST_KERNELS):
    """``(abi.ModelFns, abi.CostFns)`` of a costate sweep with ``methods``."""
    return prob.mk.fns(*methods, uses=COSTATE_MODEL_KERNELS), prob.ck.fns(cost_kernels)


def inputs(prob: Problem) -> Inputs:
    return Inputs(prob.p, prob.tw, prob.W, prob.wbuf())


def fixed_step(prob: Problem) -> float:
    dt = float(prob.options.get("dt") or 0.0)
    if isinstance(prob.spec, Tableau) and not prob.spec.adaptive and dt <= 0:
        raise ValueError(f"method {prob.method!r} is fixed-step: pass a positive `dt`")
    return dt


def model_loop(prob: Problem, method, atol, rtol=None):
    """The ``Loop`` of a forward solve with ``method`` (of the model, or of a
    system augmented from it, whose ``atol`` is given), landing on the control
    grid."""
    return make_loop(method, prob.rtol if rtol is None else rtol, atol, 0.0,
                     float(prob.options.get("max_step", np.inf)), fixed_step(prob), prob.max_steps,
                     solvers.control_stops(prob.controls, prob.t0, prob.t1))


def observation_jumps(prob: Problem, Y_rows: np.ndarray):
    """``h`` at each row and the costate jumps ``(dh/dy)^T r``, ``(dh/dp)^T r``."""
    return entry("obs_jumps")(prob.ck.fns(OBS_KERNELS), inputs(prob),
                              Rows(prob.t_rows, prob.Yobs, prob.Wt), np.ascontiguousarray(Y_rows),
                              prob.n_p)


def observation_jacobians(prob: Problem, Y_rows: np.ndarray):
    """``dh/dy`` ``(m, n_h, n)`` and ``dh/dp`` ``(m, n_h, n_p)`` at each row."""
    return entry("obs_jacobians")(prob.ck.fns(OBS_KERNELS), inputs(prob), prob.t_rows,
                                  np.ascontiguousarray(Y_rows), prob.ck.n_obs)


def misfit(prob: Problem, H: np.ndarray) -> float:
    return 0.5 * float(np.sum(prob.Wt * (H - prob.Yobs) ** 2))


def terminal(prob: Problem, y1: np.ndarray):
    """``Phi``, ``dPhi/dy`` and ``dPhi/dp`` at ``(t1, y1)``."""
    ck, w = prob.ck, _controls_at(prob, prob.t1)
    phi, dy, dp = np.zeros(1), np.zeros(prob.n), np.zeros(prob.n_p)
    y1 = np.ascontiguousarray(y1)
    ck["Phi"](prob.t1, y1, prob.p, w, phi)
    ck["dPhidy"](prob.t1, y1, prob.p, w, dy)
    ck["dPhidp"](prob.t1, y1, prob.p, w, dp)
    return float(phi[0]), dy, dp


def _controls_at(prob: Problem, t: float) -> np.ndarray:
    if prob.controls is None:
        return np.zeros(0)
    return np.ascontiguousarray(prob.controls(t), dtype=float)


def forward_pass(prob: Problem, t_eval: np.ndarray, dense, y0=None, span=None):
    """The model's forward solve, raising on failure (``dense``: 1, 0 or -1, see ``solvers.run``)."""
    t0, t1 = span if span is not None else (prob.t0, prob.t1)
    raw = solvers.run(prob.mk, model_method(prob), prob.p, prob.controls,
                      prob.y0 if y0 is None else np.ascontiguousarray(y0), t0, t1, t_eval,
                      prob.rtol, prob.atol, 0.0, float(prob.options.get("max_step", np.inf)),
                      fixed_step(prob), prob.max_steps, dense)
    check_status(raw.status, raw.t_reached, prob, "forward")
    return raw




def control_gradient(prob: Problem, G: np.ndarray):
    if prob.controls is None:
        return None
    return G.reshape(prob.tw.size, prob.model.n_controls).copy()
