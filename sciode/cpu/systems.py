"""Systems a compiled loop can integrate: the model alone, or augmented.

A system is a ``NamedTuple`` of kernels (``sciode.abi`` function types) and
arrays.  ``sys_rhs(sys, t, z, out)`` evaluates ``z' = F(t, z)`` and
``sys_jac(sys, t, z, out)`` its Jacobian; both dispatch at compile time on the
tuple's class, so one stepping loop serves every system without knowing what
it integrates (the loops know nothing of costs or sensitivities).
``sys_stop(sys, t, z)`` is called when a step lands on one of the loop's
``t_stops``: a system may reset its state there (the costate jumps at
observation times) and returns whether it did; by default it does nothing.

Sensitivity drivers register their systems here with ``register_system``.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np
from numba.extending import overload

from .controls import control_at

#: ``z = y``; ``F = f(t, y, p, w(t))``.
ModelSystem = namedtuple("ModelSystem", ["rhs", "jac_y", "dfdt", "p", "tw", "W", "wbuf"])

_RHS: dict = {}
_JAC: dict = {}
_DFDT: dict = {}
_STOP: dict = {}
_COUPLED: dict = {}


def register_system(cls, rhs, jac=None, dfdt=None, stop=None, coupled=None):
    """Register compiled implementations ``rhs(sys, t, z, out)`` (and
    ``jac(sys, t, z, out2d)``, ``dfdt(sys, t, z, out)``, ``stop(sys, t, z) -> bool``,
    ``coupled(sys, n) -> int``) for system class ``cls``."""
    _RHS[cls] = rhs
    if coupled is not None:
        _COUPLED[cls] = coupled
    if jac is not None:
        _JAC[cls] = jac
    if dfdt is not None:
        _DFDT[cls] = dfdt
    if stop is not None:
        _STOP[cls] = stop


def sys_rhs(sys, t, z, out):
    """``out = F(t, z)`` for the system ``sys`` (compiled code only)."""
    raise NotImplementedError


def sys_jac(sys, t, z, out):
    """``out = dF/dz`` for the system ``sys`` (compiled code only)."""
    raise NotImplementedError


def sys_dfdt(sys, t, z, out):
    """``out = dF/dt`` for the system ``sys`` (compiled code only)."""
    raise NotImplementedError


def _dispatch(table, what):
    def typer(sys, t, z, out):
        impl = table.get(getattr(sys, "instance_class", None))
        if impl is None:
            raise nb.errors.TypingError(f"no {what} registered for system type {sys}")
        return lambda sys, t, z, out: impl(sys, t, z, out)

    return typer


def sys_stop(sys, t, z):
    """At a stop time: let the system update ``z`` in place; True if it changed
    (the loop then re-evaluates ``F`` instead of reusing the last stage)."""
    raise NotImplementedError


@overload(sys_stop, inline="always")
def _sys_stop(sys, t, z):
    impl = _STOP.get(getattr(sys, "instance_class", None))
    if impl is None:
        return lambda sys, t, z: False
    return lambda sys, t, z: impl(sys, t, z)


def sys_coupled(sys, n):
    """How many leading entries of ``z`` (of ``n``) ``F`` reads; the rest are
    quadratures, ``q' = g(t, z_lead)``, which a stage input need not carry."""
    raise NotImplementedError


@overload(sys_coupled, inline="always")
def _sys_coupled(sys, n):
    impl = _COUPLED.get(getattr(sys, "instance_class", None))
    if impl is None:
        return lambda sys, n: n
    return lambda sys, n: impl(sys, n)


overload(sys_rhs, inline="always")(_dispatch(_RHS, "rhs"))
overload(sys_jac, inline="always")(_dispatch(_JAC, "Jacobian"))


@overload(sys_dfdt, inline="always")
def _sys_dfdt(sys, t, z, out):
    impl = _DFDT.get(getattr(sys, "instance_class", None))
    if impl is None:
        # one loop serves the Rosenbrock and ESDIRK families (``implicit.py``),
        # so every system it runs needs a dF/dt: a forward difference unless
        # the system registers its own (its error, ~1e-7 relative, is far below
        # the tolerances used; the registry keeps such systems off Rosenbrock
        # methods anyway where the Jacobian itself is approximate)
        return lambda sys, t, z, out: _dfdt_by_difference(sys, t, z, out)
    return lambda sys, t, z, out: impl(sys, t, z, out)


@nb.njit(cache=True, nogil=True)
def _dfdt_by_difference(sys, t, z, out):
    n = z.shape[0]
    f0 = np.empty(n)
    sys_rhs(sys, t, z, f0)
    dt = 1e-7 * max(1.0, abs(t))
    sys_rhs(sys, t + dt, z, out)
    for i in range(n):
        out[i] = (out[i] - f0[i]) / dt


@nb.njit(cache=True, nogil=True, inline="always")
def _model_rhs(sys, t, z, out):
    if sys.wbuf.shape[0] > 0:
        control_at(t, sys.tw, sys.W, sys.wbuf)
    sys.rhs(t, z, sys.p, sys.wbuf, out)


@nb.njit(cache=True, nogil=True, inline="always")
def _model_jac(sys, t, z, out):
    if sys.wbuf.shape[0] > 0:
        control_at(t, sys.tw, sys.W, sys.wbuf)
    sys.jac_y(t, z, sys.p, sys.wbuf, out)


@nb.njit(cache=True, nogil=True, inline="always")
def _model_dfdt(sys, t, z, out):
    # df/dt includes the controls' slope only through explicit t; piecewise
    # linear controls make w(t) non-smooth at grid points anyway.
    if sys.wbuf.shape[0] > 0:
        control_at(t, sys.tw, sys.W, sys.wbuf)
    sys.dfdt(t, z, sys.p, sys.wbuf, out)


register_system(ModelSystem, _model_rhs, _model_jac, _model_dfdt)
