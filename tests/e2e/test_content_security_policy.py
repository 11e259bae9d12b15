"""The main pages, the admin included, work in Chromium under the Content-Security-Policy and
report no violation of it."""

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in

pytestmark = pytest.mark.e2e

# Runs in every document before its own scripts; an init script is not subject to the page's CSP.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(
    `${location.pathname}: ${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`
    + ` (${event.sourceFile || "document"}:${event.lineNumber})`
  );
});
"""


@pytest.fixture
def violations(page) -> list[str]:
    reported: list[str] = []
    page.expose_function("reportCspViolation", lambda text: reported.append(text))
    page.add_init_script(REPORT_VIOLATIONS)

    def on_console(message) -> None:
        # Chromium also explains each refusal on the console.
        if "Content Security Policy" in message.text:
            reported.append(message.text)

    page.on("console", on_console)
    return reported


def visit(page, path: str) -> None:
    response = page.goto(path)
    assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]


def settled(page, violations: list[str]) -> list[str]:
    """Violations so far, once the page has loaded and its reports have reached the test."""
    page.wait_for_load_state("load")
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 50))")
    return violations


def test_anonymous_pages_work_under_the_policy(page, violations):
    visit(page, "/accounts/login/")
    expect(page.locator("#id_username")).to_be_visible()
    visit(page, "/admin/login/")
    expect(page.locator("#id_username")).to_be_visible()
    visit(page, "/no/such/page/")
    expect(page.locator("h1")).to_have_text("Not Found")

    page.goto("/accounts/login/")
    for attempt in range(5):
        page.fill("#id_username", "mallory")
        page.fill("#id_password", f"guess-{attempt}")
        page.click("button[type=submit]")
        if attempt < 4:
            expect(page.locator(".errorlist")).to_be_visible()
    expect(page.locator("h1")).to_have_text("Sign-in locked")

    assert settled(page, violations) == []


def test_portal_pages_work_under_the_policy(page, violations):
    log_in(page, "dana")
    expect(page.locator("tbody tr").first).to_be_visible()
    assert settled(page, violations) == []

    visit(page, "/pods/initech/prod/edit/")
    page.select_option("#id_instance_type", "c6i.2xlarge")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("h1")).to_have_text("Preview: update initech/prod")
    expect(page.locator(".add", has_text="+instance_type: c6i.2xlarge")).to_be_visible()
    assert settled(page, violations) == []

    page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    expect(page.locator("h1")).to_contain_text("initech/prod")
    assert settled(page, violations) == []

    visit(page, "/requests/?pod=initech")
    expect(page.locator("tbody tr").first).to_contain_text("initech/prod")
    assert settled(page, violations) == []


def test_admin_pages_work_under_the_policy(page, violations):
    log_in(page, "admin")
    visit(page, "/admin/")
    expect(page.locator("#site-name")).to_contain_text("Pod Deployment Portal")
    assert settled(page, violations) == []

    visit(page, "/admin/auth/user/")
    rows = page.locator("#result_list input.action-select")
    expect(rows).to_have_count(2)
    page.click("#action-toggle")  # the admin's select-all checkbox (actions.js)
    expect(rows.nth(0)).to_be_checked()
    expect(rows.nth(1)).to_be_checked()
    expect(page.locator(".action-counter")).to_have_text("2 of 2 selected")
    assert settled(page, violations) == []

    visit(page, "/admin/axes/accessattempt/")
    expect(page.locator("h1")).to_have_text("Select access attempt to change")
    visit(page, "/admin/auth/user/add/")
    expect(page.locator("#id_username")).to_be_visible()
    assert settled(page, violations) == []


def test_a_violation_would_be_reported(page, violations):
    # The listener above is what the other tests rely on: an inline script must show up in it.
    visit(page, "/accounts/login/")
    page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.inlineRan = true";
        document.body.append(script);
    }""")
    assert page.evaluate("window.inlineRan") is None
    assert any("script-src" in v for v in settled(page, violations))
