# cx workbench — the two commands: `make run` and `make test`.
#
#   make run          install the locked environment into .venv, build the sample study, validate
#                     it (data-quality report), refresh and publish it through the demo pipeline
#                     (papermill), then serve the dashboards (Voila) and print their URL
#   make test         the same environment with the test extra and Debian's chromium (browser
#                     tests), lint, and run every test (incl. slow, notebooks, browser)
#   make check        the fast inner loop: lint, and the tests not marked slow, notebooks or
#                     browser (about a minute or two)
#
#   make lock         update uv.lock after editing the dependencies in pyproject.toml (keeps
#                     every other locked version); commit both files together
#   make lock-upgrade re-resolve uv.lock to the newest versions pyproject.toml allows
#   make test-latest  the suite in a scratch venv (.make/latest) with the newest versions the
#                     ranges allow, ignoring the lock: keeps pyproject.toml's ranges honest
#
# Installs are exactly uv.lock (`uv sync --locked`: a lock that disagrees with pyproject.toml
# is refused). uv itself comes from PyPI, pinned below, into .make/tools. Re-running either
# command is quick: installs happen again only when pyproject.toml or uv.lock change.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .make/tools
UV_VERSION := 0.13.9
UV := $(TOOLS)/bin/uv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# $(call apt,PACKAGES): install Debian packages; apt's own log is shown only when it fails.
apt = mkdir -p .make && { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  $(SUDO) apt-get install -y -qq $(1); } >.make/apt.log 2>&1 || { cat .make/apt.log; false; }
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONDONTWRITEBYTECODE := 1
# uv: this interpreter (never a downloaded one), the project's .venv, compiled bytecode (as pip
# does: imports stay fast under PYTHONDONTWRITEBYTECODE), quiet progress.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_COMPILE_BYTECODE := 1
export UV_NO_PROGRESS := 1
UV_SYNC := $(UV) sync --quiet --locked
LINT_PATHS := cxlib tests benchmarks notebooks dashboards pipelines

.PHONY: run test check lint bench browser blas lock lock-upgrade test-latest clean help

help:
	@sed -n '1,19p' Makefile

run: $(VENV)/.installed-run
	$(BIN)/cx sample
	$(BIN)/cx validate --study data/telecom/study.yaml
	@echo "refreshing the sample study: the models sample their full posteriors, which takes"
	@echo "a few minutes on 2 cores the first time (later runs skip what is up to date)"
	$(BIN)/cx run pipelines/demo.yaml --jobs 2 || \
	  echo "cx run: some runs failed (summary above); serving the last published results"
	$(BIN)/cx serve

test: $(VENV)/.installed-test browser
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/python -m pytest

check: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/python -m pytest -m "not slow and not notebooks and not browser" -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINT_PATHS)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_dashboards.py

# The browser tests drive Debian's chromium (Playwright must not download a browser).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(call apt,chromium); }

# PyTensor compiles the models to C and links them to Debian's OpenBLAS (cxlib.models.blas
# finds it); without it the fits still run, slower, and cxlib says what to install.
blas:
	@if command -v dpkg >/dev/null && ! dpkg -s libopenblas-dev >/dev/null 2>&1; then \
	  echo "installing Debian's OpenBLAS (libopenblas-dev) for the models' compiled likelihoods"; \
	  $(call apt,libopenblas-dev) || \
	  echo "could not install libopenblas-dev: the models will run without an optimized BLAS"; \
	fi

# uv, pinned, in a venv of its own. python3-venv is Debian's; installed when missing.
$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "cx workbench needs Python 3.11 or newer; found $$($(PYTHON) --version)"; exit 1; }
	@rm -rf $(TOOLS); $(PYTHON) -m venv $(TOOLS) 2>/dev/null || { \
	  echo "python venv support is missing; installing Debian's python3-venv"; \
	  $(call apt,python3-venv) && rm -rf $(TOOLS) && $(PYTHON) -m venv $(TOOLS); }
	$(TOOLS)/bin/python -m pip install -qq uv==$(UV_VERSION)

$(VENV)/.installed-run: pyproject.toml uv.lock | $(UV) blas
	$(UV_SYNC)
	@touch $@

$(VENV)/.installed-test: pyproject.toml uv.lock | $(UV) blas
	$(UV_SYNC) --extra test
	@touch $@ $(VENV)/.installed-run

lock: | $(UV)
	$(UV) lock

lock-upgrade: | $(UV)
	$(UV) lock --upgrade

# Not part of CI: a drift check against the newest releases the ranges allow.
test-latest: | $(UV) blas browser
	rm -rf .make/latest
	$(UV) venv --quiet .make/latest
	$(UV) pip install --quiet --python .make/latest/bin/python --upgrade -e '.[test]'
	@echo "versions that differ from uv.lock:"
	@$(UV) pip freeze --quiet --python .make/latest/bin/python --exclude-editable | \
	  .make/latest/bin/python tests/lockfile.py --differences
	.make/latest/bin/ruff check $(LINT_PATHS)
	CX_TEST_LATEST=1 .make/latest/bin/python -m pytest

clean:
	rm -rf $(VENV) .make runs benchmarks/.work .pytest_cache .ruff_cache
