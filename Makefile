# mlstack: `make help` lists every target. `make run` and `make test` set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
UV_VERSION := 0.13.9
# checkov lives in its own venv, pinned here: added to the dev extra it resolves only by
# downgrading packages the stack is tested with (packaging 26.3 -> 23.2, pytest 9.2 -> 9.1,
# cachetools 7 -> 5, importlib-metadata 9 -> 7, tabulate), so it stays out of requirements.lock.
CHECKOV_VERSION := 3.3.30
CHECKOV := .venv-checkov/bin/checkov
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Cache bytecode: every pipeline step is a fresh Python process with heavy imports.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup system-deps run compile manifests drift replay scan test test-fast lint format bench lock feast-ui clean

help: ## List every target with one line
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@echo ">> creating $(VENV) from requirements.lock"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(PY) requirements.lock
	$(BIN)/uv pip install --quiet --python $(PY) --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) system-deps $(CHECKOV) ## Create .venv from the lock file and install the system servers tests use

system-deps: ## Install redis-server (Debian) for the Feast Redis tests, if missing
	@command -v redis-server >/dev/null || { \
	  echo ">> installing redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

run: $(STAMP) ## Run the training pipeline on the bundled data (KFP local runner)
	$(BIN)/mlstack run

compile: $(STAMP) ## Compile the pipelines to dist/*.yaml (KFP IR)
	$(BIN)/mlstack compile --out-dir dist

.PHONY: serve
serve: $(STAMP) ## Serve the champion on loopback (KServe V1/V2, Feast lookups, /metrics; serving.*)
	$(BIN)/mlstack serve

manifests: $(STAMP) ## Render manifests/ from the chart and the config (chart, Katib Experiment, InferenceService)
	$(BIN)/mlstack manifests --out-dir manifests

test: setup ## Run the whole test suite (unit, component, integration)
	$(BIN)/pytest -q

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest -q tests/unit

$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

scan: $(STAMP) $(CHECKOV) ## Security scan of the rendered Helm chart (checkov, skips justified in helm/.checkov.yaml)
	$(BIN)/mlstack manifests --out-dir manifests
	$(CHECKOV) -f manifests/chart.yaml --config-file helm/.checkov.yaml

drift: $(STAMP) ## One drift check of the last window against the champion; the policy decides
	$(BIN)/mlstack drift

replay: $(STAMP) ## Replay the bundled data's timeline under three retraining policies (table + plot)
	nice -n 10 $(BIN)/mlstack replay --out-dir artifacts/replay

lint: $(STAMP) ## Lint and check formatting (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## Benchmarks: wall time and peak memory against reference implementations
	$(PY) bench/pipeline.py
	$(PY) bench/roc_ceiling.py
	$(PY) bench/foundation.py
	$(PY) bench/drift.py
	@command -v wrk >/dev/null || { echo ">> installing wrk (the serving bench's load generator)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(PY) bench/serving.py

lock: ## Re-resolve requirements.lock from pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

feast-ui: $(STAMP) ## Open the Feast UI on the feature repo (after `make run`)
	cd feature_repo && ../$(BIN)/feast ui --host 127.0.0.1

clean: ## Remove run outputs (artifacts/, dist/, local_outputs/, the Feast data)
	rm -rf artifacts dist local_outputs feature_repo/data
