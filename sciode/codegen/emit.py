"""Emit the source of a kernel module from derived expressions.

Only the equations are generated; every loop lives in library code.  A kernel
is a plain Python function ``name(t, y, p, w, [v|S,] out)`` whose body is a
block of common subexpressions followed by one assignment per output entry,
each tagged with a comment naming the entry (``# f[3]``).
"""

from __future__ import annotations

import sympy as sp

from .printer import KernelPrinter

CSE_PREFIX = "_c"


def canonical_symbols(model):
    """Map the model's symbols to internal placeholders and source names.

    Returns ``(subs, names)``: ``subs`` replaces each user symbol by a
    placeholder that no user symbol can equal (placeholders are
    ``sympy.Dummy``), and ``names`` maps each placeholder to its source text.
    """
    subs, names = {}, {}

    def add(symbol, text):
        d = sp.Dummy(text)
        subs[symbol] = d
        names[d] = text

    add(model.t, "t")
    for i, s in enumerate(model.states):
        add(s, f"y[{i}]")
    for j, s in enumerate(model.params):
        add(s, f"p[{j}]")
    for k, s in enumerate(model.controls):
        add(s, f"w[{k}]")
    return subs, names


def cotangent_symbols(n: int, array: str = "v"):
    """Placeholders for a cotangent vector ``v[0..n)`` and their names."""
    syms = [sp.Dummy(f"{array}{i}") for i in range(n)]
    return syms, {s: f"{array}[{i}]" for i, s in enumerate(syms)}


class KernelWriter:
    """Accumulates the source of one generated module."""

    def __init__(self, names: dict, use_cse: bool = True):
        self.names = dict(names)
        self.use_cse = use_cse
        self.lines: list[str] = []

    def constant(self, name: str, value) -> None:
        self.lines.append(f"{name} = {value!r}")

    def function(self, name, args, outputs, doc, extra_names=None, zero=None, tail=()):
        """Write ``def name(*args)`` computing ``target = expr`` for each output.

        Parameters
        ----------
        outputs : list of (target, expr, comment)
            ``target`` is source text such as ``out[2]``.
        extra_names : dict, optional
            More placeholder -> source-name entries (cotangents).
        zero : str, optional
            An output array to fill with zeros first (sparse outputs).
        tail : sequence of str
            Source lines appended after the assignments (already indented
            relative to the function body).
        """
        names = dict(self.names)
        names.update(extra_names or {})
        printer = KernelPrinter(names)
        exprs = [sp.sympify(e) for _, e, _ in outputs]
        if self.use_cse and exprs:
            symbols = sp.numbered_symbols(CSE_PREFIX)
            replacements, exprs = sp.cse(exprs, symbols=symbols, order="none")
        else:
            replacements = []
        body = [f'    """{doc}"""']
        if zero is not None:
            body.append(f"    {zero}[:] = 0.0")
        for sym, e in replacements:
            body.append(f"    {sym.name} = {printer.doprint(e)}")
        for (target, _, comment), e in zip(outputs, exprs):
            body.append(f"    {target} = {printer.doprint(e)}  # {comment}")
        body.extend(f"    {line}" for line in tail)
        if len(body) == 1:
            body.append("    return")
        self.lines.append("")
        self.lines.append("")
        self.lines.append(f"def {name}({', '.join(args)}):")
        self.lines.extend(body)

    def source(self, header: str) -> str:
        return header + "\nimport math\n\n" + "\n".join(self.lines) + "\n"
