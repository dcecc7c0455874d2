"""Shared test setup: one kernel cache for the whole run and the standard models.

Models are session-scoped because building one is cheap but generating and
compiling its kernels is not; sharing the objects lets every test reuse the
same in-process kernel sets. Add new models as plain fixtures below.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sympy as sp

# At import time, before any test imports sciode.codegen: every test (and every
# subprocess that inherits the environment) shares one on-disk kernel cache.
os.environ.setdefault("SCIODE_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".sciode_cache"))
# Which explicit loop runs (``sciode.cpu.specialized``) must not depend on what
# earlier tests spent: the suite runs the generic loop, and test_specialized
# asks for each loop by name.
os.environ.setdefault("SCIODE_SPECIALIZE", "never")
# One BLAS thread per test worker: the suite runs with `-n 2` on 2 cores, and
# SciPy's multithreaded LU in the Radau references oversubscribed them (a
# reference solve measured 0.84 s alone took 11 s under load).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import sciode  # noqa: E402  (after the cache directory is chosen)


@pytest.fixture(scope="session")
def lorenz():
    """Lorenz system; states (x, y, z), params (sigma, rho, beta)."""
    x, y, z = sp.symbols("x y z")
    sigma, rho, beta = sp.symbols("sigma rho beta")
    return sciode.Model(
        states=[x, y, z],
        rhs=[sigma * (y - x), x * (rho - z) - y, x * y - beta * z],
        params=[sigma, rho, beta],
        name="lorenz",
    )


@pytest.fixture(scope="session")
def oscillator():
    """Damped harmonic oscillator; states (x, v), params (k, c)."""
    x, v, k, c = sp.symbols("x v k c")
    return sciode.Model(states=[x, v], rhs=[v, -k * x - c * v], params=[k, c], name="oscillator")


@pytest.fixture(scope="session")
def lotka_volterra():
    """Lotka-Volterra predator-prey; states (x, y), params (a, b, c, d)."""
    x, y = sp.symbols("x y")
    a, b, c, d = sp.symbols("a b c d")
    return sciode.Model(
        states=[x, y],
        rhs=[a * x - b * x * y, c * x * y - d * y],
        params=[a, b, c, d],
        name="lotka_volterra",
    )


@pytest.fixture(scope="session")
def controlled():
    """Scalar linear system ``x' = a x + b u``; state x, control u, params (a, b)."""
    x, u, a, b = sp.symbols("x u a b")
    return sciode.Model(states=[x], rhs=[a * x + b * u], params=[a, b], controls=[u], name="controlled")


@pytest.fixture
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one torch thread (restored afterwards).
    Torch is imported here, not at the top: most tests run without it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
