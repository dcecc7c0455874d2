"""Benchmark problems, each written once per framework.

A ``Problem`` carries the SymPy ``sciode.Model`` (built lazily), the initial
state, time span and parameters, and a right-hand side ``rhs(t, y, p, B)``
written against a small backend ``B`` (NumPy, JAX or PyTorch), so scipy,
diffrax and torchdiffeq integrate exactly the same vector field in the way a
user of those packages would write it (vectorised array code).  CasADi gets
the SymPy expressions lambdified onto ``casadi.SX`` symbols.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

import numpy as np


# --- backends ------------------------------------------------------------------------


class NumpyB:
    name = "numpy"
    tanh = staticmethod(np.tanh)

    @staticmethod
    def stack(xs):
        return np.array(xs)

    @staticmethod
    def pad(u, left, right):
        return np.concatenate(([left], u, [right]))

    @staticmethod
    def cat(xs):
        return np.concatenate(xs)


class JaxB:
    name = "jax"

    def __init__(self):
        import jax.numpy as jnp
        self.jnp = jnp
        self.tanh = jnp.tanh

    def stack(self, xs):
        return self.jnp.stack(xs)

    def pad(self, u, left, right):
        jnp = self.jnp
        return jnp.concatenate((jnp.full((1,), left, dtype=u.dtype), u, jnp.full((1,), right, dtype=u.dtype)))

    def cat(self, xs):
        return self.jnp.concatenate(xs)


class TorchB:
    name = "torch"

    def __init__(self):
        import torch
        self.torch = torch
        self.tanh = torch.tanh

    def stack(self, xs):
        return self.torch.stack(xs)

    def pad(self, u, left, right):
        t = self.torch
        return t.cat((t.full((1,), left, dtype=u.dtype), u, t.full((1,), right, dtype=u.dtype)))

    def cat(self, xs):
        return self.torch.cat(xs)


# --- problem container ---------------------------------------------------------------


@dataclass
class Problem:
    name: str
    build: Callable            # () -> sciode.Model
    y0: np.ndarray
    t_span: tuple
    params: np.ndarray
    rhs: Callable              # rhs(t, y, p, B)
    jac: Callable | None = None   # numpy Jacobian (dense array or scipy.sparse), jac(t, y, p)
    cost: str = "terminal"     # "terminal": sum of squares of y(t1); "ls": least squares on data
    t_obs: np.ndarray | None = None
    y_obs: np.ndarray | None = None
    atol_scale: float = 1.0    # atol = atol_scale * rtol (stiff problems)
    extra: dict = field(default_factory=dict)

    @cached_property
    def model(self):
        return self.build()

    @property
    def n(self) -> int:
        return int(self.y0.size)

    def np_rhs(self):
        p = self.params
        return lambda t, y: self.rhs(t, y, p, NumpyB)

    def sciode_cost(self):
        import sciode
        m = self.model
        if self.cost == "ls":
            return sciode.LeastSquares(self.t_obs, self.y_obs)
        return sciode.Cost(terminal=sum(s**2 for s in m.states))

    def with_params(self, params) -> "Problem":
        q = Problem(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        q.params = np.asarray(params, dtype=float)
        if "model" in self.__dict__:
            q.__dict__["model"] = self.__dict__["model"]
        return q


def _sym(names):
    import sympy as sp
    return sp.symbols(names)


# --- explicit (non-stiff) problems -----------------------------------------------------


def _lorenz_rhs(t, y, p, B):
    return B.stack([p[0] * (y[1] - y[0]), y[0] * (p[1] - y[2]) - y[1], y[0] * y[1] - p[2] * y[2]])


def lorenz(t1: float = 10.0, suffix: str = "") -> Problem:
    def build():
        import sciode
        x, y, z, s, r, b = _sym(f"x{suffix} y{suffix} z{suffix} sigma rho beta")
        return sciode.Model(states=[x, y, z], rhs=[s * (y - x), x * (r - z) - y, x * y - b * z],
                            params=[s, r, b], name="lorenz")
    return Problem("lorenz", build, np.array([1.0, 1.0, 1.0]), (0.0, t1),
                   np.array([10.0, 28.0, 8.0 / 3.0]), _lorenz_rhs)


def _lv_rhs(t, y, p, B):
    return B.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


LV_TRUE = np.array([1.5, 1.0, 3.0, 1.0])


def lotka_volterra(t1: float = 10.0, suffix: str = "", n_obs: int = 101, data: bool = True) -> Problem:
    def build():
        import sciode
        x, y, a, b, c, d = _sym(f"prey{suffix} pred{suffix} a b c d")
        return sciode.Model(states=[x, y], rhs=[a * x - b * x * y, -c * y + d * x * y],
                            params=[a, b, c, d], name="lotka_volterra")
    prob = Problem("lotka_volterra", build, np.array([1.0, 1.0]), (0.0, t1), LV_TRUE.copy(), _lv_rhs)
    if data:
        from scipy.integrate import solve_ivp
        t_obs = np.linspace(0.0, t1, n_obs)
        f = prob.np_rhs()
        ref = solve_ivp(f, (0.0, t1), prob.y0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=t_obs)
        rng = np.random.default_rng(0)
        prob.t_obs = t_obs
        prob.y_obs = ref.y.T + 0.1 * rng.standard_normal(ref.y.T.shape)
        prob.cost = "ls"
        # evaluate gradients away from the optimum
        prob.params = LV_TRUE * np.array([1.1, 0.9, 1.05, 0.95])
    return prob


def _mlp_rhs_factory(n, h):
    def rhs(t, y, p, B):
        W1 = p[: h * n].reshape(h, n)
        b1 = p[h * n: h * n + h]
        o = h * n + h
        W2 = p[o: o + n * h].reshape(n, h)
        b2 = p[o + n * h: o + n * h + n]
        return W2 @ B.tanh(W1 @ y + b1) + b2
    return rhs


def mlp(n: int = 2, h: int = 16, t1: float = 1.0, seed: int = 0, scale: float = 0.5,
        structured: bool = False) -> Problem:
    """``x' = W2 tanh(W1 x + b1) + b2`` (n-h-n): ``2nh + h + n`` parameters.

    ``structured``: declared with ``MatrixSymbol`` blocks (kernels generated in
    matrix form) instead of one symbol per weight; same parameter order."""
    def build():
        import sympy as sp
        import sciode
        if structured:
            y = sp.MatrixSymbol("x", n, 1)
            W1, b1 = sp.MatrixSymbol("W1", h, n), sp.MatrixSymbol("b1", h, 1)
            W2, b2 = sp.MatrixSymbol("W2", n, h), sp.MatrixSymbol("b2", n, 1)
            return sciode.Model(states=[y], params=[W1, b1, W2, b2],
                                rhs=[W2 * (W1 * y + b1).applyfunc(sp.tanh) + b2],
                                name=f"mlp_{n}_{h}_{n}_matrix")
        x = sp.symbols(f"x0:{n}")
        W1 = sp.Matrix(h, n, lambda i, j: sp.Symbol(f"W1_{i}_{j}"))
        b1 = sp.Matrix(h, 1, lambda i, _: sp.Symbol(f"b1_{i}"))
        W2 = sp.Matrix(n, h, lambda i, j: sp.Symbol(f"W2_{i}_{j}"))
        b2 = sp.Matrix(n, 1, lambda i, _: sp.Symbol(f"b2_{i}"))
        hidden = (W1 * sp.Matrix(x) + b1).applyfunc(sp.tanh)
        rhs = list(W2 * hidden + b2)
        return sciode.Model(states=list(x), rhs=rhs, params=[*W1, *b1, *W2, *b2], name=f"mlp_{n}_{h}_{n}")
    n_p = 2 * n * h + h + n
    rng = np.random.default_rng(seed)
    p = np.empty(n_p)
    p[: h * n] = rng.standard_normal(h * n) * scale / np.sqrt(n)
    p[h * n: h * n + h] = rng.standard_normal(h) * 0.1
    o = h * n + h
    p[o: o + n * h] = rng.standard_normal(n * h) * scale / np.sqrt(h)
    p[o + n * h:] = rng.standard_normal(n) * 0.1
    y0 = np.linspace(1.0, 0.5, n)
    return Problem(f"mlp_{n}-{h}-{n}" + ("_matrix" if structured else ""), build, y0, (0.0, t1), p,
                   _mlp_rhs_factory(n, h))


# --- stiff problems --------------------------------------------------------------------


def _rober_rhs(t, y, p, B):
    k1, k2, k3 = p[0], p[1], p[2]
    return B.stack([-k1 * y[0] + k3 * y[1] * y[2],
                    k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
                    k2 * y[1] ** 2])


def _rober_jac(t, y, p):
    k1, k2, k3 = p
    return np.array([[-k1, k3 * y[2], k3 * y[1]],
                     [k1, -k3 * y[2] - 2 * k2 * y[1], -k3 * y[1]],
                     [0.0, 2 * k2 * y[1], 0.0]])


def robertson(t1: float = 1e5) -> Problem:
    def build():
        import sciode
        y1, y2, y3, k1, k2, k3 = _sym("y1 y2 y3 k1 k2 k3")
        return sciode.Model(states=[y1, y2, y3],
                            rhs=[-k1 * y1 + k3 * y2 * y3, k1 * y1 - k3 * y2 * y3 - k2 * y2**2, k2 * y2**2],
                            params=[k1, k2, k3], name="robertson")
    return Problem("robertson", build, np.array([1.0, 0.0, 0.0]), (0.0, t1),
                   np.array([0.04, 3e7, 1e4]), _rober_rhs, jac=_rober_jac, atol_scale=1e-6)


def _hires_rhs(t, y, p, B):
    k1, k2, k3, k4, k5, k6, k7, k8, k9, oks = (p[i] for i in range(10))
    r = k7 * y[5] * y[7]
    return B.stack([-k1 * y[0] + k2 * y[1] + k6 * y[2] + oks,
                    k1 * y[0] - (k2 + k3) * y[1],
                    -(k6 + k1) * y[2] + k2 * y[3] + k5 * y[4],
                    k3 * y[1] + k1 * y[2] - (k4 + k2) * y[3],
                    -(k5 + k1) * y[4] + k2 * (y[5] + y[6]),
                    -r + k8 * y[3] + k1 * y[4] - k2 * y[5] + k8 * y[6],
                    r - (k2 + k8 + k9) * y[6],
                    -r + (k2 + k8 + k9) * y[6]])


def _hires_jac(t, y, p):
    k1, k2, k3, k4, k5, k6, k7, k8, k9, _ = p
    J = np.zeros((8, 8))
    J[0, :3] = [-k1, k2, k6]
    J[1, :2] = [k1, -(k2 + k3)]
    J[2, 2:5] = [-(k6 + k1), k2, k5]
    J[3, 1:4] = [k3, k1, -(k4 + k2)]
    J[4, 4:7] = [-(k5 + k1), k2, k2]
    J[5, 3:8] = [k8, k1, -k2 - k7 * y[7], k8, -k7 * y[5]]
    J[6, 5:8] = [k7 * y[7], -(k2 + k8 + k9), k7 * y[5]]
    J[7, 5:8] = [-k7 * y[7], k2 + k8 + k9, -k7 * y[5]]
    return J


def hires(t1: float = 321.8122) -> Problem:
    """HIRES (Hairer & Wanner, Solving ODEs II, IV.10; the IVP test set's hires.f):
    8 species, rate constants k1..k9 and source oks as parameters."""
    def build():
        import sciode
        y = _sym("y1 y2 y3 y4 y5 y6 y7 y8")
        k1, k2, k3, k4, k5, k6, k7, k8, k9, oks = _sym("k1 k2 k3 k4 k5 k6 k7 k8 k9 oks")
        r = k7 * y[5] * y[7]
        rhs = [-k1 * y[0] + k2 * y[1] + k6 * y[2] + oks, k1 * y[0] - (k2 + k3) * y[1],
               -(k6 + k1) * y[2] + k2 * y[3] + k5 * y[4], k3 * y[1] + k1 * y[2] - (k4 + k2) * y[3],
               -(k5 + k1) * y[4] + k2 * (y[5] + y[6]), -r + k8 * y[3] + k1 * y[4] - k2 * y[5] + k8 * y[6],
               r - (k2 + k8 + k9) * y[6], -r + (k2 + k8 + k9) * y[6]]
        return sciode.Model(states=list(y), rhs=rhs, params=[k1, k2, k3, k4, k5, k6, k7, k8, k9, oks],
                            name="hires")
    return Problem("hires", build, np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057]), (0.0, t1),
                   np.array([1.71, 0.43, 8.32, 0.69, 0.035, 8.32, 280.0, 0.69, 0.69, 0.0007]),
                   _hires_rhs, jac=_hires_jac, atol_scale=1e-4)


def _vdp_rhs(t, y, p, B):
    return B.stack([y[1], p[0] * (1 - y[0] ** 2) * y[1] - y[0]])


def _vdp_jac(t, y, p):
    mu = p[0]
    return np.array([[0.0, 1.0], [-2 * mu * y[0] * y[1] - 1.0, mu * (1 - y[0] ** 2)]])


def van_der_pol(mu: float = 1000.0, t1: float = 3000.0) -> Problem:
    """MATLAB's vdp1000: y1' = y2, y2' = mu (1 - y1^2) y2 - y1."""
    def build():
        import sciode
        y1, y2, m = _sym("y1 y2 mu")
        return sciode.Model(states=[y1, y2], rhs=[y2, m * (1 - y1**2) * y2 - y1], params=[m], name="van_der_pol")
    return Problem("van_der_pol", build, np.array([2.0, 0.0]), (0.0, t1), np.array([mu]),
                   _vdp_rhs, jac=_vdp_jac, atol_scale=1.0)


def brusselator(m: int = 64, t1: float = 10.0) -> Problem:
    """Hairer--Wanner BRUS (Solving ODEs II, IV.1): 2m states on x_i = i/(m+1),
    u(0)=u(1)=1, v(0)=v(1)=3, u_i(0)=1+sin(2 pi x_i), v_i(0)=3, alpha=1/50,
    diffusion coefficient alpha (m+1)^2.  Parameters (A, B, alpha) = (1, 3, 1/50)."""
    c2 = float((m + 1) ** 2)

    def build():
        import sympy as sp
        import sciode
        u, v = sp.symbols(f"u0:{m}"), sp.symbols(f"v0:{m}")
        A, B, alpha = sp.symbols("A B alpha")
        c = alpha * (m + 1) ** 2

        def nb(s, i, bval):
            left = s[i - 1] if i > 0 else bval
            right = s[i + 1] if i < m - 1 else bval
            return left - 2 * s[i] + right

        ru = [A + u[i] ** 2 * v[i] - (B + 1) * u[i] + c * nb(u, i, 1) for i in range(m)]
        rv = [B * u[i] - u[i] ** 2 * v[i] + c * nb(v, i, 3) for i in range(m)]
        return sciode.Model(states=[*u, *v], rhs=ru + rv, params=[A, B, alpha], name=f"brusselator_{m}")

    def rhs(t, y, p, Bk):
        u, v = y[:m], y[m:]
        A, B, alpha = p[0], p[1], p[2]
        c = alpha * c2
        up, vp = Bk.pad(u, 1.0, 1.0), Bk.pad(v, 3.0, 3.0)
        u2v = u * u * v
        du = A + u2v - (B + 1) * u + c * (up[:-2] - 2 * u + up[2:])
        dv = B * u - u2v + c * (vp[:-2] - 2 * v + vp[2:])
        return Bk.cat((du, dv))

    def jac(t, y, p):
        import scipy.sparse as sps
        u, v = y[:m], y[m:]
        A, B, alpha = p
        c = alpha * c2
        off = np.full(m - 1, c)
        Juu = sps.diags([off, 2 * u * v - (B + 1) - 2 * c, off], [-1, 0, 1])
        Jvv = sps.diags([off, -u * u - 2 * c, off], [-1, 0, 1])
        return sps.bmat([[Juu, sps.diags(u * u)], [sps.diags(B - 2 * u * v), Jvv]], format="csc")

    x = np.arange(1, m + 1) / (m + 1)
    y0 = np.concatenate((1 + np.sin(2 * np.pi * x), np.full(m, 3.0)))
    return Problem(f"brusselator_2x{m}", build, y0, (0.0, t1), np.array([1.0, 3.0, 1.0 / 50.0]),
                   rhs, jac=jac, atol_scale=1.0, extra={"m": m})


def brusselator_sparsity(m: int):
    import scipy.sparse as sps
    one = np.ones(m)
    tri = sps.diags([one[:-1], one, one[:-1]], [-1, 0, 1])
    return sps.bmat([[tri, sps.eye(m)], [sps.eye(m), tri]], format="csc")
