"""Production settings: `check --deploy` is clean and a missing secret key fails loudly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "Zq3v-production-like-secret-key-with-enough-entropy-8fK2pLmN4xR7tW9yB1cD",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://portal.example.com",
    "GH_TOKEN": "ghp_productionlike000000000000000000000",
    "GH_REPO": "example/pods",
    "GITHUB_WEBHOOK_SECRET": "webhook-secret-for-the-check",
}


def run_manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    # A clean environment: only what production would set, none of the test suite's overrides.
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_reports_no_issues_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_flags_relaxed_transport_security():
    relaxed = PRODUCTION_ENV | {
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SESSION_COOKIE_SECURE": "false",
    }
    result = run_manage("check", "--deploy", env=relaxed)
    assert "security.W008" in result.stderr
    assert "security.W012" in result.stderr


def test_settings_without_secret_key_in_production_fail_with_a_clear_message():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "DJANGO_SECRET_KEY"}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY is not set." in result.stderr


def test_debug_mode_runs_without_a_secret_key():
    result = run_manage("check", env={"DJANGO_DEBUG": "true"})
    assert result.returncode == 0, result.stderr


GITHUB_SIGN_IN_ENV = {
    "GITHUB_OAUTH_CLIENT_ID": "Ov23liProductionLike00",
    "GITHUB_OAUTH_CLIENT_SECRET": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_OAUTH_ORG": "example",
    "GITHUB_OAUTH_TEAM_GROUPS": "platform-deployers=Deployers,platform-admins=staff",
}


def test_check_deploy_is_clean_with_sign_in_with_github():
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV | GITHUB_SIGN_IN_ENV
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr


def test_github_sign_in_without_an_organization_fails_with_a_clear_message():
    env = PRODUCTION_ENV | {k: v for k, v in GITHUB_SIGN_IN_ENV.items() if k != "GITHUB_OAUTH_ORG"}
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "GITHUB_OAUTH_ORG is required with GITHUB_OAUTH_CLIENT_ID" in result.stderr


@pytest.mark.parametrize("name", ["GITHUB_OAUTH_TEAM_GROUPS", "OIDC_GROUP_MAP"])
def test_a_malformed_group_map_stops_the_portal_with_a_clear_message(name):
    # Before, the portal started and every sign-in through the mapping answered 500.
    result = run_manage("check", env=PRODUCTION_ENV | GITHUB_SIGN_IN_ENV | {name: "platform-deployers"})
    assert result.returncode != 0
    assert f"{name} entries are idp-group=PortalGroup; got platform-deployers=." in result.stderr
