"""Why a run did not succeed: the step that failed and what the run said about it, in plain words.

Two requests at most: the run's jobs (GitHub's job and step conclusions), then the check-run
annotations of the failed job (the ``::error title=...::message`` lines the workflow wrote).
https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run
https://docs.github.com/en/rest/checks/runs#list-check-run-annotations

Everything GitHub answers is checked for type and size and cut to a bounded length: a page shows
it and the database stores it. The annotations are read from a URL the portal builds from the job
id, never from the ``check_run_url`` in the answer, so the credentials go to GH_REPO only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .client import _call, _repo_url, state
from .errors import GitHubAPIError, GitHubNotFoundError, GitHubPermissionError
from .runs import is_run_url

logger = logging.getLogger(__name__)

STEP_LIMIT = 200
TITLE_LIMIT = 200
MESSAGE_LIMIT = 1000
# Jobs and annotations read: one page of each (a deploy run has one job and a few annotations).
PAGE_SIZE = 100
_MAX_ID = 2**63 - 1
# Conclusions of a job or step that stopped the run, in the order the portal looks for them.
_STOPPED = ("failure", "timed_out", "cancelled")
# What the runner itself adds to a job that stopped: says nothing about why.
_RUNNER_NOTES = re.compile(
    r"Process completed with exit code \d+\.?"
    r"|The operation was canceled\.?"
    r"|The job running on runner .* has exceeded the maximum execution time of \d+ minutes\.?"
    r"|The runner has received a shutdown signal\..*",
    re.DOTALL,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class RunFailure:
    """Where a run stopped and what it said: ``step`` is the failed step's name ("" when no step
    failed, e.g. the job could not start), ``title``/``message`` the first meaningful annotation
    ("" when there is none), ``job_url`` the job's page on GitHub ("" when not a safe link)."""

    step: str
    title: str
    message: str
    job_url: str


def run_failure(run_id: int, attempt: int | None = None) -> RunFailure | None:
    """Why run ``run_id`` (its ``attempt``, default the newest) did not succeed; None when no job
    of it stopped (it succeeded, or never started a job).

    Raises the portal's GitHubError subclasses when GitHub cannot be asked or answers nonsense.
    Annotations that the credentials may not read (a fine-grained token cannot be granted the
    Checks permission; a GitHub App needs checks: read) leave the step without its message.
    """
    requester = state.client(writes=False).requester
    suffix = f"/attempts/{int(attempt)}/jobs" if attempt else "/jobs"
    url = _repo_url(f"/actions/runs/{int(run_id)}{suffix}")
    _, data = _call(
        lambda: requester.requestJsonAndCheck("GET", url, {"per_page": str(PAGE_SIZE)}),
        not_found=f"Run {run_id} was not found in {settings.GH_REPO}.",
    )
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(jobs, list):
        raise GitHubAPIError(f"GitHub's list of the jobs of run {run_id} is not shaped like one.")
    stopped = _stopped_job(jobs[:PAGE_SIZE])
    if stopped is None:
        return None
    job_id, step, html_url = stopped
    title, message = _annotation(job_id)
    return RunFailure(step=step, title=title, message=message, job_url=html_url)


def _stopped_job(jobs: list[Any]) -> tuple[int, str, str] | None:
    """(id, failed step, safe html_url) of the first job that stopped the run."""
    for wanted in _STOPPED:
        for job in jobs:
            if not isinstance(job, dict) or job.get("conclusion") != wanted:
                continue
            job_id = job.get("id")
            if type(job_id) is not int or not 0 < job_id <= _MAX_ID:
                continue
            html_url = _text(job.get("html_url"), 2048)
            return job_id, _failed_step(job), html_url if is_run_url(html_url) else ""
    return None


def _failed_step(job: dict[str, Any]) -> str:
    steps = job.get("steps")
    if not isinstance(steps, list):
        return ""
    for wanted in _STOPPED:
        for step in steps[:PAGE_SIZE]:
            if isinstance(step, dict) and step.get("conclusion") == wanted:
                return _text(step.get("name"), STEP_LIMIT)
    return ""


def _annotation(job_id: int) -> tuple[str, str]:
    """(title, message) of the job's first meaningful failure annotation, ("", "") when none."""
    requester = state.client(writes=False).requester
    url = _repo_url(f"/check-runs/{job_id}/annotations")
    try:
        _, notes = _call(lambda: requester.requestJsonAndCheck("GET", url, {"per_page": str(PAGE_SIZE)}))
    except (GitHubPermissionError, GitHubNotFoundError) as exc:
        logger.info("annotations of job %s not readable: %s", job_id, exc.message)
        return "", ""
    if not isinstance(notes, list):
        raise GitHubAPIError(f"GitHub's annotations of job {job_id} are not shaped like a list.")
    for note in notes[:PAGE_SIZE]:
        if not isinstance(note, dict) or note.get("annotation_level") != "failure":
            continue
        message = _text(note.get("message"), MESSAGE_LIMIT)
        if message and not _RUNNER_NOTES.fullmatch(message):
            return _text(note.get("title"), TITLE_LIMIT), message
    return "", ""


def _text(value: object, limit: int) -> str:
    """A string from GitHub on one line, without control characters, at most ``limit`` long."""
    if not isinstance(value, str):
        return ""
    text = " ".join(_CONTROL.sub(" ", value[: limit * 4]).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_failure(failure: RunFailure | None, conclusion: str) -> tuple[str, str]:
    """(error_type, message) for a request whose run ended with ``conclusion``, in plain words
    for the request page; ("", "") for a run that succeeded."""
    at = f" at step “{failure.step}”" if failure and failure.step else ""
    if conclusion in ("success", "neutral", "skipped"):
        return "", ""
    if conclusion == "cancelled":
        return "cancelled", f"The run was cancelled on GitHub{at} before it finished."
    if conclusion == "timed_out":
        return "timed_out", f"The run took longer than its time limit and GitHub stopped it{at}."
    if conclusion == "action_required":
        return "action_required", "The run is waiting for someone to act on it on GitHub: see the run's page."
    if conclusion == "startup_failure":
        return (
            "startup_failure",
            "The run could not start: GitHub found a problem in the deploy workflow file. "
            "The run's page on GitHub says what it is.",
        )
    if failure is None:
        return "run_failed", "The run failed. GitHub gave no reason the portal could read: see the run's log."
    title = failure.title.lower()
    if title == "protected branch":
        advice = failure.message.split("Nothing was applied.", 1)[-1].strip()
        words = "GitHub refused the commit of spec.yml: the branch is protected. Nothing was applied."
        return "protected_branch", f"{words} {advice}".strip()
    if title == "spec changed":
        return (
            "spec_changed",
            "spec.yml changed since you opened it — review the new version: the workflow found another "
            f"version on the branch and changed nothing. {failure.message}".strip(),
        )
    if title == "stale plan":
        return "stale_plan", f"The plan is out of date — plan again. {failure.message}".strip()
    if failure.message:
        return "run_failed", f"The run failed{at}: {failure.message}"
    return "run_failed", f"The run failed{at}."
