"""Sign in with GitHub, for teams without an identity provider (github.com or GitHub Enterprise Server).

The protocol is python-social-auth's (social-auth-app-django): GitHub's OAuth web flow with a
state bound to the session, the code exchanged for a user access token, the person read from
``GET /user``, and membership of ``GITHUB_OAUTH_ORG`` checked with ``GET /orgs/{org}/members/{login}``
(its organization backend: anyone else is refused before an account is made). This module adds
what the portal needs on top:

- the GitHub host is the portal's (``GITHUB_API_URL``; the web host is derived from it or set
  with ``GITHUB_OAUTH_URL``), so GitHub Enterprise Server works as the API does;
- the person's teams in that organization (``GET /user/teams``) are mapped onto the portal's
  groups and the staff flag at every sign-in (``GITHUB_OAUTH_TEAM_GROUPS``, the same mapping code
  and syntax as ``OIDC_GROUP_MAP``): someone removed from a team loses the right at their next
  sign-in;
- accounts are found by GitHub's numeric user id, never by login or e-mail, so nobody can take
  over a local account (a taken username gets a suffix), and the access token is not kept;
- every failure is a clear page or message, never a 5xx.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST
from social_core.backends.github import GithubOrganizationOAuth2
from social_core.exceptions import (
    AuthCanceled,
    AuthPolicyError,
    AuthResponseError,
    SocialAuthBaseException,
)
from social_django import views as social_views

from .groups import apply_group_map, parse_group_map
from .sessions import SessionUserBackend

logger = logging.getLogger(__name__)

SETTING = "GITHUB_OAUTH_TEAM_GROUPS"
# Bounds on what GitHub answers about one person: its teams (100 a page).
MAX_TEAM_PAGES = 10
MAX_SLUG_CHARS = 255
MAX_EMAIL_CHARS = 254  # django.contrib.auth's User.email


def enabled() -> bool:
    return bool(
        settings.GITHUB_OAUTH_CLIENT_ID and settings.GITHUB_OAUTH_CLIENT_SECRET and settings.GITHUB_OAUTH_ORG
    )


def api_url() -> str:
    return settings.GITHUB_API_URL.rstrip("/") + "/"


def web_url() -> str:
    """The web host the browser signs in at: ``GITHUB_OAUTH_URL``, or derived from the API root
    (``https://api.github.com`` → ``https://github.com``; GHES ``https://HOST/api/v3`` → ``https://HOST``)."""
    if settings.GITHUB_OAUTH_URL:
        return settings.GITHUB_OAUTH_URL.rstrip("/") + "/"
    api = settings.GITHUB_API_URL.rstrip("/")
    parts = urlsplit(api)
    if parts.hostname == "api.github.com":
        return "https://github.com/"
    return api.removesuffix("/api/v3") + "/"


def web_origin() -> str:
    """The web host's origin, which the login page's form may post (and be redirected) to."""
    parts = urlsplit(web_url())
    return f"{parts.scheme}://{parts.netloc}"


def team_group_map() -> dict[str, set[str]]:
    """``GITHUB_OAUTH_TEAM_GROUPS`` as {team slug: {portal group or "staff", …}}; slugs are lower case."""
    mapping = parse_group_map(settings.GITHUB_OAUTH_TEAM_GROUPS, SETTING)
    return {slug.lower(): targets for slug, targets in mapping.items()}


class PortalGitHubBackend(SessionUserBackend, GithubOrganizationOAuth2):
    """python-social-auth's GitHub organization backend on the portal's GitHub host and settings.
    Its ``get_user`` takes the user read with the session, active accounts only, as
    python-social-auth's own (``filter_active_users``)."""

    def session_user_allowed(self, user: Any) -> bool:
        # python-social-auth's filter_active_users: SOCIAL_AUTH_ACTIVE_USERS_FILTER, by default
        # {"is_active": True}; another filter is asked of the database, as python-social-auth does.
        rule = getattr(settings, "SOCIAL_AUTH_ACTIVE_USERS_FILTER", None)
        if rule is None:
            return bool(user.is_active)
        return bool(type(user)._default_manager.filter(pk=user.pk, **rule).exists())

    name = "github"
    title = "GitHub"
    # read:org: private organization membership and the teams; user:email: the person's address.
    DEFAULT_SCOPE = ["read:org", "user:email"]
    EXTRA_DATA = [("id", "id"), ("login", "login"), ("teams", "teams")]

    def authorization_url(self) -> str:
        return urljoin(web_url(), "login/oauth/authorize")

    def access_token_url(self) -> str:
        return urljoin(web_url(), "login/oauth/access_token")

    def api_url(self) -> str:
        return api_url()

    def get_key_and_secret(self) -> tuple[str, str]:
        return settings.GITHUB_OAUTH_CLIENT_ID, settings.GITHUB_OAUTH_CLIENT_SECRET

    def setting(self, name: str, default: Any = None) -> Any:
        if name == "REQUESTS_TIMEOUT":
            return settings.GITHUB_TIMEOUT
        return super().setting(name, default)

    def get_user_details(self, response: dict[str, Any]) -> dict[str, Any]:
        details = super().get_user_details(response)
        # The new account's address is GitHub's, untrusted: one longer than the column (254
        # characters, RFC 5321's bound) would fail the sign-in on PostgreSQL; it is left empty.
        email = details.get("email")
        if not isinstance(email, str) or len(email) > MAX_EMAIL_CHARS or "@" not in email:
            details["email"] = ""
        return details

    def member_url(self, user_data: dict[str, Any]) -> str:
        login = user_data.get("login")
        if not isinstance(login, str) or not login:
            raise AuthResponseError(self, code="malformed_response", stage="user_info")
        org = quote(settings.GITHUB_OAUTH_ORG, safe="")
        return urljoin(self.api_url(), f"orgs/{org}/members/{quote(login, safe='')}")

    def _user_data(self, access_token: str, path: str | None = None) -> Any:
        # GitHub's answers are untrusted: the profile must be an object with the numeric id the
        # account is found by; the addresses a list of objects with an address.
        data = super()._user_data(access_token, path)
        if path is None:
            account_id = data.get("id") if isinstance(data, dict) else None
            if not isinstance(account_id, int) or isinstance(account_id, bool):
                raise AuthResponseError(self, code="malformed_response", stage="user_info")
            return data
        if not isinstance(data, list):
            return []
        return [e for e in data if isinstance(e, dict) and isinstance(e.get("email"), str)]

    def user_data(self, access_token: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        # The profile (GET /user), the primary address (GET /user/emails) and the membership of
        # GITHUB_OAUTH_ORG (GET /orgs/{org}/members/{login}: a 404 there refuses the sign-in).
        data = super().user_data(access_token, *args, **kwargs)
        if data is None:
            raise AuthResponseError(self, code="malformed_response", stage="user_info")
        data.pop("emails", None)
        data["teams"] = self._teams({"Authorization": f"token {access_token}"})
        return data

    def _teams(self, headers: dict[str, str]) -> list[str]:
        """The slugs of the person's teams in ``GITHUB_OAUTH_ORG`` (``GET /user/teams``, every page)."""
        org = settings.GITHUB_OAUTH_ORG.lower()
        url: str | None = urljoin(self.api_url(), "user/teams?per_page=100")
        slugs: set[str] = set()
        for _ in range(MAX_TEAM_PAGES):
            if url is None:
                break
            response = self.request(url, headers=headers)
            try:
                page = response.json()
            except ValueError:
                raise AuthResponseError(self, code="malformed_response", stage="user_info") from None
            if not isinstance(page, list):
                raise AuthResponseError(self, code="malformed_response", stage="user_info")
            for team in page:
                owner = team.get("organization") if isinstance(team, dict) else None
                slug = team.get("slug") if isinstance(team, dict) else None
                login = owner.get("login") if isinstance(owner, dict) else None
                mine = isinstance(login, str) and login.lower() == org
                if mine and isinstance(slug, str) and 0 < len(slug) <= MAX_SLUG_CHARS:
                    slugs.add(slug.lower())
            following = response.links.get("next", {}).get("url")
            # The next page must be on the same API: a Link header elsewhere is not followed.
            url = following if following and following.startswith(self.api_url()) else None
        return sorted(slugs)

    def extra_data(self, user: Any, uid: str, response: dict, details: dict, pipeline_kwargs: dict) -> dict:
        data = super().extra_data(user, uid, response, details, pipeline_kwargs)
        # The token was only needed to read who the person is: the portal never calls GitHub as them.
        data.pop("access_token", None)
        return data


class AccountDisabled(AuthPolicyError):
    """The GitHub account's portal account was deactivated by an administrator."""


def refuse_disabled(backend: Any, user: Any = None, **kwargs: Any) -> None:
    """A pipeline step after the account is found: a deactivated account is refused with a
    message (the library would send the person back to the login page without a word)."""
    if backend.name == PortalGitHubBackend.name and user is not None and not user.is_active:
        raise AccountDisabled(backend, stage="pipeline")


def apply_team_groups(backend: Any, user: Any = None, response: dict | None = None, **kwargs: Any) -> None:
    """The pipeline's last step: the person's teams decide their portal groups and staff flag."""
    if backend.name != PortalGitHubBackend.name or user is None:
        return
    teams = list((response or {}).get("teams") or [])
    apply_group_map(user, teams, team_group_map(), SETTING)
    logger.info(
        "signed in with GitHub: %s (teams %s)",
        user.username,
        ", ".join(teams) or "none",
        extra={"github_login": (response or {}).get("login")},
    )


def axes_exempt(credentials: dict[str, Any]) -> bool:
    """Whether django-axes should leave this authenticate() call alone: GitHub's (its code is
    single-use and bound to the session's state; passwords are GitHub's business)."""
    return isinstance(credentials.get("backend"), PortalGitHubBackend) and not credentials.get("username")


# --- the views ----------------------------------------------------------------------------------


def _failed(request: HttpRequest, text: str) -> HttpResponse:
    messages.error(request, text)
    return redirect("login")


@login_not_required
@require_POST
def begin(request: HttpRequest, backend: str) -> HttpResponse:
    """Sends the browser to GitHub's authorization page (a POST with the CSRF token, as
    social-auth-app-django requires: no other site can start a sign-in in someone's browser)."""
    if not enabled() or backend != PortalGitHubBackend.name:
        raise Http404("Sign in with GitHub is not configured.")
    return social_views.auth(request, PortalGitHubBackend.name)


@login_not_required
@require_GET
def complete(request: HttpRequest, backend: str) -> HttpResponse:
    """GitHub sends the browser back here with a code; the person is signed in or told why not."""
    if not enabled() or backend != PortalGitHubBackend.name:
        raise Http404("Sign in with GitHub is not configured.")
    # Always a sign-in, never "connect this GitHub account to whoever is signed in now": the
    # library would link it to the current account (a local administrator's, say), and the teams
    # would then decide that account's rights.
    request.user = AnonymousUser()
    try:
        return social_views.complete(request, PortalGitHubBackend.name)
    except AccountDisabled:
        logger.warning("sign-in with GitHub refused: the portal account is deactivated")
        return _failed(request, "Your portal account is deactivated. Ask an administrator.")
    except AuthPolicyError:
        from deployments.views import error_page

        logger.warning("sign-in with GitHub refused: not a member of %s", settings.GITHUB_OAUTH_ORG)
        return error_page(
            request,
            status=403,
            error_type="permission_denied",
            title="Not a Member of the Organization",
            message=(
                f"Your GitHub account is not a member of the {settings.GITHUB_OAUTH_ORG} organization, "
                "so it cannot sign in to this portal. Ask an owner of the organization to add you; if "
                "you are a member, make sure the organization allows this portal's OAuth app."
            ),
        )
    except AuthCanceled:
        return _failed(request, "Signing in with GitHub was cancelled.")
    except SocialAuthBaseException as exc:
        # A state that does not match the session's, a code GitHub refuses, GitHub unreachable
        # or answering nonsense: the reason is for the log, the person is asked to try again.
        logger.warning("sign-in with GitHub failed: %s", type(exc).__name__)
        logger.debug("sign-in with GitHub failure details: %s", exc)
        return _failed(
            request,
            "Signing in with GitHub did not complete. Try again; if it keeps failing, ask an administrator.",
        )
