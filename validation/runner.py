"""Run the catalog: every mode at every tolerance against each case's independent reference.

A row is one (case, mode, tolerance): the value's relative error and the
norm-wise relative error of every gradient block (params, y0, controls)
against the reference from ``validation.independent``, which never touches
sciode.  A mode passes a case when, at the tightest tolerance, every block
and the value are within the case's gates and the error has come down from
the loosest tolerance (or is at round-off already).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

import sciode

from .cases import Case, Problem
from .independent import reference as independent
from .independent.engine import rel_error, rk4_complex_step

STIFF = ("rodas4", "rodas5", "kvaerno5", "bdf")
#: an error this small has converged: round-off, not a tolerance effect
CONVERGED = 1e-10


@dataclass
class Row:
    case: str
    mode: str
    tol: float
    error: float  # worst gradient block's relative error
    passed: bool
    note: str = ""
    seconds: float = 0.0
    value_error: float = float("nan")
    blocks: dict = field(default_factory=dict)  # block -> relative error
    reference: str = ""
    gate: float = float("nan")


@functools.cache
def reference_of(key: str) -> independent.Reference:
    """The independent reference of a problem (computed once per process)."""
    return independent.compute(key)


def _grad(prob: Problem, mode: str, tol: float, **kw):
    method = kw.pop("method", prob.method)
    if mode == "forward" and method in STIFF:
        method = "kvaerno5"  # forward sensitivities need a Newton-based stiff method
    return sciode.value_and_grad(prob.model, prob.cost, prob.y0, prob.t_span, prob.params,
                                 sensitivity=mode, method=method, rtol=tol,
                                 atol=tol * 1e-2, **prob.solve_kw, **kw)


def block_errors(res, ref) -> dict:
    """Relative error of each gradient block of ``res`` (a GradResult) against ``ref``."""
    got = {"params": res.grad_params, "y0": res.grad_y0, "controls": res.grad_controls}
    out = {}
    for name, block in ref.blocks().items():
        out[name] = float("nan") if got[name] is None else rel_error(got[name], block)
    return out


def slope(tols, errors) -> float:
    """Least-squares slope of log(error) against log(tolerance)."""
    e = np.maximum(np.asarray(errors, dtype=float), 1e-16)
    ok = np.isfinite(e)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log10(np.asarray(tols)[ok]), np.log10(e[ok]), 1)[0])


def run_symbolic(case: Case) -> list:
    rows = []
    for label, derived, hand in case.symbolic_check():
        diff = sp.simplify(sp.Matrix([derived]) - sp.Matrix([hand])) if not isinstance(derived, sp.MatrixBase) \
            else sp.simplify(derived - hand)
        ok = all(e == 0 for e in (diff if isinstance(diff, sp.MatrixBase) else [diff]))
        rows.append(Row(case.name, f"symbolic {label}", 0.0, 0.0 if ok else 1.0, ok, str(derived),
                        reference="derivation by hand"))
    return rows


def _rk4_steps(spec, candidates=(50, 100, 200, 400)):
    """A step count whose uniform grid holds every observation and control grid time, or None."""
    t0, t1 = spec.t_span
    times = [np.asarray(d.t_obs, float) for d in spec.objective.data]
    if spec.controls is not None:
        times.append(np.asarray(spec.controls[0], float))
    times = np.concatenate(times or [np.zeros(0)])
    for n in candidates:
        k = (times - t0) / ((t1 - t0) / n)
        if np.all(np.abs(k - np.round(k)) < 1e-9):
            return n
    return None


def run_discrete_scheme(case: Case, prob: Problem, ref) -> Row | None:
    """Discrete mode on a fixed-step RK4 run vs the complex-step derivative of a
    hand-written RK4 scheme on the same grid: the exact gradient of the same
    discrete solution, so the gate is round-off (1e-10)."""
    n_steps = _rk4_steps(ref.spec)
    if n_steps is None:
        return None
    t0 = time.perf_counter()
    dt = (prob.t_span[1] - prob.t_span[0]) / n_steps
    res = _grad(prob, "discrete", 1e-6, method="rk4", dt=dt)
    scheme = rk4_complex_step(ref.spec, n_steps)
    blocks = block_errors(res, scheme)
    err = max((v for v in blocks.values() if np.isfinite(v)), default=float("inf"))
    verr = abs(res.value - scheme.value) / max(abs(scheme.value), 1e-300)
    ok = bool(err < 1e-10 and verr < 1e-12)
    missing = [k for k, v in blocks.items() if not np.isfinite(v)]
    note = f"{n_steps} steps, same grid" + (f"; {', '.join(missing)} not returned by this mode" if missing else "")
    return Row(case.name, "discrete vs RK4 scheme", dt, err, ok, note,
               time.perf_counter() - t0, verr, blocks, scheme.route, 1e-10)


def run_case(case: Case, progress=None) -> list:
    """All rows of one case."""
    rows = []
    if case.symbolic_check is not None:
        rows += run_symbolic(case)
    prob = case.problem()
    ref = reference_of(case.reference)
    refg = ref.gradient
    for mode in case.modes:
        gate, why = case.mode_gates.get(mode, (case.grad_tol, ""))
        mode_rows = []
        for tol in case.tolerances:
            t0 = time.perf_counter()
            try:
                res = _grad(prob, mode, tol)
                blocks = block_errors(res, refg)
                err = max((v for v in blocks.values() if np.isfinite(v)), default=float("inf"))
                verr = abs(res.value - refg.value) / max(abs(refg.value), 1e-300)
                missing = [k for k, v in blocks.items() if not np.isfinite(v)]
                msg = "" if not missing else f"{', '.join(missing)} not returned by this mode"
            except sciode.SciodeError as exc:
                blocks, err, verr, msg = {}, float("inf"), float("inf"), str(exc)
            mode_rows.append(Row(case.name, mode, tol, err, True, msg, time.perf_counter() - t0, verr, blocks,
                                 ref.describe(), gate))
            if progress is not None:
                progress.update(1)
        errors = [r.error for r in mode_rows]
        tight = mode_rows[-1]
        s = slope(case.tolerances, errors)
        ok = bool(tight.error < gate and tight.value_error < case.value_tol
                  and (tight.error < CONVERGED or tight.error < mode_rows[0].error))
        for r in mode_rows:
            r.passed = ok
            r.note = "; ".join(x for x in (r.note, f"slope {s:.2f}", why and f"gate {gate:g}: {why}") if x)
        rows += mode_rows
    if "discrete" in case.modes and prob.method not in STIFF:
        row = run_discrete_scheme(case, prob, ref)
        if row is not None:
            rows.append(row)
    return rows


#: tolerance of the stiff test-set solves and their gate: the error may be a small
#: multiple of the tolerance (global error accumulates over thousands of stiff
#: steps; measured at most 2.2 x rtol, see tests/test_stiff_literature.py)
LITERATURE_RTOL = 1e-8
LITERATURE_GATE = 20 * LITERATURE_RTOL
#: per (problem, method) exceptions, each measured: the multistep BDF on OREGO's
#: relaxation spikes carries ~1.4e2 rtol (SciPy's BDF, the same algorithm: 1.38e2);
#: see tests/test_stiff_literature.py
LITERATURE_GATES = {("orego", "bdf"): 300 * LITERATURE_RTOL}


def run_literature_set(progress=None) -> list:
    """The Hairer-Wanner / Bari test-set problems (ROBER, VDPOL, HIRES, OREGO) solved by
    every stiff method, every component against the published reference solution."""
    from .independent.stiff_set import STIFF_SET
    from .stiff_literature import STIFF_METHODS, run_literature

    rows = []
    for problem in STIFF_SET:
        for method in STIFF_METHODS:
            out = run_literature(problem.name, method, LITERATURE_RTOL)
            err = out["max_error"] if out["success"] else float("inf")
            note = (f"{out['steps']} steps, all {out['errors'].size} components" if out["success"]
                    else out["message"])
            gate = LITERATURE_GATES.get((problem.name, method), LITERATURE_GATE)
            rows.append(Row(f"testset_{problem.name}", f"solve {method}", LITERATURE_RTOL, err,
                            bool(err < gate), note, out["seconds"],
                            reference="published solution (Mazzia & Magherini, IVP test set 2.4)",
                            gate=gate))
            if progress is not None:
                progress.update(1)
    return rows
