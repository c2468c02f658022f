# mlstack: `make help` lists every target. `make run` and `make test` set themselves up.
SHELL := /bin/bash
comma := ,
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

# Containers: podman's settings live in the project (runc, cgroupfs, ulimits, host network),
# never in the machine's /etc; every podman call below and the rehearsal tests use this file.
export CONTAINERS_CONF := $(CURDIR)/podman/containers.conf
# The image the pipelines, the chart and the manifests name: `pipeline.base_image`, read from
# mlstack/config/operations.py (its one definition) without needing the venv.
IMAGE ?= $(shell sed -n 's/^ *base_image: str = "\(.*\)"$$/\1/p' mlstack/config/operations.py)
# The Dockerfile's FROM. Pulled when a registry is reachable; otherwise `make base-image`
# builds a stand-in from Debian packages (bookworm: Python 3.11) with debootstrap.
BASE_IMAGE ?= python:3.11-slim
DEBIAN_SUITE ?= bookworm
DEBIAN_MIRROR ?= $(or $(shell sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1),http://deb.debian.org/debian)
# A CA bundle the build's pip/uv trust (proxies with their own CA); empty: the base's roots.
CA_BUNDLE ?= $(wildcard /etc/ssl/certs/ca-certificates.crt)

.PHONY: help setup system-deps base-image image rehearse run compile manifests drift replay scan test test-fast lint format bench bench-scale lock feast-ui clean

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

system-deps: ## Install Debian packages tests and images use, if missing: redis-server, podman, runc, debootstrap
	@PATH="$$PATH:/usr/sbin:/sbin"; missing=""; for p in redis-server podman runc debootstrap; do \
	  command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo ">> installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

base-image: system-deps ## Build the base (BASE_IMAGE, python:3.11-slim) from Debian packages with debootstrap, unless podman has it
	@if podman image exists $(BASE_IMAGE); then echo ">> $(BASE_IMAGE) is present"; exit 0; fi; \
	set -euo pipefail; start=$$(date +%s); \
	rootfs=$$(mktemp -d /var/tmp/mlstack-base.XXXXXX); trap 'rm -rf "$$rootfs"' EXIT; \
	echo ">> debootstrap $(DEBIAN_SUITE) from $(DEBIAN_MIRROR) (python3, python3-pip, ca-certificates)"; \
	debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
	  $(DEBIAN_SUITE) "$$rootfs" $(DEBIAN_MIRROR) >"$$rootfs.log" 2>&1 || { tail -20 "$$rootfs.log"; exit 1; }; \
	rm -f "$$rootfs.log" "$$rootfs"/usr/lib/python3.11/EXTERNALLY-MANAGED; \
	ln -sf python3 "$$rootfs/usr/bin/python"; \
	rm -rf "$$rootfs"/var/lib/apt/lists/* "$$rootfs"/var/cache/apt/*.bin "$$rootfs"/var/cache/apt/archives/*.deb \
	  "$$rootfs"/usr/share/man/* "$$rootfs"/usr/share/locale/* "$$rootfs"/var/log/*.log; \
	find "$$rootfs"/usr/share/doc -type f ! -name copyright -delete; \
	tar -C "$$rootfs" -c . | podman import --quiet \
	  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
	  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - $(BASE_IMAGE) >/dev/null; \
	echo ">> built $(BASE_IMAGE) from Debian $(DEBIAN_SUITE) in $$(( $$(date +%s) - start )) s"

image: base-image ## Build the project's image with podman, tagged pipeline.base_image (CA_BUNDLE=<pem> for pip behind a proxy)
	@test -n "$(IMAGE)" || { echo "cannot read pipeline.base_image from mlstack/config/operations.py"; exit 1; }
	@start=$$(date +%s); \
	podman build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  $(if $(CA_BUNDLE),--secret id=ca_bundle$(comma)src=$(abspath $(CA_BUNDLE))) \
	  -t $(IMAGE) -f Dockerfile . && \
	echo ">> built $(IMAGE) in $$(( $$(date +%s) - start )) s; size:" && \
	podman image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' $(IMAGE)

run: $(STAMP) ## Run the training pipeline on the bundled data (KFP local runner)
	$(BIN)/mlstack run

compile: $(STAMP) ## Compile the pipelines to dist/*.yaml (KFP IR)
	$(BIN)/mlstack compile --out-dir dist

.PHONY: serve
serve: $(STAMP) ## Serve the champion on loopback (KServe V1/V2, Feast lookups, /metrics; serving.*)
	$(BIN)/mlstack serve

manifests: $(STAMP) ## Render manifests/ from the chart with the config's values (chart, InferenceService, CronJobs) and the Katib Experiment
	$(BIN)/mlstack manifests --out-dir manifests

test: setup image ## Run the whole test suite (unit, component, integration, the reduced cluster rehearsal)
	$(BIN)/pytest -q

rehearse: setup image ## The full cluster rehearsal: every step, Katib trial, the predictor and CronJobs in containers
	MLSTACK_REHEARSAL=full $(BIN)/pytest -q -s -p no:randomly tests/rehearsal -o addopts="" --timeout 3600

test-fast: $(STAMP) ## Unit tests only (the `unit` level marker)
	$(BIN)/pytest -q -m unit

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
	$(BIN)/lint-imports --no-cache

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
	$(PY) bench/soak.py

bench-scale: $(STAMP) ## Time and memory per step, ingest to batch score, at 1x/10x/100x CDNOW's customers, 1/2/8 shards (long)
	$(PY) bench/scale.py

lock: ## Re-resolve requirements.lock from pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

feast-ui: $(STAMP) ## Open the Feast UI on the feature repo (after `make run`)
	cd feature_repo && ../$(BIN)/feast ui --host 127.0.0.1

clean: ## Remove run outputs (artifacts/, dist/, local_outputs/, the Feast data)
	rm -rf artifacts dist local_outputs feature_repo/data
