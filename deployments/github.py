"""Everything the portal asks of GitHub. The only module that imports PyGithub.

Functions read settings when called, return plain dataclasses and raise the portal's own
``GitHubError`` subclasses, so callers never see a PyGithub object or exception.

PyGithub is configured deliberately: no client-side throttling (its default sleeps 0.25 s
between any two calls), a timeout on every call, and retries for idempotent GETs only. The
dispatch POST goes through a client with no retries at all, so it is never sent twice.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import github
import requests
import urllib3
from django.conf import settings
from github import Auth, GithubException
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

# Pauses between looks for our run (GHES fallback, lost dispatch answers), within
# settings.GITHUB_RUN_LOOKUP_SECONDS in all.
CORRELATE_POLL_INTERVALS = (0.2, 0.3, 0.4, 0.6, 0.8)


# --- Errors --------------------------------------------------------------------------------------


class GitHubError(Exception):
    """A GitHub call failed. Carries the HTTP status to answer, the error type and a message."""

    http_status = 500
    error_type = "server_error"
    title = "Deployment Failed"

    def __init__(self, message: str, *, title: str | None = None):
        super().__init__(message)
        self.message = message
        if title:
            self.title = title


class GitHubPermissionError(GitHubError):
    http_status = 403
    error_type = "forbidden"
    title = "Permission Denied"


class GitHubNotFoundError(GitHubError):
    http_status = 404
    error_type = "not_found"
    title = "Not Found"


class GitHubValidationError(GitHubError):
    http_status = 422
    error_type = "validation"
    title = "Invalid Workflow Inputs"


class GitHubUnavailableError(GitHubError):
    http_status = 503
    error_type = "service_unavailable"
    title = "GitHub Unavailable"


class GitHubAPIError(GitHubError):
    """GitHub answered with a server error (5xx)."""

    http_status = 503
    error_type = "api_error"
    title = "GitHub API Error"


class GitHubAuthError(GitHubUnavailableError):
    title = "GitHub Rejected the Portal's Credentials"


class GitHubRateLimitError(GitHubUnavailableError):
    title = "GitHub Rate Limit Reached"

    def __init__(
        self, message: str, *, remaining: int | None, limit: int | None, reset_at: dt.datetime | None
    ):
        super().__init__(message)
        self.remaining = remaining
        self.limit = limit
        self.reset_at = reset_at


# --- Plain results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeEntry:
    path: str
    sha: str


@dataclass(frozen=True)
class SpecTree:
    """The blobs under SPECS_PATH; ``etag`` makes the next listing a conditional request."""

    etag: str | None
    entries: tuple[TreeEntry, ...]
    truncated: bool = False


@dataclass(frozen=True)
class DispatchResult:
    run_id: int | None
    run_url: str | None
    # How the run was found: "run_details" (the dispatch answer), "run_name" (GHES fallback) or "".
    correlated_by: str


@dataclass(frozen=True)
class RunState:
    run_id: int
    status: str
    conclusion: str | None
    html_url: str
    run_number: int | None
    display_title: str
    created_at: dt.datetime | None
    run_started_at: dt.datetime | None
    updated_at: dt.datetime | None
    etag: str | None = None


@dataclass
class HealthReport:
    healthy: bool
    reason: str
    repo: str
    auth: str
    github: str = "unreachable"
    scopes: dict[str, bool | None] = field(default_factory=lambda: {"repo": None, "workflow": None})
    workflow: dict[str, Any] = field(default_factory=dict)
    rate_limit: dict[str, int | None] = field(default_factory=dict)


# --- Client ---------------------------------------------------------------------------------------


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


def _client(*, writes: bool) -> github.Github:
    key = (
        settings.GITHUB_API_URL,
        settings.GH_TOKEN,
        settings.GITHUB_APP_ID,
        settings.GITHUB_APP_PRIVATE_KEY,
        settings.GITHUB_APP_INSTALLATION_ID,
        settings.GITHUB_TIMEOUT,
    )
    return _cached_client(key, writes)


@functools.lru_cache(maxsize=8)
def _cached_client(key: tuple, writes: bool) -> github.Github:
    # Cached per process so connections are kept alive between requests.
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


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _translate(
    exc: Exception, *, not_found: str, forbidden: str, not_found_title: str = "Not Found"
) -> GitHubError:
    """Turn a PyGithub or transport failure into the portal's error, with an actionable message."""
    if isinstance(exc, requests.exceptions.Timeout):
        return GitHubUnavailableError(
            f"GitHub did not answer within {settings.GITHUB_TIMEOUT} s. Try again in a minute."
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return GitHubUnavailableError(
            "Could not reach GitHub (connection failed). Check the network and try again in a minute."
        )
    if not isinstance(exc, GithubException):
        return GitHubError("Unexpected error while talking to GitHub. The details are in the server log.")
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or "").strip()
    remaining = headers.get("x-ratelimit-remaining")
    if exc.status in (403, 429) and (
        remaining == "0" or "retry-after" in headers or "rate limit" in message.lower()
    ):
        reset = headers.get("x-ratelimit-reset")
        reset_at = dt.datetime.fromtimestamp(int(reset), dt.UTC) if reset and reset.isdigit() else None
        if "retry-after" in headers and headers["retry-after"].isdigit():
            reset_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(headers["retry-after"]))
        limit = headers.get("x-ratelimit-limit")
        when = reset_at.strftime("%H:%M:%S UTC") if reset_at else "a few minutes"
        return GitHubRateLimitError(
            f"GitHub's API rate limit is used up ({remaining or 0} of {limit or '?'} requests left). "
            f"It resets at {when}; try again then.",
            remaining=int(remaining) if remaining and remaining.isdigit() else None,
            limit=int(limit) if limit and limit.isdigit() else None,
            reset_at=reset_at,
        )
    if exc.status == 401:
        _cached_client.cache_clear()  # a revoked or rotated token: build a fresh client next time
        return GitHubAuthError(
            "GitHub rejected the portal's credentials (401 Bad credentials). "
            "Update GH_TOKEN, or the GitHub App settings, and restart the portal."
        )
    if exc.status == 403:
        return GitHubPermissionError(forbidden)
    if exc.status == 404:
        return GitHubNotFoundError(not_found, title=not_found_title)
    if exc.status == 422:
        return GitHubValidationError(f"Workflow rejected inputs: {message or 'Unknown error'}")
    if exc.status >= 500:
        return GitHubAPIError(
            f"GitHub answered {exc.status} ({message or 'server error'}). Try again in a minute."
        )
    return GitHubError(f"GitHub answered {exc.status}: {message or 'unexpected response'}.")


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
        raise _translate(
            exc,
            not_found=not_found,
            not_found_title=not_found_title,
            forbidden=forbidden
            or f"The portal's GitHub credentials cannot read {settings.GH_REPO}. "
            "A classic token needs the 'repo' scope; a fine-grained token or app needs Contents: read.",
        ) from None


def _describe(exc: Exception) -> str:
    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else ""
        return f"{exc.status} {message}"
    return type(exc).__name__


# --- Reading specs ---------------------------------------------------------------------------------


def get_spec_tree(*, etag: str | None = None) -> SpecTree | None:
    """The spec.yml blobs under SPECS_PATH at DEPLOY_REF, in one call.

    With ``etag`` the call is conditional: an unchanged repository answers 304 (free of rate
    limit) and this returns None.
    """
    result = _conditional_get(
        _repo_url(f"/git/trees/{quote(settings.DEPLOY_REF, safe='')}"),
        {"recursive": "1"},
        etag=etag,
        not_found=f"Branch '{settings.DEPLOY_REF}' of repository '{settings.GH_REPO}' was not found. "
        "Check GH_REPO and DEPLOY_REF.",
    )
    if result is None:
        return None
    etag, data = result
    prefix = settings.SPECS_PATH + "/"
    entries = tuple(
        TreeEntry(path=item["path"], sha=item["sha"])
        for item in data.get("tree", [])
        if item.get("type") == "blob"
        and item["path"].startswith(prefix)
        and item["path"].endswith("/spec.yml")
    )
    return SpecTree(etag=etag, entries=entries, truncated=bool(data.get("truncated")))


def _conditional_get(
    url: str, params: dict, *, etag: str | None, not_found: str
) -> tuple[str | None, dict] | None:
    """GET with If-None-Match: None when unchanged (a 304 spends no rate limit), else (etag, data)."""
    requester = _client(writes=False).requester
    headers = {"If-None-Match": etag} if etag else {}

    def fetch():
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

    return _call(fetch, not_found=not_found)


def get_blob_text(sha: str) -> str:
    """One blob's text, by its SHA (content-addressed: cache it forever)."""
    requester = _client(writes=False).requester
    _, data = _call(lambda: requester.requestJsonAndCheck("GET", _repo_url(f"/git/blobs/{sha}")))
    if data.get("encoding") == "base64":
        return base64.b64decode(data["content"]).decode("utf-8", errors="replace")
    return data.get("content", "")


# --- Dispatching --------------------------------------------------------------------------------------

# Set when the server rejects return_run_details (GHES 3.20 and older); not asked again.
_run_details_unsupported: set[str] = set()


def _dispatch_errors() -> dict[str, str]:
    return {
        "not_found_title": "Workflow Not Found",
        "not_found": f"Workflow '{settings.DEPLOY_WORKFLOW}' or branch '{settings.DEPLOY_REF}' not found in "
        f"{settings.GH_REPO}. Check that .github/workflows/{settings.DEPLOY_WORKFLOW} exists on "
        f"'{settings.DEPLOY_REF}' and that DEPLOY_WORKFLOW and DEPLOY_REF are right.",
        "forbidden": "The portal's GitHub credentials may not trigger workflows. Update GH_TOKEN: a classic "
        "token needs the 'repo' scope; a fine-grained token or GitHub App needs Actions: write.",
    }


def dispatch(*, inputs: dict[str, str]) -> DispatchResult:
    """Trigger the deploy workflow once and find the run it created.

    Asks GitHub for the run in the dispatch answer (``return_run_details``). A server that
    rejects that field (GHES 3.20 and older) gets a plain dispatch, and the run is then found
    by the ``[request_id]`` in its title. When neither works the run is left unknown
    (``run_id`` None): the caller shows the Actions page and the run sync fills it in later.
    A dispatch whose answer was lost (timeout, dropped connection, 5xx) may still have created
    the run: it is looked for before the failure is reported, and never sent again.
    """
    workflow = _client(writes=True).get_repo(settings.GH_REPO).get_workflow(settings.DEPLOY_WORKFLOW)
    api = settings.GITHUB_API_URL
    request_id = inputs.get("request_id", "")
    started = dt.datetime.now(dt.UTC)
    try:
        if api not in _run_details_unsupported:
            try:
                run = workflow.create_dispatch(
                    ref=settings.DEPLOY_REF, inputs=inputs, throw=True, return_run_details=True
                )
            except GithubException as exc:
                message = exc.data.get("message", "") if isinstance(exc.data, dict) else ""
                if exc.status != 400 or "return_run_details" not in message:
                    raise
                # The server refused the field and created no run: dispatching without it is safe.
                _run_details_unsupported.add(api)
            else:
                if isinstance(run, bool):  # 204: a server that ignores the field
                    return _correlate(request_id=request_id, since=started)
                return DispatchResult(run_id=run.id, run_url=run.html_url, correlated_by="run_details")
        workflow.create_dispatch(ref=settings.DEPLOY_REF, inputs=inputs, throw=True)
    except (GithubException, requests.exceptions.RequestException) as exc:
        logger.warning("Dispatch failed: %s", _describe(exc))
        error = _translate(exc, **_dispatch_errors())
        if _may_have_arrived(exc):
            found = _correlate(request_id=request_id, since=started)
            if found.run_id:
                logger.warning(
                    "Dispatch answer was lost but run %s exists: treated as dispatched", found.run_id
                )
                return found
            error.message += (
                " The request may still have reached GitHub: check the request page, which updates when "
                "a run appears, before trying again."
            )
        raise error from None
    return _correlate(request_id=request_id, since=started)


def _may_have_arrived(exc: Exception) -> bool:
    """Whether GitHub may have acted on a dispatch that failed: not when no connection was made."""
    if isinstance(exc, GithubException):
        return exc.status >= 500
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, urllib3.exceptions.NewConnectionError)


def _correlate(*, request_id: str, since: dt.datetime) -> DispatchResult:
    deadline = time.monotonic() + settings.GITHUB_RUN_LOOKUP_SECONDS
    for pause in CORRELATE_POLL_INTERVALS:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        try:
            run = find_run(request_id=request_id, since=since)
        except GitHubError:
            run = None  # the dispatch went through; the sync finds the run later
        if run:
            return DispatchResult(run_id=run.run_id, run_url=run.html_url, correlated_by="run_name")
        if time.monotonic() >= deadline:
            break
    return DispatchResult(run_id=None, run_url=None, correlated_by="")


def find_run(*, request_id: str, since: dt.datetime) -> RunState | None:
    """The deploy run whose title carries ``[request_id]``, created since ``since`` (minus clock skew)."""
    if not request_id:
        return None
    marker = f"[{request_id}]"
    created = (since - dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    requester = _client(writes=False).requester
    url = _repo_url(f"/actions/workflows/{quote(settings.DEPLOY_WORKFLOW, safe='')}/runs")
    params = {"event": "workflow_dispatch", "created": f">={created}", "per_page": "100"}
    _, data = _call(lambda: requester.requestJsonAndCheck("GET", url, params))
    for item in data.get("workflow_runs", []):
        if marker in (item.get("display_title") or "") or marker in (item.get("name") or ""):
            return run_state_from_payload(item)
    return None


def get_run(run_id: int, *, etag: str | None = None) -> RunState | None:
    """One run by id; with ``etag`` a conditional request that returns None when unchanged."""
    result = _conditional_get(
        _repo_url(f"/actions/runs/{int(run_id)}"),
        {},
        etag=etag,
        not_found=f"Run {run_id} was not found in {settings.GH_REPO}.",
    )
    if result is None:
        return None
    etag, data = result
    return dataclasses.replace(run_state_from_payload(data), etag=etag)


def run_state_from_payload(data: dict) -> RunState:
    """A run from GitHub's JSON: the REST answer and a webhook's ``workflow_run`` share the shape."""
    return RunState(
        run_id=int(data["id"]),
        status=data.get("status") or "",
        conclusion=data.get("conclusion"),
        html_url=data.get("html_url") or "",
        run_number=data.get("run_number"),
        display_title=data.get("display_title") or data.get("name") or "",
        created_at=_parse_time(data.get("created_at")),
        run_started_at=_parse_time(data.get("run_started_at")),
        updated_at=_parse_time(data.get("updated_at")),
    )


# --- Health -------------------------------------------------------------------------------------------


def health_probe() -> HealthReport:
    """Probe GitHub for /health: repository access, token scopes, the deploy workflow, rate limit."""
    report = HealthReport(healthy=False, reason="", repo=settings.GH_REPO, auth=auth_kind())
    try:
        requester = _client(writes=False).requester
        headers, _ = _call(lambda: requester.requestJsonAndCheck("GET", _repo_url()))
        report.github = "connected"
        headers = {k.lower(): v for k, v in headers.items()}
        if "x-oauth-scopes" in headers:
            report.auth = "classic_token" if report.auth == "token" else report.auth
            scopes = {s.strip() for s in headers["x-oauth-scopes"].split(",") if s.strip()}
            report.scopes = {"repo": "repo" in scopes, "workflow": "workflow" in scopes}
        elif report.auth == "token":
            report.auth = "fine_grained_token"
        wf_url = _repo_url(f"/actions/workflows/{quote(settings.DEPLOY_WORKFLOW, safe='')}")
        try:
            _, wf = _call(lambda: requester.requestJsonAndCheck("GET", wf_url))
            report.workflow = {"file": settings.DEPLOY_WORKFLOW, "found": True, "state": wf.get("state")}
        except GitHubNotFoundError:
            report.workflow = {"file": settings.DEPLOY_WORKFLOW, "found": False, "state": None}
        _, limits = _call(lambda: requester.requestJsonAndCheck("GET", "/rate_limit"))
        core = (limits.get("resources") or {}).get("core") or limits.get("rate") or {}
        report.rate_limit = {
            "remaining": core.get("remaining"),
            "limit": core.get("limit"),
            "reset_at": core.get("reset"),
        }
    except GitHubError as exc:
        report.reason = exc.message
        if isinstance(exc, GitHubRateLimitError):
            report.github = "rate_limited"
            report.rate_limit = {
                "remaining": exc.remaining,
                "limit": exc.limit,
                "reset_at": int(exc.reset_at.timestamp()) if exc.reset_at else None,
            }
        elif report.github == "connected" or isinstance(exc, GitHubAuthError | GitHubPermissionError):
            report.github = "error"
        return report
    if not report.workflow["found"]:
        report.reason = f"Deploy workflow '{settings.DEPLOY_WORKFLOW}' not found in {settings.GH_REPO}."
    elif report.workflow["state"] != "active":
        report.reason = f"Deploy workflow '{settings.DEPLOY_WORKFLOW}' is {report.workflow['state']}."
    elif report.scopes["repo"] is False:
        report.reason = "The GitHub token lacks the 'repo' scope needed to trigger deployments."
    elif report.rate_limit.get("remaining") == 0:
        report.github = "rate_limited"
        report.reason = "GitHub's API rate limit is used up."
    else:
        report.healthy = True
    return report
