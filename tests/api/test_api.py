"""/api/v1/ against the GitHub emulator over HTTP: token authentication, the deploy form's rules,
lock and idempotency, JSON errors with the seed's error types, and events attributed to the
token's user."""

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from api.models import ApiToken, digest
from deployments import services
from deployments.models import DeploymentRequest
from fakegithub._git import blob_sha
from tests.api.conftest import ApiClient, token_for
from tests.helpers import EDIT_ACME_PROD, dispatches, form

ACME_PROD = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.large",
    "waf_enabled": True,
}
NEW_HOOLI = {
    "customer": "hooli",
    "environment": "prod",
    "instance_name": "hooli-prod-web",
    "instance_type": "t3.small",
}


def error(response) -> tuple[int, str]:
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()["error_type"]


# --- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer pdp_not-a-token", "Bearer", "Basic dXNlcjpwdw=="])
def test_without_a_valid_token_every_endpoint_is_401_json(gh, header, deployer):
    client = ApiClient(None)
    headers = {"Authorization": header} if header else {}
    for response in (
        client.get("/api/v1/pods/", **headers),
        client.post("/api/v1/requests/", ACME_PROD, **headers),
    ):
        assert error(response) == (401, "forbidden")
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert dispatches(gh) == []


def test_revoked_and_expired_tokens_are_refused(gh, deployer):
    revoked, expired = (
        token_for(deployer),
        token_for(deployer, expires_at=timezone.now() - dt.timedelta(seconds=1)),
    )
    ApiToken.objects.filter(digest=digest(revoked)).update(revoked_at=timezone.now())
    for token in (revoked, expired):
        response = ApiClient(token).get("/api/v1/pods/")
        assert error(response) == (401, "forbidden")
        assert "revoked or has expired" in response.json()["message"]


def test_token_of_a_deactivated_user_is_refused(gh, deployer):
    client = ApiClient(token_for(deployer))
    deployer.is_active = False
    deployer.save()
    assert error(client.get("/api/v1/pods/")) == (401, "forbidden")


def test_only_the_digest_is_stored_and_last_use_is_recorded(gh, deployer):
    token = token_for(deployer)
    row = ApiToken.objects.get()
    assert row.digest == digest(token) and token not in (row.digest, row.hint) and token.startswith(row.hint)
    assert row.last_used_at is None
    assert ApiClient(token).get("/api/v1/pods/").status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


# --- reading -------------------------------------------------------------------------------------


def test_pods_list_with_last_deployment(gh, api_deployer):
    created = api_deployer.post("/api/v1/requests/", ACME_PROD).json()
    response = api_deployer.get("/api/v1/pods/")
    assert response.status_code == 200
    body = response.json()
    pods = {f"{p['customer']}/{p['environment']}": p for p in body["pods"]}
    assert pods["acme/prod"]["spec"]["instance_type"] == "t3.medium"
    assert pods["acme/prod"]["last_deployment"]["id"] == created["id"]
    assert pods["acme/prod"]["last_deployment"]["requested_by"] == "dana"
    assert pods["acme/staging"]["last_deployment"] is None
    assert body["truncated"] is False and "t3.large" in body["allowed_instance_types"]


def test_get_a_pod_and_an_unknown_pod(gh, api_viewer):
    pod = api_viewer.get("/api/v1/pods/acme/prod/").json()
    assert pod["spec"] == {
        "customer": "acme", "environment": "prod", "instance_name": "acme-prod-web",
        "instance_type": "t3.medium", "waf_enabled": True,
    }  # fmt: skip
    response = api_viewer.get("/api/v1/pods/nobody/prod/")
    assert error(response) == (404, "not_found")
    assert response.json()["message"] == "Pod nobody/prod does not exist."
    assert error(api_viewer.get("/api/v1/requests/999/")) == (404, "not_found")


# --- creating a deployment request ---------------------------------------------------------------


def test_create_dispatches_what_the_form_would_and_records_the_token_user(gh, api_deployer, deployer):
    key = str(uuid.uuid4())
    response = api_deployer.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": key})
    assert response.status_code == 201
    body = response.json()
    request = DeploymentRequest.objects.get()
    assert response["Location"] == f"/api/v1/requests/{request.pk}/"
    assert body["id"] == request.pk and body["status"] == "dispatched" and body["run_url"]
    assert body["requested_by"] == "dana" and body["idempotency_key"] == key
    [sent] = dispatches(gh)
    assert sent.json["inputs"] == {
        "customer": "acme", "environment": "prod", "instance_name": "acme-prod-web",
        "instance_type": "t3.large", "waf_enabled": "true", "request_id": key, "action": "deploy",
        "expected_spec_sha": blob_sha(request.spec_before.encode()),
    }  # fmt: skip
    events = body["events"]
    assert [(e["source"], e["actor"], e["to_status"]) for e in events] == [
        ("api", "dana", "pending"),
        ("api", "dana", "dispatched"),
    ]
    assert request.events.filter(source="api", actor=deployer).count() == 2


def test_form_and_api_send_the_same_inputs(gh, deployer_client, api_deployer, deployer):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    services.deployment_request_release(request=DeploymentRequest.objects.get(), user=deployer, reason="test")
    api_deployer.post("/api/v1/requests/", ACME_PROD)
    web, api = (s.json["inputs"] for s in dispatches(gh))
    assert {k: v for k, v in web.items() if k != "request_id"} == {
        k: v for k, v in api.items() if k != "request_id"
    }


def test_same_idempotency_key_deploys_once(gh, api_deployer):
    key = str(uuid.uuid4())
    first = api_deployer.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": key})
    again = api_deployer.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200), (first.content, again.content)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(dispatches(gh)) == 1 and DeploymentRequest.objects.count() == 1


def test_same_idempotency_key_with_other_values_is_409(gh, api_deployer):
    key = str(uuid.uuid4())
    first = api_deployer.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": key})
    other = api_deployer.post(
        "/api/v1/requests/", {**ACME_PROD, "instance_type": "t3.xlarge"}, **{"Idempotency-Key": key}
    )
    assert error(other) == (409, "conflict")
    assert other.json()["request"]["id"] == first.json()["id"]
    assert len(dispatches(gh)) == 1


def test_another_users_idempotency_key_is_409(gh, api_deployer, lead, api_lead):
    key = str(uuid.uuid4())
    api_deployer.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": key})
    assert error(api_lead.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": key})) == (
        409,
        "conflict",
    )


def test_malformed_idempotency_key_is_400(gh, api_deployer):
    response = api_deployer.post("/api/v1/requests/", ACME_PROD, **{"Idempotency-Key": "again"})
    assert error(response) == (400, "validation")
    assert response.json()["errors"] == {"Idempotency-Key": ["Must be a UUID."]}
    assert dispatches(gh) == []


def test_locked_pod_is_409_naming_the_holder(gh, api_deployer):
    holder = api_deployer.post("/api/v1/requests/", ACME_PROD).json()
    response = api_deployer.post("/api/v1/requests/", {**ACME_PROD, "instance_type": "t3.xlarge"})
    assert error(response) == (409, "conflict")
    assert response.json()["title"] == "Deployment in progress"
    assert response.json()["holder"]["id"] == holder["id"]
    assert len(dispatches(gh)) == 1


@pytest.mark.parametrize(
    ("values", "field", "text"),
    [
        ({"instance_type": "m5.24xlarge"}, "instance_type", "m5.24xlarge"),
        ({"instance_name": "Bad Name!"}, "instance_name", ""),
        ({"customer": "../etc"}, "customer", ""),
        ({"waf_enabled": "maybe"}, "waf_enabled", "valid boolean"),
        ({"instance_name": None}, "instance_name", "may not be null"),
        ({"mode": "delete"}, "mode", "not a valid choice"),
    ],
)
def test_invalid_values_are_400_per_field_by_the_forms_rules(gh, api_deployer, values, field, text):
    response = api_deployer.post("/api/v1/requests/", {**ACME_PROD, **values})
    assert error(response) == (400, "validation")
    assert text in " ".join(response.json()["errors"][field])
    assert dispatches(gh) == [] and not DeploymentRequest.objects.exists()


def test_missing_fields_and_non_json_are_400(gh, api_deployer):
    response = api_deployer.post("/api/v1/requests/", {"customer": "acme"})
    assert error(response) == (400, "validation")
    assert set(response.json()["errors"]) == {"environment", "instance_name", "instance_type"}
    response = api_deployer.client.post(
        "/api/v1/requests/",
        "customer=acme",
        content_type="application/x-www-form-urlencoded",
        headers=api_deployer.headers,
    )
    assert error(response) == (415, "validation")


def test_new_pod_that_exists_is_409_and_edit_of_unknown_pod_is_404(gh, api_deployer):
    assert error(api_deployer.post("/api/v1/requests/", {**ACME_PROD, "mode": "new"})) == (409, "conflict")
    response = api_deployer.post("/api/v1/requests/", {**NEW_HOOLI, "mode": "edit"})
    assert error(response) == (404, "not_found")
    assert response.json()["message"] == "Pod hooli/prod does not exist."
    assert dispatches(gh) == []


def test_new_pod_without_mode_is_created(gh, api_deployer):
    response = api_deployer.post("/api/v1/requests/", NEW_HOOLI)
    assert response.status_code == 201 and response.json()["mode"] == "new"
    [sent] = dispatches(gh)
    assert sent.json["inputs"]["customer"] == "hooli"


def test_unchanged_values_are_400_nothing_to_deploy(gh, api_deployer):
    response = api_deployer.post("/api/v1/requests/", {**ACME_PROD, "instance_type": "t3.medium"})
    assert error(response) == (400, "validation")
    assert response.json()["title"] == "Nothing to Deploy"


def test_viewer_token_cannot_deploy(gh, api_viewer):
    response = api_viewer.post("/api/v1/requests/", ACME_PROD)
    assert error(response) == (403, "forbidden")
    assert "Deployers group" in response.json()["message"]
    assert dispatches(gh) == []


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ({"status": 422, "body": {"message": 'Unexpected inputs provided: ["x"]'}}, 422, "validation"),
        ({"status": 403, "body": {"message": "Resource not accessible by integration"}}, 403, "forbidden"),
        ({"status": 502}, 503, "api_error"),
    ],
)
def test_github_refusal_is_json_with_the_recorded_request(gh, api_deployer, fault, status, error_type):
    gh.add_fault("POST", r"/dispatches$", **fault)
    response = api_deployer.post("/api/v1/requests/", ACME_PROD)
    assert error(response) == (status, error_type)
    request = DeploymentRequest.objects.get()
    assert response.json()["request"] == {
        "id": request.pk,
        "status": "dispatch_failed",
        "url": f"/api/v1/requests/{request.pk}/",
    }
    assert len(dispatches(gh)) == 1  # never retried


def test_get_request_shows_status_runs_and_events(gh, api_deployer, api_viewer):
    created = api_deployer.post("/api/v1/requests/", ACME_PROD).json()
    body = api_viewer.get(f"/api/v1/requests/{created['id']}/").json()
    assert body["status"] == "dispatched" and body["run_url"].startswith("http")
    assert body["page_url"] == f"http://testserver/requests/{created['id']}/"
    assert body["plan_summary"] is None and body["spec_after"].startswith("customer: acme")
    assert [e["actor"] for e in body["events"]] == ["dana", "dana"]


# --- the OpenAPI description ---------------------------------------------------------------------


def test_openapi_description_is_served_and_valid(db, client):
    from openapi_spec_validator import validate

    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert set(document["paths"]) >= {
        "/api/v1/pods/", "/api/v1/pods/{customer}/{environment}/", "/api/v1/requests/",
        "/api/v1/requests/{id}/", "/api/v1/requests/{id}/approve/", "/api/v1/requests/{id}/reject/",
    }  # fmt: skip
    create = document["paths"]["/api/v1/requests/"]["post"]
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key"}
    assert {"201", "200", "400", "401", "403", "404", "409", "422", "503"} <= set(create["responses"])
    assert document["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"


def test_api_user_is_the_token_owner_not_a_session(gh, deployer_client):
    # A signed-in browser session is not an API credential (no CSRF-able writes).
    response = deployer_client.post("/api/v1/requests/", ACME_PROD, content_type="application/json")
    assert error(response) == (401, "forbidden")
    assert dispatches(gh) == []


def test_expected_spec_sha_refuses_to_overwrite_a_change_made_since(gh, api_deployer):
    read = api_deployer.get("/api/v1/pods/acme/prod/").json()["sha"]
    gh.put_file(
        "pods/acme/prod/spec.yml", gh.files["pods/acme/prod/spec.yml"].replace("t3.medium", "t3.small")
    )
    response = api_deployer.post("/api/v1/requests/", {**ACME_PROD, "expected_spec_sha": read})
    assert error(response) == (409, "conflict")
    body = response.json()
    assert body["title"] == "Spec Changed" and body["expected_spec_sha"] == read
    assert body["current_spec_sha"] != read
    assert dispatches(gh) == []
    fresh = api_deployer.get("/api/v1/pods/acme/prod/").json()["sha"]
    assert fresh == body["current_spec_sha"]
    assert (
        api_deployer.post("/api/v1/requests/", {**ACME_PROD, "expected_spec_sha": fresh}).status_code == 201
    )


def test_list_requests_newest_first_with_the_history_pages_filters(gh, api_deployer, api_viewer):
    first = api_deployer.post("/api/v1/requests/", ACME_PROD).json()
    second = api_deployer.post("/api/v1/requests/", NEW_HOOLI).json()
    listed = api_viewer.get("/api/v1/requests/").json()["requests"]
    assert [r["id"] for r in listed] == [second["id"], first["id"]]
    assert listed[0]["pod"] == "hooli/prod" and listed[0]["url"].endswith(f"/api/v1/requests/{second['id']}/")
    assert [r["id"] for r in api_viewer.get("/api/v1/requests/?pod=acme/prod").json()["requests"]] == [
        first["id"]
    ]
    assert api_viewer.get("/api/v1/requests/?user=nobody").json()["requests"] == []
    assert len(api_viewer.get("/api/v1/requests/?limit=1").json()["requests"]) == 1
    assert error(api_viewer.get("/api/v1/requests/?limit=0")) == (400, "validation")
