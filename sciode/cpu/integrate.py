"""One entry to every stepping loop: ``integrate(method, sys, ...)``.

A *method* is a ``NamedTuple`` of coefficient arrays and flags (``RKMethod``
for explicit Runge--Kutta tableaus; the stiff loops register their own).
``integrate`` dispatches at compile time on the method's class, so drivers
and sensitivity sweeps are written once for every method, explicit or
implicit, and compiled once per (system, method) kind.

Every loop returns ``(status, t_reached, n_stored, ts, zs, hs, Ks, z_eval,
stats)``; ``stats`` starts with ``nfev, nsteps, naccepted, nrejected``.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
from numba.extending import overload

from .explicit import rk_integrate

RKMethod = namedtuple("RKMethod", ["A", "b", "c", "e", "e3", "P", "A_ext", "c_ext",
                                   "fsal", "adaptive", "order", "q"])

_LOOPS: dict = {}


def register_method(cls, loop) -> None:
    """Register ``loop(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt,
    max_steps, t_eval, store_dense, t_stops)`` for method class ``cls``."""
    _LOOPS[cls] = loop


def integrate(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
              store_dense, t_stops):
    """Integrate ``sys`` with ``method`` (compiled code only)."""
    raise NotImplementedError


@overload(integrate, inline="always")
def _integrate(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
               store_dense, t_stops):
    loop = _LOOPS.get(getattr(method, "instance_class", None))
    if loop is None:
        raise nb.errors.TypingError(f"no stepping loop registered for method type {method}")

    def impl(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
             store_dense, t_stops):
        return loop(method, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
                    store_dense, t_stops)

    return impl


@nb.njit(cache=True, nogil=True)
def _rk_loop(m, sys, z0, t0, t1, rtol, atol, h_init, hmax, dt, max_steps, t_eval, store_dense, t_stops):
    return rk_integrate(sys, z0, t0, t1, m.A, m.b, m.c, m.e, m.e3, m.P, m.A_ext, m.c_ext, m.fsal,
                        m.adaptive, m.order, m.q, rtol, atol, h_init, hmax, dt, max_steps, t_eval,
                        store_dense, t_stops)


register_method(RKMethod, _rk_loop)
