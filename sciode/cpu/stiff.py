"""Stiff methods: compiled entry points, Python runners and their registration.

``run_rodas4`` / ``run_kvaerno5`` have the runner signature ``sciode.solve``
expects of ``solvers.STIFF_METHODS`` entries and return a ``RawResult``.  The
linear-algebra mode (dense, or banded after a reverse Cuthill--McKee
permutation) is chosen once per model from the Jacobian's sparsity pattern
(``linalg.linear_mode``) and memoised on the kernel set's digest.
"""

from __future__ import annotations

import numpy as np
from numba import types

from .. import abi
from ..methods.stiff_tableaus import KVAERNO5, RODAS4
from . import drivers, solvers
from .drivers import A1, A2, B1, F8, I8
from .linalg import LinearMode, linear_mode
from .rosenbrock import rodas_P, rosenbrock_integrate
from .sdirk import sdirk_integrate
from .systems import ModelSystem

IDX = types.int64[::1]
#: the linear-algebra mode arguments every stiff loop takes last.
LIN_ARGS = (B1, I8, I8, IDX, IDX, IDX, IDX)
MODEL_SYS_ARGS = (abi.VEC, abi.MAT, abi.VEC, A1, A1, A2, A1)
#: after the system and ``z0``: t0, t1, A, C, alpha, gamma_sum, m, e, P, gamma, rtol, atol,
#: h_init, hmax, dt, max_steps, t_eval, store_dense.
RODAS_ARGS = (F8, F8, A2, A2, A1, A1, A1, A1, A2, F8, F8, A1, F8, F8, F8, I8, A1, B1) + LIN_ARGS
#: after the system and ``z0``: t0, t1, A, b, c, e, P, gamma, q, rtol, atol, h_init, hmax,
#: dt, max_steps, t_eval, store_dense.
DIRK_ARGS = (F8, F8, A2, A1, A1, A1, A2, F8, F8, F8, A1, F8, F8, F8, I8, A1, B1) + LIN_ARGS


def _forward_rodas(rhs, jac_y, dfdt, p, tw, W, wbuf, z0, t0, t1, A, C, alpha, gamma_sum, m, e,
                   P, gamma, rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense,
                   banded, kl, ku, perm, perm_inv, jrows, jcols):
    sys = ModelSystem(rhs, jac_y, dfdt, p, tw, W, wbuf)
    return rosenbrock_integrate(sys, z0, t0, t1, A, C, alpha, gamma_sum, m, e, P, gamma, rtol,
                                atol, h_init, hmax, dt, max_steps, t_eval, store_dense,
                                banded, kl, ku, perm, perm_inv, jrows, jcols)


def _forward_dirk(rhs, jac_y, dfdt, p, tw, W, wbuf, z0, t0, t1, A, b, c, e, P, gamma, q, rtol,
                  atol, h_init, hmax, dt, max_steps, t_eval, store_dense,
                  banded, kl, ku, perm, perm_inv, jrows, jcols):
    sys = ModelSystem(rhs, jac_y, dfdt, p, tw, W, wbuf)
    return sdirk_integrate(sys, z0, t0, t1, A, b, c, e, P, gamma, q, rtol, atol, h_init, hmax,
                           dt, max_steps, t_eval, store_dense, banded, kl, ku, perm, perm_inv,
                           jrows, jcols)


drivers.register_entry("forward_rodas4", _forward_rodas, MODEL_SYS_ARGS + (A1,) + RODAS_ARGS)
drivers.register_entry("forward_dirk", _forward_dirk, MODEL_SYS_ARGS + (A1,) + DIRK_ARGS)


def _copy(a):
    return np.array(a, dtype=np.float64, order="C", copy=True)


#: method coefficients as the loops' positional arrays (writeable private copies).
RODAS4_ARGS = (*(_copy(a) for a in (RODAS4.A, RODAS4.C, RODAS4.alpha, RODAS4.gamma_sum,
                                    RODAS4.m, RODAS4.e)),
               rodas_P(RODAS4.m, RODAS4.H), float(RODAS4.gamma))
KVAERNO5_ARGS = (*(_copy(a) for a in (KVAERNO5.A, KVAERNO5.b, KVAERNO5.c, KVAERNO5.e, KVAERNO5.P)),
                 float(KVAERNO5.gamma), float(KVAERNO5.error_order + 1))

_MODES: dict = {}


def model_linear_mode(mk, force: str = "auto") -> LinearMode:
    """The linear-algebra mode of the model kernels ``mk`` (memoised per model)."""
    key = (mk.digest, force)
    if key not in _MODES:
        rows, cols = mk.jac_pattern
        _MODES[key] = linear_mode(mk.n_states, rows, cols, force)
    return _MODES[key]


def _stats(st) -> dict:
    names = ("nfev", "nsteps", "naccepted", "nrejected", "njev", "nlu")
    return {k: int(v) for k, v in zip(names, st)}


def _run(entry_name, coeffs, P, mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax,
         max_steps, dense, dt, linalg):
    tw, W, wbuf = solvers.control_arrays(controls, mk.n_controls)
    mode = model_linear_mode(mk, linalg)
    out = drivers.entry(entry_name)(
        mk["rhs"], mk["jac_y"], mk["dfdt"], p, tw, W, wbuf, z0, float(t0), float(t1), *coeffs,
        float(rtol), atol, float(h_init), float(hmax), float(dt), int(max_steps), te, bool(dense),
        *mode.args())
    status, t_reached, _, ts, zs, hs, Ks, z_eval, st = out
    return solvers.RawResult(int(status), float(t_reached), ts, zs, hs, Ks, z_eval, _stats(st), P)


def run_rodas4(mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, max_steps, dense,
               *, dt=0.0, linalg="auto") -> solvers.RawResult:
    """Integrate the model ``mk`` with RODAS4 (runner of ``solvers.STIFF_METHODS``).

    ``dt > 0`` takes fixed steps (no error control; for convergence studies);
    ``linalg`` forces ``'dense'`` or ``'banded'`` storage instead of ``'auto'``.
    """
    return _run("forward_rodas4", RODAS4_ARGS, RODAS4_ARGS[6], mk, p, controls, z0, t0, t1, te,
                rtol, atol, h_init, hmax, max_steps, dense, dt, linalg)


def run_kvaerno5(mk, p, controls, z0, t0, t1, te, rtol, atol, h_init, hmax, max_steps, dense,
                 *, dt=0.0, linalg="auto") -> solvers.RawResult:
    """Integrate the model ``mk`` with Kvaerno5 (ESDIRK 5(4)); options as ``run_rodas4``."""
    return _run("forward_dirk", KVAERNO5_ARGS, KVAERNO5_ARGS[4], mk, p, controls, z0, t0, t1, te,
                rtol, atol, h_init, hmax, max_steps, dense, dt, linalg)


solvers.STIFF_METHODS["rodas4"] = run_rodas4
solvers.STIFF_METHODS["kvaerno5"] = run_kvaerno5
