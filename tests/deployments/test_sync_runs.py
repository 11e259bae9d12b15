import datetime as dt
import time

import pytest
from django.core.management import call_command
from django.utils import timezone

from deployments.models import DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, form, replay


@pytest.fixture
def deployed(gh, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    return DeploymentRequest.objects.get()


def sync(capsys) -> str:
    call_command("sync_runs")
    return capsys.readouterr().out.strip()


def test_sync_follows_a_run_without_webhooks(gh, deployed, capsys):
    gh.advance_run(deployed.run_id)
    assert sync(capsys) == "checked 1, updated 1, marked stale 0, expired 0, errors 0"
    assert DeploymentRequest.objects.get().status == "in_progress"
    gh.advance_run(deployed.run_id)
    sync(capsys)
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == ("completed", "success")
    assert sync(capsys) == "checked 0, updated 0, marked stale 0, expired 0, errors 0"


def test_unchanged_run_is_a_free_conditional_request(gh, deployed, capsys):
    sync(capsys)
    remaining = gh.rate_limit["resources"]["core"]["remaining"]
    gh.clear_requests()
    assert sync(capsys) == "checked 1, updated 0, marked stale 0, expired 0, errors 0"
    assert [r.status for r in gh.requests] == [304]
    assert gh.rate_limit["resources"]["core"]["remaining"] == remaining


def test_sync_after_webhook_changes_nothing(gh, client, deployed, capsys):
    gh.complete_run(deployed.run_id)
    for delivery in gh.deliveries:
        replay(client, delivery)
    assert sync(capsys) == "checked 0, updated 0, marked stale 0, expired 0, errors 0"
    assert DeploymentRequest.objects.get().conclusion == "success"


def test_sync_finds_the_run_of_a_request_dispatched_without_one(gh, deployer_client, capsys, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.1
    gh.ghes = True
    gh.run_visible_after = 0.5
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert request.run_id is None
    time.sleep(0.6)
    assert sync(capsys) == "checked 1, updated 1, marked stale 0, expired 0, errors 0"
    request.refresh_from_db()
    assert request.run_id == gh.runs[0]["id"]
    assert request.run_url == gh.runs[0]["html_url"]


def test_request_whose_run_never_appeared_is_closed_as_stale(gh, deployer, capsys, settings):
    settings.RUN_STALE_AFTER_MINUTES = 60
    request = DeploymentRequest.objects.create(
        requested_by=deployer,
        mode="edit",
        customer="acme",
        environment="prod",
        instance_name="acme-prod-web",
        instance_type="t3.large",
        waf_enabled=True,
        spec_after="",
        inputs={},
        idempotency_key="6f1c1e9e-0000-4000-8000-000000000001",
    )
    DeploymentRequest.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - dt.timedelta(minutes=61)
    )
    assert sync(capsys) == "checked 1, updated 0, marked stale 1, expired 0, errors 0"
    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "stale")
    assert request.error_message == "No workflow run appeared within 60 minutes of the request."


def test_run_active_beyond_the_timeout_is_stale(gh, deployed, capsys, settings):
    settings.RUN_STALE_AFTER_MINUTES = 30
    gh.advance_run(deployed.run_id)
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    # The stale clock runs from the last dispatch.
    DeploymentRequest.objects.filter(pk=deployed.pk).update(created_at=an_hour_ago, dispatched_at=an_hour_ago)
    assert sync(capsys) == "checked 1, updated 1, marked stale 1, expired 0, errors 0"
    deployed.refresh_from_db()
    assert deployed.conclusion == "stale"
    assert deployed.error_message == "The run stayed in progress for more than 30 minutes."


def test_github_error_is_counted_and_request_kept(gh, deployed, capsys):
    gh.add_fault("GET", r"/actions/runs/", status=500)
    assert sync(capsys) == "checked 1, updated 0, marked stale 0, expired 0, errors 1"
    assert DeploymentRequest.objects.get().status == "dispatched"


def test_stale_marking_is_safe_when_another_host_already_completed_it(gh, client, deployed):
    from deployments import services

    gh.complete_run(deployed.run_id)
    for delivery in gh.deliveries:  # another host's webhook completes it; this copy is out of date
        replay(client, delivery)
    assert deployed.status == "dispatched"
    assert services.deployment_request_mark_stale(request=deployed, reason="late") is False
    assert DeploymentRequest.objects.get().conclusion == "success"
    assert not deployed.events.filter(message="late").exists()


def test_request_whose_run_lookup_keeps_failing_is_still_closed_when_too_old(gh, deployed, capsys, settings):
    settings.RUN_STALE_AFTER_MINUTES = 30
    gh.add_fault("GET", r"/actions/runs/", status=404, body={"message": "Not Found"})
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    # The stale clock runs from the last dispatch.
    DeploymentRequest.objects.filter(pk=deployed.pk).update(created_at=an_hour_ago, dispatched_at=an_hour_ago)
    assert sync(capsys) == "checked 1, updated 0, marked stale 1, expired 0, errors 1"
    deployed.refresh_from_db()
    assert deployed.conclusion == "stale"
    assert deployed.error_message == "The run stayed dispatched for more than 30 minutes."


def test_the_request_page_finds_a_late_run_itself_at_a_bounded_cost(gh, deployer_client, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.1
    # An interval well above a page view's time, even on a busy machine: views within one
    # interval must share its lookup.
    settings.RUN_LOOKUP_INTERVAL_SECONDS = 1.0
    gh.ghes = True
    gh.run_visible_after = 0.5  # GitHub creates the run a while after the dispatch
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert request.run_id is None
    gh.clear_requests()
    views, started = 0, time.monotonic()
    while time.monotonic() < started + 5:
        views += 1
        response = deployer_client.get(f"/requests/{request.pk}/")
        if response.context["deployment"].run_id:
            break
        time.sleep(0.05)  # an operator's browser polling the page
    elapsed = time.monotonic() - started
    request.refresh_from_db()
    assert request.run_id == gh.runs[0]["id"]
    assert response.context["deployment"].run_link == gh.runs[0]["html_url"]
    lookups = len([r for r in gh.requests if r.path.endswith("/runs")])
    assert 1 <= lookups <= elapsed / 1.0 + 1 and lookups < views  # one per interval, not one per view
    assert request.events.last().source == "system"
