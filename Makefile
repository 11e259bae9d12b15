# The two commands: `make run` starts the portal, `make test` runs every test offline.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall whenever a requirements file changes.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test lint bench bench-quick browser nginx oidc-provider podman test-postgres test-container

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

run: $(STAMP)
	$(PY) scripts/run_portal.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	DJANGO_DEBUG=true DJANGO_SECRET_KEY= $(PY) -m mypy

# Every test on SQLite (browser tests included), then the database tests again on PostgreSQL;
# alongside both, the container tier (its output is shown when it ends; it mostly waits on podman).
test: lint browser nginx oidc-provider podman
	@log=$$(mktemp); $(MAKE) --no-print-directory test-container >$$log 2>&1 & container=$$!; \
	status=0; \
	$(PY) -m pytest -n 2 --ignore=tests/container || status=1; \
	$(MAKE) --no-print-directory test-postgres || status=1; \
	wait $$container || status=1; \
	echo "--- container tier (tests/container) ---"; cat $$log; rm -f $$log; exit $$status

browser:
	@scripts/ensure_chromium.sh
	@scripts/ensure_axe.sh

# The OpenID Provider the sign-in tests run (tests/oidc: npm's oidc-provider, from its lock file).
oidc-provider:
	@tests/oidc/ensure_provider.sh

# nginx for tests/production/test_slow_clients.py (deploy/nginx/portal.conf in front of gunicorn).
nginx:
	@scripts/ensure_nginx.sh

# A throwaway PostgreSQL server for the tests that touch the database.
test-postgres: $(STAMP)
	scripts/test_postgres.sh $(PY) -m pytest -n 2 -p tests.production.database_only \
		-m "not infra and not e2e" --ignore=tests/infra --ignore=tests/e2e --ignore=tests/container

# podman (and runc, debootstrap) for the container tier (scripts/ensure_podman.sh).
podman:
	@scripts/ensure_podman.sh

# The container tier: the Dockerfile built with podman and run for real (tests/container), in one
# process (its session owns the containers); its figures (image size, start-up, rolling restart,
# cross-instance counts) printed at the end.
test-container: $(STAMP)
	@report=$$(mktemp); status=0; start=$$(date +%s); \
	CONTAINER_REPORT=$$report $(PY) -m pytest -p no:xdist tests/container || status=$$?; \
	echo "Container tier figures ($$(( $$(date +%s) - start )) s):"; cat $$report; rm -f $$report; exit $$status

# `make bench-quick` (or `make bench BENCH=--quick`, `BENCH="--only deploy"`): make itself takes
# no --quick.
bench: $(STAMP)
	$(PY) -m bench $(BENCH)

bench-quick: $(STAMP)
	$(PY) -m bench --quick
