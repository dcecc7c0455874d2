"""The Rosenbrock family (RODAS4, RODAS5), with the symbolic Jacobian: its
stages, dense-output form and step-size controller; the loop that runs them
is ``implicit.py``'s.

A step of size ``h`` from ``(t, z)`` (stage equations of
``sciode.methods.stiff_tableaus.RosenbrockTableau``): with ``J = dF/dz(t, z)``,
``F_t = dF/dt(t, z)`` and ``M = I/(h gamma) - J`` factored once per step::

    M U[i] = F(t + alpha[i] h, z + sum_{j<i} A[i, j] U[j]) + sum_{j<i} (C[i, j]/h) U[j]
             + h gamma_sum[i] F_t
    z_new = z + sum_i m[i] U[i],      err = sum_i e[i] U[i]

The Jacobian is evaluated once per accepted point (a rejected step reuses it
with a smaller ``h``, refactoring only ``M``).  Step control is Hairer's
``rodas.f`` strategy: ``h_new/h = 0.9 err^(-1/q)`` clipped to [0.2, 6], and
after the first accepted step the predictive (Gustafsson) controller, whose
smaller proposal wins; ``q`` is the embedded order plus one (4 for RODAS4, as
in ``rodas.f``; 5 for RODAS5).

Dense output is stored in the explicit loops' polynomial form, so
``sciode.cpu.dense`` serves it unchanged.  RODAS's interpolant (``d`` rows of
``H``: 2 for RODAS4, 3 for RODAS5)

    z(t + theta h) = (1 - theta) z + theta z_new
                     + theta (1 - theta) sum_{r<d} theta^r H[r].U

is, with ``z_new - z = sum_i m[i] U[i]`` and ``K[i] := U[i] / h``,
``z + h sum_i K[i] sum_{j<=d} P[i, j] theta^(j+1)`` for
``P[i] = (m[i] + H[0, i], H[1, i] - H[0, i], ..., H[d-1, i] - H[d-2, i], -H[d-1, i])``
(``rodas_P``; for ``d = 2`` that is ``(m + H[0], H[1] - H[0], -H[1])``).

The loop calls only ``sys_rhs``, ``sys_jac`` and ``sys_dfdt``: it integrates
any registered system (augmented adjoint systems included).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .linalg import solve_in_place
from .stepping import copy_flat
from .systems import sys_rhs

SAFETY = 0.9
RATIO_MIN = 0.2  # rodas.f: 0.2 <= h_new / h_old <= 6
RATIO_MAX = 6.0


def rodas_P(m, H) -> np.ndarray:
    """The ``(s, d + 1)`` dense-output matrix of a Rosenbrock tableau with
    ``d`` rows of ``H`` (module doc)."""
    m = np.asarray(m, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    cols = [m + H[0], *(H[r] - H[r - 1] for r in range(1, H.shape[0])), -H[-1]]
    return np.ascontiguousarray(np.stack(cols, axis=1))


@nb.njit(cache=True, nogil=True)
def rodas_stages(sys, t, z, h, A, C, alpha, gamma_sum, f0, ft, M, piv, lin, U, work, rhs, lwork):
    """The ``s`` increments ``U`` of one step (``M`` already factored for ``h``)."""
    n = z.shape[0]
    s = A.shape[0]
    for i in range(s):
        if i == 0:
            copy_flat(rhs, f0)
        else:
            for k in range(n):
                acc = 0.0
                for j in range(i):
                    acc += A[i, j] * U[j, k]
                work[k] = z[k] + acc
            sys_rhs(sys, t + alpha[i] * h, work, rhs)
        gh = h * gamma_sum[i]
        for k in range(n):
            acc = 0.0
            for j in range(i):
                acc += C[i, j] * U[j, k]
            rhs[k] += acc / h + gh * ft[k]
        solve_in_place(M, piv, lin, rhs, lwork)
        copy_flat(U[i], rhs)


@nb.njit(cache=True, nogil=True)
def rodas_ratio(err, h, h_acc, err_acc, n_accepted, q):
    """``h_new / h`` from ``rodas.f``'s controller (predictive after the first
    step), with exponent ``1/q`` (``rodas.f``: ``q = 4``)."""
    if err == 0.0:
        return RATIO_MAX
    k = 1.0 / q
    r = min(RATIO_MAX, max(RATIO_MIN, SAFETY * err ** -k))
    if n_accepted >= 1 and err <= 1.0:
        gus = (h / h_acc) * (err_acc / (err * err)) ** k * SAFETY
        r = min(r, min(RATIO_MAX, max(RATIO_MIN, gus)))
    return r
