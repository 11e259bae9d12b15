"""The README's "Automating deployments" curl examples, run as written (bash, curl) against a
live portal (pytest-django's live server) talking to the GitHub emulator, with the shipped review
policy: the deployment is planned, waits for approval, and another person's token approves it."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.api.conftest import token_for
from tests.helpers import dispatches, logged_in_client, make_user, replay

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = pytest.mark.usefixtures("review_flow")


def examples() -> list[str]:
    section = README.read_text().split("\n## Automating deployments\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def run(example: str, env: dict) -> dict:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_run_against_a_live_portal(gh_tx, live_server):
    dana = make_user(username="dana", deployer=True)
    lead = make_user(username="lead", deployer=True, approver=True)
    env = {"PORTAL_URL": live_server.url, "PORTAL_TOKEN": token_for(dana), "APPROVER_TOKEN": token_for(lead)}
    pods, create, follow, approve = examples()

    listed = run(pods, env)
    assert "acme" in {pod["customer"] for pod in listed["pods"]}

    created = run(create, env)
    assert (created["status"], created["requested_by"], created["pod"]) == ("planning", "dana", "acme/prod")
    env["REQUEST_ID"] = str(created["id"])
    gh_tx.complete_run(created["run_id"])
    webhooks = logged_in_client(lead)
    for delivery in gh_tx.deliveries:
        assert replay(webhooks, delivery).status_code in (200, 202)

    followed = run(follow, env)
    assert followed["status"] == "awaiting_approval" and followed["plan_summary"]["counts"]["update"] == 1

    approved = run(approve, env)
    assert (approved["status"], approved["reviewed_by"], approved["review_comment"]) == (
        "dispatched",
        "lead",
        "Looks right",
    )
    assert [sent.json["inputs"]["action"] for sent in dispatches(gh_tx)] == ["plan", "apply"]
