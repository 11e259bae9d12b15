from typing import Any, NoReturn

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from . import gh, lifecycle, podspec


class LifecycleError(Exception):
    """A status written other than through ``lifecycle.transition()``, or an event changed."""


class DeploymentRequestQuerySet(models.QuerySet):
    """Refuses status writes: only ``lifecycle.transition()`` moves a request."""

    def update(self, **kwargs: Any) -> int:
        if "status" in kwargs:
            raise LifecycleError("A request's status changes only through lifecycle.transition().")
        return super().update(**kwargs)

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        if "status" in fields:
            raise LifecycleError("A request's status changes only through lifecycle.transition().")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> Any:
        objs = list(objs)
        if any(obj.status != lifecycle.Status.PENDING for obj in objs):
            raise LifecycleError("A request is created pending; lifecycle.transition() moves it on.")
        return super().bulk_create(objs, *args, **kwargs)

    def _transition(self, **kwargs: Any) -> int:
        """The conditional update behind ``lifecycle.transition()``; nothing else calls it."""
        return super().update(**kwargs)


class DeploymentRequest(models.Model):
    """One operator's request to deploy a pod: who, what, when and how it ended.

    The row is written before GitHub is called, so no submission is ever lost. It is the
    audit history: the admin shows it read-only.
    """

    class Mode(models.TextChoices):
        EDIT = "edit", "Edit"
        NEW = "new", "New pod"

    class Flow(models.TextChoices):
        # Plan first, show the plan, apply it in a second run when someone presses Apply (or
        # an Approver approves): the default for every pod.
        REVIEW = "review", "Plan, review, apply"
        # Plan and apply in one run (AUTO_APPLY_ENVIRONMENTS, and every request before review).
        DEPLOY = "deploy", "Deploy in one run"

    Status = lifecycle.Status
    Conclusion = lifecycle.Conclusion
    ACTIVE_STATUSES = lifecycle.ACTIVE_STATUSES

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deployment_requests"
    )
    mode = models.CharField(max_length=8, choices=Mode.choices)
    customer = models.CharField(max_length=32)
    environment = models.CharField(max_length=32)
    instance_name = models.CharField(max_length=63)
    instance_type = models.CharField(max_length=32)
    waf_enabled = models.BooleanField()
    spec_before = models.TextField(
        blank=True, help_text="spec.yml as the portal last saw it; empty for a new pod"
    )
    spec_after = models.TextField(help_text="spec.yml the workflow will commit")
    inputs = models.JSONField(help_text="The exact workflow_dispatch inputs sent to GitHub")
    idempotency_key = models.UUIDField(
        unique=True, help_text="Issued with the form; also the run's request_id"
    )

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    conclusion = models.CharField(max_length=20, choices=Conclusion.choices, blank=True)
    # Not unique: run ids are unique per GitHub host, and a portal may have talked to several.
    run_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    run_url = models.URLField(max_length=500, blank=True)
    run_number = models.PositiveIntegerField(null=True, blank=True)
    # GitHub's run_attempt: a re-run keeps the run id and counts up; only a newer one moves a
    # finished request again (lifecycle.transition(attempt=...)).
    run_attempt = models.PositiveIntegerField(default=1)
    error_type = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # Indexed: the pods page and its poll read the newest change on every view (live.activity_stamp).
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    flow = models.CharField(max_length=8, choices=Flow.choices, default=Flow.DEPLOY)
    approval_required = models.BooleanField(
        default=False, help_text="An Approver other than the requester must approve the plan"
    )
    # The plan run (flow "review"): run_id follows the plan run while planning, then the apply run.
    plan_run_id = models.BigIntegerField(null=True, blank=True)
    plan_run_url = models.URLField(max_length=500, blank=True)
    plan_summary = models.JSONField(
        null=True, blank=True, help_text="What Terraform will do (deployments.plan), read from the plan run"
    )
    planned_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="The plan (or its approval) expires unless applied by then"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)
    # Who started the apply (the requester's Apply, or the approver's approval); set once, before
    # the apply is dispatched, so two clicks never dispatch two applies.
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    release_reason = models.TextField(blank=True)

    # Where the values came from when they were not typed: an earlier request redeployed ("Redeploy
    # this spec"), or a version of spec.yml in git rolled back to (its commit).
    redeploy_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="redeploys"
    )
    source_commit = models.CharField(
        max_length=64, blank=True, help_text="The commit of spec.yml whose values were rolled back to"
    )

    objects = DeploymentRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("release_lock", "Can release a stuck pod lock"),
            (
                "approve_deploymentrequest",
                "Can approve or reject other people's plans for protected environments",
            ),
        ]
        constraints = [
            # At most one active request per pod, across every worker and host.
            models.UniqueConstraint(
                fields=["customer", "environment"],
                condition=Q(status__in=lifecycle.ACTIVE_STATUSES),
                name="one_active_request_per_pod",
                violation_error_message="A deployment of this pod is already in progress.",
            ),
            models.CheckConstraint(
                condition=Q(conclusion__in=["", *lifecycle.Conclusion.values]), name="known_conclusion"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "environment", "-created_at"]),
            # A pod's latest request (the highest id, as everywhere) by one seek: the pods page.
            models.Index(fields=["customer", "environment", "-id"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.pod} ({self.get_status_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A new request starts pending; after that only lifecycle.transition() writes the status.
        if self._state.adding:
            self.check_first_state()
        elif "status" in (kwargs.get("update_fields") or ["status"]):
            raise LifecycleError("Save a request with update_fields that leave out status.")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("request_detail", args=[self.pk])

    def check_first_state(self) -> None:
        """A new request starts pending (save(), and lifecycle's one-statement INSERT)."""
        if self.status != self.Status.PENDING:
            raise LifecycleError("A request is created pending; lifecycle.transition() moves it on.")

    @property
    def pod(self) -> str:
        return f"{self.customer}/{self.environment}"

    @property
    def spec(self) -> podspec.PodSpec:
        """The values it deployed, as a spec."""
        return podspec.PodSpec(
            self.customer, self.environment, self.instance_name, self.instance_type, self.waf_enabled
        )

    @property
    def request_id(self) -> str:
        return str(self.idempotency_key)

    @property
    def is_active(self) -> bool:
        return lifecycle.is_active(self.status)

    @property
    def run_link(self) -> str:
        """``run_url`` when it is a page of the repository on the configured GitHub, else ""."""
        return self.run_url if self.run_url and gh.is_run_url(self.run_url) else ""

    @property
    def plan_run_link(self) -> str:
        return self.plan_run_url if self.plan_run_url and gh.is_run_url(self.plan_run_url) else ""

    @property
    def waits_for_people(self) -> bool:
        """A plan waiting to be applied or approved: nothing runs on GitHub meanwhile."""
        return (
            self.status in (self.Status.PLANNED, self.Status.AWAITING_APPROVAL) and self.applied_by_id is None
        )

    @property
    def is_running(self) -> bool:
        """Active, and a run is (or is about to be) on its way on GitHub."""
        return self.is_active and not self.waits_for_people

    @property
    def is_reviewed(self) -> bool:
        return self.flow == self.Flow.REVIEW

    @property
    def failed(self) -> bool:
        """Whether it ended badly: not started, refused, or a run that did not succeed."""
        return lifecycle.is_failure(self.status, self.conclusion)

    @property
    def outcome(self) -> str:
        """One word for the page: pending, running, success, failure, ... or dispatch_failed."""
        if self.status == self.Status.COMPLETED:
            return self.conclusion or "completed"
        return self.status


class DeploymentEventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> NoReturn:
        raise LifecycleError("Deployment events are never changed.")

    def delete(self) -> NoReturn:
        raise LifecycleError("Deployment events are never deleted.")


class DeploymentEvent(models.Model):
    """One change of a request's state, or one notable fact about it: the audit trail.

    Written in the same transaction as the change, by ``deployments.lifecycle``; never changed
    or deleted afterwards. A fact that is not a move has ``from_status == to_status``; the
    request's creation has an empty ``from_status``.
    """

    Source = lifecycle.Source

    request = models.ForeignKey(DeploymentRequest, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    # Null when GitHub or the portal itself (webhook, sync, system) caused it.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=8, choices=Source.choices)
    from_status = models.CharField(max_length=20, choices=lifecycle.Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=lifecycle.Status.choices)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True, help_text="Run id, attempt, delivery id, error type…")

    objects = DeploymentEventQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"#{self.request_id} {self.from_status or '∅'} → {self.to_status} ({self.source})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LifecycleError("Deployment events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise LifecycleError("Deployment events are never deleted.")

    @property
    def is_move(self) -> bool:
        return self.from_status != self.to_status

    @property
    def failed(self) -> bool:
        """Whether this event is a failure (drawn red on the timeline)."""
        if self.to_status == lifecycle.Status.COMPLETED and not self.is_move:
            return bool(self.data.get("error_type"))  # a note on a finished request
        return lifecycle.is_failure(self.to_status, self.data.get("conclusion")) or bool(
            self.data.get("error_type")
        )


class WebhookDelivery(models.Model):
    """A processed ``X-GitHub-Delivery``: a redelivery of the same one is a no-op."""

    delivery_id = models.CharField(max_length=64, unique=True)
    event = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_id}"
