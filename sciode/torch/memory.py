"""Memory a torch graph holds for its backward pass (for tests, benchmarks and users)."""

from __future__ import annotations

import torch


def saved_tensor_bytes(fn):
    """``(bytes, fn())``: the bytes of the distinct storages that autograd saves
    for the backward pass while ``fn`` runs (``saved_tensors_hooks``), i.e. what
    the graph holds until ``backward``; the same measure on every device.
    ``adjoint=True`` keeps it flat in the number of steps, backpropagation
    through the solver linear."""
    storages = {}

    def pack(x):
        s = x.untyped_storage()
        storages[(s.data_ptr(), s.nbytes())] = s.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = fn()
    return sum(storages.values()), out
