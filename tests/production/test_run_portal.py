"""`make run` (scripts/run_portal.py): debug mode in the sandbox only, never with real credentials."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_portal.py"


@pytest.fixture(scope="module")
def run_portal():
    spec = importlib.util.spec_from_file_location("run_portal", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sandbox_runs_in_debug_mode(run_portal):
    env = run_portal.portal_environment({"PATH": "/usr/bin"})
    assert env["DJANGO_DEBUG"] == "true"


def test_the_sandbox_keeps_debug_mode_off_when_asked(run_portal):
    env = run_portal.portal_environment({"DJANGO_DEBUG": "false"})
    assert env["DJANGO_DEBUG"] == "false"


@pytest.mark.parametrize("credentials", [{"GH_TOKEN": "ghp_real"}, {"GITHUB_APP_ID": "12345"}])
def test_real_credentials_never_run_in_debug_mode(run_portal, credentials):
    assert run_portal.portal_environment(credentials)["DJANGO_DEBUG"] == "false"
    assert run_portal.portal_environment(credentials | {"DJANGO_DEBUG": "true"})["DJANGO_DEBUG"] == "false"


def test_real_credentials_get_production_settings_for_plain_http_on_loopback(run_portal):
    env = run_portal.portal_environment({"GH_TOKEN": "ghp_real"})
    assert len(env["DJANGO_SECRET_KEY"]) >= 50
    assert env["DJANGO_ALLOWED_HOSTS"] == "127.0.0.1,localhost"
    assert env["DJANGO_SECURE_SSL_REDIRECT"] == "false"
    assert env["DJANGO_SESSION_COOKIE_SECURE"] == "false"
    assert env["DJANGO_CSRF_COOKIE_SECURE"] == "false"


def test_real_credentials_keep_a_secret_key_that_is_set(run_portal):
    env = run_portal.portal_environment({"GH_TOKEN": "ghp_real", "DJANGO_SECRET_KEY": "kept"})
    assert env["DJANGO_SECRET_KEY"] == "kept"
