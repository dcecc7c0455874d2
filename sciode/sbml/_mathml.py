"""MathML (as libsbml's ``ASTNode`` tree) to SymPy, node by node.

Nothing here evaluates text: libsbml parses the MathML (or, for PEtab
formulas, its own L3 infix syntax) into a tree, and `MathConverter` rebuilds
that tree from a whitelist of node types.  Names are resolved by a callback
supplied by the caller (the SBML importer or the PEtab formula reader), so
this module knows nothing about species or parameters.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping

import sympy as sp

from ..errors import ModelError

__all__ = ["AVOGADRO", "MathConverter"]

#: Value of the ``avogadro`` csymbol fixed by the SBML Level 3 specification.
AVOGADRO = 6.02214179e23


def _lib():
    import libsbml

    return libsbml


def _unary_table(L) -> dict[int, Callable[[sp.Expr], sp.Expr]]:
    return {
        L.AST_FUNCTION_ABS: sp.Abs,
        L.AST_FUNCTION_EXP: sp.exp,
        L.AST_FUNCTION_LN: sp.log,
        L.AST_FUNCTION_FLOOR: sp.floor,
        L.AST_FUNCTION_CEILING: sp.ceiling,
        L.AST_FUNCTION_FACTORIAL: sp.factorial,
        L.AST_FUNCTION_SIN: sp.sin,
        L.AST_FUNCTION_COS: sp.cos,
        L.AST_FUNCTION_TAN: sp.tan,
        L.AST_FUNCTION_SEC: lambda x: 1 / sp.cos(x),
        L.AST_FUNCTION_CSC: lambda x: 1 / sp.sin(x),
        L.AST_FUNCTION_COT: lambda x: 1 / sp.tan(x),
        L.AST_FUNCTION_SINH: sp.sinh,
        L.AST_FUNCTION_COSH: sp.cosh,
        L.AST_FUNCTION_TANH: sp.tanh,
        L.AST_FUNCTION_SECH: lambda x: 1 / sp.cosh(x),
        L.AST_FUNCTION_CSCH: lambda x: 1 / sp.sinh(x),
        L.AST_FUNCTION_COTH: lambda x: 1 / sp.tanh(x),
        L.AST_FUNCTION_ARCSIN: sp.asin,
        L.AST_FUNCTION_ARCCOS: sp.acos,
        L.AST_FUNCTION_ARCTAN: sp.atan,
        L.AST_FUNCTION_ARCSEC: lambda x: sp.acos(1 / x),
        L.AST_FUNCTION_ARCCSC: lambda x: sp.asin(1 / x),
        L.AST_FUNCTION_ARCCOT: lambda x: sp.atan(1 / x),
        L.AST_FUNCTION_ARCSINH: sp.asinh,
        L.AST_FUNCTION_ARCCOSH: sp.acosh,
        L.AST_FUNCTION_ARCTANH: sp.atanh,
        L.AST_FUNCTION_ARCSECH: lambda x: sp.acosh(1 / x),
        L.AST_FUNCTION_ARCCSCH: lambda x: sp.asinh(1 / x),
        L.AST_FUNCTION_ARCCOTH: lambda x: sp.atanh(1 / x),
    }


def _relational_table(L) -> dict[int, type]:
    return {
        L.AST_RELATIONAL_EQ: sp.Eq,
        L.AST_RELATIONAL_NEQ: sp.Ne,
        L.AST_RELATIONAL_LT: sp.Lt,
        L.AST_RELATIONAL_LEQ: sp.Le,
        L.AST_RELATIONAL_GT: sp.Gt,
        L.AST_RELATIONAL_GEQ: sp.Ge,
    }


class MathConverter:
    """Convert libsbml ``ASTNode`` trees to SymPy.

    Parameters
    ----------
    resolve : callable ``(name) -> sympy.Expr``
        Value of an identifier (``AST_NAME``); raises `ModelError` for an
        unknown one.
    time : sympy.Symbol
        What the ``time`` csymbol becomes.
    functions : mapping of str to libsbml.ASTNode, optional
        SBML function definitions (``lambda`` nodes) by id; calls of them are
        inlined.
    where : str
        Where the math comes from, e.g. ``"kinetic law of reaction `R1`"``;
        prefixed to every error message.

    Notes
    -----
    Whitelist: numbers (integer, real, e-notation, rational), names,
    ``time``, ``avogadro``, ``pi``, ``exponentiale``, ``true``/``false``;
    ``plus minus times divide power root`` (any degree), ``log`` (any base)
    and ``ln``, ``exp abs floor ceiling factorial``, the trigonometric and
    hyperbolic functions with their inverses, ``min max`` (SBML L3v2),
    ``piecewise``, the relational and logical operators, and calls of
    function definitions.  Everything else (``delay``, ``rateOf``, ``rem``,
    ``quotient``, csymbols of packages, MathML outside SBML's subset) raises
    `ModelError` naming the construct.
    """

    def __init__(self, resolve: Callable[[str], sp.Expr], time: sp.Symbol,
                 functions: Mapping[str, object] | None = None, where: str = "math"):
        self._resolve = resolve
        self._time = time
        self._functions = dict(functions or {})
        self.where = where
        L = _lib()
        self._L = L
        self._unary = _unary_table(L)
        self._relational = _relational_table(L)
        self._inlining: list[str] = []

    def convert(self, node, where: str | None = None) -> sp.Basic:
        """SymPy expression (or boolean, for conditions) of ``node``."""
        if where is not None:
            old, self.where = self.where, where
            try:
                return self._node(node, {})
            finally:
                self.where = old
        return self._node(node, {})

    # --- dispatch --------------------------------------------------------

    def _node(self, node, bound: Mapping[str, sp.Expr]) -> sp.Basic:
        if node is None:
            raise ModelError(f"{self.where}: missing math")
        L, ty = self._L, node.getType()
        kids = [node.getChild(i) for i in range(node.getNumChildren())]
        if ty in (L.AST_INTEGER, L.AST_REAL, L.AST_REAL_E, L.AST_RATIONAL):
            return self._number(node, ty)
        if ty == L.AST_NAME:
            name = node.getName()
            if name in bound:
                return bound[name]
            return self._resolve(name)
        if ty == L.AST_NAME_TIME:
            return self._time
        if ty == L.AST_NAME_AVOGADRO:
            return sp.Float(AVOGADRO)
        if ty == L.AST_CONSTANT_PI:
            return sp.pi
        if ty == L.AST_CONSTANT_E:
            return sp.E
        if ty == L.AST_CONSTANT_TRUE:
            return sp.true
        if ty == L.AST_CONSTANT_FALSE:
            return sp.false
        if ty == L.AST_LAMBDA or ty == L.AST_FUNCTION_DELAY or ty == L.AST_FUNCTION_RATE_OF:
            raise ModelError(f"{self.where}: unsupported MathML construct `{self._label(node)}`"
                             + self._hint(ty))
        args = [self._node(k, bound) for k in kids]
        return self._operator(node, ty, args, kids, bound)

    def _operator(self, node, ty, args, kids, bound) -> sp.Basic:
        L = self._L
        if ty == L.AST_PLUS:
            return sp.Add(*args)
        if ty == L.AST_TIMES:
            return sp.Mul(*args)
        if ty == L.AST_MINUS:
            self._arity(node, args, (1, 2))
            return -args[0] if len(args) == 1 else args[0] - args[1]
        if ty == L.AST_DIVIDE:
            self._arity(node, args, (2,))
            return args[0] / args[1]
        if ty in (L.AST_POWER, L.AST_FUNCTION_POWER):
            self._arity(node, args, (2,))
            return args[0] ** args[1]
        if ty == L.AST_FUNCTION_ROOT:  # libsbml stores the degree first
            self._arity(node, args, (1, 2))
            return sp.sqrt(args[0]) if len(args) == 1 else args[1] ** (1 / args[0])
        if ty == L.AST_FUNCTION_LOG:  # libsbml stores the base first (10 when absent)
            self._arity(node, args, (1, 2))
            return sp.log(args[0], 10) if len(args) == 1 else sp.log(args[1], args[0])
        if ty in self._unary:
            self._arity(node, args, (1,))
            return self._unary[ty](args[0])
        if ty in (L.AST_FUNCTION_MAX, L.AST_FUNCTION_MIN):
            if not args:
                raise ModelError(f"{self.where}: `{node.getName()}` needs at least one argument")
            return (sp.Max if ty == L.AST_FUNCTION_MAX else sp.Min)(*args)
        if ty == L.AST_FUNCTION_PIECEWISE:
            return self._piecewise(node, args)
        if ty in self._relational:
            return self._relation(node, ty, args)
        if ty in (L.AST_LOGICAL_AND, L.AST_LOGICAL_OR, L.AST_LOGICAL_XOR):
            op = {L.AST_LOGICAL_AND: sp.And, L.AST_LOGICAL_OR: sp.Or, L.AST_LOGICAL_XOR: sp.Xor}[ty]
            return op(*(self._boolean(node, a) for a in args))
        if ty == L.AST_LOGICAL_NOT:
            self._arity(node, args, (1,))
            return sp.Not(self._boolean(node, args[0]))
        if ty == L.AST_FUNCTION:
            return self._call(node, args)
        raise ModelError(f"{self.where}: unsupported MathML construct `{self._label(node)}`"
                         + self._hint(ty))

    # --- pieces ------------------------------------------------------------

    def _number(self, node, ty) -> sp.Expr:
        L = self._L
        if ty == L.AST_INTEGER:
            return sp.Integer(node.getInteger())
        if ty == L.AST_RATIONAL:
            return sp.Rational(node.getNumerator(), node.getDenominator())
        value = node.getReal()
        if not math.isfinite(value):
            raise ModelError(f"{self.where}: non-finite number `{value}` in the math")
        return sp.Float(value)

    def _piecewise(self, node, args) -> sp.Expr:
        pieces = []
        for k in range(0, len(args) - 1, 2):
            pieces.append((args[k], self._boolean(node, args[k + 1])))
        if len(args) % 2 == 1:
            pieces.append((args[-1], sp.true))
        if not pieces:
            raise ModelError(f"{self.where}: empty `piecewise`")
        return sp.Piecewise(*pieces)

    def _relation(self, node, ty, args) -> sp.Basic:
        if len(args) < 2:
            raise ModelError(f"{self.where}: `{node.getName()}` needs at least two arguments")
        op = self._relational[ty]
        # n-ary relations chain: a < b < c means a < b and b < c
        return sp.And(*(op(a, b) for a, b in itertools.pairwise(args)))

    def _boolean(self, node, value) -> sp.Basic:
        if isinstance(value, (sp.logic.boolalg.Boolean, sp.core.relational.Relational)):
            return value
        raise ModelError(f"{self.where}: `{self._label(node)}` expects a condition, got the "
                         f"number `{value}`; write a comparison such as `x > 0`")

    def _call(self, node, args) -> sp.Expr:
        name = node.getName()
        lam = self._functions.get(name)
        if lam is None:
            raise ModelError(f"{self.where}: call of unknown function `{name}`; only SBML "
                             "function definitions and MathML functions are allowed")
        if name in self._inlining:
            raise ModelError(f"{self.where}: function definition `{name}` calls itself "
                             f"(via {' -> '.join(self._inlining)})")
        n_bvar = lam.getNumBvars() if hasattr(lam, "getNumBvars") else lam.getNumChildren() - 1
        if len(args) != n_bvar:
            raise ModelError(f"{self.where}: function definition `{name}` takes {n_bvar} "
                             f"argument(s), got {len(args)}")
        bound = {lam.getChild(i).getName(): args[i] for i in range(n_bvar)}
        body = lam.getChild(lam.getNumChildren() - 1)
        self._inlining.append(name)
        try:
            return self._node(body, bound)
        finally:
            self._inlining.pop()

    def _arity(self, node, args, allowed) -> None:
        if len(args) not in allowed:
            raise ModelError(f"{self.where}: `{self._label(node)}` takes "
                             f"{' or '.join(map(str, allowed))} argument(s), got {len(args)}")

    def _label(self, node) -> str:
        name = node.getName()
        if name:
            return name
        text = _lib().formulaToL3String(node)
        return text if text else f"node type {node.getType()}"

    def _hint(self, ty) -> str:
        L = self._L
        if ty == L.AST_FUNCTION_DELAY:
            return " (delay differential equations are not supported)"
        if ty == L.AST_FUNCTION_RATE_OF:
            return " (rateOf is not supported)"
        if ty == L.AST_LAMBDA:
            return " (a lambda outside a function definition)"
        return ""
