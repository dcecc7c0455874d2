"""Gradients under a memory budget (``value_and_grad(..., memory_budget=bytes)``).

The interpolating adjoint (``sensitivity="adjoint"``) stores the forward
pass's dense output: per accepted step its time, its size, the state and the
``s`` stages of the method's interpolant (``s = P.shape[0]``: 7 for dopri5
and tsit5, 16 for dop853, 6 for rodas4, 5 for bdf), that is

    ``8 (2 + n (1 + s))`` bytes per step,

and the loops grow that storage by doubling, so while it grows it may hold
up to ``GROWTH = 3`` times what it uses (the old and the new arrays).  For
``n`` in the thousands and ``10^5`` steps that is gigabytes.

With a budget, a first forward pass that keeps only the steps' times and
states (``n + 2`` floats a step, ``1 + s`` times less) counts the steps and
finds where they are.  If the adjoint's storage fits the budget, the adjoint
runs as usual; if not, the gradient is the checkpointed adjoint
(``checkpoint``) with its checkpoints placed every ``M`` steps of that pass,
``M`` half of what the budget holds, so a segment's re-solve (whose step
controller restarts and may take a few more steps than the full pass did
over the same stretch) stays within it.  Equally spaced checkpoints would not:
a stiff transient can put most steps in one segment.  ``stats["memory"]``
says which was run and why.
"""

from __future__ import annotations

import numpy as np

from ..cpu import solvers
from . import checkpoint, common, interpolating

#: Worst case of the loops' storage over what it uses (doubling: old + new arrays).
GROWTH = 3


def check_budget(budget, sensitivity: str) -> float:
    """The budget in bytes, or ``ValueError`` naming what is wrong."""
    if sensitivity not in ("adjoint", "checkpoint"):
        raise ValueError(f"`memory_budget` bounds the stored forward trajectory of sensitivity='adjoint' "
                         f"or 'checkpoint'; sensitivity={sensitivity!r} stores none "
                         "('backsolve' and 'forward' run in memory independent of the steps)")
    try:
        value = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"`memory_budget` must be a number of bytes, got {budget!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"`memory_budget` must be a positive number of bytes, got {budget!r}")
    return value


def bytes_per_step(prob) -> int:
    """Bytes of the adjoint's stored dense output per accepted step (see the module doc)."""
    s = common.model_method(prob).P.shape[0]
    return 8 * (2 + prob.n * (1 + s))


def run(prob, sensitivity: str) -> common.GradResult:
    """The gradient of ``prob`` (``adjoint`` or ``checkpoint``) within
    ``prob.options["memory_budget"]`` bytes of stored trajectory."""
    budget = check_budget(prob.options["memory_budget"], sensitivity)
    per_step = bytes_per_step(prob)
    cap = int(budget // (GROWTH * per_step))  # steps the budget holds, growth included
    if cap < 2:
        raise ValueError(f"memory_budget={budget:.4g} bytes cannot hold two steps of this problem's "
                         f"trajectory ({per_step} bytes a step, up to {GROWTH}x that while the "
                         f"storage grows); give at least {2 * GROWTH * per_step} bytes")
    steps, ts = _forward_steps(prob)
    info = {"budget_bytes": budget, "bytes_per_step": per_step, "forward_steps": steps,
            "steps_within_budget": cap}
    if sensitivity == "adjoint" and steps <= cap:
        res = interpolating.run(prob)
        info["mode"] = "adjoint"
    else:
        per_segment = max(1, cap // 2)
        inner = ts[per_segment:steps:per_segment]
        tc = np.concatenate(([prob.t0], inner[inner != prob.t1], [prob.t1]))
        res = checkpoint.run_at(prob, checkpoint.plan_at(prob, tc))
        info["mode"] = "checkpoint"
        info["steps_per_segment"] = per_segment
    info["peak_stored_bytes"] = 8 * int(res.stats["peak_stored_floats"])
    res.stats["memory"] = info
    return res


def _forward_steps(prob):
    """``(accepted steps, step times)`` of the model's forward pass, keeping its steps only."""
    method = common.model_method(prob)
    raw = solvers.run(prob.mk, method, prob.p, prob.controls, prob.y0, prob.t0, prob.t1, solvers.EMPTY,
                      prob.rtol, prob.atol, 0.0, float(prob.options.get("max_step", np.inf)),
                      common.fixed_step(prob), prob.max_steps, 0)
    common.check_status(raw.status, raw.t_reached, prob, "forward (sizing the memory budget)")
    return raw.ts.size - 1, raw.ts
