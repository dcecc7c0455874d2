"""Linear algebra of the stiff loops: dense and banded LU, and the choice between them.

Both stiff loops solve with the iteration matrix ``M = d I - J`` (``d =
1/(h gamma)``), factored once and used for many right-hand sides.  Two
storage modes, chosen once per model in Python (``linear_mode``):

- dense: ``M`` is ``(n, n)`` row-major, LU with partial pivoting in place
  (the ``getrf`` algorithm, right-looking, row operations contiguous);
- banded: after a reverse Cuthill--McKee permutation of the Jacobian's
  sparsity pattern, ``M`` has ``kl`` sub- and ``ku`` super-diagonals.  It is
  stored by columns, ``T[j, kv + i - j] = M[i, j]`` with ``kv = kl + ku``
  (LAPACK ``gbtrf`` storage, transposed so that a column is contiguous);
  the first ``kl`` slots of each column hold the fill-in of partial pivoting.
  Cost ``O(n kl (kl + ku))`` instead of ``O(n^3)``.

In banded mode the loops keep states in their own (original) order; only the
iteration matrix lives in the permuted order, so ``band_solve`` permutes the
right-hand side in and the solution out.  ``LinearMode`` bundles what the
compiled loops need; ``lu_factor``/``lu_solve`` (and the band versions)
return ``False`` on a zero or non-finite pivot, which the loops report as
``SINGULAR``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba as nb
import numpy as np

from .._numba_compat import NO_NRT

#: banded storage only pays when the band is well below the dimension.
BAND_MIN_N = 32
BAND_MAX_FRACTION = 0.25


# -- dense ----------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def lu_factor(M, piv):
    """In-place LU of ``M`` (n, n) with partial pivoting; ``piv[k]`` = row swapped with ``k``.

    Returns ``False`` when a pivot is zero or non-finite (singular matrix).
    """
    n = M.shape[0]
    for k in range(n):
        p = k
        big = abs(M[k, k])
        for i in range(k + 1, n):
            a = abs(M[i, k])
            if a > big:
                big = a
                p = i
        if big == 0.0 or not math.isfinite(big):
            return False
        piv[k] = p
        if p != k:
            for j in range(n):
                tmp = M[k, j]
                M[k, j] = M[p, j]
                M[p, j] = tmp
        inv = 1.0 / M[k, k]
        for i in range(k + 1, n):
            l = M[i, k] * inv
            M[i, k] = l
            if l != 0.0:
                for j in range(k + 1, n):
                    M[i, j] -= l * M[k, j]
    return True


@nb.njit(cache=True, nogil=True)
def lu_solve(LU, piv, b):
    """Solve ``M x = b`` in place from ``lu_factor``'s output."""
    n = LU.shape[0]
    for k in range(n):
        p = piv[k]
        if p != k:
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
    for i in range(n):
        acc = b[i]
        for j in range(i):
            acc -= LU[i, j] * b[j]
        b[i] = acc
    for i in range(n - 1, -1, -1):
        acc = b[i]
        for j in range(i + 1, n):
            acc -= LU[i, j] * b[j]
        b[i] = acc / LU[i, i]


# -- banded ---------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def band_factor(T, kl, ku, piv):
    """In-place banded LU with partial pivoting (``gbtf2``), storage as in the module doc.

    ``T`` is ``(n, 2 kl + ku + 1)``; slots ``T[j, :kl]`` must be zero on entry.
    Returns ``False`` on a zero or non-finite pivot.
    """
    n = T.shape[0]
    kv = kl + ku
    ju = 0  # last column touched by the row interchanges so far
    for k in range(n):
        km = min(kl, n - 1 - k)
        p = 0
        big = abs(T[k, kv])
        for i in range(1, km + 1):
            a = abs(T[k, kv + i])
            if a > big:
                big = a
                p = i
        if big == 0.0 or not math.isfinite(big):
            return False
        piv[k] = k + p
        ju = max(ju, min(k + ku + p, n - 1))
        if p != 0:
            for j in range(k, ju + 1):
                a = kv + k - j
                tmp = T[j, a]
                T[j, a] = T[j, a + p]
                T[j, a + p] = tmp
        inv = 1.0 / T[k, kv]
        for i in range(1, km + 1):
            T[k, kv + i] *= inv
        for j in range(k + 1, ju + 1):
            base = kv + k - j
            u = T[j, base]
            if u != 0.0:
                for i in range(1, km + 1):
                    T[j, base + i] -= T[k, kv + i] * u
    return True


@nb.njit(cache=True, nogil=True)
def band_solve_permuted(T, kl, ku, piv, b):
    """Solve ``M x = b`` in place (``b`` already in the band's ordering)."""
    n = T.shape[0]
    kv = kl + ku
    for k in range(n - 1):
        p = piv[k]
        if p != k:
            tmp = b[k]
            b[k] = b[p]
            b[p] = tmp
        bk = b[k]
        if bk != 0.0:
            for i in range(1, min(kl, n - 1 - k) + 1):
                b[k + i] -= T[k, kv + i] * bk
    for k in range(n - 1, -1, -1):
        b[k] /= T[k, kv]
        bk = b[k]
        if bk != 0.0:
            for i in range(max(0, k - kv), k):
                b[i] -= T[k, kv + i - k] * bk


# -- iteration matrix in either mode --------------------------------------------------


#: ``LinearMode.stride`` of the lead mode (see ``LinearMode``).
LEAD = -1


# (both, and newton.simplified_newton, without reference counting: a LinearMode
# carries four arrays, whose incref/decref pairs at each call cost small BDF
# solves ~5%)
@nb.njit(cache=True, nogil=True, **NO_NRT)
def build_and_factor(J, d, lin, M, piv):
    """Form ``M = d I - J`` (dense, permuted band, one repeated block, or a
    leading block: the ``LinearMode`` ``lin``) and factor it; ``False`` if singular.

    ``J`` is in ``jacobian_storage``'s layout for the mode: ``(n, n)`` dense,
    or in banded mode the pattern's values ``J[0, k]`` at ``(jrows[k],
    jcols[k])`` (``abi``'s ``jac_nz``; no ``n x n`` matrix anywhere).  ``M`` is
    ``(n, n)`` in dense mode, ``(n, 2 kl + ku + 1)`` in banded mode;
    ``perm_inv[old] = new`` places the values in the band.
    Block mode (``block > 0``, ``stride >= 0``, ``LinearMode`` doc): ``J`` is the
    ``(block, block)`` diagonal block, ``M`` is ``(block + 1, block)`` and keeps
    ``d`` in its last row for the entries whose Jacobian rows are zero.
    Lead mode (``stride == LEAD``): ``J`` holds the leading block ``B`` and the
    coupling rows ``C`` (``(size, block)`` dense; banded: ``B``'s values, then
    ``C`` row-major), ``M`` is ``(size + 1, ...)``: ``B``'s factors (dense or
    band) in its first ``block`` rows, ``C`` copied after them for the
    substitution, ``d`` in its last row.
    """
    banded, kl, ku, block, stride = lin.banded, lin.kl, lin.ku, lin.block, lin.stride
    perm_inv, jrows, jcols = lin.perm_inv, lin.rows, lin.cols
    if block > 0 and stride >= 0:
        for i in range(block):
            for j in range(block):
                M[i, j] = -J[i, j]
            M[i, i] += d
        M[block, 0] = d
        return lu_factor(M[:block], piv)
    nnz = jrows.shape[0]
    if block > 0:  # lead mode: the coupling rows, then the leading block
        n = block
        size = M.shape[0] - 1
        for i in range(block, size):
            for j in range(block):
                M[i, j] = J[0, nnz + (i - block) * block + j] if banded else J[i, j]
        M[size, 0] = d
    else:
        n = M.shape[0]
    if banded:
        kv = kl + ku
        for i in range(n):
            for c in range(2 * kl + ku + 1):
                M[i, c] = 0.0
        for q in range(nnz):
            i = perm_inv[jrows[q]]
            j = perm_inv[jcols[q]]
            M[j, kv + i - j] -= J[0, q]
        for j in range(n):
            M[j, kv] += d
        return band_factor(M[:n], kl, ku, piv)
    for i in range(n):
        for j in range(n):
            M[i, j] = -J[i, j]
        M[i, i] += d
    return lu_factor(M[:n], piv)


@nb.njit(cache=True, nogil=True, **NO_NRT)
def solve_in_place(M, piv, lin, b, work):
    """``b <- M^{-1} b`` for the factored ``M`` of ``build_and_factor`` in the
    ``LinearMode`` ``lin`` (``perm[new] = old``).

    Block mode: ``M^{-1}`` is block diagonal, one ``(block, block)`` LU for
    ``b[:block]`` and for each of the ``stride`` interleaved columns
    ``b[block + i stride + c]``, ``i < block``; ``1 / d`` for the rest.
    Lead mode: ``M = [[d I - B, 0], [-C, d I]]``, so ``x_1 = (d I - B)^{-1} b_1``
    and ``x_2 = (b_2 + C x_1) / d``.
    """
    banded, kl, ku, perm, block, stride = lin.banded, lin.kl, lin.ku, lin.perm, lin.block, lin.stride
    if block > 0 and stride >= 0:
        L = M[:block]
        lu_solve(L, piv, b[:block])
        x = work[:block]
        for c in range(stride):
            for i in range(block):
                x[i] = b[block + i * stride + c]
            lu_solve(L, piv, x)
            for i in range(block):
                b[block + i * stride + c] = x[i]
        d = M[block, 0]
        for k in range(block * (1 + stride), b.shape[0]):
            b[k] /= d
        return
    size = b.shape[0]
    n = block if block > 0 else size  # lead mode: the leading block, then a substitution
    if banded:
        for i in range(n):
            work[i] = b[perm[i]]
        band_solve_permuted(M[:n], kl, ku, piv, work)
        for i in range(n):
            b[perm[i]] = work[i]
    else:
        lu_solve(M[:n], piv, b[:n])
    if block > 0:
        d = M[size, 0]
        for i in range(n, size):
            acc = b[i]
            for j in range(n):
                acc += M[i, j] * b[j]
            b[i] = acc / d


@nb.njit(cache=True, nogil=True, inline="always")
def factor_for(c, c_fact, J, lin, M, piv, stats):
    """Factor ``M = I / c - J`` unless it already is for the constant ``c``
    (``c_fact``: ``h gamma`` of a one-step method, ``h / alpha_k`` of BDF);
    counts factorizations in ``stats[5]``.  Returns the ``c`` that ``M`` is
    now factored for, 0.0 if it was singular."""
    if c == c_fact:
        return c_fact
    stats[5] += 1
    if build_and_factor(J, 1.0 / c, lin, M, piv):
        return c
    return 0.0


@nb.njit(cache=True, nogil=True)
def matrix_storage(n, lin):
    """An empty iteration matrix for the ``LinearMode`` ``lin``."""
    banded, kl, ku, block, stride = lin.banded, lin.kl, lin.ku, lin.block, lin.stride
    if block > 0 and stride >= 0:
        return np.zeros((block + 1, block))
    if block > 0:
        return np.zeros((n + 1, max(block, 2 * kl + ku + 1)))
    if banded:
        return np.zeros((n, 2 * kl + ku + 1))
    return np.zeros((n, n))


@nb.njit(cache=True, nogil=True)
def jacobian_storage(n, lin):
    """An empty Jacobian for ``sys_jac`` of a system of size ``n`` in the
    ``LinearMode`` ``lin``: ``(n, n)``, the diagonal block (block mode), or the
    leading block's columns ``(n, block)`` (lead mode).  Banded: ``(1, nnz)``,
    the values of the pattern's ``nnz`` entries (``abi``'s ``jac_nz``),
    followed in lead mode by the ``(n - block, block)`` coupling rows."""
    banded, nnz, block, stride = lin.banded, lin.rows.shape[0], lin.block, lin.stride
    if banded:
        return np.zeros((1, nnz + ((n - block) * block if block > 0 else 0)))
    if block > 0 and stride < 0:
        return np.zeros((n, block))
    m = block if block > 0 else n
    return np.zeros((m, m))


# -- choosing the mode (Python, once per model) --------------------------------------


class LinearMode(NamedTuple):
    """How a stiff loop stores and factors its iteration matrix.

    ``perm[new] = old`` (reverse Cuthill--McKee), ``perm_inv[old] = new``;
    ``rows, cols`` the Jacobian's structural nonzeros (original numbering).

    ``block > 0``: the system's Jacobian is (approximated as) block diagonal,
    ``diag(B, B, ..., B, 0)`` with ``1 + stride`` copies of the ``(block,
    block)`` ``B``, the copies after the first interleaved (entry
    ``block + i stride + c`` of copy ``c``), and zero rows after them: the
    forward-sensitivity system ``[y, S, quadratures]`` under Newton's
    approximation (``adjoint.systems._sensitivity_jac``).  One ``B``-sized LU
    per factorization instead of one of the whole system: ``O(n^3 + m n^2)``
    per step, not ``O((n m)^3)``.  The system's ``sys_jac`` then fills ``B`` only.

    ``stride == LEAD`` (lead mode): the Jacobian is exactly ``[[B, 0], [C, 0]]``,
    ``B`` the ``(block, block)`` leading block, ``C`` the rows after it, which
    depend on the leading entries only: the costate system ``[lambda, mu, q]``,
    whose quadratures feed nothing back (``adjoint.systems._costate_jac``).
    ``sys_jac`` fills the ``(size, block)`` matrix ``[B; C]``; ``B`` is factored,
    dense or banded (``banded, kl, ku, perm`` and the pattern describe ``B``),
    and the rest is a substitution: ``O(n^3 + m n)`` per step instead of
    ``O((n + m)^3)``, and with a banded ``B`` no dense ``(n + m)^2`` matrix at all.
    """

    banded: bool
    kl: int
    ku: int
    perm: np.ndarray
    perm_inv: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    block: int = 0
    stride: int = 0

    def typed(self) -> "LinearMode":
        """The mode with the field types the compiled loops are typed for
        (``bool``, ``int``, C-contiguous ``int64`` arrays): the last field of
        ``implicit.ImplicitMethod``."""
        def ints(a):
            return np.ascontiguousarray(a, dtype=np.int64)

        return LinearMode(bool(self.banded), int(self.kl), int(self.ku), ints(self.perm),
                          ints(self.perm_inv), ints(self.rows), ints(self.cols), int(self.block),
                          int(self.stride))


def lead_mode(leading: LinearMode, n: int) -> LinearMode:
    """The lead mode (see ``LinearMode``) for a leading ``(n, n)`` block factored
    as ``leading`` says (a dense or banded mode of that block's pattern)."""
    if leading.block or leading.stride:
        raise ValueError("the leading block's mode must be dense or banded")
    return leading._replace(block=int(n), stride=LEAD)


def block_mode(block: int, stride: int) -> LinearMode:
    """The block-diagonal mode (see ``LinearMode``) for ``1 + stride`` copies of a
    ``(block, block)`` Jacobian."""
    empty = np.zeros(0, dtype=np.int64)
    return LinearMode(False, 0, 0, empty, empty, empty, empty, int(block), int(stride))


def bandwidths(rows, cols, perm_inv) -> tuple[int, int]:
    """Lower and upper bandwidths of the pattern after the permutation."""
    if len(rows) == 0:
        return 0, 0
    d = perm_inv[np.asarray(rows)] - perm_inv[np.asarray(cols)]
    return int(max(d.max(), 0)), int(max(-d.min(), 0))


def rcm_permutation(n: int, rows, cols) -> np.ndarray:
    """Reverse Cuthill--McKee ordering of the symmetrized pattern, ``perm[new] = old``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    ones = np.ones(rows.size)
    A = coo_matrix((np.r_[ones, ones, np.ones(n)],
                    (np.r_[rows, cols, np.arange(n)], np.r_[cols, rows, np.arange(n)])),
                   shape=(n, n)).tocsr()
    return np.ascontiguousarray(reverse_cuthill_mckee(A, symmetric_mode=True), dtype=np.int64)


def linear_mode(n: int, rows, cols, force: str = "auto") -> LinearMode:
    """Choose dense or banded storage from the Jacobian pattern ``(rows, cols)``.

    Banded when ``n >= BAND_MIN_N`` and ``kl + ku + 1 <= BAND_MAX_FRACTION * n``
    after RCM, or when ``force == "banded"``; dense when ``force == "dense"``.
    """
    if force not in ("auto", "dense", "banded"):
        raise ValueError(f"`linalg` must be one of 'auto', 'dense', 'banded'; got {force!r}")
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if force == "dense":
        return LinearMode(False, 0, 0, empty, empty, rows, cols)
    perm = rcm_permutation(n, rows, cols) if n > 0 else empty
    perm_inv = np.empty(n, dtype=np.int64)
    perm_inv[perm] = np.arange(n)
    kl, ku = bandwidths(rows, cols, perm_inv)
    narrow = n >= BAND_MIN_N and (kl + ku + 1) <= BAND_MAX_FRACTION * n
    if force == "banded" or narrow:
        return LinearMode(True, kl, ku, perm, perm_inv, rows, cols)
    return LinearMode(False, 0, 0, empty, empty, rows, cols)
