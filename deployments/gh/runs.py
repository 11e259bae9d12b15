"""Dispatching the deploy workflow and following its runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
import urllib3
from django.conf import settings
from github import GithubException

from .client import _call, _conditional_get, _failure, _repo_url, state, web_url
from .errors import GitHubAPIError, GitHubError, _describe

logger = logging.getLogger(__name__)

# Pauses between looks for our run (GHES fallback, lost dispatch answers), within
# settings.GITHUB_RUN_LOOKUP_SECONDS in all.
CORRELATE_POLL_INTERVALS = (0.2, 0.3, 0.4, 0.6, 0.8)


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
    # Where the run came from: checked before a run may touch a request (webhooks.py, services).
    repository: str = ""
    path: str = ""
    event: str = ""
    head_branch: str = ""
    run_attempt: int = 1


# GitHub's ids are 64-bit; anything else in an id or number field is not GitHub's answer.
_MAX_ID = 2**63 - 1


def _parse_time(value: object) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("timestamp is not an ISO 8601 string")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _integer(value: object, name: str, *, optional: bool = False) -> int | None:
    """A positive 64-bit integer from JSON: not a float (``1e400`` is infinity), bool or string."""
    if value is None and optional:
        return None
    if type(value) is not int or not 0 < value <= _MAX_ID:
        raise ValueError(f"{name} is not a positive integer")
    return value


def _text(value: object, name: str, *, limit: int = 1024) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise ValueError(f"{name} is not a short string")
    return value


def _dispatch_errors() -> dict[str, str]:
    # GitHub answers 404, not 403, to credentials that cannot see a private repository; a missing
    # branch, a disabled workflow or a missing trigger are 422s, told apart in errors._unprocessable.
    return {
        "not_found_title": "Workflow or Repository Not Found",
        "not_found": f"GitHub answered 404 Not Found to the dispatch of '{settings.DEPLOY_WORKFLOW}' in "
        f"{settings.GH_REPO}. Either the portal's credentials cannot see {settings.GH_REPO} (GitHub "
        "answers 404 to a token or GitHub App installation without access to a private repository: "
        "check GH_REPO and that GH_TOKEN, or the app's installation, has access to it), or the workflow "
        f"does not exist: .github/workflows/{settings.DEPLOY_WORKFLOW} must be on the repository's "
        "default branch, and DEPLOY_WORKFLOW must name it.",
        "forbidden": "The portal's GitHub credentials may not trigger workflows. Update GH_TOKEN: a classic "
        "token needs the 'repo' scope; a fine-grained token or GitHub App needs Actions: write.",
    }


def dispatch(*, inputs: dict[str, str], exclude_run_ids: tuple[int, ...] = ()) -> DispatchResult:
    """Trigger the deploy workflow once and find the run it created.

    Asks GitHub for the run in the dispatch answer (``return_run_details``). A server that
    rejects that field (GHES 3.20 and older) gets a plain dispatch, and the run is then found
    by the ``[request_id]`` in its title. When neither works the run is left unknown
    (``run_id`` None): the caller shows the Actions page and the run sync fills it in later.
    A dispatch whose answer was lost (timeout, dropped connection, 5xx) may still have created
    the run: it is looked for before the failure is reported, and never sent again.
    ``exclude_run_ids``: earlier runs of the same request (its plan run), never taken for this one.
    """
    workflow = state.client(writes=True).get_repo(settings.GH_REPO).get_workflow(settings.DEPLOY_WORKFLOW)
    api = settings.GITHUB_API_URL
    request_id = inputs.get("request_id", "")
    started = dt.datetime.now(dt.UTC)
    try:
        if state.run_details_supported(api):
            try:
                run = workflow.create_dispatch(
                    ref=settings.DEPLOY_REF, inputs=inputs, throw=True, return_run_details=True
                )
            except GithubException as exc:
                message = exc.data.get("message", "") if isinstance(exc.data, dict) else ""
                if exc.status != 400 or "return_run_details" not in message:
                    raise
                # The server refused the field and created no run: dispatching without it is safe.
                state.note_run_details_refused(api)
            else:
                if isinstance(run, bool):  # 204: a server that ignores the field
                    return _correlate(request_id=request_id, since=started, exclude=exclude_run_ids)
                return DispatchResult(run_id=run.id, run_url=run.html_url, correlated_by="run_details")
        workflow.create_dispatch(ref=settings.DEPLOY_REF, inputs=inputs, throw=True)
    except (GithubException, requests.exceptions.RequestException) as exc:
        logger.warning("Dispatch failed: %s", _describe(exc))
        error = _failure(exc, **_dispatch_errors())
        if _may_have_arrived(exc):
            found = _correlate(request_id=request_id, since=started, exclude=exclude_run_ids)
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
    return _correlate(request_id=request_id, since=started, exclude=exclude_run_ids)


def _may_have_arrived(exc: Exception) -> bool:
    """Whether GitHub may have acted on a dispatch that failed: not when no connection was made."""
    if isinstance(exc, GithubException):
        return exc.status >= 500
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, urllib3.exceptions.NewConnectionError)


def _correlate(*, request_id: str, since: dt.datetime, exclude: tuple[int, ...] = ()) -> DispatchResult:
    deadline = time.monotonic() + settings.GITHUB_RUN_LOOKUP_SECONDS
    for pause in CORRELATE_POLL_INTERVALS:
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        try:
            run = find_run(request_id=request_id, since=since, exclude=exclude)
        except GitHubError:
            run = None  # the dispatch went through; the sync finds the run later
        if run:
            return DispatchResult(run_id=run.run_id, run_url=run.html_url, correlated_by="run_name")
        if time.monotonic() >= deadline:
            break
    return DispatchResult(run_id=None, run_url=None, correlated_by="")


def find_run(*, request_id: str, since: dt.datetime, exclude: tuple[int, ...] = ()) -> RunState | None:
    """The deploy run whose title carries ``[request_id]``, created since ``since`` (minus clock
    skew), other than the runs in ``exclude`` (the request's plan run, when the apply is looked for)."""
    if not request_id:
        return None
    marker = f"[{request_id}]"
    created = (since - dt.timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    requester = state.client(writes=False).requester
    url = _repo_url(f"/actions/workflows/{quote(settings.DEPLOY_WORKFLOW, safe='')}/runs")
    params = {
        "event": "workflow_dispatch",
        "branch": settings.DEPLOY_REF,
        "created": f">={created}",
        "per_page": "100",
    }
    _, data = _call(lambda: requester.requestJsonAndCheck("GET", url, params))
    for item in data.get("workflow_runs") or []:
        try:
            run = run_state_from_payload(item)
        except (ValueError, KeyError, TypeError):
            continue  # not shaped like a run: not ours either
        if marker in run.display_title and run.run_id not in exclude and not foreign_run_reason(run):
            return run
    return None


def foreign_run_reason(run: RunState) -> str:
    """Why ``run`` is not a run of the deploy workflow the portal dispatches ("" when it is).

    A signed webhook proves only that GitHub (or someone with the secret) sent it: an
    organisation or App webhook reports every repository's runs, and a run of CI or of another
    branch may carry a request id in its title. Only runs of GH_REPO's deploy workflow,
    dispatched on DEPLOY_REF, may move a request.
    """
    if run.repository.lower() != settings.GH_REPO.lower():
        return f"run of another repository ({run.repository or 'none'})"
    workflow = f".github/workflows/{settings.DEPLOY_WORKFLOW}"
    # Newer payloads may suffix the path with "@<ref>"; a numeric DEPLOY_WORKFLOW is an id, not a file.
    if not settings.DEPLOY_WORKFLOW.isdigit() and run.path.split("@", 1)[0] != workflow:
        return f"run of another workflow ({run.path or 'none'})"
    if run.event != "workflow_dispatch":
        return f"run triggered by {run.event or 'an unknown event'}, not workflow_dispatch"
    if run.head_branch != settings.DEPLOY_REF:
        return f"run on another branch ({run.head_branch or 'none'})"
    return ""


def is_run_url(url: str) -> bool:
    """Whether ``url`` is a page of GH_REPO on the configured GitHub web host (safe to link)."""
    return url.startswith(f"{web_url()}/{settings.GH_REPO}/") and "\\" not in url and url.isprintable()


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
    try:
        run = run_state_from_payload(data)
    except (ValueError, KeyError, TypeError):
        raise GitHubAPIError(f"GitHub's answer for run {run_id} is not shaped like a run.") from None
    return dataclasses.replace(run, etag=etag)


def run_state_from_payload(data: dict[str, Any]) -> RunState:
    """A run from GitHub's JSON: the REST answer and a webhook's ``workflow_run`` share the shape.

    Raises ValueError (or KeyError, TypeError) for a payload that is not shaped like GitHub's:
    every field is checked for its type and size, since a signed webhook can still carry anything.
    """
    if not isinstance(data, dict):
        raise TypeError("a run is a JSON object")
    repository = data.get("repository")
    run_id = _integer(data["id"], "id")
    assert run_id is not None
    return RunState(
        run_id=run_id,
        status=_text(data.get("status"), "status", limit=32),
        conclusion=_text(data.get("conclusion"), "conclusion", limit=32) or None,
        html_url=_text(data.get("html_url"), "html_url"),
        run_number=_integer(data.get("run_number"), "run_number", optional=True),
        display_title=_text(data.get("display_title") or data.get("name"), "display_title"),
        created_at=_parse_time(data.get("created_at")),
        run_started_at=_parse_time(data.get("run_started_at")),
        updated_at=_parse_time(data.get("updated_at")),
        repository=_text(repository.get("full_name"), "repository") if isinstance(repository, dict) else "",
        path=_text(data.get("path"), "path"),
        event=_text(data.get("event"), "event", limit=64),
        head_branch=_text(data.get("head_branch"), "head_branch"),
        run_attempt=_integer(data.get("run_attempt"), "run_attempt", optional=True) or 1,
    )
