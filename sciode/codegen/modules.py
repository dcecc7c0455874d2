"""Build the source of the two generated modules: model kernels and cost kernels.

The model module depends on the model only (``solve`` needs nothing else);
the cost module depends on the model and the *structure* of the cost
(expressions of ``Phi``, ``L`` and the observables), never on data values, so
new observations reuse the same compiled kernels.
"""

from __future__ import annotations

import sympy as sp

from ..symbolic.derive import CostDerivatives, ModelDerivatives
from .emit import KernelWriter, canonical_symbols, cotangent_symbols

VEC_ARGS = ("t", "y", "p", "w", "out")
VJP_ARGS = ("t", "y", "p", "w", "v", "out")


def _vjp_outputs(entries, n_out, v, subs):
    """``out[j] = sum_i M_ij v_i`` from sparse entries ``{(i, j): M_ij}``."""
    # Collect terms and build each sum once: adding term by term re-sorts
    # the growing Add every time, O(n^2) for a column with n entries.
    terms = [[] for _ in range(n_out)]
    for (i, j), e in entries.items():
        terms[j].append(e.xreplace(subs) * v[i])
    return [(f"out[{j}]", sp.Add(*terms[j]), f"sum_i M[i, {j}] v[i]") for j in range(n_out)]


def _vector_outputs(exprs, subs, label):
    return [(f"out[{i}]", sp.sympify(e).xreplace(subs), f"{label}[{i}]") for i, e in enumerate(exprs)]


def _matrix_outputs(entries, subs, label):
    return [
        (f"out[{i}, {j}]", e.xreplace(subs), f"{label}[{i}, {j}]")
        for (i, j), e in sorted(entries.items())
    ]


def _sens_tail(entries_y, entries_p, n):
    """Loop lines for ``out = J S`` plus ``df/dp`` on the first ``n_p`` columns."""
    rows = [[] for _ in range(n)]
    for (i, j) in sorted(entries_y):
        rows[i].append(f"_J{i}_{j}*S[{j}, k]")
    lines = ["for k in range(S.shape[1]):"]
    for i in range(n):
        lines.append(f"    out[{i}, k] = {' + '.join(rows[i]) if rows[i] else '0.0'}  # (J S)[{i}, k]")
    for (i, j) in sorted(entries_p):
        lines.append(f"out[{i}, {j}] += _F{i}_{j}  # + df[{i}]/dp[{j}]")
    return lines


def model_module_source(der: ModelDerivatives, header: str, use_cse: bool = True) -> str:
    """Source of the model-kernel module (see ``sciode.abi`` for the kernels)."""
    model = der.model
    n, n_p, n_w = model.n_states, model.n_params, model.n_controls
    subs, names = canonical_symbols(model)
    v, vnames = cotangent_symbols(n)
    w = KernelWriter(names, use_cse)
    w.constant("N_STATES", n)
    w.constant("N_PARAMS", n_p)
    w.constant("N_CONTROLS", n_w)
    w.constant("JAC_ROWS", tuple(i for i, _ in sorted(der.dfdy)))
    w.constant("JAC_COLS", tuple(j for _, j in sorted(der.dfdy)))
    w.function("rhs", VEC_ARGS, _vector_outputs(der.f, subs, "f"), "out = f(t, y, p, w)")
    w.function("dfdt", VEC_ARGS, _vector_outputs(der.dfdt, subs, "df/dt"), "out = df/dt")
    w.function("jac_y", VEC_ARGS, _matrix_outputs(der.dfdy, subs, "df/dy"),
               "out = df/dy (n, n)", zero="out")
    w.function("jac_p", VEC_ARGS, _matrix_outputs(der.dfdp, subs, "df/dp"),
               "out = df/dp (n, n_p)", zero="out")
    w.function("vjp_y", VJP_ARGS, _vjp_outputs(der.dfdy, n, v, subs),
               "out = (df/dy)^T v", vnames)
    w.function("vjp_p", VJP_ARGS, _vjp_outputs(der.dfdp, n_p, v, subs),
               "out = (df/dp)^T v", vnames)
    w.function("vjp_w", VJP_ARGS, _vjp_outputs(der.dfdw, n_w, v, subs),
               "out = (df/dw)^T v", vnames)
    locals_ = [(f"_J{i}_{j}", e.xreplace(subs), f"df[{i}]/dy[{j}]") for (i, j), e in sorted(der.dfdy.items())]
    locals_ += [(f"_F{i}_{j}", e.xreplace(subs), f"df[{i}]/dp[{j}]") for (i, j), e in sorted(der.dfdp.items())]
    w.function("sens_rhs", ("t", "y", "p", "w", "S", "out"), locals_,
               "out = (df/dy) S, plus df/dp on the first n_p columns",
               tail=_sens_tail(der.dfdy, der.dfdp, n))
    return w.source(header)


def cost_module_source(model, der: CostDerivatives, header: str, use_cse: bool = True) -> str:
    """Source of the cost-kernel module (running, terminal, observables)."""
    subs, names = canonical_symbols(model)
    n_h = len(der.h)
    v, vnames = cotangent_symbols(n_h)
    w = KernelWriter(names, use_cse)
    w.constant("N_OBS", n_h)
    w.function("L", VEC_ARGS, _vector_outputs([der.L], subs, "L"), "out[0] = L(t, y, p, w)")
    w.function("dLdy", VEC_ARGS, _vector_outputs(der.dLdy, subs, "dL/dy"), "out = dL/dy")
    w.function("dLdp", VEC_ARGS, _vector_outputs(der.dLdp, subs, "dL/dp"), "out = dL/dp")
    w.function("dLdw", VEC_ARGS, _vector_outputs(der.dLdw, subs, "dL/dw"), "out = dL/dw")
    w.function("Phi", VEC_ARGS, _vector_outputs([der.Phi], subs, "Phi"), "out[0] = Phi(t, y, p)")
    w.function("dPhidy", VEC_ARGS, _vector_outputs(der.dPhidy, subs, "dPhi/dy"), "out = dPhi/dy")
    w.function("dPhidp", VEC_ARGS, _vector_outputs(der.dPhidp, subs, "dPhi/dp"), "out = dPhi/dp")
    w.function("obs", VEC_ARGS, _vector_outputs(der.h, subs, "h"), "out = h(t, y, p)")
    w.function("obs_vjp_y", VJP_ARGS, _vjp_outputs(der.dhdy, model.n_states, v, subs),
               "out = (dh/dy)^T v", vnames)
    w.function("obs_vjp_p", VJP_ARGS, _vjp_outputs(der.dhdp, model.n_params, v, subs),
               "out = (dh/dp)^T v", vnames)
    return w.source(header)
