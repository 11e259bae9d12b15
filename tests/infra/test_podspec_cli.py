"""The podspec CLI as the deploy workflow runs it: ``python -m deployments.podspec``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deployments import podspec

from .conftest import REPO_ROOT

VALID = {
    "CUSTOMER": "acme",
    "ENVIRONMENT": "prod",
    "INSTANCE_NAME": "acme-prod-web",
    "INSTANCE_TYPE": "t3.medium",
    "WAF_ENABLED": "true",
}


def run_cli(*args: str, **overrides: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", ""), **VALID, **overrides}
    return subprocess.run(
        [sys.executable, "-m", "deployments.podspec", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_valid_inputs_validate():
    result = run_cli("validate")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


HOSTILE = [
    ("CUSTOMER", "../etc"),
    ("CUSTOMER", "a/b"),
    ("CUSTOMER", "ACME"),
    ("CUSTOMER", "\uff41cme"),  # fullwidth "ａcme"
    ("CUSTOMER", "a" * 10240),
    ("CUSTOMER", "acme "),
    ("CUSTOMER", "-acme"),
    ("ENVIRONMENT", ""),
    ("ENVIRONMENT", ".."),
    ("ENVIRONMENT", "prod;rm -rf /"),
    ("INSTANCE_NAME", "x\ninstance_type: p5.48xlarge"),
    ("INSTANCE_NAME", "${{ github.token }}"),
    ("INSTANCE_NAME", "web-"),
    ("INSTANCE_TYPE", "p5.48xlarge"),
    ("INSTANCE_TYPE", "g5.xlarge"),
    ("INSTANCE_TYPE", "t3.medium\n"),
    ("INSTANCE_TYPE", "a" * 10240),
    ("WAF_ENABLED", "yes"),
    ("WAF_ENABLED", "True"),
    ("WAF_ENABLED", "1"),
    # A trailing newline once passed a `$`-anchored regex: the run wrote a directory named
    # "acme\n" and a two-line GITHUB_OUTPUT.
    ("CUSTOMER", "acme\n"),
    ("CUSTOMER", "\nacme"),
    ("CUSTOMER", "acme\nfile=/etc/passwd"),
    ("ENVIRONMENT", "prod\r"),
    ("ENVIRONMENT", "prod\u2028"),
    ("ENVIRONMENT", "pr\u200bod"),
    ("INSTANCE_NAME", "acme-prod-web\n"),
    ("INSTANCE_NAME", "acme-prod-web\t"),
    ("INSTANCE_NAME", "\u202eacme-prod-web"),
    ("INSTANCE_TYPE", "t3.medium\x85"),
    ("WAF_ENABLED", "true\n"),
    ("REQUEST_ID", "manual"),
    ("REQUEST_ID", "7"),
    ("REQUEST_ID", "6F1C2A9E-3B4D-4E5F-8A7B-9C0D1E2F3A4B"),
    ("REQUEST_ID", "{6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b}"),
    ("REQUEST_ID", "6f1c2a9e3b4d4e5f8a7b9c0d1e2f3a4b"),
    ("REQUEST_ID", "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b\n"),
    ("REQUEST_ID", "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b]\n\nInjected commit trailer"),
    ("REQUEST_ID", "$(id)"),
    ("REQUEST_ID", " "),
    ("SPECS_PATH", "../outside"),
    ("SPECS_PATH", "/etc"),
    ("SPECS_PATH", "pods/../.."),
    ("SPECS_PATH", "pods\nfile=/etc/passwd"),
    ("SPECS_PATH", "po ds"),
    ("SPECS_PATH", "a//b"),
]


def _id(case) -> str:
    name, value = case
    return f"{name}={value[:20]!r}{'...' if len(value) > 20 else ''}"


@pytest.mark.parametrize("case", HOSTILE, ids=_id)
def test_validate_rejects_hostile_input(case, tmp_path):
    name, value = case
    result = run_cli("validate", **{name: value})
    assert result.returncode == 1, result.stdout
    assert f"invalid {name.lower()}:" in result.stderr
    # A huge value is not echoed back into the workflow log.
    assert len(result.stderr) < 2000
    out = tmp_path / "pods" / "spec.yml"
    assert run_cli("render", "--out", str(out), **{name: value}).returncode == 1
    assert not out.exists(), "an invalid spec must never be written"


def test_allowed_instance_types_narrow_the_list():
    assert run_cli("validate", ALLOWED_INSTANCE_TYPES="t3.micro, t3.small").returncode == 1
    assert run_cli("validate", ALLOWED_INSTANCE_TYPES="t3.micro,t3.medium").returncode == 0


@pytest.mark.parametrize("waf", ["true", "false"])
def test_render_round_trips_through_parse(waf, tmp_path):
    out = tmp_path / "pods" / "acme" / "prod" / "spec.yml"
    result = run_cli("render", "--out", str(out), WAF_ENABLED=waf)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    spec = podspec.parse(text)
    assert spec.workflow_inputs() == {key.lower(): value for key, value in VALID.items()} | {
        "waf_enabled": waf
    }
    assert podspec.render(spec) == text
    # Without --out, the same text goes to stdout.
    assert run_cli("render", WAF_ENABLED=waf).stdout == text


@pytest.mark.parametrize(
    "request_id", ["", "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"], ids=["hand dispatch", "portal"]
)
def test_request_id_may_be_empty_or_a_lowercase_uuid(request_id):
    result = run_cli("validate", REQUEST_ID=request_id)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("specs_path", ["pods", "pods/", "deploy/pods", "specs_v2.d"])
def test_specs_path_may_be_a_relative_directory(specs_path):
    result = run_cli("validate", SPECS_PATH=specs_path)
    assert result.returncode == 0, result.stderr


def test_every_bad_input_is_reported_at_once():
    result = run_cli("validate", CUSTOMER="acme\n", REQUEST_ID="manual", SPECS_PATH="../x")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "invalid customer: customer must not contain a line break (U+000A)",
        "invalid request_id: request_id must be empty or a lowercase UUID such as "
        "123e4567-e89b-42d3-a456-426614174000",
        "invalid specs_path: SPECS_PATH must be a relative path of names made of letters, digits, "
        "'.', '_' or '-' (no '..')",
    ]


@pytest.mark.parametrize("name", [*VALID, "REQUEST_ID"])
def test_nul_in_any_input_is_refused(name, capsys):
    # An environment variable cannot carry NUL, so this one runs the CLI in process.
    environ = {**VALID, name: "ac\x00me"}
    assert podspec.main(["validate"], environ=environ) == 1
    assert f"invalid {name.lower()}:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"ACTION": "deploy"},
        {"ACTION": "plan"},
        {"ACTION": "plan", "PLAN_RUN_ID": ""},
        {"ACTION": "apply", "PLAN_RUN_ID": "1"},
        {"ACTION": "apply", "PLAN_RUN_ID": "18446744073709551615"},
    ],
    ids=repr,
)
def test_action_is_deploy_plan_or_apply_of_a_plan_run(extra):
    result = run_cli("validate", **extra)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ACTION": ""}, "invalid action: action must be one of deploy, plan, apply"),
        ({"ACTION": "destroy"}, "invalid action: action must be one of deploy, plan, apply"),
        ({"ACTION": "Apply"}, "invalid action:"),
        ({"ACTION": "plan\n"}, "invalid action:"),
        ({"ACTION": "apply"}, "invalid plan_run_id: plan_run_id is required with action apply"),
        (
            {"ACTION": "apply", "PLAN_RUN_ID": "12a"},
            "invalid plan_run_id: plan_run_id must be a workflow run id",
        ),
        ({"ACTION": "apply", "PLAN_RUN_ID": "-1"}, "invalid plan_run_id:"),
        ({"ACTION": "apply", "PLAN_RUN_ID": "0"}, "invalid plan_run_id:"),
        ({"ACTION": "apply", "PLAN_RUN_ID": "1" * 21}, "invalid plan_run_id:"),
        ({"ACTION": "apply", "PLAN_RUN_ID": "123\n"}, "invalid plan_run_id:"),
        ({"ACTION": "apply", "PLAN_RUN_ID": "１２３"}, "invalid plan_run_id:"),
        ({"ACTION": "apply", "PLAN_RUN_ID": "$(id)"}, "invalid plan_run_id:"),
        (
            {"ACTION": "plan", "PLAN_RUN_ID": "123"},
            "invalid plan_run_id: plan_run_id is only given with action apply",
        ),
        ({"PLAN_RUN_ID": "123"}, "invalid plan_run_id: plan_run_id is only given with action apply"),
    ],
    ids=repr,
)
def test_validate_rejects_a_bad_action_or_plan_run_id(extra, message, tmp_path):
    result = run_cli("validate", **extra)
    assert result.returncode == 1
    assert message in result.stderr
    out = tmp_path / "spec.yml"
    assert run_cli("render", "--out", str(out), **extra).returncode == 1
    assert not out.exists()


POD_VARIABLES = {
    "TF_VAR_domain_name": "pods.example.com",
    "TF_VAR_certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6789",
    "TF_VAR_deletion_protection": "true",
}


@pytest.mark.parametrize("action", ["deploy", "plan"])
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TF_VAR_domain_name", "", "invalid POD_DOMAIN: POD_DOMAIN must be set to a lowercase DNS domain"),
        ("TF_VAR_domain_name", "Pods.Example.com", "invalid POD_DOMAIN:"),
        ("TF_VAR_domain_name", "pods.example.com\nx", "invalid POD_DOMAIN:"),
        ("TF_VAR_certificate_arn", "", "invalid POD_CERTIFICATE_ARN: POD_CERTIFICATE_ARN must be set"),
        ("TF_VAR_certificate_arn", "arn:aws:iam::123456789012:role/x", "invalid POD_CERTIFICATE_ARN:"),
        ("TF_VAR_deletion_protection", "False", "invalid POD_DELETION_PROTECTION:"),
    ],
)
def test_the_pods_repository_variables_stop_a_run_before_its_commit(action, name, value, message):
    # A one-run deploy commits spec.yml before Terraform plans, and Terraform's own checks of
    # these variables run at the plan: this step is the one before the commit.
    result = run_cli("validate", ACTION=action, **{**POD_VARIABLES, name: value})
    assert result.returncode == 1
    assert any(line.startswith(message) for line in result.stderr.splitlines()), result.stderr


def test_valid_repository_variables_pass_and_an_apply_keeps_its_plans_values():
    assert run_cli("validate", **POD_VARIABLES).returncode == 0
    unset = {k: v for k, v in POD_VARIABLES.items() if k != "TF_VAR_deletion_protection"}
    assert run_cli("validate", **unset).returncode == 0  # Terraform's default: true
    missing = {**POD_VARIABLES, "TF_VAR_domain_name": ""}
    assert run_cli("validate", ACTION="apply", PLAN_RUN_ID="7", **missing).returncode == 0


def test_the_repository_variables_are_checked_with_terraforms_own_patterns():
    variables_tf = (REPO_ROOT / "terraform" / "variables.tf").read_text()
    for name, _variable, pattern, _message in podspec.POD_VARIABLES[:2]:
        hcl = pattern.replace("\\", "\\\\")  # HCL strings escape a backslash
        assert f'regex("{hcl}", var.{name.removeprefix("TF_VAR_")})' in variables_tf
