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
