from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse


class DeploymentRequest(models.Model):
    """One operator's request to deploy a pod: who, what, when and how it ended.

    The row is written before GitHub is called, so no submission is ever lost. It is the
    audit history: the admin shows it read-only.
    """

    class Mode(models.TextChoices):
        EDIT = "edit", "Edit"
        NEW = "new", "New pod"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DISPATCHED = "dispatched", "Dispatched"
        QUEUED = "queued", "Queued"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed", "Completed"
        DISPATCH_FAILED = "dispatch_failed", "Dispatch failed"

    ACTIVE_STATUSES = (Status.PENDING, Status.DISPATCHED, Status.QUEUED, Status.IN_PROGRESS)
    # Order of progress: an event never moves a request backwards.
    STATUS_RANK = {
        Status.PENDING: 0,
        Status.DISPATCHED: 1,
        Status.QUEUED: 2,
        Status.IN_PROGRESS: 3,
        Status.COMPLETED: 4,
        Status.DISPATCH_FAILED: 4,
    }

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

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    conclusion = models.CharField(max_length=32, blank=True)
    # Not unique: run ids are unique per GitHub host, and a portal may have talked to several.
    run_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    run_url = models.URLField(max_length=500, blank=True)
    run_number = models.PositiveIntegerField(null=True, blank=True)
    error_type = models.CharField(max_length=32, blank=True)
    error_message = models.TextField(blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    released_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    release_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("release_lock", "Can release a stuck pod lock")]
        constraints = [
            # At most one active request per pod, across every worker and host.
            models.UniqueConstraint(
                fields=["customer", "environment"],
                condition=Q(status__in=["pending", "dispatched", "queued", "in_progress"]),
                name="one_active_request_per_pod",
                violation_error_message="A deployment of this pod is already in progress.",
            ),
        ]
        indexes = [models.Index(fields=["customer", "environment", "-created_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.pod} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("request_detail", args=[self.pk])

    @property
    def pod(self) -> str:
        return f"{self.customer}/{self.environment}"

    @property
    def request_id(self) -> str:
        return str(self.idempotency_key)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def outcome(self) -> str:
        """One word for the page: pending, running, success, failure, ... or dispatch_failed."""
        if self.status == self.Status.COMPLETED:
            return self.conclusion or "completed"
        return self.status


class WebhookDelivery(models.Model):
    """A processed ``X-GitHub-Delivery``: a redelivery of the same one is a no-op."""

    delivery_id = models.CharField(max_length=64, unique=True)
    event = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_id}"
