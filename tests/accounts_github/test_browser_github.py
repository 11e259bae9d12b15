"""Sign in with GitHub in a real browser (Debian's Chromium via Playwright): the portal (pytest-
django's live server) sends people to the emulator's OAuth authorization page, where they press
Authorize; their teams in the organization decide who may deploy, at every sign-in."""

import re

import pytest
from playwright.sync_api import expect

from tests.accounts_github.conftest import CALLBACK, ORG, configure_portal, seed
from tests.e2e.conftest import SCREENSHOTS
from tests.helpers import approvers_group, deployers_group, dispatches
from tests.oidc.test_browser_sso import browser, new_page, preview_acme_prod  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

NOT_A_DEPLOYER = "You may not deploy: ask to be added to the Deployers group."


@pytest.fixture
def portal(gh_tx, live_server, settings):
    # A transactional test before this one may have flushed the data migration's groups.
    deployers_group()
    approvers_group()
    seed(gh_tx, f"{live_server.url}{CALLBACK}")
    configure_portal(settings, gh_tx)
    # Plain HTTP on loopback: the browser must send the cookies back.
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    return live_server.url


def authorize_on_github(page, gh, login: str) -> None:
    """On the login page: Sign in with GitHub, then GitHub's consent page's Authorize."""
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(gh.url)}/login/oauth/authorize\?"))
    expect(page.locator("h1")).to_have_text("Authorize Pod Deployment Portal")
    expect(page.locator("#scopes")).to_contain_text("read:org")
    page.get_by_role("button", name=f"Authorize {login}").click()


def test_sign_in_with_github_deploy_and_lose_the_right_at_next_sign_in(portal, browser, gh_tx):  # noqa: F811
    gh_tx.sign_in_web("lena")
    page = new_page(browser, portal)
    page.goto("/accounts/login/")
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "github-01-login.png"), full_page=True)
    authorize_on_github(page, gh_tx, "lena")
    expect(page).to_have_url(f"{portal}/")
    expect(page.locator("header.top")).to_contain_text("lena")
    expect(page.get_by_role("link", name="Admin")).to_be_visible()  # platform-admins → staff

    preview_acme_prod(page)
    page.get_by_role("button", name="Deploy acme/prod").click()
    expect(page).to_have_url(re.compile(r"/requests/\d+/$"))
    assert len(dispatches(gh_tx)) == 1

    # Taken off the deployers and admins teams on GitHub: the next sign-in (GitHub skips its
    # consent page, the app being authorized already) takes the rights away.
    gh_tx.set_team(ORG, "platform-deployers", ["alice"])
    gh_tx.set_team(ORG, "platform-admins", [])
    gh_tx.set_team(ORG, "platform-leads", [])
    page.get_by_role("button", name="Log out").click()
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page).to_have_url(f"{portal}/")
    expect(page.locator("header.top")).to_contain_text("lena")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    preview_acme_prod(page)
    expect(page.get_by_text(NOT_A_DEPLOYER)).to_be_visible()
    expect(page.get_by_role("button", name="Deploy acme/prod")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "github-02-no-longer-a-deployer.png"), full_page=True)
    page.context.close()
    assert len(dispatches(gh_tx)) == 1


def test_someone_outside_the_organization_is_refused(portal, browser, gh_tx):  # noqa: F811
    gh_tx.sign_in_web("mallory")
    page = new_page(browser, portal)
    authorize_on_github(page, gh_tx, "mallory")
    expect(page).to_have_url(re.compile(rf"^{re.escape(portal)}{CALLBACK}\?"))
    expect(page.locator("h1")).to_have_text("Not a Member of the Organization")
    expect(page.get_by_text(f"not a member of the {ORG} organization")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))  # not signed in
    page.screenshot(path=str(SCREENSHOTS / "github-03-not-a-member.png"), full_page=True)
    page.context.close()


def test_cancel_on_github_comes_back_to_the_login_page_with_a_message(portal, browser, gh_tx):  # noqa: F811
    gh_tx.sign_in_web("alice")
    page = new_page(browser, portal)
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with GitHub").click()
    page.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(f"{portal}/accounts/login/")
    expect(page.get_by_text("Signing in with GitHub was cancelled.")).to_be_visible()
    page.context.close()
