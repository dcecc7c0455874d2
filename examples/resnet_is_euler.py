"""A ResNet is forward Euler, and backpropagation is its discrete adjoint.

A residual network with weights shared by its blocks,

    x_{k+1} = x_k + h tanh(W x_k + b),     k = 0, ..., K-1,   h = T / K,

is, step for step, the forward Euler scheme for the ODE

    x' = f(x; W, b) = tanh(W x + b),       x(0) = x_0,   t in [0, T]

(E 2017; Haber & Ruthotto 2017; Chen et al. 2018).  The weights are the
ODE's parameters ``p = (W, b)``: here a ``sciode.Model`` written in SymPy with
``W`` (row-major) and ``b`` as its parameters.  With a loss on the output,
``J = Phi(x_K) = 1/2 |x_K - y*|^2``, backpropagation through the blocks is

    a_K = dPhi/dx(x_K),
    g_k = diag(1 - tanh^2(W x_k + b)) a_{k+1},
    a_k = a_{k+1} + h W^T g_k,                       (= (d x_{k+1}/d x_k)^T a_{k+1})
    dJ/dW = sum_k h g_k x_k^T,    dJ/db = sum_k h g_k,    dJ/dx_0 = a_0,

which is the discrete adjoint of forward Euler: the costate recursion
``a_k = a_{k+1} + h (df/dx)^T a_{k+1}`` discretizes ``lambda' = -(df/dx)^T lambda``
backward, and ``dJ/dp = sum_k h (df/dp)^T a_{k+1}`` is the quadrature of
``int lambda^T df/dp dt``.  A block with two stages,

    x_{k+1} = x_k + h f(x_k + (h/2) f(x_k))

(two residual branches, one inside the other, in the spirit of FractalNet's
nested paths; Larsson et al. 2017), is the explicit midpoint rule (RK2); any
Runge-Kutta tableau is such a block (Lu et al. 2018).

Claims, each checked in ``main``'s return value (and by
``tests/test_examples_theory.py``):

1. The ResNet's forward pass (a plain NumPy loop) equals
   ``sciode.solve(model, x0, (0, T), p, method="euler", dt=h)`` at every
   layer to machine precision (bit for bit here: h is a power of two), and the
   midpoint block equals ``method="midpoint"`` (to one rounding, 1e-16).
2. Backpropagation (the hand-written reverse loop above, and torch autograd
   through the same loops) equals
   ``sciode.value_and_grad(..., sensitivity="discrete", method=...)`` in
   ``dJ/dW``, ``dJ/db`` and ``dJ/dx_0`` to ~1e-13 relative.
3. As ``h -> 0`` the backpropagated gradient tends to the continuous adjoint
   gradient (the Neural ODE's, ``sensitivity="adjoint"`` at tight tolerance)
   at the scheme's order: error ~ h for Euler blocks, ~ h^2 for midpoint blocks.

Blocks with their own weights (an untied ResNet) are the ODE with
time-dependent weights ``W(t)``, ``b(t)``: ``sciode.Controls`` sampled at the
layer times reproduce that forward pass too (``untied_check``; Euler reads
the controls only at ``t_k``), and the discrete mode's ``grad_controls`` row
``k`` is then block ``k``'s backpropagated weight gradient (the last row,
read by no step, is zero).  ``untied_check`` compares both.

Run ``python -m examples.resnet_is_euler [--fast] [--plot convergence.png]``.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import sympy as sp

import sciode

N_STATES = 3
T = 1.0
TARGET = np.array([0.5, -0.2, 0.1])
SEED = 0


def model(n: int = N_STATES) -> sciode.Model:
    """``x' = tanh(W x + b)`` with parameters ``W11, W12, ..., Wnn, b1, ..., bn``."""
    xs = sp.symbols(f"x1:{n + 1}")
    W = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"W{i + 1}{j + 1}"))
    b = sp.Matrix(sp.symbols(f"b1:{n + 1}"))
    z = W * sp.Matrix(xs) + b
    return sciode.Model(states=list(xs), rhs=[sp.tanh(e) for e in z], params=[*W, *b],
                        name="resnet_field")


def loss(m: sciode.Model, target=TARGET) -> sciode.Cost:
    """``Phi(x) = 1/2 |x - target|^2`` on the network's output ``x(T)``."""
    return sciode.Cost(terminal=sum((x - y) ** 2 for x, y in zip(m.states, target)) / 2)


def weights(n: int = N_STATES, seed: int = SEED):
    """Random ``W`` (n, n), ``b`` (n,), input ``x0`` (n,); ``p`` packs ``W`` row-major, then ``b``."""
    rng = np.random.default_rng(seed)
    W, b, x0 = rng.standard_normal((n, n)), rng.standard_normal(n), rng.standard_normal(n)
    return W, b, x0, np.concatenate([W.ravel(), b])


# -- the network, written as a network ------------------------------------------------------


def resnet_forward(W, b, x0, depth: int, h: float, block: str = "euler") -> np.ndarray:
    """Activations ``x_0, ..., x_K`` (depth + 1, n) of ``depth`` residual blocks."""
    def f(x):
        return np.tanh(W @ x + b)

    xs = [np.asarray(x0, dtype=float)]
    for _ in range(depth):
        x = xs[-1]
        if block == "euler":
            xs.append(x + h * f(x))
        elif block == "midpoint":
            xs.append(x + h * f(x + 0.5 * h * f(x)))
        else:
            raise ValueError(f"`block` must be 'euler' or 'midpoint', got {block!r}")
    return np.array(xs)


def resnet_backward(W, b, xs, h: float, dJdx_out):
    """Backpropagation through Euler blocks (the recursion in the module docstring).

    Returns ``(dJ/dW (n, n), dJ/db (n,), dJ/dx_0 (n,))``.
    """
    a = np.asarray(dJdx_out, dtype=float)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    for x in xs[-2::-1]:                        # x_{K-1}, ..., x_0
        g = (1.0 - np.tanh(W @ x + b) ** 2) * a   # diag(tanh') a_{k+1}
        dW += h * np.outer(g, x)
        db += h * g
        a = a + h * W.T @ g
    return dW, db, a


def torch_backprop(W, b, x0, depth: int, h: float, block: str, target=TARGET):
    """``J`` and ``dJ/dp``, ``dJ/dx0`` by torch autograd through the same loop (float64)."""
    import torch

    Wt, bt, xt = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (W, b, x0))

    def f(x):
        return torch.tanh(Wt @ x + bt)

    x = xt
    for _ in range(depth):
        x = x + h * f(x) if block == "euler" else x + h * f(x + 0.5 * h * f(x))
    J = 0.5 * ((x - torch.as_tensor(target)) ** 2).sum()
    J.backward()
    grad_p = np.concatenate([Wt.grad.numpy().ravel(), bt.grad.numpy()])
    return float(J.detach()), grad_p, xt.grad.numpy()


# -- the checks ------------------------------------------------------------------------------


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def forward_check(m, W, b, x0, p, depth: int) -> dict:
    """Max |ResNet activation - sciode.solve| over all layers, per block type."""
    h = T / depth
    out = {}
    for block in ("euler", "midpoint"):
        sol = sciode.solve(m, x0, (0.0, T), p, method=block, dt=h,
                           t_eval=np.linspace(0.0, T, depth + 1))
        xs = resnet_forward(W, b, x0, depth, h, block)
        out[block] = {"max_abs_diff": float(np.max(np.abs(sol.y - xs))),
                      "steps": sol.stats["nsteps"]}
    return out


def gradient_check(m, W, b, x0, p, depth: int) -> dict:
    """Relative errors of backpropagation against ``sensitivity="discrete"``."""
    h, cost = T / depth, loss(m)
    out = {}
    for block in ("euler", "midpoint"):
        res = sciode.value_and_grad(m, cost, x0, (0.0, T), p, sensitivity="discrete",
                                    method=block, dt=h)
        J, gp, gx = torch_backprop(W, b, x0, depth, h, block)
        row = {"value": _rel(res.value, J), "torch_params": _rel(res.grad_params, gp),
               "torch_y0": _rel(res.grad_y0, gx), "grad_norm": float(np.linalg.norm(gp))}
        if block == "euler":
            xs = resnet_forward(W, b, x0, depth, h)
            dW, db, a0 = resnet_backward(W, b, xs, h, xs[-1] - TARGET)
            row["hand_params"] = _rel(res.grad_params, np.concatenate([dW.ravel(), db]))
            row["hand_y0"] = _rel(res.grad_y0, a0)
        out[block] = row
    return out


def convergence(m, x0, p, depths) -> dict:
    """``|dJ/dp (discrete, depth K) - dJ/dp (continuous adjoint)|`` per block, and the
    observed orders ``log2(err_K / err_2K)``."""
    cost = loss(m)
    ref = sciode.value_and_grad(m, cost, x0, (0.0, T), p, sensitivity="adjoint",
                                method="dop853", rtol=1e-12, atol=1e-12).grad_params
    out = {"depths": list(depths), "reference_norm": float(np.linalg.norm(ref))}
    for block in ("euler", "midpoint"):
        errs = [float(np.linalg.norm(
            sciode.value_and_grad(m, cost, x0, (0.0, T), p, sensitivity="discrete",
                                  method=block, dt=T / k).grad_params - ref)) for k in depths]
        out[block] = {"errors": errs, "orders": [float(np.log2(e0 / e1))
                                                 for e0, e1 in itertools.pairwise(errs)]}
    return out


def untied_check(n: int = N_STATES, depth: int = 8, seed: int = SEED) -> dict:
    """Blocks with their own weights: ``W(t), b(t)`` as controls at the layer times.

    Returns the max |difference| of the activations (NumPy loop vs
    ``solve(method="euler", controls=...)``) and, if ``sensitivity="discrete"``
    gives a control gradient, its relative error against backpropagation
    (None where it gives none).
    """
    xs_sym = sp.symbols(f"x1:{n + 1}")
    Wsym = sp.Matrix(n, n, lambda i, j: sp.Symbol(f"W{i + 1}{j + 1}"))
    bsym = sp.Matrix(sp.symbols(f"b1:{n + 1}"))
    m = sciode.Model(states=list(xs_sym), rhs=[sp.tanh(e) for e in Wsym * sp.Matrix(xs_sym) + bsym],
                     controls=[*Wsym, *bsym], name="resnet_field_untied")
    rng = np.random.default_rng(seed)
    h = T / depth
    Ws, bs, x0 = (rng.standard_normal((depth + 1, n, n)), rng.standard_normal((depth + 1, n)),
                  rng.standard_normal(n))
    ctl = sciode.Controls(h * np.arange(depth + 1),
                          np.concatenate([Ws.reshape(depth + 1, -1), bs], axis=1))
    sol = sciode.solve(m, x0, (0.0, T), method="euler", dt=h, controls=ctl,
                       t_eval=ctl.t)
    xs = [x0]
    for k in range(depth):
        xs.append(xs[-1] + h * np.tanh(Ws[k] @ xs[-1] + bs[k]))
    out = {"max_abs_diff": float(np.max(np.abs(sol.y - np.array(xs)))), "grad_rel_err": None}
    res = sciode.value_and_grad(m, loss(m), x0, (0.0, T), sensitivity="discrete", method="euler",
                                dt=h, controls=ctl)
    if res.grad_controls is not None:
        a, ref = xs[-1] - TARGET, np.zeros((depth + 1, n * n + n))
        for k in reversed(range(depth)):
            g = (1.0 - np.tanh(Ws[k] @ xs[k] + bs[k]) ** 2) * a
            ref[k] = np.concatenate([h * np.outer(g, xs[k]).ravel(), h * g])
            a = a + h * Ws[k].T @ g
        out["grad_rel_err"] = _rel(res.grad_controls, ref)
    return out


def plot_convergence(conv: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = T / np.array(conv["depths"])
    fig, ax = plt.subplots(figsize=(5, 4))
    for block, order in (("euler", 1), ("midpoint", 2)):
        e = np.array(conv[block]["errors"])
        ax.loglog(h, e, "o-", label=f"{block} blocks")
        ax.loglog(h, e[0] * (h / h[0]) ** order, "k:", lw=0.8)
    ax.set_xlabel("h = T / depth")
    ax.set_ylabel("|backprop gradient - continuous adjoint|")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main(fast: bool = False, plot: str | None = None) -> dict:
    """Run the three checks; return ``{"forward", "gradient", "convergence"}`` (see the
    module docstring).  ``fast``: fewer depths in the convergence study."""
    m = model()
    W, b, x0, p = weights()
    depth = 8  # h = 1/8: every t_k = k h is exact in binary
    fwd = forward_check(m, W, b, x0, p, depth)
    grad = gradient_check(m, W, b, x0, p, depth)
    conv = convergence(m, x0, p, (8, 16, 32) if fast else (8, 16, 32, 64, 128))
    untied = untied_check(depth=depth)

    print(f"ResNet of {depth} blocks, x' = tanh(W x + b) in R^{N_STATES}, h = {T / depth}")
    for block, r in fwd.items():
        print(f"  forward, {block:8s} blocks vs solve(method={block!r}): "
              f"max |diff| = {r['max_abs_diff']:.1e} ({r['steps']} steps)")
    for block, r in grad.items():
        parts = ", ".join(f"{k} {v:.1e}" for k, v in r.items() if k != "grad_norm")
        print(f"  backprop, {block:8s} vs sensitivity='discrete' (rel.): {parts}")
    print("  |discrete gradient - continuous adjoint| against depth:")
    for block in ("euler", "midpoint"):
        errs = "  ".join(f"{e:.2e}" for e in conv[block]["errors"])
        orders = "  ".join(f"{o:.2f}" for o in conv[block]["orders"])
        print(f"    {block:8s} depths {conv['depths']}: {errs}   observed order {orders}")
    g = untied["grad_rel_err"]
    print(f"  untied blocks (weights as controls): forward max |diff| = "
          f"{untied['max_abs_diff']:.1e}; discrete control gradient: "
          + ("not available (grad_controls is None)" if g is None else f"rel. err {g:.1e}"))
    if plot:
        plot_convergence(conv, plot)
    return {"forward": fwd, "gradient": grad, "convergence": conv, "untied": untied}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer depths in the convergence study")
    parser.add_argument("--plot", help="save the convergence plot to this image file")
    args = parser.parse_args()
    main(args.fast, args.plot)
