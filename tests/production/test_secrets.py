"""The portal's secrets never reach a log line or a page, whatever the page or failure."""

import logging
import uuid

import pytest
from django.core.cache import cache

from deployments import gh as portal_gh
from tests.fakegithub import apphelpers
from tests.helpers import EDIT_ACME_PROD, form, make_user

TOKEN = "ghp_SecretTokenValue0000Zebra1111Quokka"
WEBHOOK_SECRET = "whsec-Secret-Value-Narwhal-2222"
SECRET_KEY = "django-Secret-Key-Value-Axolotl-3333-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def secret_portal(gh, settings, caplog):
    """The portal on the emulator with distinctive secrets, every logger captured at DEBUG."""
    settings.GH_TOKEN = gh.token = TOKEN
    settings.GITHUB_WEBHOOK_SECRET = gh.webhook_secret = WEBHOOK_SECRET
    settings.SECRET_KEY = SECRET_KEY
    for name in (None, "github", "urllib3", "django", "deployments"):
        caplog.set_level(logging.DEBUG, logger=name)
    return gh


def secrets_in(text: str, private_key: str = "") -> list[str]:
    values = [TOKEN, WEBHOOK_SECRET, SECRET_KEY]
    if private_key:
        values += [private_key.strip(), *[line for line in private_key.splitlines() if len(line) > 40]]
    return [value for value in values if value in text]


def drive_every_page(client, gh) -> str:
    """The pages a user and a monitor see, including failures; returns all bodies."""
    bodies = []

    def keep(response):
        bodies.append(response.content.decode())
        return response

    keep(client.get("/"))
    keep(client.get("/pods/acme/prod/edit/"))
    keep(client.post("/deploy/preview/", form(EDIT_ACME_PROD)))
    deployed = keep(client.post("/deploy/", form(EDIT_ACME_PROD)))
    assert deployed.status_code == 302
    keep(client.get(deployed["Location"]))
    keep(client.get("/requests/"))
    keep(client.get("/health"))
    keep(client.get("/health/live"))
    gh.add_fault("POST", r"/dispatches$", status=502)
    globex = EDIT_ACME_PROD | {"customer": "globex", "instance_name": "globex-web"}
    failed = keep(client.post("/deploy/", globex | {"idempotency_key": str(uuid.uuid4())}))
    assert failed.status_code == 503
    keep(client.get("/admin/deployments/deploymentrequest/"))
    return "\n".join(bodies)


def test_token_webhook_secret_and_secret_key_never_logged_or_rendered(
    secret_portal, settings, client, caplog
):
    client.force_login(make_user(username="sam", deployer=True, staff=True, superuser=True))
    bodies = drive_every_page(client, secret_portal)
    # GitHub rejects the credentials: the error page and its log lines must not echo them.
    secret_portal.token = "another-token"
    cache.clear()
    rejected = client.get("/")
    unhealthy = client.get("/health")
    assert rejected.status_code == 503
    assert "Bad credentials" in rejected.content.decode()
    assert unhealthy.status_code == 503
    bodies += rejected.content.decode() + unhealthy.content.decode()
    assert any(r.name.startswith("github") and r.levelno == logging.DEBUG for r in caplog.records)
    assert secrets_in(caplog.text) == []
    assert secrets_in(bodies) == []


def test_app_private_key_never_logged_or_rendered(secret_portal, settings, client, caplog):
    private_key = apphelpers.configure_app(secret_portal)
    settings.GH_TOKEN = ""
    settings.GITHUB_APP_ID = str(apphelpers.APP_ID)
    settings.GITHUB_APP_PRIVATE_KEY = private_key
    settings.GITHUB_APP_INSTALLATION_ID = str(apphelpers.INSTALLATION_ID)
    portal_gh.reset()  # a cached client's installation token died with the last reset
    client.force_login(make_user(username="sam", deployer=True, staff=True, superuser=True))
    bodies = drive_every_page(client, secret_portal)
    assert secrets_in(caplog.text, private_key) == []
    assert secrets_in(bodies, private_key) == []
