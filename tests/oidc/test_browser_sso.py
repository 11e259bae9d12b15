"""Single sign-on in a real browser (Debian's Chromium via Playwright): the portal (pytest-django's
live server, talking to the GitHub emulator) sends people to a real OpenID Provider on loopback,
whose login page they fill in; the provider's groups decide who may deploy, at every sign-in."""

import os
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.helpers import approvers_group, deployers_group, dispatches
from tests.oidc.conftest import PASSWORD, configure_portal, install_provider, start_provider, stop_provider

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (make test does as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django takes for
    # async code; the portal itself runs in the live server's threads, and the tests' own database
    # calls are synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture(scope="module")
def browser_idp(live_server, tmp_path_factory):
    """A provider whose client is the live portal (its redirect URI on the live server's port)."""
    install_provider(tmp_path_factory.getbasetemp().parent)
    provider = start_provider(tmp_path_factory.mktemp("oidc-browser"), [f"{live_server.url}/oidc/callback/"])
    yield provider
    stop_provider(provider)


@pytest.fixture
def portal(gh_tx, browser_idp, live_server, settings):
    configure_portal(settings, browser_idp)
    # Plain HTTP on loopback: the browser must send the cookies back.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    return live_server.url


def new_page(browser, url):
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    return context.new_page()


def sign_in(page, username: str, *, provider_login: bool = True) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Sign in with Test IdP").click()
    if provider_login:
        expect(page.locator("h1")).to_have_text("Test IdP")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("#signin")
    expect(page.locator("header.top")).to_contain_text(username)


def preview_acme_prod(page) -> None:
    page.goto("/pods/acme/prod/edit/")
    page.select_option("#id_instance_type", "t3.large")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".add", has_text="+instance_type: t3.large")).to_be_visible()


def test_sign_in_through_the_provider_deploy_and_lose_the_right_at_next_sign_in(
    portal, browser, browser_idp, gh_tx
):
    # A transactional test before this one may have flushed the data migration's groups.
    deployers_group()
    approvers_group()
    page = new_page(browser, portal)
    page.goto("/accounts/login/")
    expect(page.get_by_role("link", name="Sign in with Test IdP")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "sso-01-login.png"), full_page=True)
    page.get_by_role("link", name="Sign in with Test IdP").click()
    expect(page).to_have_url(re.compile(rf"^{browser_idp.issuer}/interaction/"))
    page.fill("#username", "lena")
    page.fill("#password", "wrong")
    page.click("#signin")
    expect(page.locator("#error")).to_have_text("Wrong username or password.")
    page.fill("#username", "lena")
    page.fill("#password", PASSWORD)
    page.click("#signin")
    expect(page).to_have_url(f"{portal}/")
    expect(page.locator("header.top")).to_contain_text("lena")
    expect(page.get_by_role("link", name="Admin")).to_be_visible()  # platform-admins → staff

    preview_acme_prod(page)
    page.get_by_role("button", name="Deploy acme/prod").click()
    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    assert len(dispatches(gh_tx)) == 1

    # Removed from every platform group at the provider: the portal session still holds, the
    # next sign-in (the provider's own session skips its login page) takes the rights away.
    browser_idp.set_groups("lena", ["engineering"])
    page.get_by_role("button", name="Log out").click()
    sign_in(page, "lena", provider_login=False)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    preview_acme_prod(page)
    expect(page.get_by_text("You may not deploy: ask to be added to the Deployers group.")).to_be_visible()
    expect(page.get_by_role("button", name="Deploy acme/prod")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "sso-02-no-longer-a-deployer.png"), full_page=True)
    page.context.close()


def test_someone_outside_the_deployers_group_cannot_deploy(portal, browser, gh_tx):
    page = new_page(browser, portal)
    sign_in(page, "bob")
    preview_acme_prod(page)
    expect(page.get_by_text("You may not deploy: ask to be added to the Deployers group.")).to_be_visible()
    page.context.close()
    assert dispatches(gh_tx) == []
