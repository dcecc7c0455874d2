"""``sciode`` console script.

- ``sciode validate [options]`` runs the validation suite;
- ``sciode precompile [--jobs N]`` compiles the solver loops once, ahead of
  the first call (``sciode.warmup``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="sciode")
    ap.add_argument("command", choices=["validate", "precompile"], help="what to run")
    args, rest = ap.parse_known_args(argv)
    if args.command == "precompile":
        pp = argparse.ArgumentParser(prog="sciode precompile",
                                     description="Compile every method family's solver loops into "
                                                 "the cache (SCIODE_CACHE_DIR), in parallel.")
        pp.add_argument("--jobs", type=int, default=None, help="worker processes (default: CPU count)")
        opts = pp.parse_args(rest)
        if opts.jobs is not None and opts.jobs < 1:
            pp.error("--jobs must be at least 1")
        from .warmup import precompile

        precompile(jobs=opts.jobs)
        return 0
    from validation.__main__ import main as validate

    return validate(rest)


if __name__ == "__main__":
    sys.exit(main())
