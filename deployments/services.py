"""Every write to DeploymentRequest happens here; every change of its status goes through
``lifecycle.transition()``, which also records the event."""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.models import User as Account
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import gh, inventory, lifecycle, notify, podspec, selectors, steps
from . import plan as terraform_plan
from .gh import artifacts, jobs
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


class ReviewRefused(Exception):
    """An apply, approval, rejection or cancellation that may not happen (now, or by this user).

    ``status`` is the HTTP status of the page: 403 (not yours to do), 409 (the request is not,
    or no longer, in a state that allows it).
    """

    def __init__(self, message: str, *, status: int = 409, title: str = "Not possible now"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.title = title


class SpecChanged(Exception):
    """The pod's spec.yml is not the version the operator's values were written against."""

    def __init__(self, *, expected: str, current: inventory.Pod | None):
        super().__init__("spec.yml changed since you opened it — review the new version.")
        self.expected = expected
        self.current = current


class NothingToDeploy(Exception):
    """The submitted values are the pod's current spec."""

    def __init__(self, pod: str):
        super().__init__(f"The values are the same as the current spec of {pod}.")


def _log_fields(request: DeploymentRequest, **more: Any) -> dict[str, Any]:
    """Structured fields for the JSON log line of an event on ``request``."""
    return {"extra": {"deployment_request": request.pk, "pod": request.pod, **more}}


def _matches(environment: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(environment, pattern.strip()) for pattern in patterns if pattern.strip())


def review_policy(environment: str) -> tuple[DeploymentRequest.Flow, bool]:
    """How a pod of ``environment`` is deployed: (flow, whether an Approver must approve).

    Every pod is planned and reviewed first unless its environment is in AUTO_APPLY_ENVIRONMENTS;
    an environment that needs approval is always reviewed, even if also listed for auto-apply.
    """
    approval = _matches(environment, settings.APPROVAL_REQUIRED_ENVIRONMENTS)
    if not approval and _matches(environment, settings.AUTO_APPLY_ENVIRONMENTS):
        return DeploymentRequest.Flow.DEPLOY, False
    return DeploymentRequest.Flow.REVIEW, approval


def workflow_inputs(
    *, spec: podspec.PodSpec, idempotency_key: uuid.UUID, expected_spec_sha: str = ""
) -> dict[str, str]:
    """The exact ``workflow_dispatch`` inputs for ``spec``: shown in the preview, then sent.

    ``action`` is ``plan`` for a reviewed pod (the apply is a second dispatch, of the same
    inputs with ``action`` ``apply`` and the plan run's id) and ``deploy`` for a one-run deploy.
    ``expected_spec_sha`` (see expected_spec) makes the workflow refuse any other spec.yml.
    """
    flow, _ = review_policy(spec.environment)
    action = "plan" if flow == DeploymentRequest.Flow.REVIEW else "deploy"
    return spec.workflow_inputs() | {
        "request_id": str(idempotency_key),
        "action": action,
        "expected_spec_sha": expected_spec_sha,
    }


def expected_spec(*, expected_spec_sha: str | None, current: inventory.Pod | None) -> str:
    """The spec.yml blob the workflow must find on the branch: the one the values were written
    against, else the ``current`` one the portal checked; "" (no check) for neither."""
    if expected_spec_sha is not None:
        return expected_spec_sha
    return current.sha if current else ""


def spec_check(*, expected_spec_sha: str | None, current: inventory.Pod | None) -> None:
    """Raise SpecChanged unless ``current`` (the pod as GitHub has it now; None: no spec.yml) is
    the version ``expected_spec_sha`` names (inventory.NO_SPEC: none; None: anything goes)."""
    if expected_spec_sha is not None and expected_spec_sha != (current.sha if current else inventory.NO_SPEC):
        raise SpecChanged(expected=expected_spec_sha, current=current)


def deployment_request_create(
    *,
    user: Account,
    spec: podspec.PodSpec,
    mode: str,
    current: inventory.Pod | None,
    idempotency_key: uuid.UUID,
    source: Source = Source.WEB,
    expected_spec_sha: str | None = None,
    redeploy_of: DeploymentRequest | None = None,
    source_commit: str = "",
) -> tuple[DeploymentRequest, bool]:
    """Record a request as ``pending`` before anything is sent to GitHub.

    Returns ``(request, created)``. A key seen before returns the first request, created
    False (a double click or a resubmitted form deploys once, even after it landed). Raises
    AlreadySubmitted when the key was used for other values, SpecChanged when
    ``expected_spec_sha`` (the blob the values were written against; inventory.NO_SPEC for a new
    pod; None: no check) is not the ``current`` spec's, NothingToDeploy when ``spec`` is the
    pod's ``current`` spec, and PodLocked when the pod already has an active request (a
    database constraint makes that hold across workers). ``redeploy_of`` (an earlier request) or
    ``source_commit`` (a commit of spec.yml) say where the values came from, when not typed.
    """
    inputs = workflow_inputs(
        spec=spec,
        idempotency_key=idempotency_key,
        expected_spec_sha=expected_spec(expected_spec_sha=expected_spec_sha, current=current),
    )
    # A key seen before is found by the INSERT's unique constraint (no lookup first: issue 18,
    # statements per deploy), or here when the values would be refused anyway: once the first
    # submission landed, its spec is the pod's and a resubmission would read "nothing to deploy".
    try:
        spec_check(expected_spec_sha=expected_spec_sha, current=current)
        if current is not None and current.spec == spec:
            raise NothingToDeploy(spec.pod)
    except (SpecChanged, NothingToDeploy):
        existing = selectors.request_by_key(idempotency_key)
        if existing:
            return _same_submission(existing, inputs), False
        raise
    flow, approval_required = review_policy(spec.environment)
    request = DeploymentRequest(
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
        flow=flow,
        approval_required=approval_required,
        redeploy_of=redeploy_of,
        source_commit=source_commit,
    )
    try:
        lifecycle.create(request, source=source, actor=user)
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
    # The same values are the same submission whatever spec.yml is expected by now: once the
    # first one landed, the spec on the branch is its own.
    if {**existing.inputs, "expected_spec_sha": ""} != {**inputs, "expected_spec_sha": ""}:
        raise AlreadySubmitted(existing)
    return existing


def deployment_request_dispatch(
    *, request: DeploymentRequest, actor: User, source: Source = Source.WEB
) -> DeploymentRequest:
    """Trigger the deploy workflow for a pending request and record the outcome.

    A reviewed request is dispatched in plan mode and becomes ``planning``; a one-run deploy
    becomes ``dispatched``. On failure the request is marked ``dispatch_failed`` with the error
    (which releases the pod) and the portal's GitHubError is raised, carrying the request for
    the error page.
    """
    planning = request.flow == DeploymentRequest.Flow.REVIEW
    return _dispatch(
        request,
        inputs=request.inputs,
        to=Status.PLANNING if planning else Status.DISPATCHED,
        actor=actor,
        source=source,
        what="Plan run" if planning else "Workflow",
    )


def _dispatch(
    request: DeploymentRequest,
    *,
    inputs: dict[str, str],
    to: Status,
    actor: User,
    source: Source,
    what: str,
    exclude_run_ids: tuple[int, ...] = (),
    data: dict[str, Any] | None = None,
) -> DeploymentRequest:
    """Dispatch the workflow once with ``inputs``, then move ``request`` to ``to`` with its run."""
    try:
        result = gh.dispatch(inputs=inputs, exclude_run_ids=exclude_run_ids)
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
    facts = {"run_id": result.run_id, "correlated_by": result.correlated_by, **(data or {})}
    try:
        # One transaction, the move and its event (transition's own); it sets the fields it
        # wrote on ``request``, so nothing is read back (issue 18: statements per deploy).
        lifecycle.transition(
            request,
            to,
            source=source,
            actor=actor,
            message=f"{what} dispatched." if run else f"{what} dispatched; its run is not known yet.",
            data=facts,
            dispatched_at=timezone.now(),
            **run,
        )
    except lifecycle.IllegalTransition:  # GitHub's run events overtook the dispatch answer
        with transaction.atomic():
            if run:
                # Not when that run was the plan run, already recorded as such (plan_run_id).
                DeploymentRequest.objects.filter(pk=request.pk, run_id__isnull=True).exclude(
                    plan_run_id=result.run_id
                ).update(**run)
            lifecycle.record(
                request,
                source=source,
                actor=actor,
                message=f"{what} dispatched; GitHub had already reported its run.",
                data=facts,
            )
        request.refresh_from_db()  # others moved it meanwhile: read what they wrote
    logger.info(
        "deployment request %s dispatched: run %s (%s)",
        request.pk,
        result.run_id,
        result.correlated_by or "unknown",
        **_log_fields(
            request, run_id=result.run_id, outcome="dispatched", action=inputs.get("action", "deploy")
        ),
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
        if request.plan_run_id == run.run_id:
            return False  # the plan run's late or repeated events: its outcome is recorded
        if request.run_id not in (None, run.run_id):
            return False  # the request follows another run: this one never rewrites it
        if run.run_attempt < request.run_attempt:
            return False  # a late event of an earlier attempt than the one followed
        rerun = run.run_attempt > request.run_attempt
        links = _run_links(request, run)
        if rerun and request.is_reviewed and request.applied_by_id is None:
            # A plan run re-run on GitHub after the request ended (its plan failed): the apply
            # is the portal's to start, so the request is not reopened; plan again instead.
            if request.events.filter(data__run_attempt=run.run_attempt, data__run_id=run.run_id).exists():
                return False
            lifecycle.record(
                request,
                source=source,
                message=f"Plan run {run.run_id} was re-run on GitHub (attempt {run.run_attempt}); "
                "the request stays closed: plan again from the portal to deploy.",
                data=facts,
            )
            return True
        if request.status == Status.PENDING and request.is_reviewed:
            # The plan run's events overtook the dispatch's answer: a reviewed request's first
            # run is its plan run, never a one-run deploy (which would end with nothing applied).
            try:
                lifecycle.transition(
                    request,
                    Status.PLANNING,
                    source=source,
                    message="Plan run reported by GitHub.",
                    data=facts,
                )
            except lifecycle.IllegalTransition:
                return False
        if request.status == Status.PLANNING:
            if not _record_plan_run(request, run, source=source, facts=facts, links=links):
                return False
        elif target and lifecycle.can_move(request.status, target, rerun=rerun):
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
            else:
                if target == Status.COMPLETED:
                    _after_completion(request, run)
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


def _run_links(request: DeploymentRequest, run: gh.RunState) -> dict[str, Any]:
    """The run's id, page and number, where the request does not have them yet."""
    links: dict[str, Any] = {}
    if request.run_id is None:
        links["run_id"] = run.run_id
    if not request.run_url and gh.is_run_url(run.html_url):
        links["run_url"] = run.html_url
    if run.run_number and request.run_number != run.run_number:
        links["run_number"] = run.run_number
    return links


def _record_plan_run(
    request: DeploymentRequest,
    run: gh.RunState,
    *,
    source: Source,
    facts: dict[str, Any],
    links: dict[str, Any],
) -> bool:
    """Record the plan run of a ``planning`` request (the caller holds the row's lock).

    A successful plan makes the request ``planned`` (then ``awaiting_approval`` where an
    Approver must approve), moves the run to ``plan_run_*`` so the apply run can be followed
    in ``run_*``, starts the plan's expiry clock, and reads the plan's summary once the
    transaction is committed. A failed plan completes the request as a failure.
    """
    label = f"Plan run #{run.run_number}" if run.run_number else f"Plan run {run.run_id}"
    if run.status != "completed":
        if not links:
            return False
        DeploymentRequest.objects.filter(pk=request.pk).update(**links, updated_at=timezone.now())
        lifecycle.record(request, source=source, message=f"{label} linked.", data=facts)
        return True
    now = timezone.now()
    plan_run_url = links.get("run_url", request.run_url)
    try:
        if run.conclusion == lifecycle.Conclusion.SUCCESS:
            lifecycle.transition(
                request,
                Status.PLANNED,
                source=source,
                message=f"{label} finished: the plan is ready for review.",
                data=facts,
                plan_run_id=run.run_id,
                plan_run_url=plan_run_url,
                run_id=None,
                run_url="",
                run_number=None,
                run_attempt=1,
                planned_at=now,
                expires_at=now + dt.timedelta(minutes=settings.PLAN_TTL_MINUTES),
            )
            if request.approval_required:
                lifecycle.transition(
                    request,
                    Status.AWAITING_APPROVAL,
                    source=Source.SYSTEM,
                    message=f"{request.environment} needs an Approver other than the requester.",
                )
                _notify(request, "awaiting_approval")
            pk = request.pk
            transaction.on_commit(lambda: _fetch_plan_after_commit(pk))
        else:
            conclusion = _conclusion(run.conclusion)
            message = f"{label} did not succeed ({run.conclusion or 'no conclusion'}): nothing was applied."
            lifecycle.transition(
                request,
                Status.COMPLETED,
                source=source,
                message=message,
                data=facts,
                conclusion=conclusion or lifecycle.Conclusion.FAILURE,
                completed_at=run.updated_at or now,
                started_at=request.started_at or run.run_started_at or now,
                error_type="plan_failed",
                error_message=message,
                **links,
            )
            _after_completion(request, run)
    except lifecycle.IllegalTransition:
        return False
    return True


def _after_completion(request: DeploymentRequest, run: gh.RunState) -> None:
    """Once the completion is committed: say why a failed run failed, then notify."""
    pk, failed = request.pk, request.failed
    if not failed:
        _notify(request, "succeeded")
        return
    transaction.on_commit(lambda: _explain_failure(pk, run))


def _explain_failure(pk: int, run: gh.RunState) -> None:
    """Read which step of a failed run failed and its error annotation (2 GitHub requests, once),
    keep the reason in words on the request, and notify with it."""
    request = DeploymentRequest.objects.filter(pk=pk).first()
    if request is None:
        return
    conclusion = run.conclusion or "failure"
    try:
        failure = jobs.run_failure(run.run_id, attempt=run.run_attempt)
    except gh.GitHubError as exc:
        logger.warning("request %s: why run %s failed is unknown: %s", pk, run.run_id, exc.message)
        failure = None
    error_type, message = jobs.describe_failure(failure, conclusion)
    # The failed job's log, read once: the last lines up to its error (a finished log never changes).
    tail = jobs.job_log_tail(failure.job_id) if failure is not None and failure.job_id else None
    explained = ("protected_branch", "stale_plan", "spec_changed")  # their own words say more
    if request.error_type == "plan_failed" and error_type not in explained:
        error_type, message = "plan_failed", f"The plan failed; nothing was applied. {message}"
    with transaction.atomic():
        DeploymentRequest.objects.filter(pk=pk).update(
            error_type=error_type or request.error_type, error_message=message, updated_at=timezone.now()
        )
        data: dict[str, Any] = {"error_type": error_type, "run_id": run.run_id}
        if failure is not None:
            data |= {"step": failure.step, "title": failure.title, "job_url": failure.job_url}
        if tail is not None:
            data |= {"log_tail": tail.text, "log_note": tail.note}
        lifecycle.record(request, source=Source.SYSTEM, message=message, data=data)
    request.refresh_from_db()
    _notify(request, "failed")


def _fetch_plan_after_commit(pk: int) -> None:
    request = DeploymentRequest.objects.filter(pk=pk).first()
    if request is not None:
        deployment_request_fetch_plan(request=request)


def deployment_request_fetch_plan(*, request: DeploymentRequest) -> bool:
    """Read the finished plan run's summary and keep it on the request. Returns True if stored.

    Done once, when the plan run completes (at most 3 GitHub requests); if GitHub failed to
    answer, the request page and the sync try again, at most once a minute per request.
    """
    if request.plan_summary is not None or not request.plan_run_id:
        return False
    if not cache.add(f"plan-summary:{request.pk}", True, timeout=60):
        return False
    failure = ""
    try:
        raw = artifacts.plan_summary(request.plan_run_id)
        summary = terraform_plan.parse(raw) if raw is not None else None
    except gh.GitHubError as exc:
        failure = f"Could not read the plan's summary from GitHub: {exc.message}"
    except terraform_plan.PlanSummaryError as exc:
        failure = f"The plan run's summary is not valid: {exc}"
    else:
        if summary is None:
            failure = "The plan run left no summary (its plan-summary artifact is missing or expired)."
    if failure:
        logger.warning("request %s: %s", request.pk, failure, **_log_fields(request))
        lifecycle.record(request, source=Source.SYSTEM, message=failure, data={"error_type": "plan_summary"})
        return False
    assert summary is not None
    with transaction.atomic():
        stored = DeploymentRequest.objects.filter(pk=request.pk, plan_summary__isnull=True).update(
            plan_summary=summary.to_json(), updated_at=timezone.now()
        )
        if stored:
            lifecycle.record(
                request,
                source=Source.SYSTEM,
                message=f"Plan: {summary.headline}.",
                data={"counts": summary.counts, "destructive": summary.destructive},
            )
    request.plan_summary = summary.to_json()
    return bool(stored)


def _notify(request: DeploymentRequest, event: str) -> None:
    """Tell the people who follow deployments, after the transaction commits (never raises)."""
    notify.request_changed(request, event)


def deployment_request_find_run(*, request: DeploymentRequest) -> bool:
    """Look once more for the run of an active request dispatched without knowing it (GHES 3.20
    and older, a lost dispatch answer): GitHub creates runs asynchronously, seconds later.

    Called by the request page, so the link appears without waiting for the sync; bounded to
    one lookup per RUN_LOOKUP_INTERVAL_SECONDS per request, whoever asks. Returns True when the
    run was found and recorded.
    """
    if request.run_id or not request.is_active or request.status == Status.PENDING:
        return False
    if request.status in EXPIRABLE and not request.applied_by_id:
        return False  # no run to look for: the plan waits for a person
    if not cache.add(f"run-lookup:{request.pk}", True, timeout=settings.RUN_LOOKUP_INTERVAL_SECONDS):
        return False
    try:
        run = gh.find_run(
            request_id=request.request_id, since=request.created_at, exclude=_earlier_runs(request)
        )
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
    RUN_STALE_AFTER_MINUTES after its last dispatch is closed as ``stale`` (a run held for
    review by a GitHub environment waits up to GitHub's 30 days). A plan waiting for review
    costs no GitHub call: it expires after PLAN_TTL_MINUTES. Safe to run on several hosts at once.
    """
    now = now or timezone.now()
    counts = {"checked": 0, "updated": 0, "stale": 0, "expired": 0, "errors": 0}
    for request in selectors.active_requests():
        counts["checked"] += 1
        if deployment_request_expire_if_due(request=request, now=now):
            counts["expired"] += 1
            continue
        if request.status in EXPIRABLE and not request.applied_by_id:
            if request.plan_summary is None and deployment_request_fetch_plan(request=request):
                counts["updated"] += 1
            continue  # waiting for a person, not for GitHub
        run: gh.RunState | None
        try:
            if request.run_id:
                run = _run_cheaply(request.run_id)
            else:
                run = gh.find_run(
                    request_id=request.request_id, since=request.created_at, exclude=_earlier_runs(request)
                )
        except gh.GitHubError as exc:
            counts["errors"] += 1
            logger.warning("sync of request %s failed: %s", request.pk, exc.message)
            run = None  # still closed when too old, or a broken lookup would hold the pod for ever
        steps_changed = run is not None and steps.follow_run(run)
        if run and deployment_request_apply_run(request=request, run=run, source=Source.SYNC):
            counts["updated"] += 1
            request.refresh_from_db()
        elif steps_changed:
            steps.touch(request.pk)
        if request.is_active and now - (request.dispatched_at or request.created_at) > _stale_after(request):
            minutes = settings.RUN_STALE_AFTER_MINUTES
            reason = (
                f"The run stayed {request.get_status_display().lower()} for more than {minutes} minutes."
                if run or request.run_id
                else f"No workflow run appeared within {minutes} minutes of the request."
            )
            if deployment_request_mark_stale(request=request, reason=reason):
                counts["stale"] += 1
    return counts


# GitHub fails a deployment whose environment review is not given within 30 days.
# https://docs.github.com/en/actions/managing-workflow-runs-and-deployments/managing-deployments/reviewing-deployments
ENVIRONMENT_REVIEW_TIMEOUT = dt.timedelta(days=30)


def _stale_after(request: DeploymentRequest) -> dt.timedelta:
    stale_after = dt.timedelta(minutes=settings.RUN_STALE_AFTER_MINUTES)
    if request.status == Status.WAITING:  # held by a GitHub environment's required reviewers
        return max(stale_after, ENVIRONMENT_REVIEW_TIMEOUT)
    return stale_after


def _earlier_runs(request: DeploymentRequest) -> tuple[int, ...]:
    """Runs of the request that are not the one looked for: its plan run, once planned."""
    return (request.plan_run_id,) if request.plan_run_id else ()


# --- review before apply: apply, approve, reject, cancel, expire ---------------------------------

APPROVE_PERMISSION = "deployments.approve_deploymentrequest"
# Before the apply is dispatched, a request may still be cancelled (or expire).
CANCELLABLE = frozenset({Status.PLANNING, Status.PLANNED, Status.AWAITING_APPROVAL})
EXPIRABLE = frozenset({Status.PLANNED, Status.AWAITING_APPROVAL})


def _fresh(request: DeploymentRequest) -> DeploymentRequest:
    request.refresh_from_db()
    deployment_request_expire_if_due(request=request)
    return request


def _refuse_unless_status(
    request: DeploymentRequest, allowed: frozenset[Status] | set[Status], doing: str
) -> None:
    if request.status in allowed and request.applied_by_id is None:
        return
    if request.status == Status.EXPIRED:
        raise ReviewRefused(
            f"The plan of request #{request.pk} expired: it was not applied within "
            f"{settings.PLAN_TTL_MINUTES} minutes. Plan again from the pod's page.",
            title="Plan expired",
        )
    if request.applied_by_id is not None and request.status in lifecycle.ACTIVE_STATUSES:
        raise ReviewRefused(f"Request #{request.pk} is already being applied.", title="Already applied")
    raise ReviewRefused(
        f"Request #{request.pk} is {request.get_status_display().lower()}: it cannot be {doing} now.",
        title="Not possible now",
    )


def deployment_request_apply(
    *, request: DeploymentRequest, actor: Account, source: Source = Source.WEB
) -> DeploymentRequest:
    """Apply a reviewed request's plan: dispatch the workflow in apply mode with the plan run's id.

    Only a ``planned`` request that needs no approval; by its requester or an Approver. Two
    clicks (or two people) dispatch one apply: the first claims it by setting ``applied_by``.
    Raises ReviewRefused, or GitHubError when the dispatch fails (the request is then
    ``dispatch_failed``).
    """
    request = _fresh(request)
    if request.approval_required and request.status in EXPIRABLE:
        raise ReviewRefused(
            f"{request.pod} needs an Approver's approval: the apply starts when another person approves it.",
            status=403,
            title="Approval required",
        )
    _refuse_unless_status(request, {Status.PLANNED}, "applied")
    if actor.pk != request.requested_by_id and not actor.has_perm(APPROVE_PERMISSION):
        raise ReviewRefused(
            f"Only {request.requested_by} (who requested it) or an Approver can apply this plan.",
            status=403,
            title="Not your request",
        )
    claimed = DeploymentRequest.objects.filter(
        pk=request.pk, status=Status.PLANNED, applied_by__isnull=True
    ).update(applied_by=actor, updated_at=timezone.now())
    if not claimed:
        _refuse_unless_status(_fresh(request), set(), "applied")
    request.applied_by = actor
    return _dispatch_apply(request, actor=actor, source=source)


def deployment_request_approve(
    *, request: DeploymentRequest, actor: Account, comment: str = "", source: Source = Source.WEB
) -> DeploymentRequest:
    """Approve a plan awaiting approval and dispatch its apply (the approver's click)."""
    message = f"Approved by {actor}." + (f" “{comment}”" if comment else "")
    request = _review(request, Status.APPROVED, actor=actor, comment=comment, source=source, message=message)
    return _dispatch_apply(request, actor=actor, source=source)


def deployment_request_reject(
    *, request: DeploymentRequest, actor: Account, comment: str, source: Source = Source.WEB
) -> DeploymentRequest:
    """Reject a plan awaiting approval, with the reason; the pod is free again."""
    if not comment.strip():
        raise ReviewRefused(
            "Say why the plan is rejected: the requester reads it.", status=400, title="Reason required"
        )
    message = f"Rejected by {actor}: “{comment}”"
    request = _review(request, Status.REJECTED, actor=actor, comment=comment, source=source, message=message)
    _notify(request, "rejected")
    return request


def _review(
    request: DeploymentRequest, to: Status, *, actor: Account, comment: str, source: Source, message: str
) -> DeploymentRequest:
    """An Approver's decision on a plan awaiting approval: approved (the approver then starts the
    apply, so ``applied_by`` is set in the same move) or rejected (the request ends)."""
    request = _fresh(request)
    _check_reviewer(request, actor)
    doing = "approved" if to == Status.APPROVED else "rejected"
    _refuse_unless_status(request, {Status.AWAITING_APPROVAL}, doing)
    now = timezone.now()
    outcome = {"applied_by": actor} if to == Status.APPROVED else {"completed_at": now}
    try:
        lifecycle.transition(
            request,
            to,
            source=source,
            actor=actor,
            message=message,
            data={"comment": comment} if comment else None,
            when={"applied_by": None},
            reviewed_by=actor,
            reviewed_at=now,
            review_comment=comment,
            **outcome,
        )
    except lifecycle.IllegalTransition:
        _refuse_unless_status(_fresh(request), set(), doing)
    return request


def deployment_request_cancel(
    *, request: DeploymentRequest, actor: Account, source: Source = Source.WEB
) -> DeploymentRequest:
    """Withdraw a request before its apply starts; by its requester, an Approver or staff."""
    request = _fresh(request)
    if actor.pk != request.requested_by_id and not (actor.is_staff or actor.has_perm(APPROVE_PERMISSION)):
        raise ReviewRefused(
            f"Only {request.requested_by} (who requested it), an Approver or an administrator can cancel it.",
            status=403,
            title="Not your request",
        )
    _refuse_unless_status(request, CANCELLABLE, "cancelled")
    try:
        lifecycle.transition(
            request,
            Status.CANCELLED,
            source=source,
            actor=actor,
            message=f"Cancelled by {actor} before the apply; nothing was applied.",
            when={"applied_by": None},
            completed_at=timezone.now(),
        )
    except lifecycle.IllegalTransition:
        _refuse_unless_status(_fresh(request), set(), "cancelled")
    return request


def deployment_request_expire_if_due(*, request: DeploymentRequest, now: dt.datetime | None = None) -> bool:
    """Expire a plan (or a wait for approval) older than PLAN_TTL_MINUTES; frees the pod."""
    now = now or timezone.now()
    if (
        request.status not in EXPIRABLE
        or request.applied_by_id
        or not request.expires_at
        or request.expires_at > now
    ):
        return False
    try:
        lifecycle.transition(
            request,
            Status.EXPIRED,
            source=Source.SYSTEM,
            message=f"The plan was not applied within {settings.PLAN_TTL_MINUTES} minutes and expired; "
            "nothing was applied. Plan again to deploy.",
            when={"applied_by": None},
            completed_at=now,
        )
    except lifecycle.IllegalTransition:
        return False
    _notify(request, "expired")
    return True


def _check_reviewer(request: DeploymentRequest, actor: Account) -> None:
    if not actor.has_perm(APPROVE_PERMISSION):
        raise ReviewRefused(
            "Only members of the Approvers group can approve or reject plans.",
            status=403,
            title="Approvers only",
        )
    if actor.pk == request.requested_by_id:
        raise ReviewRefused(
            "You requested this deployment, so you cannot approve or reject it yourself: "
            "another Approver must review it.",
            status=403,
            title="Self-approval is not allowed",
        )


def _dispatch_apply(request: DeploymentRequest, *, actor: Account, source: Source) -> DeploymentRequest:
    assert request.plan_run_id is not None
    inputs = request.inputs | {"action": "apply", "plan_run_id": str(request.plan_run_id)}
    return _dispatch(
        request,
        inputs=inputs,
        to=Status.DISPATCHED,
        actor=actor,
        source=source,
        what="Apply run",
        exclude_run_ids=(request.plan_run_id,),
        data={"action": "apply", "plan_run_id": request.plan_run_id},
    )
