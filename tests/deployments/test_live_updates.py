"""The request page and the pods page follow a deployment in place: their live parts are polled,
answered 304 in one query while nothing changed, and read the database only (never GitHub)."""

import datetime as dt
import re

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from deployments import lifecycle, live
from deployments.lifecycle import Source, Status
from deployments.models import DeploymentRequest
from fakegithub.state import RunOutcome
from tests.helpers import (
    EDIT_ACME_PROD,
    form,
    history,
    logged_in_client,
    make_request,
    make_user,
    replay,
    sqlite_steps,
)


def deploy(client, gh) -> DeploymentRequest:
    response = client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 302, response.content.decode()[-1500:]
    return DeploymentRequest.objects.latest("pk")


def deliver(client, gh) -> None:
    for delivery in gh.deliveries:
        replay(client, delivery)
    gh.deliveries.clear()


def etag_of(page) -> str:
    """The ETag the page hands its poll (in hx-headers, JSON in an attribute)."""
    match = re.search(r'"If-None-Match": "(W/\\u0022[^"]*?\\u0022)"', page.content.decode())
    assert match, "the page does not poll"
    return match.group(1).replace("\\u0022", '"').replace("\\u002D", "-")


def test_unchanged_request_is_answered_304_in_one_query(gh, deployer_client):
    request = deploy(deployer_client, gh)
    etag = etag_of(deployer_client.get(f"/requests/{request.pk}/"))
    deployer_client.get(f"/requests/{request.pk}/live/")  # the session is read once warm
    with CaptureQueriesContext(connection) as queries:
        response = deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag
    of_requests = [q["sql"] for q in queries if "deployments_deploymentrequest" in q["sql"]]
    assert len(of_requests) == 1, of_requests
    assert "deployments_deploymentevent" in of_requests[0]  # the event count, in the same query
    assert '"plan_summary" IS NOT NULL' in of_requests[0]  # whether there is one, not its JSON


def test_a_change_is_sent_with_a_new_etag_and_the_tab_title(gh, deployer_client):
    request = deploy(deployer_client, gh)
    etag = etag_of(deployer_client.get(f"/requests/{request.pk}/"))
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh)

    response = deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag})

    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert response.headers["Cache-Control"] == "no-store"
    page = response.content.decode()
    assert page.startswith(f"<title>Request #{request.pk} · success · Pod Deployment Portal</title>")
    assertContains(response, "Deployment finished: acme/prod")
    assertContains(response, 'data-announce="Deployment finished: acme/prod — Request #')
    assertNotContains(response, "hx-trigger")  # finished: the poll stops
    again = deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": response["ETag"]})
    assert again.status_code == 304


def test_a_note_without_a_status_change_is_a_change(gh, deployer_client):
    from deployments import lifecycle

    request = deploy(deployer_client, gh)
    etag = etag_of(deployer_client.get(f"/requests/{request.pk}/"))
    lifecycle.record(request, source=lifecycle.Source.SYSTEM, message="A note from the sync.")
    response = deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag})
    assert response.status_code == 200
    assertContains(response, "A note from the sync.")


def test_twenty_pages_polling_make_no_github_request(gh, deployer_client):
    request = deploy(deployer_client, gh)
    etag = etag_of(deployer_client.get(f"/requests/{request.pk}/"))
    gh.clear_requests()
    answers = [
        deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag}).status_code
        for _ in range(20)
    ]
    answers.append(deployer_client.get(f"/requests/{request.pk}/live/").status_code)
    assert answers == [304] * 20 + [200]
    assert gh.requests == []


def test_the_etag_depends_on_the_viewer(gh, deployer_client, viewer):
    request = deploy(deployer_client, gh)
    etag = etag_of(deployer_client.get(f"/requests/{request.pk}/"))
    # Another person is offered other buttons: the deployer's copy is not theirs.
    assert (
        logged_in_client(viewer)
        .get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag})
        .status_code
        == 200
    )


def test_a_plan_waiting_for_a_person_is_polled_slowly(gh, deployer_client, review_flow):
    request = deploy(deployer_client, gh)
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh)
    request.refresh_from_db()
    assert request.status == "awaiting_approval"  # prod: an Approver must approve
    response = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(response, 'hx-trigger="every 30s"')


def test_an_expired_plan_is_expired_by_the_poll(gh, deployer, deployer_client):
    request = make_request(deployer, status="planned", flow="review")
    DeploymentRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    page = deployer_client.get(f"/requests/{request.pk}/")  # the page itself expires it
    assertContains(page, "Plan expired: acme/prod")
    assertContains(page, '<p id="failure-reason">The plan was not applied within')  # said in the failure box
    assertNotContains(page, "hx-trigger")

    other = make_request(deployer, customer="globex", status="planned", flow="review")
    etag = etag_of(deployer_client.get(f"/requests/{other.pk}/"))
    DeploymentRequest.objects.filter(pk=other.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = deployer_client.get(f"/requests/{other.pk}/live/", headers={"if-none-match": etag})
    assert response.status_code == 200
    assertContains(response, "Plan expired: globex/prod")


def test_a_failed_run_shows_the_failed_step_the_reason_and_a_way_forward(gh_tx):
    # Real transactions: the reason is read from GitHub once the completion commits. The flush
    # before this test made new content types: forget the cached ones.
    ContentType.objects.clear_cache()
    deployer_client = logged_in_client(make_user(username="dana", deployer=True))
    request = deploy(deployer_client, gh_tx)
    outcome = RunOutcome(
        conclusion="failure",
        failed_step="Terraform apply",
        annotations=[{"title": "Terraform", "message": "Error: creating EC2 Instance: InsufficientCapacity"}],
    )
    gh_tx.complete_run(request.run_id, outcome=outcome)
    deliver(deployer_client, gh_tx)

    response = deployer_client.get(f"/requests/{request.pk}/")

    assertContains(response, "Deployment failed: acme/prod")
    assertContains(response, "Failed at step “Terraform apply”")
    assertContains(response, "InsufficientCapacity")
    assertContains(response, "Full log on GitHub")
    page = response.content.decode()
    assert re.search(r'<li class="failed">\s*<strong>Completed: failure</strong>', page), "no red dot"
    # "Try again" sends the same values to the preview, as a new request.
    try_again = re.search(
        r'<form method="post" action="/deploy/preview/"[^>]*id="try-again">(.*?)</form>', page, re.S
    )
    assert try_again
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', try_again.group(1)))
    assert fields["instance_type"] == EDIT_ACME_PROD["instance_type"]
    assert fields["idempotency_key"] != str(request.idempotency_key)
    preview = deployer_client.post("/deploy/preview/", fields)
    assertContains(preview, "Preview: update acme/prod")


def test_pods_page_polls_running_now_and_the_changed_last_deployment(gh, deployer_client):
    page = deployer_client.get("/")
    assertContains(page, "No deployment is running.")
    since = re.search(r'hx-get="/pods/live/\?since=([0-9.]+)"', page.content.decode()).group(1)
    etag = etag_of(page)
    assert (
        deployer_client.get("/pods/live/", {"since": since}, headers={"if-none-match": etag}).status_code
        == 304
    )

    request = deploy(deployer_client, gh)
    gh.clear_requests()
    response = deployer_client.get("/pods/live/", {"since": since}, headers={"if-none-match": etag})

    assert response.status_code == 200
    assert gh.requests == []
    assertContains(response, f'<a href="/requests/{request.pk}/">acme/prod</a>', html=True)
    # Out of band, each in a <template> (a bare <td> after the section would be dropped by the parser).
    cells = re.findall(r'<template><td id="last-([\w-]+)"[^>]*hx-swap-oob="true">', response.content.decode())
    assert cells == ["acme-prod"]
    assertContains(response, 'hx-trigger="every 5s"')


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts SQLite's own instructions")
def test_the_pods_page_stamp_costs_the_same_at_any_size_of_thehistory(deployer):
    """Every pods-page view and poll reads the stamp: its work must not grow with the audit
    history (it counted every request: 11 ms a view at 50,000 requests)."""
    history(deployer, 100)
    small = sqlite_steps(live.activity_stamp)
    history(deployer, 3000)
    large = sqlite_steps(live.activity_stamp)

    assert large <= small + 2, (small, large)


def test_the_pods_page_stamp_changes_with_a_new_request_and_with_a_change(deployer):
    history(deployer, 3)
    before = live.activity_stamp()
    request = make_request(deployer)
    created = live.activity_stamp()
    lifecycle.transition(request, Status.DISPATCHED, source=Source.SYSTEM)
    moved = live.activity_stamp()

    assert len({before.etag, created.etag, moved.etag}) == 3
    assert created.last_id == request.pk == moved.last_id


def test_a_new_request_changes_the_stamp_even_behind_a_later_change(deployer):
    """The newest change may be a request whose updated_at lies ahead (another host's clock):
    a new request is still seen, by its id."""
    history(deployer, 2)
    DeploymentRequest.objects.filter(pk=DeploymentRequest.objects.earliest("pk").pk)._transition(
        updated_at=timezone.now() + dt.timedelta(minutes=5)
    )
    before = live.activity_stamp()
    request = make_request(deployer)
    after = live.activity_stamp()

    assert after.latest == before.latest  # the future change is still the newest
    assert after.etag != before.etag and after.last_id == request.pk
