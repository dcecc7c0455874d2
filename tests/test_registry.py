"""``sciode.methods.registry``: one table of every method and what it supports,
consistent with what the entry points accept, and the check every entry point
asks before compiling anything."""

from __future__ import annotations

import pytest

import sciode
from sciode.cpu import solvers
from sciode.methods import registry


def test_the_table_lists_every_method_the_entry_points_accept():
    assert list(registry.METHODS) == solvers.method_names()
    from sciode.cuda import forward

    for name, info in registry.METHODS.items():
        assert solvers.lookup_method(name).name == name
        assert forward.supported(name) == ("cuda" in info.devices)
        assert set(info.modes) <= set(registry.ALL_MODES) and info.modes
    pytest.importorskip("torch")
    from sciode.torch.methods import METHODS as TORCH

    assert set(TORCH) == {n for n, i in registry.METHODS.items() if "torch" in i.devices}
    text = registry.describe()
    assert all(name in text for name in registry.METHODS)


def test_a_pair_that_does_not_exist_is_a_clear_error_before_compiling(lotka_volterra, monkeypatch):
    """Every unsupported (method, sensitivity) pair raises ``ValueError`` naming
    both and the alternatives, without preparing (so without compiling) a solve."""
    from sciode.adjoint import common

    def no_prepare(*args, **kwargs):
        raise AssertionError("prepared a solve for an unsupported pair")

    monkeypatch.setattr("sciode.adjoint.prepare", no_prepare)
    cost = sciode.Cost(terminal=lotka_volterra.states[0])
    pairs = [(m, s) for m, i in registry.METHODS.items() for s in registry.ALL_MODES
             if s not in i.modes]
    assert ("rodas4", "forward") in pairs and ("kvaerno5", "backsolve") in pairs
    for method, mode in pairs:
        with pytest.raises(ValueError, match=f"sensitivity={mode!r} does not support "
                                             f"method={method!r}"):
            sciode.value_and_grad(lotka_volterra, cost, [1.0, 1.0], (0, 1), [1, 1, 1, 1],
                                  sensitivity=mode, method=method)
    assert common.prepare is not no_prepare  # only the package-level name was replaced
    with pytest.raises(ValueError, match="`method` must be one of 'euler'"):
        registry.check("rk45")
    with pytest.raises(ValueError, match="does not run on device='cuda'"):
        registry.check("rk4", device="cuda")
