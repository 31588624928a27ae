# greenlane: `make run` and `make test` do every set-up step themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DURATION ?= 0
RATE ?= 2000
INFRA_OWNER := $(HOME)/.cache/greenlane/started-by-make-test

.PHONY: venv infra stop run test unit bench bench-restart lint lock clean deploy-files

venv: $(STAMP)

CONSTRAINTS := deploy/constraints.txt

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

# Re-resolves the newest versions inside pyproject.toml's ranges into deploy/constraints.txt, in
# a scratch venv. Then `make test`, and commit both files only if it passes (README: Upgrading).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q --upgrade pip
	.lock-venv/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '/^#/p' $(CONSTRAINTS); .lock-venv/bin/python -m pip freeze --exclude-editable; } \
	  > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .lock-venv
	@git diff --stat -- $(CONSTRAINTS) 2>/dev/null || true

infra: venv
	$(BIN)/greenlane infra up

stop: venv
	$(BIN)/greenlane infra down

run: infra
	$(BIN)/greenlane run --duration $(DURATION) --rate $(RATE)

# promtool (checks and unit-tests the alert rules in the suite): Debian's prometheus package,
# unpacked under ~/.cache/greenlane, never installed as a service.
PROMETHEUS_HOME := $(HOME)/.cache/greenlane/prometheus
PROMTOOL := $(PROMETHEUS_HOME)/usr/bin/promtool
PROMETHEUS_SERVER := $(PROMETHEUS_HOME)/usr/bin/prometheus
export GREENLANE_PROMTOOL := $(PROMTOOL)
export GREENLANE_PROMETHEUS := $(PROMETHEUS_SERVER)

$(PROMTOOL):
	mkdir -p $(PROMETHEUS_HOME)/deb
	cd $(PROMETHEUS_HOME)/deb && { apt-get download prometheus 2>/dev/null || \
	  { apt-get update -qq && apt-get download prometheus; }; }
	dpkg-deb -x $$(ls $(PROMETHEUS_HOME)/deb/prometheus_*.deb | tail -1) $(PROMETHEUS_HOME)
	@test -x $(PROMTOOL) && test -x $(PROMETHEUS_SERVER)

# The Prometheus Operator's CRDs, for the strict schema check of deploy/k8s-operator.
PROMETHEUS_OPERATOR_VERSION := v0.85.0
CRDS := $(HOME)/.cache/greenlane/crds/prometheus-operator-$(PROMETHEUS_OPERATOR_VERSION)
export GREENLANE_CRDS := $(CRDS)

$(CRDS)/monitoring.coreos.com_podmonitors.yaml: | venv
	$(BIN)/python -m greenlane.streams.devtools.crds --version $(PROMETHEUS_OPERATOR_VERSION) --into $(CRDS)

# Starts what is not running yet, runs every test, then stops only what it started.
test: venv $(PROMTOOL) $(CRDS)/monitoring.coreos.com_podmonitors.yaml
	$(BIN)/greenlane infra up --record $(INFRA_OWNER)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests; rc=$$?; \
	  $(BIN)/greenlane infra down --only-recorded $(INFRA_OWNER); exit $$rc

unit: venv
	$(BIN)/python -m pytest -q -m "not integration" tests

bench: infra
	$(BIN)/greenlane bench

# restart-to-ready and worker memory after 1,000,000 filings (about 10 minutes here)
bench-restart: infra
	$(BIN)/greenlane bench-restart

# the dashboard (from its panel definitions) and the Operator's PrometheusRule (from alerts.yml);
# a test checks they are current
deploy-files: venv
	$(BIN)/python -m greenlane.streams.devtools.deploy_files

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: stop
	rm -rf $(VENV)
