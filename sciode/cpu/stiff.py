"""Stiff methods: compiled entry points, Python runners and their registration.

``run_rodas4`` / ``run_rodas5`` / ``run_kvaerno5`` / ``run_bdf`` have the runner signature ``sciode.solve``
expects of ``solvers.STIFF_METHODS`` entries and return a ``RawResult``.  The
linear-algebra mode (dense, or banded after a reverse Cuthill--McKee
permutation) is chosen once per model from the Jacobian's sparsity pattern
(``linalg.linear_mode``) and memoised on the kernel set's digest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..methods.bdf_coefficients import BDF as BDF_COEFFICIENTS
from ..methods.stiff_tableaus import KVAERNO5, RODAS4, RODAS5, RosenbrockTableau
from . import solvers
from .implicit import BDF, ESDIRK, ROSENBROCK, ImplicitMethod, implicit_integrate
from .integrate import register_method
from .linalg import LinearMode, linear_mode
from .rosenbrock import rodas_P


register_method(ImplicitMethod, implicit_integrate)


def _copy(a):
    return np.array(a, dtype=np.float64, order="C", copy=True)


def _rosenbrock_arrays(tab: RosenbrockTableau, sweep_on_steps: bool = False) -> tuple:
    """The fields of ``ImplicitMethod`` before the linear-algebra mode."""
    return (*(_copy(a) for a in (tab.A, tab.C, tab.alpha, tab.gamma_sum, tab.m, tab.e)),
            rodas_P(tab.m, tab.H), float(tab.gamma), float(tab.error_order + 1), ROSENBROCK,
            bool(sweep_on_steps), 0, False)


_RODAS4 = _rosenbrock_arrays(RODAS4)
# RODAS5's embedded estimate is blind to t-dependence (``ImplicitMethod``):
# stiff Van der Pol's adjoint gradient was off 1.3e-4 at rtol 1e-8 (7.8e-4 at
# 1e-6) with the sweep crossing forward steps, 1.1e-7 (2.3e-6) landing on them
_RODAS5 = _rosenbrock_arrays(RODAS5, sweep_on_steps=True)
# an ESDIRK has no C or gamma_sum: empty arrays of the same types
_KVAERNO5 = (_copy(KVAERNO5.A), np.zeros((0, 0)), _copy(KVAERNO5.c), np.zeros(0), _copy(KVAERNO5.b),
             _copy(KVAERNO5.e), _copy(KVAERNO5.P), float(KVAERNO5.gamma),
             float(KVAERNO5.error_order + 1), ESDIRK, False, 0, False)


def _bdf_arrays(max_order: int = 5, fixed_order: bool = False) -> tuple:
    """The fields of ``ImplicitMethod`` before the linear-algebra mode, for the
    NDFs (``implicit.ImplicitMethod`` says which field holds which coefficient)."""
    c = BDF_COEFFICIENTS
    return (_copy(c.W), np.zeros((0, 0)), _copy(c.alpha), np.zeros(0), _copy(c.gamma),
            _copy(c.error_const), _copy(c.P), 1.0, 2.0, BDF, False, int(max_order), bool(fixed_order))


_BDF = _bdf_arrays()


@dataclass(frozen=True)
class StiffMethod:
    """A stiff method by name: ``build(mode)`` gives the loop's method tuple.

    ``exact_jacobian``: Rosenbrock methods lose order with an approximate
    Jacobian, Newton-based ESDIRKs only converge more slowly.
    Which sensitivity modes a method supports is ``sciode.methods.registry``'s table.
    """

    name: str
    build: object
    exact_jacobian: bool


RODAS4_METHOD = StiffMethod("rodas4", lambda mode: ImplicitMethod(*_RODAS4, mode.typed()), True)
RODAS5_METHOD = StiffMethod("rodas5", lambda mode: ImplicitMethod(*_RODAS5, mode.typed()), True)
KVAERNO5_METHOD = StiffMethod("kvaerno5", lambda mode: ImplicitMethod(*_KVAERNO5, mode.typed()), False)
BDF_METHOD = StiffMethod("bdf", lambda mode: ImplicitMethod(*_BDF, mode.typed()), False)


_MODES: dict = {}


def model_linear_mode(mk, force: str = "auto") -> LinearMode:
    """The linear-algebra mode of the model kernels ``mk`` (memoised per model)."""
    key = (mk.digest, force)
    if key not in _MODES:
        rows, cols = mk.jac_pattern
        _MODES[key] = linear_mode(mk.n_states, rows, cols, force)
    return _MODES[key]


def run_rodas4(mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, max_steps, dense,
               *, dt=0.0, linalg="auto") -> solvers.RawResult:
    """Integrate the model ``mk`` with RODAS4.

    ``dt > 0`` takes fixed steps (no error control; for convergence studies);
    ``linalg`` forces ``'dense'`` or ``'banded'`` storage instead of ``'auto'``.
    """
    method = RODAS4_METHOD.build(model_linear_mode(mk, linalg))
    return solvers.run(mk, method, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, dt,
                       max_steps, dense)


def run_rodas5(mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, max_steps, dense,
               *, dt=0.0, linalg="auto") -> solvers.RawResult:
    """Integrate the model ``mk`` with RODAS5 (Di Marzo's 5(4) method); options as ``run_rodas4``."""
    method = RODAS5_METHOD.build(model_linear_mode(mk, linalg))
    return solvers.run(mk, method, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, dt,
                       max_steps, dense)


def run_kvaerno5(mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, max_steps, dense,
                 *, dt=0.0, linalg="auto") -> solvers.RawResult:
    """Integrate the model ``mk`` with Kvaerno5 (ESDIRK 5(4)); options as ``run_rodas4``."""
    method = KVAERNO5_METHOD.build(model_linear_mode(mk, linalg))
    return solvers.run(mk, method, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, dt,
                       max_steps, dense)


def run_bdf(mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, max_steps, dense,
            *, dt=0.0, linalg="auto", max_order=5, fixed_order=False) -> solvers.RawResult:
    """Integrate the model ``mk`` with the variable-order BDF (NDF form, orders 1-5).

    Options as ``run_rodas4``; ``max_order`` caps the order, and
    ``fixed_order=True`` (convergence studies) raises the order to
    ``max_order`` and keeps it there, adapting only the step.
    """
    method = ImplicitMethod(*_bdf_arrays(max_order, fixed_order), model_linear_mode(mk, linalg).typed())
    return solvers.run(mk, method, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, dt,
                       max_steps, dense)


solvers.STIFF_METHODS["rodas4"] = RODAS4_METHOD
solvers.STIFF_METHODS["rodas5"] = RODAS5_METHOD
solvers.STIFF_METHODS["kvaerno5"] = KVAERNO5_METHOD
solvers.STIFF_METHODS["bdf"] = BDF_METHOD
