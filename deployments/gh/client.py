"""Credentials and the PyGithub client, and what the process remembers about GitHub.

PyGithub is configured deliberately: no client-side throttling (its default sleeps 0.25 s
between any two calls), a timeout on every call, and retries for idempotent GETs only. The
dispatch POST goes through a client with no retries at all, so it is never sent twice.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import github
import requests
from django.conf import settings
from github import Auth, GithubException
from urllib3.util.retry import Retry

from .errors import GitHubAuthError, GitHubError, _describe, _translate

logger = logging.getLogger(__name__)


def auth_kind() -> str:
    """Which credentials are configured: "app", "token" or "none"."""
    if settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY and settings.GITHUB_APP_INSTALLATION_ID:
        return "app"
    return "token" if settings.GH_TOKEN else "none"


def _auth() -> Auth.Auth:
    if auth_kind() == "app":
        app = Auth.AppAuth(settings.GITHUB_APP_ID, settings.GITHUB_APP_PRIVATE_KEY)
        return app.get_installation_auth(int(settings.GITHUB_APP_INSTALLATION_ID))
    if not settings.GH_TOKEN:
        raise GitHubAuthError(
            "No GitHub credentials are configured. Set GH_TOKEN (or the GITHUB_APP_* variables).",
            title="GitHub Not Configured",
        )
    return Auth.Token(settings.GH_TOKEN)


class GitHubState:
    """What this process remembers about GitHub, forgotten at once by ``reset()``.

    - PyGithub clients, cached per settings so connections are kept alive between requests;
    - the API URLs whose server rejects ``return_run_details`` (GHES 3.20 and older): not asked again.
    """

    def __init__(self) -> None:
        self._clients = functools.lru_cache(maxsize=8)(_build_client)
        self._run_details_refused: set[str] = set()

    def client(self, *, writes: bool) -> github.Github:
        """The client for the current settings; ``writes`` gives the one that never retries."""
        key = (
            settings.GITHUB_API_URL,
            settings.GH_TOKEN,
            settings.GITHUB_APP_ID,
            settings.GITHUB_APP_PRIVATE_KEY,
            settings.GITHUB_APP_INSTALLATION_ID,
            settings.GITHUB_TIMEOUT,
        )
        return self._clients(key, writes)

    def forget_clients(self) -> None:
        """Build fresh clients on the next call (the credentials they hold may be dead)."""
        self._clients.cache_clear()

    def run_details_supported(self, api_url: str) -> bool:
        """Whether ``return_run_details`` is still worth asking of the server at ``api_url``."""
        return api_url not in self._run_details_refused

    def note_run_details_refused(self, api_url: str) -> None:
        self._run_details_refused.add(api_url)

    def reset(self) -> None:
        """Forget the cached clients and which servers refused run details (tests, new credentials)."""
        self.forget_clients()
        self._run_details_refused.clear()


def _build_client(key: tuple[object, ...], writes: bool) -> github.Github:
    # ``key`` only tells cached clients apart; the client is built from the same settings.
    if writes:
        retry = None  # no retries of any kind: a dispatch must never fire twice
    else:
        retry = Retry(
            total=2,
            read=False,  # a read timeout is not retried: it would multiply the wait
            backoff_factor=0.2,
            allowed_methods=frozenset({"GET", "HEAD"}),
            status_forcelist=(502, 503, 504),
            respect_retry_after_header=False,  # never sleep on a rate limit inside a page view
            raise_on_status=False,
        )
    auth = _auth()
    client = github.Github(
        auth=auth,
        base_url=settings.GITHUB_API_URL,
        timeout=settings.GITHUB_TIMEOUT,
        retry=retry,
        pool_size=16,
        seconds_between_requests=None,
        seconds_between_writes=None,
        lazy=True,
    )
    if isinstance(auth, Auth.AppInstallationAuth):
        _fetch_installation_token(auth)
    return client


state = GitHubState()


def _fetch_installation_token(auth: Auth.AppInstallationAuth) -> None:
    """Exchange the app's JWT for an installation token now, so a wrong app id, installation or
    key is reported as such instead of as whatever the first API call happened to be."""
    try:
        auth.token  # noqa: B018 - the property performs the exchange
    except Exception as exc:
        logger.warning("GitHub App token exchange failed: %s", _describe(exc))
        raise GitHubAuthError(
            f"The GitHub App (id {settings.GITHUB_APP_ID}) could not get a token for installation "
            f"{settings.GITHUB_APP_INSTALLATION_ID} ({_describe(exc)}). Check GITHUB_APP_ID, "
            "GITHUB_APP_INSTALLATION_ID and the private key."
        ) from None


def _repo_url(suffix: str = "") -> str:
    return f"/repos/{settings.GH_REPO}{suffix}"


def web_url() -> str:
    """The web root matching GITHUB_API_URL (github.com, or the GHES host)."""
    parts = urlsplit(settings.GITHUB_API_URL)
    host = parts.netloc
    if host == "api.github.com":
        host = "github.com"
    path = parts.path.removesuffix("/api/v3")
    return f"{parts.scheme}://{host}{path}"


def actions_url() -> str:
    """The deploy workflow's Actions page: the fallback link when the run is not known yet."""
    return f"{web_url()}/{settings.GH_REPO}/actions/workflows/{quote(settings.DEPLOY_WORKFLOW)}"


def _failure(exc: Exception, **messages: str) -> GitHubError:
    """The portal's error for a failed call; a 401 also drops the cached clients."""
    error = _translate(exc, **messages)
    if isinstance(exc, GithubException) and exc.status == 401:
        state.forget_clients()  # a revoked or rotated token: build a fresh client next time
    return error


def _call(
    fn: Callable[[], Any],
    *,
    not_found: str = "Not found on GitHub.",
    forbidden: str | None = None,
    not_found_title: str = "Not Found",
) -> Any:
    try:
        return fn()
    except (GithubException, requests.exceptions.RequestException) as exc:
        logger.warning("GitHub call failed: %s", _describe(exc))
        raise _failure(
            exc,
            not_found=not_found,
            not_found_title=not_found_title,
            forbidden=forbidden
            or f"The portal's GitHub credentials cannot read {settings.GH_REPO}. "
            "A classic token needs the 'repo' scope; a fine-grained token or app needs Contents: read.",
        ) from None


def _conditional_get(
    url: str, params: dict[str, str], *, etag: str | None, not_found: str
) -> tuple[str | None, dict[str, Any]] | None:
    """GET with If-None-Match: None when unchanged (a 304 spends no rate limit), else (etag, data)."""
    requester = state.client(writes=False).requester
    headers = {"If-None-Match": etag} if etag else {}

    def fetch() -> tuple[str | None, dict[str, Any]] | None:
        status, resp_headers, body = requester.requestJson("GET", url, params, headers)
        if status == 304:
            return None
        try:
            data = json.loads(body) if body else {}
        except ValueError:  # e.g. a proxy's HTML error page
            data = {"message": f"non-JSON answer (HTTP {status})"}
        if status >= 400 or not isinstance(data, dict):
            if not isinstance(data, dict):
                data = {"message": f"unexpected answer (HTTP {status})"}
            raise requester.createException(status if status >= 400 else 502, resp_headers, data)
        return {k.lower(): v for k, v in resp_headers.items()}.get("etag"), data

    result: tuple[str | None, dict[str, Any]] | None = _call(fetch, not_found=not_found)
    return result
