"""A way back, in a real browser (issue 14): a pod's history shows a change made outside the
portal; rolling back to the version before it previews the reverse change, plans, applies and
leaves the pod in sync with its last deployment."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from deployments import podspec
from tests.e2e.conftest import log_in

pytestmark = pytest.mark.e2e

UMBRELLA_DEV = "pods/umbrella/dev/spec.yml"


def test_roll_back_a_change_made_outside_the_portal(page, portal, screenshot):
    # The portal and its emulator are shared by the session's browser tests: start from the
    # example spec whatever an earlier test deployed.
    example = podspec.render(podspec.PodSpec("umbrella", "dev", "umbrella-dev-web", "t3.micro", False))
    if portal.github.files[UMBRELLA_DEV] != example:
        portal.github.put_file(UMBRELLA_DEV, example, message="Back to the example spec")
    seed = portal.github.head_sha
    before = portal.github.files[UMBRELLA_DEV]
    assert "instance_type: t3.micro" in before
    changed = podspec.PodSpec("umbrella", "dev", "umbrella-dev-web", "t3.small", False)
    portal.github.put_file(UMBRELLA_DEV, podspec.render(changed), message="Resize umbrella/dev by hand")

    log_in(page, "dana")
    page.goto("/")
    page.get_by_role("link", name="umbrella/dev", exact=True).click()
    expect(page.locator("h1")).to_have_text("Pod umbrella/dev")
    history = page.locator("#spec-history tbody tr")
    expect(history.first).to_contain_text("Resize umbrella/dev by hand")
    expect(history.first).to_contain_text("changed outside the portal")
    screenshot("20-pod-history")

    page.locator(f"#commit-{seed[:7]}").get_by_role("link", name=re.compile("roll back")).click()
    expect(page.locator(".del", has_text="-instance_type: t3.micro")).to_be_visible()
    page.get_by_role("button", name="Roll back to this version").click()

    expect(page.locator("h1")).to_have_text("Preview: update umbrella/dev")
    expect(page.locator("#provenance")).to_contain_text(f"Roll back to version {seed[:7]}")
    expect(page.locator(".del", has_text="-instance_type: t3.small")).to_be_visible()
    expect(page.locator(".add", has_text="+instance_type: t3.micro")).to_be_visible()
    screenshot("21-rollback-preview")
    # "/" ends a regular expression in Playwright's selector: "." stands for it.
    page.get_by_role("button", name=re.compile(r"^(Plan deployment of|Deploy) umbrella.dev$")).click()

    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    headline = page.locator("h1")
    expect(headline).to_have_text(
        re.compile(r"^(Plan ready for review|Deployment finished): umbrella/dev$"), timeout=30_000
    )
    if headline.inner_text().startswith("Plan ready"):
        page.get_by_role("button", name="Apply this plan to umbrella/dev").click()
    expect(headline).to_have_text("Deployment finished: umbrella/dev", timeout=30_000)
    expect(page.locator("#provenance")).to_contain_text(f"Rolled back to {seed[:7]}")
    assert portal.github.files[UMBRELLA_DEV] == before
    screenshot("22-rolled-back")

    page.goto("/pods/umbrella/dev/")
    expect(page.locator("#drift")).to_contain_text("in sync")
    expect(page.locator("#spec-history tbody tr").first).not_to_contain_text("changed outside the portal")
