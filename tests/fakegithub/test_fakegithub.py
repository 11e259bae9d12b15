"""Behaviour of the GitHub emulator, driven mostly through PyGithub as the portal drives it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import github
import pytest
import requests
import yaml

from fakegithub import FakeGitHub
from fakegithub.workflow import PROJECT_WORKFLOW, WorkflowDef
from tests.fakegithub.apphelpers import APP_ID, INSTALLATION_ID, app_jwt, configure_app, key_pair

TOKEN = "test-token"
INPUTS = {
    "customer": "acme",
    "environment": "dev",
    "instance_name": "acme-dev",
    "instance_type": "t3.small",
    "waf_enabled": "true",
    "request_id": "req-42",
}


def client(gh: FakeGitHub, token: str = TOKEN, **kwargs) -> github.Github:
    auth = kwargs.pop("auth", None) or github.Auth.Token(token)
    return github.Github(
        auth=auth,
        base_url=gh.api_url,
        seconds_between_requests=None,
        seconds_between_writes=None,
        retry=None,
        **kwargs,
    )


@pytest.fixture
def repo(fakegithub):
    return client(fakegithub, lazy=True).get_repo("demo/pods")


@pytest.fixture
def workflow(repo):
    return repo.get_workflow("deploy-pod.yml")


def with_defaults(inputs: dict[str, str]) -> dict[str, str]:
    """The inputs a run gets: those given, and the declared defaults of the others (as on GitHub)."""
    declared = WorkflowDef.load().inputs.values()
    return {**{i.name: i.default for i in declared if i.default is not None}, **inputs}


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def raw(gh: FakeGitHub, method: str, path: str, token: str | None = TOKEN, **kwargs):
    headers = kwargs.pop("headers", {})
    if token:
        headers["Authorization"] = f"token {token}"
    return requests.request(method, gh.api_url + path, headers=headers, timeout=5, **kwargs)


# --- repository content ------------------------------------------------------------------------


def test_repo_reports_main_as_default_branch_and_permissions(repo):
    assert repo.default_branch == "main"
    assert repo.permissions.push is True
    assert repo.full_name == "demo/pods"


def test_contents_tree_and_blob_roundtrip_through_pygithub(fakegithub, repo):
    fakegithub.put_file("pods/zeta/qa/spec.yml", "customer: zeta\n")
    content = repo.get_contents("pods/zeta/qa/spec.yml", ref="main")
    assert content.decoded_content == b"customer: zeta\n"
    assert content.sha == git_blob_sha(b"customer: zeta\n")

    listing = repo.get_contents("pods")
    assert "pods/zeta" in [item.path for item in listing]

    tree = repo.get_git_tree("main", recursive=True)
    blobs = {entry.path: entry.sha for entry in tree.tree if entry.type == "blob"}
    assert blobs.keys() == fakegithub.files.keys()
    for path, text in fakegithub.files.items():
        assert blobs[path] == git_blob_sha(text.encode())
    blob = repo.get_git_blob(blobs["pods/zeta/qa/spec.yml"])
    assert base64.b64decode(blob.content) == b"customer: zeta\n"


def test_recursive_tree_past_the_entry_limit_is_truncated_and_sub_trees_list_by_sha(fakegithub, repo):
    fakegithub.tree_entry_limit = 5
    tree = repo.get_git_tree("main", recursive=True)
    assert tree.raw_data["truncated"] is True
    assert len(tree.tree) == 5
    root = repo.get_git_tree("main")
    assert root.raw_data["truncated"] is False
    pods = next(entry for entry in root.tree if entry.path == "pods")
    customers = repo.get_git_tree(pods.sha)
    assert {entry.path for entry in customers.tree} == {"acme", "globex", "initech", "umbrella"}
    assert customers.raw_data["truncated"] is False


def test_tree_sha_is_stable_for_unchanged_content_and_changes_with_content(fakegithub, repo):
    before = repo.get_git_tree("main").sha
    fakegithub.put_file("pods/acme/prod/spec.yml", fakegithub.files["pods/acme/prod/spec.yml"])
    assert repo.get_git_tree("main").sha == before
    fakegithub.put_file("pods/acme/prod/spec.yml", "changed: true\n")
    assert repo.get_git_tree("main").sha != before


def test_branch_ref_follows_commits(fakegithub, repo):
    head = repo.get_git_ref("heads/main").object.sha
    fakegithub.delete_file("pods/acme/prod/spec.yml")
    assert repo.get_git_ref("heads/main").object.sha == fakegithub.head_sha != head
    plural = raw(fakegithub, "GET", "/repos/demo/pods/git/refs/heads/main").json()
    assert plural["object"]["sha"] == fakegithub.head_sha


def test_missing_file_and_unknown_route_answer_404(fakegithub, repo):
    with pytest.raises(github.UnknownObjectException):
        repo.get_contents("pods/nope/spec.yml")
    response = raw(fakegithub, "GET", "/repos/demo/pods/pulls")
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


# --- auth, ETags and the rate limit ------------------------------------------------------------


def test_bad_token_answers_401(fakegithub):
    with pytest.raises(github.BadCredentialsException) as excinfo:
        client(fakegithub, token="wrong").get_repo("demo/pods")
    assert excinfo.value.status == 401
    assert excinfo.value.data["message"] == "Bad credentials"


def test_bearer_scheme_is_accepted_and_scopes_header_is_sent(fakegithub):
    response = raw(
        fakegithub, "GET", "/repos/demo/pods", token=None, headers={"Authorization": "Bearer test-token"}
    )
    assert response.status_code == 200
    assert response.headers["x-oauth-scopes"] == "repo, workflow"
    fakegithub.scopes = None
    assert "x-oauth-scopes" not in raw(fakegithub, "GET", "/repos/demo/pods").headers


def test_conditional_get_answers_304_without_spending_rate_limit(fakegithub):
    first = raw(fakegithub, "GET", "/repos/demo/pods/contents/pods/acme/prod/spec.yml")
    remaining = int(first.headers["x-ratelimit-remaining"])
    again = raw(
        fakegithub,
        "GET",
        "/repos/demo/pods/contents/pods/acme/prod/spec.yml",
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 304
    assert again.content == b""
    assert int(again.headers["x-ratelimit-remaining"]) == remaining
    assert fakegithub.requests[-1].status == 304
    assert fakegithub.count("GET", r"/contents/") == 2
    fakegithub.put_file("pods/acme/prod/spec.yml", "changed: true\n")
    changed = raw(
        fakegithub,
        "GET",
        "/repos/demo/pods/contents/pods/acme/prod/spec.yml",
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert changed.status_code == 200
    assert int(changed.headers["x-ratelimit-remaining"]) == remaining - 1


def test_exhausted_rate_limit_answers_403_with_headers(fakegithub, repo):
    reset = int(time.time()) + 600
    fakegithub.set_rate_limit(remaining=0, reset=reset)
    with pytest.raises(github.RateLimitExceededException) as excinfo:
        repo.get_contents("pods/acme/prod/spec.yml")
    assert excinfo.value.status == 403
    assert excinfo.value.headers["x-ratelimit-remaining"] == "0"
    assert excinfo.value.headers["x-ratelimit-reset"] == str(reset)
    assert excinfo.value.data["message"] == "API rate limit exceeded for user ID 1."
    assert fakegithub.runs == []


def test_rate_limit_endpoint_reports_core_without_spending_it(fakegithub):
    gh = client(fakegithub)
    fakegithub.set_rate_limit(remaining=10, limit=60)
    assert gh.get_rate_limit().resources.core.remaining == 10
    assert gh.get_rate_limit().resources.core.limit == 60
    gh.get_repo("demo/pods")
    assert fakegithub.rate_limit["resources"]["core"]["remaining"] == 9


def test_disabled_rate_limiting_answers_404_and_sends_no_rate_headers(fakegithub):
    fakegithub.rate_limiting_enabled = False
    response = raw(fakegithub, "GET", "/rate_limit")
    assert response.status_code == 404
    assert response.json()["message"] == "Rate limiting is not enabled."
    repo = raw(fakegithub, "GET", "/repos/demo/pods")
    assert repo.status_code == 200
    assert [h for h in [*response.headers, *repo.headers] if h.lower().startswith("x-ratelimit")] == []
    assert fakegithub.rate_limit["resources"]["core"]["remaining"] == 5000  # nothing spent


def test_disabled_rate_limiting_never_answers_rate_limited(fakegithub, workflow):
    fakegithub.set_rate_limit(remaining=0)
    fakegithub.rate_limiting_enabled = False
    assert workflow.create_dispatch("main", INPUTS, throw=True) is True


def test_ghes_mode_defaults_to_rate_limiting_disabled_as_ghes_ships():
    assert FakeGitHub(ghes=True).rate_limiting_enabled is False
    assert FakeGitHub(ghes=True, rate_limiting_enabled=True).rate_limiting_enabled is True
    assert FakeGitHub().rate_limiting_enabled is True


# --- dispatch ------------------------------------------------------------------------------------


def test_dispatch_with_return_run_details_returns_the_run(fakegithub, repo, workflow):
    run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    assert run.html_url == f"{fakegithub.url}/demo/pods/actions/runs/{run.id}"
    fetched = repo.get_workflow_run(run.id)
    assert fetched.display_title == "Deploy acme/dev [req-42]"
    assert fetched.name == "Deploy pod"
    assert fetched.status == "queued"
    assert fetched.event == "workflow_dispatch"
    assert fakegithub.runs[0]["inputs"] == with_defaults(INPUTS)


def test_dispatch_without_request_id_renders_manual_in_the_title(fakegithub, workflow):
    inputs = {k: v for k, v in INPUTS.items() if k != "request_id"}
    assert workflow.create_dispatch("main", inputs, throw=True) is True
    assert fakegithub.runs[0]["display_title"] == "Deploy acme/dev [manual]"
    assert fakegithub.runs[0]["inputs"]["request_id"] == ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": {**INPUTS, "colour": "red"}}, 'Unexpected inputs provided: ["colour"]'),
        (
            {"inputs": {k: v for k, v in INPUTS.items() if k != "instance_type"}},
            "Required input 'instance_type' not provided",
        ),
        ({"ref": "nope"}, "No ref found for: nope"),
    ],
    ids=["unknown-input", "missing-input", "unknown-ref"],
)
def test_dispatch_with_invalid_request_answers_422(fakegithub, workflow, change, message):
    body = {"ref": "main", "inputs": INPUTS, **change}
    with pytest.raises(github.GithubException) as excinfo:
        workflow.create_dispatch(body["ref"], body["inputs"], throw=True)
    assert excinfo.value.status == 422
    assert excinfo.value.data["message"] == message
    assert fakegithub.runs == []


def test_dispatch_to_disabled_workflow_answers_422(fakegithub, workflow):
    fakegithub.workflow_state = "disabled_manually"
    with pytest.raises(github.GithubException) as excinfo:
        workflow.create_dispatch("main", INPUTS, throw=True)
    assert excinfo.value.status == 422
    assert excinfo.value.data["message"] == "Cannot trigger a 'workflow_dispatch' on a disabled workflow"
    assert fakegithub.runs == []


@pytest.mark.parametrize(
    "triggers", ["push", "[push, pull_request]", "\n  push:\n    branches: [main]"], ids=repr
)
def test_dispatch_to_workflow_without_dispatch_trigger_answers_422(fakegithub, workflow, triggers):
    fakegithub.workflow_def = WorkflowDef.from_yaml(f"name: Deploy pod\non: {triggers}\njobs: {{}}\n")
    assert fakegithub.workflow_def.dispatchable is False
    with pytest.raises(github.GithubException) as excinfo:
        workflow.create_dispatch("main", INPUTS, throw=True)
    assert excinfo.value.status == 422
    assert excinfo.value.data["message"] == "Workflow does not have 'workflow_dispatch' trigger"
    assert fakegithub.runs == []


@pytest.mark.parametrize("triggers", ["workflow_dispatch", "[push, workflow_dispatch]"], ids=repr)
def test_workflow_naming_the_dispatch_trigger_in_any_form_is_dispatchable(triggers):
    assert WorkflowDef.from_yaml(f"on: {triggers}\njobs: {{}}\n").dispatchable is True


def test_missing_workflow_answers_404(fakegithub, repo):
    fakegithub.workflow_state = None
    assert raw(fakegithub, "GET", "/repos/demo/pods/actions/workflows/deploy-pod.yml").status_code == 404
    assert raw(fakegithub, "GET", "/repos/demo/pods/actions/workflows").json()["total_count"] == 0
    response = raw(
        fakegithub, "POST", "/repos/demo/pods/actions/workflows/161335/dispatches", json={"ref": "main"}
    )
    assert response.status_code == 404


def test_ghes_mode_rejects_return_run_details_with_400_and_creates_no_run(fakegithub, workflow):
    fakegithub.ghes = True
    with pytest.raises(github.GithubException) as excinfo:
        workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    assert excinfo.value.status == 400
    assert '"return_run_details" is not a permitted key' in excinfo.value.data["message"]
    assert fakegithub.runs == []
    assert workflow.create_dispatch("main", INPUTS, throw=True) is True
    assert len(fakegithub.runs) == 1


# --- runs ----------------------------------------------------------------------------------------


def test_run_lifecycle_commits_the_rendered_spec_on_success(fakegithub, repo, workflow):
    run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    tree_before = repo.get_git_tree("main", recursive=True).sha
    assert fakegithub.advance_run(run.id)["status"] == "in_progress"
    assert repo.get_git_tree("main", recursive=True).sha == tree_before
    done = fakegithub.advance_run(run.id)
    assert (done["status"], done["conclusion"]) == ("completed", "success")

    tree = repo.get_git_tree("main", recursive=True)
    assert tree.sha != tree_before
    entry = next(e for e in tree.tree if e.path == "pods/acme/dev/spec.yml")
    text = base64.b64decode(repo.get_git_blob(entry.sha).content).decode()
    assert yaml.safe_load(text) == {
        "customer": "acme",
        "environment": "dev",
        "instance_name": "acme-dev",
        "instance_type": "t3.small",
        "waf_enabled": True,
    }
    assert repo.get_workflow_run(run.id).conclusion == "success"


def test_failed_run_commits_nothing(fakegithub, workflow):
    fakegithub.conclusions = {"acme/dev": "failure"}
    head = fakegithub.head_sha
    run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    fakegithub.advance_run(run.id)
    assert fakegithub.advance_run(run.id)["conclusion"] == "failure"
    assert fakegithub.head_sha == head


def test_run_with_invalid_spec_fails_like_the_workflow_would(fakegithub, workflow):
    run = workflow.create_dispatch(
        "main", {**INPUTS, "instance_type": "x9.huge"}, throw=True, return_run_details=True
    )
    assert fakegithub.complete_run(run.id)["conclusion"] == "failure"
    assert "pods/acme/dev/spec.yml" not in fakegithub.files


def test_without_a_workflow_effect_a_run_succeeds_and_commits_nothing():
    with FakeGitHub() as gh:
        workflow = client(gh).get_repo("demo/pods").get_workflow("deploy-pod.yml")
        run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
        head = gh.head_sha
        assert gh.complete_run(run.id)["conclusion"] == "success"
        assert gh.head_sha == head


def test_workflow_effect_sees_the_run_inputs_and_decides_the_conclusion():
    seen = []

    def effect(gh: FakeGitHub, inputs: dict[str, str]) -> str:
        seen.append(inputs)
        gh.put_file("out.txt", inputs["customer"])
        return "failure"

    with FakeGitHub(workflow_effect=effect) as gh:
        workflow = client(gh).get_repo("demo/pods").get_workflow("deploy-pod.yml")
        run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
        assert gh.complete_run(run.id)["conclusion"] == "failure"
        assert seen == [with_defaults(INPUTS)]
        assert gh.files["out.txt"] == "acme"


def test_auto_runs_advance_on_the_clock(fakegithub, workflow):
    fakegithub.auto_runs = True
    fakegithub.queued_for = 0.05
    fakegithub.in_progress_for = 0.05
    run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    deadline = time.time() + 3
    while fakegithub.run(run.id)["status"] != "completed" and time.time() < deadline:
        time.sleep(0.02)
    assert fakegithub.run(run.id)["conclusion"] == "success"
    assert "pods/acme/dev/spec.yml" in fakegithub.files


def test_run_lists_filter_paginate_and_hide_fresh_runs(fakegithub, repo, workflow):
    ids = [workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True).id for _ in range(5)]
    fakegithub.complete_run(ids[0], "failure")
    runs = workflow.get_runs(event="workflow_dispatch", branch="main")
    assert runs.totalCount == 5
    assert [r.id for r in runs] == ids[::-1]  # newest first, across pages below
    assert [r.id for r in repo.get_workflow_runs(status="failure")] == [ids[0]]
    assert repo.get_workflow_runs(status="queued").totalCount == 4
    listing = raw(fakegithub, "GET", "/repos/demo/pods/actions/runs?per_page=2&page=3").json()
    assert [r["id"] for r in listing["workflow_runs"]] == [ids[0]]
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    assert repo.get_workflow_runs(created=f">={future}").totalCount == 0
    assert raw(fakegithub, "GET", "/repos/demo/pods/actions/runs?event=push").json()["total_count"] == 0

    fakegithub.run_visible_after = 60
    assert workflow.get_runs().totalCount == 0
    assert repo.get_workflow_run(ids[1]).id == ids[1]


def test_paginated_run_list_follows_link_headers(fakegithub, workflow):
    gh = client(fakegithub, per_page=2)
    ids = [workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True).id for _ in range(5)]
    runs = list(gh.get_repo("demo/pods").get_workflow("deploy-pod.yml").get_runs())
    assert [r.id for r in runs] == ids[::-1]


def test_web_pages_show_the_run_and_the_workflow(fakegithub, workflow):
    run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    page = requests.get(run.html_url, timeout=5)
    assert page.status_code == 200
    assert "Run #1: Deploy acme/dev [req-42] — queued" in page.text
    listing = requests.get(f"{fakegithub.url}/demo/pods/actions/workflows/deploy-pod.yml", timeout=5)
    assert run.html_url in listing.text


# --- webhooks ------------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhook_deliveries_are_signed_and_posted(fakegithub, workflow):
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    receiver.received = []
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        fakegithub.webhook_url = f"http://127.0.0.1:{receiver.server_address[1]}/webhooks/github"
        fakegithub.webhook_secret = "s3cret"
        run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
        fakegithub.complete_run(run.id)
        deliveries = fakegithub.deliveries
        assert [d.action for d in deliveries] == ["requested", "in_progress", "completed"]
        for delivery in deliveries:
            assert delivery.done.wait(5)
            assert delivery.status == 202
        assert len(receiver.received) == 3
        for headers, body in receiver.received:
            expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
            assert headers["X-GitHub-Event"] == "workflow_run"
        final = json.loads(receiver.received[-1][1])
        assert final["workflow_run"]["id"] == run.id
        assert final["workflow_run"]["conclusion"] == "success"
        assert final["workflow_run"]["display_title"] == "Deploy acme/dev [req-42]"
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_unreachable_webhook_receiver_does_not_break_the_server(fakegithub, workflow):
    fakegithub.webhook_url = "http://127.0.0.1:9/nothing-listens-here"
    run = workflow.create_dispatch("main", INPUTS, throw=True, return_run_details=True)
    delivery = fakegithub.deliveries[0]
    assert delivery.done.wait(5)
    assert delivery.status is None and delivery.error
    assert "X-Hub-Signature-256" not in delivery.headers
    assert fakegithub.run(run.id)["status"] == "queued"


# --- faults and latency --------------------------------------------------------------------------


def test_fault_answers_the_scripted_status_the_given_number_of_times(fakegithub, workflow):
    fakegithub.add_fault(
        method="POST", path=r"/dispatches$", status=502, body={"message": "Bad gateway"}, times=1
    )
    with pytest.raises(github.GithubException) as excinfo:
        workflow.create_dispatch("main", INPUTS, throw=True)
    assert excinfo.value.status == 502
    assert fakegithub.runs == []
    assert workflow.create_dispatch("main", INPUTS, throw=True) is True
    assert [r.status for r in fakegithub.requests if r.method == "POST"] == [502, 204]


def test_fault_delay_slows_the_answer(fakegithub, repo):
    fakegithub.add_fault(path=r"/contents/", status=None, delay=0.3)
    started = time.monotonic()
    repo.get_contents("pods/acme/prod/spec.yml")
    assert time.monotonic() - started >= 0.3


def test_dropped_connection_gives_the_client_no_answer(fakegithub):
    fakegithub.add_fault(method="POST", path=r"/dispatches$", drop=True, times=1)
    body = {"ref": "main", "inputs": INPUTS}
    with pytest.raises(requests.ConnectionError):
        raw(fakegithub, "POST", "/repos/demo/pods/actions/workflows/deploy-pod.yml/dispatches", json=body)
    assert fakegithub.count("POST", r"/dispatches$") == 1
    assert fakegithub.runs == []


def test_latency_applies_to_every_api_call(fakegithub, repo):
    fakegithub.latency = 0.1
    started = time.monotonic()
    repo.get_contents("pods/acme/prod/spec.yml")
    assert time.monotonic() - started >= 0.1


def test_serves_many_concurrent_requests(fakegithub):
    fakegithub.latency = 0.05
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=100)
    session.mount("http://", adapter)

    def fetch(_):
        url = f"{fakegithub.api_url}/repos/demo/pods/contents/pods/acme/prod/spec.yml"
        return session.get(url, headers={"Authorization": "token test-token"}, timeout=10).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        statuses = list(pool.map(fetch, range(100)))
    assert statuses == [200] * 100
    assert time.monotonic() - started < 3
    assert fakegithub.rate_limit["resources"]["core"]["remaining"] == 5000 - 100


# --- GitHub App ----------------------------------------------------------------------------------


def test_app_installation_token_is_exchanged_and_accepted(fakegithub):
    private = configure_app(fakegithub)
    auth = github.Auth.AppAuth(APP_ID, private).get_installation_auth(INSTALLATION_ID)
    gh = client(fakegithub, auth=auth)
    repo = gh.get_repo("demo/pods")
    assert repo.full_name == "demo/pods"
    assert fakegithub.count("POST", r"/app/installations/42/access_tokens$") == 1
    assert fakegithub.requests[-1].headers["authorization"].startswith("token ghs_")
    response = raw(fakegithub, "GET", "/repos/demo/pods", token=auth.token)
    assert response.status_code == 200
    assert "x-oauth-scopes" not in response.headers


@pytest.mark.parametrize("problem", ["other-key", "wrong-issuer", "expired", "no-app"])
def test_bad_app_jwt_is_rejected_with_401(fakegithub, problem):
    private = configure_app(fakegithub)
    if problem == "other-key":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        private = other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        token = app_jwt(private)
    elif problem == "wrong-issuer":
        token = app_jwt(private, iss="999")
    elif problem == "expired":
        token = app_jwt(private, expires_in=-120)
    else:
        fakegithub.app = None
        token = app_jwt(private)
    response = requests.post(
        f"{fakegithub.api_url}/app/installations/{INSTALLATION_ID}/access_tokens",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    assert response.status_code == 401
    assert key_pair()  # the shared key is untouched


# --- control API, GHES prefix and CLI -------------------------------------------------------------


def test_reset_restores_the_constructor_state(fakegithub, workflow):
    files = fakegithub.files
    head = fakegithub.head_sha
    workflow.create_dispatch("main", INPUTS, throw=True)
    fakegithub.put_file("pods/x/y/spec.yml", "x")
    fakegithub.add_fault(path="/", status=500)
    fakegithub.set_rate_limit(remaining=1)
    fakegithub.token = "other"
    fakegithub.rate_limiting_enabled = False
    fakegithub.workflow_def = WorkflowDef.from_yaml("on: push\njobs: {}\n")
    fakegithub.reset()
    assert (fakegithub.files, fakegithub.head_sha) == (files, head)
    assert fakegithub.runs == [] and fakegithub.requests == [] and fakegithub.deliveries == []
    assert raw(fakegithub, "GET", "/repos/demo/pods").status_code == 200
    assert fakegithub.rate_limit["resources"]["core"]["remaining"] == 4999
    assert raw(fakegithub, "GET", "/rate_limit").status_code == 200
    assert fakegithub.workflow_def == WorkflowDef.load()


def test_api_prefix_serves_ghes_style_urls():
    with FakeGitHub(api_prefix="/api/v3") as gh:
        gh.put_file("pods/a/b/spec.yml", "a: 1\n")
        assert gh.api_url.endswith("/api/v3")
        repo = client(gh).get_repo("demo/pods")
        assert repo.get_contents("pods/a/b/spec.yml").decoded_content == b"a: 1\n"
        assert requests.get(f"{gh.url}/repos/demo/pods", timeout=5).status_code == 404


def test_cli_serves_the_spec_directory_until_terminated(tmp_path):
    (tmp_path / "acme" / "prod").mkdir(parents=True)
    (tmp_path / "acme" / "prod" / "spec.yml").write_text("customer: acme\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakegithub", "--port", "0", "--specs", str(tmp_path), "--token", "cli-token"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        response = requests.get(
            f"{url}/repos/demo/pods/contents/pods/acme/prod/spec.yml",
            headers={"Authorization": "token cli-token"},
            timeout=5,
        )
        assert base64.b64decode(response.json()["content"]) == b"customer: acme\n"
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0


def test_emulator_imports_nothing_from_the_portal():
    code = (
        "import sys, fakegithub, fakegithub.routes, fakegithub.shapes, fakegithub.state, fakegithub.webhooks;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('deployments', 'portal', 'django')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_project_workflow_file_declares_what_the_builtin_default_declares():
    if not PROJECT_WORKFLOW.is_file():
        pytest.skip("the project has no deploy workflow yet")
    project, default = WorkflowDef.load(), WorkflowDef.default()
    assert (project.name, project.run_name, project.inputs, project.dispatchable) == (
        default.name,
        default.run_name,
        default.inputs,
        default.dispatchable,
    )
