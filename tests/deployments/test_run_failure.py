"""Why a run failed, read from GitHub's jobs and check-run annotations and said in plain words."""

import pytest

from deployments import gh as portal_gh
from deployments.gh import jobs
from deployments.models import DeploymentRequest
from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import PROJECT_PODS
from fakegithub.state import RunOutcome
from tests.helpers import form

INPUTS = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.large",
    "waf_enabled": "true",
    "request_id": "",
}
# What scripts/deploy/commit-spec.sh writes when the branch refuses the push.
PROTECTED_MESSAGE = (
    "The branch main is protected and the workflow's token may not push to it: GitHub refused the commit "
    "of pods/acme/prod/spec.yml (GH006: Protected branch update failed for refs/heads/main.). Nothing was "
    "applied. Make a GitHub App a bypass actor of the branch's ruleset or protection rule and set the "
    "DEPLOY_APP_ID variable and DEPLOY_APP_PRIVATE_KEY secret, so the workflow pushes with the App's token "
    "(see README, The deploy workflow on GitHub)."
)
PROTECTED = RunOutcome(
    conclusion="failure",
    failed_step="Commit spec.yml",
    annotations=[{"title": "Protected branch", "message": PROTECTED_MESSAGE}],
)


def new_run(gh) -> int:
    return gh.create_run(dict(INPUTS), {"login": "fake-user"}).id


def calls(gh) -> list[str]:
    return [r.path for r in gh.requests if r.path.startswith("/repos/")]


def only_job_id(gh, run_id: int) -> int:
    # The job's id, from the emulator's own answer (as the portal would see it).
    [job] = portal_gh.state.client(writes=False).requester.requestJsonAndCheck(
        "GET", f"/repos/demo/pods/actions/runs/{run_id}/jobs"
    )[1]["jobs"]
    return job["id"]


# --- run_failure: two requests, the failed step and the run's own words ----------------------------


def test_protected_branch_failure_names_the_step_and_the_annotation(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, outcome=PROTECTED)
    job_id = only_job_id(gh, run_id)
    gh.clear_requests()

    failure = jobs.run_failure(run_id)

    assert failure == jobs.RunFailure(
        step="Commit spec.yml",
        title="Protected branch",
        message=PROTECTED_MESSAGE,
        job_url=f"{gh.url}/demo/pods/actions/runs/{run_id}/job/{job_id}",
    )
    assert calls(gh) == [
        f"/repos/demo/pods/actions/runs/{run_id}/jobs",
        f"/repos/demo/pods/check-runs/{job_id}/annotations",
    ]


def test_protected_branch_is_said_in_plain_words_with_the_runs_advice(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, outcome=PROTECTED)
    assert jobs.describe_failure(jobs.run_failure(run_id), "failure") == (
        "protected_branch",
        "GitHub refused the commit of spec.yml: the branch is protected. Nothing was applied. Make a GitHub "
        "App a bypass actor of the branch's ruleset or protection rule and set the DEPLOY_APP_ID variable "
        "and DEPLOY_APP_PRIVATE_KEY secret, so the workflow pushes with the App's token (see README, The "
        "deploy workflow on GitHub).",
    )


def test_scripted_failure_fails_at_terraform_apply_without_words_of_its_own(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, conclusion="failure")
    failure = jobs.run_failure(run_id)
    assert (failure.step, failure.title, failure.message) == ("Terraform apply", "", "")
    assert jobs.describe_failure(failure, "failure") == (
        "run_failed",
        "The run failed at step “Terraform apply”.",
    )


def test_other_failure_quotes_the_runs_message(gh):
    run_id = new_run(gh)
    message = "pods/acme/prod/spec.yml differs from the committed one (abc123); not applying it"
    gh.complete_run(
        run_id,
        outcome=RunOutcome("failure", failed_step="Terraform plan", annotations=[{"message": message}]),
    )
    assert jobs.describe_failure(jobs.run_failure(run_id), "failure") == (
        "run_failed",
        f"The run failed at step “Terraform plan”: {message}",
    )


def test_stale_plan_says_plan_again(gh):
    run_id = new_run(gh)
    detail = "pods/acme/prod/spec.yml changed since the plan of run 41."
    outcome = RunOutcome(
        "failure", failed_step="Terraform apply", annotations=[{"title": "Stale plan", "message": detail}]
    )
    gh.complete_run(run_id, outcome=outcome)
    assert jobs.describe_failure(jobs.run_failure(run_id), "failure") == (
        "stale_plan",
        f"The plan is out of date — plan again. {detail}",
    )


def test_cancelled_run_says_where_it_stopped(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, conclusion="cancelled")
    failure = jobs.run_failure(run_id)
    assert failure.message == ""  # "The operation was canceled." says nothing the words do not
    assert jobs.describe_failure(failure, "cancelled") == (
        "cancelled",
        "The run was cancelled on GitHub at step “Terraform apply” before it finished.",
    )


def test_timed_out_run_has_its_own_words(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, conclusion="timed_out")
    error_type, message = jobs.describe_failure(jobs.run_failure(run_id), "timed_out")
    assert error_type == "timed_out"
    assert (
        message == "The run took longer than its time limit and GitHub stopped it at step “Terraform apply”."
    )


def test_successful_run_has_no_failure_and_costs_one_request(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, outcome=RunOutcome("success"))
    gh.clear_requests()
    assert jobs.run_failure(run_id) is None
    assert len(calls(gh)) == 1
    assert jobs.describe_failure(None, "success") == ("", "")


def test_an_earlier_attempt_is_read_by_its_number(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, outcome=PROTECTED)
    gh.rerun(run_id)
    gh.complete_run(run_id, outcome=RunOutcome("success"))
    assert jobs.run_failure(run_id) is None
    assert jobs.run_failure(run_id, attempt=1).step == "Commit spec.yml"
    assert f"/repos/demo/pods/actions/runs/{run_id}/attempts/1/jobs" in calls(gh)


def test_failure_without_details_says_so(gh):
    assert jobs.describe_failure(None, "failure") == (
        "run_failed",
        "The run failed. GitHub gave no reason the portal could read: see the run's log.",
    )


# --- credentials that may not read annotations ------------------------------------------------------


def test_fine_grained_token_cannot_read_annotations_and_keeps_the_step(gh, settings):
    gh.token = settings.GH_TOKEN = "github_pat_11AAAAAAA0portalfailuretest"
    portal_gh.reset()
    run_id = new_run(gh)
    gh.complete_run(run_id, outcome=PROTECTED)
    gh.clear_requests()
    failure = jobs.run_failure(run_id)
    assert (failure.step, failure.title, failure.message) == ("Commit spec.yml", "", "")
    assert [r.status for r in gh.requests] == [200, 403]


# --- GitHub failures and answers not shaped as GitHub's ---------------------------------------------


def test_missing_run_is_not_found(gh):
    with pytest.raises(portal_gh.GitHubNotFoundError):
        jobs.run_failure(12345)


def test_server_error_is_an_api_error(gh):
    gh.add_fault("GET", r"/jobs$", status=500)
    with pytest.raises(portal_gh.GitHubAPIError):
        jobs.run_failure(new_run(gh))


def test_secondary_rate_limit_is_a_rate_limit_error(gh):
    gh.add_fault(
        "GET",
        r"/jobs$",
        status=429,
        body={"message": "You have exceeded a secondary rate limit. Please wait a few minutes."},
        headers={"retry-after": "30"},
    )
    with pytest.raises(portal_gh.GitHubRateLimitError):
        jobs.run_failure(new_run(gh))


@pytest.mark.parametrize("body", [{"jobs": "many"}, ["not", "an", "object"], {"total_count": 1}])
def test_jobs_answer_not_shaped_like_a_list_of_jobs_is_an_api_error(gh, body):
    gh.add_fault("GET", r"/jobs$", status=200, body=body)
    with pytest.raises(portal_gh.GitHubAPIError):
        jobs.run_failure(new_run(gh))


def test_hostile_job_fields_are_ignored_or_bounded_and_annotations_stay_on_the_repository(gh):
    run_id = new_run(gh)
    hostile_jobs = [
        {"id": "1", "conclusion": "failure"},  # not an integer id
        {"id": 2**70, "conclusion": "failure"},  # beyond 64 bits
        {
            "id": 77,
            "conclusion": "failure",
            "html_url": "https://evil.example/phish",
            "check_run_url": "https://evil.example/steal-the-token",
            "steps": [{"name": "x\u0000\u2028" + "y" * 5000, "conclusion": "failure"}],
        },
    ]
    gh.add_fault("GET", r"/jobs$", status=200, body={"total_count": 3, "jobs": hostile_jobs})
    gh.add_fault(
        "GET",
        r"/check-runs/77/annotations$",
        status=200,
        body=[
            {"annotation_level": "warning", "title": "ignored", "message": "a warning"},
            {"annotation_level": "failure", "title": 5, "message": "m" * 10_000},
        ],
    )
    failure = jobs.run_failure(run_id)
    assert failure.job_url == ""
    assert failure.step.startswith("x y")
    assert len(failure.step) == jobs.STEP_LIMIT
    assert failure.step.endswith("…")
    assert failure.title == ""
    assert len(failure.message) == jobs.MESSAGE_LIMIT
    assert calls(gh)[-1] == "/repos/demo/pods/check-runs/77/annotations"


def test_annotations_not_shaped_like_a_list_are_an_api_error(gh):
    run_id = new_run(gh)
    gh.complete_run(run_id, outcome=PROTECTED)
    gh.add_fault("GET", r"/annotations$", status=200, body={"message": "surprise"})
    with pytest.raises(portal_gh.GitHubAPIError):
        jobs.run_failure(run_id)


# --- the protected-branch flow in the emulator ------------------------------------------------------


def commit_spec(gh: FakeGitHub, inputs: dict[str, str]) -> RunOutcome:
    """The workflow as far as "Commit spec.yml": refused by the protected branch, or committed."""
    refusal = gh.push_refusal()
    if refusal:
        message = f"GitHub refused the commit of spec.yml ({refusal}). Nothing was applied. Use a bypass App."
        return RunOutcome("failure", failed_step="Commit spec.yml", annotations=[
            {"title": "Protected branch", "message": message}
        ])  # fmt: skip
    gh.put_file("pods/acme/prod/spec.yml", "committed\n")
    return RunOutcome("success")


@pytest.fixture
def protected(settings, db):
    server = FakeGitHub(repo="demo/pods", specs_dir=PROJECT_PODS, workflow_effect=commit_spec).start()
    server.branch_protection = {"bypass_app": True}
    settings.GITHUB_API_URL = server.api_url
    settings.GH_TOKEN = server.token
    settings.GH_REPO = "demo/pods"
    portal_gh.reset()
    yield server
    server.stop()
    portal_gh.reset()


def test_a_protected_branch_fails_the_run_at_the_commit_and_says_how_to_fix_it(protected):
    run_id = new_run(protected)
    head = protected.head_sha
    assert protected.complete_run(run_id)["conclusion"] == "failure"
    assert protected.head_sha == head  # nothing committed
    error_type, message = jobs.describe_failure(jobs.run_failure(run_id), "failure")
    assert error_type == "protected_branch"
    assert message == (
        "GitHub refused the commit of spec.yml: the branch is protected. Nothing was applied. "
        "Use a bypass App."
    )


def test_a_bypass_app_commits_to_the_protected_branch(protected):
    protected.variables["DEPLOY_APP_ID"] = "12345"
    run_id = new_run(protected)
    assert protected.complete_run(run_id)["conclusion"] == "success"
    assert protected.files["pods/acme/prod/spec.yml"] == "committed\n"
    assert jobs.run_failure(run_id) is None


def test_the_deploy_workflow_on_a_protected_branch_is_explained_end_to_end(gh, deployer_client, settings):
    # The project's emulated workflow (deploy_pod), dispatched by the portal as a one-run deploy.
    settings.AUTO_APPLY_ENVIRONMENTS = ["staging"]
    gh.branch_protection = {"bypass_app": False, "ruleset": True}
    edit = {
        "customer": "acme",
        "environment": "staging",
        "instance_name": "acme-staging-web",
        "instance_type": "t3.large",
        "mode": "edit",
    }
    assert deployer_client.post("/deploy/", form(edit)).status_code == 302
    run_id = DeploymentRequest.objects.get().run_id
    head = gh.head_sha
    assert gh.complete_run(run_id, conclusion="success")["conclusion"] == "failure"
    assert gh.head_sha == head
    failure = jobs.run_failure(run_id)
    assert (failure.step, failure.title) == ("Commit spec.yml", "Protected branch")
    assert "GH013: Repository rule violations found for refs/heads/main." in failure.message
    error_type, message = jobs.describe_failure(failure, "failure")
    assert error_type == "protected_branch"
    assert message.startswith(
        "GitHub refused the commit of spec.yml: the branch is protected. Nothing was applied. "
        "Make a GitHub App a bypass actor"
    )
