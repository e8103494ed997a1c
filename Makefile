# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_ARGS ?=

.PHONY: run test test-js lint bench bench-cluster install install-test clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "slurmcast needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## Start the server on the simulated cluster (ws://0.0.0.0:5011, http://0.0.0.0:5012).
run: install
	$(BIN)/slurmcast serve $(RUN_ARGS)

## Run the whole test suite: the Python tests, then the JavaScript client's.
test: install-test
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-js

## The JavaScript client's tests against real servers (needs Node.js >= 20 and npm).
test-js: install-test
	cd clients/js && npm ci --no-audit --no-fund && npm test

## Static checks: ruff and mypy --strict.
lint: install-test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

## Fan-out benchmark (see docs/performance.md).
bench: install-test
	$(BIN)/python bench/fanout.py

## Several instances sharing Redis (see docs/performance.md).
bench-cluster: install-test
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache bench/.build \
		clients/js/node_modules
