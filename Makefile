# Two commands on a fresh machine: `make run` and `make test`.
# Every install comes from uv.lock (exact versions, with hashes); see README "Dependencies".
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools
UV := $(TOOLS)/bin/uv
RUN_ARGS ?=
# uv uses the machine's Python, never one it downloads, and the project's .venv.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Installed packages compiled to .pyc once: the server starts in ~1 s instead of ~3 s
# where PYTHONDONTWRITEBYTECODE keeps Python from caching them itself.
export UV_COMPILE_BYTECODE := 1

.PHONY: run test test-js lint lock lock-check upgrade vendor vendor-check screenshots bench bench-cluster install install-test clean

# uv itself, at the version and hashes pinned in tools/uv.txt, in a venv of its own.
$(UV): tools/uv.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "slurmcast needs Python >= 3.11"'
	rm -rf $(TOOLS)
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps -r tools/uv.txt
	touch $@

# --inexact: `make run` after `make test` keeps the test tools.
$(VENV)/.installed-run: pyproject.toml uv.lock | $(UV)
	$(UV) sync --quiet --locked --no-dev --inexact --python $(PYTHON)
	touch $@

$(VENV)/.installed-test: pyproject.toml uv.lock | $(UV)
	$(UV) sync --quiet --locked --python $(PYTHON)
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
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

## Re-resolve uv.lock after editing pyproject.toml's dependencies (keeps every other pin).
lock: | $(UV)
	$(UV) lock
	$(UV) pip compile --quiet --generate-hashes --universal --python-version 3.11 \
		--custom-compile-command "make lock" tools/uv.in -o tools/uv.txt

## Fail if uv.lock no longer matches pyproject.toml (CI runs this).
lock-check: | $(UV)
	$(UV) lock --check

## Move every pin (and uv itself) to the newest versions the ranges allow; then run `make lint test`.
upgrade: | $(UV)
	$(UV) lock --upgrade
	$(UV) pip compile --quiet --generate-hashes --universal --python-version 3.11 --upgrade \
		--custom-compile-command "make lock" tools/uv.in -o tools/uv.txt
	@echo "uv.lock and tools/uv.txt upgraded: run 'make lint test', then commit both with what changed."

# The dashboard's third-party files (uPlot), exactly as tools/web/package-lock.json pins them.
# They are committed, so that running the page needs neither npm nor a build step.
VENDOR_FILES := uplot/dist/uPlot.esm.js uplot/dist/uPlot.min.css uplot/LICENSE
VENDOR_DIR := src/slurmcast/web/static/vendor

## Copy the dashboard's pinned third-party files into the package (after editing tools/web/).
vendor:
	cd tools/web && npm ci --no-audit --no-fund --silent
	cp $(addprefix tools/web/node_modules/,$(VENDOR_FILES)) $(VENDOR_DIR)/
	mv $(VENDOR_DIR)/LICENSE $(VENDOR_DIR)/uPlot.LICENSE.txt

## Fail if the committed third-party files differ from what the lock file gives (CI runs this).
vendor-check:
	cd tools/web && npm ci --no-audit --no-fund --silent
	cmp tools/web/node_modules/uplot/dist/uPlot.esm.js $(VENDOR_DIR)/uPlot.esm.js
	cmp tools/web/node_modules/uplot/dist/uPlot.min.css $(VENDOR_DIR)/uPlot.min.css
	cmp tools/web/node_modules/uplot/LICENSE $(VENDOR_DIR)/uPlot.LICENSE.txt

## Retake the README's pictures of the dashboard (docs/images/; needs chromium and chromedriver).
screenshots: install-test
	$(BIN)/python tools/screenshots.py

## Fan-out benchmark (see docs/performance.md).
bench: install-test
	$(BIN)/python bench/fanout.py

## Several instances sharing Redis (see docs/performance.md).
bench-cluster: install-test
	$(BIN)/python bench/cluster.py

clean:
	rm -rf $(VENV) $(TOOLS) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache bench/.build \
		clients/js/node_modules
