import copy
import json
from pathlib import Path

import pytest
import requests as http

from deployments.models import DeploymentRequest, WebhookDelivery
from tests.helpers import EDIT_ACME_PROD, form, make_request, post_event, replay, sign

EXAMPLES = json.loads((Path(__file__).parent.parent / "fixtures/webhooks/workflow_run.json").read_text())


@pytest.fixture
def deployed(gh, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    return DeploymentRequest.objects.get()


def test_emulator_deliveries_move_the_request_to_success(gh, client, deployed):
    gh.advance_run(deployed.run_id)
    gh.advance_run(deployed.run_id)
    responses = [replay(client, d) for d in gh.deliveries]
    assert [r.status_code for r in responses] == [200, 200, 200]
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == ("completed", "success")
    assert deployed.run_number == gh.run(deployed.run_id)["run_number"]
    assert deployed.started_at and deployed.completed_at


def test_failed_run_is_recorded_as_failure(gh, client, deployed):
    gh.complete_run(deployed.run_id, conclusion="failure")
    for delivery in gh.deliveries:
        replay(client, delivery)
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == ("completed", "failure")


def test_out_of_order_events_never_move_backwards(gh, client, deployed):
    gh.complete_run(deployed.run_id)
    for delivery in reversed(gh.deliveries):  # completed first, then in_progress, then requested
        assert replay(client, delivery).status_code == 200
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == ("completed", "success")


def test_redelivery_is_a_no_op(gh, client, deployed):
    gh.advance_run(deployed.run_id)
    in_progress = gh.deliveries[-1]
    assert replay(client, in_progress).json() == {"message": "Request updated."}
    events = deployed.events.count()
    assert replay(client, in_progress).json() == {"message": "Delivery already processed."}
    assert DeploymentRequest.objects.get().status == "in_progress"
    assert deployed.events.count() == events
    assert WebhookDelivery.objects.count() == 1


def test_run_found_by_request_id_in_title_when_run_id_unknown(gh, client, deployer_client, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.1
    gh.ghes = True  # no run details in the dispatch answer
    gh.run_visible_after = 60  # and the portal's own look for the run finds nothing
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert (request.status, request.run_id) == ("dispatched", None)
    run_id = gh.runs[0]["id"]
    gh.advance_run(run_id)
    assert replay(client, gh.deliveries[-1]).status_code == 200
    request.refresh_from_db()
    assert (request.status, request.run_id) == ("in_progress", run_id)
    assert request.run_url == gh.run(run_id)["html_url"]


@pytest.mark.parametrize("signature", ["", "sha256=" + "0" * 64, sign(b"other body"), "sha1=abc", "sha256=é"])
def test_missing_or_bad_signature_is_401_and_changes_nothing(gh, client, deployed, signature):
    gh.complete_run(deployed.run_id)
    payload = gh.deliveries[-1].payload
    response = post_event(client, payload, signature=signature)
    assert response.status_code == 401
    deployed.refresh_from_db()
    assert deployed.status == "dispatched"
    assert not WebhookDelivery.objects.exists()


def test_signature_with_another_secret_is_401(gh, client, deployed):
    gh.complete_run(deployed.run_id)
    body = gh.deliveries[-1].body
    response = post_event(client, {}, body=body, signature=sign(body, "not-the-secret"))
    assert response.status_code == 401


def test_unconfigured_secret_is_503_with_reason(gh, client, settings):
    settings.GITHUB_WEBHOOK_SECRET = ""
    response = post_event(client, EXAMPLES[1])
    assert response.status_code == 503
    assert "GITHUB_WEBHOOK_SECRET" in response.json()["message"]


def test_oversize_body_is_413(gh, client):
    body = b"{" + b" " * (1024 * 1024 + 1) + b"}"
    assert post_event(client, {}, body=body).status_code == 413


def test_ping_is_200(gh, client):
    assert post_event(client, {"zen": "Keep it logically awesome."}, event="ping").status_code == 200


def test_unknown_run_is_202_and_changes_nothing(gh, client, deployed):
    response = post_event(client, EXAMPLES[1])
    assert response.status_code == 202
    assert DeploymentRequest.objects.get().status == "dispatched"


def test_webhook_needs_no_login_or_csrf(gh, client):
    client.handler.enforce_csrf_checks = True
    assert post_event(client, EXAMPLES[1]).status_code == 202


@pytest.mark.parametrize(
    ("example", "status", "conclusion"),
    [(0, "queued", ""), (1, "completed", "success"), (3, "queued", ""), (4, "completed", "action_required")],
)
def test_githubs_example_payloads_are_accepted(gh, client, deployed, settings, example, status, conclusion):
    payload = copy.deepcopy(EXAMPLES[example])
    run = payload["workflow_run"]
    # The portal configured for the example's repository, workflow and branch; the examples are
    # of repository_dispatch runs (and the oldest has no path), ours are dispatched by hand.
    settings.GH_REPO = run["repository"]["full_name"]
    settings.DEPLOY_WORKFLOW, settings.DEPLOY_REF = "test.yml", run["head_branch"]
    run.update(event="workflow_dispatch", path=".github/workflows/test.yml")
    DeploymentRequest.objects.filter(pk=deployed.pk).update(run_id=run["id"])
    run_url = deployed.run_url
    response = post_event(client, payload)
    assert response.status_code == 200
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == (status, conclusion)
    assert deployed.run_url == run_url  # a request's run link is never rewritten


def test_completion_releases_the_pod_lock(gh, client, deployer_client, deployed):
    gh.complete_run(deployed.run_id)
    replay(client, gh.deliveries[-1])
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD, instance_type="t3.xlarge"))
    assert response.status_code == 302
    assert DeploymentRequest.objects.count() == 2


def test_run_id_seen_before_on_another_github_host_neither_breaks_deploy_nor_webhook(
    gh, client, deployer_client, deployed
):
    # A request from when the portal talked to another GitHub host holds the next run id.
    old = make_request(
        deployed.requested_by, customer="globex", status="completed", run_id=deployed.run_id + 1
    )
    response = deployer_client.post(
        "/deploy/", form(EDIT_ACME_PROD, customer="initech", instance_name="i-web")
    )
    new = DeploymentRequest.objects.get(customer="initech")
    assert response.status_code == 302
    assert new.run_id == old.run_id
    gh.advance_run(new.run_id)
    assert replay(client, gh.deliveries[-1]).status_code == 200
    new.refresh_from_db()
    old.refresh_from_db()
    assert (new.status, old.status) == ("in_progress", "completed")


def test_run_of_a_dispatch_reported_failed_is_followed_when_it_appears(gh, client, deployer_client):
    gh.add_fault("POST", r"/dispatches$", status=502, times=1)
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert request.status == "dispatch_failed"
    # The run GitHub created after all: dispatched here straight at the emulator, same inputs.
    http.post(
        f"{gh.api_url}/repos/demo/pods/actions/workflows/deploy-pod.yml/dispatches",
        json={"ref": "main", "inputs": request.inputs},
        headers={"Authorization": "token test-token"},
        timeout=5,
    )
    [run] = gh.runs
    gh.advance_run(run["id"])
    assert replay(client, gh.deliveries[-1]).status_code == 200
    request.refresh_from_db()
    assert (request.status, request.run_id, request.completed_at) == ("in_progress", run["id"], None)
