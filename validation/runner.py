"""Run the catalog: every mode at every tolerance against each case's reference."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import sympy as sp

import sciode
from sciode.gradcheck import richardson_differences

from .cases import Case, Problem


@dataclass
class Row:
    case: str
    mode: str
    tol: float
    error: float
    passed: bool
    note: str = ""
    seconds: float = 0.0


def rel_error(g, ref) -> float:
    """``max |g - ref| / max |ref|`` (a norm-wise relative error)."""
    g, ref = np.asarray(g, float), np.asarray(ref, float)
    return float(np.max(np.abs(g - ref)) / max(np.max(np.abs(ref)), 1e-300))


STIFF = ("rodas4", "kvaerno5")


def _grad(prob: Problem, mode: str, tol: float, **kw):
    method = kw.pop("method", prob.method)
    if mode == "forward" and method in STIFF:
        method = "kvaerno5"  # forward sensitivities need a Newton-based stiff method
    return sciode.value_and_grad(prob.model, prob.cost, prob.y0, prob.t_span, prob.params,
                                 sensitivity=mode, method=method, rtol=tol,
                                 atol=tol * 1e-2, **prob.solve_kw, **kw)


def reference(case: Case, prob: Problem):
    """``(value, gradient over [params, y0], note)`` from the case's reference."""
    if case.reference is not None:
        value, gp, gy = case.reference(prob)
        return value, np.concatenate([gp, gy]), "analytic"
    res = _grad(prob, "forward", case.reference_tol)
    ref = np.concatenate([res.grad_params, res.grad_y0])
    y0 = np.asarray(prob.y0, dtype=float)
    n_p = prob.params.size

    def J(theta):
        return sciode.value_and_grad(prob.model, prob.cost, theta[n_p:], prob.t_span, theta[:n_p],
                                     sensitivity="forward", rtol=case.reference_tol,
                                     atol=case.reference_tol * 1e-2,
                                     method="kvaerno5" if prob.method in STIFF else prob.method,
                                     **prob.solve_kw).value

    theta = np.concatenate([prob.params, y0])
    if case.fd_params_only:  # y0 sits on the boundary of the domain (concentrations at 0)
        fd, _ = richardson_differences(lambda th: J(np.concatenate([th, y0])), prob.params, 1e-3)
        agree = rel_error(ref[:n_p], fd)
    else:
        fd, _ = richardson_differences(J, theta, 1e-3)
        agree = rel_error(ref, fd)
    if agree > 1e-5:
        raise AssertionError(f"{case.name}: forward sensitivities and finite differences disagree "
                             f"({agree:.2e}); the reference is not trustworthy")
    return res.value, ref, f"sensitivities (fd agreement {agree:.1e})"


def slope(tols, errors) -> float:
    """Least-squares slope of log(error) against log(tolerance)."""
    e = np.maximum(np.asarray(errors), 1e-16)
    return float(np.polyfit(np.log10(tols), np.log10(e), 1)[0]) if len(tols) > 1 else float("nan")


def run_symbolic(case: Case) -> list:
    rows = []
    for label, derived, hand in case.symbolic_check():
        diff = sp.simplify(sp.Matrix([derived]) - sp.Matrix([hand])) if not isinstance(derived, sp.MatrixBase) \
            else sp.simplify(derived - hand)
        ok = all(e == 0 for e in (diff if isinstance(diff, sp.MatrixBase) else [diff]))
        rows.append(Row(case.name, f"symbolic {label}", 0.0, 0.0 if ok else 1.0, ok, str(derived)))
    return rows


def run_discrete_scheme(case: Case, prob: Problem) -> Row:
    """Discrete mode vs central differences of the same rk4 scheme (same steps)."""
    dt = (prob.t_span[1] - prob.t_span[0]) / 50
    kw = dict(method="rk4", dt=dt)
    t0 = time.perf_counter()
    res = _grad(prob, "discrete", 1e-6, **dict(kw))
    n_p = prob.params.size

    def J(theta):
        p = dataclasses.replace(prob, params=theta[:n_p], y0=list(theta[n_p:]))
        return _grad(p, "discrete", 1e-6, **dict(kw)).value

    y0 = np.asarray(prob.y0, dtype=float)
    fd, _ = richardson_differences(J, np.concatenate([prob.params, y0]), 1e-3)
    err = rel_error(np.concatenate([res.grad_params, res.grad_y0]), fd)
    return Row(case.name, "discrete vs fd(rk4 scheme)", dt, err, err < 1e-7, "same step sequence",
               time.perf_counter() - t0)


def run_controls(case: Case, prob: Problem) -> Row:
    """Adjoint control gradient vs central differences over the control grid."""
    ctrl = prob.solve_kw["controls"]
    res = _grad(prob, "adjoint", 1e-10)
    fd = np.zeros_like(ctrl.values)
    for idx in np.ndindex(ctrl.values.shape):
        vals = []
        for sgn in (1, -1):
            V = ctrl.values.copy()
            V[idx] += sgn * 1e-4
            p = dataclasses.replace(prob, solve_kw={"controls": sciode.Controls(ctrl.t, V)})
            vals.append(_grad(p, "forward", 1e-11).value)
        fd[idx] = (vals[0] - vals[1]) / 2e-4
    err = rel_error(res.grad_controls, fd)
    return Row(case.name, "adjoint grad_controls vs fd", 1e-10, err, err < 1e-5, "h=1e-4 central")


def run_case(case: Case, progress=None) -> list:
    """All rows of one case."""
    rows = []
    if case.symbolic_check is not None:
        rows += run_symbolic(case)
    prob = case.build()
    _, ref, note = reference(case, prob)
    for mode in case.modes:
        errors = []
        for tol in case.tolerances:
            t0 = time.perf_counter()
            try:
                res = _grad(prob, mode, tol)
                err = rel_error(np.concatenate([res.grad_params, res.grad_y0]), ref)
                msg = note
            except sciode.SciodeError as exc:
                err, msg = float("inf"), str(exc)
            errors.append(err)
            rows.append(Row(case.name, mode, tol, err, True, msg, time.perf_counter() - t0))
            if progress is not None:
                progress.update(1)
        s = slope(case.tolerances, errors)
        ok = errors[-1] < case.grad_tol and (errors[-1] < 1e-9 or errors[-1] < errors[0])
        for r in rows[-len(errors):]:
            r.passed = ok
            r.note += f"; slope {s:.2f}"
    if prob.method not in STIFF and all(isinstance(v, (int, float)) for v in prob.y0):
        # (y0(p) cases: the chain rule is covered above; stiff methods have no discrete mode)
        rows.append(run_discrete_scheme(case, prob))
    if "controls" in prob.solve_kw:
        rows.append(run_controls(case, prob))
    return rows
