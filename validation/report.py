"""Markdown summary and PNG plots of a validation run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

#: one color per mode in every panel (the legend is drawn once)
COLORS = {"adjoint": "C0", "checkpoint": "C1", "backsolve": "C2", "forward": "C3", "discrete": "C4"}


def _is_tolerance_row(r) -> bool:
    return r.mode in COLORS


def table(rows) -> str:
    head = (f"{'case':<27} {'mode':<24} {'tol':>7} {'grad err':>9} {'value err':>9}  {'pass':<4}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.case:<27} {r.mode:<24} {r.tol:>7.0e} {r.error:>9.2e} {r.value_error:>9.2e}  "
                     f"{'ok' if r.passed else 'FAIL':<4}  {r.note[:50]}")
    return "\n".join(lines)


def worst_by_mode(rows) -> dict:
    """Worst gradient and value error per mode at each case's tightest tolerance."""
    tight = {}
    for r in rows:
        if _is_tolerance_row(r):
            key = (r.case, r.mode)
            if key not in tight or r.tol < tight[key].tol:
                tight[key] = r
    out = defaultdict(lambda: [0.0, 0.0, ""])
    for (case, mode), r in tight.items():
        w = out[mode]
        if r.error > w[0]:
            w[0], w[2] = r.error, case
        w[1] = max(w[1], r.value_error)
    return dict(out)


def references(rows) -> dict:
    """Case -> what its reference is."""
    out = {}
    for r in rows:
        if r.reference and not r.mode.startswith("symbolic"):
            out.setdefault(r.case, r.reference)
    return out


def markdown(rows, seconds: float, plot_note: str = "") -> str:
    n_fail = sum(not r.passed for r in rows)
    out = ["# sciode validation report", "",
           f"{len(rows)} checks, {n_fail} failed, {seconds:.1f} s.", "",
           "Every reference is computed without sciode (`validation/independent/`, which imports only "
           "NumPy, SciPy and SymPy): a closed form, or SciPy on a right-hand side written again by hand "
           "in NumPy with its derivatives, by forward sensitivities, accepted only when the complex-step "
           "derivative of the same SciPy solve agrees (and, with a closed form, when both agree with it). "
           "Errors are relative: the value's, and each gradient block's (params, y0, controls) "
           "max-norm error over the block's max-norm; the gradient column is the worst block. "
           "A mode passes a case when, at the tightest tolerance, the gradient and the value are within "
           "the case's gate and the error came down from the loosest tolerance.", ""]
    out += ["## References", "", "| case | reference |", "|---|---|"]
    out += [f"| {case} | {ref} |" for case, ref in references(rows).items()]
    out += ["", "## Worst error per mode (at each case's tightest tolerance)", "",
            "| mode | worst gradient error | case | worst value error |", "|---|---|---|---|"]
    for mode, (g, v, case) in sorted(worst_by_mode(rows).items()):
        out.append(f"| {mode} | {g:.2e} | {case} | {v:.2e} |")
    out += ["", plot_note or "![error vs tolerance](error_vs_tolerance.png)", "",
            "## All checks", "",
            "| case | mode | tolerance | grad. error | blocks | value error | gate | pass | note |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        blocks = ", ".join(f"{k} {v:.1e}" for k, v in r.blocks.items())
        out.append(f"| {r.case} | {r.mode} | {r.tol:.0e} | {r.error:.2e} | {blocks} | {r.value_error:.1e} | "
                   f"{r.gate:.0e} | {'yes' if r.passed else '**NO**'} | {r.note} |")
    return "\n".join(out) + "\n"


def plots(rows, out: Path) -> list:
    """``error_vs_tolerance.png``: one panel per case, one line per mode.

    Raises ``ModuleNotFoundError`` without matplotlib (the caller says how to get it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if _is_tolerance_row(r) and np.isfinite(r.error):
            series[r.case][r.mode].append((r.tol, max(r.error, 1e-16)))
    cases = list(series)
    if not cases:
        return []
    ncol = 4
    nrow = (len(cases) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.2 * nrow), squeeze=False)
    for ax, case in zip(axes.ravel(), cases):
        for mode, pts in series[case].items():
            t, e = zip(*pts)
            ax.loglog(t, e, "o-", label=mode, color=COLORS.get(mode))
        ax.set_title(case, fontsize=9)
        ax.set_xlabel("rtol")
        ax.set_ylabel("rel. gradient error")
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes.ravel()[len(cases):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=c, marker="o", label=m) for m, c in COLORS.items()]
    fig.legend(handles=handles, loc="lower right", fontsize=9)
    fig.tight_layout()
    path = out / "error_vs_tolerance.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [path]
