"""Fold repeated straight-line assignments into loops.

A discretized PDE (a Brusselator on 2 x 256 points) has hundreds of
right-hand-side entries of one shape: ``out[i] = A + y[i]**2*y[i+256] - ...``.
Emitted one line each, Numba needs minutes to compile them (its compile time
grows faster than linearly with the number of statements: measured 6 s for
50 lines, 172 s for 800 on this machine); folded into a loop, seconds.

Each assignment ``out[i] = expr`` is rewritten relative to its own row
``i``: every index of ``y``, ``v`` and ``S[., k]`` becomes ``i + d``.
Assignments with the same relative form and rows in arithmetic progression
become one ``for i in range(...)`` loop; the rest (boundary rows) stay as
they are.  Assignments must be independent (no common subexpressions), which
is why large kernels are emitted without CSE.
"""

from __future__ import annotations

import re
from collections import defaultdict

_TARGET = re.compile(r"^out\[(\d+)(?:, (\d+|k))?\]$")
_VEC_INDEX = re.compile(r"\b([yv])\[(\d+)\]")
_SENS_INDEX = re.compile(r"\bS\[(\d+), k\]")
MIN_RUN = 3
_LOOP_INDEX = re.compile(r"\bi\b")


def _rel(x: int, i: int) -> str:
    d = x - i
    return "i" if d == 0 else (f"i + {d}" if d > 0 else f"i - {-d}")


def relative_form(target: str, expr: str, anchor=None, fixed_cols=False, relative_target=False):
    """``(row, relative target, relative expression)`` or None if not foldable.

    The row is the target's first index, or ``anchor`` when given: an
    accumulation ``out[j] += M[i, j] v[i]`` over rows ``i``, whose target
    stays absolute (a sum into one output, ``j`` a parameter) unless
    ``relative_target`` (``j`` a state: the band ``out[i + d] += ...`` of a
    sparse Jacobian folds into one loop per diagonal).
    """
    m = _TARGET.match(target)
    if m is None:
        return None
    i = int(m.group(1)) if anchor is None else int(anchor)
    col = m.group(2)
    if anchor is not None and relative_target and col is None:
        rt = f"out[{_rel(int(m.group(1)), i)}]"
    elif anchor is not None:
        rt = target
    elif col is None:
        rt = "out[i]"
    elif col == "k":
        rt = "out[i, k]"
    elif fixed_cols:  # columns index parameters, not states
        rt = f"out[i, {col}]"
    else:
        rt = f"out[i, {_rel(int(col), i)}]"
    re_ = _VEC_INDEX.sub(lambda mm: f"{mm.group(1)}[{_rel(int(mm.group(2)), i)}]", expr)
    re_ = _SENS_INDEX.sub(lambda mm: f"S[{_rel(int(mm.group(1)), i)}, k]", re_)
    return i, rt, re_


def _runs(rows):
    """Split sorted rows into maximal arithmetic progressions."""
    runs, cur = [], [rows[0]]
    for r in rows[1:]:
        if len(cur) == 1 or r - cur[-1] == cur[1] - cur[0]:
            cur.append(r)
        else:
            runs.append(cur)
            cur = [r]
    runs.append(cur)
    return runs


def fold(lines, label: str, op: str = "=", fixed_cols: bool = False):
    """Source lines for ``[(target, expr, comment[, anchor[, relative_target]])]``,
    loops where possible."""
    groups = defaultdict(list)
    literal = []
    for line in lines:
        target, expr, comment = line[:3]
        form = relative_form(target, expr, line[3] if len(line) > 3 else None, fixed_cols,
                             len(line) > 4 and line[4])
        if form is None:
            literal.append(f"{target} {op} {expr}  # {comment}")
        else:
            i, rt, re_ = form
            groups[(rt, re_)].append((i, target, expr, comment))
    out = list(literal)
    for (rt, re_), members in groups.items():
        members.sort()
        by_row = {m[0]: m for m in members}
        for run in _runs([m[0] for m in members]):
            if len(run) >= MIN_RUN:
                step = run[1] - run[0]
                rng = f"range({run[0]}, {run[-1] + 1}, {step})" if step != 1 else f"range({run[0]}, {run[-1] + 1})"
                head = f"for i in {rng}:  # {label}[{run[0]}..{run[-1]}:{step}]"
                if op == "+=" and _LOOP_INDEX.search(rt) is None:
                    # A sum into one entry: accumulate in a local, or every
                    # iteration stores and reloads out[j] (it may alias the
                    # inputs, as far as the compiler knows): 4x slower.
                    out.extend(["_acc = 0.0", head, f"    _acc += {re_}", f"{rt} += _acc"])
                else:
                    out.append(head)
                    out.append(f"    {rt} {op} {re_}")
            else:
                out.extend(f"{by_row[r][1]} {op} {by_row[r][2]}  # {by_row[r][3]}" for r in run)
    return out
