"""``python -m benchmarks <suite> [--quick] [--no-cold]``: sciode side by side with
SciPy, diffrax, torchdiffeq and CasADi (each optional).

Suites: ``solve`` (explicit work-precision, per-step cost, cold start),
``stiff`` (Robertson, Van der Pol, Brusselator), ``grad`` (gradient cost over
forward cost, every sensitivity mode, equal-error comparisons, time to first
gradient), ``scaling`` (adjoint vs forward as parameters grow; stored floats
as steps grow), ``fit`` (parameter fits against SciPy; multistart on Dask), ``ensemble`` (many
members, each with its own steps), ``torch`` (the torch path against torchdiffeq and
torchode), ``cuda`` (GPU ensembles; needs a device), ``petab`` (the shared PEtab
problems against their references), ``all``.  Tables are printed and written to
``benchmarks/results/<suite>.md``.  See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import warnings

# Which explicit loop sciode runs must not depend on how long a suite has run
# (``sciode.cpu.specialized`` switches after seconds): the generic loop, as
# the figures before it; sections that show the specialised loop force it
# (``_util.explicit_loop``).
os.environ.setdefault("SCIODE_SPECIALIZE", "never")

SUITES = ("solve", "stiff", "grad", "scaling", "fit", "ensemble", "torch", "cuda", "petab")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=(*SUITES, "all"))
    parser.add_argument("--quick", action="store_true", help="fewer tolerances, sizes and repeats (< 3 min total)")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-subprocess (cold start) measurements")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="sciode")
    from ._util import Config
    cfg = Config.make(args.quick, cold=not args.no_cold)
    suites = SUITES if args.suite == "all" else (args.suite,)
    t_all = time.perf_counter()
    for name in suites:
        t0 = time.perf_counter()
        print(f"=== suite {name}{' (quick)' if args.quick else ''} ===", flush=True)
        mod = importlib.import_module(f"benchmarks.suite_{name}")
        rep = mod.run(cfg)
        rep.note(f"suite wall time: {time.perf_counter() - t0:.1f} s")
        rep.write()
    print(f"total wall time: {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
