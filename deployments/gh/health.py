"""The GitHub half of /health: repository access, what the credentials may do, the deploy workflow,
the rate limit.

What the credentials may do is known for two kinds of them: a classic token's scopes come with
every answer (X-OAuth-Scopes), and a GitHub App installation's permissions from
``GET /app/installations/{id}`` (https://docs.github.com/en/rest/apps/apps#get-an-installation-for-the-authenticated-app).
A fine-grained personal access token's permissions cannot be read through the API: GitHub sends it
no X-OAuth-Scopes (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#resource-not-accessible),
so /health says they cannot be verified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from django.conf import settings
from github import GithubException
from github.Requester import Requester

from .client import _app_integration, _call, _repo_url, auth_kind, state
from .errors import (
    GitHubAPIError,
    GitHubAuthError,
    GitHubError,
    GitHubNotFoundError,
    GitHubPermissionError,
    GitHubRateLimitError,
)

CANNOT_BE_VERIFIED = "cannot be verified"
NOT_APPLICABLE = "not applicable"
# What the portal's GitHub App installation needs: dispatch and follow runs, read the specs.
REQUIRED_APP_PERMISSIONS = {"actions": "write", "contents": "read"}
# What it uses when granted: a failed run's annotations (the failed step is known without it).
OPTIONAL_APP_PERMISSIONS = {"checks": "read"}
_LEVELS = {"read": 1, "write": 2, "admin": 3}


def _unknown_scopes() -> dict[str, bool | None]:
    return {"repo": None, "workflow": None}


@dataclass
class HealthReport:
    healthy: bool
    reason: str
    repo: str
    auth: str
    github: str = "unreachable"
    # A classic token's scopes; a string for credentials that have none ("not applicable": a GitHub
    # App) or whose scopes GitHub does not tell ("cannot be verified": a fine-grained token).
    scopes: dict[str, bool | None] | str = field(default_factory=_unknown_scopes)
    # A GitHub App installation's level of each permission the portal uses (None: not granted); a
    # string for tokens: "not applicable" (classic: see scopes) or "cannot be verified".
    permissions: dict[str, str | None] | str = NOT_APPLICABLE
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
        if report.auth == "app":
            report.scopes = NOT_APPLICABLE
            report.permissions = _installation_permissions()
        elif "x-oauth-scopes" in headers:
            report.auth = "classic_token"
            scopes = {s.strip() for s in headers["x-oauth-scopes"].split(",") if s.strip()}
            report.scopes = {"repo": "repo" in scopes, "workflow": "workflow" in scopes}
        else:
            # No scopes header: a fine-grained token (github_pat_...), whose permissions no API tells.
            if settings.GH_TOKEN.startswith("github_pat_"):
                report.auth = "fine_grained_token"
            report.scopes = report.permissions = CANNOT_BE_VERIFIED
        wf_url = _repo_url(f"/actions/workflows/{quote(settings.DEPLOY_WORKFLOW, safe='')}")
        try:
            _, wf = _call(lambda: requester.requestJsonAndCheck("GET", wf_url))
            report.workflow = {"file": settings.DEPLOY_WORKFLOW, "found": True, "state": wf.get("state")}
        except GitHubNotFoundError:
            report.workflow = {"file": settings.DEPLOY_WORKFLOW, "found": False, "state": None}
        report.rate_limit = _rate_limit(requester)
    except GitHubError as exc:
        # Missing App permissions are why a later call was refused: say which.
        report.reason = _lacking(report.permissions) or exc.message
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
    if lacking := _lacking(report.permissions):
        report.reason = lacking
    elif not report.workflow["found"]:
        report.reason = f"Deploy workflow '{settings.DEPLOY_WORKFLOW}' not found in {settings.GH_REPO}."
    elif report.workflow["state"] != "active":
        report.reason = f"Deploy workflow '{settings.DEPLOY_WORKFLOW}' is {report.workflow['state']}."
    elif isinstance(report.scopes, dict) and report.scopes["repo"] is False:
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


def _installation_permissions() -> dict[str, str | None]:
    """The App installation's level of each permission the portal uses (None: not granted)."""

    def fetch() -> object:
        integration = _app_integration()
        try:
            _, data = integration.requester.requestJsonAndCheck(
                "GET", f"/app/installations/{int(settings.GITHUB_APP_INSTALLATION_ID)}"
            )
        finally:
            integration.close()
        return data

    data = _call(
        fetch,
        not_found=f"GitHub App installation {settings.GITHUB_APP_INSTALLATION_ID} was not found. "
        "Check GITHUB_APP_INSTALLATION_ID.",
    )
    granted = data.get("permissions") if isinstance(data, dict) else None
    if not isinstance(granted, dict):
        raise GitHubAPIError("GitHub's answer for the App installation has no permissions.")
    levels: dict[str, str | None] = {}
    for name in (*REQUIRED_APP_PERMISSIONS, *OPTIONAL_APP_PERMISSIONS):
        level = granted.get(name)
        levels[name] = level if isinstance(level, str) and level in _LEVELS else None
    return levels


def _lacking(permissions: dict[str, str | None] | str) -> str:
    """Why the App installation's permissions are not enough ("" when they are, or are not known)."""
    if not isinstance(permissions, dict):
        return ""
    missing = [
        f"{name}: {level}"
        for name, level in REQUIRED_APP_PERMISSIONS.items()
        if _LEVELS.get(permissions.get(name) or "", 0) < _LEVELS[level]
    ]
    if not missing:
        return ""
    return (
        f"The GitHub App installation lacks permissions the portal needs: {', '.join(missing)}. "
        "Grant them in the App's settings (Permissions and events) and have the installation's owner "
        "accept the new permissions."
    )
