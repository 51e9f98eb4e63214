# make demo   - virtualenv, tiny synthetic data, each model's performance script
# make test   - virtualenv with the test extras, then the whole pytest suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all demo test bench ablations venv clean

all: demo

$(STAMP): requirements.txt requirements-test.txt requirements-test-nodeps.txt \
		InsightFace_TF/requirements.txt InsightFace_TF/requirements-deploy.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -m pip install -q --no-deps -r requirements-test-nodeps.txt
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(PY) ci/demo.py

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: $(STAMP)
	@$(PY) -m pytest ci/tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "[Error] pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

clean:
	rm -rf $(VENV) build

# make bench [QUICK=1] - training throughput table (build/bench/results.md/.json)
bench: $(STAMP)
	$(PY) ci/bench.py $(if $(QUICK),--quick,)

# make ablations - each speed-up against its alternative, timed in one run
# (build/bench/ablations.md/.json)
ablations: $(STAMP)
	$(PY) ci/ablations.py
