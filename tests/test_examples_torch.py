"""``examples/neural_ode_digits.py`` (issue 12, item 7) in its ``--fast`` configuration.

One run trains both models (seconds, one thread) and the tests read its
numbers: both classify the digits well above chance (10 classes: 10%), the
ODE-Net's saved-for-backward memory is the same at a tighter tolerance (more
steps) while backpropagating through the solver or adding residual blocks
costs more, and the function evaluations are counted in both passes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "neural_ode_digits.py"


def _load_example():
    """The example by path (``examples/`` is not an installed package)."""
    name = "examples_neural_ode_digits"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def example():
    return _load_example()


@pytest.fixture(scope="module")
def table(example):
    threads = torch.get_num_threads()
    out = example.main(["--fast", "--quiet"])
    assert torch.get_num_threads() == threads  # main restores what it changed
    return out


def test_both_models_beat_80_percent(table):
    for key in ("odenet", "resnet"):
        row = table[key]
        assert row["test_accuracy"] > 0.80, (key, row)
        assert row["test_error"] == pytest.approx(1.0 - row["test_accuracy"])


def test_about_the_same_number_of_parameters(table):
    p_ode, p_res = table["odenet"]["params"], table["resnet"]["params"]
    assert abs(p_ode - p_res) / p_ode < 0.1, (p_ode, p_res)


def test_nfe_counted_in_both_passes(table):
    row = table["odenet"]
    for key in ("nfe_forward", "nfe_backward"):
        assert isinstance(row[key], int) and row[key] > 0, (key, row[key])
    # dopri5: the first evaluation, the starting-step probe, 6 per step (FSAL)
    assert row["nfe_forward"] >= 8
    # the ResNet's blocks are called once each forward, never backward
    assert table["resnet"]["nfe_forward"] == table["config"].depth
    assert table["resnet"]["nfe_backward"] == 0


def test_odenet_memory_flat_in_steps_resnet_linear_in_depth(table):
    s = table["scaling"]
    loose, tight = s["odenet"]
    assert tight["nfe_forward"] > loose["nfe_forward"]  # the tighter rtol took more steps
    assert tight["memory_bytes"] == loose["memory_bytes"] > 0  # O(1): not a byte more
    assert table["odenet"]["memory_bytes"] == loose["memory_bytes"]
    # backpropagating through the same solves keeps every stage: O(steps)
    rk_loose, rk_tight = s["rknet"]
    assert rk_loose["nfe_forward"] == loose["nfe_forward"]
    assert rk_tight["memory_bytes"] > rk_loose["memory_bytes"] > loose["memory_bytes"]
    # the ResNet's memory grows with its depth, by the same amount per block
    (d1, r1), (d2, r2) = ((r["depth"], r["memory_bytes"]) for r in s["resnet"])
    assert d2 == 2 * d1 and r2 > r1
    assert r1 == table["resnet"]["memory_bytes"]
    per_block = (r2 - r1) / (d2 - d1)
    assert per_block > 0 and r1 - d1 * per_block > 0  # a fixed part plus L blocks


def test_odefunc_takes_per_trajectory_and_shared_times(example):
    """``t`` is ``(B, 1)`` per trajectory, 0-d with ``batch_step="shared"``: same solution."""
    from sciode.torch import odeint

    torch.manual_seed(0)
    f = example.ODEFunc(width=3, hidden=5).double()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    per = odeint(f, y0, t, rtol=1e-10, atol=1e-12)
    shared = odeint(f, y0, t, rtol=1e-10, atol=1e-12, batch_step="shared")
    torch.testing.assert_close(per, shared, rtol=1e-8, atol=1e-10)
    # a single trajectory (no batch) gets a 0-d t as well
    torch.testing.assert_close(odeint(f, y0[0], t, rtol=1e-10, atol=1e-12)[-1], per[-1, 0],
                               rtol=1e-8, atol=1e-10)
