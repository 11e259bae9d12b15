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
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

from .artifacts import _no_credentials, redirect_location
from .client import _call, _conditional_get, _repo_url, state
from .errors import GitHubAPIError, GitHubError, GitHubNotFoundError, GitHubPermissionError
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
    job_id: int = field(default=0, compare=False)  # the stopped job (its log), 0 when unknown


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
    return RunFailure(step=step, title=title, message=message, job_url=html_url, job_id=job_id)


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


# --- a run's jobs and steps, as the request page shows them ------------------------------------------

JOBS_SHOWN = 20
STEPS_SHOWN = 60


def run_jobs(
    run_id: int, attempt: int | None = None, *, etag: str | None = None
) -> tuple[str | None, list[dict[str, Any]]] | None:
    """The jobs of run ``run_id`` (its ``attempt``, default the newest) with their steps, as plain
    dicts for the shared cache: ``{"id", "name", "state", "seconds", "url", "steps": [{"name",
    "state", "seconds"}]}``; ``state`` is one word (succeeded, failed, cancelled, skipped, running,
    queued, waiting). One conditional request: None when ``etag`` still holds (a 304, free).
    https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run
    """
    suffix = f"/attempts/{int(attempt)}/jobs" if attempt else "/jobs"
    answer = _conditional_get(
        _repo_url(f"/actions/runs/{int(run_id)}{suffix}"),
        {"per_page": str(PAGE_SIZE)},
        etag=etag,
        not_found=f"Run {run_id} was not found in {settings.GH_REPO}.",
    )
    if answer is None:
        return None
    new_etag, data = answer
    listed = data.get("jobs")
    if not isinstance(listed, list):
        raise GitHubAPIError(f"GitHub's list of the jobs of run {run_id} is not shaped like one.")
    shown = [_job_view(job) for job in listed[:PAGE_SIZE] if isinstance(job, dict)]
    return (new_etag if isinstance(new_etag, str) else None), shown[:JOBS_SHOWN]


def _state(status: object, conclusion: object) -> str:
    if status == "completed":
        words = {"success": "succeeded", "failure": "failed", "timed_out": "timed out"}
        return words.get(str(conclusion), str(conclusion) if conclusion in _KNOWN_ENDS else "finished")
    if status == "in_progress":
        return "running"
    return "waiting" if status == "waiting" else "queued"


_KNOWN_ENDS = ("cancelled", "skipped", "neutral", "action_required", "stale")


def _seconds(item: dict[str, Any]) -> int | None:
    from .runs import _parse_time  # noqa: PLC0415 (one helper; runs imports nothing from here)

    try:
        start, end = _parse_time(item.get("started_at")), _parse_time(item.get("completed_at"))
    except (TypeError, ValueError):
        return None
    # A time without its zone (GitHub's are UTC, with a Z) cannot be compared with one with it.
    if start is None or end is None or start.tzinfo is None or end.tzinfo is None or end < start:
        return None
    return int((end - start).total_seconds())


def _job_view(job: dict[str, Any]) -> dict[str, Any]:
    html_url = _text(job.get("html_url"), 2048)
    job_id = job.get("id")
    listed = job.get("steps")
    steps: list[Any] = listed if isinstance(listed, list) else []
    return {
        "id": job_id if type(job_id) is int and 0 < job_id <= _MAX_ID else 0,
        "name": _text(job.get("name"), STEP_LIMIT) or "Job",
        "state": _state(job.get("status"), job.get("conclusion")),
        "seconds": _seconds(job),
        "url": html_url if is_run_url(html_url) else "",
        "steps": [
            {
                "name": _text(step.get("name"), STEP_LIMIT) or "Step",
                "state": _state(step.get("status"), step.get("conclusion")),
                "seconds": _seconds(step),
            }
            for step in steps[:STEPS_SHOWN]
            if isinstance(step, dict)
        ],
    }


# --- the tail of a failed job's log --------------------------------------------------------------

LOG_LINES = 50
LOG_LINE_LIMIT = 400
# The most read from the log's storage; a deploy job's log is tens of KiB.
MAX_LOG_BYTES = 8 * 1024 * 1024
_LOG_CHUNK = 64 * 1024
# GitHub's timestamp before each line: 2024-01-22T22:44:54.1389777Z
_TIMESTAMP = re.compile(r"^\ufeff?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ?")
# ANSI escape sequences: CSI (colours, cursor), OSC (titles, links), and two-character ones.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_LOG_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# Workflow commands as GitHub shows them on the run's page.
_MARKERS = (
    ("##[group]", "▸ "),
    ("##[error]", "Error: "),
    ("##[warning]", "Warning: "),
    ("##[notice]", "Notice: "),
    ("##[command]", "$ "),
)
_DROPPED = ("##[endgroup]", "##[debug]")


@dataclass(frozen=True)
class LogTail:
    """The last lines of a job's log, cleaned (``text``), or why there are none (``note``)."""

    text: str
    note: str = ""


def clean_log_line(raw: str) -> str | None:
    """One line of a job's log as shown: no timestamp, no escape codes or control characters,
    GitHub's markers in words, bounded; None for a line GitHub itself does not show."""
    line = _TIMESTAMP.sub("", raw.rstrip("\r\n"), count=1)
    line = _LOG_CONTROL.sub("", _ANSI.sub("", line)).replace("\t", "    ")
    for marker in _DROPPED:
        if line.startswith(marker):
            return None
    for marker, words in _MARKERS:
        if line.startswith(marker):
            line = words + line[len(marker) :]
            break
    return line if len(line) <= LOG_LINE_LIMIT else line[: LOG_LINE_LIMIT - 1] + "…"


def job_log_tail(job_id: int) -> LogTail:
    """The last LOG_LINES lines of job ``job_id``'s log, up to its last error: GitHub answers
    ``302`` to a plain-text file whose URL "expires after 1 minute", fetched without the portal's
    credentials and read up to MAX_LOG_BYTES. Never raises: a log GitHub no longer has (404,
    410: logs expire with the repository's retention), may not show (403) or fails to serve
    gives ``note``, one line that says so.
    https://docs.github.com/en/rest/actions/workflow-jobs#download-job-logs-for-a-workflow-run
    """
    if type(job_id) is not int or not 0 < job_id <= _MAX_ID:
        return LogTail("", "The job's log is not available: GitHub did not name the failed job.")
    try:
        location = _call(
            lambda: redirect_location(f"/actions/jobs/{job_id}/logs", f"job {job_id}'s log"),
            not_found=f"Job {job_id} was not found.",
            forbidden="The portal's GitHub credentials may not read the run's logs "
            "(a fine-grained token or GitHub App needs Actions: read).",
        )
        if location is None:
            return LogTail("", "The job's log is not available: GitHub no longer keeps it (logs expire).")
        lines = _call(lambda: _read_tail(location))
    except GitHubPermissionError as exc:
        return LogTail("", f"The job's log is not available: {exc.message}")
    except GitHubError as exc:
        logger.warning("log of job %s not read: %s", job_id, exc.message)
        return LogTail("", "The job's log is not available: GitHub did not serve it. See it on GitHub.")
    if not lines:
        return LogTail("", "The job's log is empty.")
    return LogTail("\n".join(lines))


def _read_tail(location: str) -> list[str]:
    """The cleaned last lines of the log at ``location``, up to its last error line."""
    deadline = time.monotonic() + settings.GITHUB_TIMEOUT
    kept: deque[str] = deque(maxlen=LOG_LINES)
    up_to_error: list[str] = []
    read = 0
    with requests.Session() as session:
        session.auth = _no_credentials
        answer = session.get(location, timeout=settings.GITHUB_TIMEOUT, allow_redirects=False, stream=True)
        with answer:
            if answer.status_code != 200:
                raise GitHubAPIError(f"GitHub's log storage answered {answer.status_code}.")
            pending = b""
            for chunk in answer.iter_content(_LOG_CHUNK):
                read += len(chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    _keep(raw, kept, up_to_error)
                if read > MAX_LOG_BYTES or time.monotonic() > deadline:
                    kept.append(f"… (only the first {read // 1024} KiB of the log were read)")
                    break
            else:
                if pending:
                    _keep(pending, kept, up_to_error)
    return up_to_error or list(kept)


def _keep(raw: bytes, kept: deque[str], up_to_error: list[str]) -> None:
    line = clean_log_line(raw[: LOG_LINE_LIMIT * 8].decode("utf-8", "replace"))
    if line is None:
        return
    kept.append(line)
    if line.startswith("Error: "):
        up_to_error[:] = list(kept)  # the tail as it stood at the last error
