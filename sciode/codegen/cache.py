"""On-disk cache of generated kernel modules.

Modules are written to ``<cache dir>/kernels/<kind>_<hash>.py`` where the
hash covers the model/cost content, the codegen options, the sciode and
codegen-API versions and the Numba version.  A module is written atomically
(temporary file + ``os.replace``), so two processes may build the same
kernels at once; each imports the file by path, and Numba's own disk
cache stores the machine code beside it, so a second process
neither regenerates source nor recompiles.

The cache directory is ``$SCIODE_CACHE_DIR`` when set, else the user's cache
directory (``platformdirs.user_cache_dir("sciode")``); directories sciode
creates there are private to the user (0700).

A cached module is imported only if it is the file sciode wrote: its first
line records the sha256 of the rest (``# sciode-digest: ...``), checked before
import.  A truncated write (full disk) or an edited file is rebuilt from the
model and reported (``CacheIntegrityWarning``), never executed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import warnings
from importlib.metadata import version as _version
from pathlib import Path

#: Bump when the generated source or the kernel ABI changes.
CODEGEN_API = 18

#: Counters for this process: modules written vs. found on disk.
STATS = {"generated": 0, "reused": 0}


#: First line of every cached module: the sha256 of the lines after it.
DIGEST_PREFIX = "# sciode-digest: "


class CacheIntegrityWarning(RuntimeWarning):
    """A cached kernel module did not match its recorded digest and was rebuilt."""


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents user-private (0700); existing
    directories are left as they are."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            pass
    return path


def cache_dir() -> Path:
    """The kernel modules' directory of the sciode cache (created on demand, 0700)."""
    env = os.environ.get("SCIODE_CACHE_DIR")
    if env:
        root = Path(env)
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("sciode"))
    return private_dir(root / "kernels")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def sealed(source: str) -> str:
    """``source`` with its digest line in front."""
    return f"{DIGEST_PREFIX}{_sha(source)}\n{source}"


def unseal(text: str) -> str | None:
    """The source under a valid digest line, else None."""
    head, sep, body = text.partition("\n")
    if not sep or not head.startswith(DIGEST_PREFIX):
        return None
    return body if head[len(DIGEST_PREFIX):] == _sha(body) else None


def content_hash(*parts: str) -> str:
    """A sha256 over the parts plus every version that affects generated code."""
    from .. import __version__

    h = hashlib.sha256()
    for part in (f"api={CODEGEN_API}", f"sciode={__version__}", f"numba={_version('numba')}", *parts):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def module_path(kind: str, digest: str) -> Path:
    return cache_dir() / f"{kind}_{digest}.py"


def write_atomic(path: Path, data) -> None:
    """Write ``data`` (text or bytes) to ``path`` so that readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
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
    source = None
    if path.exists():
        try:
            source = unseal(path.read_text())
        except (OSError, UnicodeDecodeError):
            source = None
        if source is None:
            warnings.warn(f"cached kernel module {path} does not match its digest (a truncated "
                          "write or an edit); rebuilt from the model, the file was not run",
                          CacheIntegrityWarning, stacklevel=3)
    if source is not None:
        STATS["reused"] += 1
    else:
        source = build_source()
        compile(source, str(path), "exec")  # never cache a module that cannot import
        write_atomic(path, sealed(source))
        STATS["generated"] += 1
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # run the text that was checked (or just built), not a second read of the file;
    # compiled under the file's name, so Numba's cache finds its machine code beside it
    exec(compile(DIGEST_PREFIX + _sha(source) + "\n" + source, str(path), "exec"),  # noqa: S102
         module.__dict__)
    module.__sciode_source__ = source  # what codegen.native translates: the checked text
    return module
