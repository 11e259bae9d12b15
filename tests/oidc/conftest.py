"""A real OpenID Provider (npm's oidc-provider, tests/oidc/provider.mjs) on loopback, and the
portal configured to sign in with it.

Each xdist worker starts one provider for its session. Its users (password, e-mail, groups)
live in a JSON file the provider re-reads at every sign-in: ``provider.set_users`` changes
someone's groups as an IdP administrator would.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from accounts import oidc

HERE = Path(__file__).resolve().parent
CLIENT_ID = "pod-portal"
CLIENT_SECRET = "test-client-secret-0123456789"
PASSWORD = "idp-Password-42"
GROUP_MAP = "platform-deployers=Deployers,platform-leads=Approvers,platform-admins=staff"
USERS = {
    "alice": {
        "password": PASSWORD,
        "email": "alice@example.com",
        "name": "Alice Ng",
        "groups": ["platform-deployers"],
    },
    "bob": {"password": PASSWORD, "email": "bob@example.com", "name": "Bob Ray", "groups": ["engineering"]},
    "lena": {
        "password": PASSWORD,
        "email": "lena@example.com",
        "name": "Lena Ott",
        "groups": ["platform-deployers", "platform-leads", "platform-admins"],
    },
}


@dataclass
class OpenIDProvider:
    issuer: str
    users_file: Path
    process: subprocess.Popen = field(repr=False)

    def set_users(self, users: dict) -> None:
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        tmp.replace(self.users_file)

    def set_groups(self, username: str, groups: list[str]) -> None:
        users = json.loads(self.users_file.read_text())
        users[username]["groups"] = groups
        self.set_users(users)


def install_provider(lock_dir: Path) -> None:
    """npm ci in tests/oidc when needed (make test does it first), one worker at a time."""
    with open(lock_dir / "oidc-npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run([str(HERE / "ensure_provider.sh")], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"The test OpenID Provider could not be installed:\n{result.stderr[-2000:]}")


def start_provider(workdir: Path, redirect_uris: list[str]) -> OpenIDProvider:
    users_file = workdir / "users.json"
    users_file.write_text(json.dumps(USERS))
    config = workdir / "provider.json"
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": redirect_uris}]
    config.write_text(json.dumps({"clients": clients, "users_file": str(users_file)}))
    log = open(workdir / "provider.log", "w")  # noqa: SIM115 (kept open for the process's life)
    process = subprocess.Popen(
        ["node", str(HERE / "provider.mjs"), str(config)],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "NODE_ENV": "test"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            if line.startswith("ISSUER "):
                return OpenIDProvider(issuer=line.split()[1], users_file=users_file, process=process)
            if not line and process.poll() is not None:
                break
    process.kill()
    pytest.fail(f"The OpenID Provider did not start:\n{(workdir / 'provider.log').read_text()[-3000:]}")


def stop_provider(provider: OpenIDProvider) -> None:
    provider.process.terminate()
    provider.process.wait(timeout=10)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory):
    install_provider(tmp_path_factory.getbasetemp().parent)
    provider = start_provider(tmp_path_factory.mktemp("oidc"), ["http://testserver/oidc/callback/"])
    yield provider
    stop_provider(provider)


def configure_portal(settings, provider: OpenIDProvider) -> None:
    """Point the portal's sign-in at ``provider``, its users as shipped."""
    provider.set_users(USERS)
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_DISCOVERY_URL = ""
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_GROUP_MAP = GROUP_MAP
    settings.OIDC_PROVIDER_NAME = "Test IdP"
    oidc.reset()


@pytest.fixture
def idp(oidc_provider, settings, db):
    """The portal configured to sign in with the provider; the provider's users as shipped."""
    configure_portal(settings, oidc_provider)
    yield oidc_provider
    oidc.reset()


FORM_ACTION = re.compile(r'<form method="post" action="([^"]+)"')


def sign_in(
    client,
    provider: OpenIDProvider,
    username: str,
    password: str = PASSWORD,
    *,
    browser=None,
    start: str = "",
):
    """Sign in as a person does, following every redirect over HTTP: the portal (Django test
    client) sends the browser to the provider (real HTTP), whose login page is filled in and
    which sends the browser back to the portal's callback. Returns the portal's last response
    (or the provider's page, when it did not send the browser back)."""
    browser = browser or requests.Session()
    response = client.get(start or "/oidc/authenticate/")
    location = response.headers.get("Location", "")
    assert response.status_code == 302 and location.startswith(provider.issuer), response
    idp_response = None
    for _ in range(20):
        if location.startswith("http://testserver/"):
            parts = urlsplit(location)
            return client.get(f"{parts.path}?{parts.query}")
        if not location.startswith(provider.issuer):
            raise AssertionError(f"redirected off the provider to {location}")
        idp_response = browser.get(location, allow_redirects=False, timeout=10)
        if idp_response.is_redirect:
            location = urljoin(idp_response.url, idp_response.headers["Location"])
            continue
        action = FORM_ACTION.search(idp_response.text)
        if idp_response.status_code != 200 or not action or "Wrong username" in idp_response.text:
            return idp_response
        idp_response = browser.post(
            urljoin(idp_response.url, action.group(1)),
            data={"username": username, "password": password},
            allow_redirects=False,
            timeout=10,
        )
        if not idp_response.is_redirect:
            return idp_response
        location = urljoin(idp_response.url, idp_response.headers["Location"])
    raise AssertionError("too many redirects")
