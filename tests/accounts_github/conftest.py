"""Sign in with GitHub against the emulator's OAuth app flow (fakegithub/oauth.py): its people,
organization and teams, and the portal configured to sign in with it."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin, urlsplit

import pytest
import requests

CLIENT_ID = "Iv1.portal0123456789"
CLIENT_SECRET = "github-oauth-secret-0123456789abcdef"  # noqa: S105 (the emulator's test app)
ORG = "acme-corp"
TEAM_GROUPS = "platform-deployers=Deployers,platform-leads=Approvers,platform-admins=staff"
CALLBACK = "/auth/complete/github/"


def seed(gh, callback_url: str) -> None:
    """lena: in the org and every platform team; alice: deployer; bob: in the org, no team;
    mallory: not in the org."""
    gh.add_user("lena", "Lena Ott", "lena@example.com")
    gh.add_user("alice", "Alice Ng", None, emails=[("alice@example.com", True, True)])
    gh.add_user("bob", "Bob Ray", "bob@example.com")
    gh.add_user("mallory", "Mallory", "mallory@example.com")
    gh.add_org(ORG, members=["lena", "alice"], public_members=["bob"])
    gh.add_org("other-corp", members=["mallory"])
    gh.set_team(ORG, "platform-deployers", ["lena", "alice"])
    gh.set_team(ORG, "platform-leads", ["lena"])
    gh.set_team(ORG, "platform-admins", ["lena"])
    # A team of the same name in another organization grants nothing here.
    gh.set_team("other-corp", "platform-deployers", ["mallory"])
    gh.add_oauth_app(CLIENT_ID, CLIENT_SECRET, callback_url)


def configure_portal(settings, gh) -> None:
    settings.GITHUB_OAUTH_CLIENT_ID = CLIENT_ID
    settings.GITHUB_OAUTH_CLIENT_SECRET = CLIENT_SECRET
    settings.GITHUB_OAUTH_ORG = ORG
    settings.GITHUB_OAUTH_TEAM_GROUPS = TEAM_GROUPS
    settings.GITHUB_OAUTH_URL = ""
    settings.GITHUB_API_URL = gh.api_url


@pytest.fixture
def github_app(gh, settings):
    """The emulator with its people and the portal's OAuth app; the portal signing in with it."""
    seed(gh, f"http://testserver{CALLBACK}")
    configure_portal(settings, gh)
    return gh


FORM = re.compile(r"<form method='post' action='([^']+)'>(.*?)</form>", re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def sign_in(client, gh, login: str | None = None, *, authorize: bool = True, next_url: str = ""):
    """Sign in as a person does: the portal (Django test client) sends the browser to the
    emulator's authorization page (real HTTP), where the person (signed in to GitHub as
    ``login``) presses Authorize or Cancel, and GitHub sends the browser back to the callback.
    Returns the portal's answer to the callback, or GitHub's page when it did not send it back."""
    if login is not None:
        gh.sign_in_web(login)
    response = client.post("/auth/login/github/", {"next": next_url} if next_url else {})
    location = response.headers.get("Location", "")
    assert response.status_code == 302 and location.startswith(f"{gh.url}/login/oauth/authorize?"), response
    page = requests.get(location, allow_redirects=False, timeout=10)
    if page.status_code == 200 and (found := FORM.search(page.text)):
        fields = {name: unescape(value) for name, value in HIDDEN.findall(found.group(2))}
        fields["authorize"] = "1" if authorize else "0"
        action = urljoin(location, found.group(1))
        page = requests.post(action, data=fields, allow_redirects=False, timeout=10)
    if page.status_code != 302:
        return page
    back = page.headers["Location"]
    assert back.startswith("http://testserver/"), back
    parts = urlsplit(back)
    return client.get(f"{parts.path}?{parts.query}")
