"""One stepping loop for every family (``sciode.cpu.loop``).

The explicit, Rosenbrock, ESDIRK and BDF methods step through the same loop;
a family supplies hooks (attempt, error, controller, dense output, what
follows an accepted step), never a loop of its own.  Numerical behaviour is
covered where it is claimed (convergence orders in test_tableaus/test_stiff/
test_bdf, stops in test_solve/test_controls); this module checks the
structure and the registry.
"""

from __future__ import annotations

import ast
import pathlib
from collections import namedtuple

import numba as nb
import numpy as np
import pytest

import sciode
from sciode.cpu import loop as L
from sciode.cpu import solvers
from sciode.cpu.linalg import linear_mode
from sciode.methods.explicit_tableaus import EXPLICIT_TABLEAUS
from sciode.methods.registry import METHODS

CPU = pathlib.Path(sciode.__file__).parent / "cpu"
#: What only a stepping loop calls: the attempt's guard and target, the record
#: of an accepted step, the storage's regrowth.
LOOP_CALLS = ("next_attempt", "land_step", "grow_storage")


def _calls(path: pathlib.Path, name: str) -> int:
    tree = ast.parse(path.read_text())
    return sum(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
               for n in ast.walk(tree))


def test_only_the_loop_module_steps():
    """A second stepping loop anywhere in ``sciode.cpu`` would call what the
    loop calls; only ``loop.py`` does, once each."""
    for path in sorted(CPU.glob("*.py")):
        if path.name == "loop.py":
            continue
        for name in LOOP_CALLS:
            assert _calls(path, name) == 0, f"{path.name} calls {name}: a second stepping loop"
    for name in LOOP_CALLS:
        assert _calls(CPU / "loop.py", name) == 1, name


@pytest.mark.parametrize("family", ["explicit.py", "implicit.py"])
def test_families_supply_hooks_not_loops(family):
    """The families' modules hold no ``while`` loop: stepping until ``t1`` is
    the loop's, and so are the guards, the verdict on a trial and the storage."""
    tree = ast.parse((CPU / family).read_text())
    assert not any(isinstance(n, ast.While) for n in ast.walk(tree))


def _method_tuple(name):
    spec = solvers.lookup_method(name)
    if name in EXPLICIT_TABLEAUS:
        return solvers.rk_method(spec)
    n = 4
    rows = np.r_[np.arange(n), np.arange(1, n)]
    cols = np.r_[np.arange(n), np.arange(n - 1)]
    return spec.build(linear_mode(n, rows, cols, "dense"))


@pytest.mark.parametrize("name", [m for m, info in METHODS.items() if "cpu" in info.devices])
def test_every_cpu_method_has_a_family(name):
    """Every method the registry lists for the CPU reaches the loop through a
    registered family, with its starting-step order and controller exponent
    on the method record (``order``, ``q``), not inferred from array shapes."""
    meth = _method_tuple(name)
    fam = L.family_of(nb.typeof(meth))
    assert fam is not None, name
    assert isinstance(meth.order, int) and meth.order >= 1
    assert meth.q > 0
    info = METHODS[name]
    if name in EXPLICIT_TABLEAUS:
        assert meth.order == info.order
    elif info.family == "bdf":
        assert meth.order == 1  # an order-1 start
    else:  # the starting step and the controller both follow the embedded estimate
        assert (meth.order, meth.q) == (info.error_order, info.error_order + 1)


Orphan = namedtuple("Orphan", ["P", "order"])


def test_a_method_without_a_family_is_refused_at_typing():
    """A method tuple whose class registered no family is a typing error that
    says so, not a failure deep inside the loop."""
    from sciode.cpu.bundles import make_loop
    from sciode.cpu.integrate import integrate

    @nb.njit
    def run(loop):
        return integrate((1.0,), np.ones(2), 0.0, 1.0, loop, np.zeros(0), 0).status

    with pytest.raises(nb.errors.TypingError, match="no stepping family registered"):
        run(make_loop(Orphan(np.eye(2), 1), 1e-6, np.full(2, 1e-6)))
