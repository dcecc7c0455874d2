"""Emit the source of a kernel module from derived expressions.

Only the equations are generated; every loop lives in library code.  A kernel
is a plain Python function ``name(t, y, p, w, [v|S,] out)`` whose body is a
block of common subexpressions followed by one assignment per output entry,
each tagged with a comment naming the entry (``# f[3]``).
"""

from __future__ import annotations

import re

import sympy as sp

from .printer import KernelPrinter
from .rolling import fold

CSE_PREFIX = "_c"
#: 1-D input arrays whose entries a kernel reads at fixed indices (``y[3]``)
HOISTED = ("y", "p", "w", "v")
#: a read of the sensitivity column ``k`` in ``sens_rhs``'s loop body
_COLUMN_READ = re.compile(r"\bS\[(\d+), k\]")
#: Kernels with more outputs than this are folded into loops where rows repeat (CSE otherwise).
ROLL_THRESHOLD = 64


def canonical_symbols(model):
    """Map the model's symbols to internal placeholders and source names.

    Returns ``(subs, names)``: ``subs`` replaces each user symbol by a
    placeholder that no user symbol can equal (placeholders are
    ``sympy.Dummy``), and ``names`` maps each placeholder to its source text.
    """
    subs, names = {}, {}

    def add(symbol, text, key):
        # The Dummy's name only orders terms when printing: zero-padded
        # indices keep that order the same in every row, so rows fold.
        d = sp.Dummy(key)
        subs[symbol] = d
        names[d] = text

    add(model.t, "t", "t")
    for i, s in enumerate(model.states):
        add(s, f"y[{i}]", f"y{i:07d}")
    for j, s in enumerate(model.params):
        add(s, f"p[{j}]", f"p{j:07d}")
    for k, s in enumerate(model.controls):
        add(s, f"w[{k}]", f"w{k:07d}")
    return subs, names


def nz_order(entries):
    """The ``(row, col)`` pairs of a Jacobian pattern in ``jac_nz``'s order
    (``sciode.abi``): by diagonal ``col - row``, then row, so that a band's
    entries are consecutive and fold into one loop per diagonal."""
    return sorted(entries, key=lambda rc: (rc[1] - rc[0], rc[0]))


def cotangent_symbols(n: int, array: str = "v"):
    """Placeholders for a cotangent vector ``v[0..n)`` and their names."""
    syms = [sp.Dummy(f"{array}{i:07d}") for i in range(n)]
    return syms, {s: f"{array}[{i}]" for i, s in enumerate(syms)}


#: Above this many printed characters a kernel that does not fold is emitted as
#: it is: SymPy's CSE grows superlinearly with the expression size.
CSE_MAX_CHARS = 2_000_000


def _mostly_unfolded(folded, n_outputs: int, printed) -> bool:
    """True when folding left more than half of the outputs as scalar lines,
    and the kernel is small enough for CSE."""
    scalar = sum(1 for line in folded if not line.startswith(("for ", " ")))
    return 2 * scalar > n_outputs and sum(len(p[1]) for p in printed) <= CSE_MAX_CHARS


def _hoisted(lines: list, patterns, indent: str) -> list:
    """``lines`` with each fixed-index read matched by ``patterns`` (``(regex,
    local name of a match)``) read once into a local, declared first."""
    seen = {}
    out = []
    for line in lines:
        code, sep, comment = line.partition("  # ")
        for regex, local in patterns:
            code = regex.sub(lambda m, local=local: seen.setdefault(m.group(0), local(m)), code)
        out.append(code + sep + comment)
    return [f"{indent}{name} = {read}" for read, name in seen.items()] + out


def _hoist_reads(body: list, args, start: int, loop=None) -> list:
    """Read every fixed entry of the 1-D inputs (``y[3]``, ``p[0]``) once, into
    a local (``_y3 = y[3]``), and use the local after; inside ``sens_rhs``'s
    column loop (``body[loop]``) the loop body's reads, ``S[j, k]`` too, at
    the top of the loop body.

    The same expressions (under the kernels' ``reassoc`` flag LLVM may order
    a band's sums differently: Brusselator results move by <= 1e-10
    relative at rtol 1e-6, Lotka-Volterra and Robertson not at all); but Numba types and lowers
    each indexing expression separately, bounds logic and all, and a model's
    kernels repeat the same few dozen reads hundreds of times: 40% of the
    compile time of a PEtab model's kernels (Boehm: 4.5 -> 2.7 s).  Not
    hoisted out of the loop: hundreds of values live across its back edge
    made the 2-100-2 network's ``sens_rhs`` compile 3x slower.  Inputs
    only: generated kernels write ``out`` alone, so a read moved before the
    writes reads the same value.
    """
    names = [a for a in HOISTED if a in args]
    fixed = [(re.compile(r"\b(" + "|".join(names) + r")\[(\d+)\]"),
              lambda m: f"_{m.group(1)}{m.group(2)}")] if names else []
    if loop is None:
        return body[:start] + _hoisted(body[start:], fixed, "    ")
    end = loop + 1
    while end < len(body) and body[end].startswith("        "):
        end += 1
    column = [(_COLUMN_READ, lambda m: f"_S{m.group(1)}")]
    return (body[:loop + 1] + _hoisted(body[loop + 1:end], fixed + column, "        ")
            + _hoisted(body[end:], fixed, "    "))


class KernelWriter:
    """Accumulates the source of one generated module."""

    def __init__(self, names: dict, use_cse: bool = True):
        self.names = dict(names)
        self.use_cse = use_cse
        self.lines: list[str] = []

    def constant(self, name: str, value) -> None:
        self.lines.append(f"{name} = {value!r}")

    def function(self, name, args, outputs, doc, extra_names=None, zero=None, tail=(), outer=None,
                 after=(), fixed_cols=False, prologue=()):
        """Write ``def name(*args)`` computing ``target = expr`` for each output.

        Parameters
        ----------
        outputs : list of (target, expr, comment[, anchor, relative_target])
            ``target`` is source text such as ``out[2]``; an ``anchor`` row
            folds the assignments along it (``rolling.fold``).
        extra_names : dict, optional
            More placeholder -> source-name entries (cotangents).
        zero : str or list of str, optional
            An output array to fill with zeros first (sparse outputs), or the
            entries to zero (``["out[3]", ...]``).
        tail : sequence of str
            Source lines appended after the assignments (already indented
            relative to the function body).
        outer : str, optional
            A loop header (``for k in range(S.shape[1]):``) enclosing the
            assignments.
        after : list of (target, expr, comment[, anchor])
            Increments ``target += expr`` after the (outer loop of the)
            assignments, folded into loops (along ``anchor`` rows if given);
            their column indices are absolute (parameters).
        fixed_cols : bool
            Matrix outputs whose column index is absolute (``df/dp``).
        prologue : sequence of str
            Source lines at the top of the body (after the docstring).
        """
        names = dict(self.names)
        names.update(extra_names or {})
        printer = KernelPrinter(names)
        exprs = [sp.sympify(o[1]) for o in outputs]
        body = [f'    """{doc}"""', *(f"    {line}" for line in prologue)]
        if isinstance(zero, str):
            body.append(f"    {zero}[:] = 0.0")
        elif zero:
            body.extend(f"    {target} = 0.0" for target in zero)
        indent = "    "
        if outer is not None:
            body.append(f"    {outer}")
            indent = "        "
        folded = None
        if len(outputs) > ROLL_THRESHOLD:
            # Large kernels: independent assignments folded into loops
            # (see rolling.py); CSE would tie them together.
            printed = [(o[0], printer.doprint(e), o[2], *o[3:]) for o, e in zip(outputs, exprs)]
            folded = fold(printed, name, "=", fixed_cols)
            if self.use_cse and _mostly_unfolded(folded, len(outputs), printed):
                # Nothing repeats by rows (a dense network's weights, say): CSE
                # instead, or every output recomputes the shared subterms
                # (LLVM cannot share them across the stores to ``out``).
                folded = None
        if folded is not None:
            body.extend(indent + line for line in folded)
        else:
            if self.use_cse and exprs:
                symbols = sp.numbered_symbols(CSE_PREFIX)
                replacements, exprs = sp.cse(exprs, symbols=symbols, order="none")
            else:
                replacements = []
            for sym, e in replacements:
                body.append(f"{indent}{sym.name} = {printer.doprint(e)}")
            for o, e in zip(outputs, exprs):
                body.append(f"{indent}{o[0]} = {printer.doprint(e)}  # {o[2]}")
        if after:
            # (no CSE here: it made the 2-100-2 network's sens_rhs compile 4x slower)
            printed = [(a[0], printer.doprint(sp.sympify(a[1])), *a[2:]) for a in after]
            body.extend("    " + line for line in fold(printed, name, "+=", True))
        body.extend(f"    {line}" for line in tail)
        body = _hoist_reads(body, args, 1 + len(prologue),
                            None if outer is None else body.index(f"    {outer}"))
        if len(body) == 1:
            body.append("    return")
        self.lines.append("")
        self.lines.append("")
        self.lines.append(f"def {name}({', '.join(args)}):")
        self.lines.extend(body)

    def source(self, header: str) -> str:
        return header + "\nimport math\n\n" + "\n".join(self.lines) + "\n"
