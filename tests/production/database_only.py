"""pytest plugin for the PostgreSQL run (``-p tests.production.database_only``).

Keeps only the tests that use the database: the others already ran on SQLite and do not
depend on the database engine.

It also gives each xdist worker its own database. tests/conftest.py overrides
``django_db_modify_db_settings`` (to put SQLite in a file) without pytest-django's per-worker
suffix, so two workers would both create ``test_portal`` on one PostgreSQL server. The
worker id is known before Django reads its settings, so it goes into ``DATABASE_URL`` here.
"""

import os

import pytest

DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}

_worker = os.environ.get("PYTEST_XDIST_WORKER")
if _worker and os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
    os.environ["DATABASE_URL"] = f"{os.environ['DATABASE_URL'].rstrip('/')}_{_worker}"


def uses_database(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & DATABASE_FIXTURES) or item.get_closest_marker("django_db") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = [item for item in items if not uses_database(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if uses_database(item)]
