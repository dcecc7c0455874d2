"""A cost's pieces as batched torch functions: ``L``, ``Phi`` and the observables ``h``.

``cost_functions(model, cost)`` prints the running cost, the terminal cost
and the concatenated observables of every ``LeastSquares`` term (the same
expressions as the Numba cost kernels, ``sciode.codegen.modules``) with the
torch printer of the model kernels (``sciode.codegen.torch_kernels``), into
a module cached on disk by content hash like the model's torch kernels.
The functions are plain torch code, so autograd differentiates them and they
run on any device::

    fns = sciode.torch.cost_functions(model, cost)
    fns.L(t, y, p)     # (*batch,)         running cost
    fns.Phi(t, y, p)   # (*batch,)         terminal cost
    fns.h(t, y, p)     # (*batch, n_obs)   observables, in data-term order

``y`` is ``(..., n_states)``, ``p`` ``(..., n_params)`` (or ``None`` for a
model without parameters), ``t`` a number or a tensor; the batch is their
broadcast (``y.shape[:-1]``, ``p.shape[:-1]`` and ``t.shape``).  Only the
expressions depend on the cost: the data (``t_obs``, ``y_obs``, ``sigma``)
are runtime values, so new observations reuse the cached module.
"""

from __future__ import annotations

import torch

from ..cost import as_cost
from ..errors import ModelError
from .kernels import stack

#: Bump when the generated cost source changes.
TORCH_COST_API = 1

_IMPORTS = ("import math\n\nimport torch\n\n"
            "from sciode.torch.kernels import heaviside, maximum, minimum, where\n\n")


def torch_cost_source(model, cost, header: str, use_cse: bool = True) -> str:
    """Source of the torch cost module: ``L``, ``Phi``, ``obs`` over ``(t, y, p, w)``.

    The expressions are the cost's own (no derivatives: autograd takes them).
    """
    from ..codegen.emit import canonical_symbols
    from ..codegen.torch_kernels import TorchKernelPrinter, _function
    from ..symbolic.derive import observables

    subs, names = canonical_symbols(model)
    h = observables(model, cost)
    printer = TorchKernelPrinter(names)
    unbind = ("y", "p") if model.n_params else ("y",)
    args = ("t", "y", "p", "w")
    lines = [f"N_OBS = {len(h)}"]
    _function(lines, printer, "L", args, unbind, [cost.running.xreplace(subs)], ["L"],
              "L(t, y, p): 1 entry", use_cse)
    _function(lines, printer, "Phi", args, unbind, [cost.terminal.xreplace(subs)], ["Phi"],
              "Phi(t, y, p): 1 entry", use_cse)
    _function(lines, printer, "obs", args, unbind, [e.xreplace(subs) for e in h],
              [f"h[{j}]" for j in range(len(h))], "h(t, y, p): n_obs entries", use_cse)
    return header + _IMPORTS + "\n".join(lines) + "\n"


class CostFunctions:
    """Batched torch functions of a cost on a model (see the module docstring).

    Attributes
    ----------
    n_obs : int
        Number of observables (columns of ``h``), over all data terms.
    module : module
        The generated module (its source is ``module.__file__``).
    """

    def __init__(self, model, module):
        self.model = model
        self.module = module
        self.n_obs = module.N_OBS

    def _batch(self, t, y, p):
        m = self.model
        if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[-1] != m.n_states:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ModelError(f"`y` must be a tensor (..., {m.n_states}) for model {m.name!r}; "
                             f"got {shape}.")
        if p is None:
            if m.n_params:
                raise ModelError(f"model {m.name!r} has {m.n_params} params: pass `p`.")
            p = y.new_zeros(0)
        if not isinstance(p, torch.Tensor):
            p = torch.as_tensor(p, dtype=y.dtype, device=y.device)
        if p.ndim == 0 or p.shape[-1] != m.n_params:
            raise ModelError(f"`p` has shape {tuple(p.shape)}; model {m.name!r} has {m.n_params} "
                             f"params, so its last dimension must be {m.n_params}.")
        if not isinstance(t, torch.Tensor):
            t = torch.full((), float(t), dtype=y.dtype, device=y.device)
        for name, x in (("p", p), ("t", t)):
            if x.device != y.device or x.dtype != y.dtype:
                raise ValueError(f"`{name}` is {x.dtype} on {x.device} but `y` {y.dtype} on "
                                 f"{y.device}; use one dtype and device.")
        try:
            batch = torch.broadcast_shapes(y.shape[:-1], p.shape[:-1], t.shape)
        except RuntimeError:
            raise ValueError(f"the batch shapes of `y` {tuple(y.shape[:-1])}, `p` "
                             f"{tuple(p.shape[:-1])} and `t` {tuple(t.shape)} do not "
                             "broadcast.") from None
        return t, y, p, y.new_zeros(()).expand(batch)

    def L(self, t, y, p=None) -> torch.Tensor:
        """Running cost ``L(t, y, p)``, shape ``(*batch,)``."""
        t, y, p, like = self._batch(t, y, p)
        return stack(self.module.L(t, y, p, None), like)[..., 0]

    def Phi(self, t, y, p=None) -> torch.Tensor:
        """Terminal cost ``Phi(t, y, p)``, shape ``(*batch,)``."""
        t, y, p, like = self._batch(t, y, p)
        return stack(self.module.Phi(t, y, p, None), like)[..., 0]

    def h(self, t, y, p=None) -> torch.Tensor:
        """Observables ``h(t, y, p)``, shape ``(*batch, n_obs)``."""
        t, y, p, like = self._batch(t, y, p)
        return stack(self.module.obs(t, y, p, None), like)


_MODULES: dict = {}


def cost_functions(model, cost, use_cse: bool = True) -> CostFunctions:
    """The running cost, terminal cost and observables of ``cost`` as batched torch functions.

    Parameters
    ----------
    model : sciode.Model
        Without controls (the torch path does not take controls yet).
    cost : sciode.Cost or sciode.LeastSquares

    Returns
    -------
    CostFunctions
        ``.L(t, y, p)``, ``.Phi(t, y, p)``, ``.h(t, y, p)``.

    Raises
    ------
    ModelError
        If the model has controls, the cost does not fit the model, or an
        expression uses a function with no torch translation.
    """
    if model.n_controls:
        raise ModelError(f"model {model.name!r} has controls; the torch path does not take "
                         "controls yet: use `sciode.value_and_grad` on the CPU")
    cost = as_cost(cost)
    cost.check(model)
    key = (cost.structure(model), use_cse)
    fns = _MODULES.get(key)
    if fns is not None:
        return fns
    # code generation is imported on use, as in ``kernels.model_kernels``: the torch
    # layer itself imports neither SymPy's printers nor Numba
    from ..codegen import cache, cost_structure_key
    from ..codegen.torch_kernels import TORCH_CODEGEN_API

    digest = cache.content_hash("torch_cost", model.content_key(), cost_structure_key(model, cost),
                                f"cse={use_cse}", f"torch_api={TORCH_CODEGEN_API}",
                                f"torch_cost_api={TORCH_COST_API}")

    def build():
        from ..codegen import _unsupported_as_model_error

        header = (f'"""Generated by sciode.torch.cost (API {TORCH_COST_API}) for a cost on '
                  f'model {model.name!r}. Do not edit."""\n')
        with _unsupported_as_model_error(f"the cost on model {model.name!r}", backend="torch"):
            return torch_cost_source(model, cost, header, use_cse)

    fns = _MODULES[key] = CostFunctions(model, cache.load_or_build("torch_cost", digest, build))
    return fns


__all__ = ["CostFunctions", "cost_functions", "torch_cost_source"]
