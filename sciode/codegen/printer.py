"""A SymPy printer for Numba kernels.

Subclasses SymPy's Python printer, changing only what matters for
generated kernels:

- symbols print through a fixed map (``y[0]``, ``p[3]``, ``w[1]``, ``t``) so
  no user-chosen name ever reaches generated source;
- floats print as ``repr(float)``, which round-trips exactly (SymPy's default
  prints 15 significant digits);
- integer constants print as floats so that Numba never mixes int and float
  branches, except integer exponents, which stay ints so ``x**2`` compiles to
  a multiplication;
- ``strict=True``: an unsupported function raises instead of being printed
  as a comment.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import precedence
from sympy.printing.codeprinter import PrintMethodNotImplementedError
from sympy.printing.pycode import PythonCodePrinter


class KernelPrinter(PythonCodePrinter):
    """Print SymPy expressions as Numba-compatible Python source."""

    def __init__(self, names: dict):
        # order="none": terms in SymPy's canonical argument order, which is
        # deterministic and the same shape in every row (rows still fold), without
        # the monomial sort of ``as_ordered_terms`` (half of the printing time)
        super().__init__({"strict": True, "fully_qualified_modules": True, "order": "none"})
        self._names = dict(names)

    def _print_Symbol(self, expr):
        if expr in self._names:
            return self._names[expr]
        if expr.name.startswith("_c"):
            return expr.name  # a common subexpression introduced by cse
        raise ValueError(f"symbol `{expr}` has no place in generated code")

    _print_Dummy = _print_Symbol

    def _print_not_supported(self, expr):
        # Keep the offending expression so codegen can name it in a ModelError.
        error = PrintMethodNotImplementedError(f"no kernel translation for `{type(expr).__name__}`")
        error.expr = expr
        raise error

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Integer(self, expr):
        return repr(float(int(expr)))

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Half(self, expr):
        return "0.5"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        b = self.parenthesize(base, precedence(expr), strict=True)
        if exp == sp.S.Half:
            return f"math.sqrt({self._print(base)})"
        if exp == -sp.S.Half:
            return f"(1.0/math.sqrt({self._print(base)}))"
        if exp.is_Integer:
            return f"{b}**({int(exp)})" if exp < 0 else f"{b}**{int(exp)}"
        return f"{b}**{self.parenthesize(exp, precedence(expr), strict=True)}"
