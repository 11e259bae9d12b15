"""Every route the emulator serves answers with the shape GitHub's OpenAPI description gives.

The schemas are vendored in tests/fixtures/github_openapi/schemas.json (see extract.py there).
They are OpenAPI 3.0 schemas; ``to_json_schema`` turns ``nullable`` into JSON Schema.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import requests

from fakegithub.state import RunOutcome
from tests.fakegithub.apphelpers import app_jwt, configure_app

SCHEMAS = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "github_openapi" / "schemas.json").read_text()
)
INPUTS = {
    "customer": "acme",
    "environment": "dev",
    "instance_name": "acme-dev",
    "instance_type": "t3.small",
    "waf_enabled": "true",
    "request_id": "req-1",
}


def to_json_schema(node):
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema that also accepts null."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: to_json_schema(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        elif "type" not in node:
            node = {"anyOf": [{"type": "null"}, node]}
    return node


COMPONENTS = to_json_schema(SCHEMAS["components"])


def validator_for(schema: dict) -> jsonschema.Draft202012Validator:
    root = dict(to_json_schema(copy.deepcopy(schema)), components=COMPONENTS)
    return jsonschema.Draft202012Validator(root)


def assert_matches(schema: dict, instance) -> None:
    errors = sorted(validator_for(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def route(key: str) -> dict:
    return SCHEMAS["routes"][key]


@pytest.fixture
def api(fakegithub):
    session = requests.Session()
    session.headers["Authorization"] = "token test-token"

    def call(method: str, path: str, expect: int = 200, **kwargs):
        url = path if path.startswith("http") else fakegithub.api_url + path
        response = session.request(method, url, timeout=5, **kwargs)
        assert response.status_code == expect, response.text
        return response.json() if response.content else None

    yield call
    session.close()


def dispatch(api, expect=200, **extra):
    body = {"ref": "main", "inputs": INPUTS, "return_run_details": True, **extra}
    return api("POST", "/repos/demo/pods/actions/workflows/deploy-pod.yml/dispatches", expect, json=body)


ROUTES = [
    ("/repos/demo/pods", "GET /repos/{owner}/{repo} 200"),
    ("/repos/demo/pods/contents/pods/acme/prod/spec.yml", "GET /repos/{owner}/{repo}/contents/{path} 200"),
    ("/repos/demo/pods/contents/pods?ref=main", "GET /repos/{owner}/{repo}/contents/{path} 200"),
    ("/repos/demo/pods/git/ref/heads/main", "GET /repos/{owner}/{repo}/git/ref/{ref} 200"),
    ("/repos/demo/pods/git/refs/heads/main", "GET /repos/{owner}/{repo}/git/ref/{ref} 200"),
    ("/repos/demo/pods/git/trees/main?recursive=1", "GET /repos/{owner}/{repo}/git/trees/{tree_sha} 200"),
    ("/repos/demo/pods/git/trees/main", "GET /repos/{owner}/{repo}/git/trees/{tree_sha} 200"),
    ("/repos/demo/pods/actions/workflows", "GET /repos/{owner}/{repo}/actions/workflows 200"),
    (
        "/repos/demo/pods/actions/workflows/161335",
        "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id} 200",
    ),
    (
        "/repos/demo/pods/actions/workflows/deploy-pod.yml",
        "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id} 200",
    ),
    (
        "/repos/demo/pods/actions/workflows/deploy-pod.yml/runs?event=workflow_dispatch&branch=main",
        "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs 200",
    ),
    ("/repos/demo/pods/actions/runs?per_page=5", "GET /repos/{owner}/{repo}/actions/runs 200"),
    ("/rate_limit", "GET /rate_limit 200"),
]


@pytest.mark.parametrize(("path", "key"), ROUTES, ids=[p for p, _ in ROUTES])
def test_get_route_matches_github_schema(fakegithub, api, path, key):
    dispatch(api)  # so run lists are not empty
    assert_matches(route(key), api("GET", path))


def test_blob_matches_github_schema(api):
    entry = api("GET", "/repos/demo/pods/contents/pods/acme/prod/spec.yml")
    assert_matches(route("GET /repos/{owner}/{repo}/git/blobs/{file_sha} 200"), api("GET", entry["git_url"]))


def test_dispatch_details_and_run_match_github_schema(fakegithub, api):
    details = dispatch(api)
    assert_matches(
        route("POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches 200"), details
    )
    run_schema = route("GET /repos/{owner}/{repo}/actions/runs/{run_id} 200")
    run = api("GET", f"/repos/demo/pods/actions/runs/{details['workflow_run_id']}")
    assert_matches(run_schema, run)
    assert run["display_title"] == "Deploy acme/dev [req-1]"
    fakegithub.complete_run(details["workflow_run_id"], "success")
    assert_matches(run_schema, api("GET", f"/repos/demo/pods/actions/runs/{details['workflow_run_id']}"))


def test_dispatch_without_details_answers_204_empty(api):
    assert dispatch(api, expect=204, return_run_details=False) is None


def test_error_bodies_match_basic_error(api):
    basic_error = {"$ref": "#/components/schemas/basic-error"}
    assert_matches(basic_error, api("GET", "/repos/demo/nope", expect=404))
    assert_matches(basic_error, dispatch_bad_input(api))


def dispatch_bad_input(api):
    body = {"ref": "main", "inputs": {**INPUTS, "bogus": "x"}}
    return api("POST", "/repos/demo/pods/actions/workflows/deploy-pod.yml/dispatches", expect=422, json=body)


def test_installation_token_matches_github_schema(fakegithub, api):
    key = configure_app(fakegithub)
    token = requests.post(
        f"{fakegithub.api_url}/app/installations/42/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(key)}"},
        timeout=5,
    )
    assert token.status_code == 201, token.text
    assert_matches(route("POST /app/installations/{installation_id}/access_tokens 201"), token.json())


def test_workflow_run_webhooks_match_github_schema(fakegithub, api):
    run_id = dispatch(api)["workflow_run_id"]
    fakegithub.complete_run(run_id, "success")
    actions = [d.action for d in fakegithub.deliveries]
    assert actions == ["requested", "in_progress", "completed"]
    for delivery in fakegithub.deliveries:
        assert_matches(SCHEMAS["webhooks"][f"workflow_run.{delivery.action}"], delivery.payload)


def test_schema_check_can_fail_when_a_required_field_is_missing(api):
    run_schema = route("GET /repos/{owner}/{repo}/actions/runs/{run_id} 200")
    run = api("GET", f"/repos/demo/pods/actions/runs/{dispatch(api)['workflow_run_id']}")
    del run["display_title"]
    with pytest.raises(AssertionError, match="display_title"):
        assert_matches(run_schema, run)
    repo = api("GET", "/repos/demo/pods")
    repo["default_branch"] = None
    with pytest.raises(AssertionError, match="default_branch"):
        assert_matches(route("GET /repos/{owner}/{repo} 200"), repo)


# --- jobs, check-run annotations, the installation ------------------------------------------------

JOBS = "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs 200"


def test_jobs_of_a_run_in_every_state_match_github_schema(fakegithub, api):
    run_id = dispatch(api)["workflow_run_id"]
    assert_matches(route(JOBS), api("GET", f"/repos/demo/pods/actions/runs/{run_id}/jobs"))  # queued
    fakegithub.advance_run(run_id)
    assert_matches(route(JOBS), api("GET", f"/repos/demo/pods/actions/runs/{run_id}/jobs"))  # in progress
    fakegithub.complete_run(
        run_id,
        outcome=RunOutcome(
            conclusion="failure",
            failed_step="Commit spec.yml",
            annotations=[{"title": "Protected branch", "message": "GH006: Protected branch update failed"}],
        ),
    )
    jobs = api("GET", f"/repos/demo/pods/actions/runs/{run_id}/jobs")
    assert_matches(route(JOBS), jobs)
    [job] = jobs["jobs"]
    assert_matches(route("GET /repos/{owner}/{repo}/actions/jobs/{job_id} 200"), api("GET", job["url"]))
    annotations = api("GET", job["check_run_url"] + "/annotations")
    assert_matches(route("GET /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations 200"), annotations)
    assert [a["title"] for a in annotations] == ["Protected branch", ""]


def test_jobs_of_an_earlier_attempt_match_github_schema(fakegithub, api):
    run_id = dispatch(api)["workflow_run_id"]
    fakegithub.complete_run(run_id, "failure")
    fakegithub.rerun(run_id)
    fakegithub.complete_run(run_id, "success")
    first = api("GET", f"/repos/demo/pods/actions/runs/{run_id}/attempts/1/jobs")
    assert_matches(
        route("GET /repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}/jobs 200"), first
    )
    assert [(j["run_attempt"], j["conclusion"]) for j in first["jobs"]] == [(1, "failure")]


def test_installation_matches_github_schema(fakegithub):
    key = configure_app(fakegithub)
    answer = requests.get(
        f"{fakegithub.api_url}/app/installations/42",
        headers={"Authorization": f"Bearer {app_jwt(key)}"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert_matches(route("GET /app/installations/{installation_id} 200"), answer.json())
    assert answer.json()["permissions"] == fakegithub.installation_permissions


def test_sign_in_with_github_answers_match_github_schema(fakegithub):
    """The person, their addresses and teams, as an OAuth app's user token reads them."""
    from tests.fakegithub.test_oauth import APP, CALLBACK, SECRET, authorize, back, exchange

    fakegithub.add_user("lena", "Lena Ott", "lena@example.com")
    fakegithub.add_org("acme", members=["lena"])
    fakegithub.set_team("acme", "deployers", ["lena"])
    fakegithub.add_oauth_app(APP, SECRET, CALLBACK)
    fakegithub.sign_in_web("lena")
    token = exchange(fakegithub, back(authorize(fakegithub))[1]["code"]).json()["access_token"]
    headers = {"Authorization": f"token {token}"}
    for path in ("/user", "/user/emails", "/user/teams"):
        answer = requests.get(fakegithub.api_url + path, headers=headers, timeout=5)
        assert answer.status_code == 200, answer.text
        assert_matches(route(f"GET {path} 200"), answer.json())
