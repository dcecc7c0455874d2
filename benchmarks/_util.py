"""Shared helpers of the benchmark suites: timing, tables, cold subprocesses.

Nothing here is a test.  Timings are wall-clock medians of repeated calls in
one process (``warm``: after a first call that compiled / jitted), or the first
call of a fresh subprocess (``cold``: see ``benchmarks.cold``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from unittest import mock
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CHILD_TIMEOUT_S = 900


# --- configuration -----------------------------------------------------------------


@dataclass
class Config:
    quick: bool = False
    cold: bool = True          # run the fresh-subprocess measurements
    repeats: int = 7           # warm repeats (median); fewer in --quick
    min_time: float = 0.3      # keep repeating until this much time was spent ...
    max_repeats: int = 50      # ... but at most this many calls
    notes: list = field(default_factory=list)

    @classmethod
    def make(cls, quick: bool, cold: bool = True) -> "Config":
        if quick:
            return cls(quick=True, cold=cold, repeats=3, min_time=0.05, max_repeats=10)
        return cls(quick=False, cold=cold)


def have(module: str) -> bool:
    """Whether an optional comparison package is importable."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_note(module: str, what: str) -> str:
    return f"{what}: skipped, `{module}` is not installed (`pip install {module}`)."


# --- timing --------------------------------------------------------------------------


def median_time(fn, cfg: Config, warmup: bool = True):
    """Median wall time of ``fn()`` over repeats (after one warm-up call).

    Returns ``(median_seconds, last_result, n_repeats)``.
    """
    out = fn() if warmup else None
    times = []
    spent = 0.0
    while len(times) < cfg.repeats or (spent < cfg.min_time and len(times) < cfg.max_repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if spent > 20.0 and len(times) >= 2:   # a slow case: two repeats are enough
            break
    return float(np.median(times)), out, len(times)


def quiet(fn):
    """``fn`` with warnings silenced (backsolve drift warnings, jax notices)."""
    def wrapped(*a, **k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*a, **k)
    return wrapped


def rel_err(y, ref) -> float:
    y, ref = np.asarray(y, dtype=float), np.asarray(ref, dtype=float)
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), 1e-300))


def interp_time_at_error(points, err_target):
    """Time of a work-precision curve at ``err_target`` (log-log interpolation).

    ``points`` is a list of ``(err, time)``.  Returns ``(time, flag)`` where
    flag is ``""`` inside the measured range and ``">"``/``"<"`` when the curve
    had to be clamped to its end (the other solver never got that accurate /
    never got that inaccurate), so the ratio is a bound.
    """
    pts = sorted((e, t) for e, t in points if e > 0 and math.isfinite(e) and math.isfinite(t))
    if not pts or not (err_target > 0):
        return float("nan"), "?"
    le = np.log([e for e, _ in pts])
    lt = np.log([t for _, t in pts])
    x = math.log(err_target)
    if x < le[0]:
        return float(np.exp(lt[0])), ">"      # needs more accuracy than measured: at least this time
    if x > le[-1]:
        return float(np.exp(lt[-1])), "<"
    if len(pts) == 1:
        return float(np.exp(lt[0])), ""
    # make the curve monotone in error for np.interp (ties: keep the cheapest)
    order = np.argsort(le, kind="stable")
    return float(np.exp(np.interp(x, le[order], lt[order]))), ""


# --- formatting ----------------------------------------------------------------------


def fmt(v, digits=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else str(v)
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2e}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}g}"


def fmt_time(s) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    s = float(s)
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def md_table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(c) for c in r) + " |")
    return "\n".join(lines)


class Report:
    """Collects markdown sections; prints them as they come and writes the file."""

    def __init__(self, suite: str, cfg: Config):
        self.suite, self.cfg = suite, cfg
        self.parts = [f"# sciode benchmarks: `{suite}`{' (--quick)' if cfg.quick else ''}\n", machine_info()]

    def section(self, title: str, text: str = "") -> None:
        block = f"\n## {title}\n\n{text}".rstrip() + "\n"
        self.parts.append(block)
        print(block, flush=True)

    def table(self, headers, rows, caption: str = "") -> None:
        text = (caption + "\n\n" if caption else "") + md_table(headers, rows) + "\n"
        self.parts.append(text)
        print(text, flush=True)

    def note(self, text: str) -> None:
        self.parts.append(f"- {text}\n")
        print(f"- {text}", flush=True)

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.suite}.md"
        path.write_text("\n".join(self.parts) + "\n")
        print(f"\nwritten to {path.relative_to(ROOT)}", flush=True)
        return path


def machine_info() -> str:
    vers = []
    for mod in ("numpy", "scipy", "numba", "sympy", "jax", "diffrax", "torch", "torchdiffeq", "casadi"):
        if have(mod):
            try:
                from importlib.metadata import version
                vers.append(f"{mod} {version(mod)}")
            except Exception:  # noqa: BLE001
                vers.append(mod)
        else:
            vers.append(f"{mod} (missing)")
    return (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}; {', '.join(vers)}.  "
            f"Date: {time.strftime('%Y-%m-%d %H:%M')}.\n")


# --- cold subprocesses -------------------------------------------------------------


def run_cold(task: str, cache_dir: str | None, extra_env: dict | None = None) -> dict:
    """Run ``python -m benchmarks.cold TASK`` in a fresh process; returns its JSON.

    ``cache_dir`` is the ``SCIODE_CACHE_DIR`` the child sees (a fresh empty
    directory for a cold run, a populated one for a warm-cache run).
    """
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    if cache_dir is not None:
        env["SCIODE_CACHE_DIR"] = cache_dir
    env.update(extra_env or {})
    return run_child([sys.executable, "-m", "benchmarks.cold", task], env)


def run_child(cmd: list, env: dict, cwd=ROOT) -> dict:
    """Run ``cmd`` (a child that prints one JSON line last) and return that JSON,
    with ``process_s`` (its wall time) and ``stderr`` (the tail); on failure a
    dict with ``error`` (the last lines of its output, or the timeout).

    ``cpu_s`` is the child's CPU time (user + system, its own children
    included): unlike the wall time it hardly moves when other work shares
    the machine, so compile-time comparisons across runs read it."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {CHILD_TIMEOUT_S} s"}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " / ".join(tail)[:400], "process_s": wall}
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "no JSON from child", "process_s": wall}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["process_s"] = wall
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["stderr"] = proc.stderr[-2000:]
    return out


class CacheDir:
    """A temporary SCIODE_CACHE_DIR (context manager)."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="sciode_bench_cache_")
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def explicit_loop(which: str):
    """Run sciode's explicit solves on one loop: ``"never"`` the generic loop,
    ``"always"`` the per-model specialised one (``sciode.cpu.specialized``;
    ``SCIODE_SPECIALIZE``), ``"auto"`` sciode's own choice (a context manager)."""
    return mock.patch.dict(os.environ, {"SCIODE_SPECIALIZE": which})
