"""The emulator's OAuth app web flow and the REST calls of a signed-in person behave as GitHub
documents them (fakegithub/oauth.py cites the pages)."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

APP, SECRET = "client-1", "secret-1"
CALLBACK = "http://127.0.0.1:8123/auth/complete/github/"


@pytest.fixture
def world(fakegithub):
    fakegithub.add_user("lena", "Lena Ott", "lena@example.com")
    emails = [("bob@work.example", False, True), ("bob@example.com", True, True)]
    fakegithub.add_user("bob", "Bob Ray", None, emails=emails)
    fakegithub.add_user("eve", "Eve")
    fakegithub.add_org("acme", members=["lena"], public_members=["bob"])
    fakegithub.set_team("acme", "deployers", ["lena"])
    fakegithub.add_oauth_app(APP, SECRET, CALLBACK)
    fakegithub.sign_in_web("lena")
    return fakegithub


def consent_page(gh, **params):
    """GET /login/oauth/authorize, redirects not followed."""
    return requests.get(f"{gh.url}/login/oauth/authorize", params=params, allow_redirects=False, timeout=5)


def authorize(gh, *, scope="read:org user:email", redirect_uri=CALLBACK, state="s1", decision="1"):
    params = {"client_id": APP, "scope": scope, "state": state, "redirect_uri": redirect_uri}
    page = consent_page(gh, **params)
    if page.status_code != 200 or "<form" not in page.text:
        return page
    url = f"{gh.url}/login/oauth/authorize"
    return requests.post(url, data={**params, "authorize": decision}, allow_redirects=False, timeout=5)


def back(response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.text
    parts = urlsplit(response.headers["Location"])
    return f"{parts.scheme}://{parts.netloc}{parts.path}", {k: v[0] for k, v in parse_qs(parts.query).items()}


def exchange(gh, code, *, secret=SECRET, accept="application/json", **extra):
    data = {"client_id": APP, "client_secret": secret, "code": code, **extra}
    url = f"{gh.url}/login/oauth/access_token"
    return requests.post(url, data=data, headers={"Accept": accept}, timeout=5)


def token_for(gh, **kwargs) -> str:
    _, query = back(authorize(gh, **kwargs))
    return exchange(gh, query["code"]).json()["access_token"]


def get(gh, path, token, **kwargs):
    headers = {"Authorization": f"token {token}"}
    return requests.get(f"{gh.api_url}{path}", headers=headers, timeout=5, **kwargs)


def test_consent_page_then_code_and_state_then_token(world):
    page = consent_page(world, client_id=APP, scope="read:org", state="s1")
    assert page.status_code == 200 and "Authorize Pod Deployment Portal" in page.text
    assert "<li>read:org</li>" in page.text and "Authorize lena" in page.text
    url, query = back(authorize(world))
    assert url == CALLBACK and query["state"] == "s1" and len(query["code"]) == 20
    answer = exchange(world, query["code"])
    assert answer.status_code == 200
    body = answer.json()
    assert body["access_token"].startswith("gho_") and body["token_type"] == "bearer"
    assert body["scope"] == "read:org,user:email"


def test_token_answer_formats_follow_the_accept_header(world):
    form = exchange(world, back(authorize(world))[1]["code"], accept="")
    assert form.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(form.text)["token_type"] == ["bearer"]
    xml = exchange(world, back(authorize(world))[1]["code"], accept="application/xml")
    assert xml.text.startswith("<OAuth><access_token>gho_")


def test_a_code_works_once_and_only_for_its_app(world):
    code = back(authorize(world))[1]["code"]
    assert "access_token" in exchange(world, code).json()
    again = exchange(world, code)
    assert again.status_code == 200 and again.json()["error"] == "bad_verification_code"
    assert exchange(world, "made-up").json()["error"] == "bad_verification_code"


def test_wrong_secret_is_incorrect_client_credentials(world):
    answer = exchange(world, back(authorize(world))[1]["code"], secret="nope")
    assert answer.status_code == 200 and answer.json()["error"] == "incorrect_client_credentials"


def test_redirect_uri_rules(world):
    # A subdirectory of the callback URL, and another port on loopback, are allowed.
    assert back(authorize(world, redirect_uri=CALLBACK + "more/"))[0] == CALLBACK + "more/"
    assert back(authorize(world, redirect_uri="http://127.0.0.1:9/auth/complete/github/"))[0].startswith(
        "http://127.0.0.1:9/"
    )
    # Another path: back to the registered callback URL with redirect_uri_mismatch.
    url, query = back(authorize(world, redirect_uri="http://127.0.0.1:8123/elsewhere/"))
    assert url == CALLBACK and query["error"] == "redirect_uri_mismatch" and query["state"] == "s1"
    # Another host likewise; and at the token exchange, a 200 naming the error.
    assert back(authorize(world, redirect_uri="http://evil.example/auth/complete/github/"))[1]["error"] == (
        "redirect_uri_mismatch"
    )
    code = back(authorize(world))[1]["code"]
    refused = exchange(world, code, redirect_uri="http://evil.example/")
    assert refused.status_code == 200 and refused.json()["error"] == "redirect_uri_mismatch"


def test_unknown_client_is_a_404_page(world):
    assert consent_page(world, client_id="nope").status_code == 404


def test_cancel_is_access_denied_and_a_granted_app_skips_the_page(world):
    url, query = back(authorize(world, decision="0"))
    assert url == CALLBACK and query["error"] == "access_denied" and query["state"] == "s1"
    back(authorize(world))  # granted now
    assert (
        back(consent_page(world, client_id=APP, scope="read:org", state="s2"))[1]["state"] == "s2"
    )  # straight back, no page
    # More scopes than granted: the page again.
    page = consent_page(world, client_id=APP, scope="repo", state="s3")
    assert page.status_code == 200 and "<li>repo</li>" in page.text
    world.revoke_grant("lena", APP)
    assert "<form" in consent_page(world, client_id=APP).text


def test_the_person_their_addresses_and_teams(world):
    token = token_for(world)
    me = get(world, "/user", token)
    assert me.json()["login"] == "lena" and me.json()["email"] == "lena@example.com"
    assert me.headers["x-oauth-scopes"] == "read:org, user:email"
    assert get(world, "/user/emails", token).json()[0]["email"] == "lena@example.com"
    [team] = get(world, "/user/teams", token).json()
    assert (team["slug"], team["organization"]["login"]) == ("deployers", "acme")
    world.set_team("acme", "deployers", [])
    assert get(world, "/user/teams", token).json() == []


def test_scopes_are_needed_for_teams_and_addresses(world):
    token = token_for(world, scope="")
    assert get(world, "/user", token).status_code == 200
    teams = get(world, "/user/teams", token)
    assert teams.status_code == 403 and "read:org" in teams.headers["x-accepted-oauth-scopes"]
    assert get(world, "/user/emails", token).status_code == 403


def test_membership_check_answers_as_github_documents(world):
    member = token_for(world)
    assert get(world, "/orgs/acme/members/lena", member).status_code == 204
    assert get(world, "/orgs/ACME/members/bob", member).status_code == 204  # names are case-insensitive
    missing = get(world, "/orgs/acme/members/eve", member)
    assert missing.status_code == 404
    assert get(world, "/orgs/nope/members/lena", member).status_code == 404
    # A requester outside the organization is redirected to the public membership check.
    world.sign_in_web("eve")
    outsider = token_for(world)
    redirected = get(world, "/orgs/acme/members/eve", outsider, allow_redirects=False)
    assert redirected.status_code == 302
    assert redirected.headers["Location"] == f"{world.api_url}/orgs/acme/public_members/eve"
    assert get(world, "/orgs/acme/members/eve", outsider).status_code == 404  # followed: not public
    assert get(world, "/orgs/acme/members/bob", outsider).status_code == 204  # bob's is public


def test_a_revoked_or_made_up_token_is_bad_credentials(world):
    assert get(world, "/user", "gho_madeup").status_code == 401
