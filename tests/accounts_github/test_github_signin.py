"""Sign in with GitHub through the emulator's OAuth web flow (real HTTP for every GitHub call):
organization membership required, teams mapped onto the portal's groups at every sign-in."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from pytest_django.asserts import assertContains
from social_django.models import UserSocialAuth

from accounts import github
from fakegithub import FakeGitHub
from tests.accounts_github.conftest import CALLBACK, CLIENT_ID, ORG, configure_portal, seed, sign_in
from tests.helpers import EDIT_ACME_PROD, dispatches, form, make_user

NOT_A_MEMBER = "is not a member of the acme-corp organization"
DID_NOT_COMPLETE = "Signing in with GitHub did not complete. Try again"


def groups(user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def oauth_calls(gh) -> list[str]:
    return [
        f"{r.method} {r.path}"
        for r in gh.requests
        if r.path.startswith(("/login/oauth/access_token", "/user", "/orgs/"))
    ]


def test_login_page_offers_github_beside_the_local_form(github_app, client):
    response = client.get("/accounts/login/?next=/requests/")
    page = response.content.decode()
    assert '<form method="post" action="/auth/login/github/"' in page
    assert '<input type="hidden" name="next" value="/requests/">' in page
    assert page.index("Sign in with GitHub") < page.index('name="password"')
    assertContains(response, "Sign in with a local account")
    # The form's redirect to GitHub's authorization page must be allowed (Chromium enforces it).
    assert f"form-action 'self' {github_app.url}" in response["Content-Security-Policy"]


def test_without_github_settings_there_is_no_button_and_no_route(db, client):
    response = client.get("/accounts/login/")
    assert "Sign in with GitHub" not in response.content.decode()
    assert "form-action 'self';" in response["Content-Security-Policy"] + ";"
    assert client.post("/auth/login/github/").status_code == 404
    assert client.get("/auth/complete/github/?code=x&state=y").status_code == 404


def test_with_sso_and_github_the_login_page_offers_both(github_app, client, settings):
    settings.OIDC_ISSUER, settings.OIDC_RP_CLIENT_ID = "https://idp.example.com", "portal"
    settings.OIDC_PROVIDER_NAME = "Example IdP"
    page = client.get("/accounts/login/").content.decode()
    sso, github_button = page.index("Sign in with Example IdP"), page.index("Sign in with GitHub")
    assert sso < github_button < page.index('name="password"')


def test_member_signs_in_with_mapped_groups_and_deploys(github_app, client):
    response = sign_in(client, github_app, "alice")
    assert response.status_code == 302 and response["Location"] == "/"
    social = UserSocialAuth.objects.get(provider="github")
    alice = social.user
    # No public address: the primary one from /user/emails.
    assert (alice.username, alice.email) == ("alice", "alice@example.com")
    assert social.uid == str(github_app.state.accounts.users["alice"]["id"])
    assert groups(alice) == ["Deployers"] and not alice.is_staff
    assert not alice.has_usable_password()
    # The token served to read who the person is; it is not kept.
    assert "access_token" not in social.extra_data and social.extra_data["teams"] == ["platform-deployers"]
    assert oauth_calls(github_app) == [
        "POST /login/oauth/access_token",
        "GET /user",
        "GET /user/emails",
        f"GET /orgs/{ORG}/members/alice",
        "GET /user/teams",
    ]
    [exchange] = [r for r in github_app.requests if r.path == "/login/oauth/access_token"]
    assert parse_qs(exchange.body.decode())["client_id"] == [CLIENT_ID]
    assertContains(client.get("/"), "alice")
    assert client.post("/deploy/", form(EDIT_ACME_PROD)).status_code == 302
    assert len(dispatches(github_app)) == 1


def test_teams_give_approvers_and_staff_and_removal_takes_them_away_at_next_sign_in(github_app, client):
    assert sign_in(client, github_app, "lena").status_code == 302
    lena = User.objects.get(social_auth__provider="github")
    assert groups(lena) == ["Approvers", "Deployers"] and lena.is_staff and not lena.is_superuser
    github_app.set_team(ORG, "platform-deployers", ["alice"])
    github_app.set_team(ORG, "platform-admins", [])
    client.logout()
    # Already authorized: GitHub skips its consent page and sends the browser straight back.
    response = sign_in(client, github_app, "lena")
    assert response.status_code == 302 and response["Location"] == "/"
    lena.refresh_from_db()
    assert groups(lena) == ["Approvers"] and not lena.is_staff
    assert User.objects.filter(social_auth__provider="github").count() == 1


def test_removed_from_the_deployers_team_cannot_deploy_after_the_next_sign_in(github_app, client):
    assert sign_in(client, github_app, "alice").status_code == 302
    github_app.set_team(ORG, "platform-deployers", ["lena"])
    # The session that was open keeps its rights until it ends: the team is read at sign-in.
    client.logout()
    assert sign_in(client, github_app, "alice").status_code == 302
    refused = client.post("/deploy/", form(EDIT_ACME_PROD))
    assertContains(refused, "You may browse pods but not deploy them", status_code=403)
    assert dispatches(github_app) == []


def test_member_without_a_team_signs_in_without_rights(github_app, client):
    # bob's membership is public (GET /orgs/{org}/members answers 204 to a member either way).
    assert sign_in(client, github_app, "bob").status_code == 302
    bob = User.objects.get(username="bob")
    assert groups(bob) == [] and not bob.is_staff
    assert client.post("/deploy/", form(EDIT_ACME_PROD)).status_code == 403


def test_someone_outside_the_organization_is_refused_with_a_clear_page(github_app, client):
    response = sign_in(client, github_app, "mallory")
    assert response.status_code == 403
    assertContains(response, NOT_A_MEMBER, status_code=403)
    assert not User.objects.filter(username="mallory").exists()
    assert not UserSocialAuth.objects.exists()
    # Not a member, so GitHub redirects the check to the public membership one, which says 404.
    assert f"GET /orgs/{ORG}/public_members/mallory" in oauth_calls(github_app)
    assert "_auth_user_id" not in client.session


def test_leaving_the_organization_refuses_the_next_sign_in(github_app, client):
    assert sign_in(client, github_app, "alice").status_code == 302
    github_app.set_org_members(ORG, ["lena"])
    client.logout()
    response = sign_in(client, github_app, "alice")
    assertContains(response, NOT_A_MEMBER, status_code=403)
    assert "_auth_user_id" not in client.session


def test_a_deactivated_account_is_refused_with_a_message(github_app, client):
    assert sign_in(client, github_app, "alice").status_code == 302
    User.objects.filter(username="alice").update(is_active=False)
    client.logout()
    response = sign_in(client, github_app, "alice")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    refused = "Your portal account is deactivated. Ask an administrator."
    assertContains(client.get("/accounts/login/"), refused)  # not sent back without a word
    assert "_auth_user_id" not in client.session


def test_a_local_account_of_the_same_name_is_not_taken_over(github_app, client):
    local = make_user(username="lena", deployer=False)
    assert sign_in(client, github_app, "lena").status_code == 302
    linked = User.objects.get(social_auth__provider="github")
    assert linked.pk != local.pk and linked.username.startswith("lena") and linked.username != "lena"
    local.refresh_from_db()
    assert groups(local) == [] and not local.is_staff and local.has_usable_password()


def test_signing_in_while_signed_in_as_someone_else_never_links_their_account(github_app, client):
    admin = make_user(username="root-admin", staff=True, superuser=True)
    client.force_login(admin)
    assert sign_in(client, github_app, "bob").status_code == 302
    bob = User.objects.get(social_auth__provider="github")
    assert bob.pk != admin.pk and bob.username == "bob"
    assert int(client.session["_auth_user_id"]) == bob.pk
    admin.refresh_from_db()
    assert admin.is_staff and admin.is_superuser and not admin.social_auth.exists()


def test_an_address_longer_than_the_column_is_not_kept(github_app, client):
    github_app.add_user("longmail", "Long Mail", "a" * 300 + "@example.com")
    github_app.set_org_members(ORG, ["lena", "alice", "longmail"])
    assert sign_in(client, github_app, "longmail").status_code == 302  # a 500 on PostgreSQL before
    assert User.objects.get(social_auth__provider="github").email == ""


NEXT = [
    ("/requests/", "/requests/"),
    ("https://evil.example/", "/"),
    ("//evil.example/", "/"),
    ("/\\evil.example/", "/"),
]


@pytest.mark.parametrize(("wanted", "landing"), NEXT)
def test_the_page_asked_for_is_where_the_sign_in_lands(github_app, client, wanted, landing):
    response = sign_in(client, github_app, "alice", next_url=wanted)
    assert response.status_code == 302 and response["Location"] == landing


def test_cancel_on_githubs_page_says_so(github_app, client):
    response = sign_in(client, github_app, "alice", authorize=False)
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assertContains(client.get("/accounts/login/"), "Signing in with GitHub was cancelled.")
    assert not User.objects.filter(username="alice").exists()


def test_a_callback_whose_state_is_not_the_sessions_is_refused(github_app, client):
    github_app.sign_in_web("alice")
    start = client.post("/auth/login/github/")
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["scope"] == ["read:org,user:email"] and query["state"]
    # A code for this app, delivered with another state (a forged or replayed callback).
    response = client.get(f"{CALLBACK}?code=anything&state=forged-state")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assertContains(client.get("/accounts/login/"), DID_NOT_COMPLETE)
    # And with no sign-in started at all.
    other = client_without_session()
    response = other.get(f"{CALLBACK}?code=anything&state=x")
    assert response.status_code == 302
    assert "/login/oauth/access_token" not in [r.path for r in github_app.requests]


def client_without_session():
    from django.test import Client

    return Client()


def test_a_code_github_refuses_is_a_clear_message(github_app, client):
    github_app.sign_in_web("alice")
    start = client.post("/auth/login/github/")
    state = parse_qs(urlsplit(start["Location"]).query)["state"][0]
    response = client.get(f"{CALLBACK}?code=not-a-code&state={state}")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assertContains(client.get("/accounts/login/"), DID_NOT_COMPLETE)
    [exchange] = [r for r in github_app.requests if r.path == "/login/oauth/access_token"]
    assert exchange.status == 200  # GitHub's bad_verification_code is a 200 naming the error
    assert not User.objects.filter(username="alice").exists()


def test_a_wrong_client_secret_is_a_clear_message(github_app, client, settings):
    settings.GITHUB_OAUTH_CLIENT_SECRET = "not-the-secret"
    response = sign_in(client, github_app, "alice")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assertContains(client.get("/accounts/login/"), DID_NOT_COMPLETE)


FAULTS = [{"status": 502}, {"drop": True}, {"status": 200, "body": ["not", "a", "user"]}]


@pytest.mark.parametrize("fault", FAULTS)
def test_github_failing_after_the_code_is_a_clear_message(github_app, client, fault):
    github_app.add_fault("GET", r"^/user$", **fault)
    response = sign_in(client, github_app, "alice")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assertContains(client.get("/accounts/login/"), DID_NOT_COMPLETE)
    assert not UserSocialAuth.objects.exists()


def test_github_enterprise_server(gh, settings, client):
    """GHES: the API under /api/v3, the OAuth web flow at the host's root."""
    with FakeGitHub(api_prefix="/api/v3", ghes=True) as ghes:
        seed(ghes, f"http://testserver{CALLBACK}")
        configure_portal(settings, ghes)
        assert settings.GITHUB_API_URL.endswith("/api/v3") and github.web_url() == f"{ghes.url}/"
        response = sign_in(client, ghes, "lena")
        assert response.status_code == 302 and response["Location"] == "/"
        assert groups(User.objects.get(username="lena")) == ["Approvers", "Deployers"]
        assert "GET /api/v3/user/teams" in [f"{r.method} {r.path}" for r in ghes.requests]


def test_web_host_is_derived_from_the_api_root(settings):
    settings.GITHUB_OAUTH_URL = ""
    settings.GITHUB_API_URL = "https://api.github.com"
    assert github.web_url() == "https://github.com/"
    settings.GITHUB_API_URL = "https://ghe.example.com/api/v3"
    assert github.web_url() == "https://ghe.example.com/"
    settings.GITHUB_OAUTH_URL = "https://login.ghe.example.com"
    assert github.web_url() == "https://login.ghe.example.com/"
