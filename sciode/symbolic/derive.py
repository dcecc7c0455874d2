"""Symbolic derivation: Jacobians, Hamiltonian, costate and gradient integrands.

Everything here is plain SymPy in, plain SymPy out.  The results feed code
generation (``sciode.codegen``) and are shown to users as they are, so they
stay unsimplified but exact.

Derivatives are taken entry by entry, and only with respect to the symbols an
expression actually contains: for a model with ``n`` states whose right-hand
sides each touch a few states (a discretized PDE), the Jacobian costs
``O(nnz)`` derivative calls instead of ``O(n^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..cost import Cost, as_cost
from ..model import Model

#: A sparse matrix of expressions: ``{(row, col): expr}`` with no zero entries.
SparseExprs = dict


#: Functions whose derivative SymPy writes with ``re``/``im`` unless the
#: argument is known to be real (``d|x|/dx``); sciode models are real.
_COMPLEX_AWARE = (sp.Abs, sp.sign, sp.arg, sp.re, sp.im, sp.conjugate)

try:  # SymEngine (C++) differentiates 20-60x faster than SymPy; optional
    import symengine as _se
except ImportError:  # pragma: no cover - the fallback is tested by patching _se to None
    _se = None

#: What SymEngine differentiates here: arithmetic and these elementary
#: functions, whose derivatives agree with SymPy's (tests/test_symbolic.py;
#: the algebraic form may differ).  Anything else (Piecewise, Min, Abs, erf, ...) goes
#: through SymPy.
_SYMENGINE_FUNCTIONS = (sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.asin, sp.acos, sp.atan,
                        sp.sinh, sp.cosh, sp.tanh, sp.asinh, sp.acosh, sp.atanh)
_SYMENGINE_NODES = (sp.Add, sp.Mul, sp.Pow, sp.Symbol, sp.Number, sp.NumberSymbol, *_SYMENGINE_FUNCTIONS)


def _symengine_can(expr) -> bool:
    return _se is not None and all(isinstance(node, _SYMENGINE_NODES) for node in sp.preorder_traversal(expr))


def _symengine_derivatives(expr, variables) -> list:
    """``[d expr / d v for v in variables]`` by SymEngine, as SymPy expressions.

    Symbols travel as plain stand-ins and are put back by identity afterwards:
    a round trip through SymEngine would drop their assumptions (and a Dummy's
    identity)."""
    symbols = sorted(expr.free_symbols, key=sp.default_sort_key)
    stand = [sp.Symbol(f"_sciode_se{i}") for i in range(len(symbols))]
    back = dict(zip(stand, symbols))
    fwd = dict(zip(symbols, stand))
    e = _se.sympify(expr.xreplace(fwd))
    out = []
    for v in variables:
        if v not in fwd:
            out.append(sp.Integer(0))
            continue
        d = _se.diff(e, _se.Symbol(fwd[v].name))
        out.append(sp.sympify(d._sympy_()).xreplace(back))
    return out


def real_diff(expr, var):
    """``d expr / d var`` treating every free symbol as real.

    Plain ``sympy.Symbol`` objects carry no ``real`` assumption, so SymPy
    differentiates ``Abs(x)`` to ``(re(x)*Derivative(re(x), x) + ...)/x``,
    which no kernel can evaluate.  Swapping in real stand-ins for the
    duration of the derivative gives ``sign(x)`` instead.  Arithmetic and
    elementary functions are differentiated by SymEngine when it is
    installed (the same result, much faster).
    """
    if _symengine_can(expr):
        return _symengine_derivatives(expr, [var])[0]
    if not expr.has(*_COMPLEX_AWARE):
        return sp.diff(expr, var)
    real = {s: sp.Dummy(s.name, real=True) for s in expr.free_symbols if s.is_real is not True}
    if not real:
        return sp.diff(expr, var)
    back = {d: s for s, d in real.items()}
    return sp.diff(expr.xreplace(real), real.get(var, var)).xreplace(back)


def sparse_jacobian(exprs, variables) -> SparseExprs:
    """Nonzero entries of ``d exprs_i / d variables_j``.

    Parameters
    ----------
    exprs : sequence of sympy.Expr, length m
    variables : sequence of sympy.Symbol, length n

    Returns
    -------
    dict
        ``{(i, j): d exprs[i] / d variables[j]}`` for the entries that are
        not identically zero.
    """
    index = {v: j for j, v in enumerate(variables)}
    out = {}
    for i, expr in enumerate(exprs):
        expr = sp.sympify(expr)
        used = sorted((index[s] for s in expr.free_symbols if s in index))
        if not used:
            continue
        if _symengine_can(expr):  # one conversion per row, not per entry
            ds = _symengine_derivatives(expr, [variables[j] for j in used])
        else:
            ds = [real_diff(expr, variables[j]) for j in used]
        for j, d in zip(used, ds):
            if d != 0:
                out[(i, j)] = d
    return out


def gradient(expr, variables) -> tuple:
    """``d expr / d v`` for each ``v`` in ``variables`` (zeros kept)."""
    expr = sp.sympify(expr)
    if expr.is_Add:
        # Differentiate each term only by the variables it contains: the
        # gradient of a sum over n states then costs O(n), not O(n^2).
        terms = {v: [] for v in variables}
        for term in expr.args:
            for s in term.free_symbols:
                if s in terms:
                    terms[s].append(term)
        return tuple(sp.Add(*(real_diff(term, v) for term in terms[v])) for v in variables)
    present = expr.free_symbols
    return tuple(real_diff(expr, v) if v in present else sp.Integer(0) for v in variables)


def dense(entries: SparseExprs, shape) -> sp.Matrix:
    """A dense ``sympy.Matrix`` from sparse entries."""
    m = sp.zeros(*shape)
    for (i, j), e in entries.items():
        m[i, j] = e
    return m


@dataclass(frozen=True)
class ModelDerivatives:
    """Derivatives of the right-hand side ``f(t, y, p, w)`` of one model.

    Attributes
    ----------
    model : Model
    f : tuple of sympy.Expr, ``(n,)``
    dfdy, dfdp, dfdw : dict
        Sparse Jacobians ``{(i, j): expr}`` of shapes ``(n, n)``,
        ``(n, n_p)``, ``(n, n_w)``.
    dfdt : tuple of sympy.Expr, ``(n,)``
    """

    model: Model
    f: tuple
    dfdy: SparseExprs
    dfdp: SparseExprs
    dfdw: SparseExprs
    dfdt: tuple

    @property
    def jacobian_pattern(self) -> np.ndarray:
        """Boolean ``(n, n)`` sparsity pattern of ``df/dy``."""
        n = self.model.n_states
        pattern = np.zeros((n, n), dtype=bool)
        for i, j in self.dfdy:
            pattern[i, j] = True
        return pattern


def derive_model(model: Model) -> ModelDerivatives:
    """Jacobians ``df/dy``, ``df/dp``, ``df/dw`` and ``df/dt`` of a model."""
    f = tuple(model.rhs)
    return ModelDerivatives(
        model=model,
        f=f,
        dfdy=sparse_jacobian(f, model.states),
        dfdp=sparse_jacobian(f, model.params),
        dfdw=sparse_jacobian(f, model.controls),
        dfdt=tuple(real_diff(e, model.t) for e in f),
    )


@dataclass(frozen=True)
class CostDerivatives:
    """Derivatives of the three cost pieces.

    ``L`` is the running cost, ``Phi`` the terminal cost and ``h`` the
    concatenated observables of every least-squares term (the data misfit's
    values and weights are runtime data, not symbols).
    """

    L: sp.Expr
    dLdy: tuple
    dLdp: tuple
    dLdw: tuple
    Phi: sp.Expr
    dPhidy: tuple
    dPhidp: tuple
    h: tuple
    dhdy: SparseExprs
    dhdp: SparseExprs


def observables(model: Model, cost: Cost) -> tuple:
    """All observables of ``cost``'s data terms, concatenated in order."""
    out = []
    for term in cost.data:
        out.extend(term.resolved(model))
    return tuple(out)


def derive_cost(model: Model, cost) -> CostDerivatives:
    """Gradients of the running cost, terminal cost and observables."""
    cost = as_cost(cost)
    cost.check(model)
    y, p, w = model.states, model.params, model.controls
    h = observables(model, cost)
    return CostDerivatives(
        L=cost.running,
        dLdy=gradient(cost.running, y),
        dLdp=gradient(cost.running, p),
        dLdw=gradient(cost.running, w),
        Phi=cost.terminal,
        dPhidy=gradient(cost.terminal, y),
        dPhidp=gradient(cost.terminal, p),
        h=h,
        dhdy=sparse_jacobian(h, y),
        dhdp=sparse_jacobian(h, p),
    )


def _fresh_symbols(prefix: str, names, taken) -> tuple:
    """Symbols ``prefix_name`` that clash with none of ``taken``."""
    out = []
    for name in names:
        candidate = f"{prefix}_{name}"
        while candidate in taken:
            candidate += "_"
        taken.add(candidate)
        out.append(sp.Symbol(candidate))
    return tuple(out)


@dataclass(frozen=True)
class AdjointSystem:
    """The Pontryagin adjoint of a model and a cost, as SymPy expressions.

    With ``H = L + lambda . f``:

    - ``costate_rhs``: ``d lambda / dt = -dH/dy`` (integrated backward),
    - ``terminal_costate``: ``lambda(t1) = dPhi/dy(t1)``,
    - ``param_gradient``: ``dH/dp``, so ``dJ/dp = dPhi/dp + int dH/dp dt``
      (plus the data terms' ``d ell_i/dp``),
    - ``control_gradient``: ``dH/dw``,
    - ``observation_jacobian``: ``dh/dy``; at each observation time the
      costate jumps by ``(dh/dy)^T r`` with weighted residuals ``r``.
    - ``matrix_vjp`` (models declared with matrix blocks, else None):
      ``(df/dX)^T Lambda`` for each declared block ``X`` in matrix form, with
      ``Lambda`` the costate blocks ``lambda_<state>`` (``MatrixSymbol``s), so
      ``lambda' = -dL/dy - matrix_vjp[y]`` and ``dH/dW = dL/dW + matrix_vjp[W]``
      (``symbolic.matrix.vjp_matrix_forms``: the rules the kernels run).
    """

    model: Model
    cost: Cost
    hamiltonian: sp.Expr
    costates: tuple
    costate_rhs: tuple
    terminal_costate: tuple
    param_gradient: tuple
    control_gradient: tuple
    observation_jacobian: sp.Matrix
    sensitivity_symbols: sp.Matrix
    sensitivity_rhs: sp.Matrix
    matrix_vjp: dict | None = None


def derive_adjoint(model: Model, cost=None) -> AdjointSystem:
    """Derive the Hamiltonian, costate equations and gradient integrands.

    Parameters
    ----------
    model : Model
    cost : Cost or LeastSquares, optional
        Defaults to the zero cost (the adjoint of a Neural ODE with ``L = 0``).

    Returns
    -------
    AdjointSystem
        ``H = L + lambda . f``, ``lambda' = -dH/dy``, ``lambda(t1) =
        dPhi/dy``, ``dH/dp``, ``dH/dw``, and the forward-sensitivity
        right-hand side ``S' = (df/dy) S + df/dp`` with ``S_ij = dy_i/dp_j``.
    """
    cost = Cost() if cost is None else as_cost(cost)
    cost.check(model)
    taken = {s.name for s in (*model.states, *model.params, *model.controls, model.t)}
    lam = _fresh_symbols("lambda", [s.name for s in model.states], taken)
    # One flat Add, and gradients of H from the sparse Jacobians: for a
    # discretized PDE, differentiating the whole of H by every state is O(n^2).
    H = sp.Add(cost.running, *(li * fi for li, fi in zip(lam, model.rhs)))
    h = observables(model, cost)
    n, n_p = model.n_states, model.n_params
    S = sp.Matrix(n, n_p, lambda i, j: sp.Symbol(f"S_{model.states[i].name}_{model.params[j].name}"))
    dfdy = sparse_jacobian(model.rhs, model.states)
    dfdp = sparse_jacobian(model.rhs, model.params)
    dfdw = sparse_jacobian(model.rhs, model.controls)
    matrix_vjp = None
    if model.structure is not None:
        from .matrix import vjp_matrix_forms

        cot = {b.symbol: (sp.MatrixSymbol(f"lambda_{b.symbol.name}", *b.shape) if b.is_matrix
                          else sp.Symbol(f"lambda_{b.symbol.name}")) for b in model.structure.states}
        matrix_vjp = vjp_matrix_forms(model, cot)
    return AdjointSystem(
        model=model,
        cost=cost,
        hamiltonian=H,
        costates=lam,
        costate_rhs=tuple(-g for g in _hamiltonian_gradient(cost.running, lam, dfdy, model.states)),
        terminal_costate=gradient(cost.terminal, model.states),
        param_gradient=_hamiltonian_gradient(cost.running, lam, dfdp, model.params),
        control_gradient=_hamiltonian_gradient(cost.running, lam, dfdw, model.controls),
        observation_jacobian=dense(sparse_jacobian(h, model.states), (len(h), n)),
        sensitivity_symbols=S,
        sensitivity_rhs=_sensitivity_rhs(dfdy, dfdp, S),
        matrix_vjp=matrix_vjp,
    )


def _hamiltonian_gradient(running, lam, jac: SparseExprs, variables) -> tuple:
    """``dH/dv_j = dL/dv_j + sum_i lambda_i df_i/dv_j`` from sparse ``df/dv``."""
    terms = [[g] for g in gradient(running, variables)]
    for (i, j), e in jac.items():
        terms[j].append(lam[i] * e)
    return tuple(sp.Add(*t) for t in terms)


def _sensitivity_rhs(dfdy: SparseExprs, dfdp: SparseExprs, S: sp.Matrix) -> sp.Matrix:
    """``(df/dy) S + df/dp`` using only the nonzeros of ``df/dy``."""
    n, n_p = S.shape
    terms = [[[] for _ in range(n_p)] for _ in range(n)]
    for (i, j), e in dfdp.items():
        terms[i][j].append(e)
    for (i, k), e in dfdy.items():
        for j in range(n_p):
            terms[i][j].append(e * S[k, j])
    return sp.Matrix(n, n_p, lambda i, j: sp.Add(*terms[i][j]))
