"""The pages the other browser tests only count (login, search, a pod's page) and the refusal a
busy pod gives (409), audited as every other page: axe-core at desktop and phone sizes with no
serious or critical violation, and no sideways scrolling on a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in
from tests.e2e.test_journey_figures import release
from tests.e2e.test_live_and_accessible import (  # noqa: F401 (axe_source and desktop are fixtures)
    audit,
    axe_source,
    deploy_button,
    desktop,
    watched_page,
)

pytestmark = pytest.mark.e2e

POD = "acme/staging"
TYPES = ("t3.small", "t3.medium", "m5.large")


def preview_a_change(page, instance_type: str) -> None:
    page.goto(f"/pods/{POD}/edit/")
    page.select_option("#id_instance_type", instance_type)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("h1")).to_have_text(f"Preview: update {POD}")


def test_login_search_pod_page_and_the_busy_refusal_pass_axe_at_both_sizes(
    desktop,  # noqa: F811
    portal,
    axe_source,  # noqa: F811
):
    page = desktop
    page.goto("/accounts/login/")
    audit(page, axe_source, "login")
    log_in(page, "dana")
    page.goto("/?q=acme")
    expect(page.get_by_role("link", name=POD, exact=True)).to_be_visible()
    audit(page, axe_source, "search")
    page.goto(f"/pods/{POD}/")
    expect(page.locator("h1")).to_have_text(f"Pod {POD}")
    audit(page, axe_source, "pod-page")

    # Two previews of one change, as from two tabs: the first deploys, the second is refused
    # with 409 and the operator's values kept.
    release(page, portal, POD)
    page.goto(f"/pods/{POD}/edit/")
    changed = next(t for t in TYPES if t != page.input_value("#id_instance_type"))
    other = watched_page(page.context)  # a second tab of the same session
    preview_a_change(page, changed)
    preview_a_change(other, changed)
    try:
        deploy_button(page, POD).click()
        expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
        with other.expect_response(lambda r: r.request.method == "POST") as refused:
            deploy_button(other, POD).click()
        assert refused.value.status == 409
        expect(other.locator("#error-summary h2")).to_have_text("Deployment in progress")
        expect(other.locator("#id_instance_type")).to_have_value(changed)
        audit(other, axe_source, "busy-409")
    finally:
        release(page, portal, POD)
