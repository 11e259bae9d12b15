"""The emulated deploy workflow's plan, apply and deploy modes, its artifacts API, its plan model
and environments with required reviewers: driven over HTTP as the portal drives GitHub."""

from __future__ import annotations

import calendar
import io
import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

from deployments import plan
from fakegithub import artifacts as fake_artifacts
from fakegithub import terraform_model
from fakegithub.terraform_model import PodValues
from tests.fakegithub.test_openapi_shapes import assert_matches, route

ACME_PROD = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.medium",
    "waf_enabled": "true",
}
SPEC = "pods/acme/prod/spec.yml"
MODULE_MAIN = Path(__file__).resolve().parents[2] / "terraform" / "modules" / "pod" / "main.tf"
POLL_SECONDS = 10


@pytest.fixture
def api(fakegithub):
    session = requests.Session()
    session.headers["Authorization"] = "token test-token"

    def call(method: str, path: str, expect: int | None = 200, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else f"{fakegithub.api_url}/repos/demo/pods{path}"
        response = session.request(method, url, timeout=5, allow_redirects=False, **kwargs)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    yield call
    session.close()


def dispatch(api, **inputs: str) -> int:
    body = {"ref": "main", "inputs": {**ACME_PROD, **inputs}, "return_run_details": True}
    return api("POST", "/actions/workflows/deploy-pod.yml/dispatches", json=body).json()["workflow_run_id"]


def run_to_end(fakegithub, api, **inputs: str) -> int:
    run_id = dispatch(api, **inputs)
    fakegithub.complete_run(run_id, conclusion=None)
    return run_id


def outcome(fakegithub, run_id: int):
    return fakegithub.state.find_run(run_id).outcome


def listed(api, run_id: int, **params) -> dict[str, dict]:
    return {
        a["name"]: a
        for a in api("GET", f"/actions/runs/{run_id}/artifacts", params=params).json()["artifacts"]
    }


def download(api, artifact: dict) -> dict[str, bytes]:
    redirect = api("GET", artifact["archive_download_url"], expect=302)
    blob = requests.get(redirect.headers["Location"], timeout=5)  # no token: the URL is signed
    assert blob.status_code == 200 and blob.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(blob.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def summary_of(api, run_id: int) -> dict:
    return json.loads(download(api, listed(api, run_id)["plan-summary"])["plan-summary.json"])


def rows(summary: dict) -> dict[str, dict]:
    return {row["address"]: row for row in summary["resources"]}


def wait_until(predicate, what: str):
    deadline = time.monotonic() + POLL_SECONDS
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# --- plan, apply, deploy --------------------------------------------------------------------------


def test_plan_commits_nothing_and_leaves_the_summary_and_the_saved_plan(fakegithub, api):
    head = fakegithub.head_sha
    run_id = run_to_end(fakegithub, api, action="plan", instance_type="t3.large")
    assert fakegithub.run(run_id)["conclusion"] == "success"
    assert fakegithub.head_sha == head
    found = listed(api, run_id)
    assert sorted(found) == ["plan-summary", "tfplan"]
    assert download(api, found["tfplan"]).keys() == {"tfplan"}
    created, expires = (
        calendar.timegm(time.strptime(found["tfplan"][key], "%Y-%m-%dT%H:%M:%SZ"))
        for key in ("created_at", "expires_at")
    )
    assert expires - created == 86400  # one day
    assert found["plan-summary"]["expires_at"] > found["tfplan"]["expires_at"]
    summary = summary_of(api, run_id)
    assert summary["spec_blob"] == api("GET", f"/contents/{SPEC}").json()["sha"]
    assert (summary["format"], summary["pod"], summary["terraform_version"]) == (1, "acme/prod", "1.11.4")


def test_apply_of_a_plan_commits_the_planned_spec_and_publishes_that_plan(fakegithub, api):
    plan_id = run_to_end(fakegithub, api, action="plan", instance_type="t3.large")
    apply_id = run_to_end(fakegithub, api, action="apply", plan_run_id=str(plan_id), instance_type="t3.large")
    assert fakegithub.run(apply_id)["conclusion"] == "success"
    assert yaml.safe_load(fakegithub.files[SPEC])["instance_type"] == "t3.large"
    assert list(listed(api, apply_id)) == ["plan-summary"]
    assert summary_of(api, apply_id) == summary_of(api, plan_id)


def test_apply_after_the_spec_moved_is_refused_as_a_stale_plan(fakegithub, api):
    plan_id = run_to_end(fakegithub, api, action="plan", instance_type="t3.large")
    fakegithub.put_file(SPEC, fakegithub.files[SPEC].replace("t3.medium", "t3.xlarge"))
    head = fakegithub.head_sha
    apply_id = run_to_end(fakegithub, api, action="apply", plan_run_id=str(plan_id), instance_type="t3.large")
    assert fakegithub.run(apply_id)["conclusion"] == "failure"
    assert fakegithub.head_sha == head
    ended = outcome(fakegithub, apply_id)
    assert ended.failed_step == "Unpack the plan"
    assert [a["title"] for a in ended.annotations] == ["Stale plan"]
    assert ended.annotations[0]["message"].startswith("The plan is out of date — plan again.")
    assert listed(api, apply_id) == {}


def test_a_stale_plan_is_what_the_run_s_check_run_annotations_say(fakegithub, api):
    plan_id = run_to_end(fakegithub, api, action="plan", instance_type="t3.large")
    fakegithub.put_file(SPEC, fakegithub.files[SPEC].replace("t3.medium", "t3.xlarge"))
    apply_id = run_to_end(fakegithub, api, action="apply", plan_run_id=str(plan_id), instance_type="t3.large")
    job = api("GET", f"/actions/runs/{apply_id}/jobs").json()["jobs"][0]
    notes = api("GET", f"/check-runs/{job['id']}/annotations").json()
    assert "Stale plan" in [note["title"] for note in notes]


@pytest.mark.parametrize("which", ["unknown run", "deploy run", "failed plan", "other pod", "expired"])
def test_apply_without_a_usable_saved_plan_fails_with_plan_not_found(fakegithub, api, which):
    if which == "unknown run":
        plan_id = 1
    elif which == "deploy run":
        plan_id = run_to_end(fakegithub, api)
    elif which == "failed plan":
        fakegithub.conclusions["acme/prod"] = "failure"
        plan_id = run_to_end(fakegithub, api, action="plan")
        fakegithub.conclusions.clear()
    elif which == "other pod":
        staging = {"environment": "staging", "instance_name": "acme-staging-web", "instance_type": "t3.small"}
        plan_id = run_to_end(fakegithub, api, action="plan", waf_enabled="false", **staging)
    else:
        plan_id = run_to_end(fakegithub, api, action="plan")
        if which == "expired":
            assert fakegithub.artifacts.expire(plan_id, "tfplan") == 1
    head = fakegithub.head_sha
    apply_id = run_to_end(fakegithub, api, action="apply", plan_run_id=str(plan_id))
    assert fakegithub.run(apply_id)["conclusion"] == "failure"
    ended = outcome(fakegithub, apply_id)
    assert ended.failed_step == "Unpack the plan"
    assert [a["title"] for a in ended.annotations] == ["Plan not found"]
    assert fakegithub.head_sha == head


def test_apply_with_inputs_other_than_the_plan_s_is_refused_as_stale(fakegithub, api):
    plan_id = run_to_end(fakegithub, api, action="plan", instance_type="t3.large")
    head = fakegithub.head_sha
    apply_id = run_to_end(
        fakegithub, api, action="apply", plan_run_id=str(plan_id), instance_type="t3.2xlarge"
    )
    ended = outcome(fakegithub, apply_id)
    assert ended.failed_step == "Check the plan is current"
    assert [a["title"] for a in ended.annotations] == ["Stale plan"]
    assert "instance_type t3.large planned, t3.2xlarge now" in ended.annotations[0]["message"]
    assert fakegithub.head_sha == head


def test_deploy_commits_and_publishes_the_summary_of_what_it_applied_without_a_saved_plan(fakegithub, api):
    run_id = run_to_end(fakegithub, api, instance_type="t3.large")
    assert yaml.safe_load(fakegithub.files[SPEC])["instance_type"] == "t3.large"
    assert list(listed(api, run_id)) == ["plan-summary"]
    assert rows(summary_of(api, run_id))["module.pod.aws_instance.this"]["action"] == "update"


def test_a_hand_dispatch_with_the_seed_s_inputs_alone_still_deploys(fakegithub, api):
    body = {"ref": "main", "inputs": {**ACME_PROD, "instance_type": "t3.large"}}
    api("POST", "/actions/workflows/deploy-pod.yml/dispatches", expect=204, json=body)
    run_id = fakegithub.runs[0]["id"]
    assert fakegithub.complete_run(run_id, conclusion=None)["conclusion"] == "success"
    assert "t3.large" in fakegithub.files[SPEC]


def test_an_unchanged_spec_commits_nothing_as_commit_spec_sh_does(fakegithub, api):
    head = fakegithub.head_sha
    fakegithub.branch_protection = {"bypass_app": False}  # no push, so nothing to refuse
    run_id = run_to_end(fakegithub, api)
    assert fakegithub.run(run_id)["conclusion"] == "success"
    assert fakegithub.head_sha == head
    assert {row["action"] for row in summary_of(api, run_id)["resources"]} == {"no-op"}


@pytest.mark.parametrize("action", ["deploy", "apply"])
def test_a_protected_branch_refuses_the_commit_and_nothing_is_applied(fakegithub, api, action):
    extra = {}
    if action == "apply":
        extra = {"plan_run_id": str(run_to_end(fakegithub, api, action="plan", instance_type="t3.large"))}
    fakegithub.branch_protection = {"bypass_app": True}
    head = fakegithub.head_sha
    run_id = run_to_end(fakegithub, api, action=action, instance_type="t3.large", **extra)
    assert fakegithub.run(run_id)["conclusion"] == "failure"
    assert fakegithub.head_sha == head
    ended = outcome(fakegithub, run_id)
    assert ended.failed_step == "Commit spec.yml"
    assert [a["title"] for a in ended.annotations] == ["Protected branch"]
    assert "GH006" in ended.annotations[0]["message"] and "DEPLOY_APP_ID" in ended.annotations[0]["message"]
    assert listed(api, run_id) == {}


def test_a_github_app_that_bypasses_the_protection_commits(fakegithub, api):
    fakegithub.branch_protection = {"bypass_app": True}
    fakegithub.variables["DEPLOY_APP_ID"] = "12345"
    run_id = run_to_end(fakegithub, api, instance_type="t3.large")
    assert fakegithub.run(run_id)["conclusion"] == "success"
    assert "t3.large" in fakegithub.files[SPEC]


def test_invalid_inputs_fail_validation_in_every_mode(fakegithub, api):
    for inputs in (
        {"action": "plan", "instance_type": "x9.huge"},
        {"action": "destroy"},
        {"action": "apply"},  # no plan_run_id
        {"action": "apply", "plan_run_id": "12a"},
        {"action": "plan", "plan_run_id": "12"},
    ):
        run_id = run_to_end(fakegithub, api, **inputs)
        assert outcome(fakegithub, run_id).failed_step == "Validate inputs"
        assert listed(api, run_id) == {}


# --- the plan summaries ---------------------------------------------------------------------------


def planned(fakegithub, api, **inputs: str) -> dict:
    return summary_of(api, run_to_end(fakegithub, api, action="plan", **inputs))


def test_an_instance_type_change_is_an_in_place_update_of_the_instance(fakegithub, api):
    found = rows(planned(fakegithub, api, instance_type="t3.large"))
    assert found["module.pod.aws_instance.this"] == {
        "address": "module.pod.aws_instance.this",
        "type": "aws_instance",
        "action": "update",
        "changes": [{"attribute": "instance_type", "before": "t3.medium", "after": "t3.large"}],
    }
    assert {row["action"] for address, row in found.items() if address != "module.pod.aws_instance.this"} == {
        "no-op"
    }


def test_turning_the_waf_off_deletes_the_web_acl_its_association_and_its_logging(fakegithub, api):
    found = rows(planned(fakegithub, api, waf_enabled="false"))
    changed = {address: row["action"] for address, row in found.items() if row["action"] != "no-op"}
    assert changed == {
        "module.pod.aws_cloudwatch_log_group.waf[0]": "delete",
        "module.pod.aws_kms_key.waf_logs[0]": "delete",
        "module.pod.aws_wafv2_web_acl.this[0]": "delete",
        "module.pod.aws_wafv2_web_acl_association.this[0]": "delete",
        "module.pod.aws_wafv2_web_acl_logging_configuration.this[0]": "delete",
    }


def test_turning_the_waf_on_creates_the_web_acl_its_association_and_its_logging(fakegithub, api):
    staging = {"environment": "staging", "instance_name": "acme-staging-web", "instance_type": "t3.small"}
    summary = planned(fakegithub, api, waf_enabled="true", **staging)
    changed = {row["address"]: row["action"] for row in summary["resources"] if row["action"] != "no-op"}
    assert changed == {
        "module.pod.aws_cloudwatch_log_group.waf[0]": "create",
        "module.pod.aws_kms_key.waf_logs[0]": "create",
        "module.pod.aws_wafv2_web_acl.this[0]": "create",
        "module.pod.aws_wafv2_web_acl_association.this[0]": "create",
        "module.pod.aws_wafv2_web_acl_logging_configuration.this[0]": "create",
    }
    assert summary["pod"] == "acme/staging"


UNRENAMED = (
    "aws_cloudwatch_log_group.waf[0]",
    "aws_iam_instance_profile.instance",
    "aws_iam_role.instance",
    "aws_iam_role_policy_attachment.ssm",
    "aws_kms_key.waf_logs[0]",
    "aws_s3_bucket.alb_logs",
    "aws_s3_bucket_lifecycle_configuration.alb_logs",
    "aws_s3_bucket_ownership_controls.alb_logs",
    "aws_s3_bucket_policy.alb_logs",
    "aws_s3_bucket_public_access_block.alb_logs",
    "aws_s3_bucket_server_side_encryption_configuration.alb_logs",
    "aws_s3_bucket_versioning.alb_logs",
)


def test_renaming_the_instance_replaces_what_aws_cannot_rename(fakegithub, api):
    found = rows(planned(fakegithub, api, instance_name="acme-prod-api"))
    actions = {address.removeprefix("module.pod."): row["action"] for address, row in found.items()}
    assert actions == {
        "aws_instance.this": "update",
        "aws_lb.this": "replace",
        "aws_lb_listener.http": "replace",
        "aws_lb_listener.https": "replace",
        "aws_lb_target_group.this": "replace",
        "aws_lb_target_group_attachment.this": "replace",
        "aws_security_group.alb": "replace",
        "aws_security_group.instance": "replace",
        "aws_wafv2_web_acl.this[0]": "replace",
        "aws_wafv2_web_acl_association.this[0]": "replace",
        "aws_wafv2_web_acl_logging_configuration.this[0]": "replace",
        # Named after the pod (customer/environment), not the instance: kept as they are.
        **{address: "no-op" for address in UNRENAMED},
    }
    forcing = [
        c for c in found["module.pod.aws_security_group.alb"]["changes"] if c.get("forces_replacement")
    ]
    assert forcing == [
        {
            "attribute": "name",
            "before": "acme-prod-web-alb",
            "after": "acme-prod-api-alb",
            "forces_replacement": True,
        }
    ]
    instance = {c["attribute"]: c for c in found["module.pod.aws_instance.this"]["changes"]}
    assert instance["vpc_security_group_ids"]["after"] == "(known after apply)"
    assert not any(c.get("forces_replacement") for c in instance.values())


def test_a_new_pod_creates_everything_from_no_spec(fakegithub, api):
    new = {
        "customer": "hooli",
        "environment": "prod",
        "instance_name": "hooli-prod-web",
        "waf_enabled": "false",
    }
    summary = planned(fakegithub, api, **new)
    assert summary["spec_blob"] is None
    assert {row["action"] for row in summary["resources"]} == {"create"}
    assert len(summary["resources"]) == 18
    assert all(row["changes"] == [] for row in summary["resources"])


@pytest.mark.parametrize(
    ("change", "headline"),
    [
        ({"instance_type": "t3.large"}, "0 to add, 1 to change, 0 to replace, 0 to destroy"),
        ({"waf_enabled": "false"}, "0 to add, 0 to change, 0 to replace, 5 to destroy"),
        ({"instance_name": "acme-prod-api"}, "0 to add, 1 to change, 10 to replace, 0 to destroy"),
        (
            {"customer": "hooli", "instance_name": "hooli-prod-web"},
            "23 to add, 0 to change, 0 to replace, 0 to destroy",
        ),
        ({}, "0 to add, 0 to change, 0 to replace, 0 to destroy"),
    ],
)
def test_the_portal_reads_every_modelled_summary(fakegithub, api, change, headline):
    assert plan.parse(json.dumps(planned(fakegithub, api, **change)).encode()).headline == headline


def test_a_rename_within_the_short_name_keeps_the_load_balancer():
    before = PodValues("acme", "prod", "acme-prod-web-0123456789-a", "t3.small", False)
    after = PodValues("acme", "prod", "acme-prod-web-0123456789-b", "t3.small", False)
    found = rows(terraform_model.plan_summary(before, after, spec_blob=None))
    assert found["module.pod.aws_lb.this"]["action"] == "update"
    assert found["module.pod.aws_lb_listener.https"]["action"] == "no-op"
    # The pod's address follows its name: the HTTP listener redirects to the new one.
    (redirect,) = found["module.pod.aws_lb_listener.http"]["changes"]
    assert (redirect["attribute"], redirect["after"]) == (
        "default_action[0].redirect[0].host",
        "acme-prod-web-0123456789-b.pods.example.com",
    )
    assert found["module.pod.aws_lb_listener.http"]["action"] == "update"
    assert found["module.pod.aws_security_group.alb"]["action"] == "replace"


def test_the_model_knows_every_resource_of_the_pod_module_and_no_other():
    declared = set(re.findall(r'^resource "(\w+)" "(\w+)"', MODULE_MAIN.read_text(), re.MULTILINE))
    modelled = terraform_model.resources(PodValues("acme", "prod", "acme-prod-web", "t3.small", True))
    assert {(r.type, a.split(".")[3].split("[")[0]) for a, r in modelled.items()} == declared
    assert all(address.startswith("module.pod.") for address in modelled)


# --- the artifacts API ----------------------------------------------------------------------------


def test_artifacts_list_and_get_match_github_schema(fakegithub, api):
    run_id = run_to_end(fakegithub, api, action="plan")
    page = api("GET", f"/actions/runs/{run_id}/artifacts").json()
    assert_matches(route("GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts 200"), page)
    one = api("GET", f"/actions/artifacts/{page['artifacts'][0]['id']}").json()
    assert_matches(route("GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id} 200"), one)
    assert one["workflow_run"]["id"] == run_id


def test_artifacts_filter_by_name_and_paginate_newest_first(fakegithub, api):
    run_id = run_to_end(fakegithub, api, action="plan")
    assert list(listed(api, run_id, name="tfplan")) == ["tfplan"]
    assert listed(api, run_id, name="nope") == {}
    first = api("GET", f"/actions/runs/{run_id}/artifacts", params={"per_page": 1})
    assert first.json()["total_count"] == 2
    assert [a["name"] for a in first.json()["artifacts"]] == ["tfplan"]  # uploaded last
    assert 'rel="next"' in first.headers["Link"]
    ascending = api("GET", f"/actions/runs/{run_id}/artifacts", params={"direction": "asc"}).json()
    assert [a["name"] for a in ascending["artifacts"]] == ["plan-summary", "tfplan"]


def test_artifacts_of_an_unknown_run_or_id_answer_404(fakegithub, api):
    api("GET", "/actions/runs/1/artifacts", expect=404)
    api("GET", "/actions/artifacts/1", expect=404)
    api("GET", "/actions/artifacts/1/zip", expect=404)


def test_download_redirects_to_a_signed_url_that_needs_no_token_and_is_not_metered(fakegithub, api):
    run_id = run_to_end(fakegithub, api, action="plan")
    artifact = listed(api, run_id)["plan-summary"]
    location = api("GET", artifact["archive_download_url"], expect=302).headers["Location"]
    assert "sig=" in location and "se=" in location and "Authorization" not in location
    remaining = fakegithub.rate_limit["resources"]["core"]["remaining"]
    blob = requests.get(location, timeout=5)
    assert blob.status_code == 200 and len(blob.content) == artifact["size_in_bytes"]
    assert fakegithub.requests[-1].headers.get("authorization") is None
    assert fakegithub.rate_limit["resources"]["core"]["remaining"] == remaining


def test_a_signed_url_past_its_minute_or_tampered_with_is_refused(fakegithub, api):
    run_id = run_to_end(fakegithub, api, action="plan")
    record = fakegithub.artifacts.for_run(run_id)[0]
    expired = fake_artifacts.signed_url(fakegithub, record, ttl=-1)
    answer = requests.get(expired, timeout=5)
    assert answer.status_code == 403 and b"AuthenticationFailed" in answer.content
    tampered = re.sub(
        r"se=\d+", f"se={int(time.time()) + 3600}", fake_artifacts.signed_url(fakegithub, record)
    )
    assert requests.get(tampered, timeout=5).status_code == 403
    assert fake_artifacts.SIGNED_URL_TTL == 60


def test_an_expired_artifact_stays_listed_and_its_download_answers_410(fakegithub, api):
    run_id = run_to_end(fakegithub, api, action="plan")
    location = api("GET", listed(api, run_id)["plan-summary"]["archive_download_url"], expect=302).headers[
        "Location"
    ]
    assert fakegithub.artifacts.expire(run_id) == 2
    found = listed(api, run_id)
    assert found["plan-summary"]["expired"] is True
    gone = api("GET", found["plan-summary"]["archive_download_url"], expect=410)
    assert gone.json()["message"] == "Artifact has expired"
    assert requests.get(location, timeout=5).status_code == 404  # a URL handed out before expiry


def test_reset_forgets_the_artifacts(fakegithub, api):
    run_id = run_to_end(fakegithub, api, action="plan")
    artifact_id = listed(api, run_id)["tfplan"]["id"]
    fakegithub.reset()
    api("GET", f"/actions/artifacts/{artifact_id}", expect=404)


# --- environments with required reviewers ---------------------------------------------------------


def test_required_reviewers_hold_apply_and_deploy_runs_until_approved(fakegithub, api):
    fakegithub.environment_reviewers = True
    run_id = dispatch(api, instance_type="t3.large")
    assert fakegithub.advance_run(run_id)["status"] == "waiting"
    assert fakegithub.advance_run(run_id)["status"] == "waiting"
    assert api("GET", f"/actions/runs/{run_id}").json()["status"] == "waiting"
    waiting = api("GET", "/actions/runs", params={"status": "waiting"}).json()
    assert [r["id"] for r in waiting["workflow_runs"]] == [run_id]
    assert [d.action for d in fakegithub.deliveries] == ["requested"]
    assert fakegithub.approve_environment(run_id)["status"] == "in_progress"
    assert fakegithub.advance_run(run_id)["conclusion"] == "success"
    assert "t3.large" in fakegithub.files[SPEC]
    assert [d.action for d in fakegithub.deliveries] == ["requested", "in_progress", "completed"]


def test_the_run_clock_respects_required_reviewers_and_plan_runs_are_not_held(fakegithub, api):
    fakegithub.environment_reviewers = True
    apply_id = dispatch(api, instance_type="t3.large")
    plan_id = dispatch(api, action="plan")
    fakegithub.queued_for = fakegithub.in_progress_for = 0.0
    fakegithub.auto_runs = True
    wait_until(lambda: fakegithub.run(plan_id)["status"] == "completed", "the plan run to complete")
    assert fakegithub.run(apply_id)["status"] == "waiting"
    fakegithub.approve_environment(apply_id)
    done = wait_until(lambda: fakegithub.run(apply_id)["conclusion"], "the approved run to complete")
    assert done == "success"


def test_only_a_waiting_run_can_be_approved(fakegithub, api):
    run_id = dispatch(api)
    with pytest.raises(ValueError, match="queued"):
        fakegithub.approve_environment(run_id)


# --- the sandbox ----------------------------------------------------------------------------------


def test_the_sandbox_plans_and_serves_the_plan_summary(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakegithub",
            "--port",
            "0",
            "--specs",
            "pods",
            "--auto-runs",
            "--queued-for",
            "0",
            "--in-progress-for",
            "0",
            "--token",
            "sandbox",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        url = proc.stdout.readline().split(" at ", 1)[1].split()[0]
        session = requests.Session()
        session.headers["Authorization"] = "token sandbox"
        body = {"ref": "main", "inputs": {**ACME_PROD, "action": "plan"}, "return_run_details": True}
        run_id = session.post(
            f"{url}/repos/demo/pods/actions/workflows/deploy-pod.yml/dispatches", json=body, timeout=5
        ).json()["workflow_run_id"]
        run_url = f"{url}/repos/demo/pods/actions/runs/{run_id}"
        wait_until(
            lambda: session.get(run_url, timeout=5).json()["status"] == "completed", "the sandbox's plan run"
        )
        names = [a["name"] for a in session.get(f"{run_url}/artifacts", timeout=5).json()["artifacts"]]
        assert sorted(names) == ["plan-summary", "tfplan"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
