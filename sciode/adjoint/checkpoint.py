"""``sensitivity="checkpoint"``: the interpolating adjoint with bounded memory.

The forward pass stores only the state at ``checkpoints + 1`` equally spaced
times.  The backward pass re-solves each segment forward from its checkpoint
with dense output, then integrates the costate back over that segment, so
the stored dense output is one segment's at a time: memory is
``O(checkpoints + steps per segment)`` instead of ``O(steps)``, at the price
of one more forward solve.
"""

from __future__ import annotations

import numpy as np

from ..cpu import solvers
from . import common
from .interpolating import costate_sweep


def run(prob) -> common.GradResult:
    n_ck = int(prob.options.get("checkpoints", 8))
    if n_ck < 1:
        raise ValueError(f"`checkpoints` must be >= 1, got {n_ck}")
    tc = np.linspace(prob.t0, prob.t1, n_ck + 1)
    tc[-1] = prob.t1
    t_eval = np.concatenate([tc, prob.t_rows])
    order = np.argsort(t_eval * np.sign(prob.t1 - prob.t0 or 1.0), kind="stable")
    raw = common.forward_pass(prob, t_eval[order], dense=-1)  # states at checkpoints only
    Y = np.empty_like(raw.z_eval)
    Y[order] = raw.z_eval
    Yc, Y_rows = Y[:tc.size], Y[tc.size:]
    H, JY, JP = common.observation_jumps(prob, Y_rows)
    phi, dPhidy, dPhidp = common.terminal(prob, raw.zs[-1])
    n, n_p = prob.n, prob.n_p
    z = np.concatenate([dPhidy, dPhidp, [0.0], np.zeros(prob.n_g)])
    d = 1.0 if prob.t1 >= prob.t0 else -1.0
    fwd2 = {"nfev": 0, "nsteps": 0, "naccepted": 0, "nrejected": 0}
    bwd = dict(fwd2)
    peak = 0
    method = common.augmented_method(prob, "checkpoint")
    for k in range(n_ck - 1, -1, -1):
        seg = common.forward_pass(prob, np.zeros(0), True, Yc[k], (tc[k], tc[k + 1]))
        lo = (prob.t_rows - tc[k]) * d > 0 if k > 0 else (prob.t_rows - tc[k]) * d >= 0
        sel = np.nonzero(lo & ((prob.t_rows - tc[k + 1]) * d <= 0))[0][::-1]
        status, t_reached, z, st, _ = costate_sweep(prob, method, seg.ts, seg.hs, seg.zs, seg.Ks, seg.P,
                                                    z, tc[k + 1], tc[k], prob.t_rows[sel], JY[sel], JP[sel])
        common.check_status(status, t_reached, prob, f"backward (segment {k})")
        for key, val in seg.stats.items():
            fwd2[key] = fwd2.get(key, 0) + val
        for key, val in solvers.loop_stats(st).items():
            bwd[key] = bwd.get(key, 0) + val
        peak = max(peak, seg.ts.size + seg.hs.size + seg.zs.size + seg.Ks.size)
    value = phi + z[n + n_p] + common.misfit(prob, H)
    stats = {"forward": dict(raw.stats), "recompute": fwd2, "backward": bwd, "checkpoints": n_ck,
             "peak_stored_floats": int(peak + raw.z_eval.size)}
    return common.GradResult(value, z[n:n + n_p].copy(), z[:n].copy(),
                             common.control_gradient(prob, z[n + n_p + 1:]), stats)
