"""Numba CPU kernels: stepping loops, step-size control, dense output.

Nothing here imports SymPy: the loops see compiled kernels (``sciode.abi``)
and arrays only.
"""
