# Two entry points for a fresh machine with only Python:
#   make validate -- set up .venv and run the main job: the validation suite
#   make test     -- set up .venv and run the test suite
#   make demo     -- a short tour on an embedded example
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# torch is pinned: on these machines torch==2.13.0 is a local CPU build,
# an unpinned torch pulls GBs of CUDA wheels.  The solver loops are compiled
# once, here, with a progress display (`sciode precompile`), not inside the
# first validation case or test.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,plot]"
	$(PY) -m sciode.cli precompile --jobs 2
	touch $(STAMP)

# The solve and gradient tests again on the portable path (public Numba API
# only, sciode/_numba_compat.py), with Numba's own cache kept apart.
PORTABLE_TESTS := tests/test_solve.py tests/test_gradients.py tests/test_discrete.py tests/test_structured.py \
	tests/test_stiff.py tests/test_stiff_gradients.py tests/test_numba_compat.py tests/test_specialized.py
PORTABLE_CACHE = $(if $(SCIODE_CACHE_DIR),$(SCIODE_CACHE_DIR),$(CURDIR)/.sciode_cache)/numba-portable

.PHONY: setup demo test test-portable validate
setup: $(STAMP)

validate: $(STAMP)
	$(PY) -m validation --out validation_report

demo: $(STAMP)
	$(PY) -m examples.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests
	$(MAKE) --no-print-directory test-portable

test-portable: $(STAMP)
	SCIODE_PORTABLE=1 NUMBA_CACHE_DIR=$(PORTABLE_CACHE) $(PY) -m pytest -q -n 2 $(PORTABLE_TESTS)
