"""Every write to DeploymentRequest happens here."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import gh, inventory, podspec
from .models import DeploymentRequest

logger = logging.getLogger(__name__)

Status = DeploymentRequest.Status
REQUEST_ID_RE = re.compile(r"\[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]")
RUN_STATUS = {
    "requested": Status.QUEUED,
    "queued": Status.QUEUED,
    "waiting": Status.QUEUED,
    "pending": Status.QUEUED,
    "in_progress": Status.IN_PROGRESS,
    "completed": Status.COMPLETED,
}


class AlreadySubmitted(Exception):
    """The form's idempotency key was used before, for other values."""

    def __init__(self, request: DeploymentRequest):
        super().__init__("This form was already submitted with other values.")
        self.request = request


class PodLocked(Exception):
    """Another request for the same pod is still active."""

    def __init__(self, holder: DeploymentRequest | None):
        super().__init__("A deployment of this pod is already in progress.")
        self.holder = holder


def _log_fields(request: DeploymentRequest, **more) -> dict:
    """Structured fields for the JSON log line of an event on ``request``."""
    return {"extra": {"deployment_request": request.pk, "pod": request.pod, **more}}


def active_request_for_pod(*, customer: str, environment: str) -> DeploymentRequest | None:
    return (
        DeploymentRequest.objects.filter(
            customer=customer, environment=environment, status__in=DeploymentRequest.ACTIVE_STATUSES
        )
        .select_related("requested_by")
        .first()
    )


def deployment_request_create(
    *,
    user: AbstractBaseUser,
    spec: podspec.PodSpec,
    mode: str,
    spec_before: str | None,
    idempotency_key: uuid.UUID,
) -> tuple[DeploymentRequest, bool]:
    """Record a request as ``pending`` before anything is sent to GitHub.

    Returns ``(request, created)``. A key seen before returns the first request, created
    False (a double click or a resubmitted form deploys once). Raises PodLocked when the pod
    already has an active request; a database constraint makes that hold across workers.
    """
    inputs = spec.workflow_inputs() | {"request_id": str(idempotency_key)}
    existing = DeploymentRequest.objects.filter(idempotency_key=idempotency_key).first()
    if existing:
        return _same_submission(existing, inputs), False
    try:
        with transaction.atomic():
            request = DeploymentRequest.objects.create(
                requested_by=user,
                mode=mode,
                customer=spec.customer,
                environment=spec.environment,
                instance_name=spec.instance_name,
                instance_type=spec.instance_type,
                waf_enabled=spec.waf_enabled,
                spec_before=spec_before or "",
                spec_after=podspec.render(spec),
                inputs=inputs,
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        existing = DeploymentRequest.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return _same_submission(existing, inputs), False
        raise PodLocked(
            active_request_for_pod(customer=spec.customer, environment=spec.environment)
        ) from None
    logger.info(
        "deployment request %s created for %s by %s", request.pk, request.pod, user, **_log_fields(request)
    )
    return request, True


def _same_submission(existing: DeploymentRequest, inputs: dict) -> DeploymentRequest:
    if existing.inputs != inputs:
        raise AlreadySubmitted(existing)
    return existing


def deployment_request_dispatch(*, request: DeploymentRequest) -> DeploymentRequest:
    """Trigger the deploy workflow for a pending request and record the outcome.

    On failure the request is marked ``dispatch_failed`` with the error (which releases the
    pod) and the portal's GitHubError is raised for the caller to show.
    """
    try:
        result = gh.dispatch(inputs=request.inputs)
    except gh.GitHubError as exc:
        _record_failure(request, exc.error_type, exc.message)
        raise
    except Exception:
        logger.exception("dispatch of request %s failed unexpectedly", request.pk)
        _record_failure(request, "server_error", "Unexpected error while triggering the workflow.")
        raise gh.GitHubError(
            "Unexpected error while triggering the workflow. The details are in the log."
        ) from None
    # Conditional updates: a webhook may already have moved the request on (or set its run).
    now = timezone.now()
    pending = DeploymentRequest.objects.filter(pk=request.pk, status=Status.PENDING)
    pending.update(status=Status.DISPATCHED, dispatched_at=now, updated_at=now)
    if result.run_id:
        DeploymentRequest.objects.filter(pk=request.pk, run_id__isnull=True).update(
            run_id=result.run_id, run_url=result.run_url or "", updated_at=now
        )
    request.refresh_from_db()
    logger.info(
        "deployment request %s dispatched: run %s (%s)",
        request.pk,
        result.run_id,
        result.correlated_by or "unknown",
        **_log_fields(request, run_id=result.run_id, outcome="dispatched"),
    )
    return request


def _record_failure(request: DeploymentRequest, error_type: str, message: str) -> None:
    request.status = Status.DISPATCH_FAILED
    request.error_type = error_type
    request.error_message = message
    request.completed_at = timezone.now()
    request.save(update_fields=["status", "error_type", "error_message", "completed_at", "updated_at"])
    logger.warning(
        "deployment request %s: dispatch failed (%s): %s",
        request.pk,
        error_type,
        message,
        **_log_fields(request, outcome="dispatch_failed", error_type=error_type),
    )


def request_for_run(run: gh.RunState) -> DeploymentRequest | None:
    """The request a run belongs to: by the ``[request_id]`` in its title, else by run id."""
    match = REQUEST_ID_RE.search(run.display_title)
    if match:
        request = DeploymentRequest.objects.filter(idempotency_key=match.group(1)).first()
        if request and request.run_id in (None, run.run_id):
            return request
    return DeploymentRequest.objects.filter(run_id=run.run_id).order_by("-created_at").first()


def deployment_request_apply_run(*, request: DeploymentRequest, run: gh.RunState) -> bool:
    """Record a run's state on its request. Never moves a request backwards.

    Returns True when the request changed. Safe to call from the webhook and the sync at once.
    """
    new_status = RUN_STATUS.get(run.status)
    if new_status is None:
        return False
    rank = DeploymentRequest.STATUS_RANK
    with transaction.atomic():
        request = DeploymentRequest.objects.select_for_update().get(pk=request.pk)
        # A dispatch whose answer was lost is "failed", yet GitHub created the run: follow it.
        reviving = request.status == Status.DISPATCH_FAILED
        changed = set()
        if request.run_id is None:
            request.run_id = run.run_id
            changed.add("run_id")
        if run.html_url and request.run_url != run.html_url:
            request.run_url = run.html_url
            changed.add("run_url")
        if run.run_number and request.run_number != run.run_number:
            request.run_number = run.run_number
            changed.add("run_number")
        if reviving or rank[new_status] > rank[request.status]:
            request.status = new_status
            request.completed_at = None
            changed |= {"status", "completed_at"}
            if new_status in (Status.IN_PROGRESS, Status.COMPLETED) and not request.started_at:
                request.started_at = run.run_started_at or run.updated_at or timezone.now()
                changed.add("started_at")
            if new_status == Status.COMPLETED:
                request.conclusion = run.conclusion or "unknown"
                request.completed_at = run.updated_at or timezone.now()
                changed.add("conclusion")
                transaction.on_commit(inventory.expire)  # the run committed a new spec.yml
        if not changed:
            return False
        try:
            with transaction.atomic():
                request.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:  # a revived request while another holds the pod: leave it failed
            logger.warning("request %s: run %s appeared but the pod is busy", request.pk, run.run_id)
            return False
    logger.info(
        "deployment request %s: run %s is %s",
        request.pk,
        run.run_id,
        request.outcome,
        **_log_fields(request, run_id=run.run_id, outcome=request.outcome),
    )
    return True


def deployment_request_mark_stale(*, request: DeploymentRequest, reason: str) -> bool:
    """Close a request whose run never appeared or never finished. Returns True if closed now."""
    updated = DeploymentRequest.objects.filter(
        pk=request.pk, status__in=DeploymentRequest.ACTIVE_STATUSES
    ).update(
        status=Status.COMPLETED,
        conclusion="stale",
        error_type="stale",
        error_message=reason,
        completed_at=timezone.now(),
        updated_at=timezone.now(),
    )
    if updated:
        logger.warning("deployment request %s marked stale: %s", request.pk, reason)
    return bool(updated)


def deployment_request_release(*, request: DeploymentRequest, user: AbstractBaseUser, reason: str) -> bool:
    """Release a stuck pod lock by hand, recording who did it and why."""
    updated = DeploymentRequest.objects.filter(
        pk=request.pk, status__in=DeploymentRequest.ACTIVE_STATUSES
    ).update(
        status=Status.COMPLETED,
        conclusion="released",
        released_by=user,
        release_reason=reason,
        completed_at=timezone.now(),
        updated_at=timezone.now(),
    )
    if updated:
        logger.warning("deployment request %s: lock released by %s: %s", request.pk, user, reason)
    return bool(updated)


def _run_cheaply(run_id: int) -> gh.RunState:
    """The run, by a conditional GET against the last answer kept in the cache."""
    key = f"run:{settings.GITHUB_API_URL}:{settings.GH_REPO}:{run_id}"
    cached = cache.get(key)
    run = gh.get_run(run_id, etag=cached.etag if cached else None) or cached
    cache.set(key, run, timeout=24 * 3600)
    return run


def deployment_requests_sync(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Bring every active request up to date from GitHub (the webhook's fallback).

    Requests with a run are read by id; requests without one are looked up by their
    ``[request_id]``; a request whose run never appeared or stayed active longer than
    RUN_STALE_AFTER_MINUTES is closed as ``stale``. Safe to run on several hosts at once.
    """
    now = now or timezone.now()
    stale_after = dt.timedelta(minutes=settings.RUN_STALE_AFTER_MINUTES)
    counts = {"checked": 0, "updated": 0, "stale": 0, "errors": 0}
    for request in DeploymentRequest.objects.filter(status__in=DeploymentRequest.ACTIVE_STATUSES).order_by(
        "pk"
    ):
        counts["checked"] += 1
        try:
            if request.run_id:
                run = _run_cheaply(request.run_id)
            else:
                run = gh.find_run(request_id=request.request_id, since=request.created_at)
        except gh.GitHubError as exc:
            counts["errors"] += 1
            logger.warning("sync of request %s failed: %s", request.pk, exc.message)
            run = None  # still closed when too old, or a broken lookup would hold the pod for ever
        if run and deployment_request_apply_run(request=request, run=run):
            counts["updated"] += 1
            request.refresh_from_db()
        if request.is_active and now - request.created_at > stale_after:
            minutes = settings.RUN_STALE_AFTER_MINUTES
            reason = (
                f"The run stayed {request.get_status_display().lower()} for more than {minutes} minutes."
                if run or request.run_id
                else f"No workflow run appeared within {minutes} minutes of the request."
            )
            if deployment_request_mark_stale(request=request, reason=reason):
                counts["stale"] += 1
    return counts
