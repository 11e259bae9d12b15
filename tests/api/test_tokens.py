"""Personal API tokens (made and revoked by their owner on /api/tokens/) and service tokens (made
by an administrator in the admin for a bot account): shown once, stored hashed, usable at once."""

import re

from django.contrib.auth.models import Group, User
from django.test import Client
from pytest_django.asserts import assertContains, assertNotContains

from api.models import ApiToken, digest
from deployments.models import DeploymentRequest
from tests.api.conftest import ApiClient
from tests.api.test_api import ACME_PROD
from tests.helpers import dispatches, logged_in_client, make_user

TOKEN = re.compile(r"pdp_[A-Za-z0-9_-]{43}")


def test_a_person_makes_a_token_that_is_shown_once(gh, deployer_client, deployer):
    response = deployer_client.post("/api/tokens/", {"name": "laptop script", "days": "30"})
    assert response.status_code == 201
    [token] = TOKEN.findall(response.content.decode())
    assertContains(response, "it is not stored and will not be shown again", status_code=201)
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.kind, row.digest) == (
        deployer,
        "laptop script",
        "personal",
        digest(token),
    )
    assert 29 <= (row.expires_at - row.created_at).days <= 30
    page = deployer_client.get("/api/tokens/")
    assert token not in page.content.decode()
    assertContains(page, f"{token[:8]}…")
    assert response["Cache-Control"].startswith("max-age=0")
    assert ApiClient(token).post("/api/v1/requests/", ACME_PROD).status_code == 201


def test_revoking_a_token_stops_it_at_once(gh, deployer_client):
    token = TOKEN.search(
        deployer_client.post("/api/tokens/", {"name": "ci", "days": "7"}).content.decode()
    ).group()
    client = ApiClient(token)
    assert client.get("/api/v1/pods/").status_code == 200
    assertContains(deployer_client.get("/api/tokens/"), "Revoke ci")
    row = ApiToken.objects.get()
    assert deployer_client.post(f"/api/tokens/{row.pk}/revoke/").status_code == 302
    assert client.get("/api/v1/pods/").status_code == 401
    page = deployer_client.get("/api/tokens/")
    assertContains(page, "revoked")
    assertNotContains(page, "Revoke ci")


def test_nobody_sees_or_revokes_anothers_token(gh, deployer, viewer_client):
    row, _ = ApiToken.issue(user=deployer, name="dana's")
    assertNotContains(viewer_client.get("/api/tokens/"), "dana&#x27;s")
    assert viewer_client.post(f"/api/tokens/{row.pk}/revoke/").status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None


def test_token_page_needs_a_signed_in_person_and_a_name(db, viewer_client):
    assert Client().get("/api/tokens/").status_code == 302
    response = viewer_client.post("/api/tokens/", {"name": "", "days": "30"})
    assert response.status_code == 400 and not ApiToken.objects.exists()
    response = viewer_client.post("/api/tokens/", {"name": "forever", "days": "36500"})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_an_administrator_makes_a_service_token_for_a_bot(gh):
    admin = make_user(username="root", staff=True, superuser=True)
    bot = User.objects.create_user("chatops-bot")
    bot.groups.add(Group.objects.get(name="Deployers"))
    response = logged_in_client(admin).post(
        "/admin/api/apitoken/add/",
        {"user": bot.pk, "name": "ChatOps", "kind": "service", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 200
    [token] = TOKEN.findall(response.content.decode())
    row = ApiToken.objects.get()
    assert (row.user, row.kind, row.created_by, row.expires_at) == (bot, "service", admin, None)
    assert row.digest == digest(token)
    response = ApiClient(token).post("/api/v1/requests/", ACME_PROD)
    assert response.status_code == 201 and response.json()["requested_by"] == "chatops-bot"
    request = DeploymentRequest.objects.get()
    assert {(e.actor.username, e.source) for e in request.events.all()} == {("chatops-bot", "api")}
    assert len(dispatches(gh)) == 1


def test_every_page_links_to_the_api_tokens_page(client, django_user_model):
    user = django_user_model.objects.create_user(username="paula", password="pw")
    client.force_login(user)
    page = client.get("/requests/")
    assert page.status_code == 200
    assert b'href="/api/tokens/"' in page.content
