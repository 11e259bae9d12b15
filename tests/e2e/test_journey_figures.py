"""Figures for the record, printed with ``-s``: the operator's journey from the pods page to the
run's link (clicks and seconds, at desktop size), and axe-core's violations by impact on each page
of the portal now. The test also holds them to what the portal promises: the journey ends on the
request page with "Run #N ↗" in at most 4 clicks and 1 field change (3 today: Edit, Preview,
Deploy), and no page has a serious or critical violation.

    .venv/bin/python -m pytest tests/e2e/test_journey_figures.py -s -p no:randomly
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import SCREENSHOTS, log_in
from tests.e2e.test_live_and_accessible import (  # noqa: F401 (axe_source is a fixture)
    DESKTOP,
    RUN_AXE,
    axe_source,
    deploy_button,
    open_runs,
)

pytestmark = pytest.mark.e2e


# Every click and field change the person makes, counted by the page itself (in sessionStorage,
# which outlives the journey's navigations in the tab), so the figures are measured, not tallied.
COUNT_INPUT = """
for (const kind of ["click", "change"]) {
  document.addEventListener(kind, () => {
    const key = "journey-" + kind;
    sessionStorage.setItem(key, String(Number(sessionStorage.getItem(key) || 0) + 1));
  }, true);
}
"""


def counted(page, kind: str) -> int:
    return int(page.evaluate("k => Number(sessionStorage.getItem('journey-' + k) || 0)", kind))


def impacts(page, axe_source: str) -> dict[str, int]:  # noqa: F811
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    found = page.evaluate(RUN_AXE)
    return dict(Counter(v["impact"] or "none" for v in found))


def release(page, portal, pod: str) -> None:
    """The session's portal is shared: end whatever an earlier test left holding ``pod`` (a run,
    or a plan waiting for review), through the pages, before the journey is timed."""
    for run_id in open_runs(portal.github):
        portal.github.complete_run(run_id)
    page.goto(f"/pods/{pod}/edit/")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("h1")).to_have_text(f"Preview: update {pod}")
    holder = page.locator("#busy-note a")
    if holder.count():
        holder.click()
        page.get_by_role("button", name="Cancel request").click()
        expect(page.locator("h1")).to_have_text(f"Request cancelled: {pod}")


def test_journey_from_the_pods_page_to_the_run_link_and_axe_counts(browser, portal, axe_source):  # noqa: F811
    context = browser.new_context(base_url=portal.url, viewport=DESKTOP)
    context.set_default_timeout(20_000)
    context.add_init_script(COUNT_INPUT)
    page = context.new_page()
    counts: dict[str, dict[str, int]] = {}
    try:
        page.goto("/accounts/login/")
        counts["login"] = impacts(page, axe_source)
        log_in(page, "dana")
        release(page, portal, "initech/prod")
        portal.github.queued_for = 600  # the run stays active until the test completes it

        # The journey, timed from the pods page being shown to the run's link being shown.
        page.goto("/")
        expect(page.locator("h1")).to_be_visible()
        page.evaluate("() => sessionStorage.clear()")  # the log-in's clicks are not the journey's
        started = time.perf_counter()
        page.get_by_role("link", name="Edit initech/prod").click()
        page.select_option("#id_instance_type", "m5.large")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("h1")).to_have_text("Preview: update initech/prod")
        deploy_button(page, "initech/prod").click()
        run_link = page.locator("#run-link")
        expect(run_link).to_have_text(re.compile(r"^Run #\d+ ↗"))
        seconds = time.perf_counter() - started
        clicks, changes = counted(page, "click"), counted(page, "change")
        request_url = page.url

        counts["request-active"] = impacts(page, axe_source)
        [run_id] = open_runs(portal.github)
        portal.github.complete_run(run_id)
        expect(page.locator("h1")).to_have_text(
            re.compile(r"^(Plan ready for review|Waiting for approval|Deployment finished): initech/prod$"),
            timeout=20_000,
        )
        expect(page.locator("#steps")).to_be_visible()
        counts["request-finished"] = impacts(page, axe_source)
        for name, path in (
            ("pods", "/"),
            ("search", "/?q=acme"),
            ("pod", "/pods/acme/prod/"),
            ("edit", "/pods/acme/prod/edit/"),
            ("new", "/pods/new/"),
            ("history", "/requests/"),
        ):
            page.goto(path)
            counts[name] = impacts(page, axe_source)
        page.goto("/pods/new/")
        page.fill("#id_customer", "hooli")
        page.fill("#id_environment", "qa")
        page.fill("#id_instance_name", "Bad_Name")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator(".error-summary")).to_be_visible()
        counts["validation-error"] = impacts(page, axe_source)
        page.goto("/pods/acme/staging/edit/")
        page.select_option("#id_instance_type", "m5.large")
        page.get_by_role("button", name="Preview").click()
        counts["preview"] = impacts(page, axe_source)
        page.goto(request_url)
        counts["request-again"] = impacts(page, axe_source)
    finally:
        portal.github.queued_for = 1.0
        release(page, portal, "initech/prod")  # its plan now waits for approval: free it again
        context.close()

    figures = {
        "journey": {
            "clicks": clicks,
            "field_changes": changes,
            "seconds": round(seconds, 2),
            "viewport": DESKTOP,
        },
        "axe_violations_by_impact": counts,
    }
    SCREENSHOTS.mkdir(exist_ok=True)
    (SCREENSHOTS / "journey-figures.json").write_text(json.dumps(figures, indent=1, sort_keys=True))
    print("\njourney: pods page → Edit → change a field → Preview → Deploy → “Run #N ↗”:")
    print(
        f"  {clicks} clicks + {changes} field change, {seconds:.2f} s "
        f"at {DESKTOP['width']}×{DESKTOP['height']}"
    )
    print("axe-core violations by impact:")
    for name, found in counts.items():
        print(f"  {name:18} {json.dumps(found, sort_keys=True) if found else 'none'}")
    assert clicks <= 4 and changes == 1
    assert all(not found.get("serious") and not found.get("critical") for found in counts.values()), counts
