"""Where a fresh installation's first gradient spends its compile time.

``python -m benchmarks.compile_profile [--method dopri5] [--mode adjoint] [--top 25]``
runs, in a child process with empty ``SCIODE_CACHE_DIR`` and
``NUMBA_CACHE_DIR`` (temporary directories), one Lotka--Volterra
``value_and_grad`` and records every Numba compilation through Numba's event
API (``numba:compile``).  It prints the wall time to the first gradient and
the compiled functions ranked by *exclusive* compile time (a function's own
typing, lowering and LLVM time, without the callees it compiled on the way),
with how many specialisations of each were compiled.

This is the measurement behind issue 14's cold-start item: on this 2-core
machine the first adjoint gradient compiled for about a minute, spread over
~100 functions (no single one above 3 s), so the lever is how many
functions and specialisations a first call compiles, not one slow kernel.
Timings are not a test; run it beside an older commit to compare.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time


def _child(method: str, mode: str) -> dict:
    from numba.core import event

    records = []

    class Exclusive(event.Listener):
        """Exclusive time per compilation: nested compilations (callees) are
        subtracted from their caller's."""

        def __init__(self):
            self.stack = []

        def on_start(self, ev):
            self.stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev):
            t0, inner = self.stack.pop()
            dt = time.perf_counter() - t0
            if self.stack:
                self.stack[-1][1] += dt
            disp = ev.data["dispatcher"]
            py = getattr(disp, "py_func", None)
            name = f"{py.__module__}.{py.__qualname__}" if py is not None else repr(disp)
            records.append((name, dt - inner))

    event.register("numba:compile", Exclusive())
    t_import = time.perf_counter()
    import sciode  # noqa: F401  (timed: the import)

    from . import frameworks as F
    from . import problems as P
    prob = P.lotka_volterra()
    t0 = time.perf_counter()
    F.sciode_grad(prob, mode, method=method)(1e-8, 1e-8)
    first = time.perf_counter() - t0
    total = collections.defaultdict(float)
    count = collections.Counter()
    for name, dt in records:
        total[name] += dt
        count[name] += 1
    return {"import_s": t0 - t_import, "first_s": first,
            "functions": sorted(([n, total[n], count[n]] for n in total), key=lambda r: -r[1])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_profile",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="dopri5")
    parser.add_argument("--mode", default="adjoint")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.method, args.mode)))
        return 0
    from ._util import CacheDir, run_child
    with CacheDir() as cache:
        # both set: a sitecustomize's defaults must not point the child at a warm cache
        env = dict(os.environ, SCIODE_CACHE_DIR=cache, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
        res = run_child([sys.executable, "-m", "benchmarks.compile_profile", "--child",
                         "--method", args.method, "--mode", args.mode], env)
    if "error" in res:
        print(res["error"], file=sys.stderr)
        return 1
    funcs = res["functions"]
    print(f"Lotka-Volterra {args.mode} gradient ({args.method}), empty caches: "
          f"import {res['import_s']:.1f} s, first gradient {res['first_s']:.1f} s; "
          f"{len(funcs)} functions, {sum(r[2] for r in funcs)} compilations, "
          f"{sum(r[1] for r in funcs):.1f} s compiling; the child used {res['cpu_s']:.1f} s of CPU "
          "(steadier than wall time on a shared machine)")
    print(f"{'exclusive s':>12} {'n':>3}  function")
    for name, secs, n in funcs[:args.top]:
        print(f"{secs:12.2f} {n:3d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
