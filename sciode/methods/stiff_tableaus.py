"""Stiff methods as data: Rosenbrock methods and an ESDIRK method.

Like the explicit tableaus, each method is one frozen, validated dataclass;
the stepping loops (Numba and torch) read these constants. No Jacobian or
linear algebra happens here beyond the construction-time checks.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .explicit_tableaus import _frozen_array, _hermite_P

__all__ = [
    "RosenbrockTableau",
    "DIRKTableau",
    "RODAS4",
    "RODAS5",
    "KVAERNO5",
    "STIFF_TABLEAUS",
]

_IDENTITY_TOL = 1e-12  # 16-digit published coefficients of magnitude ~30


def _fail(name: str, what: str) -> None:
    raise ValueError(f"Tableau `{name}`: {what}")


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class RosenbrockTableau:
    r"""Rosenbrock method in Hairer--Wanner's transformed (``RODAS``) form.

    Stage equations. For a step of size ``h`` from ``(t, y)``, with
    ``J = df/dy(t, y)`` and ``f_t = df/dt(t, y)`` (both exact: RODAS is a
    Rosenbrock method, not a W-method, and loses order with an approximate
    ``J``), solve for ``i = 0 .. s-1``::

        (I/(h*gamma) - J) U[i] = f(t + alpha[i]*h, y + sum_{j<i} A[i, j] U[j])
                                 + sum_{j<i} (C[i, j] / h) U[j]
                                 + h * gamma_sum[i] * f_t

        y_new = y + sum_i m[i] U[i]
        err   =     sum_i e[i] U[i]        # y_new - y_hat

    ``U[i]`` are increments of ``y`` (no factor ``h``); one LU factorisation of
    ``I/(h*gamma) - J`` serves all stages. This is the formulation of
    Hairer & Wanner, *Solving ODEs II*, 2nd ed., Sec. IV.7, eq. (7.25), with
    ``A = (alpha_ij) Gamma^{-1}``, ``C = diag(1/gamma) - Gamma^{-1}``,
    ``m = b Gamma^{-1}`` in terms of the untransformed coefficients
    ``alpha_ij, gamma_ij, b_i``; ``alpha[i] = sum_j alpha_ij`` and
    ``gamma_sum[i] = sum_{j<=i} gamma_ij``. These identities are checked on
    construction.

    Dense output (Hairer's ``CONTRO`` in ``rodas.f`` for two rows of ``H``;
    RODAS5's continuous extension has three)::

        y(t + theta*h) = (1 - theta) * y + theta * y_new
                         + theta*(1 - theta) * sum_r theta**r * sum_j H[r, j] U[j]

    Parameters
    ----------
    name : str
    order, error_order, dense_order : int
        Orders of ``y_new``, of the embedded ``y_hat`` and of the interpolant.
    gamma : float
        Diagonal ``gamma_ii`` (the same for all stages).
    A, C : ndarray, shape (s, s)
        Strictly lower triangular transformed coefficients ``a_ij``, ``c_ij``.
    alpha, gamma_sum : ndarray, shape (s,)
        Stage times ``alpha_i`` and ``f_t`` weights ``gamma_i``.
    m, e : ndarray, shape (s,)
        Solution weights and error weights ``m - m_hat``.
    H : ndarray, shape (d, s)
        Dense-output coefficients (``d_2j``, ``d_3j`` of ``rodas.f`` for RODAS4);
        the interpolant is a polynomial of degree ``d + 1`` in ``theta``.

    Raises
    ------
    ValueError
        If a shape or an identity check fails; the message names the tableau.
    """

    name: str
    order: int
    error_order: int
    dense_order: int
    gamma: float
    A: np.ndarray
    C: np.ndarray
    alpha: np.ndarray
    gamma_sum: np.ndarray
    m: np.ndarray
    e: np.ndarray
    H: np.ndarray

    def __post_init__(self) -> None:
        for field, ndim in (("A", 2), ("C", 2), ("alpha", 1), ("gamma_sum", 1),
                            ("m", 1), ("e", 1), ("H", 2)):
            object.__setattr__(self, field, _frozen_array(self.name, field, getattr(self, field), ndim))
        object.__setattr__(self, "gamma", float(self.gamma))
        s = self.m.shape[0]
        for field, shape in (("A", (s, s)), ("C", (s, s)), ("alpha", (s,)),
                             ("gamma_sum", (s,)), ("e", (s,)), ("H", (max(1, len(self.H)), s))):
            if getattr(self, field).shape != shape:
                _fail(self.name, f"`{field}` must have shape {shape}, got {getattr(self, field).shape}.")
        for field in ("A", "C"):
            if np.any(np.triu(getattr(self, field)) != 0.0):
                _fail(self.name, f"`{field}` must be strictly lower triangular.")
        self._check_identities()

    def untransformed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Classical coefficients ``(alpha_ij, Gamma, b, b_hat)``.

        Returns
        -------
        alpha_ij : ndarray, shape (s, s)
        Gamma : ndarray, shape (s, s)
            Lower triangular with ``gamma`` on the diagonal.
        b, b_hat : ndarray, shape (s,)
        """
        s = self.m.shape[0]
        Gamma = np.linalg.inv(np.eye(s) / self.gamma - self.C)
        return self.A @ Gamma, Gamma, self.m @ Gamma, (self.m - self.e) @ Gamma

    def _check_identities(self) -> None:
        alpha_ij, Gamma, b, b_hat = self.untransformed()
        checks = (
            ("alpha != row sums of A Gamma", alpha_ij.sum(axis=1), self.alpha),
            ("gamma_sum != row sums of Gamma", Gamma.sum(axis=1), self.gamma_sum),
            ("sum(m Gamma) != 1", b.sum(), 1.0),
            ("sum((m - e) Gamma) != 1", b_hat.sum(), 1.0),
        )
        for what, value, target in checks:
            if np.max(np.abs(np.asarray(value) - target)) > _IDENTITY_TOL:
                _fail(self.name, f"{what} (error {np.max(np.abs(value - target)):.2e}).")


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class DIRKTableau:
    r"""Diagonally implicit Runge--Kutta method (ESDIRK/SDIRK) as data.

    Stage equations for a step of size ``h`` from ``(t, y)``::

        Z[i] = y + h * sum_{j<i} A[i, j] k[j] + h * gamma * k[i],   k[i] = f(t + c[i]*h, Z[i])
        y_new = y + h * sum_i b[i] k[i]
        err   =     h * sum_i e[i] k[i]        # e = b - b_hat

    Each implicit stage solves ``Z - h*gamma*f(t + c[i]*h, Z) = y + h*sum_{j<i} A[i, j] k[j]``
    (Newton matrix ``I - h*gamma*J``, shared by all stages). With an explicit
    first stage (``A[0, 0] == 0``), ``k[0] = f(t, y)``. When ``stiffly_accurate``
    (``b == A[s-1]``), ``y_new == Z[s-1]`` and ``k[s-1] == f(t + h, y_new)``,
    which is ``k[0]`` of the next step. Dense output uses the same ``P`` form as
    :class:`~sciode.methods.tableaus.Tableau`:
    ``y(t + theta*h) = y + h * sum_i k[i] * sum_j P[i, j] theta**(j+1)``.

    Parameters
    ----------
    name : str
    order, error_order, dense_order : int
    gamma : float
        The (common) implicit diagonal entry.
    A : ndarray, shape (s, s)
        Lower triangular, diagonal ``(0 or gamma, gamma, ..., gamma)``.
    b, c, e : ndarray, shape (s,)
    P : ndarray, shape (s, d)
    explicit_first_stage, stiffly_accurate : bool
        Structural claims, checked on construction.

    Raises
    ------
    ValueError
        If a shape or an identity check fails; the message names the tableau.
    """

    name: str
    order: int
    error_order: int
    dense_order: int
    gamma: float
    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    e: np.ndarray
    P: np.ndarray
    explicit_first_stage: bool
    stiffly_accurate: bool

    def __post_init__(self) -> None:
        for field, ndim in (("A", 2), ("b", 1), ("c", 1), ("e", 1), ("P", 2)):
            object.__setattr__(self, field, _frozen_array(self.name, field, getattr(self, field), ndim))
        object.__setattr__(self, "gamma", float(self.gamma))
        s = self.b.shape[0]
        for field, shape in (("A", (s, s)), ("c", (s,)), ("e", (s,))):
            if getattr(self, field).shape != shape:
                _fail(self.name, f"`{field}` must have shape {shape}, got {getattr(self, field).shape}.")
        if self.P.shape[0] != s or self.P.shape[1] < self.dense_order:
            _fail(self.name, f"`P` must have shape ({s}, >= dense_order), got {self.P.shape}.")
        self._check_structure()
        self._check_sums()

    def _check_structure(self) -> None:
        if np.any(np.triu(self.A, k=1) != 0.0):
            _fail(self.name, "`A` must be lower triangular (diagonally implicit).")
        diag = np.diag(self.A)
        first = 0.0 if self.explicit_first_stage else self.gamma
        if diag[0] != first or np.any(diag[1:] != self.gamma):
            _fail(self.name, f"diagonal of `A` must be ({first}, gamma, ..., gamma), got {diag}.")
        if self.stiffly_accurate and not np.array_equal(self.A[-1], self.b):
            _fail(self.name, "`stiffly_accurate=True` requires b == A[s-1].")

    def _check_sums(self) -> None:
        checks = (
            ("row sums of `A` differ from `c`", self.A.sum(axis=1), self.c),
            ("sum(b) != 1", self.b.sum(), 1.0),
            ("sum(e) != 0", self.e.sum(), 0.0),
            ("the interpolant at theta=1 does not reproduce `b`", self.P.sum(axis=1), self.b),
        )
        for what, value, target in checks:
            if np.max(np.abs(np.asarray(value) - target)) > 1e-14:
                _fail(self.name, f"{what}.")

    @property
    def s(self) -> int:
        """Number of stages."""
        return self.b.shape[0]


# -- RODAS4 --------------------------------------------------------------------
# E. Hairer, G. Wanner, Solving ODEs II, 2nd ed., Springer 1996, Sec. IV.7,
# method "RODAS"; constants of subroutine RODCOE (METH = 1) in Hairer's
# Fortran code rodas.f. Stages 5 and 6 evaluate f at t + h; Y6 = Y5 + U5 and
# y_new = Y6 + U6 (stiffly accurate), so the error estimate is U6.

_RODAS4_A5 = [1.221224509226641, 6.019134481288629, 12.53708332932087, -0.6878860361058950]
RODAS4 = RosenbrockTableau(
    name="rodas4",
    order=4,
    error_order=3,
    dense_order=3,
    gamma=0.25,
    A=[
        [0.0] * 6,
        [1.544, 0, 0, 0, 0, 0],
        [0.9466785280815826, 0.2557011698983284, 0, 0, 0, 0],
        [3.314825187068521, 2.896124015972201, 0.9986419139977817, 0, 0, 0],
        _RODAS4_A5 + [0.0, 0.0],
        _RODAS4_A5 + [1.0, 0.0],
    ],
    C=[
        [0.0] * 6,
        [-5.6688, 0, 0, 0, 0, 0],
        [-2.430093356833875, -0.2063599157091915, 0, 0, 0, 0],
        [-0.1073529058151375, -9.594562251023355, -20.47028614809616, 0, 0, 0],
        [7.496443313967647, -10.24680431464352, -33.99990352819905, 11.70890893206160, 0, 0],
        [8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
         -6.058818238834054, 0],
    ],
    alpha=[0.0, 0.386, 0.21, 0.63, 1.0, 1.0],
    gamma_sum=[0.25, -0.1043, 0.1035, -0.3620000000000023e-1, 0.0, 0.0],
    m=_RODAS4_A5 + [1.0, 1.0],
    e=[0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    H=[
        [10.12623508344586, -7.487995877610167, -34.80091861555747, -7.992771707568823,
         1.025137723295662, 0.0],
        [-0.6762803392801253, 6.087714651680015, 16.43084320892478, 24.76722511418386,
         -6.594389125716872, 0.0],
    ],
)

# -- RODAS5 --------------------------------------------------------------------
# G. A. Di Marzo, "RODAS5(4) - Methodes de Rosenbrock d'ordre 5(4) adaptees aux
# problemes differentiels-algebriques", Memoire de diplome, Universite de Geneve,
# 1993: 8 stages, gamma = 0.19, L-stable, stiffly accurate like RODAS4 (stages
# 6-8 evaluate f at t + h; Y7 = Y6 + U6, Y8 = Y7 + U7, y_new = Y8 + U8), so the
# order-4 embedded solution is Y8 and the error estimate is U8. Its classical
# coefficients are alpha_21 = 0.38, ..., b = (0.464601884, 0, -1.72090751,
# 0.29104802, 1.82177886, -0.02674488, -0.01977638, 0.19); the values below are
# the transformed ones (A, C, alpha, gamma_sum as for RODAS4) as tabulated to 16
# digits in the literature: Rodas5Tableau of SciML's OrdinaryDiffEq.jl
# (DifferentialEquations.jl; C. Rackauckas, Q. Nie, J. Open Res. Softw. 5 (2017)
# 15), whose comment also lists Di Marzo's classical alpha_ij, beta_ij, b_i. The
# dense-output rows H (the degree-4 continuous extension used for Rodas5 there,
# order 4) are the h_2j, h_3j, h_4j of that same tableau. tests/test_tableaus.py checks the order conditions: 5 for
# m, 4 for m - e and 4 for the interpolant at any theta.

_RODAS5_A6 = [-14.09640773051259, 6.925207756232704, -41.47510893210728, 2.343771018586405,
              24.13215229196062]
RODAS5 = RosenbrockTableau(
    name="rodas5",
    order=5,
    error_order=4,
    dense_order=4,
    gamma=0.19,
    A=[
        [0.0] * 8,
        [2.0, 0, 0, 0, 0, 0, 0, 0],
        [3.040894194418781, 1.041747909077569, 0, 0, 0, 0, 0, 0],
        [2.576417536461461, 1.622083060776640, -0.9089668560264532, 0, 0, 0, 0, 0],
        [2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443,
         0, 0, 0, 0],
        _RODAS5_A6 + [0.0, 0.0, 0.0],
        _RODAS5_A6 + [1.0, 0.0, 0.0],
        _RODAS5_A6 + [1.0, 1.0, 0.0],
    ],
    C=[
        [0.0] * 8,
        [-10.31323885133993, 0, 0, 0, 0, 0, 0, 0],
        [-21.04823117650003, -7.234992135176716, 0, 0, 0, 0, 0, 0],
        [32.22751541853323, -4.943732386540191, 19.44922031041879, 0, 0, 0, 0, 0],
        [-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146,
         0, 0, 0, 0],
        [-46.22004352711257, -17.49534862857472, -289.6389582892057, 93.60855400400906,
         318.3822534212147, 0, 0, 0],
        [34.20013733472935, -14.15535402717690, 57.82335640988400, 25.83362985412365,
         1.408950972071624, -6.551835421242162, 0, 0],
        [42.57076742291101, -13.80770672017997, 93.98938432427124, 18.77919633714503,
         -31.58359187223370, -6.685968952921985, -5.810979938412932, 0],
    ],
    alpha=[0.0, 0.38, 0.3878509998321533, 0.4839718937873840, 0.4570477008819580, 1.0, 1.0, 1.0],
    gamma_sum=[0.19, -0.1823079225333714636, -0.319231832186874912, 0.3449828624725343,
               -0.377417564392089818, 0.0, 0.0, 0.0],
    m=_RODAS5_A6 + [1.0, 1.0, 1.0],
    e=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    H=[
        [27.354592673333357, -6.925207756232857, 26.40037733258859, 0.5635230501052979,
         -4.699151156849391, -1.6008677469422725, -1.5306074446748028, -1.3929872940716344],
        [44.19024239501722, 1.3677947663381929e-13, 202.93261852171622, -35.5669339789154,
         -181.91095152160645, 3.4116351403665033, 2.5793540257308067, 2.2435122582734066],
        [-44.0988150021747, -5.755396159656812e-13, -181.26175034586677, 56.99302194811676,
         183.21182741427398, -7.480257918273637, -5.792426076169686, -5.32503859794143],
    ],
)

# -- Kvaerno5 ------------------------------------------------------------------
# A. Kvaerno, "Singly diagonally implicit Runge-Kutta methods with an explicit
# first stage", BIT 44 (2004) 489-502: the 5(4) method, 7 stages, gamma = 0.26,
# stiffly accurate; the embedded 4th-order solution is stage 6
# (b_hat = A[5] with b_hat[6] = 0). Values as in diffrax's kvaerno5.py.
# Dense output: cubic Hermite on k[0] = f(t, y) and k[6] = f(t + h, y_new).

_KV5_GAMMA = 0.26
_KV5_A = np.array([
    [0.0, 0, 0, 0, 0, 0, 0],
    [_KV5_GAMMA, _KV5_GAMMA, 0, 0, 0, 0, 0],
    [0.13, 0.84033320996790809, _KV5_GAMMA, 0, 0, 0, 0],
    [0.22371961478320505, 0.47675532319799699, -0.06470895363112615, _KV5_GAMMA, 0, 0, 0],
    [0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998,
     _KV5_GAMMA, 0, 0],
    [0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676,
     _KV5_GAMMA, 0],
    [0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
     0.06962479448202728, _KV5_GAMMA],
])
_KV5_B_HAT = np.append(_KV5_A[5, :6], 0.0)
KVAERNO5 = DIRKTableau(
    name="kvaerno5",
    order=5,
    error_order=4,
    dense_order=3,
    gamma=_KV5_GAMMA,
    A=_KV5_A,
    b=_KV5_A[6],
    c=[0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0],
    e=_KV5_A[6] - _KV5_B_HAT,
    P=_hermite_P(_KV5_A[6], fsal_index=6),
    explicit_first_stage=True,
    stiffly_accurate=True,
)

#: Stiff methods by registry name.
STIFF_TABLEAUS: dict[str, RosenbrockTableau | DIRKTableau] = {
    tab.name: tab for tab in (RODAS4, RODAS5, KVAERNO5)
}
