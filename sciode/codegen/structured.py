"""Emit the model-kernel module of a model declared in matrix form.

The kernels are the same as for a scalar model (``sciode.abi.MODEL_KERNELS``)
and take the same flat ``y, p, w``; their bodies are loops over the
`sciode.symbolic.matrix.Program`'s arrays instead of unrolled scalar code:

- ``rhs``: the forward program, then the outputs;
- ``vjp_y``, ``vjp_p``, ``vjp_w``, ``vjp_yp``: the forward program, then one
  reverse sweep seeded with ``v`` (cost: a small multiple of ``rhs``, for any
  number of parameters);
- ``jac_y``, ``jac_p``, ``dfdt``, ``sens_rhs``: one reverse sweep per row
  ``e_q`` (``n`` sweeps; meant for the few-state, many-parameter models the
  matrix form serves).

Intermediate arrays are allocated per call (``np.empty``); a dense layer of
width 1000 spends far longer in its ``tanh`` than in two allocations.
"""

from __future__ import annotations

from ..symbolic.matrix import Program
from .emit import nz_order
from .printer import KernelPrinter

_ROLE_ARRAY = {"y": "y", "p": "p", "w": "w"}


def _index(offset: int, i: str, j: str, c: int) -> str:
    """Text of the flat index of entry ``(i, j)`` of a row-major block."""
    parts = [str(offset)] if offset else []
    if c == 1:
        parts.append(i)
    else:
        parts.append(f"{i} * {c}" if i != "0" else "")
        parts.append(j)
    parts = [x for x in parts if x and x != "0"]
    return " + ".join(parts) if parts else "0"


class _Emitter:
    def __init__(self, prog: Program):
        self.prog = prog
        self.values = prog.values
        self.symbol_names = {}
        for s, (role, i) in prog.roles.items():
            self.symbol_names[s] = "t" if role == "t" else f"{_ROLE_ARRAY[role]}[{i}]"

    # --- accessors --------------------------------------------------------------

    def val(self, k: int, i: str, j: str) -> str:
        v = self.values[k]
        if v.kind == "leaf":
            role, offset = v.data
            return f"{_ROLE_ARRAY[role]}[{_index(offset, i, j, v.shape[1])}]"
        if v.kind == "const":
            return f"_K{k}[{i}, {j}]"
        if v.kind == "scalar":
            return f"_s{k}"
        if v.kind == "transpose":
            return self.val(v.args[0], j, i)
        return f"_m{k}[{i}, {j}]"

    def adj(self, k: int, i: str, j: str, targets: dict) -> str | None:
        v = self.values[k]
        if v.kind == "leaf":
            role, offset = v.data
            if role not in targets:
                return None
            arr, base = targets[role]
            return f"{arr}[{_index(base + offset, i, j, v.shape[1])}]"
        if v.kind == "const":
            return None
        if v.kind == "scalar":
            return f"_sb{k}"
        if v.kind == "transpose":
            return self.adj(v.args[0], j, i, targets)
        return f"_b{k}[{i}, {j}]"

    def scalar_text(self, expr) -> str:
        return KernelPrinter(self.symbol_names).doprint(expr)

    def map_text(self, k: int, expr, i: str, j: str) -> str:
        v = self.values[k]
        _, xs, _, out = v.data
        names = {x: self.val(a, i, j) for x, a in zip(xs, v.args)}
        names[out] = self.val(k, i, j)
        return KernelPrinter(names).doprint(expr)

    # --- loops ------------------------------------------------------------------

    @staticmethod
    def loops(shape, indent: str, names=("_i", "_j")):
        """``(header lines, body indent, i, j)`` iterating over a ``shape`` array."""
        r, c = shape
        lines, i, j = [], "0", "0"
        if r > 1:
            lines.append(f"{indent}for {names[0]} in range({r}):")
            indent += "    "
            i = names[0]
        if c > 1:
            lines.append(f"{indent}for {names[1]} in range({c}):")
            indent += "    "
            j = names[1]
        return lines, indent, i, j

    def contraction(self, shape, names, inner: str, n_inner: int, ind: str, term, store) -> list[str]:
        """``store(i, j) sum_{inner < n_inner} term(i, j, inner)`` for every ``(i, j)`` of ``shape``."""
        head, ii, i, j = self.loops(shape, ind, names)
        return [*head, f"{ii}_acc = 0.0", f"{ii}for {inner} in range({n_inner}):",
                f"{ii}    _acc += {term(i, j, inner)}", f"{ii}{store(i, j)} _acc"]

    # --- forward ----------------------------------------------------------------

    def forward(self, ind: str) -> list[str]:
        out = []
        for k, v in enumerate(self.values):
            if v.kind == "scalar":
                out.append(f"{ind}_s{k} = {self.scalar_text(v.data[0])}")
            elif v.kind == "matmul":
                a, b = v.args
                kk = self.values[a].shape[1]
                out.append(f"{ind}_m{k} = np.empty({v.shape})")
                out += self.contraction(v.shape, ("_i", "_j"), "_l", kk, ind,
                                        lambda i, j, l_: f"{self.val(a, i, l_)} * {self.val(b, l_, j)}",
                                        lambda i, j: f"_m{k}[{i}, {j}] =")
            elif v.kind == "map":
                out.append(f"{ind}_m{k} = np.empty({v.shape})")
                head, ii, i, j = self.loops(v.shape, ind)
                out += head
                out.append(f"{ii}_m{k}[{i}, {j}] = {self.map_text(k, v.data[0], i, j)}")
            elif v.kind == "explicit":
                out.append(f"{ind}_m{k} = np.empty({v.shape})")
                c = v.shape[1]
                for e, a in enumerate(v.args):
                    out.append(f"{ind}_m{k}[{e // c}, {e % c}] = _s{a}")
        return out

    def outputs(self, ind: str) -> list[str]:
        out = []
        for offset, shape, k in self.prog.outputs:
            head, ii, i, j = self.loops(shape, ind)
            out += head
            out.append(f"{ii}out[{_index(offset, i, j, shape[1])}] = {self.val(k, i, j)}")
        return out

    # --- reverse ----------------------------------------------------------------

    def adjoint_storage(self, needed, ind: str, allocate: bool) -> list[str]:
        """Zeroed adjoints of the needed intermediate values."""
        out = []
        for k, v in enumerate(self.values):
            if not needed[k]:
                continue
            if v.kind == "scalar":
                out.append(f"{ind}_sb{k} = 0.0")
            elif v.kind in ("matmul", "map", "explicit"):
                out.append(f"{ind}_b{k} = np.zeros({v.shape})" if allocate else f"{ind}_b{k}[:] = 0.0")
        return out

    def seed(self, needed, targets, seed: str, ind: str) -> list[str]:
        out = []
        for offset, shape, k in self.prog.outputs:
            if not needed[k]:
                continue
            head, ii, i, j = self.loops(shape, ind)
            out += head
            out.append(f"{ii}{self.adj(k, i, j, targets)} += {seed}[{_index(offset, i, j, shape[1])}]")
        return out

    def reverse(self, needed, targets, ind: str) -> list[str]:
        out = []
        for k in range(len(self.values) - 1, -1, -1):
            v = self.values[k]
            if not needed[k]:
                continue
            if v.kind == "matmul":
                a, b = v.args
                (r, kk), c = self.values[a].shape, v.shape[1]
                if needed[a]:  # Ab += Cb B^T
                    out += self.contraction((r, kk), ("_i", "_l"), "_j", c, ind,
                                            lambda i, l_, j: f"{self.adj_read(k, i, j)} * {self.val(b, l_, j)}",
                                            lambda i, l_: f"{self.adj(a, i, l_, targets)} +=")
                if needed[b]:  # Bb += A^T Cb
                    out += self.contraction((kk, c), ("_l", "_j"), "_i", r, ind,
                                            lambda l_, j, i: f"{self.val(a, i, l_)} * {self.adj_read(k, i, j)}",
                                            lambda l_, j: f"{self.adj(b, l_, j, targets)} +=")
            elif v.kind == "map":
                partials = v.data[2]
                for a, d in zip(v.args, partials):
                    if not needed[a] or d == 0:
                        continue
                    if self.values[a].kind == "scalar":
                        out.append(f"{ind}_acc = 0.0")
                        head, ii, i, j = self.loops(v.shape, ind)
                        out += head
                        out.append(f"{ii}_acc += {self._times(self.adj_read(k, i, j), k, d, i, j)}")
                        out.append(f"{ind}_sb{a} += _acc")
                    else:
                        head, ii, i, j = self.loops(v.shape, ind)
                        out += head
                        out.append(f"{ii}{self.adj(a, i, j, targets)} += "
                                   f"{self._times(self.adj_read(k, i, j), k, d, i, j)}")
            elif v.kind == "explicit":
                c = v.shape[1]
                for e, a in enumerate(v.args):
                    if needed[a]:
                        out.append(f"{ind}_sb{a} += _b{k}[{e // c}, {e % c}]")
            elif v.kind == "scalar":
                for s, d in v.data[1]:
                    role, idx = self.prog.roles[s]
                    if role not in targets or d == 0:
                        continue
                    arr, base = targets[role]
                    target = arr if role == "t" else f"{arr}[{base + idx}]"
                    factor = "" if d == 1 else f" * ({self.scalar_text(d)})"
                    out.append(f"{ind}{target} += _sb{k}{factor}")
        return out

    def adj_read(self, k: int, i: str, j: str) -> str:
        return self.adj(k, i, j, {})

    def _times(self, cb: str, k: int, d, i: str, j: str) -> str:
        if d == 1:
            return cb
        if d == -1:
            return f"-{cb}"
        return f"{cb} * ({self.map_text(k, d, i, j)})"


def _constants(prog: Program) -> list[str]:
    out = []
    for k, v in enumerate(prog.values):
        if v.kind == "const":
            flat = ", ".join(repr(float(x)) for x in v.data.ravel())
            out.append(f"_K{k} = np.array([{flat}]).reshape({v.shape})")
    return out


def _function(name: str, args: tuple, doc: str, body: list[str]) -> list[str]:
    return ["", "", f"def {name}({', '.join(args)}):", f'    """{doc}"""', *body]


def model_module_source(prog: Program, header: str) -> str:
    """Source of the model-kernel module for a lowered matrix-form model."""
    e = _Emitter(prog)
    n, n_p, n_w = prog.n_states, prog.n_params, prog.n_controls
    pattern = prog.jacobian_pattern()
    nz = nz_order(zip(*(idx.tolist() for idx in pattern.nonzero())))
    rows, cols = [r for r, _ in nz], [c for _, c in nz]
    # jac_nz: row q's entries as (position in the pattern, column), CSR by row
    by_row = [[] for _ in range(n)]
    for k, (r, c) in enumerate(nz):
        by_row[r].append((k, c))
    ptr = [0]
    for entries in by_row:
        ptr.append(ptr[-1] + len(entries))
    lines = [header, "import math", "", "import numpy as np", "",
             f"N_STATES = {n}", f"N_PARAMS = {n_p}", f"N_CONTROLS = {n_w}",
             f"JAC_ROWS = {tuple(int(r) for r in rows)!r}", f"JAC_COLS = {tuple(int(c) for c in cols)!r}"]
    zero = {"dfdt": not prog.depends_on("t"), "jac_p": not prog.depends_on("p"),
            "vjp_p": not prog.depends_on("p"), "vjp_w": not prog.depends_on("w")}
    lines.append(f"ZERO_KERNELS = {tuple(sorted(k for k, z in zero.items() if z))!r}")
    lines.append(f"_NZ_PTR = np.array({ptr!r}, dtype=np.int64)")
    lines.append(f"_NZ_POS = np.array({[k for row in by_row for k, _ in row]!r}, dtype=np.int64)")
    lines.append(f"_NZ_COL = np.array({[c for row in by_row for _, c in row]!r}, dtype=np.int64)")
    lines += _constants(prog)
    ind = "    "
    vec = ("t", "y", "p", "w", "out")
    vjp = ("t", "y", "p", "w", "v", "out")
    lines += _function("rhs", vec, "out = f(t, y, p, w)", e.forward(ind) + e.outputs(ind))

    def vjp_kernel(name, targets, doc):
        needed = prog.needed(set(targets))
        body = [f"{ind}out[:] = 0.0", *e.forward(ind), *e.adjoint_storage(needed, ind, True),
                *e.seed(needed, targets, "v", ind), *e.reverse(needed, targets, ind)]
        return _function(name, vjp, doc, body)

    lines += vjp_kernel("vjp_y", {"y": ("out", 0)}, "out = (df/dy)^T v")
    lines += vjp_kernel("vjp_p", {"p": ("out", 0)}, "out = (df/dp)^T v")
    lines += vjp_kernel("vjp_w", {"w": ("out", 0)}, "out = (df/dw)^T v")
    lines += vjp_kernel("vjp_yp", {"y": ("out", 0), "p": ("out", n)}, "out = [(df/dy)^T v, (df/dp)^T v]")

    def rows_kernel(name, args, targets, doc, store):
        """One reverse sweep per output row ``q``, seeded with ``e_q``."""
        needed = prog.needed(set(targets))
        body = [*e.forward(ind), f"{ind}_e = np.zeros({n})"]
        for role, (arr, _) in targets.items():
            body.append(f"{ind}{arr} = 0.0" if role == "t" else
                        f"{ind}{arr} = np.zeros({ {'y': n, 'p': n_p, 'w': n_w}[role] })")
        body += e.adjoint_storage(needed, ind, True)
        body.append(f"{ind}for _q in range({n}):")
        inner = ind + "    "
        body.append(f"{inner}_e[:] = 0.0")
        body.append(f"{inner}_e[_q] = 1.0")
        for role, (arr, _) in targets.items():
            body.append(f"{inner}{arr} = 0.0" if role == "t" else f"{inner}{arr}[:] = 0.0")
        body += e.adjoint_storage(needed, inner, False)
        body += e.seed(needed, targets, "_e", inner)
        body += e.reverse(needed, targets, inner)
        body += [inner + line for line in store]
        return _function(name, args, doc, body)

    lines += rows_kernel("dfdt", vec, {"t": ("_gt", 0)}, "out = df/dt", ["out[_q] = _gt"])
    lines += rows_kernel("jac_y", vec, {"y": ("_gy", 0)}, "out = df/dy (n, n)", ["out[_q, :] = _gy"])
    lines += rows_kernel("jac_nz", vec, {"y": ("_gy", 0)}, "out[0, k] = df/dy at the pattern's k-th entry",
                         ["for _k in range(_NZ_PTR[_q], _NZ_PTR[_q + 1]):",
                          "    out[0, _NZ_POS[_k]] = _gy[_NZ_COL[_k]]"])
    lines += rows_kernel("jac_p", vec, {"p": ("_gp", 0)}, "out = df/dp (n, n_p)", ["out[_q, :] = _gp"])
    sens_store = ["for _k in range(S.shape[1]):",
                  "    _acc = 0.0",
                  f"    for _l in range({n}):",
                  "        _acc += _gy[_l] * S[_l, _k]",
                  "    out[_q, _k] = _acc"]
    sens_targets = {"y": ("_gy", 0)}
    if n_p:
        sens_targets["p"] = ("_gp", 0)
        sens_store += [f"for _k in range({n_p}):", "    out[_q, _k] += _gp[_k]"]
    lines += rows_kernel("sens_rhs", ("t", "y", "p", "w", "S", "out"), sens_targets,
                         "out = (df/dy) S, plus df/dp on the first n_p columns", sens_store)
    return "\n".join(lines) + "\n"
