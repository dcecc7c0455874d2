"""Python front of the compiled loops: argument packing and method lookup.

``run(mk, method, ...)`` is what ``sciode.solve`` and the sensitivity
drivers call; it returns a ``RawResult`` of arrays and a status.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..methods.tableaus import EXPLICIT_TABLEAUS, Tableau
from .bundles import Inputs, make_loop
from .drivers import entry
from .integrate import RKMethod

EMPTY = np.zeros(0)
EMPTY2 = np.zeros((0, 0))

#: Method names accepted by ``solve``: explicit tableaus plus stiff methods
#: registered by ``sciode.cpu.stiff`` (when present).
STIFF_METHODS: dict = {}


def method_names() -> list[str]:
    return [*EXPLICIT_TABLEAUS, *STIFF_METHODS]


def lookup_method(method: str):
    """The ``Tableau`` or ``StiffMethod`` for ``method``; raises with the valid list."""
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a string, got {type(method).__name__}")
    key = method.lower()
    if key in EXPLICIT_TABLEAUS:
        return EXPLICIT_TABLEAUS[key]
    if key in STIFF_METHODS:
        return STIFF_METHODS[key]
    valid = ", ".join(repr(m) for m in method_names())
    raise ValueError(f"`method` must be one of {valid}; got {method!r}.")


@dataclass
class RawResult:
    status: int
    t_reached: float
    ts: np.ndarray
    zs: np.ndarray
    hs: np.ndarray
    Ks: np.ndarray
    z_eval: np.ndarray
    stats: dict
    P: np.ndarray


_METHODS: dict = {}


def _writeable(a):
    # Tableau arrays are read-only; Numba types read-only arrays differently
    # from the fixed entry-point signatures, so the loops get private copies.
    return np.array(a, dtype=np.float64, order="C", copy=True)


def rk_method(tab: Tableau) -> RKMethod:
    """The tableau as the ``RKMethod`` tuple the compiled loops take (cached)."""
    m = _METHODS.get(tab.name)
    if m is None:
        s = tab.s
        A_ext = tab.A_extra if tab.A_extra is not None else np.zeros((0, tab.s_total))
        c_ext = tab.c_extra if tab.c_extra is not None else EMPTY
        e3 = tab.e3 if tab.e3 is not None else EMPTY
        arrays = tuple(_writeable(a) for a in (tab.A[:s, :s], tab.b, tab.c, tab.e, e3, tab.P, A_ext, c_ext))
        m = _METHODS[tab.name] = RKMethod(*arrays, bool(tab.fsal), bool(tab.adaptive), int(tab.order),
                                          float(tab.controller_q), float(tab.pi_beta))
    return m


def control_arrays(controls, n_controls):
    if n_controls == 0:
        return np.zeros(1), np.zeros((1, 0)), np.zeros(0)
    # Controls keeps read-only arrays; the entry points are typed for writeable ones.
    return _writeable(controls.t), _writeable(controls.values), np.zeros(n_controls)


def control_stops(controls, t0, t1) -> np.ndarray:
    """Control grid points strictly inside the span, in the direction of integration.

    Adaptive steps land on them: ``w(t)`` has a kink there, which an error
    estimate built on smoothness would otherwise pay for with rejections.
    """
    if controls is None:
        return EMPTY
    g = np.asarray(controls.t, dtype=np.float64)
    g = g[(g > min(t0, t1)) & (g < max(t0, t1))]
    return np.ascontiguousarray(g if t1 >= t0 else g[::-1])


_STAT_NAMES = ("nfev", "nsteps", "naccepted", "nrejected", "njev", "nlu")


def loop_stats(st) -> dict:
    """A loop's counter array as a dict (``njev``/``nlu`` only where nonzero:
    the sweeps keep six counters for every method)."""
    out = dict(zip(_STAT_NAMES[:4], st[:4].tolist()))
    for k, v in zip(_STAT_NAMES[4:], st[4:].tolist()):
        if v:
            out[k] = v
    return out


def run(mk, method, p, controls, y0, t0, t1, t_eval, rtol, atol, h_init, hmax, dt, max_steps,
        store_dense) -> RawResult:
    """Integrate the model ``mk`` (``ModelKernels``) with a method tuple (``integrate``).

    ``store_dense``: True/1 keep dense output, False/0 the steps, -1 only the
    final state (explicit methods; the stiff loops keep the steps).
    """
    tw, W, wbuf = control_arrays(controls, mk.n_controls)
    loop = make_loop(method, rtol, atol, h_init=h_init, hmax=hmax, dt=dt, max_steps=max_steps,
                     stops=control_stops(controls, t0, t1))
    out = entry("forward", method)(mk.fns(method), Inputs(p, tw, W, wbuf), y0, float(t0), float(t1),
                                   loop, np.ascontiguousarray(t_eval, dtype=np.float64),
                                   int(store_dense))
    return RawResult(int(out.status), float(out.t_reached), out.ts, out.zs, out.hs, out.Ks,
                     out.z_eval, loop_stats(out.stats), method.P)


def run_explicit(mk, tab, p, controls, y0, t0, t1, t_eval, rtol, atol, h_init, hmax, dt,
                 max_steps, store_dense) -> RawResult:
    """Integrate the model ``mk`` with an explicit tableau."""
    return run(mk, rk_method(tab), p, controls, y0, t0, t1, t_eval, rtol, atol, h_init, hmax, dt,
               max_steps, store_dense)


# Registers the stiff methods in STIFF_METHODS (at the bottom: stiff.py imports this module).
from . import stiff  # noqa: E402,F401
