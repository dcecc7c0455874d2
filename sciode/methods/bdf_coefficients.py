"""Coefficients of the variable-order BDF/NDF method (``method="bdf"``), as data.

The method is the numerical differentiation formulas (NDFs) of Shampine &
Reichelt, "The MATLAB ODE Suite", SIAM J. Sci. Comput. 18 (1997) 1-22, in
the fixed-leading-coefficient form on a quasi-constant step: with the
backward differences ``D[j] = nabla^j y_n`` and ``gamma_k = sum_{j=1}^k 1/j``,
a step of order ``k`` solves for ``y_{n+1}``::

    (1 - kappa_k) gamma_k (y_{n+1} - y_pred) + sum_{j=1}^k gamma_j nabla^j y_n
        = h f(t_{n+1}, y_{n+1}),          y_pred = sum_{j=0}^k nabla^j y_n

(eq. (2) there written on the prediction), and its local error is estimated
as ``(kappa_k gamma_k + 1/(k+1)) (y_{n+1} - y_pred)``.  ``kappa_k`` are the
paper's Table 1 values (``kappa_5 = 0``: order 5 is the plain BDF, which the
paper found no NDF improvement for).

This module holds only numbers; the compiled loop is ``sciode.cpu.bdf``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .explicit_tableaus import _frozen_array

__all__ = ["BDF", "MAX_ORDER", "BDFCoefficients", "interpolant_basis"]

MAX_ORDER = 5


def interpolant_basis(max_order: int = MAX_ORDER) -> np.ndarray:
    """``W[j, m]``: the coefficient of ``theta^m`` in ``B_j(theta)``, ``j, m = 0 .. max_order``.

    On an accepted step ``[t, t + h]`` the interpolant of order ``k`` is the
    Newton backward-difference polynomial through the last ``k + 1`` points,
    ``z(t + theta h) = sum_{j=0}^k D[j] B_j(theta)`` with ``D`` the differences
    at ``t + h`` and ``B_j(theta) = prod_{m=0}^{j-1} (theta - 1 + m) / (m + 1)``
    (binomial coefficients in ``s = theta - 1``, the offset from the new point
    in steps).  ``B_j(0) = 0`` for ``j >= 2`` and ``B_1(0) = -1``, so the
    polynomial is ``z_old`` at ``theta = 0`` (``D[0] - D[1] = z_old``).
    """
    W = np.zeros((max_order + 1, max_order + 1))
    for j in range(max_order + 1):
        poly = np.array([1.0])  # increasing powers of theta
        for m in range(j):
            poly = np.convolve(poly, np.array([m - 1.0, 1.0])) / (m + 1.0)
        W[j, : poly.size] = poly
    return W


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class BDFCoefficients:
    """The NDF coefficient vectors, indexed by the order ``k = 0 .. MAX_ORDER``
    (entry 0 unused by the formulas; kept so that ``x[k]`` is order ``k``).

    ``kappa``: Shampine & Reichelt (1997), Table 1; ``gamma[k] = sum_{j<=k} 1/j``;
    ``alpha = (1 - kappa) gamma`` (the leading coefficient); ``error_const =
    kappa gamma + 1/(k+1)`` (the factor of the local-error estimate);
    ``W``: ``interpolant_basis``; ``P = I``: the dense output is stored in power
    form (``sciode.cpu.bdf``).
    """

    name: str
    order: int
    error_order: int
    kappa: np.ndarray
    gamma: np.ndarray
    alpha: np.ndarray
    error_const: np.ndarray
    W: np.ndarray
    P: np.ndarray

    def __post_init__(self):
        for f, ndim in (("kappa", 1), ("gamma", 1), ("alpha", 1), ("error_const", 1), ("W", 2),
                        ("P", 2)):
            object.__setattr__(self, f, _frozen_array(self.name, f, getattr(self, f), ndim))
        k = np.arange(MAX_ORDER + 1)
        if not np.allclose(self.alpha, (1.0 - self.kappa) * self.gamma, rtol=0, atol=1e-15):
            raise ValueError("BDF coefficients: alpha != (1 - kappa) gamma")
        if not np.allclose(self.error_const, self.kappa * self.gamma + 1.0 / (k + 1), rtol=0, atol=1e-15):
            raise ValueError("BDF coefficients: error_const != kappa gamma + 1/(k+1)")


def _bdf() -> BDFCoefficients:
    # Shampine & Reichelt (1997), Table 1: kappa for orders 1..5 (order 5: BDF)
    kappa = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])
    gamma = np.r_[0.0, np.cumsum(1.0 / np.arange(1, MAX_ORDER + 1))]
    return BDFCoefficients(
        name="bdf", order=MAX_ORDER,
        # the estimate at order k is of the order-k solution's own local error
        # (a difference one order higher), not an embedded lower-order pair
        error_order=MAX_ORDER,
        kappa=kappa, gamma=gamma, alpha=(1.0 - kappa) * gamma,
        error_const=kappa * gamma + 1.0 / np.arange(1, MAX_ORDER + 2),
        W=interpolant_basis(MAX_ORDER), P=np.eye(MAX_ORDER),
    )


BDF = _bdf()
