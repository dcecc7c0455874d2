"""The torch path: ``sciode.torch.odeint`` (issue 12).

Problems are their rhs, closed form and gradient.  Tolerances, with reasons:
- adaptive accuracy is judged in tolerance units, RMS of ``err / (atol +
  rtol |y|)`` < 5 per trajectory (as scipy's ``compute_error``);
- the batch-vs-members comparison is exact up to summation order (1e-13):
  every trajectory runs the same arithmetic in both;
- adjoint gradients are continuous-adjoint approximations of the solution's
  derivative: solved at rtol 1e-10 they agree with closed forms to ~1e-7
  relative, which is the gate;
- ``gradcheck`` compares with central differences of a forward solve whose
  adaptive steps move with the inputs: at rtol 1e-12 the jumps are ~1e-12,
  i.e. ~1e-6 after division by gradcheck's eps 1e-6, hence atol 1e-5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

import sciode  # noqa: E402
from sciode.torch import odeint, odeint_adjoint  # noqa: E402
from sciode.torch.loop import Config, integrate  # noqa: E402
from sciode.torch.methods import METHODS, get_method  # noqa: E402
from sciode.torch.systems import FuncSystem, Layout  # noqa: E402

F64 = torch.float64
ADAPTIVE = ["bosh3", "dopri5", "tsit5", "dop853"]
FIXED_ORDER = {"euler": 1, "midpoint": 2, "rk4": 4}


def decay(k):
    """``y' = -k y`` per row; ``k`` is ``(B, 1)``."""
    return lambda t, y: -k * y


class Decay(torch.nn.Module):
    """``y' = -k y`` with ``k`` a parameter ``(B, 1)``."""

    def __init__(self, k):
        super().__init__()
        self.k = torch.nn.Parameter(torch.as_tensor(k, dtype=F64))

    def forward(self, t, y):
        return -self.k * y


def in_tolerance_units(y, exact, rtol, atol):
    """Per-trajectory RMS of the error in units of the requested tolerance."""
    return ((y - exact) / (atol + rtol * exact.abs())).square().mean(dim=(0, 2)).sqrt()


# -- methods -----------------------------------------------------------------------------


def test_every_method_reads_the_shared_tableaus():
    from sciode.methods.tableaus import EXPLICIT_TABLEAUS, MIDPOINT

    assert set(METHODS) == set(EXPLICIT_TABLEAUS)
    for name, tab in EXPLICIT_TABLEAUS.items():
        assert METHODS[name].tab is tab
    assert METHODS["midpoint"].tab is MIDPOINT


@pytest.mark.parametrize("method", sorted(FIXED_ORDER))
def test_fixed_step_convergence_order(method):
    """Rotation ``y' = [-y1, y0]`` to t = 2: global error ~ h^order."""
    f = lambda t, y: torch.stack([-y[..., 1], y[..., 0]], -1)  # noqa: E731
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    exact = torch.tensor([math.cos(2.0), math.sin(2.0)], dtype=F64)
    hs = [0.02, 0.01, 0.005] if method != "rk4" else [0.2, 0.1, 0.05]
    errs = [float((odeint(f, y0, t, method=method, options={"step_size": h})[-1] - exact).norm())
            for h in hs]
    slopes = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(slopes - FIXED_ORDER[method]) < 0.3), (errs, slopes)


def test_fixed_step_without_step_size_steps_on_the_output_grid():
    t = torch.linspace(0.0, 1.0, 11, dtype=F64)
    ys = odeint(decay(torch.ones(1, 1, dtype=F64)), torch.ones(1, 1, dtype=F64), t, method="euler")
    np.testing.assert_allclose(ys[:, 0, 0].numpy(), 0.9 ** np.arange(11), rtol=1e-14)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_matches_closed_form_per_member(method):
    k = torch.tensor([[0.5], [2.0], [12.5]], dtype=F64)
    t = torch.linspace(0.0, 2.0, 9, dtype=F64)
    rtol, atol = 1e-7, 1e-10
    ys = odeint(decay(k), torch.ones(3, 1, dtype=F64), t, method=method, rtol=rtol, atol=atol)
    exact = torch.exp(-k[None] * t[:, None, None])
    units = in_tolerance_units(ys, exact, rtol, atol)
    assert torch.all(units < 5), units
    assert ys.shape == (9, 3, 1) and ys.dtype == F64


def test_float32_stays_float32():
    k = torch.tensor([[1.0], [3.0]])
    ys = odeint(decay(k), torch.ones(2, 1), torch.tensor([0.0, 1.0]), rtol=1e-5, atol=1e-7)
    assert ys.dtype == torch.float32
    np.testing.assert_allclose(ys[-1, :, 0].numpy(), np.exp(-k[:, 0].numpy()), rtol=1e-4)


# -- per-trajectory steps ----------------------------------------------------------------


def _run(k, method="dopri5", shared=False, rtol=1e-8, atol=1e-10, t=None):
    """The loop on ``y' = -k y`` directly, for its per-trajectory step counts."""
    B = k.shape[0]
    t = torch.linspace(0.0, 1.0, 5, dtype=F64) if t is None else t
    layout = Layout(batch=(B,), shapes=((B, 1),), is_tuple=False)
    cfg = Config(method=get_method(method), rtol=torch.tensor(rtol, dtype=F64),
                 atol=torch.tensor(atol, dtype=F64), shared=shared)
    return integrate(FuncSystem(decay(k), layout, 1.0, shared), torch.ones(B, 1, dtype=F64), t, cfg)


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_batch_equals_members_solved_one_by_one(method):
    # member 2 decays 25x faster than member 0: it needs many more steps
    k = torch.tensor([[1.0], [1.7], [25.0]], dtype=F64)
    batch = _run(k, method)
    steps = batch.n_steps.tolist()
    assert steps[2] > 2 * steps[0] and len(set(steps)) == 3, steps
    for i in range(3):
        alone = _run(k[i:i + 1], method)
        assert alone.n_steps.item() == steps[i]
        np.testing.assert_allclose(batch.zs[:, i].numpy(), alone.zs[:, 0].numpy(), rtol=1e-13, atol=0)


def test_shared_step_is_one_step_for_the_batch():
    k = torch.tensor([[1.0], [25.0]], dtype=F64)
    shared, own = _run(k, shared=True), _run(k)
    # the slow member is dragged along by the fast one; the norm is one RMS over
    # the batch (torchdiffeq's), so fewer steps than the fast member takes alone
    assert shared.n_steps[0] == shared.n_steps[1] > 3 * own.n_steps[0]
    assert shared.n_steps[0] < own.n_steps[1]
    exact = torch.exp(-k[None] * torch.linspace(0, 1, 5, dtype=F64)[:, None, None])
    units = in_tolerance_units(shared.zs, exact, 1e-8, 1e-10)
    assert units.square().mean().sqrt() < 5


def test_one_host_sync_per_step(monkeypatch):
    """Count ``tolist``/``item``/``bool``/``float``/``int`` on tensors during a solve."""
    k = torch.tensor([[1.0], [25.0]], dtype=F64)
    counts = {"n": 0}
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        orig = getattr(torch.Tensor, name)

        def counted(self, *a, _orig=orig, **kw):
            counts["n"] += 1
            return _orig(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    res = _run(k)
    monkeypatch.undo()
    steps = int(res.n_steps.max())
    # one per attempt of the slowest member, plus the start (end time and span)
    assert counts["n"] <= steps + 2, (counts, steps)


# -- gradients ---------------------------------------------------------------------------


def _closed_form_grads(k, y0, t):
    """Gradients of ``L = sum(y(t)^2)`` for ``y = y0 exp(-k t)`` per row."""
    e = torch.exp(-2 * k * t)                  # (B, T)
    g_y0 = (2 * y0 * e).sum(1, keepdim=True)
    g_k = (-2 * t * y0**2 * e).sum(1, keepdim=True)
    g_t = (-2 * k * y0**2 * e).sum(0)          # dL/dt_j = 2 y f at t_j
    g_t[0] = -g_t[1:].sum()                    # autonomous: moving t0 shifts every output back
    return g_y0, g_k, g_t


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("decreasing", [False, True])
def test_gradients_match_closed_form_on_every_member(adjoint, decreasing):
    k0 = [[1.0], [2.0], [25.0]]
    f = Decay(k0)
    y0 = torch.tensor([[1.0], [2.0], [0.5]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    if decreasing:  # integrate y' = -k y backward from t = 1: y(t) = y0 exp(k (1 - t))
        t = 1.0 - t
    t.requires_grad_(True)
    ys = odeint(f, y0, t, rtol=1e-10, atol=1e-12, adjoint=adjoint)
    assert float((ys[-1] - ys[0]).detach().abs().min()) > 0.1  # the cost moves with the solve
    g_y0, g_k, g_t = torch.autograd.grad((ys**2).sum(), [y0, f.k, t])
    s = (t - t[0]).detach() * (1 if not decreasing else -1)  # elapsed time along the solve
    sign = -1.0 if decreasing else 1.0
    ex_y0, ex_k, ex_t = _closed_form_grads(sign * f.k.detach(), y0.detach(), s)
    for got, exact in ((g_y0, ex_y0), (g_k, sign * ex_k), (g_t, sign * ex_t)):
        np.testing.assert_allclose(got.numpy(), exact.numpy(), rtol=1e-7, atol=1e-9)


def test_adjoint_and_backprop_agree_on_a_nonlinear_module():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(F64)
    y0 = torch.randn(4, 2, dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    grads = []
    for adjoint in (False, True):
        ys = odeint(lambda t, y: net(y), y0, t, rtol=1e-10, atol=1e-10, adjoint=adjoint,
                    adjoint_params=tuple(net.parameters()))
        grads.append(torch.autograd.grad(ys.square().sum(), [y0, *net.parameters()]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradcheck_float64(adjoint):
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64, requires_grad=True)

    def solve(y0, A, t):
        return odeint(lambda t, y: y @ A.T, y0, t, rtol=1e-12, atol=1e-12, adjoint=adjoint,
                      adjoint_params=(A,))

    y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(solve, (y0, A, t), atol=1e-5, rtol=1e-4)


def test_odeint_adjoint_is_odeint_with_adjoint_true():
    f = Decay([[2.0]])
    y0 = torch.ones(1, 1, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    a = torch.autograd.grad(odeint_adjoint(f, y0, t)[-1].sum(), f.k)[0]
    b = torch.autograd.grad(odeint(f, y0, t, adjoint=True)[-1].sum(), f.k)[0]
    assert torch.equal(a, b)


# -- symbolic models ---------------------------------------------------------------------

LORENZ_P = [[10.0, 28.0, 8.0 / 3.0], [10.0, 20.0, 8.0 / 3.0], [12.0, 28.0, 2.0]]


def test_model_matches_cpu_solve(lorenz):
    P = torch.tensor(LORENZ_P, dtype=F64)
    t = torch.linspace(0.0, 1.0, 6, dtype=F64)
    ys = odeint(lorenz, torch.ones(3, dtype=F64), t, params=P, rtol=1e-10, atol=1e-10)
    assert ys.shape == (6, 3, 3)
    for i, p in enumerate(LORENZ_P):
        sol = sciode.solve(lorenz, [1.0, 1.0, 1.0], (0.0, 1.0), params=p, t_eval=t.numpy(),
                           rtol=1e-10, atol=1e-10)
        # same tableau, controller and first step: same steps, to summation order
        np.testing.assert_allclose(ys[:, i].numpy(), sol.y, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("adjoint", [False, True])
def test_model_gradient_matches_value_and_grad(lorenz, adjoint):
    x = lorenz.states[0]
    P = torch.tensor(LORENZ_P, dtype=F64, requires_grad=True)
    y0 = torch.ones(3, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5], dtype=F64)
    ys = odeint(lorenz, y0, t, params=P, rtol=1e-10, atol=1e-10, adjoint=adjoint)
    g_p, g_y0 = torch.autograd.grad((ys[-1, :, 0] ** 2).sum(), [P, y0])
    ref_y0 = 0.0
    for i, p in enumerate(LORENZ_P):
        ref = sciode.value_and_grad(lorenz, sciode.Cost(terminal=x**2), [1.0, 1.0, 1.0], (0.0, 0.5),
                                    params=p, rtol=1e-10, atol=1e-10)
        # two tolerance-accurate approximations (torch backsolve vs CPU interpolating
        # adjoint), observed 1.3e-7 apart on Lorenz to t = 0.5 at rtol 1e-10
        np.testing.assert_allclose(g_p[i].numpy(), ref.grad_params, rtol=1e-6)
        ref_y0 = ref_y0 + ref.grad_y0  # y0 is shared by the batch: its gradient is the sum
    np.testing.assert_allclose(g_y0.numpy(), ref_y0, rtol=1e-6)


def test_torch_kernels_are_cached_on_disk(lorenz):
    from sciode.codegen.torch_kernels import torch_model_module

    module = torch_model_module(lorenz)
    text = open(module.__file__).read()
    assert "def rhs(t, y, p, w):" in text and "def vjp_yp(t, y, p, w, v):" in text
    assert "# f[2]" in text and module.__file__.endswith(".py")
    assert torch_model_module(lorenz) is module


def test_piecewise_and_max_print_for_torch():
    x = sp.Symbol("x")
    a = sp.Symbol("a")
    model = sciode.Model(states=[x], rhs=[sp.Piecewise((-a * x, x > 0.5), (sp.Max(0, -x) - 1, True))],
                         params=[a], name="kinked")
    ys = odeint(model, torch.tensor([[1.0], [0.2]], dtype=F64), torch.tensor([0.0, 0.1], dtype=F64),
                params=torch.tensor([2.0], dtype=F64), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys[-1, :, 0].numpy(), [math.exp(-0.2), 0.1], rtol=1e-8)


# -- torchdiffeq conventions -------------------------------------------------------------


def test_tuple_state_matches_the_stacked_state():
    f = lambda t, s: (s[1], -4.0 * s[0])  # noqa: E731
    g = lambda t, y: torch.stack([y[..., 1], -4.0 * y[..., 0]], -1)  # noqa: E731
    x0, v0 = torch.tensor([[1.0], [0.5]], dtype=F64), torch.tensor([[0.0], [1.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    xs, vs = odeint(f, (x0, v0), t, rtol=1e-9, atol=1e-9)
    ys = odeint(g, torch.cat([x0, v0], -1), t, rtol=1e-9, atol=1e-9)
    assert xs.shape == (4, 2, 1) and vs.shape == (4, 2, 1)
    np.testing.assert_allclose(torch.cat([xs, vs], -1).numpy(), ys.numpy(), rtol=1e-13, atol=1e-15)


def test_per_state_tolerances_and_callable_time_shape():
    seen = []

    def f(t, y):
        seen.append(tuple(t.shape))
        return torch.cos(t) * torch.ones_like(y)

    t = torch.tensor([0.0, 1.0], dtype=F64)
    ys = odeint(f, torch.zeros(2, 3, dtype=F64), t, rtol=torch.tensor([1e-8, 1e-9, 1e-10], dtype=F64),
                atol=1e-12)
    np.testing.assert_allclose(ys[-1].numpy(), math.sin(1.0), rtol=1e-7)
    assert set(seen) == {(2, 1)}
    seen.clear()
    odeint(f, torch.zeros(2, 3, dtype=F64), t, batch_step="shared")
    assert set(seen) == {()}


def test_failure_raises_solver_error():
    with pytest.raises(sciode.SolverError, match="max_steps"):
        odeint(decay(torch.ones(1, 1, dtype=F64)), torch.ones(1, 1, dtype=F64),
               torch.tensor([0.0, 100.0], dtype=F64), options={"max_num_steps": 3})


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="rk45"), ValueError, "`method` must be one of"),
    (dict(options={"step_size": 0.1}), ValueError, "fixed-step methods"),
    (dict(options={"perturb": True}), ValueError, "unknown `options`"),
    (dict(batch_step="lockstep"), ValueError, "batch_step"),
    (dict(t=[0.0, 1.0, 0.5]), ValueError, "strictly increasing or strictly decreasing"),
    (dict(t=torch.tensor([0.0, 1.0], device="meta")), ValueError, "device"),
    (dict(params=torch.ones(3)), ValueError, "`params` is for a `sciode.Model`"),
])
def test_bad_callable_input_raises(kwargs, error, match):
    args = dict(func=decay(torch.ones(1, 1, dtype=F64)), y0=torch.ones(1, 1, dtype=F64),
                t=torch.tensor([0.0, 1.0], dtype=F64))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        odeint(**args)


@pytest.mark.parametrize("y0, params, error, match", [
    (torch.ones(2, dtype=F64), torch.ones(3, dtype=F64), sciode.ModelError, "3 states"),
    (torch.ones(3, dtype=F64), torch.ones(2, dtype=F64), sciode.ModelError, "3 params"),
    (torch.ones(3, dtype=F64), None, sciode.ModelError, "pass `params`"),
    (torch.ones(3, dtype=F64), torch.ones(3, dtype=torch.float32), ValueError, "dtype"),
    (torch.ones(2, 3, dtype=F64), torch.ones(4, 3, dtype=F64), ValueError, "do not broadcast"),
])
def test_bad_model_input_raises(lorenz, y0, params, error, match):
    with pytest.raises(error, match=match):
        odeint(lorenz, y0, torch.tensor([0.0, 1.0], dtype=F64), params=params)
