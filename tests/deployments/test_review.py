"""Review before apply: plan → (approval) → apply as one request with one lock (issue 13).

Runs against the emulator over HTTP with the shipped policy (every pod reviewed, prod approved):
the emulated workflow plans without committing, leaves the plan summary as an artifact, and
applies exactly the saved plan.
"""

import datetime as dt

import pytest
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from deployments.models import DeploymentRequest
from deployments.services import deployment_requests_sync
from tests.helpers import EDIT_ACME_PROD, dispatches, form, logged_in_client, make_user, replay

# Real transactions: the plan summary is read after the webhook's transaction commits.
pytestmark = [pytest.mark.usefixtures("review_flow"), pytest.mark.django_db(transaction=True)]

STAGING = {
    "customer": "acme",
    "environment": "staging",
    "instance_name": "acme-staging-web",
    "instance_type": "t3.medium",
    "mode": "edit",
}


@pytest.fixture
def lead(db):
    return make_user(username="lead", deployer=True, approver=True)


def deliver(client, gh, since: int = 0) -> int:
    """Send the emulator's webhook deliveries from ``since`` on; returns the new position."""
    deliveries = gh.deliveries
    for delivery in deliveries[since:]:
        assert replay(client, delivery).status_code in (200, 202)
    return len(deliveries)


def plan(client, gh, values: dict) -> DeploymentRequest:
    """Submit the form and let the plan run finish (webhooks delivered)."""
    response = client.post("/deploy/", form(values))
    assert response.status_code == 302
    request = DeploymentRequest.objects.latest("pk")
    assert request.status == "planning"
    gh.complete_run(request.run_id)
    deliver(client, gh)
    request.refresh_from_db()
    return request


def test_preview_offers_a_plan_that_names_the_pod(gh, deployer_client):
    response = deployer_client.post("/deploy/preview/", form(STAGING))
    assert response.context["inputs"]["action"] == "plan"
    assertContains(response, "Plan deployment of acme/staging")
    assertContains(response, "you review the plan, then apply it")


def test_deploy_dispatches_a_plan_that_commits_nothing(gh, deployer_client):
    spec_before = gh.files["pods/acme/staging/spec.yml"]
    response = deployer_client.post("/deploy/", form(STAGING))
    request = DeploymentRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/requests/{request.pk}/"
    [sent] = dispatches(gh)
    assert sent.json["inputs"]["action"] == "plan"
    assert request.status == "planning" and request.flow == "review"
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, "Planning: acme/staging")
    assertContains(page, "the plan appears here when the plan run finishes")
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh)
    assert gh.files["pods/acme/staging/spec.yml"] == spec_before
    request.refresh_from_db()
    assert request.status == "planned"
    assert request.plan_run_id == sent_run_id(gh, 0) and request.run_id is None
    assert request.expires_at is not None


def sent_run_id(gh, index: int) -> int:
    return gh.runs[index]["id"]


def test_planned_request_shows_the_plan_read_in_three_requests_once(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    artifact_calls = [r for r in gh.requests if "artifact" in r.path]
    assert len(artifact_calls) <= 3
    assert request.plan_summary["resources"]
    gh.clear_requests()
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, "Plan ready for review: acme/staging")
    assertContains(page, "0 to add, 1 to change, 0 to replace, 0 to destroy")
    assertContains(page, "<code>instance_type</code>: t3.small → t3.medium", html=True)
    assertContains(page, "Apply this plan to acme/staging")
    assertNotContains(page, "replaces or destroys")
    assertNotContains(page, 'http-equiv="refresh"')  # nothing runs: no reloads under the reviewer
    assert gh.requests == []  # the page reads the database, not GitHub
    assert request.events.filter(message__startswith="Plan: 0 to add, 1 to change").count() == 1


def test_apply_dispatches_the_saved_plan_and_commits_the_spec(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    plan_run = request.plan_run_id
    position = len(gh.deliveries)
    response = deployer_client.post(f"/requests/{request.pk}/apply/")
    assert response.status_code == 302
    sent = dispatches(gh)[-1]
    assert sent.json["inputs"]["action"] == "apply"
    assert sent.json["inputs"]["plan_run_id"] == str(plan_run)
    request.refresh_from_db()
    assert request.status == "dispatched" and request.applied_by.username == "dana"
    assert request.run_id != plan_run
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh, position)
    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "success")
    assert "instance_type: t3.medium" in gh.files["pods/acme/staging/spec.yml"]
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, 'id="plan-run-link"')
    assertContains(page, "Apply run:")
    assert len(dispatches(gh)) == 2


def test_two_applies_dispatch_once(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    assert deployer_client.post(f"/requests/{request.pk}/apply/").status_code == 302
    again = deployer_client.post(f"/requests/{request.pk}/apply/")
    assert again.status_code == 409
    assertContains(again, "already being applied", status_code=409)
    assert len(dispatches(gh)) == 2  # the plan and one apply


def test_pod_stays_locked_from_plan_to_the_end_of_apply(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    other = deployer_client.post("/deploy/", form(STAGING, instance_type="t3.large"))
    assert other.status_code == 409
    deployer_client.post(f"/requests/{request.pk}/apply/")
    other = deployer_client.post("/deploy/", form(STAGING, instance_type="t3.large"))
    assert other.status_code == 409
    assert len(dispatches(gh)) == 2


def test_someone_else_cannot_apply_or_cancel_a_plan(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    other = logged_in_client(make_user(username="olga", deployer=True))
    response = other.post(f"/requests/{request.pk}/apply/")
    assert response.status_code == 403
    assertContains(
        response, "Only dana (who requested it) or an Approver can apply this plan", status_code=403
    )
    assert other.post(f"/requests/{request.pk}/cancel/").status_code == 403
    request.refresh_from_db()
    assert request.status == "planned"


def test_requester_cancels_a_plan_and_the_pod_is_free(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    assert deployer_client.post(f"/requests/{request.pk}/cancel/").status_code == 302
    request.refresh_from_db()
    assert request.status == "cancelled"
    assert deployer_client.post(f"/requests/{request.pk}/apply/").status_code == 409
    assert deployer_client.post("/deploy/", form(STAGING)).status_code == 302


def test_plan_not_applied_in_time_expires_and_frees_the_pod(gh, deployer_client, settings):
    request = plan(deployer_client, gh, STAGING)
    DeploymentRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    response = deployer_client.post(f"/requests/{request.pk}/apply/")
    assert response.status_code == 409
    assertContains(response, f"was not applied within {settings.PLAN_TTL_MINUTES} minutes", status_code=409)
    request.refresh_from_db()
    assert request.status == "expired" and request.failed
    assert len(dispatches(gh)) == 1


def test_sync_expires_old_plans_without_asking_github(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    gh.clear_requests()
    assert deployment_requests_sync()["checked"] == 1
    assert gh.requests == []  # a plan waiting for a person costs no GitHub call
    DeploymentRequest.objects.filter(pk=request.pk).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    assert deployment_requests_sync()["expired"] == 1
    assert DeploymentRequest.objects.get(pk=request.pk).status == "expired"


def test_destructive_plan_is_shown_with_a_loud_warning(gh, deployer_client):
    request = plan(deployer_client, gh, {**EDIT_ACME_PROD, "instance_type": "t3.medium", "waf_enabled": ""})
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, "This plan replaces or destroys resources.")
    assertContains(page, "0 to add, 0 to change, 0 to replace, 5 to destroy")


def test_failed_plan_ends_the_request_and_applies_nothing(gh, deployer_client):
    deployer_client.post("/deploy/", form(STAGING))
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id, conclusion="failure")
    deliver(deployer_client, gh)
    request.refresh_from_db()
    assert (request.status, request.conclusion, request.error_type) == ("completed", "failure", "plan_failed")
    assertContains(deployer_client.get(f"/requests/{request.pk}/"), "nothing was applied")


def test_late_events_of_the_plan_run_do_not_touch_the_apply(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    plan_run = request.plan_run_id
    deployer_client.post(f"/requests/{request.pk}/apply/")
    request.refresh_from_db()
    apply_run, events = request.run_id, request.events.count()
    for delivery in gh.deliveries:  # the plan run's deliveries again, as redeliveries (new ids)
        if delivery.payload["workflow_run"]["id"] == plan_run:
            delivery.headers["X-GitHub-Delivery"] += "-again"
            assert replay(deployer_client, delivery).json() == {"message": "No change."}
    request.refresh_from_db()
    assert (request.run_id, request.plan_run_id, request.status) == (apply_run, plan_run, "dispatched")
    assert request.events.count() == events


def test_apply_after_the_spec_moved_overwrites_nothing(gh, deployer_client):
    # The apply run checks the spec.yml the operator saw (expected_spec_sha) before anything
    # else, so a change merged between plan and apply is refused as such (the saved plan's own
    # stale check comes next: tests/fakegithub/test_plan_apply.py, tests/infra).
    request = plan(deployer_client, gh, STAGING)
    moved = gh.files["pods/acme/staging/spec.yml"].replace("t3.small", "t3.large")
    gh.put_file("pods/acme/staging/spec.yml", moved, message="Direct change")
    position = len(gh.deliveries)
    deployer_client.post(f"/requests/{request.pk}/apply/")
    request.refresh_from_db()
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh, position)
    request.refresh_from_db()
    assert (request.conclusion, request.error_type) == ("failure", "spec_changed")
    assert gh.files["pods/acme/staging/spec.yml"] == moved  # nothing overwritten
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, "Deployment failed: acme/staging")
    assertContains(page, "spec.yml changed since you opened it")


def test_protected_branch_refusal_is_told_in_words(gh, deployer_client):
    request = plan(deployer_client, gh, STAGING)
    gh.branch_protection = {}
    position = len(gh.deliveries)
    deployer_client.post(f"/requests/{request.pk}/apply/")
    request.refresh_from_db()
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh, position)
    request.refresh_from_db()
    assert (request.conclusion, request.error_type) == ("failure", "protected_branch")
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(
        page, "GitHub refused the commit of spec.yml: the branch is protected. Nothing was applied."
    )
    assertContains(page, "DEPLOY_APP_ID")
    assert "t3.medium" not in gh.files["pods/acme/staging/spec.yml"]


# --- approval --------------------------------------------------------------------------------


def test_production_plan_waits_for_an_approver(gh, deployer_client):
    request = plan(deployer_client, gh, EDIT_ACME_PROD)
    assert request.status == "awaiting_approval" and request.approval_required
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, "Waiting for approval: acme/prod")
    assertContains(page, "You requested this deployment: another Approver must approve it.")
    assertNotContains(page, "Apply this plan")
    response = deployer_client.post(f"/requests/{request.pk}/apply/")
    assert response.status_code == 403


def test_self_approval_is_refused(gh, lead):
    client = logged_in_client(lead)
    request = plan(client, gh, EDIT_ACME_PROD)
    response = client.post(f"/requests/{request.pk}/approve/", {"comment": "lgtm"})
    assert response.status_code == 403
    assertContains(response, "you cannot approve or reject it yourself", status_code=403)
    request.refresh_from_db()
    assert request.status == "awaiting_approval"
    assert len(dispatches(gh)) == 1


def test_a_deployer_who_is_not_an_approver_cannot_approve(gh, deployer_client):
    request = plan(deployer_client, gh, EDIT_ACME_PROD)
    other = logged_in_client(make_user(username="olga", deployer=True))
    response = other.post(f"/requests/{request.pk}/approve/")
    assert response.status_code == 403
    assertContains(response, "Only members of the Approvers group", status_code=403)


def test_approval_by_another_person_dispatches_the_apply(gh, deployer_client, lead):
    request = plan(deployer_client, gh, EDIT_ACME_PROD)
    approver = logged_in_client(lead)
    page = approver.get(f"/requests/{request.pk}/")
    assertContains(page, "Approve and apply to acme/prod")
    assertContains(page, "1 to change")
    position = len(gh.deliveries)
    response = approver.post(f"/requests/{request.pk}/approve/", {"comment": "Looks right"})
    assert response.status_code == 302
    sent = dispatches(gh)[-1]
    assert sent.json["inputs"]["action"] == "apply"
    request.refresh_from_db()
    assert request.status == "dispatched"
    assert (request.reviewed_by, request.applied_by, request.requested_by.username) == (lead, lead, "dana")
    gh.complete_run(request.run_id)
    deliver(approver, gh, position)
    request.refresh_from_db()
    assert request.conclusion == "success"
    assert "instance_type: t3.large" in gh.files["pods/acme/prod/spec.yml"]
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(page, "Approved by lead")
    assertContains(page, "“Looks right”")
    moves = [(e.to_status, e.actor.username if e.actor else None) for e in request.events.all() if e.is_move]
    assert ("approved", "lead") in moves and ("dispatched", "lead") in moves


def test_reject_needs_a_reason_and_frees_the_pod(gh, deployer_client, lead):
    request = plan(deployer_client, gh, EDIT_ACME_PROD)
    approver = logged_in_client(lead)
    response = approver.post(f"/requests/{request.pk}/reject/", {"comment": "  "})
    assert response.status_code == 400
    assertContains(response, "Say why the plan is rejected", status_code=400)
    assert approver.post(f"/requests/{request.pk}/reject/", {"comment": "Wrong size"}).status_code == 302
    request.refresh_from_db()
    assert request.status == "rejected" and request.review_comment == "Wrong size"
    assertContains(deployer_client.get(f"/requests/{request.pk}/"), "Rejected by lead")
    assert approver.post(f"/requests/{request.pk}/approve/").status_code == 409
    assert len(dispatches(gh)) == 1
    assert deployer_client.post("/deploy/", form(EDIT_ACME_PROD)).status_code == 302


def test_auto_apply_environments_deploy_in_one_run(gh, deployer_client, settings):
    settings.AUTO_APPLY_ENVIRONMENTS = ["stag*"]
    deployer_client.post("/deploy/", form(STAGING))
    [sent] = dispatches(gh)
    assert sent.json["inputs"]["action"] == "deploy"
    assert DeploymentRequest.objects.get().status == "dispatched"


def test_approval_is_kept_even_where_auto_apply_is_asked(gh, deployer_client, settings):
    settings.AUTO_APPLY_ENVIRONMENTS = ["*"]
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    [sent] = dispatches(gh)
    assert sent.json["inputs"]["action"] == "plan"


def test_run_held_by_a_github_environment_is_not_closed_as_stale(gh, deployer_client, settings):
    gh.environment_reviewers = True
    request = plan(deployer_client, gh, STAGING)
    deployer_client.post(f"/requests/{request.pk}/apply/")
    request.refresh_from_db()
    gh.advance_run(request.run_id)
    deliver(deployer_client, gh)
    deployment_requests_sync()
    request.refresh_from_db()
    assert request.status == "waiting"
    assertContains(deployer_client.get(f"/requests/{request.pk}/"), "Waiting for review on GitHub")
    long_ago = timezone.now() - dt.timedelta(minutes=settings.RUN_STALE_AFTER_MINUTES + 5)
    DeploymentRequest.objects.filter(pk=request.pk).update(created_at=long_ago, dispatched_at=long_ago)
    assert deployment_requests_sync()["stale"] == 0
    request.refresh_from_db()
    assert request.status == "waiting"


def test_admin_shows_who_reviewed_and_the_plan_run(gh, deployer_client, lead, admin_client):
    request = plan(deployer_client, gh, EDIT_ACME_PROD)
    logged_in_client(lead).post(f"/requests/{request.pk}/approve/", {"comment": "ok"})
    page = admin_client.get(f"/admin/deployments/deploymentrequest/{request.pk}/change/")
    assertContains(page, f">#{request.plan_run_id}</a>")
    assertContains(page, "lead")
    export = admin_client.post(
        "/admin/deployments/deploymentrequest/", {"action": "export_csv", "_selected_action": [request.pk]}
    )
    header, row = export.content.decode().splitlines()[:2]
    assert "reviewed_by" in header and "applied_by" in header
    assert row.count("lead") == 2


def test_a_failed_plan_re_run_on_github_does_not_reopen_the_request(gh, deployer_client):
    deployer_client.post("/deploy/", form(STAGING))
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id, conclusion="failure")
    position = deliver(deployer_client, gh)
    gh.rerun(request.run_id)
    gh.complete_run(request.run_id)
    deliver(deployer_client, gh, position)
    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "failure")
    assert request.events.filter(message__contains="was re-run on GitHub (attempt 2)").count() == 1
    assert len(dispatches(gh)) == 1
