"""``sciode.gradcheck``: prove a model's gradients right, or say which is wrong.

Every requested sensitivity mode is compared, entry by entry, with two
independent references:

- central finite differences ``D(h) = (J(theta + h e_k) - J(theta - h e_k)) / 2h``
  with a step from each entry's scale, ``h_k = rel_step * max(|theta_k|, 1)``,
  Richardson-extrapolated, ``R = (4 D(h/2) - D(h)) / 3``, whose own error is
  estimated by ``|D(h) - D(h/2)|`` (a difference that disagrees with itself
  is reported as an unreliable reference, not as a gradient error);
- the forward-sensitivity gradient (a different derivation: ``S' = J S + f_p``).

An entry passes when its relative error against the forward sensitivities is
below ``tol`` and against the differences below ``max(fd_tol, 10 * fd error
estimate)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .adjoint import value_and_grad

DEFAULT_MODES = ("adjoint", "checkpoint", "backsolve", "discrete")


@dataclass
class GradcheckRow:
    mode: str
    quantity: str
    value: float
    reference: float
    rel_error: float
    rel_error_forward: float
    fd_error_estimate: float
    ok: bool


@dataclass
class GradcheckReport:
    """Result of ``gradcheck``: ``ok``, ``rows`` and a readable table."""

    rows: list = field(default_factory=list)
    value: float = float("nan")
    tol: float = 0.0
    fd_tol: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    @property
    def failures(self) -> list:
        return [r for r in self.rows if not r.ok]

    def __str__(self) -> str:
        head = (f"{'mode':<11} {'quantity':<16} {'gradient':>14} {'fd reference':>14} "
                f"{'rel.err(fd)':>11} {'rel.err(fwd)':>12} {'fd.err.est':>10}  ok")
        lines = [f"gradcheck: J = {self.value:.10g}; tol={self.tol:g} (vs forward), "
                 f"{self.fd_tol:g} (vs finite differences)", head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.mode:<11} {r.quantity:<16} {r.value:>14.7g} {r.reference:>14.7g} "
                         f"{r.rel_error:>11.2e} {r.rel_error_forward:>12.2e} {r.fd_error_estimate:>10.1e}  "
                         f"{'yes' if r.ok else 'NO'}")
        if self.ok:
            lines.append("all gradients agree with both references")
        else:
            worst = max(self.failures, key=lambda r: r.rel_error_forward)
            lines.append(f"FAILED: {len(self.failures)} entries disagree; worst: {worst.mode} "
                         f"{worst.quantity} off by {worst.rel_error_forward:.2e} relative")
        return "\n".join(lines)

    __repr__ = __str__


def _rel(a, b, scale):
    return abs(a - b) / max(abs(b), scale)


def richardson_differences(fun, theta, rel_step):
    """Richardson-extrapolated central differences of ``fun`` at ``theta``.

    Returns ``(gradient, error_estimate)``, both ``(len(theta),)``.
    """
    grad = np.empty(theta.size)
    err = np.empty(theta.size)
    for k in range(theta.size):
        h = rel_step * max(abs(theta[k]), 1.0)
        d = []
        for hk in (h, h / 2):
            e = np.zeros(theta.size)
            e[k] = hk
            d.append((fun(theta + e) - fun(theta - e)) / (2 * hk))
        grad[k] = (4 * d[1] - d[0]) / 3
        err[k] = abs(d[0] - d[1])
    return grad, err


def gradcheck(model, cost, y0, t_span, params=None, modes=DEFAULT_MODES, tol=1e-6, fd_tol=1e-5,
              rel_step=1e-3, rtol=1e-10, atol=1e-12, method="dopri5", **solve_kw) -> GradcheckReport:
    """Check the gradients of ``cost`` for ``model`` against two references.

    Parameters
    ----------
    model, cost, y0, t_span, params : as ``sciode.value_and_grad``
    modes : sensitivity modes to check
    tol : relative tolerance against the forward-sensitivity gradient
    fd_tol : relative tolerance against the finite differences
    rel_step : finite-difference step relative to each entry's scale
    rtol, atol, method, **solve_kw : passed to every solve (tight by default:
        a reference is only as good as its solves)

    Returns
    -------
    GradcheckReport
    """
    kw = dict(rtol=rtol, atol=atol, method=method, **solve_kw)
    p0 = model.param_vector(params)
    x0 = model.state_vector(y0)
    n_p = p0.size
    ref_fwd = value_and_grad(model, cost, x0, t_span, p0, sensitivity="forward", **kw)

    def J(theta):
        return value_and_grad(model, cost, theta[n_p:], t_span, theta[:n_p], sensitivity="forward", **kw).value

    theta = np.concatenate([p0, x0])
    fd, fd_err = richardson_differences(J, theta, rel_step)
    fwd = np.concatenate([ref_fwd.grad_params, ref_fwd.grad_y0])
    names = [f"dJ/d{p.name}" for p in model.params] + [f"dJ/d{s.name}(t0)" for s in model.states]
    scale = 1e-8 * max(np.max(np.abs(fwd)), 1e-300)
    report = GradcheckReport(value=ref_fwd.value, tol=tol, fd_tol=fd_tol)
    for mode in ("forward", *[m for m in modes if m != "forward"]):
        res = ref_fwd if mode == "forward" else value_and_grad(model, cost, x0, t_span, p0, sensitivity=mode, **kw)
        g = np.concatenate([res.grad_params, res.grad_y0])
        for k, name in enumerate(names):
            e_fd = _rel(g[k], fd[k], scale)
            e_fw = _rel(g[k], fwd[k], scale)
            fd_allow = max(fd_tol, 10 * fd_err[k] / max(abs(fd[k]), scale))
            ok = bool(np.isfinite(g[k]) and e_fw <= tol and e_fd <= fd_allow)
            report.rows.append(GradcheckRow(mode, name, float(g[k]), float(fd[k]), float(e_fd),
                                            float(e_fw), float(fd_err[k]), ok))
    return report
