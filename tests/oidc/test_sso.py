"""Single sign-on against a real OpenID Provider (npm's oidc-provider on loopback): every
redirect followed over HTTP, the provider's own login page filled in, its groups claim mapped
onto the portal's groups at every sign-in."""

import pytest
from django.contrib.auth.models import User
from pytest_django.asserts import assertContains

from accounts import oidc
from accounts.models import ExternalIdentity
from tests.helpers import EDIT_ACME_PROD, dispatches, form, make_user
from tests.oidc.conftest import PASSWORD, sign_in

NOT_A_DEPLOYER = "You may browse pods but not deploy them"


def groups(user: User) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))


def test_login_page_leads_with_the_provider_and_keeps_local_accounts(idp, client):
    response = client.get("/accounts/login/?next=/requests/")
    page = response.content.decode()
    assert response.status_code == 200
    assert 'href="/oidc/authenticate/?next=/requests/"' in page
    assert page.index("Sign in with Test IdP") < page.index('name="password"')
    assertContains(response, "Sign in with a local account")


def test_login_page_without_sso_is_the_password_form(db, client):
    response = client.get("/accounts/login/")
    assert "Sign in with" not in response.content.decode()
    assertContains(response, 'name="password"')
    assert client.get("/oidc/authenticate/").status_code == 404


def test_deployer_signs_in_through_the_provider_and_deploys(idp, gh, client):
    response = sign_in(client, idp, "alice")
    assert response.status_code == 302 and response["Location"] == "/"
    alice = User.objects.get(identities__subject="alice", identities__issuer=idp.issuer)
    assert (alice.username, alice.email, alice.first_name, alice.last_name) == (
        "alice", "alice@example.com", "Alice", "Ng",
    )  # fmt: skip
    assert groups(alice) == ["Deployers"]
    assert not alice.has_usable_password() and not alice.is_staff
    assertContains(client.get("/"), "alice")
    response = client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 302
    [sent] = dispatches(gh)
    assert sent.json["inputs"]["instance_type"] == "t3.large"


def test_user_outside_the_deployers_group_cannot_deploy(idp, gh, client):
    assert sign_in(client, idp, "bob").status_code == 302
    bob = User.objects.get(username="bob")
    assert groups(bob) == []
    assert client.get("/").status_code == 200  # may browse
    response = client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 403
    assertContains(response, NOT_A_DEPLOYER, status_code=403)
    assert dispatches(gh) == []


def test_group_removal_at_the_provider_takes_effect_at_next_sign_in(idp, gh, client):
    sign_in(client, idp, "lena")
    lena = User.objects.get(username="lena")
    assert groups(lena) == ["Approvers", "Deployers"] and lena.is_staff
    client.post("/accounts/logout/")

    idp.set_groups("lena", ["engineering"])
    assert sign_in(client, idp, "lena").status_code == 302
    lena.refresh_from_db()
    assert groups(lena) == [] and not lena.is_staff
    assert ExternalIdentity.objects.get(user=lena).groups == ["engineering"]
    assertContains(client.post("/deploy/", form(EDIT_ACME_PROD)), NOT_A_DEPLOYER, status_code=403)
    assert dispatches(gh) == []

    idp.set_groups("lena", ["platform-deployers"])
    client.post("/accounts/logout/")
    sign_in(client, idp, "lena")
    assert groups(User.objects.get(username="lena")) == ["Deployers"]


def test_groups_the_map_does_not_name_are_left_alone(idp, client):
    sign_in(client, idp, "bob")
    bob = User.objects.get(username="bob")
    from django.contrib.auth.models import Group

    bob.groups.add(Group.objects.create(name="Auditors"))
    client.post("/accounts/logout/")
    sign_in(client, idp, "bob")
    assert groups(bob) == ["Auditors"]


def test_a_local_account_is_never_taken_over_by_the_provider(idp, client):
    local = make_user(username="alice", deployer=True)
    local.email = "alice@example.com"
    local.is_superuser = True
    local.save()
    sign_in(client, idp, "alice")
    signed_in = User.objects.get(identities__subject="alice")
    assert signed_in.pk != local.pk
    assert signed_in.username.startswith("alice-") and not signed_in.is_superuser
    assert client.get("/").context["user"] == signed_in
    # The local (break-glass) account still signs in with its password.
    client.post("/accounts/logout/")
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw"})
    assert response.status_code == 302
    assert client.get("/").context["user"] == local


def test_wrong_password_at_the_provider_signs_nobody_in(idp, client):
    response = sign_in(client, idp, "alice", password="not-" + PASSWORD)
    assert "Wrong username or password." in response.text
    assert not User.objects.filter(username="alice").exists()
    assert client.get("/").status_code == 302  # still signed out


def test_deactivated_account_cannot_sign_in(idp, client):
    sign_in(client, idp, "alice")
    User.objects.filter(username="alice").update(is_active=False)
    client.post("/accounts/logout/")
    response = sign_in(client, idp, "alice")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assertContains(client.get(response["Location"]), "Signing in with Test IdP did not complete")
    assert client.get("/").status_code == 302


def test_a_replayed_callback_signs_nobody_in(idp, client):
    response = client.get("/oidc/authenticate/")
    state = response["Location"].split("state=")[1].split("&")[0]
    response = client.get("/oidc/callback/", {"code": "forged", "state": state})
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def test_provider_answering_for_another_issuer_is_refused(idp, client, settings):
    settings.OIDC_ISSUER = idp.issuer + "/other"
    settings.OIDC_DISCOVERY_URL = idp.issuer + "/.well-known/openid-configuration"
    oidc.reset()
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 503
    assertContains(response, "Test IdP cannot be reached", status_code=503)


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (["a", "b", "a"], ["a", "b"]),
        ("a", ["a"]),
        (None, []),
        ({"a": 1}, []),
        ([1, "", "x" * 300, "ok"], ["ok"]),
    ],
)
def test_groups_claim_of_any_shape_is_read_safely(settings, claim, expected):
    settings.OIDC_GROUPS_CLAIM = "groups"
    assert oidc.idp_groups({"groups": claim}) == expected


def test_failed_callbacks_lock_nobody_out_and_passwords_are_still_throttled(idp, client, settings):
    from axes.models import AccessAttempt

    for _ in range(settings.AXES_FAILURE_LIMIT + 1):
        response = client.get("/oidc/authenticate/")
        state = response["Location"].split("state=")[1].split("&")[0]
        assert (
            client.get("/oidc/callback/", {"code": "forged", "state": state})["Location"]
            == "/accounts/login/"
        )
    assert not AccessAttempt.objects.exists()
    assert sign_in(client, idp, "alice")["Location"] == "/"
    client.post("/accounts/logout/")
    make_user(username="local")
    statuses = [
        client.post("/accounts/login/", {"username": "local", "password": "wrong"}).status_code
        for _ in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses[-1] == 429 and AccessAttempt.objects.filter(username="local").exists()


@pytest.mark.parametrize("exempt", [True, False])
def test_axes_counts_no_failed_callback_only_with_the_exemption(db, rf, settings, exempt):
    # The callback's authenticate() has a nonce and no username; when every backend answers None
    # Django signals a failed sign-in, which axes would count for the address alone.
    from axes.models import AccessAttempt
    from django.contrib.auth import authenticate

    if not exempt:
        settings.AXES_WHITELIST_CALLABLE = None
    for _ in range(3):
        assert authenticate(rf.get("/oidc/callback/"), nonce="n", code_verifier="v") is None
    assert AccessAttempt.objects.exists() is not exempt


def test_sign_in_returns_to_the_page_asked_for_and_never_off_site(idp, client):
    response = sign_in(client, idp, "alice", start="/oidc/authenticate/?next=/requests/%3Fstatus%3Dfailed")
    assert response["Location"] == "/requests/?status=failed"
    client.post("/accounts/logout/")
    response = sign_in(client, idp, "alice", start="/oidc/authenticate/?next=https://evil.example/")
    assert response["Location"] == "/"
