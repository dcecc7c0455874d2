"""Explicit Runge--Kutta methods as data.

Each method is one frozen :class:`Tableau`, validated on construction (row sums
of ``A`` equal ``c``, ``sum(b) == 1``, ``sum(e) == 0``, the interpolant
reproduces ``b`` at ``theta = 1``). The Numba and the torch stepping loops
read the same constants; nothing here knows about a loop.

Stage convention (shared by every explicit tableau)
---------------------------------------------------
For a step of size ``h`` from ``(t, y)``::

    k[i] = f(t + c[i]*h, y + h * sum_{j<i} A[i, j] * k[j]),   i = 0 .. s-1
    y_new = y + h * sum_i b[i] * k[i]
    err   = h * sum_i e[i] * k[i]            # e = b - b_hat (adaptive only)

FSAL methods (``fsal=True``) have ``A[s-1, :] == b``, ``c[s-1] == 1`` and
``b[s-1] == 0``: the last stage ``k[s-1]`` is ``f(t+h, y_new)``, which is
``k[0]`` of the next step. The FSAL stage index is always ``s - 1``.

Dense output
------------
Extra dense-output stages (only ``dop853`` has them) are computed after an
accepted step::

    k[s+m] = f(t + c_extra[m]*h, y + h * sum_{j<s+m} A_extra[m, j] * k[j])

and the continuous extension over all ``s_total = s + s_extra`` stages is::

    y(t + theta*h) = y + h * sum_i k[i] * sum_j P[i, j] * theta**(j+1)

(:func:`dense_weights` evaluates the inner sum.)

DOP853 error estimate
---------------------
``dop853`` carries two estimators over its 13 main stages: ``e`` (``E5``, 5th
order) and ``e3`` (``E3 = b - bhh``, 3rd order). With
``sc = atol + rtol * max(|y|, |y_new|)`` and ``n`` the number of states::

    err5 = sum_k (sum_i e[i]  * k[i, k] / sc[k])**2
    err3 = sum_k (sum_i e3[i] * k[i, k] / sc[k])**2
    err  = |h| * err5 / sqrt(n * (err5 + 0.01 * err3))     # 0 when both are 0

(Hairer's ``dop853.f``; SciPy's ``DOP853._estimate_error_norm``.) The step is
accepted when ``err <= 1``. The combined estimate behaves like ``O(h**8)``, so
the step-size controller uses the exponent ``1/8`` (Hairer's ``EXPO1``; SciPy's
``error_estimator_order = 7``), not ``1/(error_order + 1)``. For every other
adaptive method the usual exponent ``1/(error_order + 1)`` applies.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "Tableau",
    "dense_weights",
    "EULER",
    "MIDPOINT",
    "RK4",
    "BOSH3",
    "DOPRI5",
    "TSIT5",
    "DOP853",
    "EXPLICIT_TABLEAUS",
]

# Tolerances of the construction-time checks. Published coefficients are given
# to ~16-30 digits; the checks scale with the size of the entries involved
# because DOP853 rows contain entries of magnitude ~40.
_ROW_SUM_TOL = 1e-14
_SUM_TOL = 1e-14
_INTERP_TOL = 1e-13


def _frozen_array(name: str, field: str, value, ndim: int) -> np.ndarray:
    """Return ``value`` as a read-only, C-contiguous float64 array of ``ndim``."""
    arr = np.array(value, dtype=np.float64, order="C", copy=True)
    if arr.ndim != ndim:
        raise ValueError(
            f"Tableau `{name}`: `{field}` must be {ndim}-D, got shape {arr.shape}."
        )
    arr.flags.writeable = False
    return arr


def _scaled_close(value: np.ndarray, target: np.ndarray, scale: np.ndarray, tol: float) -> bool:
    return bool(np.all(np.abs(value - target) <= tol * np.maximum(1.0, scale)))


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Tableau:
    """Butcher tableau of an explicit Runge--Kutta method with dense output.

    See the module docstring for the exact stage, FSAL and dense-output
    equations these arrays are meant for.

    Parameters
    ----------
    name : str
        Registry name (lower case).
    order : int
        Order of the propagated solution ``y_new``.
    error_order : int
        Order of the embedded solution ``b_hat = b - e``; 0 for fixed-step
        methods.
    A : ndarray, shape (s, s)
        Strictly lower-triangular stage coefficients.
    b : ndarray, shape (s,)
        Weights of the propagated solution.
    c : ndarray, shape (s,)
        Nodes; ``c[i] == sum(A[i])``.
    e : ndarray, shape (s,)
        Error weights ``b - b_hat``; zeros for fixed-step methods. For
        ``dop853`` this is the 5th-order estimator ``E5``.
    fsal : bool
        First same as last: stage ``s - 1`` is ``f(t + h, y_new)``.
    adaptive : bool
        Whether ``e`` is a usable error estimator.
    dense_order : int
        Order of the continuous extension ``P``.
    P : ndarray, shape (s_total, d)
        Dense-output polynomial coefficients (powers ``theta**1 .. theta**d``).
    A_extra : ndarray, shape (s_extra, s_total), optional
        Coefficients of the extra dense-output stages. Row ``m`` may use the
        ``s`` main stages and extra stages ``< m``. Default: no extra stages.
    c_extra : ndarray, shape (s_extra,), optional
        Nodes of the extra stages.
    e3 : ndarray, shape (s,) or None
        Second (3rd-order) error estimator; only ``dop853`` has one.
    controller_q : float
        The step controller's exponent denominator ``q`` (``h_new = h SAFETY
        err^(-1/q + 0.75 beta) err_prev^beta``): 0 (the default) means the
        elementary controller's ``error_order + 1``; ``dop853`` sets 8 (Hairer's
        ``EXPO1 = 1/8`` for its combined 5th/3rd-order estimate).
    pi_beta : float
        The PI controller's stabilisation ``beta`` (Hairer, Norsett & Wanner,
        *Solving ODEs I*, Sec. II.4: ``BETA = 0.04`` in ``dopri5.f``); 0 (the
        default) is the elementary controller.  Every backend reads these two
        numbers from here.

    Raises
    ------
    ValueError
        If a shape or an identity check fails; the message names the tableau.
    """

    name: str
    order: int
    error_order: int
    A: np.ndarray
    b: np.ndarray
    c: np.ndarray
    e: np.ndarray
    fsal: bool
    adaptive: bool
    dense_order: int
    P: np.ndarray
    A_extra: np.ndarray | None = None
    c_extra: np.ndarray | None = None
    e3: np.ndarray | None = None
    controller_q: float = 0.0
    pi_beta: float = 0.0

    def __post_init__(self) -> None:
        if self.controller_q == 0.0:
            self._set("controller_q", float(self.error_order + 1))
        self._freeze_arrays()
        self._check_shapes()
        self._check_stages()
        self._check_weights()
        self._check_dense()

    # -- construction helpers -------------------------------------------------

    def _set(self, field: str, value) -> None:
        object.__setattr__(self, field, value)

    def _fail(self, what: str) -> None:
        raise ValueError(f"Tableau `{self.name}`: {what}")

    def _freeze_arrays(self) -> None:
        for field, ndim in (("A", 2), ("b", 1), ("c", 1), ("e", 1), ("P", 2)):
            self._set(field, _frozen_array(self.name, field, getattr(self, field), ndim))
        s_total = self.P.shape[0]
        if self.A_extra is None:
            self._set("A_extra", np.zeros((0, s_total)))
        if self.c_extra is None:
            self._set("c_extra", np.zeros(0))
        self._set("A_extra", _frozen_array(self.name, "A_extra", self.A_extra, 2))
        self._set("c_extra", _frozen_array(self.name, "c_extra", self.c_extra, 1))
        if self.e3 is not None:
            self._set("e3", _frozen_array(self.name, "e3", self.e3, 1))

    def _check_shapes(self) -> None:
        s = self.b.shape[0]
        if self.A.shape != (s, s):
            self._fail(f"`A` must have shape ({s}, {s}), got {self.A.shape}.")
        for field in ("c", "e"):
            if getattr(self, field).shape != (s,):
                self._fail(f"`{field}` must have shape ({s},), got {getattr(self, field).shape}.")
        if self.e3 is not None and self.e3.shape != (s,):
            self._fail(f"`e3` must have shape ({s},), got {self.e3.shape}.")
        s_extra = self.c_extra.shape[0]
        if self.A_extra.shape != (s_extra, s + s_extra):
            self._fail(
                f"`A_extra` must have shape ({s_extra}, {s + s_extra}), got {self.A_extra.shape}."
            )
        if self.P.shape[0] != s + s_extra:
            self._fail(f"`P` must have {s + s_extra} rows (s + s_extra), got {self.P.shape[0]}.")
        if self.P.shape[1] < max(self.dense_order, 1):
            self._fail(f"`P` has degree {self.P.shape[1]} < dense_order={self.dense_order}.")

    def _check_stages(self) -> None:
        s = self.s
        if np.any(np.triu(self.A) != 0.0):
            self._fail("`A` must be strictly lower triangular (explicit method).")
        if not _scaled_close(self.A.sum(axis=1), self.c, np.abs(self.A).sum(axis=1), _ROW_SUM_TOL):
            self._fail("row sums of `A` differ from `c`.")
        if self.s_extra:
            upper = np.triu(self.A_extra, k=s)
            if np.any(upper != 0.0):
                self._fail("`A_extra` row m may only use stages < s + m.")
            if not _scaled_close(
                self.A_extra.sum(axis=1), self.c_extra, np.abs(self.A_extra).sum(axis=1), _ROW_SUM_TOL
            ):
                self._fail("row sums of `A_extra` differ from `c_extra`.")
        if self.fsal and not (
            np.array_equal(self.A[-1], self.b) and self.c[-1] == 1.0 and self.b[-1] == 0.0
        ):
            self._fail("`fsal=True` requires A[s-1] == b, c[s-1] == 1 and b[s-1] == 0.")

    def _check_weights(self) -> None:
        if abs(self.b.sum() - 1.0) > _SUM_TOL * max(1.0, np.abs(self.b).sum()):
            self._fail(f"sum(b) = {self.b.sum()!r}, expected 1.")
        estimators = [("e", self.e)] + ([("e3", self.e3)] if self.e3 is not None else [])
        if self.adaptive:
            if self.error_order < 1:
                self._fail("an adaptive method needs error_order >= 1.")
            for field, weights in estimators:
                if not np.any(weights):
                    self._fail(f"`{field}` is all zeros for an adaptive method.")
                if abs(weights.sum()) > _SUM_TOL * max(1.0, np.abs(weights).sum()):
                    self._fail(f"sum({field}) = {weights.sum()!r}, expected 0.")
            if not self.controller_q >= 1.0:
                self._fail(f"controller_q = {self.controller_q!r}, expected >= 1.")
            if not (self.pi_beta >= 0.0 and 0.75 * self.pi_beta < 1.0 / self.controller_q):
                # the error's exponent 1/q - 0.75 beta must stay positive
                self._fail(f"pi_beta = {self.pi_beta!r}: expected 0 <= 0.75 pi_beta < 1/controller_q.")
        elif np.any(self.e) or self.e3 is not None or self.error_order != 0:
            self._fail("a fixed-step method needs e == 0, e3 None and error_order == 0.")

    def _check_dense(self) -> None:
        at_one = self.P.sum(axis=1)
        target = np.concatenate([self.b, np.zeros(self.s_extra)])
        if not _scaled_close(at_one, target, np.abs(self.P).sum(axis=1), _INTERP_TOL):
            self._fail("the interpolant at theta=1 does not reproduce `b` (sum_j P[i, j] != b_i).")

    # -- derived sizes --------------------------------------------------------

    @property
    def s(self) -> int:
        """Number of main stages (including the FSAL stage)."""
        return self.b.shape[0]

    @property
    def s_extra(self) -> int:
        """Number of extra dense-output stages."""
        return self.c_extra.shape[0]

    @property
    def s_total(self) -> int:
        """``s + s_extra``: the number of rows of ``P``."""
        return self.P.shape[0]

    @property
    def b_hat(self) -> np.ndarray:
        """Weights of the embedded solution, ``b - e``."""
        return self.b - self.e


def dense_weights(tab: Tableau, theta: float) -> np.ndarray:
    """Weights of the continuous extension at ``theta``.

    Parameters
    ----------
    tab : Tableau
        The method.
    theta : float
        Fraction of the step, in ``[0, 1]``.

    Returns
    -------
    ndarray, shape (s_total,)
        ``w[i] = sum_j P[i, j] * theta**(j+1)``, so that
        ``y(t + theta*h) = y + h * sum_i w[i] * k[i]``.
    """
    powers = theta ** np.arange(1, tab.P.shape[1] + 1)
    return tab.P @ powers


def _hermite_P(b, fsal_index: int, D=()) -> np.ndarray:
    """Dense-output matrix of Hairer's nested Hermite form.

    Hairer's DOPRI5/DOP853 codes (``CONTD5``/``CONTD8``) evaluate, with
    ``th1 = 1 - theta``, ``dy = y_new - y = h*sum(b*k)`` and ``f0 = k[0]``,
    ``f1 = k[fsal_index] = f(t+h, y_new)``::

        y(theta) = y + theta*(F0 + th1*(F1 + theta*(F2 + th1*(F3 + theta*(F4 + ...)))))
        F0 = dy,  F1 = h*f0 - dy,  F2 = 2*dy - h*(f0 + f1),  F(3+r) = h * sum_i D[r, i] k[i]

    With no ``D`` rows this is the cubic Hermite interpolant through
    ``(y, f0)`` and ``(y_new, f1)``. Every ``F`` is linear in ``h*k``, so
    expanding the nested product gives the ``P`` matrix of :class:`Tableau`.

    Parameters
    ----------
    b : array_like, shape (s_total,)
        Solution weights padded with zeros for extra stages.
    fsal_index : int
        Index of the stage holding ``f(t + h, y_new)``.
    D : sequence of array_like, shape (s_total,)
        Coefficient rows of the higher terms ``F3, F4, ...``.
    """
    b = np.asarray(b, dtype=np.float64)
    first = np.zeros_like(b)
    first[0] = 1.0
    last = np.zeros_like(b)
    last[fsal_index] = 1.0
    terms = [b, first - b, 2.0 * b - first - last, *[np.asarray(r, dtype=np.float64) for r in D]]
    P = np.zeros((b.shape[0], len(terms)))
    weight = np.array([0.0, 1.0])  # theta, lowest power first
    for m, coeffs in enumerate(terms):
        if m > 0:  # alternate factors (1 - theta), theta, (1 - theta), ...
            weight = np.polynomial.polynomial.polymul(weight, [1.0, -1.0] if m % 2 else [0.0, 1.0])
        P[:, : weight.shape[0] - 1] += np.outer(coeffs, weight[1:])
    return P


def _lower(rows, s: int) -> np.ndarray:
    """Square matrix from sparse rows ``{i: {j: a_ij}}`` (zero elsewhere)."""
    out = np.zeros((s, s))
    for i, row in rows.items():
        for j, value in row.items():
            out[i, j] = value
    return out


def _vector(entries, n: int) -> np.ndarray:
    out = np.zeros(n)
    for j, value in entries.items():
        out[j] = value
    return out


# -- Euler ---------------------------------------------------------------------

EULER = Tableau(
    name="euler",
    order=1,
    error_order=0,
    A=[[0.0]],
    b=[1.0],
    c=[0.0],
    e=[0.0],
    fsal=False,
    adaptive=False,
    dense_order=1,
    P=[[1.0]],  # linear interpolation: y + theta*h*k0
)

# -- explicit midpoint ---------------------------------------------------------
# Runge's 2nd-order method (torchdiffeq's `midpoint`). Dense output: the
# 2nd-order continuous extension b1(th) = th - th^2, b2(th) = th^2 (it satisfies
# sum b_i(th) = th and sum b_i(th) c_i = th^2/2, and reproduces b at th = 1).

MIDPOINT = Tableau(
    name="midpoint",
    order=2,
    error_order=0,
    A=[[0.0, 0.0], [0.5, 0.0]],
    b=[0.0, 1.0],
    c=[0.0, 0.5],
    e=[0.0, 0.0],
    fsal=False,
    adaptive=False,
    dense_order=2,
    P=[[1.0, -1.0], [0.0, 1.0]],
)

# -- classical RK4 -------------------------------------------------------------
# Dense output: the standard 3rd-order continuous extension (Hairer, Norsett &
# Wanner, Solving ODEs I, 2nd ed., Sec. II.6, eq. (6.18)):
#   b1(th) = th - 3 th^2/2 + 2 th^3/3,  b2 = b3 = th^2 - 2 th^3/3,
#   b4(th) = -th^2/2 + 2 th^3/3.

RK4 = Tableau(
    name="rk4",
    order=4,
    error_order=0,
    A=[
        [0.0, 0.0, 0.0, 0.0],
        [0.5, 0.0, 0.0, 0.0],
        [0.0, 0.5, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
    ],
    b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
    c=[0.0, 0.5, 0.5, 1.0],
    e=[0.0, 0.0, 0.0, 0.0],
    fsal=False,
    adaptive=False,
    dense_order=3,
    P=[
        [1.0, -3 / 2, 2 / 3],
        [0.0, 1.0, -2 / 3],
        [0.0, 1.0, -2 / 3],
        [0.0, -1 / 2, 2 / 3],
    ],
)

# -- Bogacki--Shampine 3(2) ----------------------------------------------------
# P. Bogacki, L. F. Shampine, "A 3(2) pair of Runge-Kutta formulas",
# Appl. Math. Lett. 2 (1989) 321-325. The 2nd-order embedded weights are
# b_hat = (7/24, 1/4, 1/3, 1/8). Dense output: cubic Hermite on k0 and the FSAL
# stage k3 = f(t+h, y_new).

_BOSH3_B = [2 / 9, 1 / 3, 4 / 9, 0.0]
BOSH3 = Tableau(
    name="bosh3",
    order=3,
    error_order=2,
    A=[
        [0.0, 0.0, 0.0, 0.0],
        [1 / 2, 0.0, 0.0, 0.0],
        [0.0, 3 / 4, 0.0, 0.0],
        _BOSH3_B,
    ],
    b=_BOSH3_B,
    c=[0.0, 1 / 2, 3 / 4, 1.0],
    e=[2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8],
    fsal=True,
    adaptive=True,
    dense_order=3,
    P=_hermite_P(_BOSH3_B, fsal_index=3),
)

# -- Dormand--Prince 5(4) ------------------------------------------------------
# J. R. Dormand, P. J. Prince, "A family of embedded Runge-Kutta formulae",
# J. Comput. Appl. Math. 6 (1980) 19-26. b_hat is Dormand-Prince's 4th-order
# row (5179/57600, 0, 7571/16695, 393/640, -92097/339200, 187/2100, 1/40).
# Dense output: Shampine's 4th-order interpolant, L. F. Shampine, "Some
# practical Runge-Kutta formulas", Math. Comp. 46 (1986) 135-150, in the form
# of Hairer's DOPRI5 code (CONTD5, coefficients D1..D7 of dopri5.f), which is
# also what SciPy's RK45 uses.

_DOPRI5_B = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DOPRI5_B_HAT = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]
_DOPRI5_D = [
    -12715105075 / 11282082432,
    0.0,
    87487479700 / 32700410799,
    -10690763975 / 1880347072,
    701980252875 / 199316789632,
    -1453857185 / 822651844,
    69997945 / 29380423,
]
DOPRI5 = Tableau(
    name="dopri5",
    order=5,
    error_order=4,
    A=[
        [0.0] * 7,
        [1 / 5, 0, 0, 0, 0, 0, 0],
        [3 / 40, 9 / 40, 0, 0, 0, 0, 0],
        [44 / 45, -56 / 15, 32 / 9, 0, 0, 0, 0],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0, 0, 0],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0, 0],
        _DOPRI5_B,
    ],
    b=_DOPRI5_B,
    c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
    e=np.subtract(_DOPRI5_B, _DOPRI5_B_HAT),
    fsal=True,
    adaptive=True,
    dense_order=4,
    P=_hermite_P(_DOPRI5_B, fsal_index=6, D=[_DOPRI5_D]),
    pi_beta=0.04,  # dopri5.f's BETA
)

# -- Tsitouras 5(4) ------------------------------------------------------------
# Ch. Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first
# column simplifying assumption", Comput. Math. Appl. 62 (2011) 770-775,
# Table 1 (double-precision values as in OrdinaryDiffEq.jl's Tsit5 tableau).
# The paper's "b_hat" column lists the error weights b - b_hat directly (they
# sum to 0); that is what `e` stores. Sign check: b - e satisfies the order-4
# conditions (tests/test_tableaus.py), b + e does not. Dense output: the
# paper's 4th-order interpolant, b_i(theta) = sum_j r_ij theta^j, i.e. P = r.

_TSIT5_B = [
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
]
TSIT5 = Tableau(
    name="tsit5",
    order=5,
    error_order=4,
    A=[
        [0.0] * 7,
        [0.161, 0, 0, 0, 0, 0, 0],
        [-0.008480655492356989, 0.335480655492357, 0, 0, 0, 0, 0],
        [2.8971530571054935, -6.359448489975075, 4.3622954328695815, 0, 0, 0, 0],
        [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525, 0, 0, 0],
        [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401,
         -0.028269050394068383, 0, 0],
        _TSIT5_B,
    ],
    b=_TSIT5_B,
    c=[0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0],
    e=[
        -0.00178001105222577714,
        -0.0008164344596567469,
        0.007880878010261995,
        -0.1447110071732629,
        0.5823571654525552,
        -0.45808210592918697,
        1 / 66,
    ],
    fsal=True,
    adaptive=True,
    dense_order=4,
    P=[
        [1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216],
        [0.0, 0.13169999999999998, -0.2234, 0.1017],
        [0.0, 3.9302962368947516, -5.941033872131505, 2.490627285651253],
        [0.0, -12.411077166933676, 30.33818863028232, -16.548102889244902],
        [0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928],
        [0.0, -27.896526289197286, 65.09189467479366, -34.87065786149661],
        [0.0, 1.5, -4.0, 2.5],
    ],
    pi_beta=0.04,  # the PI controller of dopri5.f, as for every 5(4) pair here
)

# -- DOP853 --------------------------------------------------------------------
# E. Hairer, S. P. Norsett, G. Wanner, Solving ODEs I, 2nd ed., Springer 1993,
# Sec. II.10; constants of Hairer's Fortran code dop853.f (Dormand & Prince's
# 8(5,3) pair), written as float64 (cross-checked against SciPy's
# dop853_coefficients.py, which transcribes the same source). Stage indices are
# 0-based: 0..11 main stages, 12 = FSAL stage f(t+h, y_new) (dop853.f's K4
# after the step), 13..15 = extra dense-output stages (c = 0.1, 0.2, 7/9).
# BHH are the weights of the 3rd-order embedded formula (e3 = b - bhh);
# ER are the 5th-order error weights (e = ER).
_DOP853_C = [
    0.0,
    0.05260015195876773,
    0.0789002279381516,
    0.1183503419072274,
    0.2816496580927726,
    0.3333333333333333,
    0.25,
    0.3076923076923077,
    0.6512820512820513,
    0.6,
    0.8571428571428571,
    1.0,
]
_DOP853_A_ROWS = {
    1: {0: 0.05260015195876773},
    2: {0: 0.0197250569845379, 1: 0.0591751709536137},
    3: {0: 0.02958758547680685, 2: 0.08876275643042054},
    4: {0: 0.2413651341592667, 2: -0.8845494793282861, 3: 0.924834003261792},
    5: {0: 0.037037037037037035, 3: 0.17082860872947386, 4: 0.12546768756682242},
    6: {0: 0.037109375, 3: 0.17025221101954405, 4: 0.06021653898045596, 5: -0.017578125},
    7: {0: 0.03709200011850479, 3: 0.17038392571223998, 4: 0.10726203044637328, 5: -0.015319437748624402, 6: 0.008273789163814023},
    8: {0: 0.6241109587160757, 3: -3.3608926294469414, 4: -0.868219346841726, 5: 27.59209969944671, 6: 20.154067550477894, 7: -43.48988418106996},
    9: {0: 0.47766253643826434, 3: -2.4881146199716677, 4: -0.590290826836843, 5: 21.230051448181193, 6: 15.279233632882423, 7: -33.28821096898486, 8: -0.020331201708508627},
    10: {0: -0.9371424300859873, 3: 5.186372428844064, 4: 1.0914373489967295, 5: -8.149787010746927, 6: -18.52006565999696, 7: 22.739487099350505, 8: 2.4936055526796523, 9: -3.0467644718982196},
    11: {0: 2.273310147516538, 3: -10.53449546673725, 4: -2.0008720582248625, 5: -17.9589318631188, 6: 27.94888452941996, 7: -2.8589982771350235, 8: -8.87285693353063, 9: 12.360567175794303, 10: 0.6433927460157636},
}
_DOP853_B = {0: 0.054293734116568765, 5: 4.450312892752409, 6: 1.8915178993145003, 7: -5.801203960010585, 8: 0.3111643669578199, 9: -0.1521609496625161, 10: 0.20136540080403034, 11: 0.04471061572777259}
_DOP853_BHH = {0: 0.2440944881889764, 8: 0.7338466882816118, 11: 0.022058823529411766}
_DOP853_E5 = {0: 0.01312004499419488, 5: -1.2251564463762044, 6: -0.4957589496572502, 7: 1.6643771824549864, 8: -0.35032884874997366, 9: 0.3341791187130175, 10: 0.08192320648511571, 11: -0.022355307863886294}
_DOP853_C_EXTRA = [0.1, 0.2, 0.7777777777777778]
_DOP853_A_EXTRA_ROWS = [
    {0: 0.056167502283047954, 6: 0.25350021021662483, 7: -0.2462390374708025, 8: -0.12419142326381637, 9: 0.15329179827876568, 10: 0.00820105229563469, 11: 0.007567897660545699, 12: -0.008298},
    {0: 0.03183464816350214, 5: 0.028300909672366776, 6: 0.053541988307438566, 7: -0.05492374857139099, 10: -0.00010834732869724932, 11: 0.0003825710908356584, 12: -0.00034046500868740456, 13: 0.1413124436746325},
    {0: -0.42889630158379194, 5: -4.697621415361164, 6: 7.683421196062599, 7: 4.06898981839711, 8: 0.3567271874552811, 12: -0.0013990241651590145, 13: 2.9475147891527724, 14: -9.15095847217987},
]
_DOP853_D_ROWS = [
    {0: -8.428938276109013, 5: 0.5667149535193777, 6: -3.0689499459498917, 7: 2.38466765651207, 8: 2.117034582445028, 9: -0.871391583777973, 10: 2.2404374302607883, 11: 0.6315787787694688, 12: -0.08899033645133331, 13: 18.148505520854727, 14: -9.194632392478356, 15: -4.436036387594894},
    {0: 10.427508642579134, 5: 242.28349177525817, 6: 165.20045171727028, 7: -374.5467547226902, 8: -22.113666853125306, 9: 7.733432668472264, 10: -30.674084731089398, 11: -9.332130526430229, 12: 15.697238121770845, 13: -31.139403219565178, 14: -9.35292435884448, 15: 35.81684148639408},
    {0: 19.985053242002433, 5: -387.0373087493518, 6: -189.17813819516758, 7: 527.8081592054236, 8: -11.57390253995963, 9: 6.8812326946963, 10: -1.0006050966910838, 11: 0.7777137798053443, 12: -2.778205752353508, 13: -60.19669523126412, 14: 84.32040550667716, 15: 11.99229113618279},
    {0: -25.69393346270375, 5: -154.18974869023643, 6: -231.5293791760455, 7: 357.6391179106141, 8: 93.40532418362432, 9: -37.45832313645163, 10: 104.0996495089623, 11: 29.8402934266605, 12: -43.53345659001114, 13: 96.32455395918828, 14: -39.17726167561544, 15: -149.72683625798564},
]

_DOP853_S = 13
_DOP853_S_TOTAL = 16
_DOP853_B_VEC = _vector(_DOP853_B, _DOP853_S)
_DOP853_A = _lower(_DOP853_A_ROWS, _DOP853_S)
_DOP853_A[12] = _DOP853_B_VEC  # FSAL stage: f(t + h, y_new)

DOP853 = Tableau(
    name="dop853",
    order=8,
    error_order=5,
    A=_DOP853_A,
    b=_DOP853_B_VEC,
    c=_DOP853_C + [1.0],
    e=_vector(_DOP853_E5, _DOP853_S),
    e3=_DOP853_B_VEC - _vector(_DOP853_BHH, _DOP853_S),
    controller_q=8.0,  # dop853.f's EXPO1 = 1/8 (SciPy: error_estimator_order = 7)
    fsal=True,
    adaptive=True,
    dense_order=7,
    A_extra=[_vector(row, _DOP853_S_TOTAL) for row in _DOP853_A_EXTRA_ROWS],
    c_extra=_DOP853_C_EXTRA,
    P=_hermite_P(
        _vector(_DOP853_B, _DOP853_S_TOTAL),
        fsal_index=12,
        D=[_vector(row, _DOP853_S_TOTAL) for row in _DOP853_D_ROWS],
    ),
)
#: Explicit methods by registry name (the `method=` strings of `shared/API.md`).
EXPLICIT_TABLEAUS: dict[str, Tableau] = {
    tab.name: tab for tab in (EULER, MIDPOINT, RK4, BOSH3, DOPRI5, TSIT5, DOP853)
}
