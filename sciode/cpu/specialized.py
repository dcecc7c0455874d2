"""Explicit loops specialised to one model and tableau, and when to use them.

The generic loop (``cpu.explicit``) is compiled once per installation and
calls a model's kernels through function pointers: a new model costs only its
kernels (well under a second), but every stage is an opaque call, the loops
over the state run to a bound read at run time, and the tableau is read from
memory.  ``sciode.member_loop`` builds the same loop with the model's
right-hand side, its size and the tableau's coefficients as constants; the
compiler then sees a whole step of one model.  On Lorenz (dopri5, rtol 1e-8)
that runs at the per-step cost of a plain C loop, about twice as fast as the
generic loop, and takes the same steps to the same numbers; its price is a
compile of a few seconds per model and tableau (cached on disk, like the
kernels, so once per installation).

Which loop runs is chosen per call (``use``), like a tiered JIT's choice
between its tiers, by the rule of the ski-rental problem: a (model, tableau)
pair runs on the generic loop until the time it has spent there reaches the
estimated compile time, and on the specialised loop from then on (or at
once when an earlier process compiled it: its marker is in the kernel cache).
A pair that is solved rarely never pays the compile; one that is solved
often pays it once, and at most about twice what the best choice in
hindsight would have cost.  While the generic loop itself is not compiled
yet (a fresh installation), the specialised loop is the cheaper compile by
an order of magnitude, and runs at once.  ``SCIODE_SPECIALIZE=never|always`` overrides
the rule (``auto`` is the default).

Scope: the explicit adaptive tableaus (``bosh3``, ``dopri5``, ``tsit5``,
``dop853``), no controls, no dense output (``dense=True`` keeps every
step's stages, which the generic loop stores).
Everything else runs on the generic loop.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict, namedtuple

import numba
import numpy as np

from .. import _numba_compat, member_loop
from . import drivers
from .status import MAX_STEPS

#: What ``use`` reads: ``auto`` (the rule above), ``always`` or ``never``.
ENV = "SCIODE_SPECIALIZE"
MODES = ("auto", "always", "never")
#: The compile time the rule assumes for a pair it has not compiled yet (seconds
#: of this machine: Lorenz with dopri5 compiled in 2.5-3.5 s).
COMPILE_ESTIMATE_S = 3.0

#: One model's compiled entries: ``solve(p, z0, t0, t1, rtol, atol, h_init,
#: hmax, max_steps, t_eval) -> (status, t_reached, z, Y, stats)``,
#: ``solve_steps(..., max_steps, cap) -> (status, t_reached, z, Ts, Zs, stats)``
#: (the accepted steps' start times and states, room for ``cap``) and
#: ``forward_range(P, Z0, t_eval, t0, t1, rtol, atol, h_init, hmax, max_steps,
#: lo, hi, Y, status, t_reached, stats)`` (members ``lo..hi-1``, ``nogil``).
Entries = namedtuple("Entries", ["solve", "forward_range", "solve_steps"])

_ENTRIES: dict = {}
_BUILDING = threading.Lock()
_RAN: set = set()  # pairs whose marker this process has left
_LOOKED: dict = {}  # pair -> whether an earlier process left its marker
_SPENT: defaultdict = defaultdict(float)  # (digest, tableau) -> seconds on the generic loop


def _jit_for(mk, tab):
    """The ``jit`` of one (model, tableau) pair's closures: compiled with Numba's
    disk cache under a stable identity (``_numba_compat.stable_identity``).

    Each closure's qualified name carries the pair: Numba names machine code
    after its module, qualified name, argument types and a per-process
    counter, and two closures of one source for two models take the same
    argument types.  Loaded from the disk cache into one process, one model's
    ``integrate`` compiled in one earlier process and another model's
    compiled in another could then carry the same symbol, and a caller be
    linked to the wrong one (measured: garbage statuses for Lorenz members
    after an oscillator's loop had been loaded)."""
    tag = f"{tab.name}_{mk.digest}"

    def jit(fn):
        fn.__qualname__ = f"{fn.__qualname__}_{tag}"  # fn is the pair's own (built, or member_loop._own)
        d = numba.njit(nogil=True, cache=_numba_compat.CACHE_CLOSURES)(fn)
        return _numba_compat.stable_identity(d, f"sciode.specialized:{fn.__qualname__}")
    return jit


def mode() -> str:
    """``SCIODE_SPECIALIZE`` (``auto`` when unset); anything else is a ``ValueError``."""
    m = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if m not in MODES:
        raise ValueError(f"{ENV} must be one of {', '.join(MODES)}; got {m!r}")
    return m


def supports(tab, n_controls: int, dense: bool = False) -> bool:
    """Whether the specialised loop can run this call (see the module docstring)."""
    return bool(tab.adaptive) and n_controls == 0 and not dense


def _key(mk, tab):
    return (mk.digest, tab.name)


def _marker(mk, tab):
    from ..codegen.cache import cache_dir

    return cache_dir() / f"{mk.digest}.specialized-{tab.name}"


def use(mk, tab, generic: str | None = None) -> bool:
    """Whether a call of ``mk`` with ``tab`` (which ``supports``) runs specialised.

    ``generic``: the generic loop's entry the call would run otherwise
    (``cpu.drivers``); while it is not compiled (a fresh installation before
    ``sciode precompile``), asking for it costs tens of seconds of compile,
    so the specialised loop, a few seconds, runs instead."""
    m = mode()
    if m != "auto":
        return m == "always"
    key = _key(mk, tab)
    if key in _ENTRIES or _SPENT[key] >= COMPILE_ESTIMATE_S:
        return True
    if key not in _LOOKED:  # an earlier process's marker: one file test per pair and process
        _LOOKED[key] = _marker(mk, tab).exists()
    if _LOOKED[key]:
        return True
    if generic is not None:
        from .solvers import rk_method

        return not drivers.is_compiled(generic, rk_method(tab))
    return False


def spent(mk, tab, seconds: float) -> None:
    """Count ``seconds`` of generic-loop time against the pair's compile."""
    _SPENT[_key(mk, tab)] += seconds


def entries(mk, tab) -> Entries:
    """The specialised entries of model ``mk`` (``ModelKernels``) and ``tab``
    (built and compiled on first use in a process; Numba's disk cache makes a
    later process load them)."""
    key = _key(mk, tab)
    got = _ENTRIES.get(key)
    if got is not None:
        return got
    with _BUILDING:  # threads solving one new pair build it once
        got = _ENTRIES.get(key)
        if got is not None:
            return got
        got = _build(mk, tab)
        _ENTRIES[key] = got
    return got


def _ran(mk, tab) -> None:
    """After a pair's first specialised call returned (so it compiled): leave
    the marker that lets a later process use the loop at once."""
    key = _key(mk, tab)
    if key in _RAN:
        return
    _RAN.add(key)
    try:
        _marker(mk, tab).touch()
    except OSError:  # a read-only cache only loses the next process's shortcut
        pass


def _build(mk, tab) -> Entries:
    # the generic loop's kernel (same compile options, so the same numbers)
    rhs = _numba_compat.stable_identity(mk["rhs"].dispatcher, f"sciode.kernel:rhs_{mk.digest}")
    N, S, NW = mk.n_states, tab.s_total, max(mk.n_controls, 1)  # stages with the dense output's
    jit = _jit_for(mk, tab)
    integrate = member_loop.build_loop(rhs, N, tab, np.float64, jit)

    @jit
    def solve(p, z0, t0, t1, rtol, atol, h_init, hmax, max_steps, t_eval):
        z = z0.copy()
        K = np.zeros((S, N))
        z_new, work, wts, w = np.empty(N), np.empty(N), np.empty(S), np.zeros(NW)
        none = np.empty((1, 1))
        Y = np.full((t_eval.shape[0], N), np.nan)
        stats = np.zeros(4, dtype=np.int64)
        status, t = integrate(p, w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, t_eval, Y,
                              none[0], none[0], none, False, K, z_new, work, wts, stats)
        return status, t, z, Y, stats

    @jit
    def forward_range(P, Z0, t_eval, t0, t1, rtol, atol, h_init, hmax, max_steps, lo, hi, Y,
                      status, t_reached, stats):
        z = np.empty(N)
        K = np.zeros((S, N))
        z_new, work, wts, w = np.empty(N), np.empty(N), np.empty(S), np.zeros(NW)
        none = np.empty((1, 1))
        for mem in range(lo, hi):
            for m in range(N):
                z[m] = Z0[mem, m]
            status[mem], t_reached[mem] = integrate(
                P[mem], w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, t_eval, Y[mem],
                none[0], none[0], none, False, K, z_new, work, wts, stats[mem, :4])

    @jit
    def solve_steps(p, z0, t0, t1, rtol, atol, h_init, hmax, max_steps, cap):
        # the accepted steps' starts (room for ``cap``: more stops with MAX_STEPS)
        z = z0.copy()
        K = np.zeros((S, N))
        z_new, work, wts, w = np.empty(N), np.empty(N), np.empty(S), np.zeros(NW)
        Ts, Hs, Zs = np.empty(cap), np.empty(cap), np.empty((cap, N))
        none = np.empty(0)
        stats = np.zeros(4, dtype=np.int64)
        status, t = integrate(p, w, z, t0, t1, rtol, atol, h_init, hmax, max_steps, none, Zs[:0],
                              Ts, Hs, Zs, True, K, z_new, work, wts, stats)
        return status, t, z, Ts, Zs, stats

    return Entries(solve, forward_range, solve_steps)


class Timer:
    """Times a generic-loop call and counts it against the pair (``spent``)."""

    def __init__(self, mk, tab):
        self.mk, self.tab = mk, tab

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        spent(self.mk, self.tab, time.perf_counter() - self.t0)
        return False


#: Bytes reserved for the accepted steps of a solve without ``t_eval``
#: (``max_steps`` rows when they fit): the memory is only touched as far as the
#: steps go.  A solve that needs more rows runs on the generic loop, which
#: grows its storage.
STEPS_BYTES = 32 << 20


def solve(mk, tab, p, z0, t0, t1, t_eval, rtol, atol, h_init, hmax, max_steps):
    """``sciode.solve``'s integration on the specialised loop, as the generic
    loop's ``solvers.RawResult``: with ``t_eval``, the stored steps are the
    two ends (as the generic loop keeps them with ``store_dense=-1``);
    without, the accepted steps (``store_dense=0``)."""
    from .solvers import RawResult, loop_stats

    ent = _ENTRIES.get(_key(mk, tab)) or entries(mk, tab)
    if t_eval.size == 0:
        n = z0.shape[0]
        cap = max(2, min(int(max_steps), STEPS_BYTES // (8 * (n + 2))))
        status, t, z, Ts, Zs, stats = ent.solve_steps(p, z0, float(t0), float(t1), float(rtol), atol,
                                                      float(h_init), float(hmax), int(max_steps), cap)
        _ran(mk, tab)
        if status == MAX_STEPS and stats[1] < max_steps:  # out of room, not of steps
            from .solvers import run_explicit

            return run_explicit(mk, tab, p, None, z0, t0, t1, t_eval, rtol, atol, h_init, hmax, 0.0,
                                max_steps, False)
        k = int(stats[2])
        ts, zs = np.empty(k + 1), np.empty((k + 1, z0.shape[0]))
        ts[:k], zs[:k] = Ts[:k], Zs[:k]
        ts[k], zs[k] = t, z
        return RawResult(int(status), float(t), ts, zs, _NO_STEPS, np.empty((0, tab.s_total, z0.shape[0])),
                         np.empty((0, z0.shape[0])), loop_stats(stats), tab.P)
    status, t, z, Y, stats = ent.solve(p, z0, float(t0), float(t1), float(rtol), atol, float(h_init),
                                       float(hmax), int(max_steps), t_eval)
    _ran(mk, tab)
    n = z0.shape[0]
    if stats[2] > 0:  # accepted steps: the direction is known to ``finish``
        ts, zs = np.array([t0, t]), np.empty((2, n))
        zs[0], zs[1] = z0, z
    else:
        ts, zs = np.array([t0]), z0.reshape(1, n).copy()
    return RawResult(int(status), float(t), ts, zs, _NO_STEPS, np.empty((0, tab.s_total, n)), Y,
                     loop_stats(stats), tab.P)


_NO_STEPS = np.zeros(0)
_NO_STEPS.flags.writeable = False  # shared by every result: the step sizes it did not keep


def forward_members(mk, tab, P, Z0, t0, t1, t_eval, rtol, atol, h_init, hmax, max_steps, threads=None):
    """An ensemble's forward solves on the specialised loop: ``Y (N, T, n)``,
    ``status (N,)``, ``t_reached (N,)``, ``stats (N, 6)``, as
    ``ensemble.runner.forward`` returns them."""
    from ..ensemble.runner import over_ranges

    ent = entries(mk, tab)
    N, n = Z0.shape
    Y = np.full((N, t_eval.shape[0], n), np.nan)
    status = np.zeros(N, dtype=np.int64)
    t_reached = np.zeros(N)
    stats = np.zeros((N, 6), dtype=np.int64)
    args = (P, Z0, t_eval, float(t0), float(t1), float(rtol), atol, float(h_init), float(hmax),
            int(max_steps))
    over_ranges(lambda lo, hi: ent.forward_range(*args, lo, hi, Y, status, t_reached, stats), N, threads)
    _ran(mk, tab)
    return Y, status, t_reached, stats
