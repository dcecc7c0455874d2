"""PEtab formula strings to SymPy, without evaluating them.

PEtab v1 writes observable, noise and condition formulas as infix text
(``observableParameter1_obs * (pAkt + pAkt_S6)``, ``x^2``, ``log10(y)``).
They are parsed by libsbml's L3 infix parser, which only builds a syntax
tree, and converted by the same whitelist converter as SBML math
(`sciode.sbml._mathml.MathConverter`).  ``log(x)`` is the natural
logarithm (as in SymPy, which PEtab v1 follows), ``**`` is accepted as a
synonym of ``^``, and ``time`` (or ``t`` when the model has no entity of
that name) is the model time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import sympy as sp

from ..errors import ModelError
from ..sbml._mathml import MathConverter

__all__ = ["MAX_LENGTH", "parse_formula"]

#: Longest accepted formula, in characters.
MAX_LENGTH = 20_000

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_formula(text, names: Mapping[str, sp.Expr], time: sp.Symbol, where: str) -> sp.Expr:
    """Parse one PEtab formula into a SymPy expression.

    Parameters
    ----------
    text : str or float
        The formula (a number is returned as ``sympy.Float``).
    names : mapping of str to sympy.Expr
        What each identifier means.
    time : sympy.Symbol
        The model's time symbol.
    where : str
        E.g. ``"observableFormula of `obs1`"``, for messages.

    Raises
    ------
    ModelError
        On a syntax error, an unknown identifier or function, or a construct
        outside the whitelist; the message quotes `where`.
    """
    from ..sbml import _require_libsbml

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not math.isfinite(float(text)):
            raise ModelError(f"{where}: non-finite number {text!r}")
        return sp.Float(float(text))
    if not isinstance(text, str):
        raise ModelError(f"{where}: expected a formula string, got {type(text).__name__}")
    source = text.strip()
    if not source:
        raise ModelError(f"{where}: empty formula")
    if len(source) > MAX_LENGTH:
        raise ModelError(f"{where}: formula longer than {MAX_LENGTH} characters")
    if _NUMBER.match(source):
        return sp.Float(float(source))
    libsbml = _require_libsbml()
    settings = libsbml.L3ParserSettings()
    settings.setParseLog(libsbml.L3P_PARSE_LOG_AS_LN)
    settings.setParseUnits(False)
    settings.setParseAvogadroCsymbol(False)
    settings.setParseCollapseMinus(True)
    node = libsbml.parseL3FormulaWithSettings(source.replace("**", "^"), settings)
    if node is None:
        raise ModelError(f"{where}: cannot parse {source!r}: "
                         f"{libsbml.getLastParseL3Error().strip()}")

    def resolve(name: str) -> sp.Expr:
        if name in names:
            return names[name]
        if name == "t" and "t" not in names:
            return time
        raise ModelError(f"{where}: unknown identifier `{name}` in {source!r}")

    expr = MathConverter(resolve, time, where=where).convert(node)
    if not isinstance(expr, sp.Expr):
        raise ModelError(f"{where}: {source!r} is a condition, not a number")
    return expr
