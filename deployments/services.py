"""Every write to DeploymentRequest happens here; every change of its status goes through
``lifecycle.transition()``, which also records the event."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as Account
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import gh, inventory, lifecycle, podspec, selectors
from .lifecycle import Source, Status
from .models import DeploymentRequest

logger = logging.getLogger(__name__)

# Who acted: a signed-in person (the view's request.user), or nobody for GitHub and the portal.
User = Account | AnonymousUser


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


class NothingToDeploy(Exception):
    """The submitted values are the pod's current spec."""

    def __init__(self, pod: str):
        super().__init__(f"The values are the same as the current spec of {pod}.")


def _log_fields(request: DeploymentRequest, **more: Any) -> dict[str, Any]:
    """Structured fields for the JSON log line of an event on ``request``."""
    return {"extra": {"deployment_request": request.pk, "pod": request.pod, **more}}


def workflow_inputs(*, spec: podspec.PodSpec, idempotency_key: uuid.UUID) -> dict[str, str]:
    """The exact ``workflow_dispatch`` inputs for ``spec``: shown in the preview, then sent."""
    return spec.workflow_inputs() | {"request_id": str(idempotency_key)}


def deployment_request_create(
    *,
    user: Account,
    spec: podspec.PodSpec,
    mode: str,
    current: inventory.Pod | None,
    idempotency_key: uuid.UUID,
    source: Source = Source.WEB,
) -> tuple[DeploymentRequest, bool]:
    """Record a request as ``pending`` before anything is sent to GitHub.

    Returns ``(request, created)``. A key seen before returns the first request, created
    False (a double click or a resubmitted form deploys once, even after it landed). Raises
    AlreadySubmitted when the key was used for other values, NothingToDeploy when ``spec`` is
    the pod's ``current`` spec, and PodLocked when the pod already has an active request (a
    database constraint makes that hold across workers).
    """
    inputs = workflow_inputs(spec=spec, idempotency_key=idempotency_key)
    existing = selectors.request_by_key(idempotency_key)
    if existing:
        return _same_submission(existing, inputs), False
    if current is not None and current.spec == spec:
        raise NothingToDeploy(spec.pod)
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
                spec_before=current.text if current else "",
                spec_after=podspec.render(spec),
                inputs=inputs,
                idempotency_key=idempotency_key,
            )
            lifecycle.created(request, source=source, actor=user)
    except IntegrityError:
        existing = selectors.request_by_key(idempotency_key)
        if existing:
            return _same_submission(existing, inputs), False
        raise PodLocked(
            selectors.active_request_for_pod(customer=spec.customer, environment=spec.environment)
        ) from None
    logger.info(
        "deployment request %s created for %s by %s", request.pk, request.pod, user, **_log_fields(request)
    )
    return request, True


def _same_submission(existing: DeploymentRequest, inputs: dict[str, str]) -> DeploymentRequest:
    if existing.inputs != inputs:
        raise AlreadySubmitted(existing)
    return existing


def deployment_request_dispatch(
    *, request: DeploymentRequest, actor: User, source: Source = Source.WEB
) -> DeploymentRequest:
    """Trigger the deploy workflow for a pending request and record the outcome.

    On failure the request is marked ``dispatch_failed`` with the error (which releases the
    pod) and the portal's GitHubError is raised, carrying the request for the error page.
    """
    try:
        result = gh.dispatch(inputs=request.inputs)
    except gh.GitHubError as exc:
        _record_dispatch_failure(request, exc.error_type, exc.message, actor=actor, source=source)
        exc.context = {"deployment": request}
        raise
    except Exception:
        logger.exception("dispatch of request %s failed unexpectedly", request.pk)
        message = "Unexpected error while triggering the workflow."
        _record_dispatch_failure(request, "server_error", message, actor=actor, source=source)
        error = gh.GitHubError(f"{message} The details are in the log.")
        error.context = {"deployment": request}
        raise error from None
    run_url = result.run_url if result.run_url and gh.is_run_url(result.run_url) else ""
    run: dict[str, Any] = {"run_id": result.run_id, "run_url": run_url} if result.run_id else {}
    facts = {"run_id": result.run_id, "correlated_by": result.correlated_by}
    with transaction.atomic():
        try:
            lifecycle.transition(
                request,
                Status.DISPATCHED,
                source=source,
                actor=actor,
                message="Workflow dispatched." if run else "Workflow dispatched; its run is not known yet.",
                data=facts,
                dispatched_at=timezone.now(),
                **run,
            )
        except lifecycle.IllegalTransition:  # GitHub's run events overtook the dispatch answer
            if run:
                DeploymentRequest.objects.filter(pk=request.pk, run_id__isnull=True).update(**run)
            lifecycle.record(
                request,
                source=source,
                actor=actor,
                message="Workflow dispatched; GitHub had already reported its run.",
                data=facts,
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


def _record_dispatch_failure(
    request: DeploymentRequest, error_type: str, message: str, *, actor: User, source: Source
) -> None:
    try:
        lifecycle.transition(
            request,
            Status.DISPATCH_FAILED,
            source=source,
            actor=actor,
            message=message,
            data={"error_type": error_type},
            error_type=error_type,
            error_message=message,
            completed_at=timezone.now(),
        )
    except lifecycle.IllegalTransition:  # the run was reported meanwhile: it is followed, not failed
        lifecycle.record(
            request,
            source=source,
            actor=actor,
            message=f"The dispatch answer failed ({message}), but GitHub reported the run.",
            data={"error_type": error_type},
        )
        return
    logger.warning(
        "deployment request %s: dispatch failed (%s): %s",
        request.pk,
        error_type,
        message,
        **_log_fields(request, outcome="dispatch_failed", error_type=error_type),
    )


def _conclusion(value: str | None) -> str:
    """GitHub's conclusion as one of ours; one we do not know is kept in the event only."""
    return value if value in lifecycle.Conclusion.values else ""


def deployment_request_apply_run(
    *, request: DeploymentRequest, run: gh.RunState, source: Source, data: dict[str, Any] | None = None
) -> bool:
    """Record a run's state on its request. Never moves a request backwards.

    Returns True when the request changed. Safe to call from the webhook and the sync at once:
    the row is locked, and each move is recorded by exactly one of them.
    """
    foreign = gh.foreign_run_reason(run)
    if foreign:
        logger.warning("request %s: ignored %s (run %s)", request.pk, foreign, run.run_id)
        return False
    target = lifecycle.RUN_STATUS.get(run.status)
    facts = {
        "run_id": run.run_id,
        "run_attempt": run.run_attempt,
        "run_status": run.status,
        "conclusion": run.conclusion,
        **(data or {}),
    }
    with transaction.atomic():
        request = DeploymentRequest.objects.select_for_update().get(pk=request.pk)
        if request.run_id not in (None, run.run_id):
            return False  # the request follows another run: this one never rewrites it
        if run.run_attempt < request.run_attempt:
            return False  # a late event of an earlier attempt than the one followed
        rerun = run.run_attempt > request.run_attempt
        links: dict[str, Any] = {}
        if request.run_id is None:
            links["run_id"] = run.run_id
        if not request.run_url and gh.is_run_url(run.html_url):
            links["run_url"] = run.html_url
        if run.run_number and request.run_number != run.run_number:
            links["run_number"] = run.run_number
        if target and lifecycle.can_move(request.status, target, rerun=rerun):
            fields = dict(links)
            if target in (Status.IN_PROGRESS, Status.COMPLETED) and (rerun or not request.started_at):
                fields["started_at"] = run.run_started_at or run.updated_at or timezone.now()
            if target == Status.COMPLETED:
                fields["conclusion"] = _conclusion(run.conclusion)
                fields["completed_at"] = run.updated_at or timezone.now()
                transaction.on_commit(inventory.expire)  # the run committed a new spec.yml
            elif request.status in (Status.DISPATCH_FAILED, Status.COMPLETED):
                # A dispatch reported failed whose run appeared after all, or a re-run: open again.
                fields |= {"completed_at": None, "conclusion": ""}
            label = f"Run #{run.run_number}" if run.run_number else f"Run {run.run_id}"
            if run.run_attempt > 1:
                label += f" (attempt {run.run_attempt})"
            message = f"{label} {'finished' if target == Status.COMPLETED else 'is ' + target.label.lower()}."
            try:
                with transaction.atomic():
                    lifecycle.transition(
                        request,
                        target,
                        source=source,
                        message=message,
                        data=facts,
                        attempt=run.run_attempt if rerun else None,
                        **fields,
                    )
            except IntegrityError:
                # Opening it again would take the pod's lock, which another request holds: it stays
                # closed, and the attempt's outcome is recorded when it finishes.
                logger.warning("request %s: run %s is active but the pod is busy", request.pk, run.run_id)
                lifecycle.record(
                    request,
                    source=source,
                    message=f"{message} The pod is busy with another request, so this one is not "
                    "reopened; the outcome is recorded when the run finishes.",
                    data=facts,
                )
            except lifecycle.IllegalTransition:
                return False
        elif links:
            DeploymentRequest.objects.filter(pk=request.pk).update(**links, updated_at=timezone.now())
            lifecycle.record(request, source=source, message="Run linked.", data=facts)
        else:
            return False
    request.refresh_from_db()
    logger.info(
        "deployment request %s: run %s is %s",
        request.pk,
        run.run_id,
        request.outcome,
        **_log_fields(request, run_id=run.run_id, outcome=request.outcome),
    )
    return True


def deployment_request_find_run(*, request: DeploymentRequest) -> bool:
    """Look once more for the run of an active request dispatched without knowing it (GHES 3.20
    and older, a lost dispatch answer): GitHub creates runs asynchronously, seconds later.

    Called by the request page, so the link appears without waiting for the sync; bounded to
    one lookup per RUN_LOOKUP_INTERVAL_SECONDS per request, whoever asks. Returns True when the
    run was found and recorded.
    """
    if request.run_id or not request.is_active or request.status == Status.PENDING:
        return False
    if not cache.add(f"run-lookup:{request.pk}", True, timeout=settings.RUN_LOOKUP_INTERVAL_SECONDS):
        return False
    try:
        run = gh.find_run(request_id=request.request_id, since=request.created_at)
    except gh.GitHubError as exc:
        logger.warning("run lookup for request %s failed: %s", request.pk, exc.message)
        return False
    return run is not None and deployment_request_apply_run(request=request, run=run, source=Source.SYSTEM)


def _close(
    request: DeploymentRequest,
    conclusion: str,
    reason: str,
    *,
    source: Source,
    actor: User | None = None,
    **fields: Any,
) -> bool:
    try:
        lifecycle.transition(
            request,
            Status.COMPLETED,
            source=source,
            actor=actor,
            message=reason,
            data={"conclusion": conclusion},
            conclusion=conclusion,
            completed_at=timezone.now(),
            **fields,
        )
    except lifecycle.IllegalTransition:  # it finished meanwhile
        return False
    return True


def deployment_request_mark_stale(*, request: DeploymentRequest, reason: str) -> bool:
    """Close a request whose run never appeared or never finished. Returns True if closed now.

    No attempt of its run was seen to the end (``run_attempt`` 0), so if the run does go on
    later, its events count as a newer attempt and correct the request.
    """
    closed = _close(
        request,
        lifecycle.Conclusion.STALE,
        reason,
        source=Source.SYNC,
        error_type="stale",
        error_message=reason,
        run_attempt=0,
    )
    if closed:
        logger.warning("deployment request %s marked stale: %s", request.pk, reason)
    return closed


def deployment_request_release(*, request: DeploymentRequest, user: Account, reason: str) -> bool:
    """Release a stuck pod lock by hand, recording who did it and why."""
    released = _close(
        request,
        lifecycle.Conclusion.RELEASED,
        reason,
        source=Source.ADMIN,
        actor=user,
        released_by=user,
        release_reason=reason,
    )
    if released:
        logger.warning("deployment request %s: lock released by %s: %s", request.pk, user, reason)
    return released


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
    for request in selectors.active_requests():
        counts["checked"] += 1
        run: gh.RunState | None
        try:
            if request.run_id:
                run = _run_cheaply(request.run_id)
            else:
                run = gh.find_run(request_id=request.request_id, since=request.created_at)
        except gh.GitHubError as exc:
            counts["errors"] += 1
            logger.warning("sync of request %s failed: %s", request.pk, exc.message)
            run = None  # still closed when too old, or a broken lookup would hold the pod for ever
        if run and deployment_request_apply_run(request=request, run=run, source=Source.SYNC):
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
