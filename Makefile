# cx workbench — the two commands: `make run` and `make test`.
#
#   make run    create .venv, install, build the sample study, validate it (data-quality
#               report), refresh and publish it through the demo pipeline (papermill), then
#               serve the dashboards (Voila) and print their URL
#   make test   create .venv with the test extra and Debian's chromium (browser tests), lint,
#               and run every test (incl. slow)
#
# Re-running either is quick: installs happen again only when pyproject.toml changes.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test lint bench browser clean help

help:
	@sed -n '1,11p' Makefile

run: $(VENV)/.installed-run
	$(BIN)/cx sample
	$(BIN)/cx validate --study data/telecom/study.yaml
	@echo "refreshing the sample study: the models sample their full posteriors, which takes"
	@echo "several minutes on 2 cores the first time (later runs skip what is up to date)"
	$(BIN)/cx run pipelines/demo.yaml --jobs 2 || \
	  echo "cx run: some runs failed (summary above); serving the last published results"
	$(BIN)/cx serve

test: $(VENV)/.installed-test browser
	$(BIN)/ruff check cxlib tests benchmarks notebooks dashboards pipelines
	$(BIN)/python -m pytest

# The browser tests drive Debian's chromium (Playwright must not download a browser).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

lint: $(VENV)/.installed-test
	$(BIN)/ruff check cxlib tests benchmarks notebooks dashboards pipelines

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_dashboards.py

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "cx workbench needs Python 3.11 or newer; found $$($(PYTHON) --version)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python venv support is missing; installing Debian's python3-venv"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@ $(VENV)/.installed-run

clean:
	rm -rf $(VENV) runs benchmarks/.work .pytest_cache .ruff_cache
