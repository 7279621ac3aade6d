# Cascade: every target creates and uses the local virtualenv (.venv) itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080

.DEFAULT_GOAL := help

.PHONY: help
help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing cascade and its pinned dependencies into $(VENV)"
	$(BIN)/pip install --disable-pip-version-check -q -U pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,postgres,kafka]'
	@touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv with cascade and the dev tools

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on src/
	$(BIN)/ruff check src tests functions bench examples
	$(BIN)/ruff format --check src tests functions bench examples
	$(BIN)/mypy

.PHONY: fmt
fmt: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests functions bench examples
	$(BIN)/ruff format src tests functions bench examples

.PHONY: unit
unit: $(STAMP) ## Fast tests only (no servers started)
	$(BIN)/pytest -q tests/unit tests/contract

.PHONY: test
test: lint ## Lint, type-check and run the whole test suite
	$(BIN)/pytest -q

.PHONY: check
check: lint unit ## Fast checks first: lint, types, unit tests

.PHONY: run
run: $(STAMP) ## Start the example function on http://127.0.0.1:$(PORT) (Ctrl-C stops it)
	$(BIN)/cascade serve examples/greeter --port $(PORT)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks in bench/ and print ratio tables
	$(BIN)/python -m bench.function_throughput
	$(BIN)/python -m bench.broker_throughput

.PHONY: clean
clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) .cascade .pytest_cache .mypy_cache .ruff_cache
