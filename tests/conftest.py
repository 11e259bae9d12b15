import pytest
from django.contrib.auth.models import User
from django.core.cache import cache, caches

from deployments import gh as portal_gh
from deployments import health, inventory, live, notify
from tests.helpers import make_user

pytest_plugins = ["fakegithub.pytest_plugin"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file, not shared-cache memory, whose table locks ignore the busy
    timeout: concurrent-request tests then see real locking, as under gunicorn. Other engines
    keep pytest-django's per-worker database name suffix."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(autouse=True)
def _no_background_work_outlives_its_test():
    yield
    # A /health probe thread still running would read the next test's settings and reach (and
    # be counted by) its emulator.
    assert health.wait_for_probe(15)
    # Likewise a notification still being sent would reach the next test's receiver.
    assert notify.flush(15)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Each test user's password would cost ~0.5 s with the production hasher.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _unhashed_static_files(settings):
    # Production serves collected, hashed files; tests render templates without collectstatic.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # WhiteNoise scans STATIC_ROOT each time a handler starts (a test client's first request),
    # while the browser tier, in another worker, collects into it: a file it replaces between
    # the scan's listing and its stat failed a test with FileNotFoundError. No test in this
    # process serves collected files (the browser and container tiers do, from their own
    # processes).
    settings.STATIC_ROOT = None


def use_emulator(fakegithub, settings):
    """Point the portal at the emulator, with no GitHub state cached from another test."""
    settings.GITHUB_API_URL = fakegithub.api_url
    settings.GH_TOKEN = "test-token"
    settings.GH_REPO = "demo/pods"
    settings.GITHUB_WEBHOOK_SECRET = fakegithub.webhook_secret = "test-webhook-secret"
    settings.INVENTORY_FRESH_SECONDS = 0  # every listing asks GitHub, so tests see each request
    settings.PODS_PAGE_READS_SECONDS = 0  # every pods page reads the database (tests that reuse set it)
    portal_gh.reset()
    inventory._memo.clear()
    inventory._lease_taken.clear()
    live._reads.clear()
    cache.clear()
    caches["fragments"].clear()
    caches["pages"].clear()
    return fakegithub


@pytest.fixture
def gh(fakegithub, settings, db):
    """The GitHub emulator, the portal pointed at it."""
    return use_emulator(fakegithub, settings)


@pytest.fixture
def gh_tx(fakegithub, settings, transactional_db):
    """The emulator for tests whose threads need committed data (real transactions)."""
    return use_emulator(fakegithub, settings)


@pytest.fixture
def deployer(db) -> User:
    return make_user(username="dana", deployer=True)


@pytest.fixture
def viewer(db) -> User:
    return make_user(username="victor")


@pytest.fixture
def deployer_client(client, deployer):
    client.force_login(deployer)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def review_flow(settings):
    """The shipped review policy: every pod planned and reviewed, prod/production approved."""
    settings.AUTO_APPLY_ENVIRONMENTS = []
    settings.APPROVAL_REQUIRED_ENVIRONMENTS = ["prod", "production"]
    return settings


@pytest.fixture
def per_spec_reads(settings):
    """The per-spec REST reads (GraphQL's fallback), one blob request per spec."""
    settings.INVENTORY_GRAPHQL = False
    return settings
