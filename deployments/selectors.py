"""Read-only queries over deployment requests: what the pages and services look up."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db import connection
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


def pod_activity(pods: Iterable[Pod] | None = None) -> dict[str, DeploymentRequest]:
    """Per pod: its latest request (the highest id: the database's order, not the app servers'
    clocks), in two queries. With ``pods`` (a page of them) each pod's latest request is one
    seek in the (customer, environment, -id) index, whatever the size of the history; without,
    one pass over all requests (the API's whole listing). Reading the whole history for a page
    took 20 ms on SQLite and 36 ms on PostgreSQL at 50,000 requests."""
    if pods is None:
        per_pod = DeploymentRequest.objects.values("customer", "environment")
        found = DeploymentRequest.objects.filter(id__in=per_pod.annotate(last=Max("id")).values("last"))
    else:
        keys = sorted({(pod.customer, pod.environment) for pod in pods})
        if not keys:
            return {}
        found = DeploymentRequest.objects.filter(id__in=_latest_request_ids(keys))
    return {r.pod: r for r in found.select_related("requested_by")}


def _latest_request_ids(pods: list[tuple[str, str]]) -> list[int]:
    """The latest request's id of each (customer, environment), by one index seek each: a
    correlated subquery per row of a VALUES list (SQLite and PostgreSQL both; the ORM has no
    VALUES table, and SQLite refuses LIMIT inside a UNION's members)."""
    table = connection.ops.quote_name(DeploymentRequest._meta.db_table)
    rows = ", ".join(["(%s, %s)"] * len(pods))
    sql = (
        f"WITH pods (customer, environment) AS (VALUES {rows}) "  # noqa: S608 (placeholders only)
        f"SELECT (SELECT r.id FROM {table} r WHERE r.customer = pods.customer "
        "AND r.environment = pods.environment ORDER BY r.id DESC LIMIT 1) FROM pods"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [part for pod in pods for part in pod])
        return [row[0] for row in cursor.fetchall() if row[0] is not None]


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
