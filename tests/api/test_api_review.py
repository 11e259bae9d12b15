"""Review before apply through the API, with the shipped policy (every pod planned, prod
approved by another Approver): the request page's rules and events, as JSON."""

import pytest

from deployments.models import DeploymentRequest
from tests.api.conftest import ApiClient, token_for
from tests.helpers import dispatches, make_user, replay

# Real transactions: the plan summary is read after the webhook's transaction commits.
pytestmark = [pytest.mark.usefixtures("review_flow"), pytest.mark.django_db(transaction=True)]

ACME_PROD = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.large",
}
ACME_STAGING = {**ACME_PROD, "environment": "staging", "instance_name": "acme-staging-web"}


def planned(client: ApiClient, gh, values: dict) -> dict:
    """Request a deployment through the API and let its plan run finish (webhooks delivered)."""
    created = client.post("/api/v1/requests/", values)
    assert created.status_code == 201 and created.json()["status"] == "planning"
    gh.complete_run(created.json()["run_id"])
    for delivery in gh.deliveries:
        assert replay(client.client, delivery).status_code in (200, 202)
    return client.get(f"/api/v1/requests/{created.json()['id']}/").json()


def test_production_plan_waits_for_another_approver_then_applies(gh, api_deployer, api_lead):
    request = planned(api_deployer, gh, ACME_PROD)
    assert request["status"] == "awaiting_approval" and request["approval_required"]
    assert request["plan_summary"]["counts"]["update"] == 1
    assert request["plan_summary"]["headline"].startswith("0 to add, 1 to change, 0 to replace")
    assert "update" in {r["action"] for r in request["plan_summary"]["resources"]}
    assert request["plan_run_url"].startswith("http")
    pk = request["id"]
    response = api_deployer.post(f"/api/v1/requests/{pk}/apply/")
    assert response.status_code == 403 and response.json()["title"] == "Approval required"

    response = api_lead.post(f"/api/v1/requests/{pk}/approve/", {"comment": "Looks right"})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["reviewed_by"], body["applied_by"]) == ("dispatched", "lead", "lead")
    assert dispatches(gh)[-1].json["inputs"]["action"] == "apply"
    moves = [
        (e["to_status"], e["source"], e["actor"])
        for e in body["events"]
        if e["from_status"] != e["to_status"]
    ]
    assert ("approved", "api", "lead") in moves and ("dispatched", "api", "lead") in moves
    assert moves[0] == ("pending", "api", "dana")


def test_self_approval_and_non_approvers_are_403(gh, lead, api_lead):
    request = planned(api_lead, gh, ACME_PROD)
    response = api_lead.post(f"/api/v1/requests/{request['id']}/approve/")
    assert response.status_code == 403 and response.json()["error_type"] == "forbidden"
    assert "yourself" in response.json()["message"]
    olga = ApiClient(token_for(make_user(username="olga", deployer=True)))
    response = olga.post(f"/api/v1/requests/{request['id']}/approve/")
    assert response.status_code == 403 and "Approvers group" in response.json()["message"]
    viewer = ApiClient(token_for(make_user(username="vic")))
    assert viewer.post(f"/api/v1/requests/{request['id']}/reject/", {"comment": "no"}).status_code == 403
    assert len(dispatches(gh)) == 1
    assert DeploymentRequest.objects.get().status == "awaiting_approval"


def test_reject_needs_a_reason_then_frees_the_pod(gh, api_deployer, api_lead):
    pk = planned(api_deployer, gh, ACME_PROD)["id"]
    response = api_lead.post(f"/api/v1/requests/{pk}/reject/", {"comment": "  "})
    assert (response.status_code, response.json()["error_type"]) == (400, "validation")
    response = api_lead.post(f"/api/v1/requests/{pk}/reject/", {"comment": "Wrong size"})
    assert response.status_code == 200 and response.json()["status"] == "rejected"
    assert response.json()["review_comment"] == "Wrong size"
    again = api_lead.post(f"/api/v1/requests/{pk}/approve/")
    assert (again.status_code, again.json()["error_type"]) == (409, "conflict")
    assert api_deployer.post("/api/v1/requests/", ACME_PROD).status_code == 201


def test_requester_applies_a_plan_that_needs_no_approval(gh, api_deployer):
    request = planned(api_deployer, gh, ACME_STAGING)
    assert request["status"] == "planned"
    response = api_deployer.post(f"/api/v1/requests/{request['id']}/apply/")
    assert response.status_code == 200 and response.json()["status"] == "dispatched"
    assert [s.json["inputs"]["action"] for s in dispatches(gh)] == ["plan", "apply"]
    assert api_deployer.post(f"/api/v1/requests/{request['id']}/apply/").status_code == 409
    assert len(dispatches(gh)) == 2


def test_cancel_before_the_apply(gh, api_deployer):
    pk = planned(api_deployer, gh, ACME_STAGING)["id"]
    response = api_deployer.post(f"/api/v1/requests/{pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
