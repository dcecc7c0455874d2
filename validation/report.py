"""Markdown summary and PNG plots of a validation run."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def table(rows) -> str:
    head = f"{'case':<20} {'mode':<28} {'tol':>8} {'error':>10}  {'pass':<4}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.case:<20} {r.mode:<28} {r.tol:>8.0e} {r.error:>10.2e}  "
                     f"{'ok' if r.passed else 'FAIL':<4}  {r.note[:60]}")
    return "\n".join(lines)


def markdown(rows, seconds: float) -> str:
    n_fail = sum(not r.passed for r in rows)
    out = ["# sciode validation report", "",
           f"{len(rows)} checks, {n_fail} failed, {seconds:.1f} s.", "",
           "Errors are relative (max-norm) errors of the gradient over parameters and initial state "
           "against each case's independent reference (analytic, or forward sensitivities at "
           "rtol=1e-12 checked against Richardson-extrapolated central differences).", "",
           "![error vs tolerance](error_vs_tolerance.png)", "",
           "| case | mode | tolerance | rel. error | pass | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.case} | {r.mode} | {r.tol:.0e} | {r.error:.2e} | {'yes' if r.passed else '**NO**'} | {r.note} |")
    return "\n".join(out) + "\n"


#: one color per mode in every panel (the legend is drawn once)
COLORS = {"adjoint": "C0", "checkpoint": "C1", "backsolve": "C2", "forward": "C3", "discrete": "C4"}


def plots(rows, out: Path) -> list:
    """``error_vs_tolerance.png``: one panel per case, one line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.tol > 0 and not r.mode.startswith(("symbolic", "discrete vs", "adjoint grad_controls")):
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
