"""A continuous normalizing flow in the plane, with the exact trace from SymPy.

Push a density ``p_0`` forward by the flow of ``x' = f(x)``, ``x in R^2``.  Along a
trajectory the log-density obeys the instantaneous change of variables
(Chen et al. 2018, Theorem 1)

    d/dt log p_t(x(t)) = -tr(df/dx)(x(t)),

so ``log p_T(x(T)) = log p_0(x(0)) - int_0^T tr(df/dx) dt``: one more state,
``l' = -tr(df/dx)``, integrated with the others.  It is Liouville's formula
``det(d phi_T / dx_0) = exp(int_0^T tr(df/dx) dt)`` inside the ordinary change of
variables ``p_T(phi_T(x_0)) = p_0(x_0) / |det d phi_T / dx_0|``.

Here ``f`` is a fixed, hand-chosen nonlinear field (any Lipschitz field has an
invertible flow),

    f_1 = tanh(2 y) - x / 2,      f_2 = sin x + (3/5) y cos x,

``tr(df/dx) = (3/5) cos x - 1/2`` (computed by SymPy, not by hand), ``p_0`` the
standard normal, ``T = 1``.  The density at a point ``x_T`` comes from the
reverse flow ``z' = -f(z)``, ``c' = +tr(df/dx)(z)`` from ``(x_T, 0)``: after time
``T``, ``z = x_0`` and ``c = int_0^T tr dt``, so ``log p_T(x_T) = log p_0(x_0) - c``.

FFJORD (Grathwohl et al. 2019) replaces the trace, which costs ``n`` vector-
Jacobian products in ``n`` dimensions, by Hutchinson's estimator
``tr(A) = E[eps^T A eps]`` for probes with ``E[eps eps^T] = I``: one product
``eps^T (df/dx)`` by reverse-mode autodiff.  In two dimensions its variance is
``(A_12 + A_21)^2`` for Rademacher probes and ``2 |(A + A^T)/2|_F^2`` for Gaussian ones.

Claims (``main``'s return value; ``tests/test_examples_theory.py``):

1. **Change of variables.**  The augmented state's ``l(T)`` equals
   ``-log |det d phi_T/dx_0|`` with the Jacobian from central differences
   (step 1e-4) of a SciPy ``solve_ivp`` flow map of ``f`` written again in
   NumPy (rtol 1e-12): agreement to 1e-6 (the difference quotient's error,
   about ``1e-4^2`` truncation plus ``1e-12 / 1e-4`` rounding, both ~1e-8).
2. **Normalization.**  ``p_T`` integrates to 1 on a grid, within
   ``exp(-R^2/2) + 1e-6``: the box contains the image of the disk ``|x_0| <= R``
   (a homeomorphism maps the disk onto the region its boundary circle's image
   encloses, so the box holds the image of the circle, sampled, plus a margin),
   and the base mass outside that disk is ``exp(-R^2/2)`` in two dimensions;
   the midpoint rule on a smooth, rapidly decaying integrand and the solver
   (rtol 1e-10) add far less than 1e-6 (halving the grid spacing changes the
   sum by less than 1e-8 here).
3. **Hutchinson.**  At several points, the mean of ``eps^T (df/dx) eps`` over
   many probes (torch autograd on the field written in torch) lies within 4
   standard errors of the exact trace, for Rademacher and Gaussian probes, and
   the sample variances are those stated above (Rademacher: within 5%, its
   sample variance is ``c^2 (1 - m^2)`` with ``m`` the probes' mean sign;
   Gaussian: within 4 relative standard deviations of a sample variance,
   at most ``sqrt(14 / K)`` for ``K`` probes, see ``gaussian_variance_rel_sd``);
   integrated along a
   trajectory with one probe per trajectory (FFJORD), ``-int eps^T (df/dx) eps dt``
   through ``sciode.torch.odeint`` has mean within 4 standard errors of the exact
   ``l(T)``.

Run ``python -m examples.continuous_flow [--fast] [--plot density.png]``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import sympy as sp

import sciode

T = 1.0


@dataclasses.dataclass(frozen=True)
class Config:
    spacing: float = 0.05       # grid spacing of the normalization check
    radius: float = 5.5         # R: base mass outside the disk exp(-R^2/2) = 2.7e-7
    probes: int = 4000          # Hutchinson probes per point (pointwise check)
    trajectories: int = 2000    # probes for the integrated check, one per trajectory
    seed: int = 0


FULL = Config()
FAST = Config(spacing=0.1, probes=2000, trajectories=400)
POINTS = np.array([[0.0, 0.0], [1.0, -0.5], [-1.5, 1.0], [0.5, 2.0], [2.5, 0.3]])


# -- the field, symbolically -----------------------------------------------------------------


def field():
    """``(x, y), (f_1, f_2)`` as SymPy objects."""
    x, y = sp.symbols("x y")
    return (x, y), (sp.tanh(2 * y) - x / 2, sp.sin(x) + sp.Rational(3, 5) * y * sp.cos(x))


def divergence():
    """``tr(df/dx)`` from SymPy's Jacobian."""
    xs, f = field()
    return sp.simplify(sp.Matrix(f).jacobian(xs).trace())


def flow_model() -> sciode.Model:
    """``[x, y, l]' = [f, -tr(df/dx)]``: ``l(T) = log p_T(x(T)) - log p_0(x(0))``."""
    (x, y), f = field()
    return sciode.Model(states=[x, y, sp.Symbol("l")], rhs=[*f, -divergence()], name="cnf")


def inverse_model() -> sciode.Model:
    """``[z, c]' = [-f(z), +tr(df/dx)(z)]``: the reverse flow and the integrated trace."""
    (x, y), f = field()
    return sciode.Model(states=[x, y, sp.Symbol("c")], rhs=[-f[0], -f[1], divergence()],
                        name="cnf_inverse")


def log_base(z: np.ndarray) -> np.ndarray:
    """Standard normal log-density in the plane, ``z`` ``(..., 2)``."""
    return -0.5 * np.sum(z ** 2, axis=-1) - np.log(2 * np.pi)


def log_density(points: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """``log p_T`` at ``points`` ``(N, 2)``, by the reverse flow (one ensemble solve)."""
    z0 = np.column_stack([points, np.zeros(len(points))])
    ens = sciode.solve_ensemble(inverse_model(), z0, (0.0, T), t_eval=[T], rtol=rtol,
                                atol=1e-12, raise_on_failure=True)
    end = ens.y[:, -1]
    return log_base(end[:, :2]) - end[:, 2]


# -- claim 1: the augmented state against det(d phi / dx0) -----------------------------------


def _f_numpy(t, z):
    """The field again, by hand in NumPy (the independent reference)."""
    x, y = z
    return [np.tanh(2 * y) - 0.5 * x, np.sin(x) + 0.6 * y * np.cos(x)]


def _flow_scipy(z0) -> np.ndarray:
    from scipy.integrate import solve_ivp

    return solve_ivp(_f_numpy, (0.0, T), z0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]


def logdet_fd(z0, step: float = 1e-4) -> float:
    """``log |det d phi_T / dx_0|`` by central differences of the SciPy flow map."""
    z0 = np.asarray(z0, dtype=float)
    J = np.column_stack([(_flow_scipy(z0 + step * e) - _flow_scipy(z0 - step * e)) / (2 * step)
                         for e in np.eye(2)])
    return float(np.log(abs(np.linalg.det(J))))


def change_of_variables(points=POINTS) -> dict:
    """``l(T)`` from ``sciode.solve`` and ``-log |det|`` from SciPy, per starting point."""
    m = flow_model()
    l_T = np.array([sciode.solve(m, [*z, 0.0], (0.0, T), rtol=1e-12, atol=1e-12).y[-1, 2]
                    for z in points])
    ref = -np.array([logdet_fd(z) for z in points])
    return {"l_T": l_T, "minus_logdet": ref, "max_abs_diff": float(np.max(np.abs(l_T - ref)))}


# -- claim 2: normalization on a grid -------------------------------------------------------


def bounding_box(radius: float, margin: float = 0.5, n: int = 720):
    """The box around the image of the circle ``|x_0| = radius`` (sampled), plus ``margin``."""
    th = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    circle = np.column_stack([radius * np.cos(th), radius * np.sin(th), 0 * th])
    ens = sciode.solve_ensemble(flow_model(), circle, (0.0, T), t_eval=[T], rtol=1e-10,
                                atol=1e-12, raise_on_failure=True)
    img = ens.y[:, -1, :2]
    return img.min(0) - margin, img.max(0) + margin


def grid(lo, hi, spacing: float):
    """Cell centres ``(nx, ny, 2)`` and the cell area of a grid on the box."""
    n = np.ceil((hi - lo) / spacing).astype(int)
    h = (hi - lo) / n
    cx, cy = (lo[i] + h[i] * (np.arange(n[i]) + 0.5) for i in range(2))
    return np.stack(np.meshgrid(cx, cy, indexing="ij"), -1), float(h[0] * h[1])


def normalization(cfg: Config) -> dict:
    lo, hi = bounding_box(cfg.radius)
    out = {"box": (lo, hi), "tolerance": float(np.exp(-cfg.radius ** 2 / 2) + 1e-6)}
    for key, spacing in (("mass", cfg.spacing), ("mass_half_spacing", cfg.spacing / 2)):
        pts, area = grid(lo, hi, spacing)
        logp = log_density(pts.reshape(-1, 2)).reshape(pts.shape[:2])
        out[key] = float(np.exp(logp).sum() * area)
        if key == "mass":
            out["grid"], out["log_density"] = pts, logp
            # not the base density: the flow moved mass (a "frozen" check)
            out["l1_to_base"] = float(np.abs(np.exp(logp) - np.exp(log_base(pts))).sum() * area)
    return out


# -- claim 3: Hutchinson's estimator --------------------------------------------------------


def _f_torch(z):
    """The field again, by hand in torch, rows ``z = (x, y)``."""
    import torch

    x, y = z[..., 0], z[..., 1]
    return torch.stack([torch.tanh(2 * y) - 0.5 * x, torch.sin(x) + 0.6 * y * torch.cos(x)], -1)


def probes(kind: str, shape, gen):
    import torch

    if kind == "gaussian":
        return torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1


def quadratic_forms(z, eps):
    """``eps^T (df/dx)(z) eps`` per row, by one vector-Jacobian product (no Jacobian)."""
    import torch

    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        (vjp,) = torch.autograd.grad(_f_torch(z), z, eps)
    return (vjp * eps).sum(-1)


def exact_jacobian():
    """``df/dx`` as a NumPy function of ``(x, y)`` (SymPy lambdified)."""
    xs, f = field()
    return sp.lambdify(xs, sp.Matrix(f).jacobian(xs), "numpy")


def hutchinson_pointwise(cfg: Config, points=POINTS) -> list[dict]:
    import torch

    jac, gen, rows = exact_jacobian(), torch.Generator().manual_seed(cfg.seed), []
    for z in points:
        A = np.array(jac(*z), dtype=float)
        sym = 0.5 * (A + A.T)
        theory = {"rademacher": (A[0, 1] + A[1, 0]) ** 2, "gaussian": 2 * np.sum(sym ** 2)}
        zz = torch.tensor(z, dtype=torch.float64).expand(cfg.probes, 2)
        for kind in ("rademacher", "gaussian"):
            q = quadratic_forms(zz, probes(kind, (cfg.probes, 2), gen)).numpy()
            se = q.std(ddof=1) / np.sqrt(len(q))
            rows.append({"point": tuple(float(v) for v in z), "probe": kind, "exact": float(np.trace(A)),
                         "mean": float(q.mean()), "se": float(se),
                         "z": float((q.mean() - np.trace(A)) / se) if se > 0 else 0.0,
                         "var": float(q.var(ddof=1)), "var_theory": float(theory[kind])})
    return rows


def gaussian_variance_rel_sd(k: int) -> float:
    """Bound on the relative standard deviation of the sample variance of ``k`` Gaussian
    quadratic forms ``Q = eps^T S eps = sum_i lambda_i g_i^2`` (``S`` the symmetric part):
    ``Var(s^2) ~ (kappa_4 + 2 sigma^4) / k`` with ``sigma^2 = 2 sum lambda^2`` and
    ``kappa_4 = 48 sum lambda^4 <= 12 sigma^4``, so the ratio is at most ``sqrt(14 / k)``."""
    return float(np.sqrt(14.0 / k))


class _HutchinsonField:
    """``[x, l, eps]' = [f(x), -eps^T (df/dx) eps, 0]``: the probe rides in the state, so
    every row is its own trajectory with its own fixed probe."""

    def __call__(self, t, s):
        import torch

        z, eps = s[..., :2], s[..., 3:]
        return torch.cat([_f_torch(z), -quadratic_forms(z, eps)[..., None],
                          torch.zeros_like(eps)], -1)


def hutchinson_integrated(cfg: Config, start=(3.0, 0.0)) -> dict:
    """FFJORD's estimate of ``l(T)`` from ``start``, one probe per trajectory, against the
    exact ``l(T)``."""
    import torch

    from sciode.torch import odeint

    exact = sciode.solve(flow_model(), [*start, 0.0], (0.0, T), rtol=1e-12, atol=1e-12).y[-1, 2]
    gen, out = torch.Generator().manual_seed(cfg.seed + 1), {"exact": float(exact)}
    for kind in ("rademacher", "gaussian"):
        n = cfg.trajectories
        eps = probes(kind, (n, 2), gen)
        s0 = torch.cat([torch.tensor(start, dtype=torch.float64).expand(n, 2),
                        torch.zeros(n, 1, dtype=torch.float64), eps], -1)
        with torch.no_grad():
            est = odeint(_HutchinsonField(), s0, torch.tensor([0.0, T], dtype=torch.float64),
                         rtol=1e-8, atol=1e-10, batch_step="shared")[-1, :, 2].numpy()
        se = est.std(ddof=1) / np.sqrt(n)
        out[kind] = {"mean": float(est.mean()), "se": float(se),
                     "z": float((est.mean() - exact) / se)}
    return out


def plot_density(norm: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = norm["grid"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.5), sharex=True, sharey=True)
    for ax, dens, title in ((axes[0], np.exp(log_base(pts)), "p_0 (standard normal)"),
                            (axes[1], np.exp(norm["log_density"]), "p_T (pushed forward)")):
        ax.contourf(pts[..., 0], pts[..., 1], dens, levels=30)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main(fast: bool = False, plot: str | None = None) -> dict:
    """Run the three checks; return ``{"config", "trace", "change_of_variables",
    "normalization", "hutchinson_pointwise", "hutchinson_integrated"}``."""
    import torch

    cfg = FAST if fast else FULL
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cov = change_of_variables()
        norm = normalization(cfg)
        pointwise = hutchinson_pointwise(cfg)
        integrated = hutchinson_integrated(cfg)
    finally:
        torch.set_num_threads(threads)
    print(f"tr(df/dx) = {divergence()}  (SymPy)")
    print(f"1. l(T) vs -log|det dphi/dx0| (SciPy + central differences): "
          f"max |diff| {cov['max_abs_diff']:.1e} over {len(cov['l_T'])} points")
    lo, hi = norm["box"]
    print(f"2. int p_T = {norm['mass']:.9f} on [{lo[0]:.2f}, {hi[0]:.2f}] x [{lo[1]:.2f}, "
          f"{hi[1]:.2f}], spacing {cfg.spacing} ({norm['mass_half_spacing']:.9f} at half); "
          f"tolerance {norm['tolerance']:.1e}; int |p_T - p_0| = {norm['l1_to_base']:.3f}")
    print(f"3. Hutchinson, {cfg.probes} probes per point: (mean - exact) / se, var / theory")
    for r in pointwise:
        print(f"   {r['point']!s:12s} {r['probe']:10s} exact {r['exact']: .4f} "
              f"mean {r['mean']: .4f} +- {r['se']:.4f}  z {r['z']: .2f}  "
              f"var {r['var']:.4f} / {r['var_theory']:.4f}")
    print(f"   integrated (FFJORD), {cfg.trajectories} trajectories: exact l(T) "
          f"{integrated['exact']:.5f}")
    for kind in ("rademacher", "gaussian"):
        r = integrated[kind]
        print(f"   {kind:10s} mean {r['mean']:.5f} +- {r['se']:.5f}  z {r['z']: .2f}")
    if plot:
        plot_density(norm, plot)
    return {"config": cfg, "trace": divergence(), "change_of_variables": cov,
            "normalization": norm, "hutchinson_pointwise": pointwise,
            "hutchinson_integrated": integrated}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="coarser grid, fewer probes")
    parser.add_argument("--plot", help="save the base and pushed-forward densities to this image")
    args = parser.parse_args()
    main(args.fast, args.plot)
