"""A run's jobs and steps on the request page: read from GitHub when the run changes, shown by
every page from the shared cache.

GitHub is asked when the run is known to have changed — a ``workflow_run`` event (webhooks.py) or
the sync saw a new ``updated_at`` or attempt — not when a page polls: one conditional request
(``If-None-Match``, a 304 is free) per version of the run, by the one worker that takes the
version's lease. The listing is kept in Django's cache (the database, shared by all workers) under
the run's id; when it changes, the request's ``updated_at`` is touched, so the pages' poll stamp
(deployments.live) changes and their next poll renders the new steps. A page whose run has no
listing yet (no webhook, an old request) asks once per RUN_LOOKUP_INTERVAL_SECONDS, whoever asks.
https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.utils import timezone

from . import gh
from .gh import jobs as gh_jobs
from .models import DeploymentRequest

logger = logging.getLogger(__name__)

# A finished run's listing never changes: kept a month (the request page is read for weeks).
KEEP_SECONDS = 30 * 24 * 3600
# While these, a job or step has not ended.
UNFINISHED = frozenset({"running", "queued", "waiting"})


def _key(run_id: int) -> str:
    # Run ids are unique per GitHub host: the host and repository are part of the key.
    where = hashlib.sha256(f"{settings.GITHUB_API_URL}|{settings.GH_REPO}".encode()).hexdigest()[:12]
    return f"run-jobs:{where}:{int(run_id)}"


def shown_run(request: DeploymentRequest) -> int | None:
    """The run whose steps the page shows: the one followed now, else the plan run."""
    return request.run_id or request.plan_run_id


def listing(request: DeploymentRequest) -> dict[str, Any] | None:
    """What the page shows: ``{"jobs": [...], "final": bool, "attempt": int}``, or None."""
    run_id = shown_run(request)
    if run_id is None:
        return None
    try:
        entry = cache.get(_key(run_id))
    except DatabaseError:
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("jobs"), list) else None


def follow(run_id: int, *, attempt: int, version: str, completed: bool) -> bool:
    """Read the jobs of ``run_id``'s ``attempt`` unless this ``version`` of the run was read
    already (or is being read by another worker). Returns True when what the page shows changed.
    Never raises: a GitHub failure leaves the listing as it was (the next version asks again)."""
    key = _key(run_id)
    try:
        entry = cache.get(key)
        if isinstance(entry, dict):
            if entry.get("attempt", 0) > attempt or entry.get("final") and entry.get("attempt") == attempt:
                return False  # a late event of an earlier attempt, or a finished run read already
            if entry.get("attempt") == attempt and entry.get("version") == version:
                return False
        else:
            entry = None
        if not cache.add(f"{key}:lease:{attempt}:{version}", 1, timeout=settings.RUN_LOOKUP_INTERVAL_SECONDS):
            return False
    except DatabaseError as exc:
        logger.warning("steps of run %s not read: the cache failed (%s)", run_id, type(exc).__name__)
        return False
    same_attempt = entry is not None and entry.get("attempt") == attempt
    try:
        answer = gh_jobs.run_jobs(run_id, attempt, etag=entry.get("etag") if entry and same_attempt else None)
    except gh.GitHubError as exc:
        logger.warning("steps of run %s not read: %s", run_id, exc.message)
        return False
    if answer is None:  # 304: as listed
        assert entry is not None
        etag, listed = entry.get("etag"), entry["jobs"]
    else:
        etag, listed = answer
    final = completed and all(job["state"] not in UNFINISHED for job in listed)
    changed = not same_attempt or entry is None or entry.get("jobs") != listed
    new = {"attempt": attempt, "version": version, "etag": etag, "jobs": listed, "final": final}
    try:
        # Another worker may have written a later listing while this one was read (a later
        # version's lease): a finished run's or a newer attempt's is not overwritten by this one.
        if _superseded(cache.get(key), attempt, final):
            return False
        cache.set(key, new, timeout=KEEP_SECONDS)
    except DatabaseError:
        return False
    return changed or (final and not (entry or {}).get("final"))


def _superseded(current: object, attempt: int, final: bool) -> bool:
    if not isinstance(current, dict):
        return False
    return current.get("attempt", 0) > attempt or (
        current.get("attempt") == attempt and bool(current.get("final")) and not final
    )


def follow_run(run: gh.RunState) -> bool:
    """``follow`` for a run state from a webhook or the sync (its ``updated_at`` is the version)."""
    version = run.updated_at.isoformat() if run.updated_at else run.status
    return follow(
        run.run_id,
        attempt=max(1, run.run_attempt),
        version=f"{version}:{run.status}",
        completed=run.status == "completed",
    )


def catch_up(request: DeploymentRequest) -> bool:
    """For a page: read the steps of a run nobody has read yet, or the final steps of a run that
    ended; at most once per RUN_LOOKUP_INTERVAL_SECONDS per run, whoever asks."""
    run_id = shown_run(request)
    if run_id is None:
        return False
    entry = listing(request)
    if entry is not None and (entry.get("final") or request.is_active):
        return False
    window = int(timezone.now().timestamp() // max(1.0, settings.RUN_LOOKUP_INTERVAL_SECONDS))
    attempt = max(1, request.run_attempt) if run_id == request.run_id else 1
    changed = follow(run_id, attempt=attempt, version=f"page:{window}", completed=not request.is_active)
    if changed:
        touch(request.pk)
    return changed


def touch(pk: int) -> None:
    """What the request page shows changed: a new poll stamp (deployments.live)."""
    DeploymentRequest.objects.filter(pk=pk).update(updated_at=timezone.now())


def waiting_for_final(request: DeploymentRequest, entry: dict[str, Any] | None, now: dt.datetime) -> bool:
    """A run that ended a moment ago whose final steps are not read yet: the page polls on."""
    if request.is_active or shown_run(request) is None or (entry is not None and entry.get("final")):
        return False
    ended = request.completed_at
    return ended is not None and now - ended < dt.timedelta(minutes=2)
