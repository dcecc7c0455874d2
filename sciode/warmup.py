"""Compile the solver loops ahead of the first call: ``sciode precompile``.

sciode's stepping loops are compiled by Numba once per installation and
cached on disk (``SCIODE_CACHE_DIR``); a model's own kernels are small and
compile in a fraction of a second.  The first call of a method family and
sensitivity mode pays for its loops, about a minute on two cores for an
adjoint gradient.  ``precompile`` pays for all of them at once, in parallel
processes, with a progress display, so that no later call waits: ``make
setup`` runs it, and so does anyone who installs sciode on a cluster image.

Everything goes through the public API (``solve``, ``value_and_grad``,
``solve_ensemble``, ``value_and_grad_ensemble``) on a two-state model, so
what is compiled is exactly what a user's call would compile.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from unittest import mock

#: One unit of work per compiled loop: (name, ((method, sensitivity modes), ...),
#: whether it runs the ensemble entry points).  Each unit runs in one process,
#: in order, because its calls share compiled helpers: the stiff methods share
#: one loop (``cpu.implicit``), so they are one unit; as units of their own in
#: parallel processes, each compiled that loop again.
UNITS = (
    ("explicit", (("dopri5", ("adjoint", "checkpoint", "forward", "discrete", "backsolve")),), False),
    ("stiff", (("kvaerno5", ("adjoint", "checkpoint", "forward")), ("rodas4", ("adjoint", "checkpoint")),
               ("bdf", ("adjoint", "checkpoint", "forward"))), False),
    ("ensembles", (), True),
)


def _problem():
    import numpy as np
    import sympy as sp

    from .cost import Cost, LeastSquares
    from .model import Model

    x, y, a, b = sp.symbols("x y a b")
    model = Model([x, y], [-a * x + b * y, a * x - b * y - y ** 3], [a, b], name="sciode_precompile")
    t_obs = np.linspace(0.25, 1.0, 4)
    cost = Cost(terminal=x ** 2, running=y ** 2 / 10,
                data=LeastSquares(t_obs, np.ones((4, 2))))
    return model, cost, np.array([1.0, 0.5]), (0.0, 1.0), np.array([2.0, 1.0]), t_obs


def _quiet():
    """No per-loop compile notice (``cpu.drivers``): precompile has its own display."""
    return mock.patch.dict(os.environ, {"SCIODE_QUIET": "1"})


def _run_unit(unit: tuple) -> tuple[str, float]:
    """Compile one unit's loops (in a worker process); returns (name, seconds)."""
    import warnings

    import numpy as np

    from .adjoint import value_and_grad
    from .api import solve
    from .ensemble import solve_ensemble, value_and_grad_ensemble

    name, methods, ensembles = unit
    model, cost, y0, span, p, t_obs = _problem()
    start = time.perf_counter()
    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")  # a tiny problem: tolerance advice is not the point
        if ensembles:
            P = np.tile(p, (2, 1))
            for m in ("dopri5", "rodas4", "kvaerno5"):
                solve_ensemble(model, y0, span, P, t_eval=t_obs, method=m, threads=1)
            value_and_grad_ensemble(model, cost, y0, span, P, method="dopri5", threads=1)
        for method, modes in methods:
            solve(model, y0, span, p, t_eval=t_obs, method=method)
            for mode in modes:
                value_and_grad(model, cost, y0, span, p, method=method, sensitivity=mode)
    return name, time.perf_counter() - start


def precompile(jobs: int | None = None, progress: bool = True, stream=None) -> dict:
    """Compile every family's solver loops into the on-disk cache.

    Parameters
    ----------
    jobs : number of worker processes (default: the CPU count, at most the
        number of units).
    progress : print one line per finished unit, and the total.
    stream : where to print (default ``sys.stderr``).

    Returns
    -------
    dict
        Unit name -> seconds its worker spent (compiling, or loading from
        the cache when it is already there: then each takes well under a second).
    """
    stream = sys.stderr if stream is None else stream
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(UNITS)))
    say = (lambda msg: print(msg, file=stream, flush=True)) if progress else (lambda msg: None)
    say(f"sciode: compiling the solver loops, once per installation ({len(UNITS)} units, "
        f"{jobs} process{'es' if jobs > 1 else ''}; a few minutes on two cores)")
    start, out = time.perf_counter(), {}
    if jobs == 1:
        for k, unit in enumerate(UNITS, 1):
            name, sec = _run_unit(unit)
            out[name] = sec
            say(f"  [{k}/{len(UNITS)}] {name:<11} {sec:6.1f} s")
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_run_unit, unit) for unit in UNITS]
            for k, fut in enumerate(as_completed(futures), 1):
                name, sec = fut.result()
                out[name] = sec
                say(f"  [{k}/{len(UNITS)}] {name:<11} {sec:6.1f} s   ({time.perf_counter() - start:.0f} s elapsed)")
    say(f"sciode: solver loops ready in {time.perf_counter() - start:.1f} s")
    return out
