# Developer commands for the portal. `make help` lists them.
#
#   make run    start web + worker + beat with demo data (embedded default: DEBUG=1,
#               SQLite + filesystem broker under var/, nothing else to install)
#   make test   run every test; uses DATABASE_URL / CELERY_BROKER_URL if you set them
#               (CI: PostgreSQL + Redis), else SQLite + the filesystem broker under var/test/;
#               then the fault-injection suite (make test-faults)
#   make test-faults  the fault-injection suite alone, on a PostgreSQL cluster of its own

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
# Written after a successful install; older than pyproject.toml means "install again". The
# test extras (about 500 MB more) come only with the targets that need them.
INSTALL_STAMP := $(VENV)/.install-stamp
TEST_INSTALL_STAMP := $(VENV)/.install-test-stamp
AWS_INSTALL_STAMP := $(VENV)/.install-local-aws-stamp
PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=
TEST_VAR_DIR := $(CURDIR)/var/test
FAULTS_VAR_DIR := $(CURDIR)/var/test-faults
# The fault suite gets PYTEST_ARGS too unless told otherwise (e.g. FAULTS_PYTEST_ARGS=-x).
FAULTS_PYTEST_ARGS ?= $(PYTEST_ARGS)

.PHONY: help install install-test install-aws run run-aws migrate seed bench test test-regular test-faults e2e-aws clean distclean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(INSTALL_STAMP) ## create .venv (python3 -m venv) and pip install -e . (what the portal needs to run) when pyproject.toml changed

install-test: $(TEST_INSTALL_STAMP) ## install -e ".[test]" too: pytest, moto, Playwright, schemathesis (make test and make bench do this)

install-aws: $(AWS_INSTALL_STAMP) ## install -e ".[local-aws]" too: moto's server, for make run-aws

$(INSTALL_STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -e .
	@touch $@

$(AWS_INSTALL_STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -e ".[local-aws]"
	@touch $@ $(INSTALL_STAMP)

$(TEST_INSTALL_STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install --disable-pip-version-check --quiet -e ".[test]"
	@touch $@ $(INSTALL_STAMP)

# Local commands default to DEBUG=1 so they run without a SECRET_KEY (settings refuse that
# otherwise). An explicit DEBUG in the environment wins.
run run-aws migrate seed bench: export DEBUG ?= 1
run run-aws: export PORT := $(PORT)
# make run-aws: moto's server as the simulated AWS (any credentials work there).
run-aws: export DEVSTACK_MOTO_PORT ?= 5000
run-aws: export AWS_ACCESS_KEY_ID ?= testing
run-aws: export AWS_SECRET_ACCESS_KEY ?= testing

run: install ## start web (127.0.0.1:$PORT, default 8000) + Celery worker + beat with demo data; Ctrl-C stops all
	$(MANAGE) migrate --noinput
	$(MANAGE) seed_demo
	@case "$${DEBUG,,}" in \
	  1|true|yes|on) echo "DEBUG on: WhiteNoise serves static files from the app folders; collectstatic skipped" ;; \
	  *) $(MANAGE) collectstatic --noinput --verbosity 0 ;; \
	esac
	exec $(BIN)/python scripts/devstack.py

run-aws: install-aws ## make run plus a moto server (port $DEVSTACK_MOTO_PORT, default 5000) and an aws account aimed at it, for ecs-service / ecs-fullstack
	$(MANAGE) migrate --noinput
	$(MANAGE) seed_demo
	exec $(BIN)/python scripts/devstack.py

migrate: install ## apply database migrations
	$(MANAGE) migrate --noinput

seed: install ## create the demo departments, accounts, products and logins (idempotent)
	$(MANAGE) seed_demo

test: install-test ## run all tests: the regular suite, then the fault-injection suite (exit code 5 = no tests collected is an error too)
	@rc=0; \
	$(MAKE) --no-print-directory test-regular || rc=$$?; \
	$(MAKE) --no-print-directory test-faults || { frc=$$?; [ $$rc -ne 0 ] || rc=$$frc; }; \
	exit $$rc

test-regular: install-test ## the regular suite alone (everything but tests/faults, which it shows as skipped)
	@echo "pytest: DATABASE_URL=$${DATABASE_URL:-<SQLite under var/test>} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-<filesystem under var/test>}"
	@rc=0; \
	PORTAL_VAR_DIR="$(TEST_VAR_DIR)" SECRET_KEY="test-only-insecure-secret-key-for-pytest" PORTAL_TEST_FAST_HASHER=1 RUN_LEASE_SECONDS=$${RUN_LEASE_SECONDS:-15} ENVIRONMENT_CREATE_RATE=$${ENVIRONMENT_CREATE_RATE:-100000/hour} \
	  $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - that is a failure" >&2; fi; \
	exit $$rc

test-faults: install-test ## the fault-injection suite: a private PostgreSQL cluster (initdb), real worker, gunicorn, Terraform; report in var/test-faults/faults-report.json
	@echo "fault suite: a private PostgreSQL cluster under var/faults/; CELERY_BROKER_URL=$${CELERY_BROKER_URL:-<filesystem under var/test-faults>}"
	@rc=0; \
	PORTAL_VAR_DIR="$(FAULTS_VAR_DIR)" SECRET_KEY="test-only-insecure-secret-key-for-pytest" PORTAL_TEST_FAST_HASHER=1 RUN_LEASE_SECONDS=$${RUN_LEASE_SECONDS:-15} ENVIRONMENT_CREATE_RATE=$${ENVIRONMENT_CREATE_RATE:-100000/hour} \
	  $(BIN)/python -m tests.faults.cluster -- $(BIN)/pytest tests/faults $(FAULTS_PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-faults: pytest collected no tests - that is a failure" >&2; fi; \
	exit $$rc

e2e-aws: install ## live smoke test in a REAL sandbox AWS account (never in CI; see scripts/e2e_aws.py for the variables)
	$(BIN)/python scripts/e2e_aws.py

bench: install-test ## run bench/provisioning.py (needs Redis; BENCH_ARGS="--reps 3"); JSON also in bench/results/
	@mkdir -p bench/results
	$(BIN)/python bench/provisioning.py $(BENCH_ARGS) | tee bench/results/provisioning-$$(date +%Y%m%d-%H%M%S).json

clean: ## remove local state (var/: database, broker, run folders) and caches; keeps .venv
	rm -rf var .pytest_cache build bench/results tests/artifacts *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
