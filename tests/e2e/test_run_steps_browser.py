"""The request page shows the run's jobs and steps as the run goes, without a reload, at desktop
and phone sizes; the sandbox's failing pod (umbrella/dev: `make run` starts the emulator with
``--fail umbrella/dev``) names the failed step and shows the last lines of its log. axe-core
finds no serious or critical violation on either page, and the phone never scrolls sideways."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in
from tests.e2e.test_live_and_accessible import (  # noqa: F401 (axe_source is a fixture)
    DESKTOP,
    PHONE,
    audit,
    axe_source,
    deploy_button,
    navigations,
    open_runs,
    watched_page,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def sized(browser, portal, request):
    context = browser.new_context(base_url=portal.url, viewport=request.param)
    context.set_default_timeout(20_000)
    page = watched_page(context)
    yield page
    context.close()


def finish_review(page) -> None:
    """Under the shipped review policy the plan comes first: apply it (the run then applies)."""
    headline = page.locator("h1")
    expect(headline).to_have_text(
        re.compile(r"^(Plan ready for review|Deployment (finished|failed)|Plan failed)"), timeout=30_000
    )
    if headline.inner_text().startswith("Plan ready"):
        page.get_by_role("button", name=re.compile(r"^Apply this plan to ")).click()


@pytest.mark.parametrize("sized", [DESKTOP, PHONE], ids=["desktop", "phone"], indirect=True)
def test_request_page_shows_the_steps_and_reaches_success_without_reloading(sized, portal, axe_source):  # noqa: F811
    page = sized
    log_in(page, "dana")
    page.goto("/pods/acme/staging/edit/")
    size = page.viewport_size["width"]
    page.select_option("#id_instance_type", "t3.medium" if size > 400 else "t3.large")
    page.get_by_role("button", name="Preview").click()
    deploy_button(page, "acme/staging").click()
    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    moved = navigations(page)
    finish_review(page)
    moved.clear()  # Apply is a form post (a navigation by design); from here on, none
    expect(page.locator("h1")).to_have_text("Deployment finished: acme/staging", timeout=30_000)
    steps = page.locator("#steps")
    expect(steps).to_be_visible()
    expect(steps.locator("li.step-succeeded", has_text="Terraform apply")).to_be_visible()
    expect(steps.locator("li.step-succeeded", has_text="Set up job")).to_contain_text(re.compile(r"· \d+ s"))
    expect(steps.locator("li.step-running")).to_have_count(0)
    assert moved == [], "the page reloaded"
    audit(page, axe_source, f"request-steps-{'desktop' if size > 400 else 'phone'}")
    page.set_viewport_size(PHONE)
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]


@pytest.mark.parametrize("sized", [DESKTOP, PHONE], ids=["desktop", "phone"], indirect=True)
def test_the_sandbox_failing_pod_names_the_failed_step_and_shows_its_log(sized, portal, axe_source):  # noqa: F811
    page = sized
    log_in(page, "dana")
    portal.github.conclusions["umbrella/dev"] = "failure"  # as `make run` starts the sandbox
    try:
        page.goto("/pods/umbrella/dev/edit/")
        wide = page.viewport_size["width"] > 400
        page.select_option("#id_instance_type", "t3.large" if wide else "t3.medium")
        page.get_by_role("button", name="Preview").click()
        deploy_button(page, "umbrella/dev").click()
        expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
        moved = navigations(page)
        failure = page.locator("#failure")
        # Under the shipped review policy the plan run fails (at "Terraform plan"); in one run, apply.
        expect(failure).to_contain_text(re.compile("Failed at step “Terraform (plan|apply)”"), timeout=30_000)
        step = re.search(r"Terraform (plan|apply)", failure.locator("h2").inner_text()).group(0)
        log = page.locator("#log-tail")
        expect(page.locator("#log-title")).to_have_text(f"Last lines of the log of “{step}”")
        expect(log).to_contain_text(
            "UnauthorizedOperation" if step == "Terraform plan" else "InsufficientInstanceCapacity"
        )
        expect(log).to_contain_text("Error: Process completed with exit code 1.")
        assert "\x1b" not in log.inner_text()
        assert not re.search(r"^\d{4}-\d\d-\d\dT", log.inner_text(), re.M)
        expect(page.locator("#steps li.step-failed")).to_contain_text(step)
        # The box opens on its last line: the error.
        assert log.evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight") <= 1
        expect(failure.get_by_role("link", name=re.compile("^Full log on GitHub"))).to_have_attribute(
            "href", re.compile(r"/actions/runs/\d+/job/\d+$")
        )
        assert moved == [], "the page reloaded"
        size = "desktop" if page.viewport_size["width"] > 400 else "phone"
        audit(page, axe_source, f"request-failed-log-{size}")
        page.set_viewport_size(PHONE)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
        box = page.evaluate(
            "() => { const e = document.querySelector('#log-tail'); return [e.scrollWidth, e.clientWidth]; }"
        )
        assert box[0] <= box[1], f"the log's lines do not wrap: {box}"
    finally:
        portal.github.conclusions.pop("umbrella/dev", None)
        for run_id in open_runs(portal.github):
            portal.github.complete_run(run_id)
