"""Review before apply in a real browser (issue 13): plan, a second pair of eyes, apply.

The portal runs under gunicorn as the Dockerfile starts it, with production settings and the
shipped review policy (every pod planned first, prod and production approved by an Approver
who is not the requester), against the GitHub emulator sending its webhooks to the portal, and
notifies a loopback receiver through the signed JSON webhook (``hmac://``). Two people in two
browser contexts: dana (Deployers and Approvers) asks for the change, lead approves it.
dana being an Approver too makes her refused approval the self-approval rule, not the group's.

Screenshots 10-15 under tests/e2e/screenshots/ show the flow.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import expect

from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import PROJECT_PODS, deploy_pod
from tests.e2e.conftest import PASSWORD, SCREENSHOTS, log_in, manage
from tests.production.gunicorn import production_env, running_gunicorn
from tests.receivers import HttpReceiver

pytestmark = pytest.mark.e2e

SIGNING_SECRET = secrets.token_hex(16)
COMMENT = "Checked with the customer: t3.large from tonight."
CREATE_USERS = f"""
from django.contrib.auth.models import Group, User
deployers, approvers = Group.objects.get(name="Deployers"), Group.objects.get(name="Approvers")
for name in ("dana", "lead"):
    User.objects.create_user(name, password="{PASSWORD}").groups.add(deployers, approvers)
"""


@dataclass
class ReviewPortal:
    url: str
    github: FakeGitHub
    receiver: HttpReceiver


@pytest.fixture(scope="module")
def review_portal(chromium_path, tmp_path_factory) -> Iterator[ReviewPortal]:
    workdir = tmp_path_factory.mktemp("e2e-review")
    webhook_secret = secrets.token_hex(16)
    # Runs move only when the test says so: each page is seen in the state it names.
    github = FakeGitHub(
        repo="demo/pods", specs_dir=PROJECT_PODS, webhook_secret=webhook_secret, workflow_effect=deploy_pod
    ).start()
    receiver = HttpReceiver()
    env = production_env(
        workdir,
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
        GH_TOKEN=github.token,
        GH_REPO="demo/pods",
        GITHUB_API_URL=github.api_url,
        GITHUB_WEBHOOK_SECRET=webhook_secret,
        # The shipped review policy, which the test environment (tests/environment.py) overrides.
        AUTO_APPLY_ENVIRONMENTS="",
        APPROVAL_REQUIRED_ENVIRONMENTS="prod,production",
        NOTIFY_URLS=f"hmac://127.0.0.1:{receiver.port}/portal-events",
        NOTIFY_SIGNING_SECRET=SIGNING_SECRET,
    )
    try:
        # Production serves the hashed files collected here; workers collect in turn, not at once.
        with open(tmp_path_factory.getbasetemp().parent / "collectstatic.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manage("collectstatic", "--noinput", env=env)
        with running_gunicorn(workdir, env, setup=CREATE_USERS) as server:
            url = f"http://127.0.0.1:{server.port}"
            github.webhook_url = f"{url}/webhooks/github"
            yield ReviewPortal(url=url, github=github, receiver=receiver)
    finally:
        github.stop()
        receiver.close()


def new_page(browser, portal: ReviewPortal):
    context = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    return context.new_page()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def dispatched(github: FakeGitHub) -> list[dict]:
    """The inputs of every workflow dispatch the emulator received, in order."""
    return [
        r.json["inputs"]
        for r in github.requests
        if r.method == "POST" and r.path.endswith("/actions/workflows/deploy-pod.yml/dispatches")
    ]


def run_for(github: FakeGitHub, action: str) -> dict:
    [run] = [run for run in github.runs if run["inputs"].get("action") == action]
    return run


def test_plan_approval_by_another_person_and_apply(browser, review_portal):
    portal, github = review_portal, review_portal.github
    dana = new_page(browser, portal)
    log_in(dana, "dana")
    expect(dana).to_have_url(f"{portal.url}/")

    # dana edits acme/prod and previews: the button plans, and says an Approver must approve.
    dana.goto("/pods/acme/prod/edit/")
    expect(dana.locator("h1")).to_have_text("Edit pod acme/prod", timeout=15_000)
    dana.select_option("#id_instance_type", "t3.large")
    dana.get_by_role("button", name="Preview").click()
    expect(dana.locator("h1")).to_have_text("Preview: update acme/prod", timeout=15_000)
    expect(dana.locator(".add", has_text="+instance_type: t3.large")).to_be_visible()
    expect(dana.locator("main")).to_contain_text("once an Approver other than you approves it")
    shot(dana, "10-review-preview")

    # Plan: one dispatch in plan mode; the page says Terraform is planning.
    dana.get_by_role("button", name="Plan deployment of acme/prod").click()
    expect(dana).to_have_url(re.compile(r"/requests/\d+/$"), timeout=15_000)
    request_path = dana.url.removeprefix(portal.url)
    expect(dana.locator("h1")).to_have_text("Planning: acme/prod", timeout=15_000)
    expect(dana.locator("main")).to_contain_text("the plan appears here when the plan run finishes")
    plan_run = run_for(github, "plan")
    assert [i["action"] for i in dispatched(github)] == ["plan"]
    assert (plan_run["inputs"]["customer"], plan_run["inputs"]["environment"]) == ("acme", "prod")
    expect(dana.locator("#run-link")).to_have_attribute("href", plan_run["html_url"])
    shot(dana, "11-review-planning")

    # The plan run finishes on GitHub; its webhooks reach the portal, which reads the summary.
    # The page refreshes itself while the plan runs: no reload from the test.
    github.complete_run(plan_run["id"])
    expect(dana.locator("h1")).to_have_text("Waiting for approval: acme/prod", timeout=30_000)
    expect(dana.locator("#plan-counts")).to_have_text("0 to add, 1 to change, 0 to replace, 0 to destroy")
    row = dana.locator("table.plan tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("update")
    expect(row).to_contain_text("instance_type: t3.medium → t3.large")
    expect(dana.locator(".plan-warning")).to_have_count(0)
    expect(dana.locator("#own-approval")).to_have_text(
        "You requested this deployment: another Approver must approve it."
    )
    expect(dana.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    expect(dana.locator("#plan-run-link")).to_have_attribute("href", plan_run["html_url"])
    shot(dana, "12-review-awaiting-approval")

    # dana approving her own request anyway (her cancel form sent to the approve URL): refused.
    dana.locator(f'form[action="{request_path}cancel/"]').evaluate(
        "(form, action) => { form.action = action; }", f"{request_path}approve/"
    )
    with dana.expect_navigation() as refused:
        dana.get_by_role("button", name="Cancel request").click()
    assert refused.value.status == 403
    expect(dana.locator("main")).to_contain_text(
        "You requested this deployment, so you cannot approve or reject it yourself: "
        "another Approver must review it."
    )
    shot(dana, "13-review-self-approval-refused")
    assert [i["action"] for i in dispatched(github)] == ["plan"]

    # lead, in a browser of his own, sees the plan and approves it with a comment.
    lead = new_page(browser, portal)
    log_in(lead, "lead")
    expect(lead).to_have_url(f"{portal.url}/")
    lead.goto(request_path)
    expect(lead.locator("h1")).to_have_text("Waiting for approval: acme/prod", timeout=15_000)
    expect(lead.locator("#plan-counts")).to_have_text("0 to add, 1 to change, 0 to replace, 0 to destroy")
    lead.fill("#review-comment", COMMENT)
    shot(lead, "14-review-approver")
    lead.get_by_role("button", name="Approve and apply to acme/prod").click()
    expect(lead).to_have_url(f"{portal.url}{request_path}", timeout=15_000)
    expect(lead.locator("h1")).to_have_text("Deployment started: acme/prod", timeout=15_000)

    # One apply dispatch, of exactly the plan run's saved plan.
    apply_run = run_for(github, "apply")
    plan_inputs, apply_inputs = dispatched(github)
    assert apply_inputs["action"] == "apply" and apply_inputs["plan_run_id"] == str(plan_run["id"])
    assert {k: v for k, v in apply_inputs.items() if k not in ("action", "plan_run_id")} == {
        k: v for k, v in plan_inputs.items() if k not in ("action", "plan_run_id")
    }

    # The apply run finishes; both people's pages reach the end by themselves.
    github.complete_run(apply_run["id"])
    for page in (lead, dana):
        if page is dana:
            page.goto(request_path)
        expect(page.locator("h1")).to_have_text("Deployment finished: acme/prod", timeout=30_000)
        expect(page.locator(".badge").first).to_have_text("success")
        expect(page.locator("#plan-run-link")).to_have_attribute("href", plan_run["html_url"])
        expect(page.locator("#run-link")).to_have_attribute("href", apply_run["html_url"])
        expect(page.locator("#review")).to_contain_text("Approved by lead at")
        expect(page.locator("#review")).to_contain_text(f"“{COMMENT}”")
    shot(dana, "15-review-finished")
    assert "instance_type: t3.large" in github.files["pods/acme/prod/spec.yml"]
    assert len(dispatched(github)) == 2

    # The receiver got the wait for approval and the success, each signed with the secret.
    received = portal.receiver.wait_for(2, timeout=15)
    assert [r.headers["X-Portal-Event"] for r in received] == ["awaiting_approval", "succeeded"]
    for notification in received:
        expected = (
            "sha256=" + hmac.new(SIGNING_SECRET.encode(), notification.body, hashlib.sha256).hexdigest()
        )
        assert hmac.compare_digest(notification.headers["X-Portal-Signature-256"], expected)
        assert notification.path == "/portal-events"
    waiting, succeeded = (r.json() for r in received)
    assert (waiting["event"], waiting["pod"], waiting["requester"]) == (
        "awaiting_approval",
        "acme/prod",
        "dana",
    )
    assert waiting["status"] == "awaiting_approval" and waiting["reviewer"] is None
    assert (succeeded["event"], succeeded["pod"], succeeded["reviewer"]) == ("succeeded", "acme/prod", "lead")
    assert (succeeded["status"], succeeded["conclusion"]) == ("completed", "success")
    assert waiting["request"] == succeeded["request"] == int(request_path.strip("/").split("/")[-1])
    dana.context.close()
    lead.context.close()
