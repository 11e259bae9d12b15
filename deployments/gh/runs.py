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

from .client import _call, _conditional_get, _failure, _repo_url, state
from .errors import GitHubError, _describe

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


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


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
                    return _correlate(request_id=request_id, since=started)
                return DispatchResult(run_id=run.id, run_url=run.html_url, correlated_by="run_details")
        workflow.create_dispatch(ref=settings.DEPLOY_REF, inputs=inputs, throw=True)
    except (GithubException, requests.exceptions.RequestException) as exc:
        logger.warning("Dispatch failed: %s", _describe(exc))
        error = _failure(exc, **_dispatch_errors())
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
    requester = state.client(writes=False).requester
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


def run_state_from_payload(data: dict[str, Any]) -> RunState:
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
