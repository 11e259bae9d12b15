"""A run's jobs, steps and check-run annotations in the emulator: what a failed run tells about why."""

from __future__ import annotations

import re

import pytest
import requests
import yaml

from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import PROJECT_PODS
from fakegithub.state import RunOutcome
from fakegithub.workflow import PROJECT_WORKFLOW

INPUTS = {
    "customer": "acme",
    "environment": "dev",
    "instance_name": "acme-dev",
    "instance_type": "t3.small",
    "waf_enabled": "true",
    "request_id": "req-7",
}
PROTECTED = {"title": "Protected branch", "message": "The branch main is protected. Nothing was applied."}


@pytest.fixture(scope="module")
def emulator():
    """An emulator without the project's workflow effect: a run ends as the test says."""
    gh = FakeGitHub(repo="demo/pods", specs_dir=PROJECT_PODS).start()
    yield gh
    gh.stop()


@pytest.fixture
def fakegithub(emulator):
    emulator.reset()
    return emulator


@pytest.fixture
def api(fakegithub):
    session = requests.Session()
    session.headers["Authorization"] = "token test-token"

    def get(path: str, expect: int = 200, **params):
        url = path if path.startswith("http") else f"{fakegithub.api_url}/repos/demo/pods{path}"
        response = session.get(url, params=params, timeout=5)
        assert response.status_code == expect, response.text
        return response

    yield get
    session.close()


@pytest.fixture
def run_id(fakegithub):
    return fakegithub.create_run(dict(INPUTS), {"login": "fake-user"}).id


def workflow_step_names() -> list[str]:
    doc = yaml.safe_load(PROJECT_WORKFLOW.read_text())
    return [step["name"] for step in doc["jobs"]["deploy"]["steps"]]


def steps(job: dict) -> list[tuple[str, str | None]]:
    return [(step["name"], step["conclusion"]) for step in job["steps"]]


def only_job(api, run_id) -> dict:
    [job] = api(f"/actions/runs/{run_id}/jobs").json()["jobs"]
    return job


def test_jobs_list_the_workflow_files_steps_between_the_two_github_adds(fakegithub, api, run_id):
    fakegithub.complete_run(run_id, "success")
    job = only_job(api, run_id)
    names = [name for name, _ in steps(job)]
    assert names == ["Set up job", *workflow_step_names(), "Complete job"]
    assert [s["number"] for s in job["steps"]] == list(range(1, len(names) + 1))
    assert (job["name"], job["status"], job["conclusion"]) == ("Deploy acme/dev", "completed", "success")


def test_a_step_whose_if_is_false_is_skipped(fakegithub, api, run_id):
    fakegithub.complete_run(run_id, "success")
    assert dict(steps(only_job(api, run_id)))["GitHub App token for the push"] == "skipped"


def test_a_step_whose_if_holds_runs(fakegithub, api, run_id):
    fakegithub.variables["DEPLOY_APP_ID"] = "123"
    fakegithub.complete_run(run_id, "success")
    assert dict(steps(only_job(api, run_id)))["GitHub App token for the push"] == "success"


def test_runner_label_comes_from_the_deploy_runner_variable(fakegithub, api, run_id):
    fakegithub.variables["DEPLOY_RUNNER"] = "self-hosted"
    fakegithub.complete_run(run_id, "success")
    assert only_job(api, run_id)["labels"] == ["self-hosted"]


def test_queued_then_running_job(fakegithub, api, run_id):
    queued = only_job(api, run_id)
    assert (queued["status"], queued["conclusion"], queued["steps"]) == ("queued", None, [])
    fakegithub.advance_run(run_id)
    running = only_job(api, run_id)
    assert running["status"] == "in_progress"
    assert [s["status"] for s in running["steps"][:3]] == ["completed", "in_progress", "queued"]


def test_failed_step_fails_the_ones_before_succeed_and_the_later_ones_are_skipped(fakegithub, api, run_id):
    outcome = RunOutcome(conclusion="failure", failed_step="Commit spec.yml", annotations=[PROTECTED])
    assert fakegithub.complete_run(run_id, outcome=outcome)["conclusion"] == "failure"
    job = only_job(api, run_id)
    names = workflow_step_names()
    at = names.index("Commit spec.yml")
    conclusions = dict(steps(job))
    assert job["conclusion"] == "failure"
    assert conclusions["Set up job"] == conclusions["Render spec.yml"] == "success"
    assert {conclusions[name] for name in names[:at]} <= {"success", "skipped"}  # skipped: its if: is false
    assert conclusions["Commit spec.yml"] == "failure"
    assert {conclusions[name] for name in names[at + 1 :]} == {"skipped"}
    assert conclusions["Complete job"] == "success"


def test_failed_job_annotations_are_the_runs_errors_then_the_exit_code(fakegithub, api, run_id):
    outcome = RunOutcome(conclusion="failure", failed_step="Commit spec.yml", annotations=[PROTECTED])
    fakegithub.complete_run(run_id, outcome=outcome)
    job = only_job(api, run_id)
    annotations = api(job["check_run_url"] + "/annotations").json()
    assert [(a["title"], a["message"], a["annotation_level"]) for a in annotations] == [
        ("Protected branch", PROTECTED["message"], "failure"),
        ("", "Process completed with exit code 1.", "failure"),
    ]
    assert {a["path"] for a in annotations} == {".github"}
    lines = PROJECT_WORKFLOW.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.strip() == "- name: Commit spec.yml")
    assert annotations[0]["start_line"] == line


def test_a_scripted_failure_fails_terraform_apply_without_an_error_annotation(fakegithub, api, run_id):
    fakegithub.conclusions["acme/dev"] = "failure"
    fakegithub.complete_run(run_id, conclusion=None)
    job = only_job(api, run_id)
    assert [name for name, conclusion in steps(job) if conclusion == "failure"] == ["Terraform apply"]
    annotations = api(job["check_run_url"] + "/annotations").json()
    assert [a["message"] for a in annotations] == ["Process completed with exit code 1."]


def test_a_cancelled_run_says_the_operation_was_canceled(fakegithub, api, run_id):
    fakegithub.complete_run(run_id, "cancelled")
    job = only_job(api, run_id)
    assert job["conclusion"] == "cancelled"
    assert dict(steps(job))["Terraform apply"] == "cancelled"
    annotations = api(job["check_run_url"] + "/annotations").json()
    assert [a["message"] for a in annotations] == ["The operation was canceled."]


def test_a_successful_job_has_no_annotations(fakegithub, api, run_id):
    fakegithub.complete_run(run_id, "success")
    assert api(only_job(api, run_id)["check_run_url"] + "/annotations").json() == []


def test_each_attempt_keeps_its_jobs(fakegithub, api, run_id):
    fakegithub.complete_run(run_id, outcome=RunOutcome(conclusion="failure", failed_step="Terraform plan"))
    fakegithub.rerun(run_id)
    fakegithub.complete_run(run_id, "success")
    latest = api(f"/actions/runs/{run_id}/jobs").json()
    every = api(f"/actions/runs/{run_id}/jobs", filter="all").json()
    first = api(f"/actions/runs/{run_id}/attempts/1/jobs").json()
    assert [(j["run_attempt"], j["conclusion"]) for j in latest["jobs"]] == [(2, "success")]
    assert [(j["run_attempt"], j["conclusion"]) for j in every["jobs"]] == [(1, "failure"), (2, "success")]
    assert first["jobs"][0]["id"] != latest["jobs"][0]["id"]
    assert dict(steps(first["jobs"][0]))["Terraform plan"] == "failure"
    api(f"/actions/runs/{run_id}/attempts/3/jobs", expect=404)


def test_unknown_run_job_and_check_run_answer_404(api):
    api("/actions/runs/1/jobs", expect=404)
    api("/actions/jobs/123", expect=404)
    api("/check-runs/123/annotations", expect=404)


# --- a job's log: 302 to a short-lived plain-text URL, lines shaped like GitHub's ------------------


def _job(api, run_id) -> dict:
    [job] = api(f"/actions/runs/{run_id}/jobs").json()["jobs"]
    return job


def test_a_failed_jobs_log_is_a_redirect_to_timestamped_plain_text(fakegithub, api, run_id):
    outcome = RunOutcome(
        "failure", failed_step="Terraform plan", annotations=[{"title": "Terraform", "message": "boom"}]
    )
    fakegithub.complete_run(run_id, outcome=outcome)
    job = _job(api, run_id)
    redirect = requests.get(
        f"{fakegithub.api_url}/repos/demo/pods/actions/jobs/{job['id']}/logs",
        headers={"Authorization": "token test-token"},
        allow_redirects=False,
        timeout=5,
    )
    assert redirect.status_code == 302
    log = requests.get(redirect.headers["Location"], timeout=5)  # no token: the URL is signed
    assert log.status_code == 200
    assert log.headers["Content-Type"] == "text/plain; charset=utf-8"
    lines = log.text.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ", line) for line in lines)
    text = "\n".join(line.split(" ", 1)[1] for line in lines)
    assert "##[group]Run Terraform plan\n##[endgroup]" in text
    assert "\x1b[31m" in text  # Terraform's colours, as a runner records them
    assert "##[error]Terraform: boom\n##[error]Process completed with exit code 1." in text
    assert "Run Terraform apply" not in text  # skipped after the failure: no output


def test_a_failed_steps_own_output_is_its_log(fakegithub, api, run_id):
    fakegithub.complete_run(
        run_id, outcome=RunOutcome("failure", failed_step="Terraform apply", log=["<b>x</b>"])
    )
    job = _job(api, run_id)
    redirect = requests.get(
        f"{fakegithub.api_url}/repos/demo/pods/actions/jobs/{job['id']}/logs",
        headers={"Authorization": "token test-token"},
        allow_redirects=False,
        timeout=5,
    )
    assert requests.get(redirect.headers["Location"], timeout=5).text.count("Z <b>x</b>\n") == 1


def test_a_queued_job_has_no_log_and_a_bad_or_expired_signature_is_refused(fakegithub, api, run_id):
    from fakegithub import jobs

    job = _job(api, run_id)
    headers = {"Authorization": "token test-token"}
    url = f"{fakegithub.api_url}/repos/demo/pods/actions/jobs/{job['id']}/logs"
    assert requests.get(url, headers=headers, allow_redirects=False, timeout=5).status_code == 404
    fakegithub.complete_run(run_id)
    assert requests.get(url, allow_redirects=False, timeout=5).status_code == 401  # the API needs a token
    expired = jobs.log_url(fakegithub, job["id"], ttl=-1)
    assert requests.get(expired, timeout=5).status_code == 403
    forged = jobs.log_url(fakegithub, job["id"]).replace("urlSignature=", "urlSignature=x")
    assert requests.get(forged, timeout=5).status_code == 403
