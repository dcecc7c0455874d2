r"""``sciode.gradcheck``: prove a model's gradients right, or say which is wrong.

Every sensitivity mode is judged against references that share none of its
derivation (issue 11):

* **Gradients** against Richardson-extrapolated central differences of
  sciode's cost value ``J(theta)``, ``theta = [params, y0]`` (and the control
  grid values).  For entry ``k`` with step ``h = rel_step * max(|theta_k|, 1)``

  .. math::

      D(s) &= \frac{J(\theta + s e_k) - J(\theta - s e_k)}{2 s}
              = J'_k + a s^2 + b s^4 + \dots \\
      R_1 &= \frac{4 D(h/2) - D(h)}{3}, \qquad
      R_2 = \frac{4 D(h/4) - D(h/2)}{3}

  Both cancel the ``s^2`` term; ``R_2`` (error ``~ b h^4 / 64``) is the
  reference, and ``|R_2 - R_1|`` (``~ 15/16`` of ``R_1``'s error, so about 15
  times ``R_2``'s) bounds its truncation error conservatively.  ``J`` is only
  accurate to about the solver tolerance, and an error ``eps`` in each value
  becomes up to ``eps / s`` in ``D(s)``, so the estimate adds a noise term:

  .. math::

      \mathrm{est}_k = |R_2 - R_1| + \frac{\mathrm{rtol}\,|J|}{h}

  (see ``_NOISE`` for why ``rtol |J| / h`` and not the worst case).
* **Cost values** against an independent value: SciPy's ``solve_ivp`` on the
  model's right-hand side lambdified by SymPy to NumPy, the cost evaluated
  from its SymPy pieces (`reference_value`).  This catches a fault shared by
  every mode *and* by the differences, e.g. in a generated observable kernel.

Gates, with ``scale_k = max(|ref_k|, floor * G / sigma_k)``, ``sigma_k =
max(|theta_k|, 1)`` and ``G = max_j |ref_j| sigma_j`` (entries far below the
largest one are judged against it, in units where each ``theta`` moves by the
same relative amount):

* ``rel_error = |g_k - ref_k| / scale_k`` must be at most
  ``allowance = max(tol, safety * est_rel)`` with ``est_rel = est_k / scale_k``;
* the reference is *reliable* when ``est_rel <= tol``.  When it is not, the
  gradient cannot be judged at ``tol``: ``report.ok`` is False, the report
  says that the reference (not the gradient) failed, and a ``UserWarning``
  suggests what to change.  A gradient outside even the widened allowance is
  still reported as wrong;
* a value passes when ``|J_mode - J_ref| / |J_ref| <= max(value_tol, 1000 rtol)``
  (a solve at a loose ``rtol`` cannot be held to ``value_tol``).  When a value
  fails, the differences of that ``J`` are suspect too, and the report says so.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from .adjoint import common, fd, initial_state, value_and_grad
from .controls import Controls
from .cost import as_cost
from .errors import SolverError
from .methods.tableaus import EXPLICIT_TABLEAUS

DEFAULT_MODES = ("adjoint", "checkpoint", "backsolve", "discrete")

#: Default ``floor``: entries smaller than this fraction of the largest (``G``) are judged
#: against ``FLOOR * G``: central differences resolve a derivative only to
#: ``rtol |J| / h``, so a relative test on a near-zero entry would judge noise.
FLOOR = 1e-3

#: The noise term is ``_NOISE * rtol * |J| / h``.  The worst case, errors of
#: ``eps`` at the four points ``R_2`` uses, all of opposite sign, is ``6 eps /
#: h``; but the solver's error is a smooth function of ``theta`` except where
#: the step sequence changes, so the part of it that does not cancel in a
#: difference is far below ``rtol |J|`` (measured: ~1e-3 of it on ``x' = -k
#: x``).  ``eps = rtol |J|`` with factor 1 stays conservative by that margin,
#: and ``|R_2 - R_1|`` picks up any noise that is actually present.
_NOISE = 1.0

#: The value gate is ``max(value_tol, _VALUE_RTOL_FACTOR * rtol)`` (see `gradcheck`).
_VALUE_RTOL_FACTOR = 1e3

#: Methods whose value is compared with SciPy's Radau (with a Jacobian)
#: rather than DOP853.
STIFF_METHODS = ("rodas4", "rodas5", "kvaerno5", "bdf")


@dataclass
class GradcheckRow:
    """One checked quantity of one mode.

    Attributes
    ----------
    mode : str
        Sensitivity mode (``"forward"``, ``"adjoint"``, ...).
    quantity : str
        ``"dJ/d<param>"``, ``"dJ/d<state>(t0)"``, ``"dJ/d<control>[i]"`` (grid
        point ``i``), ``"dJ/dw . d<j>"`` (random direction ``j`` over every
        control grid value) or ``"J"`` (the cost value).
    value : float
        What the mode returned.
    reference : float
        Richardson-extrapolated difference ``R_2`` (gradients) or the SciPy
        value (``J``).
    rel_error : float
        ``|value - reference| / scale``.
    allowance : float
        ``max(tol, safety * reference_error_rel)``; for ``J`` the value gate
        ``max(value_tol, 1000 rtol)``.
    reference_error : float
        Absolute error estimate of `reference` (``|R_2 - R_1| + rtol |J| / h``
        for gradients, the change of the SciPy value between ``rtol`` 1e-10
        and 1e-12 for ``J``).
    reference_error_rel : float
        `reference_error` divided by the entry's scale.
    reference_reliable : bool
        ``reference_error_rel <= tol`` (the value gate for ``J``).
    status : str
        ``"pass"``; ``"FAIL"`` (outside the allowance); ``"unreliable"``
        (inside it, but the reference is too inaccurate to judge at ``tol``);
        ``"n/a"`` (not checked: see `note`; neither a pass nor a failure).
    rel_error_forward : float
        Relative difference from the forward-sensitivity gradient, for
        information only (NaN for forward itself and for values).
    note : str
        Why a row is ``"n/a"``, or what failed.
    """

    mode: str
    quantity: str
    value: float
    reference: float
    rel_error: float
    allowance: float
    reference_error: float
    reference_error_rel: float
    reference_reliable: bool
    status: str
    rel_error_forward: float = float("nan")
    note: str = ""

    @property
    def ok(self) -> bool:
        """True only for ``status == "pass"``."""
        return self.status == "pass"

    @property
    def checked(self) -> bool:
        """False for ``"n/a"`` rows, which count as neither pass nor failure."""
        return self.status != "n/a"


@dataclass
class GradcheckReport:
    """Result of `gradcheck`: ``ok``, ``rows``, ``failures`` and a readable table.

    Attributes
    ----------
    rows : list of GradcheckRow
    value : float
        sciode's ``J`` at the nominal point (the value the differences use).
    value_reference : float
        The independent SciPy value (NaN when unavailable).
    tol, value_tol, safety, rel_step, rtol : float
        The settings the rows were judged with; `value_tol` is the value gate
        actually applied, ``max(value_tol, 1000 rtol)``.
    notes : list of str
        Sampling and skipped checks, printed under the table.
    """

    rows: list = field(default_factory=list)
    value: float = float("nan")
    value_reference: float = float("nan")
    tol: float = 0.0
    value_tol: float = 0.0
    safety: float = 0.0
    rel_step: float = 0.0
    rtol: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every checked row passed (and at least one row was checked)."""
        checked = [r for r in self.rows if r.checked]
        return bool(checked) and all(r.ok for r in checked)

    @property
    def failures(self) -> list:
        """Checked rows that did not pass: wrong (``FAIL``) or unjudgeable."""
        return [r for r in self.rows if r.checked and not r.ok]

    @property
    def reference_reliable(self) -> bool:
        """False when any checked reference is too inaccurate to judge at its tolerance."""
        return all(r.reference_reliable for r in self.rows if r.checked)

    @property
    def skipped(self) -> list:
        """The ``"n/a"`` rows."""
        return [r for r in self.rows if not r.checked]

    def __str__(self) -> str:
        head = (f"{'mode':<11} {'quantity':<18} {'value':>16} {'reference':>16} "
                f"{'rel.err':>8} {'allow':>8} {'ref.err':>8}  ok")
        title = (f"gradcheck: J = {self.value:.12g} (SciPy: {self.value_reference:.12g}); "
                 f"tol={self.tol:g}, value_tol={self.value_tol:g}, safety={self.safety:g}, "
                 f"rel_step={self.rel_step:g}, rtol={self.rtol:g}")
        lines = [title, head, "-" * len(head)]
        lines += [_format_row(r) for r in self.rows]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"not checked: {r.mode} {r.quantity}: {r.note}" for r in self.skipped]
        lines += _summary(self)
        return "\n".join(lines)

    __repr__ = __str__


def _format_row(r: GradcheckRow) -> str:
    if not r.checked:
        return f"{r.mode:<11} {r.quantity:<18} {'':>16} {'':>16} {'':>8} {'':>8} {'':>8}  n/a"
    mark = {"pass": "yes", "FAIL": "NO", "unreliable": "NO (reference unreliable)"}[r.status]
    return (f"{r.mode:<11} {r.quantity:<18} {r.value:>16.9g} {r.reference:>16.9g} "
            f"{r.rel_error:>8.1e} {r.allowance:>8.1e} {r.reference_error_rel:>8.1e}  {mark}")


def _summary(report: GradcheckReport) -> list:
    wrong = [r for r in report.failures if r.status == "FAIL"]
    unjudged = [r for r in report.failures if r.status == "unreliable"]
    if report.ok:
        values = any(r.quantity == "J" for r in report.rows if r.checked)
        skipped = f"; {len(report.skipped)} rows not checked (listed above)" if report.skipped else ""
        return ["all gradients agree with the finite-difference reference"
                + (" and all values with the SciPy value" if values else "") + skipped]
    if not report.rows or not any(r.checked for r in report.rows):
        return ["FAILED: nothing was checked"]
    lines = []
    if wrong:
        worst = max(wrong, key=lambda r: r.rel_error / r.allowance if r.allowance > 0 else math.inf)
        lines.append(f"FAILED: {len(wrong)} entries disagree with the reference; worst: {worst.mode} "
                     f"{worst.quantity} off by {worst.rel_error:.2e} relative "
                     f"(allowance {worst.allowance:.1e}){' ' + worst.note if worst.note else ''}")
    if any(r.quantity == "J" for r in wrong):
        lines.append("FAILED: the values disagree with the independent SciPy value: J itself is "
                     "inaccurate or wrong, so the differences of J (the gradient reference) are suspect "
                     "too; fix the value first (tighter atol/rtol, or a faulty kernel)")
    if unjudged:
        names = sorted({r.quantity for r in unjudged})
        lines.append(f"FAILED: the REFERENCE is unreliable for {', '.join(names)} (error estimate above "
                     f"tol); it is the reference, not the gradient, that failed: {_advice(report)}")
    return lines


def _advice(report: GradcheckReport) -> str:
    return (f"tighten the solves (rtol={report.rtol:g} -> {report.rtol / 100:g}) or try another "
            f"rel_step (now {report.rel_step:g}), or loosen tol if {report.tol:g} is not needed")


# --- finite differences ---------------------------------------------------------


def richardson(fun, h: float) -> tuple[float, float]:
    """Richardson-extrapolated central difference of ``fun`` at 0.

    Parameters
    ----------
    fun : callable, float -> float
        ``J`` along a line, ``s -> J(theta + s d)``.
    h : float
        Largest step; ``h/2`` and ``h/4`` are used too.

    Returns
    -------
    R2, R1 : float
        ``(4 D(h/4) - D(h/2)) / 3`` and ``(4 D(h/2) - D(h)) / 3``.
    """
    D = [(fun(s) - fun(-s)) / (2 * s) for s in (h, h / 2, h / 4)]
    return (4 * D[2] - D[1]) / 3, (4 * D[1] - D[0]) / 3


def _line(fun, theta: np.ndarray, d: np.ndarray):
    """``s -> fun(theta + s d)``."""
    return lambda s: fun(theta + s * d)


def richardson_differences(fun, theta, rel_step, noise: float = 0.0):
    """Richardson-extrapolated central differences of ``fun`` at ``theta``.

    Parameters
    ----------
    fun : callable, (n,) -> float
    theta : array_like, shape (n,)
    rel_step : float
        ``h_k = rel_step * max(|theta_k|, 1)``.
    noise : float, optional
        Accuracy of one value of ``fun`` (e.g. ``rtol * |J|``); adds
        ``noise / h_k`` to each error estimate.

    Returns
    -------
    gradient, error_estimate : numpy.ndarray, shape (n,)
        ``R_2`` and ``|R_2 - R_1| + noise / h_k`` (see the module docstring).
    """
    theta = np.asarray(theta, dtype=float)
    grad, err = np.empty(theta.size), np.empty(theta.size)
    for k in range(theta.size):
        e = np.zeros(theta.size)
        e[k] = 1.0
        h = rel_step * max(abs(theta[k]), 1.0)
        grad[k], r1 = richardson(_line(fun, theta, e), h)
        err[k] = abs(grad[k] - r1) + noise / h
    return grad, err


class _SciodeValue:
    """sciode's own ``J(theta)``, ``theta = [params, y0, control values]``.

    One quadrature forward solve per call (``fd.cost_value``: the states plus
    ``q' = L``), not a forward-sensitivity solve with its ``n (n_p + n)``
    extra states.  For a ``y0`` given as expressions in the params, the
    ``y0`` entries of ``theta`` shift ``y0(params)``, so that ``dJ/dparams``
    is the total derivative that `value_and_grad` returns.
    """

    def __init__(self, prob, y0_raw, symbolic_y0: bool, x0: np.ndarray):
        self.prob, self.y0_raw, self.symbolic_y0, self.x0 = prob, y0_raw, symbolic_y0, x0
        self.n_p, self.n = prob.n_p, prob.n
        self.V0 = None if prob.controls is None else prob.controls.values

    def __call__(self, theta: np.ndarray) -> float:
        p = np.ascontiguousarray(theta[:self.n_p])
        x = np.ascontiguousarray(theta[self.n_p:self.n_p + self.n])
        if self.symbolic_y0:
            x = x - self.x0 + initial_state(self.prob.model, self.y0_raw, p)[0]
        prob = dataclasses.replace(self.prob, p=p, y0=np.ascontiguousarray(x))
        if self.V0 is not None:
            V = theta[self.n_p + self.n:].reshape(self.V0.shape)
            if not np.array_equal(V, self.V0):
                ctrl = Controls(prob.controls.t, V)
                prob = dataclasses.replace(prob, controls=ctrl, tw=np.array(ctrl.t), W=np.array(V))
        # Looked up on the module at each call: a test plants a fault there.
        return float(fd.cost_value(prob))


# --- the independent value (NumPy, SciPy and SymPy only) -----------------------


def reference_value(model, cost, y0, t_span, params, controls=None, stiff=False,
                    rtol=1e-12, atol=1e-14) -> float:
    """``J`` by SciPy's ``solve_ivp`` on the SymPy expressions, no sciode kernel.

    Parameters
    ----------
    model : Model
    cost : Cost or LeastSquares
    y0 : array_like, shape (n_states,)
        Numbers, or SymPy expressions in the params.
    t_span : (float, float)
    params : array_like, shape (n_params,)
    controls : Controls, optional
        Interpolated here with `numpy.interp` (constant outside the grid).
    stiff : bool
        ``Radau`` with the lambdified Jacobian instead of ``DOP853``.
    rtol, atol : float

    Returns
    -------
    float
        ``Phi(x(t1), p) + int L dt + sum 0.5 ((h(x(t_i), p) - y_obs) / sigma)^2``
        over the observed entries.  The integration stops at every observation
        time and control grid point, so a repeated time or one at ``t0`` or
        ``t1`` reads the state there.

    Raises
    ------
    RuntimeError
        When SciPy's integration fails.
    """
    import sympy as sp
    from scipy.integrate import solve_ivp

    cost = as_cost(cost)
    t, xs, ps, ws = model.t, list(model.states), list(model.params), list(model.controls)
    p = np.asarray(params, dtype=float)
    args = [t, *xs, *ps, *ws]
    F = sp.Matrix([*model.rhs, cost.running])
    f_num = sp.lambdify(args, list(F), modules="numpy")
    jac_num = sp.lambdify(args, F.jacobian(xs), modules="numpy") if stiff else None

    def w_at(s):
        if controls is None:
            return []
        return [np.interp(s, controls.t, controls.values[:, j]) for j in range(controls.n_controls)]

    def fun(s, z):
        return np.array(f_num(s, *z[:-1], *p, *w_at(s)), dtype=float)

    def jac(s, z):
        J = np.zeros((z.size, z.size))
        J[:, :-1] = np.array(jac_num(s, *z[:-1], *p, *w_at(s)), dtype=float)
        return J

    t0, t1 = (float(v) for v in t_span)
    t_obs = [float(v) for term in cost.data for v in term.t_obs]
    ctrl_t = [] if controls is None else [float(v) for v in controls.t]
    stops = sorted({v for v in (*t_obs, *ctrl_t) if min(t0, t1) < v < max(t0, t1)} | {t0, t1},
                   reverse=t1 < t0)
    z = np.array([*model.state_vector(initial_state(model, y0, p)[0]), 0.0])
    at = {stops[0]: z[:-1].copy()}
    for a, b in itertools.pairwise(stops):
        extra = {"method": "Radau", "jac": jac} if stiff else {"method": "DOP853"}
        sol = solve_ivp(fun, (a, b), z, rtol=rtol, atol=atol, **extra)
        if not sol.success:
            raise RuntimeError(f"SciPy solve_ivp failed on [{a}, {b}]: {sol.message}")
        z = sol.y[:, -1]
        at[b] = z[:-1].copy()
    value = float(sp.lambdify([t, *xs, *ps], cost.terminal, modules="numpy")(t1, *z[:-1], *p)) + z[-1]
    for term in cost.data:
        value += _misfit(model, term, at, p)
    return float(value)


def _misfit(model, term, states_at, p) -> float:
    """``term``'s misfit with the observables evaluated in NumPy (``sympy.lambdify``)."""
    import sympy as sp

    h_num = sp.lambdify([model.t, *model.states, *model.params], list(term.resolved(model)), modules="numpy")
    h = [np.broadcast_to(np.asarray(h_num(float(ti), *states_at[float(ti)], *p), dtype=float), (term.n_observables,))
         for ti in term.t_obs]
    return term.value(np.array(h))


# --- the check ---------------------------------------------------------------------


def gradcheck(model, cost, y0, t_span, params=None, modes=DEFAULT_MODES, tol=1e-6, safety=2.0,
              rel_step=1e-3, value_tol=1e-7, floor=FLOOR, max_entries=None, max_control_entries=8,
              control_directions=3, seed=0, rtol=1e-10, atol=1e-12, method="dopri5",
              **solve_kw) -> GradcheckReport:
    """Check every mode's value and gradients against independent references.

    Parameters
    ----------
    model : Model
    cost : Cost or LeastSquares
    y0 : array_like, shape (n_states,), or mapping
        Numbers, or SymPy expressions in the params (as `value_and_grad`).
    t_span : (float, float)
    params : array_like, shape (n_params,), or mapping, optional
    modes : sequence of str
        Sensitivity modes to check; ``"forward"`` is always checked too.
    tol : float
        Relative tolerance of a gradient entry against the differences, and
        the largest reference error estimate that still counts as reliable.
    safety : float
        Allowance ``max(tol, safety * est_rel)``: a gradient may differ from
        the reference by ``safety`` times the reference's own error estimate.
    rel_step : float
        Difference step ``h_k = rel_step * max(|theta_k|, 1)``.
    floor : float
        Entries below ``floor`` times the largest (``G``, in ``sigma`` units)
        are judged against ``floor * G / sigma_k`` instead of themselves.
    value_tol : float
        Relative tolerance of each mode's ``J`` against the SciPy value.
        1e-7 leaves a factor of 100 to 1000 over the error of solves at the
        default ``rtol`` 1e-10 (global errors grow to ~10 rtol over long
        spans), while any fault in a kernel that shifts ``J`` by more than
        1e-7 relative is caught.  At a looser ``rtol`` the gate is
        ``1000 * rtol``, the same factor.
    max_entries : int, optional
        Check a seeded random sample of this many params+y0 entries when
        there are more (each costs 6 solves); the report says so.
    max_control_entries : int
        Check every control grid value when there are at most this many;
        otherwise `control_directions` random projections.
    control_directions : int
        Number of seeded random unit directions ``d`` over the control grid
        values: ``grad_controls . d`` is compared with the difference of
        ``J`` along ``d``; a wrong entry changes that with probability 1.
    seed : int
        Seed of the entry sample and of the directions.
    rtol, atol, method, **solve_kw : passed to every solve
        Tight by default: a reference is only as good as its solves.
        ``controls=`` (a `Controls`) adds the control-gradient rows.

    Returns
    -------
    GradcheckReport

    Warns
    -----
    UserWarning
        When a reference is too inaccurate to judge at ``tol`` / ``value_tol``.
    """
    kw = dict(rtol=rtol, atol=atol, method=method, **solve_kw)
    p0 = model.param_vector(params)
    x0_raw, dy0dp = initial_state(model, y0, p0)
    x0 = model.state_vector(x0_raw)
    value_gate = max(value_tol, _VALUE_RTOL_FACTOR * rtol)
    report = GradcheckReport(tol=tol, value_tol=value_gate, safety=safety, rel_step=rel_step, rtol=rtol)
    results = _run_modes(model, cost, y0, t_span, p0, ("forward", *[m for m in modes if m != "forward"]),
                         kw, report)
    options = {k: v for k, v in solve_kw.items() if k not in ("controls", "max_steps")}
    prob = common.prepare(model, cost, x0, t_span, p0, method, rtol, atol, solve_kw.get("controls"),
                          solve_kw.get("max_steps", 100_000), options)
    J = _SciodeValue(prob, y0, dy0dp is not None, x0)
    V0 = np.zeros(0) if prob.controls is None else prob.controls.values.ravel()
    theta = np.concatenate([p0, x0, V0])
    report.value = J(theta)
    fd_ref = _FDReference(J, theta, rel_step, rtol * abs(report.value))
    ctx = _Judge(results, tol, safety, floor)
    _theta_rows(report, ctx, fd_ref, model, max_entries, seed)
    if prob.controls is not None:
        _control_rows(report, ctx, fd_ref, model, prob.controls, max_control_entries,
                      control_directions, seed)
    _value_rows(report, results, model, cost, y0 if dy0dp is not None else x0, t_span, p0,
                solve_kw.get("controls"), method, atol, value_gate)
    _warn_unreliable(report)
    return report


def _run_modes(model, cost, y0, t_span, p0, modes, kw, report) -> dict:
    """``value_and_grad`` of each mode; a mode that refuses the problem is an
    ``n/a`` row, one whose solve fails a ``FAIL`` row (never silently dropped)."""
    results = {}
    for mode in modes:
        try:
            results[mode] = value_and_grad(model, cost, y0, t_span, p0, sensitivity=mode, **kw)
        except ValueError as exc:  # the mode does not support this method / problem
            report.rows.append(_na_row(mode, "all", f"mode refused the problem: {exc}"))
        except SolverError as exc:
            report.rows.append(GradcheckRow(mode, "all", math.nan, math.nan, math.inf, 0.0, math.nan,
                                            math.nan, True, "FAIL", note=f"solve failed: {exc}"))
    return results


def _na_row(mode: str, quantity: str, why: str) -> GradcheckRow:
    nan = math.nan
    return GradcheckRow(mode, quantity, nan, nan, nan, nan, nan, nan, True, "n/a", note=why)


class _FDReference:
    """Richardson differences of ``J`` along unit vectors or directions."""

    def __init__(self, J, theta, rel_step, noise):
        self.J, self.theta, self.rel_step, self.noise = J, theta, rel_step, noise

    def along(self, d: np.ndarray, h: float) -> tuple[float, float]:
        """``(R_2, est)`` of the derivative of ``J`` along ``d`` with step ``h``."""
        r2, r1 = richardson(_line(self.J, self.theta, d), h)
        if r2 == 0.0 and r1 == 0.0:
            # Bitwise equal values at all six points: ``J`` does not depend
            # on this entry at all (no step sequence moved), so no noise.
            return 0.0, 0.0
        return r2, abs(r2 - r1) + _NOISE * self.noise / h

    def entry(self, k: int) -> tuple[float, float]:
        d = np.zeros(self.theta.size)
        d[k] = 1.0
        return self.along(d, self.rel_step * max(abs(self.theta[k]), 1.0))


class _Judge:
    """Turns references and each mode's numbers into rows."""

    def __init__(self, results: dict, tol: float, safety: float, floor: float):
        self.results, self.tol, self.safety, self.floor = results, tol, safety, floor

    def rows(self, quantities, refs, ests, sigma, values_of, na_label=""):
        """Rows for every mode with numbers (``values_of(res)`` -> array or None);
        a mode without them gets one ``n/a`` row labelled ``na_label``."""
        refs, ests, sigma = (np.asarray(a, dtype=float) for a in (refs, ests, sigma))
        scale = _scales(refs, sigma, self.floor)
        est_rel = ests / scale
        reliable = est_rel <= self.tol
        allow = np.maximum(self.tol, self.safety * est_rel)
        forward = self.results.get("forward")
        fwd = None if forward is None else values_of(forward)
        out = []
        for mode, res in self.results.items():
            g = values_of(res)
            if g is None:
                out.append(_na_row(mode, na_label, "not available in this mode (grad_controls is None)"))
                continue
            for k, q in enumerate(quantities):
                err = abs(g[k] - refs[k]) / scale[k] if np.isfinite(g[k]) else math.inf
                status = "FAIL" if not err <= allow[k] else ("pass" if reliable[k] else "unreliable")
                e_fwd = math.nan if fwd is None or mode == "forward" else abs(g[k] - fwd[k]) / scale[k]
                out.append(GradcheckRow(mode, q, float(g[k]), float(refs[k]), float(err), float(allow[k]),
                                        float(ests[k]), float(est_rel[k]), bool(reliable[k]), status,
                                        float(e_fwd)))
        return out


def _scales(refs: np.ndarray, sigma: np.ndarray, floor: float) -> np.ndarray:
    """``max(|ref_k|, floor * G / sigma_k)`` with ``G = max_j |ref_j| sigma_j``."""
    G = float(np.max(np.abs(refs) * sigma)) if refs.size else 0.0
    return np.maximum(np.maximum(np.abs(refs), floor * G / sigma), 1e-300)


def _theta_rows(report, judge, fd_ref, model, max_entries, seed) -> None:
    names = [f"dJ/d{p.name}" for p in model.params] + [f"dJ/d{s.name}(t0)" for s in model.states]
    n_theta = len(names)
    idx = np.arange(n_theta)
    if max_entries is not None and n_theta > max_entries:
        idx = np.sort(np.random.default_rng(seed).choice(n_theta, int(max_entries), replace=False))
        report.notes.append(f"checked a seeded random sample (seed={seed}) of {idx.size} of the {n_theta} "
                            f"params+y0 entries (max_entries={max_entries}): "
                            + ", ".join(names[k] for k in idx))
    pairs = [fd_ref.entry(int(k)) for k in idx]
    sigma = np.maximum(np.abs(fd_ref.theta[idx]), 1.0)

    def values_of(res):
        return np.concatenate([res.grad_params, res.grad_y0])[idx]

    report.rows += judge.rows([names[k] for k in idx], [r for r, _ in pairs], [e for _, e in pairs],
                              sigma, values_of)


def _control_rows(report, judge, fd_ref, model, controls, max_entries, n_dirs, seed) -> None:
    off = model.n_params + model.n_states
    n_w = controls.values.size
    if n_w <= max_entries:
        names = [f"dJ/d{model.controls[j].name}[{i}]" for i in range(controls.n_grid)
                 for j in range(controls.n_controls)]
        pairs = [fd_ref.entry(off + k) for k in range(n_w)]
        sigma = np.maximum(np.abs(controls.values.ravel()), 1.0)

        def values_of(res):
            return None if res.grad_controls is None else np.ravel(res.grad_controls)
    else:
        rng = np.random.default_rng(seed)
        dirs = rng.standard_normal((n_dirs, n_w))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        names = [f"dJ/dw . d{j}" for j in range(n_dirs)]
        h = fd_ref.rel_step * max(float(np.max(np.abs(controls.values))), 1.0)
        pairs = [fd_ref.along(np.concatenate([np.zeros(off), d]), h) for d in dirs]
        sigma = np.ones(n_dirs)
        report.notes.append(f"control gradients checked along {n_dirs} seeded random unit directions "
                            f"d0..d{n_dirs - 1} (seed={seed}) over the {n_w} grid values "
                            f"(more than max_control_entries={max_entries})")

        def values_of(res):
            return None if res.grad_controls is None else dirs @ np.ravel(res.grad_controls)
    report.rows += judge.rows(names, [r for r, _ in pairs], [e for _, e in pairs], sigma, values_of,
                              na_label="dJ/dw")


def _value_rows(report, results, model, cost, y0, t_span, p0, controls, method, atol, value_tol) -> None:
    why = _value_unavailable(method)
    ref = est = math.nan
    if why is None:
        stiff = method.lower() in STIFF_METHODS
        # The reference must be well below the solves it judges; 1e-14 unless
        # the caller's own atol is tighter (states of tiny magnitude).
        ref_atol = min(1e-14, 1e-2 * float(np.min(atol)))
        try:
            ref = reference_value(model, cost, y0, t_span, p0, controls, stiff, 1e-12, ref_atol)
            est = abs(ref - reference_value(model, cost, y0, t_span, p0, controls, stiff, 1e-10,
                                            100 * ref_atol))
        except Exception as exc:  # noqa: BLE001 - any failure makes the row visible, never fatal
            why = f"the SciPy reference could not be evaluated: {type(exc).__name__}: {exc}"
    report.value_reference = ref
    for mode, res in results.items():
        if why is not None:
            report.rows.append(_na_row(mode, "J", why))
            continue
        scale = max(abs(ref), 1e-300)
        err = abs(res.value - ref) / scale if np.isfinite(res.value) else math.inf
        reliable = est / scale <= value_tol
        status = "FAIL" if not err <= value_tol else ("pass" if reliable else "unreliable")
        report.rows.append(GradcheckRow(mode, "J", float(res.value), ref, float(err), value_tol, est,
                                        est / scale, bool(reliable), status))


def _value_unavailable(method: str) -> str | None:
    tab = EXPLICIT_TABLEAUS.get(str(method).lower())
    if tab is not None and not tab.adaptive:
        return (f"method {method!r} is fixed-step: its J carries the scheme's truncation error, "
                "which an accurate reference would report as a fault")
    return None


def _warn_unreliable(report: GradcheckReport) -> None:
    bad = sorted({r.quantity for r in report.failures if r.status == "unreliable"})
    if bad:
        warnings.warn(f"gradcheck: the reference is too inaccurate to judge {', '.join(bad)} at "
                      f"tol={report.tol:g}; {_advice(report)}", UserWarning, stacklevel=3)
