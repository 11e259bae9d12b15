"""The portal's GitHub errors, and the translation of PyGithub and transport failures into them.

Each error carries the HTTP status to answer, the seed's ``error_type`` and a message a person
can act on; one error template renders them all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests
from django.conf import settings
from github import GithubException


class GitHubError(Exception):
    """A GitHub call failed. Carries the HTTP status to answer, the error type and a message."""

    http_status = 500
    error_type = "server_error"
    title = "Deployment Failed"

    def __init__(self, message: str, *, title: str | None = None):
        super().__init__(message)
        self.message = message
        # What the error page shows beside the message, e.g. the request a failed dispatch concerns.
        self.context: dict[str, Any] = {}
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


def _translate(
    exc: Exception, *, not_found: str, forbidden: str, not_found_title: str = "Not Found"
) -> GitHubError:
    """Turn a PyGithub or transport failure into the portal's error, with an actionable message.

    No side effects: callers go through ``client._failure``, which also drops the cached clients on a 401.
    """
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
    message = _said(data.get("message"))
    remaining = headers.get("x-ratelimit-remaining")
    if exc.status in (403, 429) and (
        remaining == "0" or "retry-after" in headers or "rate limit" in message.lower()
    ):
        return _rate_limited(headers)
    if exc.status == 401:
        return GitHubAuthError(
            "GitHub rejected the portal's credentials (401 Bad credentials). "
            "Update GH_TOKEN, or the GitHub App settings, and restart the portal."
        )
    if exc.status == 403:
        # GitHub names what a GitHub App or fine-grained token lacks: "actions=write".
        # https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#resource-not-accessible
        needed = headers.get("x-accepted-github-permissions", "")
        if needed and len(needed) <= 200 and needed.isprintable():
            forbidden += f" GitHub says this needs the permission {needed.replace('=', ': ')}."
        return GitHubPermissionError(forbidden)
    if exc.status == 404:
        return GitHubNotFoundError(not_found, title=not_found_title)
    if exc.status == 422:
        return _unprocessable(message or "Unknown error")
    if exc.status >= 500:
        return GitHubAPIError(
            f"GitHub answered {exc.status} ({message or 'server error'}). Try again in a minute."
        )
    return GitHubError(f"GitHub answered {exc.status}: {message or 'unexpected response'}.")


# The longest wait a retry-after is taken for; beyond it the header is not believed.
_RETRY_AFTER_LIMIT = 24 * 3600


def _rate_limited(headers: dict[str, str]) -> GitHubRateLimitError:
    """GitHub's primary limit (x-ratelimit-remaining 0: wait for x-ratelimit-reset) or a secondary
    one (too many requests in a short time: wait retry-after seconds, else at least a minute).
    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit"""
    remaining, limit = headers.get("x-ratelimit-remaining"), headers.get("x-ratelimit-limit")
    now = dt.datetime.now(dt.UTC)
    retry_after = headers.get("retry-after", "")
    wait = int(retry_after) if retry_after.isdigit() and int(retry_after) <= _RETRY_AFTER_LIMIT else None
    reset = headers.get("x-ratelimit-reset", "")
    numbers = {
        "remaining": int(remaining) if remaining and remaining.isdigit() else None,
        "limit": int(limit) if limit and limit.isdigit() else None,
    }
    if remaining == "0":
        if wait is not None:
            reset_at: dt.datetime | None = now + dt.timedelta(seconds=wait)
        elif reset.isdigit() and len(reset) <= 12:
            reset_at = dt.datetime.fromtimestamp(int(reset), dt.UTC)
        else:
            reset_at = None
        when = reset_at.strftime("%H:%M:%S UTC") if reset_at else "a few minutes"
        return GitHubRateLimitError(
            f"GitHub's API rate limit is used up (0 of {limit or '?'} requests left). "
            f"It resets at {when}; try again then.",
            reset_at=reset_at,
            **numbers,
        )
    reset_at = now + dt.timedelta(seconds=60 if wait is None else wait)
    return GitHubRateLimitError(
        "GitHub is refusing the portal's requests for a while: too many came in a short time "
        f"(GitHub's secondary rate limit). Try again after {reset_at.strftime('%H:%M:%S UTC')}"
        f"{f' (in {wait} s)' if wait is not None else ''}.",
        reset_at=reset_at,
        **numbers,
    )


def _unprocessable(message: str) -> GitHubValidationError:
    """GitHub's 422, titled and explained by its message: a dispatch is refused with 422 for a
    missing branch, a disabled workflow or one without a workflow_dispatch trigger, not only for
    inputs the workflow does not declare."""
    said = message.lower()
    workflow = f".github/workflows/{settings.DEPLOY_WORKFLOW}"
    if said.startswith("no ref found"):  # "No ref found for: <ref>"
        return GitHubValidationError(
            f"GitHub found no branch '{settings.DEPLOY_REF}' in {settings.GH_REPO} ({message}). "
            "Set DEPLOY_REF to the branch the deploy workflow runs on and restart the portal.",
            title="Branch Not Found",
        )
    if "disabled workflow" in said:  # "Cannot trigger a 'workflow_dispatch' on a disabled workflow"
        return GitHubValidationError(
            f"The deploy workflow '{settings.DEPLOY_WORKFLOW}' is disabled in {settings.GH_REPO} "
            f"({message}). Enable it in the repository's Actions tab (select the workflow, then "
            '"Enable workflow") and deploy again.',
            title="Workflow Disabled",
        )
    if "workflow_dispatch' trigger" in said:  # "Workflow does not have 'workflow_dispatch' trigger"
        return GitHubValidationError(
            f"GitHub cannot dispatch '{settings.DEPLOY_WORKFLOW}' ({message}). Add a workflow_dispatch "
            f"trigger with the portal's inputs to {workflow} on the repository's default branch (GitHub "
            f"dispatches only workflows declared there) and on '{settings.DEPLOY_REF}', then deploy again.",
            title="Workflow Cannot Be Dispatched",
        )
    if "input" in said:  # "Unexpected inputs provided: [...]", "Required input 'x' not provided"
        return GitHubValidationError(
            f"Workflow rejected inputs: {message}. Check that {workflow} on '{settings.DEPLOY_REF}' "
            "declares the inputs the portal sends: the five spec fields and request_id."
        )
    return GitHubValidationError(f"GitHub refused the request: {message}", title="Request Rejected")


# The most of GitHub's own words an error message or a log line quotes.
SAID_LIMIT = 300


def _said(message: object) -> str:
    """GitHub's ``message``, untrusted: on one line (no forged log lines) and at most SAID_LIMIT
    characters (a proxy's page or a huge string is neither logged nor shown whole)."""
    said = " ".join(str(message or "").split())
    return said if len(said) <= SAID_LIMIT else said[: SAID_LIMIT - 1] + "…"


def _describe(exc: Exception) -> str:
    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else ""
        return f"{exc.status} {_said(message)}"
    return type(exc).__name__
