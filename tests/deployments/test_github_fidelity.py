"""The portal against GitHub as it really behaves: tokens that may not dispatch or cannot see the
repository, secondary rate limits, webhook deliveries that never arrive."""

import pytest
from django.core.management import call_command

from deployments import gh as portal_gh
from deployments.models import DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, dispatches, form

# A pod whose environment deploys in one run (no plan to review), so one run ends the request.
EDIT_UMBRELLA_DEV = {
    "customer": "umbrella",
    "environment": "dev",
    "instance_name": "umbrella-dev-web",
    "instance_type": "t3.small",
    "mode": "edit",
}
FINE_GRAINED = "github_pat_11AAAAAAA0fidelitytesttoken"


def recorded(error_type: str) -> DeploymentRequest:
    request = DeploymentRequest.objects.get()
    assert (request.status, request.error_type) == ("dispatch_failed", error_type)
    assert not request.is_active
    return request


# --- tokens that may not dispatch, or cannot see the repository ---------------------------------------


def test_token_without_actions_write_gets_the_forbidden_page_and_the_request_is_recorded(
    gh, deployer_client, settings
):
    gh.token = settings.GH_TOKEN = FINE_GRAINED
    gh.fine_grained_permissions["actions"] = "read"
    portal_gh.reset()
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 403
    assert "Permission Denied" in page
    assert "a fine-grained token or GitHub App needs Actions: write" in page
    assert "GitHub says this needs the permission actions: write." in page
    request = recorded("forbidden")
    assert "actions: write" in request.error_message
    assert f"/requests/{request.pk}/" in page
    assert [r.status for r in dispatches(gh)] == [403]
    assert gh.runs == []


def test_token_that_cannot_see_the_repository_makes_health_say_so(gh, viewer_client):
    gh.token_repositories = []  # GitHub answers 404, not 403, for a private repository it cannot see
    response = viewer_client.get("/health")
    assert response.status_code == 503
    assert response.json()["reason"].startswith(
        "Repository demo/pods not found, or the portal's credentials cannot see it"
    )


# --- secondary rate limits ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_dispatch_refused_by_a_secondary_limit_says_when_to_try_again_and_is_sent_once(
    gh, deployer_client, status
):
    gh.secondary_writes_per_minute = 0  # every content-creating request is refused, retry-after 60
    gh.secondary_limit_status = status
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 503
    assert "GitHub Rate Limit Reached" in page
    assert "secondary rate limit" in page
    assert "Try again after" in page
    assert "(in 60 s)" in page
    assert [r.status for r in dispatches(gh)] == [status]  # never retried
    assert gh.runs == []
    assert "(in 60 s)" in recorded("service_unavailable").error_message


def test_reads_refused_by_a_secondary_limit_show_the_page_without_waiting_or_retrying(gh, viewer_client):
    gh.secondary_points_per_minute = 0
    gh.secondary_limit_status = 429
    response = viewer_client.get("/")
    page = response.content.decode()
    assert response.status_code == 503
    assert "GitHub Rate Limit Reached" in page
    assert "Try again after" in page
    assert [r.status for r in gh.requests if r.path.startswith("/repos/")] == [429]


# --- webhook deliveries lost on the way -----------------------------------------------------------------


@pytest.fixture
def webhooks_to_portal(gh_tx, live_server, settings):
    """The emulator posts its webhooks to the portal under a live server, over HTTP."""
    settings.AUTO_APPLY_ENVIRONMENTS = ["dev"]
    gh_tx.webhook_url = f"{live_server.url}/webhooks/github"
    return gh_tx


def run_to_the_end(gh, deployer_client) -> DeploymentRequest:
    assert deployer_client.post("/deploy/", form(EDIT_UMBRELLA_DEV)).status_code == 302
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id, conclusion="success")
    assert all(delivery.done.wait(10) for delivery in gh.deliveries)
    request.refresh_from_db()
    return request


def test_delivered_webhooks_end_the_request(webhooks_to_portal, deployer_client):
    request = run_to_the_end(webhooks_to_portal, deployer_client)
    assert {d.status for d in webhooks_to_portal.deliveries} == {200}
    assert (request.status, request.conclusion) == ("completed", "success")


def test_with_every_webhook_lost_the_sync_still_reaches_the_runs_end(webhooks_to_portal, deployer_client):
    webhooks_to_portal.webhook_loss = 1.0  # and GitHub does not redeliver by itself
    request = run_to_the_end(webhooks_to_portal, deployer_client)
    assert {d.status for d in webhooks_to_portal.deliveries} == {None}
    assert request.status == "dispatched"  # nothing arrived

    call_command("sync_runs")

    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "success")
    assert request.events.order_by("pk").last().source == "sync"


def test_with_only_the_completed_webhook_lost_the_sync_finishes_what_webhooks_began(
    webhooks_to_portal, deployer_client
):
    webhooks_to_portal.webhook_loss = lambda delivery: delivery.action == "completed"
    request = run_to_the_end(webhooks_to_portal, deployer_client)
    assert request.status == "in_progress"

    call_command("sync_runs")

    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "success")
