"""On-disk cache of generated kernel modules.

Modules are written to ``<cache dir>/kernels/<kind>_<hash>.py`` where the
hash covers the model/cost content, the codegen options, the sciode and
codegen-API versions and the Numba version.  A module is written atomically
(temporary file + ``os.replace``), so two processes may build the same
kernels at once; each imports the file by path, and Numba's own cache
(``cache=True``) stores the machine code beside it, so a second process
neither regenerates source nor recompiles.

The cache directory is ``$SCIODE_CACHE_DIR`` when set, else the user's cache
directory (``platformdirs.user_cache_dir("sciode")``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numba

#: Bump when the generated source or the kernel ABI changes.
CODEGEN_API = 12

#: Counters for this process: modules written vs. found on disk.
STATS = {"generated": 0, "reused": 0}


def cache_dir() -> Path:
    """The root of the sciode cache (created on demand)."""
    env = os.environ.get("SCIODE_CACHE_DIR")
    if env:
        root = Path(env)
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("sciode"))
    path = root / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def content_hash(*parts: str) -> str:
    """A sha256 over the parts plus every version that affects generated code."""
    from .. import __version__

    h = hashlib.sha256()
    for part in (f"api={CODEGEN_API}", f"sciode={__version__}", f"numba={numba.__version__}", *parts):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def module_path(kind: str, digest: str) -> Path:
    return cache_dir() / f"{kind}_{digest}.py"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_or_build(kind: str, digest: str, build_source):
    """Import the cached module ``kind_digest``, writing it first if missing.

    ``build_source`` is a zero-argument callable returning the module source;
    it runs (symbolic derivation included) only on a cache miss.
    """
    name = f"sciode_generated_{kind}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    path = module_path(kind, digest)
    if path.exists():
        STATS["reused"] += 1
    else:
        source = build_source()
        compile(source, str(path), "exec")  # never cache a module that cannot import
        write_atomic(path, source)
        STATS["generated"] += 1
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
