"""SymPy derivatives -> cached, batched torch functions (the torch twin of ``modules.py``).

The same derived expressions (``symbolic.derive_model``), the same symbol
placeholders (``emit.canonical_symbols``) and the same kernel names as the
Numba module, printed for torch instead of Numba.  A torch kernel returns
its outputs instead of writing into ``out`` (autograd needs fresh tensors)::

    rhs(t, y, p, w)        -> tuple of n_states entries          f
    vjp_y(t, y, p, w, v)   -> tuple of n_states entries          (df/dy)^T v
    vjp_p(t, y, p, w, v)   -> tuple of n_params entries          (df/dp)^T v
    vjp_yp(t, y, p, w, v)  -> tuple of n_states + n_params       both, CSE shared

``y``, ``p``, ``v`` are tensors ``(..., n)`` with any leading batch
dimensions (``y.unbind(-1)`` at the top of each kernel), ``t`` a tensor that
broadcasts against the batch.  An entry is a tensor of the batch shape or,
where the expression is constant, a float: ``sciode.torch.kernels.stack``
broadcasts and stacks them.  Only the equations are generated; the loops live
in ``sciode/torch/``.

Modules are cached on disk by content hash beside the Numba modules
(``<cache>/kernels/torch_model_<hash>.py``) and imported by path.
"""

from __future__ import annotations

import sympy as sp

from ..errors import ModelError
from . import cache
from .emit import CSE_MAX_CHARS, CSE_PREFIX, canonical_symbols, cotangent_symbols
from .printer import KernelPrinter

#: Bump when the generated torch source changes.
TORCH_CODEGEN_API = 1

#: ``math`` functions with a ``torch`` function of the same name (elementwise).
_TORCH_SAME_NAME = {
    "sqrt", "exp", "expm1", "log", "log1p", "log2", "log10", "sin", "cos", "tan", "asin",
    "acos", "atan", "atan2", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf",
    "erfc", "floor", "ceil", "lgamma", "hypot",
}


class TorchKernelPrinter(KernelPrinter):
    """Print SymPy expressions as torch source over tensors ``y[i]``, ``p[j]``.

    Inherits the symbol map and the exact float printing of the Numba
    printer; maps ``math`` functions to ``torch``, and branches and
    extrema to elementwise tensor operations.
    """

    _kf = {k: f"torch.{v.split('.')[-1]}" for k, v in KernelPrinter._kf.items()
           if v.startswith("math.") and v.split(".")[-1] in _TORCH_SAME_NAME}

    def _print(self, expr, **kwargs):
        # A constant subexpression that SymPy keeps symbolic (sin(2), sqrt(3))
        # is a float here: torch functions take tensors, not Python numbers.
        if isinstance(expr, sp.Expr) and expr.is_number and not expr.is_Atom:
            return repr(float(expr))
        return super()._print(expr, **kwargs)

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.as_base_exp()
        if exp == sp.S.Half:
            return f"torch.sqrt({self._print(base)})"
        if exp == -sp.S.Half:
            return f"torch.rsqrt({self._print(base)})"
        return super()._print_Pow(expr, rational)

    def _print_Abs(self, expr):
        return f"torch.abs({self._print(expr.args[0])})"

    def _print_sign(self, expr):
        return f"torch.sign({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr):
        at_zero = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return f"heaviside({self._print(expr.args[0])}, {self._print(at_zero)})"

    def _print_Max(self, expr):
        return f"maximum({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr):
        return f"minimum({', '.join(self._print(a) for a in expr.args)})"

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond != sp.true:
            raise ModelError(f"Piecewise `{expr}` needs a final `(value, True)` branch on torch")
        out = self._print(expr.args[-1].expr)
        for value, cond in reversed(expr.args[:-1]):
            out = f"where({self._print(cond)}, {self._print(value)}, {out})"
        return out

    def _print_And(self, expr):
        return self._logical("logical_and", expr)

    def _print_Or(self, expr):
        return self._logical("logical_or", expr)

    def _print_Not(self, expr):
        return f"torch.logical_not({self._print(expr.args[0])})"

    def _logical(self, op, expr):
        out = self._print(expr.args[0])
        for a in expr.args[1:]:
            out = f"torch.{op}({out}, {self._print(a)})"
        return out


def _function(lines, printer, name, args, unbind, exprs, comments, doc, use_cse):
    """Append ``def name(*args)`` returning ``exprs`` (a tuple) to ``lines``."""
    body = [f'    """{doc}"""'] + [f"    {a} = {a}.unbind(-1)" for a in unbind]
    exprs = [sp.sympify(e) for e in exprs]
    if use_cse and exprs and sum(sp.count_ops(e) for e in exprs) < CSE_MAX_CHARS // 20:
        replacements, exprs = sp.cse(exprs, symbols=sp.numbered_symbols(CSE_PREFIX), order="none")
        body += [f"    {s.name} = {printer.doprint(e)}" for s, e in replacements]
    body.append("    return (")
    body += [f"        {printer.doprint(e)},  # {c}" for e, c in zip(exprs, comments)]
    body.append("    )")
    lines += ["", "", f"def {name}({', '.join(args)}):", *body]


def _vjp_exprs(entries, n_out, v, subs):
    """``sum_i M_ij v_i`` for each column ``j`` of sparse ``{(i, j): M_ij}``."""
    terms = [[] for _ in range(n_out)]
    for (i, j), e in entries.items():
        terms[j].append(e.xreplace(subs) * v[i])
    return [sp.Add(*t) for t in terms]


def torch_model_source(der, header: str, use_cse: bool = True) -> str:
    """Source of the torch module of a model (kernels named as in ``sciode.abi``)."""
    model = der.model
    n, n_p = model.n_states, model.n_params
    subs, names = canonical_symbols(model)
    v, vnames = cotangent_symbols(n)
    printer = TorchKernelPrinter({**names, **vnames})
    f = [sp.sympify(e).xreplace(subs) for e in der.f]
    vy = _vjp_exprs(der.dfdy, n, v, subs)
    vp = _vjp_exprs(der.dfdp, n_p, v, subs)
    unbind = ("y", "p") if n_p else ("y",)
    lines = [f"N_STATES = {n}", f"N_PARAMS = {n_p}"]
    args, vargs = ("t", "y", "p", "w"), ("t", "y", "p", "w", "v")
    _function(lines, printer, "rhs", args, unbind, f, [f"f[{i}]" for i in range(n)],
              "f(t, y, p, w): n_states entries", use_cse)
    _function(lines, printer, "vjp_y", vargs, (*unbind, "v"), vy, [f"(df/dy)^T v [{j}]" for j in range(n)],
              "(df/dy)^T v: n_states entries", use_cse)
    _function(lines, printer, "vjp_p", vargs, (*unbind, "v"), vp, [f"(df/dp)^T v [{j}]" for j in range(n_p)],
              "(df/dp)^T v: n_params entries", use_cse)
    _function(lines, printer, "vjp_yp", vargs, (*unbind, "v"), vy + vp,
              [f"(df/dy)^T v [{j}]" for j in range(n)] + [f"(df/dp)^T v [{j}]" for j in range(n_p)],
              "[(df/dy)^T v, (df/dp)^T v]: n_states + n_params entries", use_cse)
    imports = ("import math\n\nimport torch\n\n"
               "from sciode.torch.kernels import heaviside, maximum, minimum, where\n\n")
    return header + imports + "\n".join(lines) + "\n"


_MODULES: dict = {}


def torch_model_module(model, use_cse: bool = True):
    """The generated torch module of ``model`` (cached on disk and in memory).

    Raises
    ------
    ModelError
        If the model has controls (not yet on torch) or uses a function
        with no torch translation.
    """
    if model.n_controls:
        raise ModelError(f"model {model.name!r} has controls; the torch path does not take "
                         "controls yet: use `sciode.solve` / `value_and_grad` on the CPU")
    key = (model.content_key(), use_cse)
    module = _MODULES.get(key)
    if module is not None:
        return module
    digest = cache.content_hash("torch_model", key[0], f"cse={use_cse}",
                                f"torch_api={TORCH_CODEGEN_API}")

    def build():
        from ..symbolic.derive import derive_model

        header = (f'"""Generated by sciode.codegen.torch_kernels (API {TORCH_CODEGEN_API}) '
                  f'for model {model.name!r}. Do not edit."""\n')
        from . import _unsupported_as_model_error

        with _unsupported_as_model_error(f"model {model.name!r}", backend="torch"):
            return torch_model_source(derive_model(model), header, use_cse)

    module = _MODULES[key] = cache.load_or_build("torch_model", digest, build)
    return module


__all__ = ["TorchKernelPrinter", "torch_model_source", "torch_model_module", "TORCH_CODEGEN_API"]
