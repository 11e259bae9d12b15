"""Production GitHub set-ups against the emulator: a GitHub App installation, and GHES."""

import pytest
from django.core.cache import cache, caches

from deployments import gh as portal_gh
from deployments import inventory, services
from deployments.models import DeploymentRequest
from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import PROJECT_PODS
from tests.fakegithub import apphelpers
from tests.helpers import EDIT_ACME_PROD, form, make_request


def repo_calls(gh) -> list:
    return [r for r in gh.requests if r.path.startswith(("/repos/", "/api/v3/repos/"))]


# --- GitHub App -----------------------------------------------------------------------------------


@pytest.fixture
def app_gh(gh, settings):
    """The portal authenticating as a GitHub App installation, with no GH_TOKEN at all.

    Clients are cached per settings, and a cached client keeps its installation token: the
    emulator forgets issued tokens on reset, so each test starts with fresh clients.
    """
    settings.GH_TOKEN = ""
    settings.GITHUB_APP_ID = str(apphelpers.APP_ID)
    settings.GITHUB_APP_PRIVATE_KEY = apphelpers.configure_app(gh)
    settings.GITHUB_APP_INSTALLATION_ID = str(apphelpers.INSTALLATION_ID)
    portal_gh.reset()
    yield gh
    portal_gh.reset()


def test_app_lists_pods_with_an_installation_token(app_gh, viewer_client):
    response = viewer_client.get("/")
    assert response.status_code == 200
    assert "acme-prod-web" in response.content.decode()
    assert app_gh.count("POST", r"^/app/installations/42/access_tokens$") == 1
    assert {r.headers["authorization"].split("_")[0] for r in repo_calls(app_gh)} == {"token ghs"}
    # The specs' text in one GraphQL query with the same installation token, not the per-spec fallback.
    [query] = [r for r in app_gh.requests if r.method == "POST" and r.path == "/graphql"]
    assert (query.status, query.headers["authorization"].split("_")[0]) == (200, "token ghs")
    assert not [r for r in app_gh.requests if "/git/blobs/" in r.path]


def test_app_deploys_and_links_the_run(app_gh, deployer_client):
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    [run] = app_gh.runs
    assert response.status_code == 302
    assert (request.status, request.run_id, request.run_url) == ("dispatched", run["id"], run["html_url"])
    assert run["inputs"]["instance_type"] == "t3.large"


def test_health_reports_app_auth_and_the_installations_permissions(app_gh, viewer_client):
    # The worker holds its token already: the probe's thread cannot use this test's database.
    portal_gh.state.installation_token()
    response = viewer_client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert body["auth"] == "app"
    assert body["scopes"] == "not applicable"
    assert body["permissions"] == {"actions": "write", "contents": "read", "checks": "read"}
    [asked] = [r for r in app_gh.requests if r.path == "/app/installations/42"]
    assert (asked.status, asked.headers["authorization"].split(" ")[0]) == (200, "Bearer")  # the App's JWT


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        ({"actions": "read", "contents": "read", "metadata": "read"}, "actions: write"),
        ({"actions": "write", "metadata": "read"}, "contents: read"),
        ({"metadata": "read"}, "actions: write, contents: read"),
    ],
)
def test_health_is_unhealthy_when_the_installation_lacks_a_permission(
    app_gh, viewer_client, granted, missing
):
    app_gh.installation_permissions = granted
    portal_gh.state.installation_token()
    response = viewer_client.get("/health")
    body = response.json()
    assert response.status_code == 503
    assert body["reason"].startswith(
        f"The GitHub App installation lacks permissions the portal needs: {missing}."
    )
    assert body["permissions"]["actions"] == granted.get("actions")


def test_health_without_checks_read_stays_healthy_and_shows_it(app_gh, viewer_client):
    app_gh.installation_permissions = {"actions": "write", "contents": "write", "metadata": "read"}
    portal_gh.state.installation_token()
    response = viewer_client.get("/health")
    assert response.status_code == 200
    assert response.json()["permissions"] == {"actions": "write", "contents": "write", "checks": None}


def test_app_without_actions_write_cannot_deploy_and_is_told_which_permission(app_gh, deployer_client):
    app_gh.installation_permissions = {"actions": "read", "contents": "read", "metadata": "read"}
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    request = DeploymentRequest.objects.get()
    assert response.status_code == 403
    assert "Permission Denied" in page
    assert "GitHub says this needs the permission actions: write." in page
    assert (request.status, request.error_type) == ("dispatch_failed", "forbidden")
    assert [r.status for r in app_gh.requests if r.path.endswith("/dispatches")] == [403]
    assert app_gh.runs == []


def test_app_installed_on_other_repositories_is_told_it_cannot_see_the_repository(app_gh, deployer):
    # GitHub answers 404, not 403, to an installation without access to a private repository.
    app_gh.installation_repositories = ["demo/elsewhere"]
    request = make_request(deployer)
    with pytest.raises(portal_gh.GitHubNotFoundError) as exc:
        services.deployment_request_dispatch(request=request, actor=deployer)
    assert "the portal's credentials cannot see demo/pods" in exc.value.message
    assert [r.status for r in app_gh.requests if r.path.endswith("/dispatches")] == [404]
    request.refresh_from_db()
    assert (request.status, request.error_type) == ("dispatch_failed", "not_found")


def test_app_with_wrong_installation_is_explained(app_gh, viewer_client, settings):
    settings.GITHUB_APP_INSTALLATION_ID = "999"
    response = viewer_client.get("/")
    assert response.status_code == 503
    page = response.content.decode()
    assert "could not get a token for installation 999" in page
    assert "Branch" not in page


# With App auth, conditional requests stay free across processes: GitHub's ETags are specific to the
# token that got them and the portal shares ETags through the cache, so every process must send the
# same installation token. A "process" here is the portal with its in-process state forgotten, the
# shared cache kept.

TOKENS = r"^/app/installations/42/access_tokens$"


def new_process() -> None:
    portal_gh.reset()
    inventory._memo.clear()
    caches["fragments"].clear()
    caches["pages"].clear()


def core_remaining(gh) -> int:
    return gh.rate_limit["resources"]["core"]["remaining"]


def test_warm_listing_on_two_workers_and_a_sync_cost_no_rate_limit(app_gh, viewer_client, deployer_client):
    app_gh.queued_for = 3600  # the run does not change under the measurement
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    assert DeploymentRequest.objects.get().status == "dispatched"
    assert viewer_client.get("/").status_code == 200  # cold: fills the shared ETags
    services.deployment_requests_sync()
    before, gets = core_remaining(app_gh), len(app_gh.requests)

    for _worker in range(2):
        new_process()
        response = viewer_client.get("/")
        assert response.status_code == 200
        assert "acme-prod-web" in response.content.decode()
    new_process()
    assert services.deployment_requests_sync()["checked"] == 1

    warm = [r for r in app_gh.requests[gets:] if r.method == "GET" and "/repos/" in r.path]
    assert warm
    assert {r.status for r in warm} == {304}
    assert core_remaining(app_gh) == before
    assert app_gh.count("POST", TOKENS) == 1  # one token, minted once, shared by every process


def test_one_process_mints_the_token_the_others_reuse(app_gh, viewer_client):
    viewer_client.get("/")
    first = {r.headers["authorization"] for r in app_gh.requests if "/repos/" in r.path}
    new_process()
    viewer_client.get("/")
    both = {r.headers["authorization"] for r in app_gh.requests if "/repos/" in r.path}
    assert len(first) == 1
    assert both == first
    assert app_gh.count("POST", TOKENS) == 1


def test_a_revoked_shared_token_is_replaced_for_every_process(app_gh, viewer_client):
    viewer_client.get("/")
    app_gh.state.issued_tokens.clear()  # GitHub revoked the installation token
    assert viewer_client.get("/").status_code == 503
    new_process()  # another worker: not handed the dead token
    response = viewer_client.get("/")
    assert response.status_code == 200
    assert "acme-prod-web" in response.content.decode()
    assert app_gh.count("POST", TOKENS) == 2


# --- GitHub Enterprise Server ---------------------------------------------------------------------


@pytest.fixture
def ghes(settings, db):
    """A GHES-style server: API under /api/v3, web pages at the host root, no return_run_details,
    API rate limiting disabled (GHES's default)."""
    server = FakeGitHub(repo="demo/pods", specs_dir=PROJECT_PODS, api_prefix="/api/v3", ghes=True).start()
    settings.GITHUB_API_URL = server.api_url
    settings.GH_TOKEN = "test-token"
    settings.GH_REPO = "demo/pods"
    portal_gh.reset()
    cache.clear()
    yield server
    server.stop()
    portal_gh.reset()


def test_ghes_lists_pods_through_api_v3(ghes, viewer_client):
    response = viewer_client.get("/")
    assert response.status_code == 200
    assert "acme-prod-web" in response.content.decode()
    assert repo_calls(ghes)
    # REST under /api/v3; the specs' text in one GraphQL query at GHES's /api/graphql.
    assert all(r.path.startswith("/api/v3/") for r in ghes.requests if r.method == "GET")
    assert [(r.path, r.status) for r in ghes.requests if r.method == "POST"] == [("/api/graphql", 200)]
    assert not [r for r in ghes.requests if "/git/blobs/" in r.path]


def test_ghes_deploy_finds_the_run_by_its_name_and_links_the_ghes_host(ghes, deployer_client):
    data = form(EDIT_ACME_PROD)
    response = deployer_client.post("/deploy/", data)
    request = DeploymentRequest.objects.get()
    [run] = ghes.runs
    assert response.status_code == 302
    assert f"[{data['idempotency_key']}]" in run["display_title"]
    assert request.run_id == run["id"]
    assert request.run_url == f"{ghes.url}/demo/pods/actions/runs/{run['id']}"
    page = deployer_client.get(response["Location"]).content.decode()
    assert f'href="{request.run_url}"' in page
    assert "github.com" not in page
    # Asked once with return_run_details (refused), then dispatched once without it.
    bodies = [r.json for r in ghes.requests if r.path.endswith("/dispatches")]
    assert ["return_run_details" in body for body in bodies] == [True, False]


def test_ghes_run_not_found_yet_links_the_ghes_actions_page(ghes, deployer_client, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.3
    ghes.run_visible_after = 30
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = deployer_client.get(response["Location"]).content.decode()
    assert f'id="actions-link" href="{ghes.url}/demo/pods/actions/workflows/deploy-pod.yml"' in page
    assert "/api/v3" not in page.split('id="actions-link"')[1].split(">")[0]


def test_ghes_without_rate_limiting_is_healthy_and_lists_pods(ghes, viewer_client):
    response = viewer_client.get("/health")
    assert response.status_code == 200
    assert response.json()["rate_limit"] == {
        "enabled": False,
        "remaining": None,
        "limit": None,
        "reset_at": None,
    }
    assert [r.status for r in ghes.requests if r.path == "/api/v3/rate_limit"] == [404]
    # No rate-limit headers at all: the listing has no reserve to keep and reads every spec.
    assert "acme-prod-web" in viewer_client.get("/").content.decode()


def test_web_url_of_ghes_and_github_com(settings):
    settings.GITHUB_API_URL = "https://ghe.example.com/api/v3"
    assert portal_gh.web_url() == "https://ghe.example.com"
    settings.GITHUB_API_URL = "https://api.github.com"
    assert portal_gh.web_url() == "https://github.com"
