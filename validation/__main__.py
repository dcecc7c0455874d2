"""``python -m validation [--fast] [--case NAME ...] [--out DIR]``.

Runs the catalog, prints the table, writes ``DIR/report.md`` and PNG plots,
and exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .cases import CASES
from .report import markdown, plots, table
from .runner import Row, run_case, run_literature_set

#: ``--case`` name of the stiff test-set check (run by default and with ``--fast``)
TESTSET = "testset"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m validation", description=__doc__)
    ap.add_argument("--case", action="append", help="run only this case (repeatable)")
    ap.add_argument("--fast", action="store_true", help="the quick subset (CI)")
    ap.add_argument("--out", default="validation_report", help="report directory")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args(argv)
    cases = CASES
    if args.list:
        for c in cases:
            print(f"{c.name:<28} {'fast' if c.fast else '':<5} {c.description}")
        print(f"{TESTSET:<28} {'fast':<5} ROBER, VDPOL, HIRES, OREGO (stiff test set) against published solutions")
        return 0
    testset = not args.case or TESTSET in args.case
    if args.case:
        names = {c.name for c in cases} | {TESTSET}
        unknown = set(args.case) - names
        if unknown:
            ap.error(f"unknown case(s) {sorted(unknown)}; valid: {sorted(names)}")
        cases = [c for c in cases if c.name in args.case]
    elif args.fast:
        cases = [c for c in cases if c.fast]
    start = time.perf_counter()
    rows = []
    total = sum(len(c.modes) * len(c.tolerances) for c in cases) + (8 if testset else 0)
    with tqdm(total=total, desc="validation", file=sys.stderr) as bar:
        for case in cases:
            bar.set_postfix_str(case.name)
            try:
                rows += run_case(case, bar)
            except Exception as exc:  # a crashing case is a failed case, reported as such
                rows.append(Row(case.name, "(case crashed)", 0.0, float("inf"), False, repr(exc)))
        if testset:
            bar.set_postfix_str(TESTSET)
            try:
                rows += run_literature_set(bar)
            except Exception as exc:  # noqa: BLE001  (reported as a failed check)
                rows.append(Row(TESTSET, "(crashed)", 0.0, float("inf"), False, repr(exc)))
    seconds = time.perf_counter() - start
    print(table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        figs, plot_note = plots(rows, out), ""
    except ModuleNotFoundError:
        figs = []
        plot_note = ("(No plot: matplotlib is not installed; `pip install 'sciode[plot]'` adds "
                     "`error_vs_tolerance.png`.)")
        print(plot_note)
    (out / "report.md").write_text(markdown(rows, seconds, plot_note))
    n_fail = sum(not r.passed for r in rows)
    print(f"\n{len(rows)} checks, {n_fail} failed in {seconds:.1f} s; report: {out / 'report.md'}"
          + (f", plots: {', '.join(str(f) for f in figs)}" if figs else ""))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
