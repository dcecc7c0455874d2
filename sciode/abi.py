"""The kernel ABI: one signature per kind of generated function.

Every function that code generation emits, and every integrator that calls
one, uses exactly these Numba signatures.  Kernels write into preallocated
output arrays and return nothing, so a stepping loop allocates nothing per
step.

=============  ==============================================  ==================
kind           signature                                       kernels
=============  ==============================================  ==================
``VEC``        ``k(t, y, p, w, out)``                          rhs, dfdt, L, dLdy,
                                                               dLdp, dLdw, L_grad,
                                                               Phi, dPhidy,
                                                               dPhidp, obs
``VJP``        ``k(t, y, p, w, v, out)``                       vjp_y, vjp_p, vjp_yp,
                                                               vjp_w, obs_vjp_y,
                                                               obs_vjp_p
``MAT``        ``k(t, y, p, w, out2d)``                        jac_y, jac_nz, jac_p
``SENS``       ``k(t, y, p, w, S, out2d)``                     sens_rhs
=============  ==============================================  ==================

``t`` is a float, ``y`` the state ``(n_states,)``, ``p`` the parameters
``(n_params,)``, ``w`` the control values at ``t`` ``(n_controls,)``, ``v`` a
cotangent.  The meaning of each kernel (``f`` is the model rhs):

- ``rhs``: ``out = f(t, y, p, w)``; ``dfdt``: ``out = df/dt``.
- ``jac_y``: ``out = df/dy`` ``(n, n)``; ``jac_p``: ``out = df/dp`` ``(n, n_p)``.
- ``jac_nz``: the structural nonzeros of ``df/dy`` only, ``out[0, k] =
  df_{r_k}/dy_{c_k}`` for the pattern ``(JAC_ROWS, JAC_COLS)`` of the module,
  ``out`` ``(1, m)`` with ``m >= nnz`` (entries past ``nnz`` untouched): what a
  banded (or sparse) linear solve reads, in ``O(nnz)`` instead of the dense
  ``O(n^2)`` fill.  The pattern is ordered by diagonal (``c - r``), then row,
  so that the entries of a discretised PDE fold into one loop per diagonal.
  It has ``MAT``'s signature, so the loops take either in the same argument
  (``codegen.ModelKernels.fns`` hands out the one a method's storage needs).
- ``vjp_y``: ``out = (df/dy)^T v``; ``vjp_p``: ``(df/dp)^T v``; ``vjp_w``:
  ``(df/dw)^T v``; ``vjp_yp``: both, ``out = [(df/dy)^T v, (df/dp)^T v]``
  ``(n + n_p,)``, in one call with common subexpressions shared (the costate
  right-hand side evaluates it at every stage).
- ``sens_rhs``: ``out = (df/dy) S``, plus ``df/dp`` added to the first ``n_p``
  columns: the forward-sensitivity right-hand side ``S' = J S + f_p`` for
  ``S = [dy/dp, dy/dy0]``.
- ``L`` (``out[0]``), ``dLdy``, ``dLdp``, ``dLdw``: the running cost and its
  gradients; ``L_grad``: ``out = [dL/dy, dL/dp, L]`` ``(n + n_p + 1,)`` in one call.
- ``Phi`` (``out[0]``), ``dPhidy``, ``dPhidp``: the terminal cost.
- ``obs``: observables ``h(t, y, p)`` ``(n_obs,)``; ``obs_vjp_y``:
  ``(dh/dy)^T v``; ``obs_vjp_p``: ``(dh/dp)^T v``.

The types are Numba first-class function types (``_numba_compat.kernel_type``:
a fast ``KernelType`` or Numba's public ``FunctionType``), so one stepping
loop, compiled and cached once per installation, serves every model: the
model's kernels are passed in as arguments instead of being compiled into
the loop.
"""

from __future__ import annotations

from collections import namedtuple

from numba import types

from ._numba_compat import declare_type, kernel_type

ARRAY = types.float64[::1]
MATRIX = types.float64[:, ::1]

VEC_SIG = types.void(types.float64, ARRAY, ARRAY, ARRAY, ARRAY)
VJP_SIG = types.void(types.float64, ARRAY, ARRAY, ARRAY, ARRAY, ARRAY)
MAT_SIG = types.void(types.float64, ARRAY, ARRAY, ARRAY, MATRIX)
SENS_SIG = types.void(types.float64, ARRAY, ARRAY, ARRAY, MATRIX, MATRIX)

VEC = kernel_type(VEC_SIG)
VJP = kernel_type(VJP_SIG)
MAT = kernel_type(MAT_SIG)
SENS = kernel_type(SENS_SIG)

#: kernel name -> signature; the single source of truth for codegen and loops.
MODEL_KERNELS = {
    "rhs": VEC_SIG,
    "dfdt": VEC_SIG,
    "jac_y": MAT_SIG,
    "jac_nz": MAT_SIG,
    "jac_p": MAT_SIG,
    "vjp_y": VJP_SIG,
    "vjp_p": VJP_SIG,
    "vjp_w": VJP_SIG,
    "vjp_yp": VJP_SIG,
    "sens_rhs": SENS_SIG,
}
COST_KERNELS = {
    "L": VEC_SIG,
    "dLdy": VEC_SIG,
    "dLdp": VEC_SIG,
    "dLdw": VEC_SIG,
    "L_grad": VEC_SIG,
    "Phi": VEC_SIG,
    "dPhidy": VEC_SIG,
    "dPhidp": VEC_SIG,
    "obs": VEC_SIG,
    "obs_vjp_y": VJP_SIG,
    "obs_vjp_p": VJP_SIG,
}


# --- kernel bundles: what an entry point takes instead of a positional list ---------------------

def _fields(kernels: dict) -> dict:
    """``{field: Numba type}`` of a bundle of ``kernels``; ``jac_y`` and
    ``jac_nz`` share one field ``jac``: a loop calls the Jacobian in its
    method's storage (``codegen.ModelKernels.fns``)."""
    out = {}
    for name, sig in kernels.items():
        out.setdefault("jac" if name in ("jac_y", "jac_nz") else name, kernel_type(sig))
    return out


#: ``{field: Numba type}`` of ``ModelFns`` and ``CostFns`` (``has_L``: whether
#: the cost has a running term, which the costate's rates skip otherwise).
MODEL_FNS_FIELDS = _fields(MODEL_KERNELS)
COST_FNS_FIELDS = {**_fields(COST_KERNELS), "has_L": types.boolean}

ModelFns = namedtuple("ModelFns", list(MODEL_FNS_FIELDS))
ModelFns.__doc__ = """A model's kernels, one field per kind of ``MODEL_KERNELS``
(``jac``: ``jac_y`` or ``jac_nz``).  Built by ``codegen.ModelKernels.fns``,
which puts the shared zero kernel in every field its caller does not use."""
CostFns = namedtuple("CostFns", list(COST_FNS_FIELDS))
CostFns.__doc__ = """A cost's kernels (``COST_KERNELS``) and ``has_L``; built by
``codegen.CostKernels.fns``."""

#: The bundles' Numba types.  Every field's type is fixed by this ABI, so
#: ``typeof`` of a bundle is a constant (``_numba_compat.declare_type``):
#: typing a tuple of ten kernels field by field cost ~25 us a call.
MODEL_FNS = types.NamedTuple(tuple(MODEL_FNS_FIELDS.values()), ModelFns)
COST_FNS = types.NamedTuple(tuple(COST_FNS_FIELDS.values()), CostFns)
declare_type(ModelFns, MODEL_FNS)
declare_type(CostFns, COST_FNS)
