"""The Numba cache's source hash leaves out only modules compiled code never reads.

Compiled code reads the globals of the module that defines it, and those come
from that module's module-level imports (and theirs, transitively).  So the
hash must cover every module reached by following module-level imports out of
the modules that define compiled code; imports inside functions run Python,
never compiled code, and do not count.
"""

import ast
import re
from pathlib import Path

from sciode import _numba_cache

PACKAGE = Path(_numba_cache.__file__).resolve().parent
MODULES = {_numba_cache.module_name(p): p for p in PACKAGE.rglob("*.py")}
#: what defines compiled code: Numba decorators, overloads, compiled entries and systems
COMPILED = re.compile(r"njit|overload|register_entry\(|register_system\(|^(import numba|from numba)", re.M)


def _module(parts) -> str | None:
    name = ".".join(parts)
    if name in MODULES:
        return name
    init = f"{name}.__init__" if name else "__init__"
    return init if init in MODULES else None


def module_level_imports(name: str) -> set[str]:
    """The sciode modules that ``name`` imports at module level (under ``if`` and
    ``try`` too): ``from .x import y`` counts ``x.y`` if it is a module, else ``x``."""
    package = name.split(".")[:-1]
    found = set()

    def add(base, names):
        for alias in names:
            found.add(_module(base + [alias.name]) or _module(base))

    def visit(body):
        for node in body:
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[:len(package) - (node.level - 1)]
                    add(base + (node.module.split(".") if node.module else []), node.names)
                elif node.module and node.module.split(".")[0] == "sciode":
                    add(node.module.split(".")[1:], node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("sciode."):
                        found.add(_module(alias.name.split(".")[1:]))

    visit(ast.parse(MODULES[name].read_text()).body)
    found.discard(None)
    return found


def read_by_compiled_code() -> set[str]:
    """Modules that define compiled code (CPU; ``cuda``'s GPU kernels are
    compiled per process) and everything their module-level imports reach."""
    seen = {m for m, p in MODULES.items()
            if COMPILED.search(p.read_text()) and not m.startswith(("cuda.", "torch."))}
    todo = list(seen)
    while todo:
        for dep in module_level_imports(todo.pop()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_uncompiled_modules_hold_no_numba_code():
    """No CPU code that the cache would store: ``sciode/cuda`` compiles GPU
    kernels per process (never with ``cache=True``), the others no Numba at all."""
    files = [p for m, p in MODULES.items() if _numba_cache.is_uncompiled(m)]
    assert any(p.parent.name == "torch" for p in files)
    assert any(p.name == "modules.py" for p in files)
    for path in files:
        text = path.read_text()
        assert "njit" not in text and "cache=True" not in text, path
        if path.parent.name != "cuda":
            assert not re.search(r"^(import numba|from numba)", text, re.M), path


def test_everything_compiled_code_reads_is_hashed():
    hashed = {_numba_cache.module_name(p) for p in _numba_cache.hashed_sources()}
    assert "cpu.explicit" in hashed and "cpu.linalg" in hashed
    assert "symbolic.derive" not in hashed and "codegen.modules" not in hashed
    # a CODEGEN_API bump regenerates the kernels and leaves the loops' cache alone
    assert "codegen.cache" not in hashed and "codegen.__init__" not in hashed
    read = read_by_compiled_code()
    assert "cpu.status" in read and "abi" in read  # the walk follows imports
    missing = sorted(read - hashed)
    assert not missing, f"compiled code reads these modules, which the hash leaves out: {missing}"


def test_the_import_walk_sees_relative_and_absolute_imports():
    assert "cpu.systems" in module_level_imports("cpu.drivers")
    assert "abi" in module_level_imports("cpu.drivers")
