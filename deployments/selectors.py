"""Read-only queries over deployment requests: what the pages and services look up."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Max, QuerySet

from . import lifecycle
from .models import DeploymentEvent, DeploymentRequest

if TYPE_CHECKING:
    from .gh import RunState
    from .gh.history import SpecCommit
    from .inventory import Pod

REQUEST_ID_RE = re.compile(r"\[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]")


def active_request_for_pod(*, customer: str, environment: str) -> DeploymentRequest | None:
    """The request holding the pod's lock, if any."""
    return (
        DeploymentRequest.objects.filter(
            customer=customer, environment=environment, status__in=lifecycle.ACTIVE_STATUSES
        )
        .select_related("requested_by")
        .first()
    )


def request_for_run(run: RunState) -> DeploymentRequest | None:
    """The request a run belongs to: by the ``[request_id]`` in its title, when the title also
    names the request's pod (``Deploy <customer>/<environment> [<request_id>]``), else by run id."""
    match = REQUEST_ID_RE.search(run.display_title)
    if match:
        request = DeploymentRequest.objects.filter(idempotency_key=match.group(1)).first()
        if (
            request
            and (request.run_id in (None, run.run_id) or request.plan_run_id == run.run_id)
            and f"{request.pod} [{request.request_id}]" in run.display_title
        ):
            return request
    return DeploymentRequest.objects.filter(run_id=run.run_id).order_by("-created_at").first()


def request_by_key(idempotency_key: uuid.UUID | str) -> DeploymentRequest | None:
    return DeploymentRequest.objects.filter(idempotency_key=idempotency_key).first()


def active_requests() -> QuerySet[DeploymentRequest]:
    return DeploymentRequest.objects.filter(status__in=lifecycle.ACTIVE_STATUSES).order_by("pk")


def pod_activity() -> dict[str, DeploymentRequest]:
    """Per pod: its latest request. Two queries for any number of pods."""
    latest_ids = (
        DeploymentRequest.objects.values("customer", "environment").annotate(last=Max("id")).values("last")
    )
    return {
        r.pod: r for r in DeploymentRequest.objects.filter(id__in=latest_ids).select_related("requested_by")
    }


def requests_filtered(*, pod: str = "", status: str = "", user: str = "") -> QuerySet[DeploymentRequest]:
    """The history page's list: ``pod`` is a customer or customer/environment."""
    requests = DeploymentRequest.objects.select_related("requested_by")
    if "/" in pod:
        customer, _, environment = pod.partition("/")
        requests = requests.filter(customer=customer, environment=environment)
    elif pod:
        requests = requests.filter(customer=pod)
    if status:
        requests = requests.filter(status=status)
    if user:
        requests = requests.filter(requested_by__username=user)
    return requests


def request_events(request: DeploymentRequest) -> QuerySet[DeploymentEvent]:
    """The request's timeline, oldest first."""
    return request.events.select_related("actor").order_by("at", "id")


def pod_requests(*, customer: str, environment: str) -> QuerySet[DeploymentRequest]:
    """The pod's requests, newest first."""
    return DeploymentRequest.objects.filter(customer=customer, environment=environment).select_related(
        "requested_by"
    )


def label_commits(commits: Iterable[SpecCommit]) -> list[tuple[SpecCommit, DeploymentRequest | None]]:
    """Each commit of a spec.yml with the portal request that made it (by the ``[request_id]`` in
    its message), or None: a change made outside the portal. One query."""
    commits = list(commits)
    keys = {c.request_id for c in commits if c.request_id}
    requests = {
        r.request_id: r
        for r in DeploymentRequest.objects.filter(idempotency_key__in=keys).only("pk", "idempotency_key")
    }
    return [(c, requests.get(c.request_id)) for c in commits]


def pod_drift(pod: Pod) -> tuple[DeploymentRequest | None, bool]:
    """(the pod's last successful deployment, whether spec.yml in git is no longer its spec):
    drifted means it was changed outside the portal since."""
    last = (
        DeploymentRequest.objects.filter(
            customer=pod.customer,
            environment=pod.environment,
            status=lifecycle.Status.COMPLETED,
            conclusion=lifecycle.Conclusion.SUCCESS,
        )
        .order_by("-completed_at", "-id")
        .first()
    )
    return last, bool(last and last.spec_after != pod.text)
