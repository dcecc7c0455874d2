"""The torch path against torchdiffeq, gradcheck, double backward, dtypes and
devices, host synchronisations, memory, and a cost's pieces on torch (issue 12).

``tests/test_torch.py`` checks the solver against closed forms and the CPU
path; this file checks that ``sciode.torch`` is a drop-in for torchdiffeq and
that its derivatives are right to the precision finite differences allow.
Tolerances, with reasons:

- sciode and torchdiffeq are two independent adaptive solutions of the same
  problem (different step sequences, error norms and tuple norms), each with
  a global error of a few tolerance units.  Solved at rtol = atol = 1e-10 on
  problems of unit scale over a unit horizon the two were observed within
  3e-9 of each other (outputs) and 2e-8 relative (gradients, the largest
  for ``t``), so they are compared at 1e-7: 1000 tolerance units, far below
  any real discrepancy (a wrong sign or a missing term is O(1)).
- Fixed-step methods with the same grid do the same arithmetic as
  torchdiffeq's euler and midpoint (agreement to rounding, 1e-12); its
  ``rk4`` is the 3/8 rule, ours the classical one: both are 4th order, so they
  differ by O(h^4) = 1e-8 at h = 0.01 (observed: 1.4e-10 on the outputs,
  3e-10 relative on the gradients; compared at 1e-7).
- ``gradcheck`` compares with central differences (eps 1e-6) of the forward
  solve.  Adaptive step sequences move with the inputs, so the solve is
  smooth only up to its tolerance: at rtol 1e-12 a step change moves the
  output ~1e-12, i.e. ~1e-6 after division by 2 eps, hence atol 1e-5.  The
  adjoint gradient is the continuous adjoint, which differs from the
  derivative of the discrete solution by the adjoint's own truncation error
  (~1e-10 at rtol 1e-12): inside the same 1e-5, while a wrong entry of 0.1%
  (5e-4 on these gradients) is caught.  Fixed-step rk4 is a smooth map of its
  inputs away from the grid points (where the number of steps changes), so
  its derivatives are checked at gradcheck's default tolerances.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

torch = pytest.importorskip("torch")

import sciode
from sciode.torch import cost_functions, odeint, odeint_adjoint
from sciode.torch.memory import saved_tensor_bytes

F64 = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}
#: Two tolerance-1e-10 solutions agree to this (see the module docstring).
AGREE = {"rtol": 1e-7, "atol": 1e-7}


class Field(torch.nn.Module):
    """A time-dependent MLP field ``net(y) + w sin(t) y``: nonlinear in ``y``, ``t`` and its parameters."""

    def __init__(self, n=2, width=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(n, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, n)).to(F64)
        for p in self.net.parameters():
            with torch.no_grad():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
        self.w = torch.nn.Parameter(torch.tensor(0.7, dtype=F64))

    def forward(self, t, y):
        return self.net(y) + self.w * torch.sin(t) * y


def _solve_and_grad(solver, func, y0, t, params, **kw):
    """Outputs and gradients of a loss that weights every output, w.r.t. ``y0``, ``t``, ``params``."""
    y0 = tuple(c.detach().clone().requires_grad_(True) for c in y0) if isinstance(y0, tuple) \
        else y0.detach().clone().requires_grad_(True)
    t = t.detach().clone().requires_grad_(True)
    ys = solver(func, y0, t, **kw)
    parts = ys if isinstance(ys, tuple) else (ys,)
    w = torch.linspace(0.5, 1.5, parts[0].shape[0], dtype=F64)
    loss = sum((c.square().sum(dim=tuple(range(1, c.ndim))) * w).sum() + c[-1].sum() for c in parts)
    leaves = [*(y0 if isinstance(y0, tuple) else (y0,)), t, *params]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [c.detach() for c in parts], list(grads)


def _assert_same(a, b, **tol):
    outs_a, grads_a = a
    outs_b, grads_b = b
    for x, y in zip(outs_a, outs_b):
        np.testing.assert_allclose(x.numpy(), y.numpy(), **tol)
    assert len(grads_a) == len(grads_b)
    for x, y in zip(grads_a, grads_b):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x.numpy(), y.numpy(), **tol)


@pytest.fixture(scope="module")
def tdq():
    return pytest.importorskip("torchdiffeq")


# -- torchdiffeq compatibility -----------------------------------------------------------


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("decreasing", [False, True])
def test_module_matches_torchdiffeq(tdq, adjoint, decreasing):
    """Same ``nn.Module``, same inputs: outputs and gradients w.r.t. ``y0``, ``t`` and
    every parameter, by backprop (``odeint``) and by the adjoint (``odeint_adjoint``)."""
    f = Field()
    y0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    t = torch.linspace(0.0, 1.5, 4, dtype=F64)
    if decreasing:
        t = t.flip(0)
    ours = odeint_adjoint if adjoint else odeint
    theirs = tdq.odeint_adjoint if adjoint else tdq.odeint
    params = list(f.parameters())
    a = _solve_and_grad(ours, f, y0, t, params, **TIGHT)
    b = _solve_and_grad(theirs, f, y0, t, params, **TIGHT)
    assert all(g is not None for g in a[1])
    _assert_same(a, b, **AGREE)


def test_adjoint_params_subset_and_closures_match_torchdiffeq(tdq):
    """``adjoint_params=`` names what the adjoint differentiates: a closure tensor of a
    plain function, and a subset of a module's parameters (the rest get no gradient)."""
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64, requires_grad=True)
    f = lambda t, y: torch.tanh(y) @ A.T
    y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    a = _solve_and_grad(odeint_adjoint, f, y0, t, [A], adjoint_params=(A,), **TIGHT)
    b = _solve_and_grad(tdq.odeint_adjoint, f, y0, t, [A], adjoint_params=(A,), **TIGHT)
    _assert_same(a, b, **AGREE)
    m = Field()
    params = list(m.parameters())
    a = _solve_and_grad(odeint_adjoint, m, y0, t, params, adjoint_params=(m.w,), **TIGHT)
    b = _solve_and_grad(tdq.odeint_adjoint, m, y0, t, params, adjoint_params=(m.w,), **TIGHT)
    assert a[1][2] is not None and all(g is None for g in a[1][3:])  # parameters() yields w first
    _assert_same(a, b, **AGREE)


@pytest.mark.parametrize("adjoint", [False, True])
def test_tuple_state_matches_torchdiffeq(tdq, adjoint):
    """A tuple state ``(x, v)`` of a damped pendulum with a parameter; outputs are tuples."""
    class Pendulum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

        def forward(self, t, s):
            x, v = s
            return v, -torch.sin(x) - self.c * v

    f = Pendulum()
    y0 = (torch.tensor([[1.0], [0.3]], dtype=F64), torch.tensor([[0.0], [1.0]], dtype=F64))
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    solvers = (odeint_adjoint, tdq.odeint_adjoint) if adjoint else (odeint, tdq.odeint)
    a, b = (_solve_and_grad(s, f, y0, t, [f.c], **TIGHT) for s in solvers)
    assert len(a[0]) == 2 and a[0][0].shape == (5, 2, 1)
    _assert_same(a, b, **AGREE)


def test_per_state_tolerances_match_torchdiffeq(tdq):
    """``rtol``/``atol`` as tensors over the states (one loose state): same solution."""
    f = Field(n=3, seed=2)
    y0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    rtol = torch.tensor([1e-10, 1e-11, 1e-4], dtype=F64)
    atol = torch.tensor([1e-10, 1e-11, 1e-4], dtype=F64)
    a = _solve_and_grad(odeint, f, y0, t, list(f.parameters()), rtol=rtol, atol=atol)
    b = _solve_and_grad(tdq.odeint, f, y0, t, list(f.parameters()), rtol=rtol, atol=atol)
    # the loose third state's error couples into the others: compare at its tolerance
    _assert_same(a, b, rtol=1e-3, atol=1e-3)
    # and the tight states are solved tighter than with the loose tolerance for all
    loose = odeint(f, y0, t, rtol=1e-4, atol=1e-4).detach()
    exact = odeint(f, y0, t, rtol=1e-12, atol=1e-12).detach()
    err_per_state = (a[0][0] - exact).abs().amax(dim=(0, 1))
    err_loose = (loose - exact).abs().amax(dim=(0, 1))
    assert torch.all(err_per_state[:2] < 1e-2 * err_loose[:2]), (err_per_state, err_loose)
    # torchdiffeq's odeint_adjoint rejects tensor tolerances (its augmented state is a
    # tuple); ours takes them for the state and the costate alike
    c = _solve_and_grad(odeint_adjoint, f, y0, t, list(f.parameters()), rtol=rtol, atol=atol)
    _assert_same(c, a, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method, order, tol", [("euler", 1, 1e-12), ("midpoint", 2, 1e-12),
                                                ("rk4", 4, 1e-7)])
def test_fixed_step_methods_match_torchdiffeq(tdq, method, order, tol):
    """``options={"step_size": h}`` on an output grid that is a multiple of ``h``: outputs
    and gradients w.r.t. ``y0`` and the parameters as torchdiffeq's.  Gradients w.r.t.
    ``t`` are not compared with torchdiffeq's: its fixed-grid solvers return grid values
    at output times on the grid through a linear interpolant whose derivative in ``t_j``
    it takes as 0, while ours differentiate the method's own dense output, so they
    converge to the exact ``dL/dt_j`` (checked against a tight adaptive solve) at the
    method's order."""
    f = Field()
    y0 = torch.tensor([[1.0, -0.5], [0.3, 0.8]], dtype=F64)
    t = torch.linspace(0.0, 0.5, 6, dtype=F64)
    h = 0.01
    params = list(f.parameters())
    kw = {"method": method, "options": {"step_size": h}}
    a = _solve_and_grad(odeint, f, y0, t, params, **kw)
    b = _solve_and_grad(tdq.odeint, f, y0, t, params, **kw)
    del a[1][1], b[1][1]
    _assert_same(a, b, rtol=tol, atol=tol)
    g_t = _solve_and_grad(odeint, f, y0, t, params, **kw)[1][1]
    exact = _solve_and_grad(odeint, f, y0, t, params, rtol=1e-12, atol=1e-12)[1][1]
    assert float((g_t - exact).abs().max()) < 10 * h**order * float(exact.abs().max())


def test_times_in_another_float_dtype_are_cast_like_torchdiffeq(tdq):
    """float32 ``t`` with a float64 state: ``t`` is cast to the state's dtype (torchdiffeq's
    rule, kept for drop-in use; ``params`` of a Model must match instead)."""
    f = Field()
    y0 = torch.tensor([[1.0, -0.5]], dtype=F64)
    t = torch.linspace(0.0, 1.0, 3)
    ys = odeint(f, y0, t, **TIGHT)
    assert ys.dtype == F64
    np.testing.assert_allclose(ys.detach().numpy(), tdq.odeint(f, y0, t, **TIGHT).detach().numpy(),
                               **AGREE)


# -- gradcheck ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damped():
    """``x'' = -k x - c x' + sin(t)``: forced, so the gradient w.r.t. ``t`` is not only a shift."""
    x, v, k, c, t = sp.symbols("x v k c t")
    return sciode.Model(states=[x, v], rhs=[v, -k * x - c * v + sp.sin(t)], params=[k, c], t=t,
                        name="forced_oscillator")


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradcheck_model_y0_params_t(damped, adjoint):
    """A Model with per-member params: ``y0`` shared, ``params (2, 2)``, ``t``."""
    def solve(y0, params, t):
        return odeint(damped, y0, t, params=params, rtol=1e-12, atol=1e-12, adjoint=adjoint)

    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    params = torch.tensor([[2.0, 0.3], [0.7, 0.1]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.1, 0.6, 1.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(solve, (y0, params, t), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradcheck_module_parameters(adjoint):
    """The parameters of an ``nn.Module`` themselves are gradcheck's inputs (it perturbs
    them in place, so the module sees each perturbation)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).to(F64)
    f = lambda t, y: net(y)
    y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=F64)
    t = torch.tensor([0.0, 0.5], dtype=F64)
    params = tuple(net.parameters())

    def solve(*_):
        return odeint(f, y0, t, rtol=1e-12, atol=1e-12, adjoint=adjoint, adjoint_params=params)

    assert torch.autograd.gradcheck(solve, params, atol=1e-5, rtol=1e-4)


def test_gradcheck_fixed_step_at_default_tolerances():
    """rk4 on a fixed grid is a smooth map of ``y0``, the field's parameters and ``t``:
    backpropagation gives its exact derivative, checked at gradcheck's default tolerances."""
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64, requires_grad=True)

    def solve(y0, A, t):
        return odeint(lambda t, y: torch.tanh(y) @ A.T, y0, t, method="rk4",
                      options={"step_size": 0.05})

    y0 = torch.tensor([[1.0, 0.5]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.47], dtype=F64, requires_grad=True)  # off the grid t0 + k h
    assert torch.autograd.gradcheck(solve, (y0, A, t))


# -- double backward ---------------------------------------------------------------------


def test_gradgradcheck_backprop_fixed_step():
    """Second derivatives through the solver (``adjoint=False``) w.r.t. ``y0``, a field
    parameter and ``t``: exact for a fixed-step method, so default tolerances."""
    def solve(y0, A, t):
        return odeint(lambda t, y: torch.tanh(y) @ A.T, y0, t, method="rk4",
                      options={"step_size": 0.1})

    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64, requires_grad=True)
    # off the grid t0 + k h: at a grid point the number of steps changes under
    # perturbation and dy/dt1 jumps by the method's O(h^4) derivative error
    t = torch.tensor([0.0, 0.45], dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(solve, (y0, A, t))


def test_gradgradcheck_backprop_adaptive_model(damped):
    """The same through adaptive steps of a Model (its generated torch kernels are
    differentiable twice); tolerance as for gradcheck (module docstring), one random
    projection of the Hessian (``fast_mode``) to keep it to seconds."""
    def solve(y0, params):
        return odeint(damped, y0, torch.tensor([0.0, 0.7], dtype=F64), params=params,
                      rtol=1e-12, atol=1e-12)

    y0 = torch.tensor([1.0, 0.5], dtype=F64, requires_grad=True)
    params = torch.tensor([2.0, 0.3], dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(solve, (y0, params), atol=1e-5, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("model", [False, True])
def test_double_backward_with_adjoint_raises(damped, model):
    """torchdiffeq's ``odeint_adjoint`` computes its backward under ``no_grad``: a second
    derivative fails ("does not require grad") or, added to other terms, silently misses
    the solver's part.  Ours raises a clear error in both cases, and first derivatives
    taken with ``create_graph=True`` are still right."""
    A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def solve(adjoint):
        if model:
            return odeint(damped, y0, t, params=A[0], adjoint=adjoint, **TIGHT)
        return odeint(lambda t, y: torch.tanh(y) @ A.T, y0, t, adjoint=adjoint,
                      adjoint_params=(A,), **TIGHT)

    g_y0, g_A = torch.autograd.grad(solve(True)[-1].square().sum(), (y0, A), create_graph=True)
    ref = torch.autograd.grad(solve(False)[-1].square().sum(), (y0, A))
    np.testing.assert_allclose(g_y0.detach().numpy(), ref[0].numpy(), **AGREE)
    np.testing.assert_allclose(g_A.detach().numpy(), ref[1].numpy(), **AGREE)
    for target in (y0, A):
        with pytest.raises(RuntimeError, match="double backward.*adjoint=True.*adjoint=False"):
            torch.autograd.grad(g_y0.sum(), target)
        with pytest.raises(RuntimeError, match="double backward"):  # the silent case
            torch.autograd.grad(g_y0.sum() + target.sum(), target)


# -- dtypes and devices ------------------------------------------------------------------


@pytest.mark.parametrize("adjoint", [False, True])
def test_float32_is_close_to_float64(damped, adjoint):
    """float32 runs stay float32 (outputs and gradients) and agree with float64 to the
    float32 solve's tolerance (rtol 1e-5: compared at 1e-4 relative)."""
    f64 = Field()
    f32 = Field().float()
    results = []
    for dtype, f in ((F64, f64), (torch.float32, f32)):
        y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=dtype, requires_grad=True)
        P = torch.tensor([[2.0, 0.3], [0.7, 0.1]], dtype=dtype, requires_grad=True)
        t = torch.linspace(0.0, 1.0, 3, dtype=dtype)
        ys_m = odeint(damped, y0, t, params=P, rtol=1e-5, atol=1e-7, adjoint=adjoint)
        ys_f = odeint(f, y0, t, rtol=1e-5, atol=1e-7, adjoint=adjoint)
        grads = torch.autograd.grad(ys_m.square().sum() + ys_f.square().sum(),
                                    [y0, P, *f.parameters()])
        assert ys_m.dtype == ys_f.dtype == dtype and all(g.dtype == dtype for g in grads)
        results.append([ys_m, ys_f, *grads])
    for a, b in zip(*results):
        np.testing.assert_allclose(b.detach().double().numpy(), a.detach().numpy(), rtol=1e-4,
                                   atol=1e-4 * float(a.detach().abs().max()))


def _model_call(damped, **kw):
    args = {"func": damped, "y0": torch.ones(3, 2, dtype=F64), "t": torch.tensor([0.0, 1.0], dtype=F64),
                "params": torch.ones(2, dtype=F64)}
    args.update(kw)
    return lambda: odeint(**args)


def _func_call(**kw):
    args = {"func": lambda t, y: -y, "y0": torch.ones(3, 2, dtype=F64),
                "t": torch.tensor([0.0, 1.0], dtype=F64)}
    args.update(kw)
    return lambda: odeint(**args)


@pytest.mark.parametrize("case, error, match", [
    ("params on another device", ValueError, "`params` is on meta but `y0` on cpu"),
    ("params float32, y0 float64", ValueError, "use one dtype"),
    ("params (4, 2) against y0 (3, 2)", ValueError, r"batch shapes .* \(3,\) .* \(4,\) do not broadcast"),
    ("params last dimension 3", sciode.ModelError, "last dimension must be 2"),
    ("y0 last dimension 3", sciode.ModelError, "last dimension must be 2"),
    ("tuple y0 over two devices", ValueError, "one dtype and device"),
    ("tuple y0 over two dtypes", ValueError, "one dtype and device"),
    ("y0 float16", ValueError, "float32 or float64"),
    ("y0 bfloat16", ValueError, "float32 or float64"),
    ("t integer", ValueError, "floating-point"),
    ("rtol does not broadcast", ValueError, r"`rtol` of shape \(3,\) does not broadcast"),
    ("atol tuple of the wrong length", ValueError, "one entry per component"),
    ("adjoint_params with a Model", ValueError, "`adjoint_params` is for a callable"),
])
def test_mismatched_inputs_raise_clearly(damped, case, error, match):
    calls = {
        "params on another device": _model_call(damped, params=torch.ones(2, dtype=F64, device="meta")),
        "params float32, y0 float64": _model_call(damped, params=torch.ones(2)),
        "params (4, 2) against y0 (3, 2)": _model_call(damped, params=torch.ones(4, 2, dtype=F64)),
        "params last dimension 3": _model_call(damped, params=torch.ones(3, 3, dtype=F64)),
        "y0 last dimension 3": _model_call(damped, y0=torch.ones(3, 3, dtype=F64)),
        "tuple y0 over two devices": _func_call(y0=(torch.ones(2), torch.ones(2, device="meta"))),
        "tuple y0 over two dtypes": _func_call(y0=(torch.ones(2), torch.ones(2, dtype=F64))),
        "y0 float16": _func_call(y0=torch.ones(2, dtype=torch.float16)),
        "y0 bfloat16": _func_call(y0=torch.ones(2, dtype=torch.bfloat16)),
        "t integer": _func_call(t=torch.tensor([0, 1])),
        "rtol does not broadcast": _func_call(rtol=torch.full((3,), 1e-6)),
        "atol tuple of the wrong length": _func_call(y0=(torch.ones(2), torch.ones(2)), atol=(1e-9,)),
        "adjoint_params with a Model": _model_call(damped, adjoint=True, adjoint_params=()),
    }
    with pytest.raises(error, match=match):
        calls[case]()


def _count_host_syncs(monkeypatch):
    """Count every way a tensor's value reaches the host (``item``, ``tolist``, ``bool``,
    ``float``, ``int``, ``__index__``: each a device synchronisation on CUDA) and every
    tensor built from host data (``torch.tensor`` / ``torch.as_tensor``: a host-to-device
    copy, synchronous on CUDA) -- a CUDA-free stand-in for a profiler's sync count -- and
    the loop's step attempts."""
    from sciode.torch import loop

    counts = {"sync": 0, "copy": 0, "attempts": 0}

    def counter(orig, key):
        def counted(*a, **kw):
            counts[key] += 1
            return orig(*a, **kw)
        return counted

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counter(getattr(torch.Tensor, name), "sync"))
    for name in ("tensor", "as_tensor"):
        monkeypatch.setattr(torch, name, counter(getattr(torch, name), "copy"))
    monkeypatch.setattr(loop, "_attempt", counter(loop._attempt, "attempts"))
    return counts


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("func", ["model", "module"])
def test_host_syncs_per_step_are_bounded(monkeypatch, adjoint, func):
    """Adaptive stepping needs one sync per step on the host (whether any trajectory is
    still running, fetched with how many output times the widest step covers), plus per
    solve one for ``t``'s direction, one for the end time and span and one for the failure
    check.  Nothing else: no host-to-device copy per step (the Model has a constant entry
    and a Piecewise, whose floats become tensors on the device), none in backprop's
    backward, and for the adjoint two per output interval (start and failure check)."""
    x, v, k = sp.symbols("x v k")
    model = sciode.Model(states=[x, v], rhs=[v + 1, sp.Piecewise((-k * x, x > 0), (-2 * k * x, True))],
                         params=[k], name="kinked_constant")
    y0 = torch.tensor([[1.0, 0.0], [0.5, 1.0], [2.0, -1.0]], dtype=F64, requires_grad=True)
    k_val = torch.tensor([[1.0], [25.0], [4.0]], dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    T = t.shape[0]
    odeint(model, y0, t, params=k_val)  # generate the kernels before counting
    counts = _count_host_syncs(monkeypatch)
    if func == "model":  # the torch loop (what runs on CUDA), not the compiled CPU path
        ys = odeint(model, y0, t, params=k_val, adjoint=adjoint, backend="torch")
    else:
        ys = odeint(lambda t, y: torch.stack([y[..., 1] + 1, -k_val[..., 0] * y[..., 0]], -1), y0, t,
                    adjoint=adjoint, adjoint_params=(k_val,))
    fwd = dict(counts)
    assert fwd["attempts"] > 10 and fwd["sync"] <= fwd["attempts"] + 3, fwd
    assert fwd["copy"] == 0, fwd
    for key in counts:
        counts[key] = 0
    ys.square().sum().backward()
    if adjoint:
        assert counts["sync"] <= counts["attempts"] + 2 * (T - 1), counts
    else:
        assert counts["sync"] == 0 and counts["attempts"] == 0, counts
    assert counts["copy"] == 0, counts


# -- memory ------------------------------------------------------------------------------


def test_adjoint_memory_is_flat_in_the_number_of_steps(monkeypatch):
    """Saved bytes of ``adjoint=True`` do not change as the horizon (and so the number of
    steps) grows at a fixed number of outputs; those of ``adjoint=False`` grow with it,
    by a roughly constant amount per step."""
    from sciode.torch import loop

    f = Field(width=32)
    y0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    attempts = {"n": 0}
    orig = loop._attempt

    def counted(*a, **kw):
        attempts["n"] += 1
        return orig(*a, **kw)

    monkeypatch.setattr(loop, "_attempt", counted)
    rows = []
    for t1 in (1.0, 2.0, 4.0, 8.0):
        t = torch.tensor([0.0, t1], dtype=F64)
        row = []
        for adjoint in (True, False):
            attempts["n"] = 0
            nbytes, ys = saved_tensor_bytes(lambda t=t, adjoint=adjoint: odeint(
                f, y0, t, rtol=1e-8, atol=1e-8, adjoint=adjoint))
            row += [attempts["n"], nbytes]
            ys.sum().backward()  # the graph is usable
        rows.append(row)
    steps = [r[0] for r in rows]
    adjoint_bytes = {r[1] for r in rows}
    backprop_bytes = [r[3] for r in rows]
    assert steps[-1] > 2 * steps[0], rows
    assert len(adjoint_bytes) == 1, rows
    assert adjoint_bytes.pop() < backprop_bytes[0] / 10, rows
    per_step = np.diff(backprop_bytes) / np.diff(steps)
    assert np.all(per_step > 0) and per_step.max() < 2 * per_step.min(), (rows, per_step)


# -- CUDA --------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("adjoint", [False, True])
def test_cuda_stays_on_device_and_matches_cpu(damped, adjoint):
    """A Model and a Module on CUDA: outputs and gradients stay on the device and agree
    with the CPU run to the tolerance of two tolerance-1e-10 solves."""
    results = {}
    for device in ("cpu", "cuda"):
        f = Field().to(device)
        y0 = torch.tensor([[1.0, 0.5], [0.2, -1.0]], dtype=F64, device=device, requires_grad=True)
        P = torch.tensor([[2.0, 0.3], [0.7, 0.1]], dtype=F64, device=device, requires_grad=True)
        t = torch.linspace(0.0, 1.0, 3, dtype=F64, device=device)
        ys_m = odeint(damped, y0, t, params=P, adjoint=adjoint, **TIGHT)
        ys_f = odeint(f, y0, t, adjoint=adjoint, **TIGHT)
        grads = torch.autograd.grad(ys_m.square().sum() + ys_f.square().sum(), [y0, P, *f.parameters()])
        outs = [ys_m, ys_f, *grads]
        assert all(o.device.type == device for o in outs)
        results[device] = [o.detach().cpu().numpy() for o in outs]
    for a, b in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(b, a, **AGREE)


# -- a cost's pieces on torch ------------------------------------------------------------


@pytest.fixture(scope="module")
def kinetics():
    """A model and a cost that use every printed construct: powers, roots, exp/log,
    trigonometry, Piecewise, Max/Min, Abs and a time-dependent observable."""
    a, b, t = sp.symbols("a b t")
    k1, k2, s = sp.symbols("k1 k2 s")
    model = sciode.Model(states=[a, b], rhs=[-k1 * a, k1 * a - k2 * b], params=[k1, k2, s], t=t,
                         name="ab_kinetics")
    data = sciode.LeastSquares(
        t_obs=[0.5, 1.0], y_obs=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
        observables=[a + b, s * sp.log(1 + a**2) * sp.exp(-t / 4),
                     sp.Piecewise((sp.sqrt(sp.Abs(b)), b > 0.2), (sp.Max(a, b) - sp.Min(a, 0), True))])
    states = sciode.LeastSquares(t_obs=[1.0], y_obs=[[0.3, 0.1]])  # observables default to the states
    cost = sciode.Cost(terminal=(a - 1) ** 2 + s * sp.sin(b) + k2 / (1 + b**2),
                       running=sp.cos(t) * a * b + k1 * sp.tanh(a) ** 3, data=[data, states])
    return model, cost


def test_cost_functions_match_sympy_lambdify(kinetics):
    """``L``, ``Phi`` and ``h`` printed for torch agree with SymPy's numpy ``lambdify`` of the
    same expressions on random batched inputs (broadcast batch ``(4, 5)``: ``y`` per
    element, ``p`` per row, ``t`` per column) to rounding."""
    from sciode.symbolic.derive import observables

    model, cost = kinetics
    fns = cost_functions(model, cost)
    assert fns.n_obs == 5 and cost_functions(model, cost) is fns
    g = torch.Generator().manual_seed(5)
    y = torch.rand(4, 5, 2, generator=g, dtype=F64) * 2 - 0.5
    p = torch.rand(4, 1, 3, generator=g, dtype=F64) + 0.5
    t = torch.rand(5, generator=g, dtype=F64) * 3
    args = [model.t, *model.states, *model.params]
    yn, pn, tn = y.numpy(), np.broadcast_to(p.numpy(), (4, 5, 3)), np.broadcast_to(t.numpy(), (4, 5))
    values = [tn, *np.moveaxis(yn, -1, 0), *np.moveaxis(pn, -1, 0)]

    def reference(expr):
        return np.broadcast_to(sp.lambdify(args, expr, "numpy")(*values), (4, 5))

    np.testing.assert_allclose(fns.L(t, y, p).numpy(), reference(cost.running), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(fns.Phi(t, y, p).numpy(), reference(cost.terminal), rtol=1e-13, atol=1e-14)
    h = fns.h(t, y, p)
    assert h.shape == (4, 5, 5)
    for j, expr in enumerate(observables(model, cost)):
        np.testing.assert_allclose(h[..., j].numpy(), reference(expr), rtol=1e-13, atol=1e-14)


def test_cost_functions_are_differentiable_float32_and_checked(kinetics):
    model, cost = kinetics
    fns = cost_functions(model, cost)
    y = torch.tensor([[0.3, 0.7]], dtype=F64, requires_grad=True)
    p = torch.tensor([1.0, 2.0, 0.5], dtype=F64, requires_grad=True)
    g_y, g_p = torch.autograd.grad(fns.Phi(1.0, y, p).sum(), [y, p])
    a, b = model.states
    k1, k2, s = model.params
    at = {a: 0.3, b: 0.7, k1: 1.0, k2: 2.0, s: 0.5, model.t: 1.0}
    exact = [float(sp.diff(cost.terminal, v).subs(at)) for v in (a, b, k1, k2, s)]
    np.testing.assert_allclose([*g_y[0].tolist(), *g_p.tolist()], exact, rtol=1e-13)
    y32 = y.detach().float()
    assert fns.h(torch.tensor(0.5), y32, p.detach().float()).dtype == torch.float32
    with pytest.raises(sciode.ModelError, match="last dimension must be 3"):
        fns.L(0.0, y, p[:2])
    with pytest.raises(ValueError, match="one dtype and device"):
        fns.L(0.0, y, p.float())
    with pytest.raises(ValueError, match="do not broadcast"):
        fns.L(torch.zeros(3, dtype=F64), torch.zeros(2, 2, dtype=F64), p)


def test_cost_functions_reject_controls_and_foreign_symbols(controlled, kinetics):
    model, _ = kinetics
    with pytest.raises(sciode.ModelError, match="controls"):
        cost_functions(controlled, sciode.Cost(terminal=controlled.states[0] ** 2))
    with pytest.raises(sciode.ModelError):
        cost_functions(model, sciode.Cost(terminal=sp.Symbol("z")))
