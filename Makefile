# make demo   - virtualenv, tiny synthetic data, each model's performance script
# make test   - virtualenv with the test extras, then the whole pytest suite
# make test-fast - the suite without the slow and multi-worker tests (under 5 min on 2 cores)
# make lint   - ruff (ruff.toml); part of make test
# make test-tf115 - Python 3.7 + TensorFlow 1.15.5 (the Ascend stack's versions): the
#                fast tests, the Gitloss and Face-ResNet50 ModelZoo scripts and TestResNet.py
# make bench-peer [QUICK=1] - our training against PyTorch implementations (build/bench/peer.md)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes at once (pytest-xdist; 0 = in this process). Each file's tests
# stay in one process, so a module's trained-model fixture is built once.
# Most of a test's time is single-threaded (imports, graph building,
# subprocess start), so 2 processes finish sooner even on 2 cores.
TEST_WORKERS ?= 2
PARALLEL = -n $(TEST_WORKERS) --dist loadfile

.PHONY: all demo lint test test-fast test-tf115 bench bench-peer ablations venv clean

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
PYTEST_EXIT = rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "[Error] pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	@$(PY) -m pytest ci/tests $(PARALLEL) $(PYTEST_ARGS); $(PYTEST_EXIT)

# The markers are registered in pytest.ini.
test-fast: $(STAMP)
	@$(PY) -m pytest ci/tests -m "not slow and not multiworker" $(PARALLEL) $(PYTEST_ARGS); $(PYTEST_EXIT)

# TF 1.15 has no wheel past Python 3.7; pyenv keeps one on these machines.
PYTHON37 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.7*/bin/python3.7) \
	$(wildcard $(HOME)/.pyenv/versions/3.7*/bin/python3.7) $(shell command -v python3.7))
VENV37 ?= .venv-tf115
STAMP37 := $(VENV37)/.installed
# Left to make test: the source checks (they parse with Python 3.8+'s ast)
# and the benchmark harness of make ablations.
TF115_SKIP = --ignore=ci/tests/common/test_tf115_guard.py \
	--ignore=ci/tests/common/test_ablations.py \
	--deselect=ci/tests/common/test_safe_loading.py::test_no_unsafe_loads_or_shell_commands_in_the_project \
	--deselect=ci/tests/common/test_safe_loading.py::test_the_checker_allows_the_safe_forms

$(STAMP37): requirements.txt requirements-test.txt
	@test -n "$(PYTHON37)" || { echo "[Error] no Python 3.7 (pyenv install 3.7, or PYTHON37=...)" >&2; exit 2; }
	$(PYTHON37) -m venv $(VENV37)
	$(VENV37)/bin/python -m pip install -q --upgrade pip
	$(VENV37)/bin/python -m pip install -q -r requirements-test.txt
	touch $@

test-tf115: $(STAMP37)
	$(VENV37)/bin/python -c "import tensorflow as tf; assert tf.__version__ == '1.15.5', tf.__version__"
	@$(VENV37)/bin/python -m pytest ci/tests -m "not multiworker and (not slow or tf115)" \
		$(TF115_SKIP) $(PARALLEL) $(PYTEST_ARGS); $(PYTEST_EXIT)

clean:
	rm -rf $(VENV) $(VENV37) $(VENV_PEER) build

# make bench [QUICK=1] - training throughput table (build/bench/results.md/.json)
bench: $(STAMP)
	$(PY) ci/bench.py $(if $(QUICK),--quick,)

# make ablations - each speed-up against its alternative, timed in one run
# (build/bench/ablations.md/.json)
ablations: $(STAMP)
	$(PY) ci/ablations.py

# make bench-peer [QUICK=1] - our training scripts against PyTorch implementations
# of the same models (ci/peers/), in alternation (build/bench/peer.md/.json).
# torch goes into a virtualenv of its own, on the Python 3.11 pyenv keeps.
PYTHON311 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.11*/bin/python3.11) \
	$(wildcard $(HOME)/.pyenv/versions/3.11*/bin/python3.11) $(shell command -v python3.11))
VENV_PEER ?= .venv-peer
STAMP_PEER := $(VENV_PEER)/.installed

$(STAMP_PEER): requirements-peer.txt
	@test -n "$(PYTHON311)" || { echo "[Error] no Python 3.11 (pyenv install 3.11, or PYTHON311=...)" >&2; exit 2; }
	$(PYTHON311) -m venv $(VENV_PEER)
	$(VENV_PEER)/bin/python -m pip install -q -r requirements-peer.txt
	touch $@

bench-peer: $(STAMP) $(STAMP_PEER)
	$(PY) ci/bench_peer.py --peer_python=$(VENV_PEER)/bin/python $(if $(QUICK),--quick,)
