"""Credentials and the PyGithub client, and what the process remembers about GitHub.

PyGithub is configured deliberately: no client-side throttling (its default sleeps 0.25 s
between any two calls), a timeout on every call, and retries for idempotent GETs only. The
dispatch POST goes through a client with no retries at all, so it is never sent twice.

A GitHub App's installation token is shared by every process through Django's cache: GitHub's
ETags are specific to the token that got them, so if each worker and each ``sync_runs`` minted
its own token, the ETags the portal shares through the cache would answer 200 (and spend the
rate limit) instead of a free 304.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import github
import requests
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from github import Auth, GithubException
from urllib3.util.retry import Retry

from .errors import GitHubAPIError, GitHubAuthError, GitHubError, _describe, _translate

logger = logging.getLogger(__name__)

# A shared installation token is replaced this long before it expires (GitHub's last for an hour).
TOKEN_RENEW_SECONDS = 300


def auth_kind() -> str:
    """Which credentials are configured: "app", "token" or "none"."""
    if settings.GITHUB_APP_ID and settings.GITHUB_APP_PRIVATE_KEY and settings.GITHUB_APP_INSTALLATION_ID:
        return "app"
    return "token" if settings.GH_TOKEN else "none"


def _auth() -> Auth.Auth:
    if auth_kind() == "app":
        return _SharedInstallationAuth()
    if not settings.GH_TOKEN:
        raise GitHubAuthError(
            "No GitHub credentials are configured. Set GH_TOKEN (or the GITHUB_APP_* variables).",
            title="GitHub Not Configured",
        )
    return Auth.Token(settings.GH_TOKEN)


class GitHubState:
    """What this process remembers about GitHub, forgotten at once by ``reset()``.

    - PyGithub clients, cached per settings so connections are kept alive between requests;
    - the API URLs whose server rejects ``return_run_details`` (GHES 3.20 and older): not asked again;
    - the GitHub App installation token it got from the shared cache, until it is due for renewal.
    """

    def __init__(self) -> None:
        self._clients = functools.lru_cache(maxsize=8)(_build_client)
        self._run_details_refused: set[str] = set()
        self._installation_tokens: dict[str, _InstallationToken] = {}  # by _installation_token_key()

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
        """Build fresh clients on the next call, with the installation token shared then."""
        self._clients.cache_clear()
        self._installation_tokens.clear()

    def forget_dead_credentials(self) -> None:
        """After a 401: fresh clients, and no process is handed this process's installation token again."""
        for key, held in self._installation_tokens.items():
            shared = cache.get(key)
            if shared is not None and shared["token"] == held.token:
                cache.delete(key)
        self.forget_clients()

    def installation_token(self) -> str:
        """The installation token shared by every process, renewed ahead of its expiry."""
        key = _installation_token_key()
        held = self._installation_tokens.get(key)
        if held is None or time.time() >= held.renew_at:
            held = self._installation_tokens[key] = _shared_installation_token(key)
        return held.token

    def run_details_supported(self, api_url: str) -> bool:
        """Whether ``return_run_details`` is still worth asking of the server at ``api_url``."""
        return api_url not in self._run_details_refused

    def note_run_details_refused(self, api_url: str) -> None:
        self._run_details_refused.add(api_url)

    def reset(self) -> None:
        """Forget the cached clients and which servers refused run details (tests, new credentials).

        The installation token shared through the cache stays: a new process would get it too.
        """
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
    if isinstance(auth, _SharedInstallationAuth):
        _fetch_installation_token()
    return client


@dataclasses.dataclass(frozen=True)
class _InstallationToken:
    """An installation token and when to replace it (epoch seconds)."""

    token: str = dataclasses.field(repr=False)
    renew_at: float


class _SharedInstallationAuth(Auth.Auth):
    """Sends the installation token this process shares with the others (see ``GitHubState``)."""

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        return state.installation_token()

    @property
    def _masked_token(self) -> str:
        return "token (installation token removed)"


state = GitHubState()


def _installation_token_key() -> str:
    where = f"{settings.GITHUB_API_URL}|{settings.GITHUB_APP_ID}|{settings.GITHUB_APP_INSTALLATION_ID}"
    return "github-installation-token:" + hashlib.sha256(where.encode()).hexdigest()


def _shared_installation_token(key: str) -> _InstallationToken:
    """The token in the shared cache, else a new one minted by one process while the others wait
    for it (up to GITHUB_TIMEOUT, then they mint their own: the holder of the lock may have died)."""
    lock = key + ":minting"
    deadline = time.monotonic() + settings.GITHUB_TIMEOUT
    try:
        while True:
            shared = cache.get(key)  # a plain dict: any version of this code reads it
            if shared is not None and time.time() < shared["renew_at"]:
                return _InstallationToken(**shared)
            locked = cache.add(lock, True, timeout=settings.GITHUB_TIMEOUT + 5)
            if locked or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    except DatabaseError as exc:  # the shared cache is down: a token of this process's own
        logger.warning("GitHub installation token not shared: the cache failed (%s)", type(exc).__name__)
        return _mint_installation_token()
    try:
        minted = _mint_installation_token()
    finally:
        if locked:
            cache.delete(lock)
    cache.set(key, dataclasses.asdict(minted), timeout=max(1, int(minted.renew_at - time.time())))
    return minted


def _app_integration() -> github.GithubIntegration:
    """The GitHub App itself (authenticated by its JWT), for its installation's token and settings."""
    return github.GithubIntegration(
        auth=Auth.AppAuth(settings.GITHUB_APP_ID, settings.GITHUB_APP_PRIVATE_KEY),
        base_url=settings.GITHUB_API_URL,
        timeout=settings.GITHUB_TIMEOUT,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def _mint_installation_token() -> _InstallationToken:
    integration = _app_integration()
    try:
        grant = integration.get_access_token(int(settings.GITHUB_APP_INSTALLATION_ID))
    finally:
        integration.close()
    expires_at = grant.expires_at.timestamp()
    # Well before it expires; halfway through a (never seen) lifetime under twice that margin.
    renew_at = expires_at - min(TOKEN_RENEW_SECONDS, (expires_at - time.time()) / 2)
    return _InstallationToken(grant.token, renew_at)


def _fetch_installation_token() -> None:
    """Get the shared installation token now, so a wrong app id, installation or key is reported
    as such instead of as whatever the first API call happened to be."""
    try:
        state.installation_token()
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
        state.forget_dead_credentials()  # a revoked or rotated token: build a fresh client next time
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
    except (ValueError, OverflowError, RecursionError) as exc:
        # An answer PyGithub (or the caller) could not read: a rate-limit header that is no number
        # ("x-ratelimit-remaining: nan", int(float(...)) in PyGithub's Requester), JSON nested past
        # the recursion limit. GitHub's answers are untrusted: a clear error, never a 500.
        logger.warning("GitHub call failed: its answer could not be read (%s)", type(exc).__name__)
        raise GitHubAPIError(
            "GitHub's answer could not be read (malformed headers or body). Try again in a minute."
        ) from None


def _conditional_get(
    url: str, params: dict[str, str], *, etag: str | None, not_found: str
) -> tuple[str | None, dict[str, Any]] | None:
    """GET with If-None-Match: None when unchanged (a 304 spends no rate limit), else (etag, data)."""
    requester = state.client(writes=False).requester
    headers = {"If-None-Match": etag} if etag else {}

    def fetch() -> tuple[str | None, dict[str, Any]] | None:
        status, resp_headers, body = requester.requestJson("GET", url, params, headers)
        if status == 304 and etag:
            return None
        if status == 304:
            # "Not modified" to a request that named no version: there is nothing to reuse.
            raise requester.createException(502, resp_headers, {"message": "unexpected 304 (Not Modified)"})
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
