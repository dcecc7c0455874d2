"""The Numba cache's source hash leaves out only modules compiled code never reads."""

import ast
from pathlib import Path

from sciode import _numba_cache

PACKAGE = Path(_numba_cache.__file__).resolve().parent


def _uncompiled_files():
    return [p for p in PACKAGE.rglob("*.py")
            if Path(p.relative_to(PACKAGE).parts[0]).stem in _numba_cache.UNCOMPILED]


def _imported_modules(path: Path) -> set[str]:
    """Every ``sciode``-relative module name that ``path`` imports (absolute or relative)."""
    rel = path.relative_to(PACKAGE).with_suffix("").parts
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(rel[:len(rel) - node.level])
            elif node.module and node.module.startswith("sciode"):
                base, node_mod = [], node.module.split(".")[1:]
                names.add(".".join(node_mod))
                names.update(".".join(node_mod + [a.name]) for a in node.names)
                continue
            else:
                continue
            mod = base + (node.module.split(".") if node.module else [])
            names.add(".".join(mod))
            names.update(".".join(mod + [a.name]) for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name.split(".", 1)[1] for a in node.names
                         if a.name.startswith("sciode."))
    return names


def test_uncompiled_modules_hold_no_numba_code():
    """No CPU code that the cache would store: ``sciode/cuda`` compiles GPU
    kernels per process (never with ``cache=True``), the others no Numba at all."""
    files = _uncompiled_files()
    assert any(p.parent.name == "torch" for p in files)
    for path in files:
        text = path.read_text()
        assert "njit" not in text and "cache=True" not in text, path
        if path.parent.name != "cuda":
            assert "import numba" not in text, path


def test_hashed_modules_never_import_uncompiled_ones():
    hashed = _numba_cache.hashed_sources()
    assert PACKAGE / "cpu" / "explicit.py" in hashed
    assert not set(hashed) & set(_uncompiled_files())
    for path in hashed:
        for name in _imported_modules(path):
            assert name.split(".")[0] not in _numba_cache.UNCOMPILED, (path, name)
