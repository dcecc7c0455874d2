"""Array-valued declarations: matrix states, parameters and right-hand sides.

A model may declare a state, a parameter or a control as a
``sympy.MatrixSymbol`` (``W1`` of shape ``(H, 2)``) and write the right-hand
side of a matrix state as a matrix expression
(``W2 * (W1 * y + b1).applyfunc(tanh) + b2``).  Every kernel still sees flat
vectors ``y``, ``p``, ``w``: a matrix of shape ``(r, c)`` occupies ``r c``
consecutive entries, row-major, each with a scalar symbol of its own (named
``y[i]`` for a column vector, ``W1[i, j]`` otherwise), so ``param_vector``,
costs and every scalar consumer work unchanged.

What the matrix form buys is kept in a `Structure`: code generation derives
and writes the kernels in matrix form (loops over the index; the gradient
with respect to ``W1`` is an outer product), instead of differentiating
``H * 2`` scalar expressions one by one.  The scalar expansion of the
right-hand side (`expand`) exists for the consumers that need scalars (the
torch path, printing) and is built only when asked for.
"""

from __future__ import annotations

from typing import NamedTuple

import sympy as sp

from .errors import ModelError

__all__ = ["Block", "Structure", "expand", "flatten_symbols", "is_structured_declaration"]


class Block(NamedTuple):
    """One declared symbol and where its entries sit in the flat vector.

    ``symbol`` is a ``sympy.Symbol`` (shape ``(1, 1)``, scalar) or a
    ``sympy.MatrixSymbol``; ``offset`` the index of its first entry;
    ``entries`` the flat scalar symbols, row-major.
    """

    symbol: sp.Basic
    offset: int
    shape: tuple
    entries: tuple

    @property
    def is_matrix(self) -> bool:
        return isinstance(self.symbol, sp.MatrixSymbol)

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]


class Structure(NamedTuple):
    """The matrix form of a model: declared blocks and one rhs per state block.

    ``rhs[k]`` is the right-hand side of ``states[k]``: a matrix expression of
    that block's shape, or a scalar expression for a scalar state.
    ``elements`` maps every ``MatrixElement`` (``W1[0, 1]``) to its flat symbol.
    """

    states: tuple
    params: tuple
    controls: tuple
    rhs: tuple
    elements: dict

    def flat(self, expr):
        """``expr`` with every matrix entry ``M[i, j]`` replaced by its flat symbol."""
        return sp.sympify(expr).xreplace(self.elements)


def is_structured_declaration(*groups) -> bool:
    """True when any declared symbol is a ``MatrixSymbol``."""
    return any(isinstance(s, sp.MatrixSymbol) for group in groups for s in group)


def _entry_name(m: sp.MatrixSymbol, i: int, j: int) -> str:
    return f"{m.name}[{i}]" if m.shape[1] == 1 else f"{m.name}[{i}, {j}]"


def flatten_symbols(items, what: str) -> tuple[tuple, tuple]:
    """Flatten a declaration of Symbols and MatrixSymbols.

    Returns ``(flat, blocks)``: the scalar symbols in vector order and one
    `Block` per declared item.

    Raises
    ------
    ModelError
        For an item that is neither, or a matrix whose shape is not concrete.
    """
    flat, blocks = [], []
    for k, item in enumerate(items):
        if isinstance(item, sp.MatrixSymbol):
            r, c = item.shape
            if not (isinstance(r, (int, sp.Integer)) and isinstance(c, (int, sp.Integer))):
                raise ModelError(f"`{what}[{k}]` = `{item}` has the symbolic shape {item.shape}; "
                                 "give matrix symbols integer shapes")
            r, c = int(r), int(c)
            if r * c == 0:
                raise ModelError(f"`{what}[{k}]` = `{item}` has no entries (shape {(r, c)})")
            entries = tuple(sp.Symbol(_entry_name(item, i, j)) for i in range(r) for j in range(c))
            blocks.append(Block(item, len(flat), (r, c), entries))
            flat.extend(entries)
        elif isinstance(item, sp.Symbol):
            blocks.append(Block(item, len(flat), (1, 1), (item,)))
            flat.append(item)
        else:
            raise ModelError(f"`{what}[{k}]` must be a sympy.Symbol or sympy.MatrixSymbol, got "
                             f"{type(item).__name__} {item!r}")
    return tuple(flat), tuple(blocks)


def element_map(*block_groups) -> dict:
    """``{M[i, j]: flat symbol}`` for every matrix block."""
    out = {}
    for blocks in block_groups:
        for b in blocks:
            if b.is_matrix:
                r, c = b.shape
                for i in range(r):
                    for j in range(c):
                        out[b.symbol[i, j]] = b.entries[i * c + j]
    return out


def check_rhs_shapes(state_blocks, rhs) -> tuple:
    """One rhs per state block, of that block's shape; returns the rhs as SymPy objects."""
    if len(rhs) != len(state_blocks):
        raise ModelError(f"{len(state_blocks)} states declared but {len(rhs)} rhs entries; "
                         "give one rhs per declared state (a matrix expression for a matrix state)")
    out = []
    for k, (b, e) in enumerate(zip(state_blocks, rhs)):
        if isinstance(e, sp.MatrixBase):
            e = sp.ImmutableMatrix(e)
        elif not isinstance(e, sp.Basic):
            e = sp.sympify(e)
        label = f"rhs[{k}] (d {b.symbol}/dt)"
        if b.is_matrix:
            if not getattr(e, "is_Matrix", False):
                raise ModelError(f"{label} must be a matrix expression of shape {b.shape}, "
                                 f"got the scalar `{e}`")
            if tuple(int(s) for s in e.shape) != b.shape:
                raise ModelError(f"{label} has shape {tuple(e.shape)}, but `{b.symbol}` has "
                                 f"shape {b.shape}")
        elif getattr(e, "is_Matrix", False):
            raise ModelError(f"{label} is a matrix of shape {tuple(e.shape)}, but "
                             f"`{b.symbol}` is a scalar state")
        out.append(e)
    return tuple(out)


def expand(structure: Structure) -> tuple:
    """Scalar right-hand sides in flat symbols, one per flat state."""
    out = []
    for b, e in zip(structure.states, structure.rhs):
        if b.is_matrix:
            m = e.as_explicit()
            out.extend(structure.flat(m[i, j]) for i in range(b.shape[0]) for j in range(b.shape[1]))
        else:
            out.append(structure.flat(e))
    return tuple(out)
