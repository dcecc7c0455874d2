"""``sciode`` console script: ``sciode validate [options]`` runs the validation suite."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="sciode")
    ap.add_argument("command", choices=["validate"], help="what to run")
    args, rest = ap.parse_known_args(argv)
    from validation.__main__ import main as validate

    return validate(rest)


if __name__ == "__main__":
    sys.exit(main())
