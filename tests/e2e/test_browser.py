"""A deployer's day in a real browser: log in, edit, preview, deploy, watch it finish, audit."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import SCREENSHOTS, log_in

pytestmark = pytest.mark.e2e


def test_edit_preview_deploy_follow_and_audit(page, portal, screenshot, browser):
    log_in(page, "dana")
    expect(page).to_have_url(f"{portal.url}/")
    acme = page.locator("tr", has=page.locator("td", has_text=re.compile(r"^acme/prod$")))
    expect(acme).to_contain_text("acme-prod-web")
    expect(acme).to_contain_text("t3.medium")
    expect(page.locator("tbody tr")).to_have_count(6)
    screenshot("01-pods")

    acme.get_by_role("link", name="Edit").click()
    expect(page.locator("h1")).to_have_text("Edit pod acme/prod")
    page.select_option("#id_instance_type", "t3.large")
    expect(page.locator("#id_waf_enabled")).to_be_checked()
    page.uncheck("#id_waf_enabled")
    screenshot("02-edit")

    page.get_by_role("button", name="Preview").click()
    expect(page.locator("h1")).to_have_text("Preview: update acme/prod")
    expect(page.locator(".del", has_text="-instance_type: t3.medium")).to_be_visible()
    expect(page.locator(".add", has_text="+instance_type: t3.large")).to_be_visible()
    expect(page.locator(".add", has_text="+waf_enabled: false")).to_be_visible()
    screenshot("03-preview")

    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    run_link = page.locator("#run-link")
    expect(run_link).to_have_attribute(
        "href", re.compile(rf"^{portal.github.url}/demo/pods/actions/runs/\d+$")
    )
    screenshot("04-request-active")
    # No reload from the test: the page follows the run in place until it is over.
    headline = page.locator("h1")
    expect(headline).to_have_text(
        re.compile(r"^(Waiting for approval|Deployment finished): acme/prod$"), timeout=30_000
    )
    if headline.inner_text().startswith("Waiting"):  # the shipped policy: prod needs another Approver
        approver = browser.new_context(
            base_url=portal.url, viewport={"width": 1280, "height": 860}
        ).new_page()
        log_in(approver, "admin")
        approver.goto(page.url.removeprefix(portal.url))
        approver.fill("#review-comment", "Looks right.")
        approver.get_by_role("button", name="Approve and apply to acme/prod").click()
        expect(approver.locator("h1")).to_have_text("Deployment started: acme/prod")
        approver.context.close()
    expect(headline).to_have_text("Deployment finished: acme/prod", timeout=30_000)
    expect(page.locator(".badge").first).to_have_text("success")
    screenshot("05-request-success")
    request_path = page.url.removeprefix(portal.url)

    page.goto("/")
    acme = page.locator("tr", has=page.locator("td", has_text=re.compile(r"^acme/prod$")))
    expect(acme).to_contain_text("t3.large")
    expect(acme.locator("td").nth(3)).to_have_text("off")
    expect(acme).to_contain_text("success")
    screenshot("06-pods-after")

    admin = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 860}).new_page()
    log_in(admin, "admin")
    admin.goto("/admin/deployments/deploymentrequest/")
    row = admin.locator("#result_list tbody tr").first
    expect(row).to_contain_text("acme")
    expect(row).to_contain_text("dana")
    expect(
        admin.locator(f'#result_list a[href*="{request_path.strip("/").split("/")[-1]}"]').first
    ).to_be_visible()
    admin.screenshot(path=str(SCREENSHOTS / "07-admin-history.png"), full_page=True)
    admin.context.close()


def test_validation_error_is_shown_next_to_its_field(page, screenshot):
    log_in(page, "dana")
    page.goto("/pods/new/")
    page.fill("#id_customer", "hooli")
    page.fill("#id_environment", "prod")
    page.fill("#id_instance_name", "Bad_Name")
    page.select_option("#id_instance_type", "t3.small")
    page.get_by_role("button", name="Preview").click()
    errors = page.locator("#id_instance_name_error")
    expect(errors).to_contain_text("Instance name must be 3-63 lowercase letters")
    field_row = page.locator(".form-row", has=page.locator("#id_instance_name"))
    expect(field_row.locator(".errorlist")).to_be_visible()
    expect(page.locator("#id_customer")).to_have_value("hooli")
    screenshot("08-validation-error")


def test_a_busy_pods_preview_names_the_holder_and_offers_no_deploy(page, portal, screenshot):
    portal.github.queued_for = 600  # a slow runner: the first deployment stays active
    try:
        log_in(page, "dana")
        first = deploy_globex(page, "m6i.xlarge")
        assert first.status == 200
        expect(page.locator("h1")).to_have_text(re.compile(r"^(Deployment started|Planning): globex/prod$"))
        # The preview of a busy pod says who holds it and offers no Deploy that would be refused.
        page.goto("/pods/globex/prod/edit/")
        page.select_option("#id_instance_type", "m6i.2xlarge")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#busy-note")).to_contain_text("holds this pod")
        expect(page.get_by_role("button", name=re.compile("globex[/]prod$"))).to_be_disabled()
        screenshot("09-deployment-in-progress")
    finally:
        portal.github.queued_for = 1.0
        for run in portal.github.runs:
            if run["status"] != "completed":
                portal.github.complete_run(run["id"])


def deploy_globex(page, instance_type: str):
    page.goto("/pods/globex/prod/edit/")
    page.select_option("#id_instance_type", instance_type)
    page.get_by_role("button", name="Preview").click()
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Deploy").click()
    # The redirect's target (200) or the refusal (409) is what the user ends up seeing.
    return navigation.value
