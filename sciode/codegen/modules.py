"""Build the source of the two generated modules: model kernels and cost kernels.

The model module depends on the model only (``solve`` needs nothing else);
the cost module depends on the model and the *structure* of the cost
(expressions of ``Phi``, ``L`` and the observables), never on data values, so
new observations reuse the same compiled kernels.
"""

from __future__ import annotations

import dataclasses

import sympy as sp

from ..symbolic.derive import CostDerivatives, ModelDerivatives
from .emit import ROLL_THRESHOLD, KernelWriter, canonical_symbols, cotangent_symbols, nz_order

VEC_ARGS = ("t", "y", "p", "w", "out")
VJP_ARGS = ("t", "y", "p", "w", "v", "out")


def _vjp_outputs(entries, n_out, v):
    """``out[j] = sum_i M_ij v_i`` from sparse entries ``{(i, j): M_ij}``."""
    # Collect terms and build each sum once: adding term by term re-sorts
    # the growing Add every time, O(n^2) for a column with n entries.
    terms = [[] for _ in range(n_out)]
    for (i, j), e in entries.items():
        terms[j].append(e * v[i])
    return [(f"out[{j}]", sp.Add(*terms[j]), f"sum_i M[i, {j}] v[i]") for j in range(n_out)]


def _vjp_function(w: KernelWriter, name, entries, n_out, v, vnames, doc, state_cols=0) -> None:
    """``out = M^T v``; long column sums become loops accumulating over rows.

    ``state_cols``: the leading outputs index states, so an increment
    ``out[j] += M[i, j] v[i]`` is written relative to ``i`` and a band of the
    Jacobian folds into one loop per diagonal.
    """
    counts = [0] * n_out
    for _, j in entries:
        counts[j] += 1
    if max(counts, default=0) <= ROLL_THRESHOLD:
        w.function(name, VJP_ARGS, _vjp_outputs(entries, n_out, v), doc, vnames)
        return
    # Short columns (a banded Jacobian's state columns) are gathered:
    # ``out[j] = sum_i M_ij v_i``, which folds by ``j`` into loops that only
    # assign.  Long columns (a parameter that enters every equation) are
    # sums over rows, written as accumulating loops.
    long = {j for j in range(n_out) if counts[j] > ROLL_THRESHOLD}
    gathered = [out for j, out in enumerate(_vjp_outputs(entries, n_out, v))
                if j not in long and counts[j] > 0]
    incs = [(f"out[{j}]", e * v[i], f"+= M[{i}, {j}] v[{i}]", i, j < state_cols)
            for (i, j), e in sorted(entries.items()) if j in long]
    # zero only what is accumulated or has no entries (all of out when that is most of it)
    unset = [f"out[{j}]" for j in range(n_out) if j in long or counts[j] == 0]
    zero = "out" if len(unset) > ROLL_THRESHOLD else unset
    w.function(name, VJP_ARGS, gathered, doc, vnames, zero=zero, after=incs)


def _vector_outputs(exprs, label):
    return [(f"out[{i}]", e, f"{label}[{i}]") for i, e in enumerate(exprs)]


def _matrix_outputs(entries, label):
    return [(f"out[{i}, {j}]", e, f"{label}[{i}, {j}]") for (i, j), e in sorted(entries.items())]


def _placed(der, subs):
    """``der`` (``ModelDerivatives`` or ``CostDerivatives``) with every expression in
    the kernel placeholders of ``canonical_symbols``, once: several kernels read
    each derivative."""
    def place(value):
        if isinstance(value, dict):
            return {k: e.xreplace(subs) for k, e in value.items()}
        if isinstance(value, tuple):
            return tuple(sp.sympify(e).xreplace(subs) for e in value)
        if isinstance(value, sp.Basic):
            return value.xreplace(subs)
        return value  # the model
    return dataclasses.replace(der, **{f.name: place(getattr(der, f.name)) for f in dataclasses.fields(der)})


def _sens_function(w: KernelWriter, dfdy, dfdp, n: int) -> None:
    """``sens_rhs``: ``out[:, k] = J S[:, k]`` for every column, then ``out[:, :n_p] += df/dp``
    (``dfdy``, ``dfdp`` in the placeholders of ``canonical_symbols``)."""
    cols = [sp.Dummy(f"S{j:07d}") for j in range(n)]
    names = {c: f"S[{j}, k]" for j, c in enumerate(cols)}
    rows = [[] for _ in range(n)]
    for (i, j), e in dfdy.items():
        rows[i].append(e * cols[j])
    outputs = [(f"out[{i}, k]", sp.Add(*rows[i]), f"(J S)[{i}, k]") for i in range(n)]
    fp = [(f"out[{i}, {j}]", e, f"+ df[{i}]/dp[{j}]") for (i, j), e in sorted(dfdp.items())]
    w.function("sens_rhs", ("t", "y", "p", "w", "S", "out"), outputs,
               "out = (df/dy) S, plus df/dp on the first n_p columns", names,
               outer="for k in range(S.shape[1]):", after=fp)


def _all_zero(exprs) -> bool:
    return all(sp.sympify(e) == 0 for e in exprs)


def model_module_source(der: ModelDerivatives, header: str, use_cse: bool = True) -> str:
    """Source of the model-kernel module (see ``sciode.abi`` for the kernels)."""
    model = der.model
    n, n_p, n_w = model.n_states, model.n_params, model.n_controls
    subs, names = canonical_symbols(model)
    der = _placed(der, subs)
    f, dfdy, dfdp, dfdw, dfdt = der.f, der.dfdy, der.dfdp, der.dfdw, der.dfdt
    v, vnames = cotangent_symbols(n)
    w = KernelWriter(names, use_cse)
    w.constant("N_STATES", n)
    w.constant("N_PARAMS", n_p)
    w.constant("N_CONTROLS", n_w)
    pattern = nz_order(der.dfdy)
    w.constant("JAC_ROWS", tuple(i for i, _ in pattern))
    w.constant("JAC_COLS", tuple(j for _, j in pattern))
    # kernels whose outputs are all structurally zero: ``KernelSet`` hands out one
    # shared compiled zero kernel for them instead of compiling (or loading) each
    zero = {"dfdt": _all_zero(dfdt), "jac_p": not dfdp, "vjp_p": not dfdp, "vjp_w": not dfdw}
    w.constant("ZERO_KERNELS", tuple(sorted(k for k, z in zero.items() if z)))
    w.function("rhs", VEC_ARGS, _vector_outputs(f, "f"), "out = f(t, y, p, w)")
    w.function("dfdt", VEC_ARGS, _vector_outputs(dfdt, "df/dt"), "out = df/dt")
    w.function("jac_y", VEC_ARGS, _matrix_outputs(dfdy, "df/dy"),
               "out = df/dy (n, n)", zero="out")
    # the pattern's values, out[0, k] (``abi``): written through the row view
    # ``out`` so that a band's entries fold along their rows (anchor i, target k)
    nz = [(f"out[{k}]", dfdy[i, j], f"df/dy[{i}, {j}]", i, True) for k, (i, j) in enumerate(pattern)]
    w.function("jac_nz", ("t", "y", "p", "w", "jac"), nz,
               "out[0, k] = df/dy[JAC_ROWS[k], JAC_COLS[k]] (1, >= nnz)", prologue=["out = jac[0]"])
    w.function("jac_p", VEC_ARGS, _matrix_outputs(dfdp, "df/dp"),
               "out = df/dp (n, n_p)", zero="out", fixed_cols=True)
    _vjp_function(w, "vjp_y", dfdy, n, v, vnames, "out = (df/dy)^T v", n)
    _vjp_function(w, "vjp_p", dfdp, n_p, v, vnames, "out = (df/dp)^T v")
    _vjp_function(w, "vjp_w", dfdw, n_w, v, vnames, "out = (df/dw)^T v")
    stacked = {**dfdy, **{(i, n + k): e for (i, k), e in dfdp.items()}}
    _vjp_function(w, "vjp_yp", stacked, n + n_p, v, vnames,
                  "out = [(df/dy)^T v, (df/dp)^T v]", n)
    _sens_function(w, dfdy, dfdp, n)
    return w.source(header)


def cost_module_source(model, der: CostDerivatives, header: str, use_cse: bool = True) -> str:
    """Source of the cost-kernel module (running, terminal, observables)."""
    subs, names = canonical_symbols(model)
    der = _placed(der, subs)
    n_h = len(der.h)
    v, vnames = cotangent_symbols(n_h)
    w = KernelWriter(names, use_cse)
    w.constant("N_OBS", n_h)
    zero = {"L": _all_zero([der.L]), "dLdy": _all_zero(der.dLdy), "dLdp": _all_zero(der.dLdp),
            "dLdw": _all_zero(der.dLdw), "L_grad": _all_zero([*der.dLdy, *der.dLdp, der.L]),
            "Phi": _all_zero([der.Phi]), "dPhidy": _all_zero(der.dPhidy),
            "dPhidp": _all_zero(der.dPhidp), "obs": _all_zero(der.h), "obs_vjp_y": not der.dhdy,
            "obs_vjp_p": not der.dhdp}
    w.constant("ZERO_KERNELS", tuple(sorted(k for k, z in zero.items() if z)))  # see model_module_source
    w.function("L", VEC_ARGS, _vector_outputs([der.L], "L"), "out[0] = L(t, y, p, w)")
    w.function("dLdy", VEC_ARGS, _vector_outputs(der.dLdy, "dL/dy"), "out = dL/dy")
    w.function("dLdp", VEC_ARGS, _vector_outputs(der.dLdp, "dL/dp"), "out = dL/dp")
    w.function("dLdw", VEC_ARGS, _vector_outputs(der.dLdw, "dL/dw"), "out = dL/dw")
    w.function("L_grad", VEC_ARGS, _vector_outputs([*der.dLdy, *der.dLdp, der.L], "[dL/dy, dL/dp, L]"),
               "out = [dL/dy, dL/dp, L]")
    w.function("Phi", VEC_ARGS, _vector_outputs([der.Phi], "Phi"), "out[0] = Phi(t, y, p)")
    w.function("dPhidy", VEC_ARGS, _vector_outputs(der.dPhidy, "dPhi/dy"), "out = dPhi/dy")
    w.function("dPhidp", VEC_ARGS, _vector_outputs(der.dPhidp, "dPhi/dp"), "out = dPhi/dp")
    w.function("obs", VEC_ARGS, _vector_outputs(der.h, "h"), "out = h(t, y, p)")
    _vjp_function(w, "obs_vjp_y", der.dhdy, model.n_states, v, vnames, "out = (dh/dy)^T v",
                  model.n_states)
    _vjp_function(w, "obs_vjp_p", der.dhdp, model.n_params, v, vnames, "out = (dh/dp)^T v")
    return w.source(header)
