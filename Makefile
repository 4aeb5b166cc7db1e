# g4f-bridge: every target sets itself up; only Python 3.11+ and make are needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench bench-platforms bench-replicas clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev,g4f]'
	touch $(STAMP)

## Start every platform whose token is set (the terminal chat when none is).
run: setup
	$(BIN)/g4f-bridge run

## The test suite.
test: setup
	$(BIN)/python -m pytest

## Lint and type-check.
lint: setup
	$(BIN)/ruff check core bots tests bench
	$(BIN)/mypy

## Streaming benchmark (see README).
bench: setup
	$(BIN)/python bench/stream_bench.py

## Platform benchmark: the real adapters against the emulated Discord and Telegram (see README).
bench-platforms: setup
	$(BIN)/python bench/platform_bench.py

## Replicas benchmark: two real processes sharing Redis and PostgreSQL (see README).
bench-replicas: setup
	$(BIN)/python bench/replicas_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
