"""``sciode precompile`` and the one-time compile notice."""

from __future__ import annotations

import io
import time

import pytest

import sciode
from sciode import cli, warmup
from sciode.cpu import drivers


def test_precompile_runs_every_family_and_says_so():
    out = io.StringIO()
    times = sciode.precompile(jobs=1, stream=out)
    assert set(times) == {u[0] for u in warmup.UNITS}
    text = out.getvalue()
    assert "once per installation" in text and "solver loops ready" in text
    for name in times:
        assert name in text
    # every family's loops are now in the cache: a second pass only loads them
    again = sciode.precompile(jobs=1, progress=False)
    assert sum(again.values()) < sum(times.values()) + 5.0


def test_precompile_cli_checks_jobs():
    with pytest.raises(SystemExit):
        cli.main(["precompile", "--jobs", "0"])


@pytest.fixture
def fresh_notice(monkeypatch):
    monkeypatch.setitem(drivers._NOTICE, "shown", False)
    monkeypatch.setattr(drivers, "NOTICE_AFTER_S", 0.01)
    monkeypatch.delenv("SCIODE_QUIET", raising=False)


def test_a_slow_loop_compile_is_announced_once(fresh_notice, capsys):
    with drivers._compile_notice("adjoint_gradient"):
        time.sleep(0.3)  # a compile that takes a while
    err = capsys.readouterr().err
    assert "compiling the solver loops (adjoint_gradient), once per installation" in err
    assert "sciode precompile" in err
    with drivers._compile_notice("forward"):
        time.sleep(0.3)
    assert capsys.readouterr().err == ""  # once per process


def test_a_cache_hit_and_quiet_mode_say_nothing(fresh_notice, capsys, monkeypatch):
    with drivers._compile_notice("forward"):
        pass  # loaded at once
    time.sleep(0.05)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("SCIODE_QUIET", "1")
    with drivers._compile_notice("forward"):
        time.sleep(0.1)
    assert capsys.readouterr().err == ""
