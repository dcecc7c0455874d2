"""Reference derivatives for the tests, sharing no code with sciode."""

from __future__ import annotations

import numpy as np


def complex_step_grad(f, x, h=1e-30):
    """``df/dx`` of a real-analytic ``f`` by the complex step: ``Im f(x + i h e_k) / h``,
    exact to rounding (no subtractive cancellation)."""
    g = np.empty(x.size)
    for k in range(x.size):
        z = x.astype(complex)
        z[k] += 1j * h
        g[k] = f(z).imag / h
    return g
