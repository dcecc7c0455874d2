"""Right-hand sides for the batched loop: a user callable or a ``sciode.Model``.

The loop sees a flat batch ``z (B, N)`` and a time ``tau (B,)`` that always
increases; :class:`Layout` maps ``z`` to and from the user's shapes (a tensor
``(*batch, *event)`` or a tuple of tensors) and ``direction`` maps ``tau`` to
the user's time ``t = direction * tau``.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from .kernels import ModelKernels
from .loop import AbstractSystem


@dataclasses.dataclass(frozen=True)
class Layout:
    """How the flat ``(B, N)`` state maps to the user's state.

    Attributes
    ----------
    batch : tuple of int
        Leading dimensions of independent trajectories (``B = prod(batch)``).
    shapes : tuple of tuple of int
        Full shape of each component (batch dimensions included).
    is_tuple : bool
        The user's state is a tuple of tensors.
    """

    batch: tuple
    shapes: tuple
    is_tuple: bool

    @property
    def B(self) -> int:
        return math.prod(self.batch)

    @property
    def sizes(self) -> tuple:
        return tuple(math.prod(s) // self.B for s in self.shapes)

    def flatten(self, y) -> torch.Tensor:
        """User state -> ``(B, N)``."""
        if not self.is_tuple:
            return y.reshape(self.B, -1)
        return torch.cat([c.reshape(self.B, -1) for c in y], dim=-1)

    def unflatten(self, z: torch.Tensor, lead: tuple = ()):
        """``(*lead, B, N)`` -> user state with ``lead`` dimensions in front."""
        if not self.is_tuple:
            return z.reshape(*lead, *self.shapes[0])
        parts = torch.split(z, self.sizes, dim=-1)
        return tuple(p.reshape(*lead, *s) for p, s in zip(parts, self.shapes))


class FuncSystem(AbstractSystem):
    """``F(tau, z) = direction * flatten(func(direction * tau, unflatten(z)))``.

    The callable gets ``t`` of shape ``(*batch, 1)`` (broadcastable against
    a ``(*batch, n)`` state) when trajectories step on their own, and a 0-d
    tensor when they share one step (``shared``) or there is no batch.
    """

    def __init__(self, func, layout: Layout, direction: float, shared: bool):
        self.func = func
        self.layout = layout
        self.direction = direction
        self.shared = shared or not layout.batch

    def user_time(self, tau: torch.Tensor) -> torch.Tensor:
        t = tau * self.direction
        if self.shared:
            return t[0]
        return t.reshape(*self.layout.batch, 1)

    def rhs(self, tau, z):
        out = self.func(self.user_time(tau), self.layout.unflatten(z))
        dz = self.layout.flatten(out)
        return dz if self.direction > 0 else -dz


class ModelSystem(AbstractSystem):
    """``F(tau, y) = direction * f(direction * tau, y, p)`` from generated kernels;
    ``p`` is ``(B, n_params)``."""

    def __init__(self, kernels: ModelKernels, p: torch.Tensor, direction: float):
        self.kernels = kernels
        self.p = p
        self.direction = direction

    def rhs(self, tau, z):
        dz = self.kernels.rhs(tau * self.direction, z, self.p)
        return dz if self.direction > 0 else -dz
