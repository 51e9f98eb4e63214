# make demo   - virtualenv, tiny synthetic data, each model's performance script
# make test   - virtualenv with the test extras, then the whole pytest suite
# make test-fast - the suite without the slow and multi-worker tests (under 5 min on 2 cores)
# make lint   - ruff (ruff.toml); part of make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all demo lint test test-fast bench ablations venv clean

all: demo

$(STAMP): requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) ci/demo.py

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
PYTEST_EXIT = rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "[Error] pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	@$(PY) -m pytest ci/tests $(PYTEST_ARGS); $(PYTEST_EXIT)

# The markers are registered in pytest.ini.
test-fast: $(STAMP)
	@$(PY) -m pytest ci/tests -m "not slow and not multiworker" $(PYTEST_ARGS); $(PYTEST_EXIT)

clean:
	rm -rf $(VENV) build

# make bench [QUICK=1] - training throughput table (build/bench/results.md/.json)
bench: $(STAMP)
	$(PY) ci/bench.py $(if $(QUICK),--quick,)

# make ablations - each speed-up against its alternative, timed in one run
# (build/bench/ablations.md/.json)
ablations: $(STAMP)
	$(PY) ci/ablations.py
