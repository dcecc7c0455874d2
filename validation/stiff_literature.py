"""sciode's stiff methods against the published solutions of four IVP test-set problems.

The models below are declared with SymPy from the published equations, in
the rate-constant form of the test set's problem descriptions, and written
separately from the NumPy transcription in
``validation/independent/stiff_set.py``. Only the published *data* (initial
state, end time, reference solution and the per-component floor of the error
measure) are taken from there, so each digit is typed once.

Source: F. Mazzia and C. Magherini, "Test Set for Initial Value Problem
Solvers", release 2.4, Univ. Bari, 2008, http://www.dm.uniba.it/~testset
(``rober.f``, ``vdpol.f``, ``hires.f``, ``orego.f``); the problems are among
those of Hairer & Wanner, "Solving ODEs II", 2nd ed., Springer 1996,
Sec. IV.10. See ``stiff_set.py`` for how the digits were verified.

Accuracy is the mixed error ``|y - ref| / (floor + |ref|)`` per component,
where ``floor`` is the problem's (``LiteratureProblem.floor``, each with its
reason there): a relative error for every component that is not ~0, so that
ROBER's y1 ~ 2e-8 and y2 ~ 8e-14 at t = 1e11 are judged against themselves
rather than against y3 ~ 1. By default a solve uses ``atol = rtol * floor``,
which asks the error control for exactly this measure.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import sympy as sp

import sciode

from .independent.stiff_set import BY_NAME

STIFF_METHODS = ("rodas4", "rodas5", "kvaerno5", "bdf")


def rober() -> tuple[sciode.Model, list[float]]:
    """Robertson's reactions A -> B (k1), 2B -> B + C (k2), B + C -> A + C (k3)."""
    a, b, c = sp.symbols("a b c")
    k1, k2, k3 = sp.symbols("k1 k2 k3")
    r1, r2, r3 = k1 * a, k2 * b**2, k3 * b * c
    model = sciode.Model([a, b, c], [-r1 + r3, r1 - r2 - r3, r2], [k1, k2, k3], name="rober")
    return model, [0.04, 3e7, 1e4]


def vdpol() -> tuple[sciode.Model, list[float]]:
    """Van der Pol in the test set's scaling: ``x' = v``, ``eps v' = (1 - x^2) v - x``."""
    x, v, eps = sp.symbols("x v epsilon")
    model = sciode.Model([x, v], [v, ((1 - x**2) * v - x) / eps], [eps], name="vdpol")
    return model, [1e-6]


def hires() -> tuple[sciode.Model, list[float]]:
    """HIRES with the test set's nine rate constants ``k1..k9`` and source ``oks``."""
    y = sp.symbols("y1:9")
    k = sp.symbols("k1:10")
    oks = sp.Symbol("oks")
    k1, k2, k3, k4, k5, k6, k7, k8, k9 = k
    y1, y2, y3, y4, y5, y6, y7, y8 = y
    binding = k7 * y6 * y8
    rhs = [
        -k1 * y1 + k2 * y2 + k6 * y3 + oks,
        k1 * y1 - (k2 + k3) * y2,
        -(k6 + k1) * y3 + k2 * y4 + k5 * y5,
        k3 * y2 + k1 * y3 - (k4 + k2) * y4,
        -(k5 + k1) * y5 + k2 * (y6 + y7),
        -binding + k8 * y4 + k1 * y5 - k2 * y6 + k8 * y7,
        binding - (k2 + k8 + k9) * y7,
        -binding + (k2 + k8 + k9) * y7,
    ]
    model = sciode.Model(list(y), rhs, [*k, oks], name="hires")
    return model, [1.71, 0.43, 8.32, 0.69, 0.035, 8.32, 280.0, 0.69, 0.69, 0.0007]


def orego() -> tuple[sciode.Model, list[float]]:
    """The Oregonator ``s (y2 + y1 (1 - q y1 - y2))``, ``(y3 - (1 + y1) y2) / s``, ``w (y1 - y3)``."""
    y1, y2, y3 = sp.symbols("y1 y2 y3")
    s, q, w = sp.symbols("s q w")
    rhs = [s * (y2 + y1 * (1 - q * y1 - y2)), (y3 - (1 + y1) * y2) / s, w * (y1 - y3)]
    model = sciode.Model([y1, y2, y3], rhs, [s, q, w], name="orego")
    return model, [77.27, 8.375e-6, 0.161]


BUILDERS = {"rober": rober, "vdpol": vdpol, "hires": hires, "orego": orego}


@functools.cache
def literature_model(name: str) -> tuple[sciode.Model, tuple[float, ...]]:
    """The ``(model, params)`` of a problem, built once per process."""
    if name not in BUILDERS:
        raise ValueError(f"`problem_name` must be one of {sorted(BUILDERS)}, got {name!r}")
    model, params = BUILDERS[name]()
    return model, tuple(params)


def run_literature(problem_name: str, method: str, rtol: float, atol=None) -> dict:
    """Solve a test-set problem to its end time and compare with the published solution.

    Parameters
    ----------
    problem_name : one of ``"rober"``, ``"vdpol"``, ``"hires"``, ``"orego"``
    method : a sciode method name, e.g. ``"rodas4"`` or ``"kvaerno5"``
    rtol : float
    atol : float or (n,), optional; default ``rtol * floor`` (see module docstring)

    Returns
    -------
    dict with ``y`` (n,) final state, ``reference`` (n,), ``errors`` (n,) mixed
    errors, ``max_error``, ``steps`` (accepted), ``stats`` (sciode's counters),
    ``success``, ``message``, ``seconds`` (wall time of the solve; the first
    call in a process includes compiling the model's kernels).
    """
    model, params = literature_model(problem_name)
    problem = BY_NAME[problem_name]
    if atol is None:
        atol = rtol * problem.floor
    start = time.perf_counter()
    sol = sciode.solve(model, problem.y0, (0.0, problem.t_end), list(params), method=method,
                       rtol=rtol, atol=atol, t_eval=[problem.t_end])
    seconds = time.perf_counter() - start
    y = sol.y[-1] if sol.success else np.full(problem.reference.size, np.nan)
    errors = problem.mixed_error(y)
    return {"problem": problem_name, "method": method, "rtol": rtol, "y": y,
            "reference": problem.reference, "errors": errors, "max_error": float(np.max(errors)),
            "steps": sol.stats["naccepted"], "stats": dict(sol.stats), "success": sol.success,
            "message": sol.message, "seconds": seconds}
