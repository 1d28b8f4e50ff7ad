# Set-up lives here: `make serve` and `make test` each create or update .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
PORT ?= 8080

.PHONY: install serve test lint bench clean

install: $(STAMP) $(TOOLS_STAMP)

# Re-installs only when pyproject.toml changes; the package itself is installed editable.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $(STAMP)

# checkov and the moto AWS emulator, for the deployment checks in the test suite.
$(TOOLS_STAMP): deploy/tools-requirements.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r deploy/tools-requirements.txt
	touch $(TOOLS_STAMP)

serve: $(STAMP)
	$(BIN)/model-manager serve --port $(PORT) --demo

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache .mypy_cache .ruff_cache

# Benchmarks, never part of `make test`; results are appended to bench/results/*.jsonl.
bench: install
	$(BIN)/python bench/cache.py
