"""The per-thread stepping loop of the CUDA kernels: ``sciode.member_loop``'s
loop compiled as device functions."""

from __future__ import annotations

from numba import cuda  # a module global: the simulator swaps it inside kernels

from .. import member_loop


def stage_functions(rhs, N, tab, dtype):
    """``(stages, stage_sum, scaled_sum)`` device functions of ``tab`` over ``N`` entries."""
    return member_loop.stage_functions(rhs, N, tab, dtype, cuda.jit(device=True))


def build_loop(rhs, N, tab, dtype):
    """The ``integrate`` device function (``member_loop.build_loop``)."""
    return member_loop.build_loop(rhs, N, tab, dtype, cuda.jit(device=True))
