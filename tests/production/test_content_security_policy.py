"""Every response carries a strict Content-Security-Policy, and no template needs an exception."""

import re
from pathlib import Path

import pytest

from tests.helpers import logged_in_client, make_user

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().partition(" ")[::2] for part in header.split(";") if part.strip())


def assert_strict(response) -> None:
    directives = policy(response)
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/accounts/login/", "/no/such/page/", "/health", "/health/live", "/"])
def test_anonymous_responses_carry_the_policy(client, db, path):
    assert_strict(client.get(path))


@pytest.mark.parametrize("path", ["/requests/", "/admin/", "/admin/deployments/deploymentrequest/"])
def test_signed_in_pages_and_the_admin_carry_the_policy(db, path):
    client = logged_in_client(make_user(username="root", staff=True, superuser=True))
    response = client.get(path)
    assert response.status_code == 200
    assert_strict(response)


def test_the_lockout_page_carries_the_policy(client, db, settings):
    settings.AXES_FAILURE_LIMIT = 1
    response = client.post("/accounts/login/", {"username": "nobody", "password": "wrong"})
    assert response.status_code == 429
    assert_strict(response)


INLINE = [
    (r"<script(?![^>]*\bsrc=)[^>]*>", "inline <script>"),
    (r"<style\b", "<style> block"),
    (r"\sstyle\s*=", "style= attribute"),
    (r"\son[a-z]+\s*=", "event handler attribute"),
    (r"javascript:", "javascript: URL"),
]


@pytest.mark.parametrize("template", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: p.name)
def test_templates_have_no_inline_script_or_style(template):
    text = template.read_text()
    found = [what for pattern, what in INLINE if re.search(pattern, text, re.IGNORECASE)]
    assert not found, f"{template.name}: {', '.join(found)} is blocked by the Content-Security-Policy"
