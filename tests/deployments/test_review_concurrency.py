"""Review before apply under concurrency (issue 13): many people pressing at once.

Real transactions and one database connection per thread, so the portal's conditional updates
and the one-active-request-per-pod constraint meet each other as under gunicorn; these tests run
on SQLite in ``make test`` and again on PostgreSQL in ``make test-postgres`` (they use the
``gh_tx`` fixture, hence ``transactional_db``). The dispatches counted are the POSTs the
emulator received.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone

from deployments import podspec
from deployments.models import DeploymentRequest
from deployments.services import deployment_requests_sync
from tests.helpers import at_once, dispatches, form, logged_in_client, make_user, replay

pytestmark = pytest.mark.usefixtures("review_flow")

THREADS = 8


def post(client, path: str, data: dict | None = None) -> Callable[[], object]:
    return lambda: client.post(path, data or {})


def statuses(responses: list) -> list:
    return sorted(getattr(r, "status_code", r) for r in responses)


def apply_dispatches(gh) -> list:
    return [r for r in dispatches(gh) if r.json["inputs"].get("action") == "apply"]


def pod_values(customer: str, environment: str, instance_type: str = "t3.medium") -> dict:
    """The edit form of a pod committed to the emulator by ``add_pod``, with a new instance type."""
    return {
        "customer": customer,
        "environment": environment,
        "instance_name": f"{customer}-{environment}-web",
        "instance_type": instance_type,
        "mode": "edit",
    }


def add_pod(gh, customer: str, environment: str) -> dict:
    spec = podspec.PodSpec(customer, environment, f"{customer}-{environment}-web", "t3.small", False)
    gh.put_file(podspec.spec_path("pods", customer, environment), podspec.render(spec))
    return pod_values(customer, environment)


def deliver(client, gh, since: int = 0) -> int:
    """Send the emulator's webhook deliveries from ``since`` on, as GitHub would; returns the end."""
    deliveries = gh.deliveries
    for delivery in deliveries[since:]:
        assert replay(client, delivery).status_code in (200, 202)
    return len(deliveries)


def planned(client, gh, values: dict) -> DeploymentRequest:
    """A request planned through the portal: the form posted, the plan run finished, its
    webhooks delivered (the summary is read after their commit)."""
    since = len(gh.deliveries)
    response = client.post("/deploy/", form(values))
    assert response.status_code == 302, response.content.decode()[-1500:]
    request = DeploymentRequest.objects.latest("pk")
    gh.complete_run(request.run_id)
    deliver(client, gh, since)
    request.refresh_from_db()
    assert request.status in ("planned", "awaiting_approval")
    assert request.plan_summary is not None
    return request


def finish_apply(client, gh, request: DeploymentRequest) -> None:
    """Let a dispatched apply run succeed, so the next race starts with no active request."""
    since = len(gh.deliveries)
    request.refresh_from_db()
    gh.complete_run(request.run_id)
    deliver(client, gh, since)
    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "success")


def moves_to(request: DeploymentRequest, status: str) -> int:
    return request.events.filter(to_status=status).exclude(from_status=status).count()


@pytest.fixture
def dana(gh_tx):
    return make_user(username="dana", deployer=True)


@pytest.fixture
def approvers(gh_tx):
    return [make_user(username=name, deployer=True, approver=True) for name in ("lead", "lena")]


def test_many_applies_of_one_plan_at_once_dispatch_one_apply(gh_tx, dana, approvers):
    values = add_pod(gh_tx, "race", "staging")
    request = planned(logged_in_client(dana), gh_tx, values)
    # The requester clicking again and again in several tabs, and Approvers pressing too.
    clients = [logged_in_client(dana) for _ in range(THREADS - 2)] + [logged_in_client(a) for a in approvers]
    responses = at_once(*(post(c, f"/requests/{request.pk}/apply/") for c in clients))
    assert statuses(responses) == [302] + [409] * (THREADS - 1)
    for response in responses:
        if response.status_code == 409:
            assert f"Request #{request.pk} is already being applied." in response.content.decode()
    [sent] = apply_dispatches(gh_tx)
    assert sent.json["inputs"]["plan_run_id"] == str(request.plan_run_id)
    request.refresh_from_db()
    assert request.status == "dispatched" and request.run_id != request.plan_run_id
    assert moves_to(request, "dispatched") == 1
    finish_apply(clients[0], gh_tx, request)


def test_two_approvers_approving_at_once_dispatch_one_apply(gh_tx, dana, approvers):
    request = planned(logged_in_client(dana), gh_tx, add_pod(gh_tx, "race", "prod"))
    assert request.status == "awaiting_approval"
    clients = [logged_in_client(a) for a in approvers]
    responses = at_once(
        *(post(c, f"/requests/{request.pk}/approve/", {"comment": f"ok {i}"}) for i, c in enumerate(clients))
    )
    assert statuses(responses) == [302, 409]
    winner = approvers[[r.status_code for r in responses].index(302)]
    assert len(apply_dispatches(gh_tx)) == 1
    request.refresh_from_db()
    assert request.status == "dispatched"
    assert (request.reviewed_by, request.applied_by) == (winner, winner)
    assert moves_to(request, "approved") == 1 and moves_to(request, "dispatched") == 1
    loser = next(r for r in responses if r.status_code == 409)
    assert f"Request #{request.pk} is already being applied." in loser.content.decode()


@pytest.mark.parametrize("round_", range(3))
def test_approve_racing_cancel_one_wins_and_the_state_agrees(gh_tx, dana, approvers, round_):
    requester = logged_in_client(dana)
    values = add_pod(gh_tx, f"race{round_}", "prod")
    request = planned(requester, gh_tx, values)
    approve, cancel = at_once(
        post(logged_in_client(approvers[0]), f"/requests/{request.pk}/approve/", {"comment": "go"}),
        post(logged_in_client(dana), f"/requests/{request.pk}/cancel/"),
    )
    assert sorted([approve.status_code, cancel.status_code]) == [302, 409]
    request.refresh_from_db()
    again = requester.post("/deploy/", form(values, instance_type="t3.large"))
    if approve.status_code == 302:
        assert request.status == "dispatched" and request.reviewed_by == approvers[0]
        assert len(apply_dispatches(gh_tx)) == 1
        assert moves_to(request, "cancelled") == 0
        assert again.status_code == 409  # the apply holds the pod
    else:
        assert request.status == "cancelled" and request.applied_by is None
        assert apply_dispatches(gh_tx) == []
        assert moves_to(request, "approved") == 0 and moves_to(request, "dispatched") == 0
        assert again.status_code == 302  # the pod is free again


def test_new_deploys_of_the_pod_are_409_from_plan_to_the_end_of_apply(gh_tx, dana, approvers):
    values = add_pod(gh_tx, "race", "prod")
    others = [form(values, instance_type=t) for t in ("t3.large", "t3.xlarge", "m5.large", "m5.xlarge")]
    clients = [logged_in_client(dana) for _ in range(THREADS)]
    # Planning: of many first plans of one free pod, one gets the pod.
    first = at_once(*(post(c, "/deploy/", form(values, instance_type=t)) for c, t in zip(
        clients, ["t3.medium", "t3.large", "t3.xlarge", "m5.large"] * 2, strict=True
    )))  # fmt: skip
    assert statuses(first) == [302] + [409] * (THREADS - 1)
    assert len(dispatches(gh_tx)) == 1
    request = DeploymentRequest.objects.get()
    gh_tx.complete_run(request.run_id)
    deliver(clients[0], gh_tx)
    request.refresh_from_db()
    assert request.status == "awaiting_approval"

    def new_deploys() -> list:
        return [post(c, "/deploy/", payload) for c, payload in zip(clients, others, strict=False)]

    # Awaiting approval, and while the approval itself goes through.
    assert statuses(at_once(*new_deploys())) == [409] * len(others)
    approver = logged_in_client(approvers[0])
    [approved, *refused] = at_once(post(approver, f"/requests/{request.pk}/approve/"), *new_deploys())
    assert approved.status_code == 302 and statuses(refused) == [409] * len(others)
    for response in refused:
        assert "already has a deployment in progress" in response.content.decode()
    # The apply run is under way: still locked, until it ends.
    assert statuses(at_once(*new_deploys())) == [409] * len(others)
    assert len(dispatches(gh_tx)) == 2  # the plan and one apply, nothing else
    finish_apply(approver, gh_tx, request)
    # The pod is free again (an instance type none of the plans above asked for).
    assert clients[0].post("/deploy/", form(values, instance_type="c6i.large")).status_code == 302


@pytest.mark.parametrize("environment", ["staging", "prod"])
def test_expiry_racing_apply_never_both(gh_tx, dana, approvers, environment):
    """The sync, whose clock says the plan expired, against the apply (or approval) pressed just
    before: one of them wins; an expired plan is never applied."""
    requester = logged_in_client(dana)
    # The sync starts later and later: first at once, then after passes whose clock is now.
    delays = (0, 2, 5, 10, 20)
    pods = [add_pod(gh_tx, f"exp{round_}", environment) for round_ in range(len(delays))]
    outcomes = set()
    for values, delay in zip(pods, delays, strict=True):
        request = planned(requester, gh_tx, values)
        if environment == "prod":
            press = post(logged_in_client(approvers[0]), f"/requests/{request.pk}/approve/")
        else:
            press = post(logged_in_client(dana), f"/requests/{request.pk}/apply/")
        before = len(apply_dispatches(gh_tx))
        later = request.expires_at + dt.timedelta(seconds=1)

        def expire(later=later, delay=delay):
            for _ in range(delay):
                deployment_requests_sync()
            return deployment_requests_sync(now=later)

        counts, response = at_once(expire, press)
        request.refresh_from_db()
        applied = len(apply_dispatches(gh_tx)) - before
        if counts["expired"]:
            outcomes.add("expired")
            assert request.status == "expired" and request.applied_by is None
            assert response.status_code == 409 and applied == 0
            assert moves_to(request, "dispatched") == 0
        else:
            outcomes.add("applied")
            assert response.status_code == 302 and applied == 1
            # The sync may have read the apply run meanwhile (queued on GitHub).
            assert request.status in ("dispatched", "queued") and moves_to(request, "expired") == 0
            finish_apply(requester, gh_tx, request)
    # Which wins each round is up to the scheduler (the later rounds favour the apply).
    assert outcomes


def test_applies_pressed_after_expiry_dispatch_nothing(gh_tx, dana, approvers):
    request = planned(logged_in_client(dana), gh_tx, add_pod(gh_tx, "late", "staging"))
    past = timezone.now() - dt.timedelta(seconds=1)
    DeploymentRequest.objects.filter(pk=request.pk).update(expires_at=past)
    clients = [logged_in_client(dana) for _ in range(THREADS - 1)]
    results = at_once(deployment_requests_sync, *(post(c, f"/requests/{request.pk}/apply/") for c in clients))
    assert statuses(results[1:]) == [409] * (THREADS - 1)
    for response in results[1:]:
        assert "was not applied within" in response.content.decode()
    assert apply_dispatches(gh_tx) == []
    request.refresh_from_db()
    assert request.status == "expired"
    assert moves_to(request, "expired") == 1
    assert logged_in_client(dana).post("/deploy/", form(pod_values("late", "staging"))).status_code == 302


def test_plan_run_reported_before_the_dispatch_answer_is_still_the_plan(gh_tx, dana):
    """GitHub's webhooks can reach the portal before the dispatch's own answer: the run of a
    request still ``pending`` in the review flow is its plan run, never a one-run deploy (which
    would end "success" with nothing applied)."""
    from deployments import services

    values = add_pod(gh_tx, "early", "staging")
    spec = podspec.PodSpec("early", "staging", "early-staging-web", "t3.medium", False)
    request, _ = services.deployment_request_create(
        user=dana, spec=spec, mode="edit", current=None, idempotency_key=form(values)["idempotency_key"]
    )
    # The run GitHub starts for the dispatch, announced before the portal hears the answer.
    run = gh_tx.create_run(request.inputs, {"login": "portal"})
    client = logged_in_client(dana)
    deliver(client, gh_tx)
    request.refresh_from_db()
    assert request.status == "planning" and request.run_id == run.id
    gh_tx.complete_run(run.id)
    deliver(client, gh_tx, 1)
    request.refresh_from_db()
    assert request.status == "planned" and request.plan_run_id == run.id and request.run_id is None
    assert request.plan_summary is not None
    page = client.get(f"/requests/{request.pk}/")
    assert "Plan ready for review: early/staging" in page.content.decode()
    assert client.post(f"/requests/{request.pk}/apply/").status_code == 302
    [sent] = apply_dispatches(gh_tx)
    assert sent.json["inputs"]["plan_run_id"] == str(run.id)
