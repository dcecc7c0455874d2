"""Runtime side of the generated torch kernels (``sciode.codegen.torch_kernels``).

Generated code calls the small helpers here for branches and extrema whose
arguments may be Python floats (torch's ``where`` / ``maximum`` want
tensors), and :class:`ModelKernels` wraps a generated module so that each
kernel returns one stacked tensor ``(..., n)``.
"""

from __future__ import annotations

import torch


def _tensor(x, like):
    # ``torch.full`` fills on the device; ``torch.as_tensor(float, device="cuda")``
    # would copy from the host and synchronise, once per kernel call.
    return x if isinstance(x, torch.Tensor) else torch.full((), x, dtype=like.dtype, device=like.device)


def _first_tensor(*args):
    return next(a for a in args if isinstance(a, torch.Tensor))


def where(cond, a, b):
    """Elementwise ``a if cond else b`` (a Piecewise branch)."""
    like = _first_tensor(a, b, cond) if any(isinstance(x, torch.Tensor) for x in (a, b)) else None
    if like is None or like.dtype == torch.bool:
        like = torch.zeros((), dtype=torch.get_default_dtype(), device=cond.device)
    return torch.where(cond, _tensor(a, like), _tensor(b, like))


def _fold(op, args):
    like = _first_tensor(*args)
    out = _tensor(args[0], like)
    for a in args[1:]:
        out = op(out, _tensor(a, like))
    return out


def maximum(*args):
    """Elementwise ``Max`` of tensors and floats."""
    return _fold(torch.maximum, args)


def minimum(*args):
    """Elementwise ``Min`` of tensors and floats."""
    return _fold(torch.minimum, args)


def heaviside(x, at_zero):
    """``Heaviside(x, H0)``: 0 below zero, 1 above, ``H0`` at zero."""
    return torch.heaviside(x, _tensor(at_zero, x))


def stack(entries, like: torch.Tensor) -> torch.Tensor:
    """Stack kernel outputs into ``(*like.shape, len(entries))``.

    Constant entries (floats) and entries that do not depend on every batch
    dimension are broadcast to ``like``'s shape.
    """
    shape = like.shape
    cols = [e if isinstance(e, torch.Tensor) and e.shape == shape
            else torch.broadcast_to(_tensor(e, like), shape) for e in entries]
    if not cols:
        return like.new_zeros((*shape, 0))
    return torch.stack(cols, dim=-1)


class ModelKernels:
    """A model's generated torch kernels, each returning one ``(B, n)`` tensor.

    ``t`` is ``(B,)``, ``y`` ``(B, n_states)``, ``p`` ``(B, n_params)``,
    ``v`` ``(B, n_states)``.
    """

    def __init__(self, module):
        self.module = module
        self.n_states = module.N_STATES
        self.n_params = module.N_PARAMS

    def rhs(self, t, y, p):
        return stack(self.module.rhs(t, y, p, None), t)

    def vjp_yp(self, t, y, p, v):
        """``[(df/dy)^T v, (df/dp)^T v]``, ``(B, n_states + n_params)``."""
        return stack(self.module.vjp_yp(t, y, p, None, v), t)

    def vjp_y(self, t, y, p, v):
        return stack(self.module.vjp_y(t, y, p, None, v), t)


def model_kernels(model) -> ModelKernels:
    """The generated torch kernels of a ``sciode.Model`` (generated once, cached on disk)."""
    from ..codegen.torch_kernels import torch_model_module

    return ModelKernels(torch_model_module(model))
