"""The GitHub half of /health: repository access, token scopes, the deploy workflow, rate limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings

from .client import _call, _repo_url, auth_kind, state
from .errors import (
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
    rate_limit: dict[str, int | None] = field(default_factory=dict)


def health_probe() -> HealthReport:
    """Probe GitHub for /health: repository access, token scopes, the deploy workflow, rate limit."""
    report = HealthReport(healthy=False, reason="", repo=settings.GH_REPO, auth=auth_kind())
    try:
        requester = state.client(writes=False).requester
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
