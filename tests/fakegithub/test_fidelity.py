"""The emulator behaves as GitHub does where the portal must cope: per-token permissions, secondary
rate limits, Link headers and lost webhook deliveries."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.fakegithub.apphelpers import app_jwt, configure_app

INPUTS = {
    "customer": "acme",
    "environment": "dev",
    "instance_name": "acme-dev",
    "instance_type": "t3.small",
    "waf_enabled": "true",
}
TOKEN = "test-token"
DISPATCH = "/repos/demo/pods/actions/workflows/deploy-pod.yml/dispatches"


def call(gh, method: str, path: str, token: str = TOKEN, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}"}
    return requests.request(method, gh.api_url + path, headers=headers, timeout=5, **kwargs)


def dispatch(gh, token: str = TOKEN) -> requests.Response:
    return call(gh, "POST", DISPATCH, token, json={"ref": "main", "inputs": INPUTS})


def installation_token(gh) -> str:
    key = configure_app(gh)
    answer = requests.post(
        f"{gh.api_url}/app/installations/42/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(key)}"},
        timeout=5,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


# --- per-token permissions ------------------------------------------------------------------------


def test_installation_without_actions_write_may_read_but_not_dispatch(fakegithub):
    fakegithub.installation_permissions["actions"] = "read"
    token = installation_token(fakegithub)
    refused = dispatch(fakegithub, token)
    assert refused.status_code == 403
    assert refused.json()["message"] == "Resource not accessible by integration"
    assert refused.headers["x-accepted-github-permissions"] == "actions=write"
    assert call(fakegithub, "GET", "/repos/demo/pods/actions/runs", token).status_code == 200
    assert fakegithub.runs == []


def test_installation_token_carries_the_installations_permissions(fakegithub):
    fakegithub.installation_permissions = {"contents": "read", "metadata": "read"}
    key = configure_app(fakegithub)
    answer = requests.post(
        f"{fakegithub.api_url}/app/installations/42/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(key)}"},
        timeout=5,
    )
    assert answer.json()["permissions"] == {"contents": "read", "metadata": "read"}
    token = answer.json()["token"]
    assert call(fakegithub, "GET", "/repos/demo/pods/contents/pods", token).status_code == 200
    assert call(fakegithub, "GET", "/repos/demo/pods/actions/runs", token).status_code == 403


def test_installation_on_other_repositories_gets_404_for_this_one(fakegithub):
    fakegithub.installation_repositories = ["demo/other"]
    token = installation_token(fakegithub)
    for path in ("/repos/demo/pods", "/repos/demo/pods/contents/pods", "/repos/demo/pods/actions/runs"):
        assert call(fakegithub, "GET", path, token).status_code == 404
    assert dispatch(fakegithub, token).status_code == 404
    assert call(fakegithub, "GET", "/rate_limit", token).status_code == 200


def test_a_token_that_cannot_see_the_repository_gets_404(fakegithub):
    fakegithub.token_repositories = []
    assert call(fakegithub, "GET", "/repos/demo/pods").status_code == 404
    assert dispatch(fakegithub).status_code == 404


def test_fine_grained_token_sends_no_scopes_and_cannot_read_check_runs(fakegithub):
    fakegithub.token = "github_pat_11AAAAAAA0abcdefghijklmnopqrstuvwxyz"
    repo = call(fakegithub, "GET", "/repos/demo/pods", fakegithub.token)
    assert repo.status_code == 200
    assert "x-oauth-scopes" not in repo.headers
    annotations = call(fakegithub, "GET", "/repos/demo/pods/check-runs/1/annotations", fakegithub.token)
    assert annotations.status_code == 403
    assert annotations.json()["message"] == "Resource not accessible by personal access token"
    assert annotations.headers["x-accepted-github-permissions"] == "checks=read"


def test_classic_token_sends_its_scopes(fakegithub):
    assert call(fakegithub, "GET", "/repos/demo/pods").headers["x-oauth-scopes"] == "repo, workflow"


def test_installation_endpoint_needs_the_apps_jwt(fakegithub):
    configure_app(fakegithub)
    assert call(fakegithub, "GET", "/app/installations/42").status_code == 401


# --- secondary rate limits ------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_limit_refuses_with_retry_after_while_the_primary_has_plenty(fakegithub, status):
    fakegithub.secondary_points_per_minute = 7
    fakegithub.secondary_limit_status = status
    assert call(fakegithub, "GET", "/repos/demo/pods").status_code == 200  # 1 point
    assert dispatch(fakegithub).status_code == 204  # 5 points
    refused = dispatch(fakegithub)
    assert refused.status_code == status
    assert refused.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert 55 <= int(refused.headers["retry-after"]) <= 60
    assert int(refused.headers["x-ratelimit-remaining"]) > 4000
    assert call(fakegithub, "GET", "/repos/demo/pods").status_code == 200  # 1 point still fits
    assert len(fakegithub.runs) == 1


def test_secondary_limit_is_off_by_default(fakegithub):
    assert all(dispatch(fakegithub).status_code == 204 for _ in range(5))


# --- Link headers ---------------------------------------------------------------------------------


def links(response: requests.Response) -> dict[str, str]:
    return {rel: link["url"] for rel, link in response.links.items()}


def test_link_header_points_at_the_endpoint_called_with_its_query(fakegithub):
    for _ in range(3):
        assert dispatch(fakegithub).status_code == 204
    path = "/repos/demo/pods/actions/workflows/deploy-pod.yml/runs"
    answer = call(fakegithub, "GET", path, params={"event": "workflow_dispatch", "per_page": 2})
    nxt = urlsplit(links(answer)["next"])
    assert nxt.path == path
    assert parse_qs(nxt.query) == {"event": ["workflow_dispatch"], "per_page": ["2"], "page": ["2"]}
    second = call(fakegithub, "GET", path + "?" + nxt.query)
    assert len(second.json()["workflow_runs"]) == 1
    assert set(links(second)) == {"prev", "first"}


def test_jobs_and_annotations_are_paginated_with_links(fakegithub):
    run_id = fakegithub.create_run(dict(INPUTS), {"login": "fake-user"}).id
    fakegithub.complete_run(run_id, "failure")
    fakegithub.rerun(run_id)
    fakegithub.complete_run(run_id, "failure")
    path = f"/repos/demo/pods/actions/runs/{run_id}/jobs"
    first = call(fakegithub, "GET", path, params={"filter": "all", "per_page": 1})
    assert first.json()["total_count"] == 2
    assert urlsplit(links(first)["next"]).path == path
    assert parse_qs(urlsplit(links(first)["next"]).query)["filter"] == ["all"]


# --- lost webhook deliveries ----------------------------------------------------------------------


@pytest.fixture
def receiver():
    """A webhook receiver on loopback that records the X-GitHub-Event/action of what reaches it."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_every_delivery_lost_reaches_nobody_and_is_not_retried(fakegithub, receiver):
    url, received = receiver
    fakegithub.webhook_url = url
    fakegithub.webhook_loss = 1.0
    run_id = fakegithub.create_run(dict(INPUTS), {"login": "fake-user"}).id
    fakegithub.complete_run(run_id, "success")
    deliveries = fakegithub.deliveries
    assert [d.action for d in deliveries] == ["requested", "in_progress", "completed"]
    assert all(d.done.wait(5) for d in deliveries)
    assert {(d.status, d.error) for d in deliveries} == {(None, "lost (fakegithub webhook_loss)")}
    assert received == []


def test_a_predicate_chooses_which_deliveries_are_lost(fakegithub, receiver):
    url, received = receiver
    fakegithub.webhook_url = url
    fakegithub.webhook_loss = lambda delivery: delivery.action == "completed"
    run_id = fakegithub.create_run(dict(INPUTS), {"login": "fake-user"}).id
    fakegithub.complete_run(run_id, "success")
    assert all(d.done.wait(5) for d in fakegithub.deliveries)
    assert [(d.action, d.status) for d in fakegithub.deliveries] == [
        ("requested", 204),
        ("in_progress", 204),
        ("completed", None),
    ]
    assert len(received) == 2


def test_content_creation_limit_refuses_writes_and_lets_reads_through(fakegithub):
    fakegithub.secondary_writes_per_minute = 1
    assert dispatch(fakegithub).status_code == 204
    refused = dispatch(fakegithub)
    assert refused.status_code == 403
    assert 55 <= int(refused.headers["retry-after"]) <= 60
    assert all(call(fakegithub, "GET", "/repos/demo/pods").status_code == 200 for _ in range(3))


# --- protected default branch ---------------------------------------------------------------------


def test_push_refusal_names_the_protection_and_spares_a_bypass_app(fakegithub):
    assert fakegithub.push_refusal() is None
    fakegithub.branch_protection = {"bypass_app": True}
    assert fakegithub.push_refusal() == "GH006: Protected branch update failed for refs/heads/main."
    fakegithub.branch_protection = {"bypass_app": True, "ruleset": True}
    assert fakegithub.push_refusal() == "GH013: Repository rule violations found for refs/heads/main."
    fakegithub.variables["DEPLOY_APP_ID"] = "12345"
    assert fakegithub.push_refusal() is None
    fakegithub.branch_protection = {"bypass_app": False, "ruleset": True}
    assert fakegithub.push_refusal().startswith("GH013")
