"""The user API: ``solve`` (and, in sibling modules, gradients and fits)."""

from __future__ import annotations

import contextlib

import numpy as np

from .checks import (
    _check_model,
    check_controls,
    check_span,
    check_steps,
    check_t_eval,
    check_tolerances,
)
from .cpu import solvers, specialized
from .cpu.dense import DenseOutput
from .cpu.status import SUCCESS, message
from .errors import SolverError
from .methods.tableaus import Tableau
from .solution import Solution


def solve(model, y0, t_span, params=None, t_eval=None, method="dopri5", rtol=1e-6, atol=1e-9,
          controls=None, dt=None, max_steps=100_000, raise_on_failure=False, first_step=None,
          max_step=np.inf, dense=False) -> Solution:
    """Integrate ``y' = f(t, y, p, w(t))``, ``y(t0) = y0`` over ``t_span``.

    Parameters
    ----------
    model : Model
    y0 : (n_states,) or mapping name -> value
    t_span : (t0, t1); ``t1 < t0`` integrates backward
    params : sequence ordered as ``model.params`` or mapping
    t_eval : (m,) output times served by the method's dense output
    method : str, one of ``solvers.method_names()``
    rtol, atol : tolerances of the RMS error norm (``atol`` scalar or (n,))
    controls : Controls, required when the model declares controls
    dt : float, the step of fixed-step methods (``euler``, ``rk4``)
    max_steps : int, bound on attempted steps
    raise_on_failure : raise ``SolverError`` instead of returning ``success=False``
    first_step, max_step : optional step-size bounds for adaptive methods
    dense : keep the continuous solution (``sol.dense(t)``)

    Returns
    -------
    Solution
    """
    _check_model(model)
    from .codegen import model_kernels

    t0, t1 = check_span(t_span)
    z0 = np.ascontiguousarray(model.state_vector(y0))
    p = np.ascontiguousarray(model.param_vector(params))
    te = check_t_eval(t_eval, t0, t1)
    rtol, atol_arr = check_tolerances(rtol, atol, model.n_states)
    controls = check_controls(model, controls)
    spec = solvers.lookup_method(method)
    h_init, max_step, max_steps, _ = check_steps(
        first_step, max_step, max_steps, spec if isinstance(spec, Tableau) else None, dt, method)
    mk = model_kernels(model)
    if isinstance(spec, Tableau):
        # two tiers of one loop (``cpu.specialized``): same steps, same numbers
        fast = specialized.supports(spec, model.n_controls, bool(dense))
        if fast and specialized.use(mk, spec, "forward"):
            raw = specialized.solve(mk, spec, p, z0, t0, t1, te, rtol, atol_arr, h_init, max_step,
                                    max_steps)
        else:
            with specialized.Timer(mk, spec) if fast else contextlib.nullcontext():
                raw = solvers.run_explicit(mk, spec, p, controls, z0, t0, t1, te, rtol, atol_arr, h_init,
                                           float(max_step), float(dt or 0.0), int(max_steps), bool(dense))
    else:
        from .cpu.stiff import model_linear_mode

        raw = solvers.run(mk, spec.build(model_linear_mode(mk)), p, controls, z0, t0, t1, te, rtol, atol_arr,
                          h_init, float(max_step), 0.0,
                          int(max_steps), bool(dense))
    return finish(raw, te, method, max_steps, raise_on_failure, dense)


def finish(raw, te, method, max_steps, raise_on_failure, dense) -> Solution:
    """Turn a loop's raw result into a ``Solution`` (or raise on failure)."""
    ok = raw.status == SUCCESS
    msg = message(raw.status, raw.t_reached, max_steps)
    if not ok and raise_on_failure:
        raise SolverError(f"{method}: {msg}")
    if te.size:
        t_out, y_out = te, raw.z_eval
        if not ok:  # only the t_eval points the loop reached were filled
            if raw.ts.size > 1:
                keep = (te - raw.t_reached) * np.sign(raw.ts[-1] - raw.ts[0]) <= 0
            else:  # no step accepted: the direction is unknown here, only t0 was served
                keep = te == raw.t_reached
            t_out, y_out = te[keep], raw.z_eval[keep]
    else:
        t_out, y_out = raw.ts, raw.zs
    dense_out = DenseOutput(raw.ts, raw.hs, raw.zs, raw.Ks, raw.P) if (dense and raw.Ks.shape[0] == raw.hs.shape[0]) else None
    return Solution(t=t_out, y=y_out, stats=dict(raw.stats), success=ok, status=raw.status,
                    message=msg, t_reached=raw.t_reached, dense=dense_out, method=method,
                    extra={"raw": raw})
