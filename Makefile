# Set-up lives here: `make serve` and `make test` each create or update .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SERVE_VENV := .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
TF := .venv-tf
TF_STAMP := $(TF)/.installed
PORT ?= 8080

.PHONY: install postgres chromium haproxy serve test lint bench crash fuzz proto clean

install: $(STAMP) $(TOOLS_STAMP) $(TF_STAMP) postgres chromium haproxy

# PostgreSQL 15's server binaries, for the tests that start a throwaway server.
postgres:
	@test -x /usr/lib/postgresql/15/bin/initdb || command -v initdb >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql)

# Debian's Chromium, for the dashboard's browser tests (Playwright drives it; no browser download).
chromium:
	@test -x /usr/bin/chromium || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's HAProxy (2.6), for the fleet tests: replicas behind deploy/haproxy/haproxy.cfg.
haproxy:
	@command -v haproxy >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy)

# Re-installs only when pyproject.toml changes; the package itself is installed editable.
$(STAMP): pyproject.toml constraints/test.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints/test.txt --editable '.[test]'
	touch $(STAMP)

# What serving the demo needs and nothing else (no test tools, no heavy frameworks): the base
# package and the demo extra, in an environment of its own so that `make test` never fights it.
$(SERVE_STAMP): pyproject.toml constraints/test.txt
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVE_VENV)/bin/python -m pip install --quiet --constraint constraints/test.txt --editable '.[demo]'
	touch $(SERVE_STAMP)

# checkov and the moto AWS emulator, for the deployment checks in the test suite.
$(TOOLS_STAMP): deploy/tools-requirements.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet -r deploy/tools-requirements.txt
	touch $(TOOLS_STAMP)

# TensorFlow 2.x, only to write the tf.keras .h5 files the Keras tests load.
$(TF_STAMP): tests/fixtures/tf-requirements.txt
	test -x $(TF)/bin/python || $(PYTHON) -m venv $(TF)
	$(TF)/bin/python -m pip install --quiet --upgrade pip
	$(TF)/bin/python -m pip install --quiet -r tests/fixtures/tf-requirements.txt
	touch $(TF_STAMP)

serve: $(SERVE_STAMP)
	$(SERVE_VENV)/bin/model-manager serve --port $(PORT) --demo

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy

# Three workers on two cores (two left an eighth of the CPU idle while tests waited), each taking
# whole test files (module-scoped servers stay within one worker), in the order
# tests/conftest.py gives them: the longest first. The package is byte-compiled first:
# where bytecode is not written on import (PYTHONDONTWRITEBYTECODE), each of the hundreds of
# server and CLI processes the suite starts would compile it again (0.06-0.12 s of CPU each).
test: lint
	$(BIN)/python -m compileall -q src tests
	$(BIN)/pytest -n 3 --dist loadfile --no-loadscope-reorder

# The crash-safety test with 200 kills instead of the suite's 30.
crash: install
	MODEL_MANAGER_TEST_KILLS=200 $(BIN)/pytest tests/e2e/test_crash_safety.py

# The hostile-input tests with 20 times the suite's examples.
fuzz: install
	MODEL_MANAGER_FUZZ_EXAMPLES=3000 $(BIN)/pytest tests/e2e/test_fuzz.py

# The gRPC messages and stubs, compiled from the .proto beside them (checked in; run after an edit).
proto: install
	cd src && ../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. \
		--grpc_python_out=. model_manager/api/grpc/generated/inference.proto

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(TOOLS) $(TF) var .pytest_cache .mypy_cache .ruff_cache

# Benchmarks, never part of `make test`; results are appended to bench/results/*.jsonl.
bench: install
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/shadow.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/peers.py
	$(BIN)/python bench/grpc.py
	$(BIN)/python bench/fleet.py
	$(BIN)/python bench/isolation.py
	$(BIN)/python bench/text_models.py
	$(BIN)/python bench/drift.py
	$(BIN)/python bench/hot_path.py
	$(BIN)/python bench/peers.py --systems ours-sklearn,ours-sklearn-batched --models rf100 \
		--concurrency 8,64 --bodies json
