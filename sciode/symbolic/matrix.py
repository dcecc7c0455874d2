"""Matrix-form derivation: a model's matrix right-hand side as a program of
array operations, and the partial derivatives its reverse (adjoint) sweep needs.

A model declared with matrix blocks (`sciode.blocks`) is lowered to a list of
`Value`s in evaluation order, each an array of a fixed shape (or a scalar):

==============  =========================================  =====================================
kind            forward                                    reverse (``C = ...``, ``Cb`` its adjoint)
==============  =========================================  =====================================
``leaf``        a declared block, read from ``y, p, w``    accumulates into the requested gradient
``const``       a numeric matrix                           -
``scalar``      ``s = e(t, scalar symbols)``               ``g[u] += sb de/du`` for each symbol u
``matmul``      ``C = A B``                                ``Ab += Cb B^T``, ``Bb += A^T Cb``
``transpose``   ``C = A^T`` (an index swap, no copy)       ``Ab += Cb^T``
``map``         ``C_ij = g(A_ij, B_ij, ..., s, ...)``       ``Ab_ij += Cb_ij dg/da``, ``sb += sum Cb dg/ds``
``explicit``    ``C_ij = s_ij`` (an explicit matrix)        ``sb_ij += Cb_ij``
==============  =========================================  =====================================

The derivatives stay in matrix form: the gradient with respect to ``W1`` in
``tanh(W1 y + b1)`` is the outer product ``((1 - tanh^2) Cb) y^T``, one loop,
not ``2 H`` scalar derivatives.  Elementwise functions are differentiated once,
as scalar functions of their placeholder arguments (``dg/da``).

Everything here is SymPy in, plain data and SymPy scalar expressions out; code
generation (``sciode.codegen.structured``) prints them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.matrices.expressions.special import Identity, OneMatrix, ZeroMatrix

from ..errors import ModelError
from .derive import real_diff

#: Above this many boolean operations the Jacobian's pattern is taken as dense.
PATTERN_BUDGET = 50_000_000


class Value(NamedTuple):
    """One array of the program.

    ``kind`` as in the module table; ``shape`` ``(rows, cols)``; ``args`` the
    indices of the operand values; ``data`` per kind: ``leaf``: ``(role,
    offset)`` with role ``"y" | "p" | "w"``; ``const``: a float ndarray;
    ``scalar``: ``(expr, ((symbol, de/dsymbol), ...))`` in flat symbols;
    ``map``: ``(body, placeholders, partials, out)``, one placeholder and one
    partial per argument; a partial may contain ``out``, the placeholder of
    the value's own entry.
    """

    kind: str
    shape: tuple
    args: tuple
    data: object


class Program(NamedTuple):
    """A lowered model: values in evaluation order and one output per state block.

    ``outputs[k] = (offset, shape, value index)`` for the k-th state block;
    ``roles`` maps every flat symbol to ``(role, index)`` with role
    ``"y" | "p" | "w" | "t"``.
    """

    values: tuple
    outputs: tuple
    roles: dict
    n_states: int
    n_params: int
    n_controls: int

    def depends_on(self, role: str) -> bool:
        """Whether any output depends on symbols of ``role`` (``"y"``, ``"p"``, ``"w"``, ``"t"``)."""
        needed = self.needed({role})
        return any(needed[k] for _, _, k in self.outputs)

    def needed(self, roles) -> list:
        """Per value: whether it depends on a symbol of ``roles``, so that its
        adjoint must be propagated to reach their gradients."""
        out = []
        for v in self.values:
            if v.kind == "leaf":
                n = v.data[0] in roles
            elif v.kind == "scalar":
                n = any(self.roles[s][0] in roles for s, _ in v.data[1])
            else:
                n = any(out[a] for a in v.args)
            out.append(n)
        return out

    def jacobian_pattern(self) -> np.ndarray:
        """Boolean ``(n, n)`` structural pattern of ``df/dy`` (dense when too large to trace)."""
        n = self.n_states
        deps = []
        budget = PATTERN_BUDGET
        for v in self.values:
            r, c = v.shape
            if v.kind == "leaf":
                d = np.zeros((r, c, n), dtype=bool)
                if v.data[0] == "y":
                    o = v.data[1]
                    idx = np.arange(r * c).reshape(r, c)
                    d[np.arange(r)[:, None], np.arange(c)[None, :], o + idx] = True
            elif v.kind == "const":
                d = np.zeros((r, c, n), dtype=bool)
            elif v.kind == "scalar":
                d = np.zeros((1, 1, n), dtype=bool)
                for s, _ in v.data[1]:
                    role, i = self.roles[s]
                    if role == "y":
                        d[0, 0, i] = True
            elif v.kind == "transpose":
                d = deps[v.args[0]].transpose(1, 0, 2)
            elif v.kind == "matmul":
                a, b = deps[v.args[0]], deps[v.args[1]]
                k = a.shape[1]
                budget -= r * k * c * n
                if budget < 0:
                    return np.ones((n, n), dtype=bool)
                sa = np.ones((r, k), dtype=bool) if self.values[v.args[0]].kind != "const" \
                    else self.values[v.args[0]].data != 0
                sb = np.ones((k, c), dtype=bool) if self.values[v.args[1]].kind != "const" \
                    else self.values[v.args[1]].data != 0
                d = (np.einsum("ik,kjn->ijn", sa.astype(np.float32), b.astype(np.float32))
                     + np.einsum("ikn,kj->ijn", a.astype(np.float32), sb.astype(np.float32))) > 0
            else:  # map, explicit: elementwise union, scalars broadcast
                d = np.zeros((r, c, n), dtype=bool)
                if v.kind == "explicit":
                    for e, a in enumerate(v.args):
                        d[e // c, e % c] |= deps[a][0, 0]
                else:
                    for a in v.args:
                        d |= deps[a]
            deps.append(d)
        pattern = np.zeros((n, n), dtype=bool)
        for offset, (r, c), k in self.outputs:
            d = np.broadcast_to(deps[k], (r, c, n))
            pattern[offset:offset + r * c] = d.reshape(r * c, n)
        return pattern


class _Lowering:
    """Turns matrix expressions into `Value`s, sharing repeated subexpressions."""

    def __init__(self, model):
        st = model.structure
        self.structure = st
        self.t = model.t
        self.values: list[Value] = []
        self.memo: dict = {}
        self.source: dict = {}  # value index -> the matrix expression it computes
        self.blocks = {}
        for role, group in (("y", st.states), ("p", st.params), ("w", st.controls)):
            for b in group:
                self.blocks[b.symbol] = (role, b)
        self.roles = {model.t: ("t", 0)}
        for role, syms in (("y", model.states), ("p", model.params), ("w", model.controls)):
            for i, s in enumerate(syms):
                self.roles[s] = (role, i)

    def add(self, kind, shape, args, data, key=None) -> int:
        if key is not None and key in self.memo:
            return self.memo[key]
        self.values.append(Value(kind, tuple(int(s) for s in shape), tuple(args), data))
        k = len(self.values) - 1
        if key is not None:
            self.memo[key] = k
        return k

    # --- scalars -------------------------------------------------------------

    def scalar(self, expr) -> int:
        expr = self.structure.flat(sp.sympify(expr))
        if expr.atoms(MatrixElement):
            bad = min(expr.atoms(MatrixElement), key=str)
            raise ModelError(f"`{bad}`: an entry of a matrix expression; only entries of declared "
                             "matrix symbols can appear in scalar expressions")
        symbols = sorted(expr.free_symbols, key=lambda s: s.name)
        for s in symbols:
            if s not in self.roles:
                raise ModelError(f"`{s}` in `{expr}` is not a declared symbol")
        partials = tuple((s, real_diff(expr, s)) for s in symbols)
        return self.add("scalar", (1, 1), (), (expr, partials), key=("scalar", expr))

    # --- matrices ------------------------------------------------------------

    def lower(self, e) -> int:
        key = ("expr", e)
        if key in self.memo:
            return self.memo[key]
        k = self._lower(e)
        self.memo[key] = k
        self.source.setdefault(k, e)
        return k

    def _map(self, body, args, shape) -> int:
        """``C_ij = body(x_0, x_1, ...)`` with ``x_a`` the a-th argument's entry (or scalar)."""
        xs = tuple(sp.Dummy(f"x{a}") for a in range(len(args)))
        body = body(*xs) if callable(body) else body
        body = sp.sympify(body)
        # scalar symbols inside the body become scalar arguments
        extra = sorted(self.structure.flat(body).free_symbols - set(xs), key=lambda s: s.name)
        body = self.structure.flat(body)
        if extra:
            more = tuple(sp.Dummy(f"s{a}") for a in range(len(extra)))
            body = body.xreplace(dict(zip(extra, more)))
            xs = xs + more
            args = tuple(args) + tuple(self.scalar(s) for s in extra)
        # a partial that contains the body itself (tanh' = 1 - tanh^2, exp' = exp) reads
        # the stored output instead of evaluating the function again
        out = sp.Dummy("out")
        partials = tuple(real_diff(body, x).xreplace({body: out}) if not body.is_Atom
                         else real_diff(body, x) for x in xs)
        return self.add("map", shape, args, (body, xs, partials, out))

    def _lower(self, e) -> int:
        if isinstance(e, sp.MatrixSymbol):
            if e not in self.blocks:
                raise ModelError(f"matrix `{e}` is not a declared state, param or control")
            role, b = self.blocks[e]
            return self.add("leaf", b.shape, (), (role, b.offset))
        if isinstance(e, (sp.ImmutableMatrix, sp.MatrixBase)):
            entries = [sp.sympify(x) for x in e]
            if all(x.is_number for x in entries):
                return self.add("const", e.shape, (), np.array([float(x) for x in entries]).reshape(e.shape))
            return self.add("explicit", e.shape, tuple(self.scalar(x) for x in entries), None)
        if isinstance(e, Identity):
            return self.add("const", e.shape, (), np.eye(int(e.shape[0])))
        if isinstance(e, ZeroMatrix):
            return self.add("const", e.shape, (), np.zeros(tuple(int(s) for s in e.shape)))
        if isinstance(e, OneMatrix):
            return self.add("const", e.shape, (), np.ones(tuple(int(s) for s in e.shape)))
        if isinstance(e, sp.MatAdd):
            args = [self.lower(a) for a in e.args]
            return self._map(lambda *x: sp.Add(*x), args, e.shape)
        if isinstance(e, sp.MatMul):
            coeff, factors = e.as_coeff_matrices()
            k = self.lower(factors[0])
            for f in factors[1:]:
                fk = self.lower(f)
                shape = (self.values[k].shape[0], self.values[fk].shape[1])
                k = self.add("matmul", shape, (k, fk), None)
            if coeff != 1:
                if coeff.is_number:
                    k = self._map(lambda x: coeff * x, [k], e.shape)
                else:
                    k = self._map(lambda x, s: s * x, [k, self.scalar(coeff)], e.shape)
            return k
        if isinstance(e, sp.Transpose):
            a = self.lower(e.arg)
            r, c = self.values[a].shape
            return self.add("transpose", (c, r), (a,), None)
        if isinstance(e, ElementwiseApplyFunction):
            f = e.function
            return self._map(lambda x: f(x), [self.lower(e.expr)], e.shape)
        if isinstance(e, HadamardProduct):
            return self._map(lambda *x: sp.Mul(*x), [self.lower(a) for a in e.args], e.shape)
        if isinstance(e, HadamardPower):
            base, ex = e.args
            if getattr(ex, "is_Matrix", False):
                raise ModelError(f"`{e}`: a Hadamard power needs a scalar exponent")
            return self._map(lambda x: x ** self.structure.flat(ex), [self.lower(base)], e.shape)
        if isinstance(e, sp.MatPow):
            base, ex = e.args
            if not (ex.is_Integer and int(ex) >= 1):
                raise ModelError(f"`{e}`: only positive integer matrix powers are supported")
            k = b = self.lower(base)
            for _ in range(int(ex) - 1):
                k = self.add("matmul", self.values[b].shape, (k, b), None)
            return k
        raise ModelError(
            f"`{e}` ({type(e).__name__}) has no matrix-form translation; matrix right-hand "
            "sides may use +, matrix and scalar products, .T, HadamardProduct, "
            "HadamardPower, integer MatPow, .applyfunc(f) and explicit matrices")


def _lowered(model) -> tuple[Program, _Lowering]:
    st = model.structure
    if st is None:
        raise ValueError(f"model {model.name!r} has no matrix blocks; use sciode.symbolic.derive_model")
    low = _Lowering(model)
    outputs = []
    for b, e in zip(st.states, st.rhs):
        k = low.lower(e) if b.is_matrix else low.scalar(e)
        outputs.append((b.offset, b.shape, k))
    return Program(tuple(low.values), tuple(outputs), low.roles, model.n_states, model.n_params,
                   model.n_controls), low


def lower(model) -> Program:
    """The `Program` of a model declared with matrix blocks (``model.structure``)."""
    return _lowered(model)[0]


def vjp_matrix_forms(model, cotangents: dict) -> dict | None:
    """``(df/dX)^T lambda`` for every declared block ``X``, as matrix expressions.

    ``cotangents`` maps each state block's symbol to its cotangent (a
    ``MatrixSymbol`` of the block's shape, or a Symbol for a scalar state).
    The result maps each declared symbol (states, params, controls) on which
    ``f`` depends to its vector-Jacobian product, written with the model's own
    matrices: for ``f = W2 tanh(W1 y + b1) + b2``, the entry of ``W1`` is
    ``((1 - tanh(W1 y + b1)^2) o (W2^T lambda)) y^T``.  These are the rules of
    the reverse sweep the kernels run (``codegen.structured``), in SymPy.
    Returns None where an elementwise function of several matrices has a
    partial derivative that is not a product of single-matrix factors.
    """
    prog, low = _lowered(model)
    vals = prog.values
    expr_of = dict(low.source)
    for k, v in enumerate(vals):
        if v.kind == "scalar":
            expr_of[k] = v.data[0]
        elif k not in expr_of and v.kind == "matmul":  # inside a chain A B C, or a power
            expr_of[k] = sp.MatMul(expr_of[v.args[0]], expr_of[v.args[1]])
        elif k not in expr_of and v.kind == "transpose":
            expr_of[k] = expr_of[v.args[0]].T
    adj: dict = {}

    def add(k, term):
        adj.setdefault(k, []).append(term)

    def total(k):
        terms = adj.get(k, [])
        if not terms:
            return None
        return terms[0] if len(terms) == 1 else (sp.MatAdd(*terms) if vals[k].kind != "scalar" else sp.Add(*terms))

    for (_, _, k), b in zip(prog.outputs, model.structure.states):
        add(k, cotangents[b.symbol])
    flat: dict = {}
    for k in range(len(vals) - 1, -1, -1):
        v, cb = vals[k], total(k)
        if cb is None:
            continue
        if v.kind == "matmul":
            a, b = v.args
            add(a, cb * expr_of[b].T)
            add(b, expr_of[a].T * cb)
        elif v.kind == "transpose":
            add(v.args[0], cb.T)
        elif v.kind == "explicit":
            c = v.shape[1]
            for e, a in enumerate(v.args):
                add(a, cb[e // c, e % c])
        elif v.kind == "scalar":
            for s, d in v.data[1]:
                flat[s] = flat.get(s, 0) + cb * d
        elif v.kind == "map":
            body, xs, partials, out = v.data
            for a, d in zip(v.args, partials):
                if d == 0:
                    continue
                d = d.xreplace({out: body})
                if vals[a].kind == "scalar":  # the sum over entries of cb o dg/ds
                    factor = _elementwise(d, xs, v.args, expr_of, vals)
                    if factor is None:
                        return None
                    if getattr(factor, "is_Matrix", False):
                        add(a, sp.Trace(cb.T * factor))
                    else:
                        add(a, factor * sp.Trace(sp.OneMatrix(v.shape[1], v.shape[0]) * cb))
                    continue
                if not (d.free_symbols & set(xs)):
                    add(a, d * cb)
                    continue
                factor = _elementwise(d, xs, v.args, expr_of, vals)
                if factor is None:
                    return None
                add(a, sp.HadamardProduct(cb, factor) if getattr(factor, "is_Matrix", False) else factor * cb)
    out = {}
    st = model.structure
    for k, v in enumerate(vals):
        if v.kind == "leaf" and total(k) is not None:
            role, offset = v.data
            group = {"y": st.states, "p": st.params, "w": st.controls}[role]
            block = next(b for b in group if b.offset == offset and b.is_matrix)
            out[block.symbol] = out[block.symbol] + total(k) if block.symbol in out else total(k)
    for s, g in flat.items():
        out[s] = g
    return out


def _elementwise(d, xs, args, expr_of, vals):
    """The partial ``d(x_0, x_1, ...)`` of a map as a matrix expression: a product of
    factors each in one placeholder (``applyfunc`` of that argument), or None."""
    factors = []
    for f in sp.Mul.make_args(d):
        used = [i for i, x in enumerate(xs) if f.has(x)]
        if not used:
            factors.append(("scalar", f))
            continue
        if len(used) > 1:
            return None
        i = used[0]
        arg = expr_of[args[i]]
        if vals[args[i]].kind == "scalar":
            factors.append(("scalar", f.xreplace({xs[i]: arg})))
        elif f == xs[i]:
            factors.append(("matrix", arg))
        else:
            factors.append(("matrix", arg.applyfunc(sp.Lambda(xs[i], f))))
    scalars = sp.Mul(*[f for kind, f in factors if kind == "scalar"])
    mats = [f for kind, f in factors if kind == "matrix"]
    if not mats:
        return scalars
    m = mats[0] if len(mats) == 1 else sp.HadamardProduct(*mats)
    return m if scalars == 1 else scalars * m
