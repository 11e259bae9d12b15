"""Sign in with GitHub: an OAuth app's web application flow, and the REST calls that follow it.

The web flow lives on the web host (``https://github.com/login/oauth/...``, on GitHub Enterprise
Server ``https://HOST/login/oauth/...``, beside ``/api/v3``), so ``routes._route`` answers these
paths before the API prefix is looked at:

* ``GET /login/oauth/authorize``: the consent page ("Authorize <app>"), shown to the person the
  browser is signed in to GitHub as (``Accounts.signed_in``); once that person has granted the
  app the scopes asked for, GitHub skips the page and sends the browser straight back.
* ``POST /login/oauth/authorize``: the page's buttons: back to the app with ``code`` and
  ``state``, or with ``error=access_denied``.
* ``POST /login/oauth/access_token``: the code for a user access token (``gho_...``); JSON with
  ``Accept: application/json``, XML with ``application/xml``, else form-encoded; errors are 200s
  with ``error``, ``error_description`` and ``error_uri``.
  https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#web-application-flow

The REST calls a sign-in makes with that token (``ROUTES``, registered by ``routes._compiled``):
``GET /user``, ``GET /user/emails``, ``GET /user/teams``, ``GET /orgs/{org}/members/{username}``
and ``GET /orgs/{org}/public_members/{username}``.
"""

from __future__ import annotations

import html
import re
import secrets
import string
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urlsplit
from xml.sax.saxutils import escape as xml_escape

from fakegithub import shapes
from fakegithub.routes import ApiRequest, Response, Route, error, paginate

if TYPE_CHECKING:
    from fakegithub.server import FakeGitHub

AUTHORIZE = "/login/oauth/authorize"
ACCESS_TOKEN = "/login/oauth/access_token"  # noqa: S105 (a path)
CODE_TTL = 600  # "The code will expire after 10 minutes."
HTML = "text/html; charset=utf-8"
MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
AUTH_ERRORS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors"
TOKEN_ERRORS = "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"  # noqa: S105
# The scopes that let a token list the person's teams: "OAuth app tokens and personal access
# tokens (classic) need the user, repo, or read:org scope to use this endpoint."
# https://docs.github.com/en/rest/teams/teams#list-teams-for-the-authenticated-user
TEAM_SCOPES = {"user", "repo", "read:org", "write:org", "admin:org"}
# "OAuth app tokens and personal access tokens (classic) need the user:email scope" (or user).
# https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user
EMAIL_SCOPES = {"user", "user:email"}


def is_web_path(path: str) -> bool:
    return path.rstrip("/") in (AUTHORIZE, ACCESS_TOKEN)


def _token(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))


def _scopes(text: str) -> frozenset[str]:
    # The docs ask for a space-delimited list; GitHub also takes commas (python-social-auth
    # sends "read:org,user:email"), and its answers list scopes comma-separated.
    return frozenset(s for s in re.split(r"[\s,]+", text) if s)


# --- the web flow ---------------------------------------------------------------------------------


def web(gh: FakeGitHub, method: str, path: str, query: dict[str, str], headers: dict, raw: bytes) -> Response:
    form = dict(query)
    if raw and "application/x-www-form-urlencoded" in headers.get("content-type", ""):
        form.update({k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()})
    with gh.state.lock:
        if path.rstrip("/") == ACCESS_TOKEN:
            if method != "POST":
                return Response(404, b"<h1>404 Not Found</h1>", content_type=HTML)
            return access_token(gh, form, headers)
        if method == "GET":
            return authorize(gh, form)
        if method == "POST":
            return decide(gh, form)
    return Response(404, b"<h1>404 Not Found</h1>", content_type=HTML)


def redirect_allowed(callback_url: str, redirect_uri: str) -> bool:
    """Whether ``redirect_uri`` may be used with an app whose callback URL is ``callback_url``:
    "the redirect URL's host (excluding sub-domains) and port must exactly match the callback URL.
    The redirect URL's path must reference a subdirectory of the callback URL"; for a loopback
    callback (127.0.0.1, ::1) the port may differ.
    https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#redirect-urls"""
    want, got = urlsplit(callback_url), urlsplit(redirect_uri)
    host, want_host = (got.hostname or ""), (want.hostname or "")
    if got.scheme != want.scheme or not (host == want_host or host.endswith("." + want_host)):
        return False
    if got.port != want.port and want_host not in ("127.0.0.1", "::1"):
        return False
    base = want.path.rstrip("/")
    return got.path == want.path or got.path.startswith(base + "/")


def _back(url: str, params: dict[str, str]) -> Response:
    separator = "&" if urlsplit(url).query else "?"
    return Response(302, b"", {"Location": url + separator + urlencode(params)}, content_type=HTML)


def _page(title: str, body: str, status: int = 200) -> Response:
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(status, text.encode(), content_type=HTML)


def _request_error(gh: FakeGitHub, form: dict[str, str]) -> tuple[dict | None, str, Response | None]:
    """(the app, where to send the browser back, or GitHub's answer to a bad request)."""
    app = gh.state.accounts.apps.get(form.get("client_id", ""))
    if app is None:
        # An unknown client_id gets GitHub's 404 page, not a redirect.
        return None, "", _page("Page not found", "<p>This is not the web page you are looking for.</p>", 404)
    redirect_uri = form.get("redirect_uri") or app["callback_url"]
    if not redirect_allowed(app["callback_url"], redirect_uri):
        # "If you provide a redirect_uri that doesn't match what you've registered with your
        # application, GitHub will redirect to the registered callback URL with the following
        # parameters summarizing the error" (error, error_description, error_uri, state).
        params = {
            "error": "redirect_uri_mismatch",
            "error_description": MISMATCH,
            "error_uri": f"{AUTH_ERRORS}#redirect-uri-mismatch",
        }
        if form.get("state"):
            params["state"] = form["state"]
        return app, redirect_uri, _back(app["callback_url"], params)
    return app, redirect_uri, None


def _issue_code(gh: FakeGitHub, client_id: str, login: str, redirect_uri: str, scopes: frozenset[str]) -> str:
    code = secrets.token_hex(10)
    gh.state.accounts.codes[code] = {
        "client_id": client_id,
        "login": login,
        "redirect_uri": redirect_uri,
        "scopes": scopes,
        "expires": time.time() + CODE_TTL,
    }
    return code


def _with_state(params: dict[str, str], form: dict[str, str]) -> dict[str, str]:
    return {**params, "state": form["state"]} if form.get("state") else params


def authorize(gh: FakeGitHub, form: dict[str, str]) -> Response:
    """GET /login/oauth/authorize: the consent page, or straight back to the app when the person
    already granted these scopes: "For users who have already authorized scopes for the
    application, the OAuth authorization page with the list of scopes will not be shown. Instead,
    this step of the flow will automatically complete with the set of scopes the user has
    authorized for the application." (the ``scope`` parameter's description, same page)."""
    app, redirect_uri, refused = _request_error(gh, form)
    if refused is not None or app is None:
        return refused or error(404, "Not Found")
    login = gh.state.accounts.signed_in
    if login is None:
        return _page("Sign in to GitHub", "<p>to continue to " + html.escape(app["name"]) + ".</p>")
    wanted = _scopes(form.get("scope", ""))
    granted = gh.state.accounts.grants.get((login, form["client_id"]))
    if granted is not None and wanted <= granted:
        code = _issue_code(gh, form["client_id"], login, redirect_uri, granted)
        return _back(redirect_uri, _with_state({"code": code}, form))
    fields = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(form[name])}">'
        for name in ("client_id", "redirect_uri", "scope", "state")
        if form.get(name)
    )
    listed = "".join(f"<li>{html.escape(s)}</li>" for s in sorted(wanted)) or "<li>public information</li>"
    body = (
        f"<p>{html.escape(app['name'])} wants to access your "
        f"<strong>{html.escape(login)}</strong> account</p>"
        f"<ul id='scopes'>{listed}</ul>"
        f"<form method='post' action='{AUTHORIZE}'>{fields}"
        "<button type='submit' name='authorize' value='0'>Cancel</button> "
        "<button type='submit' name='authorize' value='1' id='js-oauth-authorize-btn'>"
        f"Authorize {html.escape(login)}</button>"
        f"</form><p>Authorizing will redirect to <code>{html.escape(redirect_uri)}</code></p>"
    )
    return _page(f"Authorize {app['name']}", body)


def decide(gh: FakeGitHub, form: dict[str, str]) -> Response:
    """POST /login/oauth/authorize: the consent page's Authorize or Cancel."""
    app, redirect_uri, refused = _request_error(gh, form)
    if refused is not None or app is None:
        return refused or error(404, "Not Found")
    login = gh.state.accounts.signed_in
    if login is None:
        return _page("Sign in to GitHub", "<p>Your session has expired.</p>", 422)
    if form.get("authorize") != "1":
        # "If the user rejects access to your application, GitHub will redirect to the registered
        # callback URL with the following parameters summarizing the error": access_denied.
        # https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-authorization-request-errors#access-denied
        params = {
            "error": "access_denied",
            "error_description": "The user has denied your application access.",
            "error_uri": f"{AUTH_ERRORS}#access-denied",
        }
        return _back(redirect_uri, _with_state(params, form))
    key = (login, form["client_id"])
    granted = gh.state.accounts.grants.get(key, frozenset()) | _scopes(form.get("scope", ""))
    gh.state.accounts.grants[key] = granted
    code = _issue_code(gh, form["client_id"], login, redirect_uri, granted)
    return _back(redirect_uri, _with_state({"code": code}, form))


def _token_answer(body: dict[str, str], headers: dict) -> Response:
    """ "By default, the response takes the following form ... You can also receive the response
    in different formats if you provide the format in the Accept header" (JSON, XML)."""
    accept = headers.get("accept", "")
    if "application/json" in accept:
        return Response(200, body)
    if "application/xml" in accept:
        items = "".join(f"<{k}>{xml_escape(v)}</{k}>" for k, v in body.items())
        xml = f"<OAuth>{items}</OAuth>".encode()
        return Response(200, xml, content_type="application/xml; charset=utf-8")
    form = "application/x-www-form-urlencoded; charset=utf-8"
    return Response(200, urlencode(body).encode(), content_type=form)


def _token_error(name: str, description: str, anchor: str, headers: dict) -> Response:
    # The errors of the exchange are 200 answers naming the error.
    # https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors
    body = {"error": name, "error_description": description, "error_uri": f"{TOKEN_ERRORS}/#{anchor}"}
    return _token_answer(body, headers)


def access_token(gh: FakeGitHub, form: dict[str, str], headers: dict) -> Response:
    """POST /login/oauth/access_token: client_id, client_secret, code (and redirect_uri)."""
    accounts = gh.state.accounts
    app = accounts.apps.get(form.get("client_id", ""))
    if app is None or not secrets.compare_digest(app["secret"], form.get("client_secret", "")):
        return _token_error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
            "incorrect-client-credentials",
            headers,
        )
    if form.get("redirect_uri") and not redirect_allowed(app["callback_url"], form["redirect_uri"]):
        return _token_error(
            "redirect_uri_mismatch",
            MISMATCH,
            "redirect-uri-mismatch2",
            headers,
        )
    # "If the verification code you pass is incorrect, expired, or doesn't match what you received
    # in the first request for authorization": bad_verification_code. A code is used once.
    grant = accounts.codes.pop(form.get("code", ""), None)
    if grant is None or grant["expires"] < time.time() or grant["client_id"] != form["client_id"]:
        return _token_error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
            "bad-verification-code",
            headers,
        )
    token = _token("gho_")
    accounts.tokens[token] = (grant["login"], grant["scopes"], form["client_id"])
    scope = ",".join(sorted(grant["scopes"]))
    return _token_answer({"access_token": token, "token_type": "bearer", "scope": scope}, headers)


# --- the REST API, as the person --------------------------------------------------------------------


def person(gh: FakeGitHub, login: str) -> dict:
    """The person's public profile (simple-user plus the public profile fields)."""
    data = gh.state.accounts.users[login]
    return {
        **shapes.user(gh, login, data["id"]),
        "name": data["name"],
        "company": None,
        "blog": "",
        "location": None,
        "email": data["email"],
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "public_repos": 0,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": shapes.iso(shapes.BASE_TIME),
        "updated_at": shapes.iso(shapes.BASE_TIME),
    }


def _as_person(req: ApiRequest) -> str | None:
    return req.oauth[0] if req.oauth else None


def get_user(gh: FakeGitHub, req: ApiRequest) -> Response:
    """GET /user: who the token belongs to.
    https://docs.github.com/en/rest/users/users#get-the-authenticated-user"""
    login = _as_person(req)
    if login is None:
        return Response(200, req.actor)
    return Response(200, person(gh, login))


def _needs_scope(req: ApiRequest, accepted: set[str]) -> Response | None:
    if req.oauth is None or req.oauth[1] & accepted:
        return None
    response = error(403, "Resource not accessible by integration")
    response.headers["x-accepted-oauth-scopes"] = ", ".join(sorted(accepted))
    return response


def list_emails(gh: FakeGitHub, req: ApiRequest) -> Response:
    """GET /user/emails: the person's addresses, public or not (primary first).
    https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user"""
    login = _as_person(req)
    if login is None:
        return error(404, "Not Found")
    refused = _needs_scope(req, EMAIL_SCOPES)
    if refused is not None:
        return refused
    data = gh.state.accounts.users[login]
    items = [
        {
            "email": address,
            "primary": primary,
            "verified": verified,
            "visibility": "public" if primary else None,
        }
        for address, primary, verified in data["emails"]
    ]
    page, links = paginate(gh, req, items)
    return Response(200, page, links)


def _org(gh: FakeGitHub, org: str) -> tuple[str, dict] | None:
    # "The organization name. The name is not case sensitive."
    for name, data in gh.state.accounts.orgs.items():
        if name.lower() == org.lower():
            return name, data
    return None


def _member_of(data: dict, login: str | None) -> bool:
    return login is not None and login.lower() in {m.lower() for m in data["members"]}


def check_member(gh: FakeGitHub, req: ApiRequest, org: str, username: str) -> Response:
    """GET /orgs/{org}/members/{username}: 204 "if requester is an organization member and user is
    a member", 302 "if requester is not an organization member" (to the public membership check),
    404 "if requester is an organization member and user is not a member".
    https://docs.github.com/en/rest/orgs/members#check-organization-membership-for-a-user"""
    found = _org(gh, org)
    if found is None:
        return error(404, "Not Found")
    name, data = found
    if not _member_of(data, _as_person(req)):
        location = f"{gh.api_url}/orgs/{name}/public_members/{username}"
        return Response(302, b"", {"Location": location})
    if _member_of(data, username):
        return Response(204)
    return error(404, "User does not exist or is not a member of the organization")


def check_public_member(gh: FakeGitHub, req: ApiRequest, org: str, username: str) -> Response:
    """GET /orgs/{org}/public_members/{username}: 204 if the user is a public member, else 404.
    https://docs.github.com/en/rest/orgs/members#check-public-organization-membership-for-a-user"""
    found = _org(gh, org)
    if found is None or username.lower() not in {m.lower() for m in found[1]["public_members"]}:
        return error(404, "Not Found")
    return Response(204)


def team(gh: FakeGitHub, org: str, slug: str) -> dict:
    """A team-full object (with its organization), as /user/teams lists them."""
    data = gh.state.accounts.orgs[org]
    info = data["teams"][slug]
    api = f"{gh.api_url}/organizations/{data['id']}/team/{info['id']}"
    org_api = f"{gh.api_url}/orgs/{org}"
    return {
        "id": info["id"],
        "node_id": shapes.node_id("T", info["id"]),
        "url": api,
        "html_url": f"{gh.url}/orgs/{org}/teams/{slug}",
        "name": info["name"],
        "slug": slug,
        "description": None,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": f"{api}/members{{/member}}",
        "repositories_url": f"{api}/repos",
        "parent": None,
        "members_count": len(info["members"]),
        "repos_count": 0,
        "created_at": shapes.iso(shapes.BASE_TIME),
        "updated_at": shapes.iso(shapes.BASE_TIME),
        "type": "organization",
        "organization": {
            "login": org,
            "id": data["id"],
            "node_id": shapes.node_id("O", data["id"]),
            "url": org_api,
            "repos_url": f"{org_api}/repos",
            "events_url": f"{org_api}/events",
            "hooks_url": f"{org_api}/hooks",
            "issues_url": f"{org_api}/issues",
            "members_url": f"{org_api}/members{{/member}}",
            "public_members_url": f"{org_api}/public_members{{/member}}",
            "avatar_url": f"{gh.url}/avatars/{org}",
            "description": None,
            "html_url": f"{gh.url}/{org}",
            "has_organization_projects": True,
            "has_repository_projects": True,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": shapes.iso(shapes.BASE_TIME),
            "updated_at": shapes.iso(shapes.BASE_TIME),
            "type": "Organization",
            "archived_at": None,
        },
    }


def list_teams(gh: FakeGitHub, req: ApiRequest) -> Response:
    """GET /user/teams: "List all of the teams across all of the organizations to which the
    authenticated user belongs" (paginated; needs the user, repo or read:org scope).
    https://docs.github.com/en/rest/teams/teams#list-teams-for-the-authenticated-user"""
    login = _as_person(req)
    if login is None:
        return Response(200, [])
    refused = _needs_scope(req, TEAM_SCOPES)
    if refused is not None:
        return refused
    items = [
        team(gh, org, slug)
        for org, data in sorted(gh.state.accounts.orgs.items())
        for slug, info in sorted(data["teams"].items())
        if _member_of({"members": info["members"]}, login)
    ]
    try:
        page, links = paginate(gh, req, items)
    except ValueError:
        return error(422, "Invalid request.")
    return Response(200, page, links)


_ORG = r"/orgs/(?P<org>[^/]+)"
ROUTES = (
    Route("GET", r"/user", get_user),
    Route("GET", r"/user/emails", list_emails),
    Route("GET", r"/user/teams", list_teams),
    Route("GET", _ORG + r"/members/(?P<username>[^/]+)", check_member),
    Route("GET", _ORG + r"/public_members/(?P<username>[^/]+)", check_public_member),
)


# --- the control API (FakeGitHub's methods call these under the state lock) ------------------------


def add_user(gh: FakeGitHub, login: str, name: str | None, email: str | None, emails: list | None) -> int:
    accounts = gh.state.accounts
    accounts.next_id += 1
    addresses = emails if emails is not None else ([(email, True, True)] if email else [])
    accounts.users[login] = {"id": accounts.next_id, "name": name, "email": email, "emails": list(addresses)}
    return accounts.next_id


def add_org(gh: FakeGitHub, org: str, members: list[str], public_members: list[str]) -> None:
    accounts = gh.state.accounts
    accounts.next_id += 1
    accounts.orgs[org] = {
        "id": accounts.next_id,
        "members": set(members) | set(public_members),
        "public_members": set(public_members),
        "teams": {},
    }


def set_team(gh: FakeGitHub, org: str, slug: str, members: list[str], name: str | None) -> None:
    accounts = gh.state.accounts
    teams = accounts.orgs[org]["teams"]
    if slug not in teams:
        accounts.next_id += 1
        teams[slug] = {"id": accounts.next_id, "name": name or slug, "members": set()}
    teams[slug]["members"] = set(members)
