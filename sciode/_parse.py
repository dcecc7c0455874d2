"""Safe parsing of right-hand-side strings into SymPy expressions.

`sympy.sympify` and `sympy.parsing.sympy_parser.parse_expr` call `eval` on
their input, so a model file or a web form could run arbitrary code through
them (sympy/sympy#10805). This module never evaluates user text: it parses it
with `ast.parse` and rebuilds the expression node by node from a whitelist of
numbers, declared symbols, arithmetic operators and a fixed table of
elementary functions. Anything outside the whitelist raises `ModelError`.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping

import sympy as sp

from .errors import ModelError

__all__ = ["parse_expression", "FUNCTIONS", "MAX_LENGTH", "MAX_DEPTH"]

#: Longest accepted input, in characters; bounds parse time and memory.
MAX_LENGTH = 10_000
#: Deepest accepted nesting of the expression tree. Long chains of ``+``/``-``
#: or ``*``/``/`` count as one level, so a 500-term polynomial is fine while
#: ``((((...))))`` or ``sin(sin(sin(...)))`` 101 levels deep is not.
MAX_DEPTH = 100
#: Largest exact power ``a**n`` of two numbers, in bits of the result; an
#: unbounded ``10**10**10`` would make SymPy compute a 33-gigabit integer.
MAX_POWER_BITS = 4096

#: Functions callable from strings: name -> (SymPy function, variadic).
FUNCTIONS: dict[str, tuple[Callable[..., sp.Expr], bool]] = {
    "exp": (sp.exp, False),
    "log": (sp.log, False),
    "sqrt": (sp.sqrt, False),
    "sin": (sp.sin, False),
    "cos": (sp.cos, False),
    "tan": (sp.tan, False),
    "tanh": (sp.tanh, False),
    "sinh": (sp.sinh, False),
    "cosh": (sp.cosh, False),
    "atan": (sp.atan, False),
    "asin": (sp.asin, False),
    "acos": (sp.acos, False),
    "Abs": (sp.Abs, False),
    "abs": (sp.Abs, False),
    "sign": (sp.sign, False),
    "Min": (sp.Min, True),
    "Max": (sp.Max, True),
}

#: Named constants, used only when no declared symbol has the same name.
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E}

# Human names for rejected nodes, so the message says "attribute access"
# rather than "Attribute".
_CONSTRUCT_NAMES: dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.Starred: "starred argument",
    ast.Compare: "comparison",
    ast.BoolOp: "boolean operator",
    ast.IfExp: "conditional expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.JoinedStr: "f-string",
    ast.NamedExpr: "assignment expression",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slice",
}

_OPERATOR_SYMBOLS: dict[type, str] = {
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.Invert: "~",
    ast.Not: "not",
}

_ADDITIVE = (ast.Add, ast.Sub)
_MULTIPLICATIVE = (ast.Mult, ast.Div)


def parse_expression(text: str, symbols: Mapping[str, sp.Symbol]) -> sp.Expr:
    """Parse an arithmetic expression string without evaluating it.

    Parameters
    ----------
    text : str
        Python-syntax arithmetic, e.g. ``"-k*x - c*v + exp(-t)"``. Powers use
        ``**``.
    symbols : mapping of str to sympy.Symbol
        The names the expression may use. ``pi`` and ``E`` are also
        available unless a key of `symbols` shadows them.

    Returns
    -------
    sympy.Expr
        The expression. Integer literals stay exact (``1/2`` is
        ``Rational(1, 2)``); float literals become ``sympy.Float``.

    Raises
    ------
    ModelError
        If `text` is not a string, is longer than `MAX_LENGTH` characters,
        is not valid syntax, nests deeper than `MAX_DEPTH`, or uses any
        construct outside the whitelist (attribute access, subscripts,
        unknown names or functions, keyword arguments, ``^`` ...). The
        message names the construct and quotes the input.

    Notes
    -----
    Whitelist: int/float literals; names in `symbols`, ``pi``, ``E``;
    binary ``+ - * / **``; unary ``+ -``; calls ``f(arg)`` of a name in
    `FUNCTIONS` (``Min``/``Max`` take one or more arguments, the others
    exactly one), with no keyword or starred arguments.
    """
    if not isinstance(text, str):
        raise ModelError(
            f"expected an expression string, got {type(text).__name__} {text!r}"
        )
    if len(text) > MAX_LENGTH:
        raise ModelError(
            f"expression string is {len(text)} characters long, more than the "
            f"limit of {MAX_LENGTH}: {_quote(text)}"
        )
    source = text.strip()
    if not source:
        raise ModelError("empty expression string ''")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ModelError(
            f"invalid expression syntax ({exc.msg if isinstance(exc, SyntaxError) else exc}) "
            f"in {_quote(text)}"
        ) from None
    except (RecursionError, MemoryError):
        # CPython's parser gives up on pathological nesting (10 000 unary
        # minus signs) or ~3000 chained operators before our own depth check
        # can run; both are far beyond any real right-hand side.
        raise ModelError(
            "expression is too deeply nested or has too many chained operators "
            f"for Python's parser (nesting limit {MAX_DEPTH}): {_quote(text)}"
        ) from None
    return _Builder(source, text, symbols).build(tree.body, depth=1)


class _Builder:
    """Rebuild a whitelisted `ast` tree as a SymPy expression."""

    def __init__(self, source: str, text: str, symbols: Mapping[str, sp.Symbol]):
        self.source = source
        self.text = text
        self.symbols = symbols

    def build(self, node: ast.AST, depth: int) -> sp.Expr:
        if depth > MAX_DEPTH:
            raise ModelError(
                f"expression nests deeper than {MAX_DEPTH} levels: {_quote(self.text)}"
            )
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node, depth)
        if isinstance(node, ast.UnaryOp):
            return self._unaryop(node, depth)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        self._reject(node)

    # --- leaves ---------------------------------------------------------

    def _constant(self, node: ast.Constant) -> sp.Expr:
        value = node.value
        # bool is a subclass of int, so test it first.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelError(
                f"unsupported constant `{self._segment(node)}` "
                f"({type(value).__name__}) in {_quote(self.text)}; "
                "only real int and float literals are allowed"
            )
        if isinstance(value, int):
            return sp.Integer(value)
        if not math.isfinite(value):
            raise ModelError(
                f"non-finite constant `{self._segment(node)}` in {_quote(self.text)}"
            )
        return sp.Float(value)

    def _name(self, node: ast.Name) -> sp.Expr:
        name = node.id
        if name.startswith("__"):
            raise ModelError(
                f"dunder name `{name}` is not allowed in {_quote(self.text)}"
            )
        if name in self.symbols:
            return self.symbols[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise ModelError(
                f"function `{name}` used without calling it in {_quote(self.text)}"
            )
        declared = ", ".join(sorted(self.symbols)) or "none"
        raise ModelError(
            f"unknown name `{name}` in {_quote(self.text)}; declare it as a "
            f"state, param or control (declared: {declared})"
        )

    # --- operators ------------------------------------------------------

    def _binop(self, node: ast.BinOp, depth: int) -> sp.Expr:
        if isinstance(node.op, _ADDITIVE):
            terms = [
                -self.build(operand, depth + 1) if negate else self.build(operand, depth + 1)
                for operand, negate in self._chain(node, _ADDITIVE, ast.Sub)
            ]
            return sp.Add(*terms)
        if isinstance(node.op, _MULTIPLICATIVE):
            factors = []
            for operand, invert in self._chain(node, _MULTIPLICATIVE, ast.Div):
                factor = self.build(operand, depth + 1)
                factors.append(1 / factor if invert else factor)
            return sp.Mul(*factors)
        if isinstance(node.op, ast.Pow):
            base = self.build(node.left, depth + 1)
            exponent = self.build(node.right, depth + 1)
            self._check_power_size(node, base, exponent)
            return base**exponent
        self._reject_operator(node, node.op)

    def _chain(self, node: ast.BinOp, ops: tuple[type, ...], inverse: type):
        """Flatten a left-associative chain such as ``a - b + c - d``.

        Returns ``[(operand, is_inverted), ...]`` left to right. Walking the
        left spine in a loop keeps a long sum from counting as deep nesting
        (and from recursing once per term).
        """
        chain = []
        while isinstance(node, ast.BinOp) and isinstance(node.op, ops):
            chain.append((node.right, isinstance(node.op, inverse)))
            node = node.left
        chain.append((node, False))
        chain.reverse()
        return chain

    def _check_power_size(self, node: ast.BinOp, base: sp.Expr, exponent: sp.Expr) -> None:
        """Refuse exact powers of numbers too large to compute quickly."""
        if not (base.is_Rational and exponent.is_Integer):
            return
        bits = max(abs(base.p).bit_length(), abs(base.q).bit_length())
        if bits > 1 and abs(int(exponent)) * bits > MAX_POWER_BITS:
            raise ModelError(
                f"power `{self._segment(node)}` is too large to evaluate exactly "
                f"(limit {MAX_POWER_BITS} bits) in {_quote(self.text)}"
            )

    def _unaryop(self, node: ast.UnaryOp, depth: int) -> sp.Expr:
        if isinstance(node.op, ast.USub):
            return -self.build(node.operand, depth + 1)
        if isinstance(node.op, ast.UAdd):
            return self.build(node.operand, depth + 1)
        self._reject_operator(node, node.op)

    # --- calls ----------------------------------------------------------

    def _call(self, node: ast.Call, depth: int) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            raise ModelError(
                f"only calls of a plain function name are allowed, not "
                f"`{self._segment(node.func)}` in {_quote(self.text)}"
            )
        name = node.func.id
        if name not in FUNCTIONS:
            known = ", ".join(FUNCTIONS)
            what = "a symbol, not a function" if name in self.symbols else "not a supported function"
            raise ModelError(
                f"`{name}` is {what} in {_quote(self.text)}; supported functions: {known}"
            )
        function, variadic = FUNCTIONS[name]
        if node.keywords:
            keyword = node.keywords[0].arg or "**"
            raise ModelError(
                f"keyword argument `{keyword}` in call of `{name}` is not allowed "
                f"in {_quote(self.text)}"
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self._reject(arg)
        count = len(node.args)
        if (variadic and count < 1) or (not variadic and count != 1):
            expected = "at least one argument" if variadic else "exactly one argument"
            raise ModelError(
                f"`{name}` takes {expected}, got {count} in {_quote(self.text)}"
            )
        return function(*(self.build(arg, depth + 1) for arg in node.args))

    # --- errors ---------------------------------------------------------

    def _reject(self, node: ast.AST):
        construct = _CONSTRUCT_NAMES.get(type(node), type(node).__name__)
        raise ModelError(
            f"unsupported construct: {construct} `{self._segment(node)}` in "
            f"{_quote(self.text)}"
        )

    def _reject_operator(self, node: ast.AST, op: ast.AST):
        symbol = _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)
        hint = "; use `**` for powers" if isinstance(op, ast.BitXor) else ""
        raise ModelError(
            f"unsupported operator `{symbol}` in `{self._segment(node)}` of "
            f"{_quote(self.text)}{hint}"
        )

    def _segment(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.source, node)
        return _shorten(segment if segment is not None else ast.dump(node))


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _quote(text: str) -> str:
    """Quote user input for an error message, truncating huge strings."""
    return repr(_shorten(text))
