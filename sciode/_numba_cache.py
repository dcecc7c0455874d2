"""Keep Numba's disk cache of sciode's own loops consistent with the source.

Numba stamps a cached function with the modification time of *its own* file
only, so editing a callee in another module (a system, a step helper) would
leave a stale compiled loop in the cache.  sciode's loops call each other
across modules, so this locator stamps every function defined inside the
``sciode`` package with one hash over the package's sources (and the Numba
version): any change to them recompiles everything once.  The hash leaves out
the modules in ``UNCOMPILED``, which hold no Numba code and are never read
by it (the torch path, fitting, import, checking tools, the symbolic layer and
the code generator's writers, the Python drivers above the compiled entries),
so that editing them does not cost a recompile (about two and a half minutes
of CPU); ``tests/test_numba_cache.py`` keeps that true by following every
module-level import out of the modules that define compiled code.

Cached code goes to ``$SCIODE_CACHE_DIR/numba`` (else the user cache
directory), never into the installed package, which may be read-only.  The
locator is registered on import of ``sciode``, before any loop is decorated.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

from . import _numba_compat

_PACKAGE_DIR = Path(__file__).resolve().parent


#: Modules of sciode outside the hash (dotted paths below the package; a
#: subpackage's name covers all of it): pure Python above the compiled layer
#: (they import it; no module with compiled code imports them at module level),
#: and ``cuda``, whose GPU kernels are compiled per process and never enter
#: this cache.  ``__init__`` is the package's own front door (re-exports only).
UNCOMPILED = (
    "torch", "fit", "ensemble", "optimal", "cuda", "sbml", "petab", "gradcheck", "cli", "warmup",
    "__init__",
    # the symbolic layer and the writers of generated source (generated kernels
    # are cached by their own content digest, ``codegen.cache``)
    "symbolic", "codegen.__init__", "codegen.cache", "codegen.emit", "codegen.modules",
    "codegen.printer", "codegen.rolling", "codegen.structured", "codegen.torch_kernels",
    "codegen.native",  # llvmlite, no Numba-compiled code
    # Python drivers that call the compiled entries
    "api", "solution", "cpu.__init__", "methods.__init__", "adjoint.__init__", "adjoint.backsolve",
    "adjoint.checkpoint", "adjoint.fd", "adjoint.forward", "adjoint.interpolating", "adjoint.memory",
)


def module_name(path: Path) -> str:
    """``cpu/linalg.py`` -> ``cpu.linalg`` (relative to the package)."""
    return ".".join(Path(path).resolve().relative_to(_PACKAGE_DIR).with_suffix("").parts)


def is_uncompiled(name: str) -> bool:
    """Whether the module ``name`` (``module_name``) is outside the hash."""
    return any(name == u or name.startswith(u + ".") for u in UNCOMPILED)


def hashed_sources() -> list[Path]:
    """The package's sources that compiled code may depend on, sorted."""
    return [p for p in sorted(_PACKAGE_DIR.rglob("*.py")) if not is_uncompiled(module_name(p))]


def _source_hash() -> str:
    h = hashlib.sha256(numba.__version__.encode())
    for path in hashed_sources():
        h.update(str(path.relative_to(_PACKAGE_DIR)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


SOURCE_HASH = _source_hash()


def numba_cache_root() -> Path:
    env = os.environ.get("SCIODE_CACHE_DIR")
    if env:
        return Path(env) / "numba"
    import platformdirs

    return Path(platformdirs.user_cache_dir("sciode")) / "numba"


#: The locator class on the fast path; ``None`` on the portable path (Numba's own).
SciodeCacheLocator = _numba_compat.install_cache_locator(_PACKAGE_DIR, numba_cache_root, SOURCE_HASH)
