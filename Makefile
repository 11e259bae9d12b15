# The two commands: `make run` starts the portal, `make test` runs every test offline.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall whenever a requirements file changes.
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test lint bench browser nginx oidc-provider test-postgres

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

# Every test on SQLite (browser tests included), then the database tests again on PostgreSQL.
test: lint browser nginx oidc-provider
	$(PY) -m pytest -n 2
	$(MAKE) --no-print-directory test-postgres

browser:
	@scripts/ensure_chromium.sh

# The OpenID Provider the sign-in tests run (tests/oidc: npm's oidc-provider, from its lock file).
oidc-provider:
	@tests/oidc/ensure_provider.sh

# nginx for tests/production/test_slow_clients.py (deploy/nginx/portal.conf in front of gunicorn).
nginx:
	@scripts/ensure_nginx.sh

# A throwaway PostgreSQL server for the tests that touch the database.
test-postgres: $(STAMP)
	scripts/test_postgres.sh $(PY) -m pytest -n 2 -p tests.production.database_only \
		-m "not infra and not e2e" --ignore=tests/infra --ignore=tests/e2e

bench: $(STAMP)
	$(PY) -m bench
