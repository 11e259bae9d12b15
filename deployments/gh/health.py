"""The GitHub half of /health: repository access, token scopes, the deploy workflow, rate limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings
from github import GithubException
from github.Requester import Requester

from .client import _call, _repo_url, auth_kind, state
from .errors import (
    GitHubAPIError,
    GitHubAuthError,
    GitHubError,
    GitHubNotFoundError,
    GitHubPermissionError,
    GitHubRateLimitError,
)


@dataclass
class HealthReport:
    healthy: bool
    reason: str
    repo: str
    auth: str
    github: str = "unreachable"
    scopes: dict[str, bool | None] = field(default_factory=lambda: {"repo": None, "workflow": None})
    workflow: dict[str, Any] = field(default_factory=dict)
    # The seed's remaining/limit/reset_at; with "enabled": False when the server has no rate limit.
    rate_limit: dict[str, int | bool | None] = field(default_factory=dict)


def health_probe() -> HealthReport:
    """Probe GitHub for /health: repository access, token scopes, the deploy workflow, rate limit."""
    report = HealthReport(healthy=False, reason="", repo=settings.GH_REPO, auth=auth_kind())
    try:
        requester = state.client(writes=False).requester
        headers, _ = _call(
            lambda: requester.requestJsonAndCheck("GET", _repo_url()),
            not_found=f"Repository {settings.GH_REPO} not found, or the portal's credentials cannot see it "
            "(GitHub answers 404 to credentials without access to a private repository). Check GH_REPO "
            "and that GH_TOKEN, or the GitHub App's installation, has access to it.",
        )
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
        report.rate_limit = _rate_limit(requester)
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


def _rate_limit(requester: Requester) -> dict[str, int | bool | None]:
    """The core rate limit; ``enabled`` False on a server without one (GHES's default)."""

    def fetch() -> dict[str, Any] | None:
        try:
            _, limits = requester.requestJsonAndCheck("GET", "/rate_limit")
        except GithubException as exc:
            message = str(exc.data.get("message") or "") if isinstance(exc.data, dict) else ""
            if exc.status != 404:
                raise
            # GHES with API rate limiting disabled, as it is by default, answers 404 with this
            # message. Any other 404 here is a failure of its own, never a missing repository.
            if "rate limiting is not enabled" in message.lower():
                return None
            raise GitHubAPIError(
                f"GitHub answered 404 to GET /rate_limit ({message or 'Not Found'}). Check that "
                "GITHUB_API_URL is the API root (https://api.github.com, or https://HOST/api/v3 on GHES) "
                "and that no proxy between the portal and GitHub rewrites its paths."
            ) from None
        return limits if isinstance(limits, dict) else {}

    limits = _call(fetch)
    if limits is None:
        return {"enabled": False, "remaining": None, "limit": None, "reset_at": None}
    core = (limits.get("resources") or {}).get("core") or limits.get("rate") or {}
    return {"remaining": core.get("remaining"), "limit": core.get("limit"), "reset_at": core.get("reset")}
