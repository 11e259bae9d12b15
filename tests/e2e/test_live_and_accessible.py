"""Operators watch a deployment on its request page in Chromium: it follows the run without a
reload (htmx polling a fragment), announces the change and shows it in the tab title, says
why a run failed, and every page passes axe-core with no serious or critical violation at
desktop (1366×800) and phone (390×844) sizes, without horizontal scrolling on the phone.

axe-core comes from npm (tests/e2e/package-lock.json, installed by scripts/ensure_axe.sh).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from fakegithub.state import RunOutcome
from tests.e2e.conftest import SCREENSHOTS, log_in

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1366, "height": 800}
PHONE = {"width": 390, "height": 844}
RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
  }));
}"""
# Every axe finding, by page and size, for the record (tests/e2e/screenshots/axe-report.json).
FINDINGS: dict[str, list[dict]] = {}


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        message = f"{AXE} is missing: run scripts/ensure_axe.sh (make test does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return AXE.read_text()


@pytest.fixture
def desktop(browser, portal):
    context = browser.new_context(base_url=portal.url, viewport=DESKTOP)
    context.set_default_timeout(15_000)
    page = watched_page(context)
    yield page
    context.close()
    SCREENSHOTS.mkdir(exist_ok=True)
    (SCREENSHOTS / f"axe-report-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.json").write_text(
        json.dumps(FINDINGS, indent=1, sort_keys=True)
    )


def watched_page(context):
    """A new page of ``context`` whose Content-Security-Policy violations ``audit`` asserts are none."""
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.csp_violations = violations
    return page


def audit(page, axe_source: str, name: str) -> None:
    """axe-core at desktop and phone sizes (no serious or critical violation), no horizontal
    scroll on the phone, and a screenshot of each; the page is left at desktop size."""
    for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.evaluate(axe_source)
        found = page.evaluate(RUN_AXE)
        FINDINGS[f"{name} ({size})"] = found
        page.screenshot(path=str(SCREENSHOTS / f"20-{name}-{size}.png"), full_page=True)
        bad = [v for v in found if v["impact"] in ("serious", "critical")]
        assert bad == [], f"{name} at {size} size: {bad}"
        if size == "phone":
            width = page.evaluate("() => document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{name} scrolls sideways on a phone: {width}px wide"
    page.set_viewport_size(DESKTOP)
    assert page.csp_violations == []


def deploy_button(page, pod: str):
    """The preview's button: "Plan deployment of <pod>" (the shipped review policy) or "Deploy <pod>"."""
    # A "/" in the pattern would end Playwright's /regex/ selector early: match it as [/].
    return page.get_by_role(
        "button", name=re.compile(r"^(Plan deployment of|Deploy) " + pod.replace("/", "[/]") + "$")
    )


def navigations(page) -> list[str]:
    """The main frame's navigations from now on (a reload would be one)."""
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    return seen


def submit_change(page, pod: str, instance_type: str) -> None:
    customer, environment = pod.split("/")
    page.goto(f"/pods/{customer}/{environment}/edit/")
    page.select_option("#id_instance_type", instance_type)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("h1")).to_have_text(f"Preview: update {pod}")
    deploy_button(page, pod).click()
    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))


def open_runs(github) -> list[int]:
    return [run["id"] for run in github.runs if run["status"] != "completed"]


def test_request_page_follows_the_run_without_reloading(desktop, portal, axe_source):
    page = desktop
    log_in(page, "dana")
    audit(page, axe_source, "pods")
    portal.github.queued_for = 600  # runs wait until the test completes them
    try:
        page.goto("/pods/umbrella/dev/edit/")
        audit(page, axe_source, "edit")
        page.select_option("#id_instance_type", "t3.small")
        page.get_by_role("button", name="Preview").click()
        audit(page, axe_source, "preview")
        deploy_button(page, "umbrella/dev").click()
        expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
        moved = navigations(page)
        expect(page.locator("#run-link")).to_have_text(re.compile(r"^Run #\d+ ↗"))
        audit(page, axe_source, "request-active")

        [run_id] = open_runs(portal.github)
        portal.github.complete_run(run_id)
        headline = page.locator("h1")
        expect(headline).to_have_text(
            re.compile(r"^(Plan ready for review|Deployment finished): umbrella/dev$"), timeout=20_000
        )
        if headline.inner_text().startswith("Plan ready"):  # the shipped policy: a plan first
            expect(page).to_have_title(re.compile(r"^Request #\d+ · planned · "))
            expect(page.locator("#live-announcer")).to_have_text(
                re.compile("^Plan ready for review: umbrella/dev")
            )
            expect(page.locator("#request-live")).to_have_attribute("hx-trigger", "every 30s")
            assert moved == [], "the page reloaded"
            audit(page, axe_source, "request-planned")
            page.get_by_role("button", name="Apply this plan to umbrella/dev").click()
            expect(page.locator("h1")).to_have_text("Deployment started: umbrella/dev")
            moved.clear()
            [run_id] = open_runs(portal.github)

            pods = page.context.new_page()
            pods.goto("/")
            expect(pods.locator("#running-now")).to_contain_text("umbrella/dev")
            portal.github.complete_run(run_id)
            expect(headline).to_have_text("Deployment finished: umbrella/dev", timeout=20_000)
            # The pods page follows too: its Running now list and the pod's last deployment.
            # Other tests share this portal and may leave their own requests running or waiting.
            expect(pods.locator("#running-now")).not_to_contain_text("umbrella/dev", timeout=20_000)
            expect(pods.locator("#last-umbrella-dev")).to_contain_text("success")
            pods.close()
        assert moved == [], "the page reloaded"
        expect(page).to_have_title(re.compile(r"^Request #\d+ · success · "))
        expect(page.locator("#live-announcer")).to_have_text(re.compile("^Deployment finished: umbrella/dev"))
        expect(page.locator(".badge").first).to_have_text("success")
        expect(page.locator("#status-card")).to_contain_text(re.compile(r"took (\d+ min )?\d+ s"))
        expect(page.locator("#request-live")).not_to_have_attribute("hx-trigger", re.compile(".*"))
        # Times read in the viewer's zone, UTC on hover.
        expect(page.locator("#timeline time").first).to_have_attribute("title", re.compile(r" UTC$"))
        audit(page, axe_source, "request-success")
        page.emulate_media(color_scheme="dark")  # the dark theme passes too (contrast included)
        audit(page, axe_source, "request-success-dark")
        page.goto("/")
        audit(page, axe_source, "pods-dark")
        page.emulate_media(color_scheme="light")

        page.goto("/requests/")
        audit(page, axe_source, "history")
        expect(page.get_by_role("link", name=re.compile(r"^Request #\d+$")).first).to_be_visible()
    finally:
        portal.github.queued_for = 1.0
        for run_id in open_runs(portal.github):
            portal.github.complete_run(run_id)


def test_a_failed_run_is_explained_on_the_page_as_it_ends(desktop, portal, axe_source):
    page = desktop
    log_in(page, "dana")
    portal.github.queued_for = 600
    try:
        submit_change(page, "globex/staging", "m6i.large")
        moved = navigations(page)
        [run_id] = open_runs(portal.github)
        outcome = RunOutcome(
            conclusion="failure",
            failed_step="Terraform plan",
            annotations=[{"title": "Terraform", "message": "Error: No valid credential sources found"}],
        )
        portal.github.complete_run(run_id, outcome=outcome)
        failure = page.locator("#failure")
        expect(failure).to_contain_text("Failed at step “Terraform plan”", timeout=20_000)
        expect(failure).to_contain_text("No valid credential sources found")
        expect(page.locator("h1")).to_have_text(re.compile(r"failed: globex/staging$"))
        expect(page.locator("#timeline li.failed").last).to_be_visible()
        expect(page.get_by_role("link", name="Edit pod").first).to_be_visible()
        expect(page.get_by_role("button", name=re.compile("^Try again"))).to_be_visible()
        assert moved == [], "the page reloaded"
        audit(page, axe_source, "request-failed")
    finally:
        portal.github.queued_for = 1.0
        for run_id in open_runs(portal.github):
            portal.github.complete_run(run_id)


def test_form_errors_are_named_by_label_and_take_the_focus(desktop, portal, axe_source):
    page = desktop
    log_in(page, "dana")
    page.goto("/pods/new/")
    audit(page, axe_source, "new")
    page.fill("#id_customer", "hooli")
    page.fill("#id_environment", "qa")
    page.fill("#id_instance_name", "Bad_Name")
    page.select_option("#id_instance_type", "t3.small")
    page.get_by_role("button", name="Preview").click()
    name = page.locator("#id_instance_name")
    expect(name).to_be_focused()
    expect(name).to_have_attribute("aria-describedby", "id_instance_name_error")
    expect(page.locator("#id_instance_name_error")).to_have_text(re.compile("^Instance name must be 3-63"))
    expect(page.locator(".error-summary a[href='#id_instance_name']")).to_be_visible()
    expect(page.locator("#id_customer")).to_have_value("hooli")
    audit(page, axe_source, "validation-error")

    page.goto("/pods/new/")
    page.fill("#id_customer", "acme")
    page.fill("#id_environment", "prod")
    page.fill("#id_instance_name", "acme-prod-other")
    page.select_option("#id_instance_type", "t3.small")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".error-summary")).to_contain_text("Pod acme/prod already exists.")
    expect(page.locator(".error-summary")).to_be_focused()
    expect(page.locator("#id_instance_name")).to_have_value("acme-prod-other")  # kept
    audit(page, axe_source, "duplicate-pod")


def test_a_plan_waiting_for_approval_is_polled_slowly_and_accessible(desktop, portal, axe_source):
    page = desktop
    log_in(page, "dana")
    portal.github.queued_for = 600
    try:
        page.goto("/pods/new/")
        page.fill("#id_customer", "hooli")
        page.fill("#id_environment", "prod")
        page.fill("#id_instance_name", "hooli-prod-web")
        page.select_option("#id_instance_type", "t3.small")
        page.get_by_role("button", name="Preview").click()
        deploy_button(page, "hooli/prod").click()
        expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
        [run_id] = open_runs(portal.github)
        portal.github.complete_run(run_id)
        expect(page.locator("h1")).to_have_text(
            re.compile(r"^(Waiting for approval|Deployment finished): hooli/prod$"), timeout=20_000
        )
        if page.locator("h1").inner_text().startswith("Waiting"):
            expect(page.locator("#request-live")).to_have_attribute("hx-trigger", "every 30s")
            expect(page.locator("#own-approval")).to_be_visible()
        audit(page, axe_source, "request-awaiting-approval")
    finally:
        portal.github.queued_for = 1.0
        for run_id in open_runs(portal.github):
            portal.github.complete_run(run_id)
