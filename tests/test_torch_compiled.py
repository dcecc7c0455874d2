"""``sciode.torch.odeint`` of a ``Model`` on CPU float64: the compiled path.

``backend="auto"`` sends a ``Model`` with ``adjoint=True`` (or with nothing
to differentiate) through the compiled per-member loops of
``sciode.solve_ensemble`` and the per-member interpolating adjoint.  Checked:
the forward values are ``sciode.solve``'s bit for bit (same loop); gradients
for ``y0``, ``params`` and ``t`` against closed forms on every member (one
25x faster than another) in both directions of time, and against central
differences (``gradcheck``); the selection rules and errors.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

import sciode
from sciode.errors import SolverError
from sciode.torch import odeint

F64 = torch.float64


@pytest.fixture(scope="module")
def decay_model():
    y, k = sp.symbols("y k")
    return sciode.Model(states=[y], rhs=[-k * y], params=[k], name="torch_compiled_decay")


def test_forward_is_solve_bit_for_bit(lorenz):
    P = torch.tensor([[10.0, 28.0, 8 / 3], [10.0, 5.0, 8 / 3], [12.0, 20.0, 2.0]], dtype=F64)
    y0 = torch.tensor([[1.0, 1.0, 1.0], [0.5, 2.0, 1.0], [1.0, 0.0, 3.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 7, dtype=F64)
    ys = odeint(lorenz, y0, t, params=P, rtol=1e-8, atol=1e-8)
    for m in range(3):
        ref = sciode.solve(lorenz, y0[m].numpy(), (0.0, 1.0), P[m].numpy(), t_eval=t.numpy(),
                           rtol=1e-8, atol=1e-8)
        np.testing.assert_array_equal(ys[:, m].numpy(), ref.y)


@pytest.mark.parametrize("decreasing", [False, True])
def test_gradients_closed_form_every_member(decay_model, decreasing):
    """``y = y0 exp(-k s)`` with ``s`` the time elapsed along the solve and
    ``L = sum_i sum_m y_m(t_i)^2``: ``dL/dy0``, ``dL/dk`` and ``dL/dt_i`` by hand;
    members' rates 1, 2 and 25 (one member 25x faster than another)."""
    k = torch.tensor([[1.0], [2.0], [25.0]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0], [2.0], [0.5]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    sign = 1.0
    if decreasing:  # y' = -k y backward from t = 1 is y0 exp(k (1 - t)): rate -k in s
        t, sign = 1.0 - t, -1.0
    t.requires_grad_(True)
    ys = odeint(decay_model, y0, t, params=k, rtol=1e-10, atol=1e-12, adjoint=True)
    g_y0, g_k, g_t = torch.autograd.grad((ys**2).sum(), [y0, k, t])
    s = (sign * (t - t[0])).detach()[:, None, None]  # (T, 1, 1) elapsed time
    kd, yd = k.detach()[None] * sign, y0.detach()[None]  # rate in s, (1, B, 1)
    e = torch.exp(-2 * kd * s)
    ex_y0 = (2 * yd * e).sum(0)
    ex_k = (-2 * s * yd**2 * e).sum(0) * sign
    dLds = (-2 * kd * yd**2 * e).sum(dim=(1, 2))  # dL/ds_i, s_i = sign (t_i - t_0)
    ex_t = sign * dLds
    ex_t[0] = -ex_t[1:].sum()  # autonomous: moving t_0 moves every later output back
    for got, exact in ((g_y0, ex_y0), (g_k, ex_k), (g_t, ex_t)):
        np.testing.assert_allclose(got.numpy(), exact.numpy(), rtol=1e-7, atol=1e-9)


def test_gradcheck_lorenz(lorenz):
    """Central differences of the forward solve (rtol 1e-12: step jumps ~1e-12,
    ~1e-6 after gradcheck's division by eps 1e-6, hence atol 1e-5)."""
    def f(y0, P, t):
        return odeint(lorenz, y0, t, params=P, rtol=1e-12, atol=1e-12, adjoint=True)

    y0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64, requires_grad=True)
    P = torch.tensor([[10.0, 28.0, 8 / 3], [10.0, 20.0, 2.0]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.1, 0.3], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (y0, P, t), eps=1e-6, atol=1e-5, rtol=1e-5)


def test_backends_agree_and_selection(lorenz):
    """The compiled adjoint and the torch loop's backsolve adjoint: two
    tolerance-accurate gradients, within 1e-6 at rtol 1e-10.  ``adjoint=False``
    with a gradient backpropagates through the torch loop (its result is
    ``backend="torch"``'s exactly)."""
    P0 = torch.tensor([[10.0, 28.0, 8 / 3], [11.0, 14.0, 2.5]], dtype=F64)
    t = torch.linspace(0.0, 0.5, 4, dtype=F64)
    grads = {}
    for backend, adjoint in (("auto", True), ("torch", True), ("auto", False), ("torch", False)):
        P = P0.clone().requires_grad_(True)
        ys = odeint(lorenz, torch.ones(3, dtype=F64), t, params=P, rtol=1e-10, atol=1e-10,
                    adjoint=adjoint, backend=backend)
        grads[backend, adjoint] = torch.autograd.grad((ys[-1] ** 2).sum(), P)[0].numpy()
    np.testing.assert_allclose(grads["auto", True], grads["torch", True], rtol=1e-6)
    np.testing.assert_array_equal(grads["auto", False], grads["torch", False])
    np.testing.assert_allclose(grads["auto", True], grads["auto", False], rtol=1e-6)


def test_errors_and_failures(lorenz, decay_model):
    y0 = torch.ones(3, dtype=torch.float32)
    P = torch.tensor([10.0, 28.0, 8 / 3], dtype=torch.float32)
    t = torch.tensor([0.0, 1.0], dtype=torch.float32)
    with pytest.raises(ValueError, match="backend='compiled' needs CPU float64"):
        odeint(lorenz, y0, t, params=P, backend="compiled")
    with pytest.raises(ValueError, match="`backend`"):
        odeint(lorenz, y0.double(), t.double(), params=P.double(), backend="numba")
    # y' = -k y backward in time with k = 800 grows like exp(800): non-finite, then an error
    k = torch.tensor([[1.0], [800.0]], dtype=F64)
    with pytest.raises(SolverError, match="trajectory 1 .* of 2"):
        odeint(decay_model, torch.ones(2, 1, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64),
               params=k, adjoint=True, backend="compiled")
