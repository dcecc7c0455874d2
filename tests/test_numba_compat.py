"""The Numba-internals boundary (``sciode._numba_compat``).

The fast path uses private Numba layouts; a self-test at import must notice a
changed layout and select the portable path (public API only), which must
give the same numbers.  No other module may touch Numba's internals.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
import sympy as sp

import sciode
from sciode import _numba_compat as compat

PACKAGE = Path(sciode.__file__).resolve().parent
PORTABLE_REQUESTED = os.environ.get("SCIODE_PORTABLE", "").strip().lower() in ("1", "true", "yes", "on")


def test_the_pinned_numba_passes_the_self_test():
    """CI installs a Numba in the tested range: the fast path is chosen unless asked off."""
    assert compat.self_test() is None
    assert compat.PORTABLE == PORTABLE_REQUESTED
    assert (compat.REASON is None) == (not PORTABLE_REQUESTED)


def test_self_test_names_what_changed(monkeypatch):
    reason = compat.self_test(expected_function_fields=(*compat.EXPECTED_FUNCTION_FIELDS, "ctx_addr"))
    assert reason is not None and "FunctionModel" in reason and "ctx_addr" in reason
    reason = compat.self_test(expected_array_fields=compat.EXPECTED_ARRAY_FIELDS[1:])
    assert reason is not None and "array struct" in reason
    monkeypatch.setattr(numba, "__version__", "0.69.0")
    reason = compat.self_test()
    assert reason is not None and "0.69.0" in reason and "outside the range" in reason


def test_no_other_module_touches_numba_internals():
    """``numba.core``, ``numba.experimental`` and private options live in one module."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "_numba_compat.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                mods = [node.module]
            if any(m.startswith(("numba.core", "numba.experimental")) for m in mods):
                offenders.append(f"{rel}:{node.lineno} imports {mods}")
            if isinstance(node, ast.keyword) and node.arg == "_nrt":
                offenders.append(f"{rel}:{node.lineno} passes _nrt")
            if isinstance(node, ast.Attribute) and node.attr in ("get_compile_result", "_locator_classes"):
                offenders.append(f"{rel}:{node.lineno} uses .{node.attr}")
        for call in re.findall(r"(?:simplefilter|filterwarnings)\([^)]*\)", path.read_text()):
            if "Numba" in call or "numba" in call:
                offenders.append(f"{rel} silences a Numba warning: {call}")
    assert not offenders, offenders


def _lotka_volterra():
    x, y, a, b, c, d = sp.symbols("x y a b c d")
    return sciode.Model([x, y], [a * x - b * x * y, c * x * y - d * y], [a, b, c, d], name="compat_lv")


def _numbers() -> dict:
    """Solutions and gradients through every family's loops (explicit, Rosenbrock,
    ESDIRK, BDF) and the sensitivity entries that borrow arrays."""
    model = _lotka_volterra()
    t = np.linspace(0.0, 3.0, 7)
    p, y0 = [1.5, 1.0, 1.0, 3.0], [1.0, 1.0]
    data = np.cos(t)[:, None] * np.array([1.0, 0.5]) + 1.0
    cost = sciode.LeastSquares(t, data)
    out = {}
    for method in ("dopri5", "rodas4", "kvaerno5", "bdf"):
        out[f"solve_{method}"] = sciode.solve(model, y0, (0.0, 3.0), p, t_eval=t, method=method,
                                              rtol=1e-8, atol=1e-10).y.tolist()
    for method, mode in (("dopri5", "adjoint"), ("dopri5", "forward"), ("dopri5", "checkpoint"),
                         ("dopri5", "discrete"), ("rodas4", "adjoint"), ("kvaerno5", "forward"),
                         ("bdf", "forward")):
        g = sciode.value_and_grad(model, cost, y0, (0.0, 3.0), p, method=method, sensitivity=mode,
                                  rtol=1e-8, atol=1e-10)
        out[f"grad_{method}_{mode}"] = [float(g.value), *np.asarray(g.grad_params).tolist(),
                                        *np.asarray(g.grad_y0).tolist()]
    return out


_CHILD = """
import importlib.util, json, sys, warnings
from pathlib import Path

# Plant a fake expected field name: the self-test of this process expects a
# FunctionModel field that Numba does not have, as after a layout change.
package = importlib.util.find_spec("sciode")  # found, not imported
path = str(Path(package.submodule_search_locations[0]) / "_numba_compat.py")
spec = importlib.util.spec_from_file_location("sciode._numba_compat", path)
source = Path(spec.origin).read_text()
line = 'EXPECTED_FUNCTION_FIELDS = ("c_addr", "py_addr", "jit_addr")'
assert line in source
source = source.replace(line, line[:-1] + ', "ctx_addr")')
module = importlib.util.module_from_spec(spec)
sys.modules["sciode._numba_compat"] = module
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    exec(compile(source, spec.origin, "exec"), module.__dict__)
    import sciode
    from sciode import _numba_compat
    assert _numba_compat is module
    sys.path.insert(0, {tests!r})
    from test_numba_compat import _numbers
    numbers = _numbers()
warned = [str(w.message) for w in caught if "portable path" in str(w.message)]
print(json.dumps({{"portable": _numba_compat.PORTABLE, "reason": _numba_compat.REASON,
                  "warned": warned, "numbers": numbers}}))
"""


def portable_cache_dir(tmp_path) -> str:
    """Numba's own cache for the portable path: shared with CI's portable pass."""
    root = os.environ.get("SCIODE_CACHE_DIR")
    return str(Path(root) / "numba-portable") if root else str(tmp_path / "numba-portable")


@pytest.mark.skipif(PORTABLE_REQUESTED, reason="compares the fast path with the portable one")
def test_planted_layout_mismatch_selects_the_fallback_with_the_same_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SCIODE_PORTABLE"}
    env["NUMBA_CACHE_DIR"] = portable_cache_dir(tmp_path)
    script = _CHILD.format(tests=str(Path(__file__).resolve().parent))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False,
                         timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    child = json.loads(run.stdout.strip().splitlines()[-1])
    assert child["portable"] and "FunctionModel" in child["reason"] and "ctx_addr" in child["reason"]
    assert len(child["warned"]) == 1, child["warned"]  # warned once, naming the cause
    assert "ctx_addr" in child["warned"][0]
    fast = _numbers()
    assert set(fast) == set(child["numbers"])
    for key, value in fast.items():
        # same operations in the same order: equal to the last bit is expected;
        # allow a few ulps for a compiler that orders a reduction differently
        np.testing.assert_allclose(child["numbers"][key], value, rtol=1e-13, atol=0, err_msg=key)


def test_kernels_have_the_mode_numba_type(lotka_volterra):
    """On either path a kernel is typed as the ABI says, and a loop calls it."""
    from sciode import abi, codegen

    k = codegen.model_kernels(lotka_volterra)["rhs"]
    assert numba.typeof(k) == abi.VEC
    if compat.PORTABLE:
        assert type(abi.VEC) is numba.types.FunctionType
    else:
        assert isinstance(abi.VEC, compat.KernelType)

    @numba.njit((abi.VEC, abi.ARRAY, abi.ARRAY, abi.ARRAY))
    def call(f, y, p, out):
        f(0.0, y, p, np.zeros(0), out)

    y, p, out, expected = np.array([1.0, 2.0]), np.array([1.5, 1.0, 1.0, 3.0]), np.zeros(2), np.zeros(2)
    call(k, y, p, out)
    k(0.0, y, p, np.zeros(0), expected)
    assert np.array_equal(out, expected) and np.abs(out).sum() > 0


def test_division_by_zero_in_a_kernel_is_a_failed_solve():
    """Kernels use NumPy's error model: 1/0 is inf, reported as a non-finite state
    with its time (never an exception out of compiled code, never success)."""
    y, k = sp.symbols("y k")
    model = sciode.Model([y], [k / (y - 1)], [k], name="compat_pole")
    sol = sciode.solve(model, [1.0], (0.0, 1.0), [1.0], t_eval=[1.0])
    assert not sol.success and "non-finite" in sol.message
