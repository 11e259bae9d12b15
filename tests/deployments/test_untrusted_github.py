"""What comes from GitHub is untrusted: oversize specs, a rate limit running out, signed webhooks
about other repositories' runs, malformed numbers, links to elsewhere."""

import copy
import hashlib
import json

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from deployments.models import DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, form, graphql_oids, post_event, put_pods, replay


def blob_sha(text: str) -> str:
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def blob_gets(gh) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in gh.requests if r.method == "GET" and "/git/blobs/" in r.path]


@pytest.fixture
def forty_pods_and_a_reserve(gh, per_spec_reads):
    """46 pods (the emulator's 6 and 40 more) read one by one, keeping 100 requests in reserve."""
    per_spec_reads.INVENTORY_RATE_LIMIT_RESERVE = 100
    put_pods(gh, 40)


# --- Spec files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [5_000, 3_000_000])
def test_an_oversize_spec_is_an_invalid_row_and_never_downloaded(gh, viewer_client, padding):
    text = "customer: big\nenvironment: prod\n# " + "x" * padding + "\n"
    gh.put_file("pods/big/prod/spec.yml", text)
    response = viewer_client.get("/")
    assert response.status_code == 200
    pods = {pod.key: pod for pod in response.context["pods"]}
    assert pods["big/prod"].spec is None and "larger than" in pods["big/prod"].error
    assert pods["acme/prod"].spec is not None  # every other pod keeps working
    assert blob_sha(text) not in blob_gets(gh)
    assert not [r for r in gh.requests if r.method == "POST" and blob_sha(text) in graphql_oids(r)]
    assertContains(response, "invalid spec")


def test_an_oversize_spec_can_be_replaced_from_its_edit_page_with_a_bounded_diff(gh, deployer_client):
    gh.put_file("pods/big/prod/spec.yml", "# " + "y" * 100_000 + "\n")
    page = deployer_client.get("/pods/big/prod/edit/")
    assert page.status_code == 200
    values = {**EDIT_ACME_PROD, "customer": "big", "instance_name": "big-prod-web"}
    preview = deployer_client.post("/deploy/preview/", form(values))
    assert preview.status_code == 200 and len(preview.content) < 50_000
    deployer_client.post("/deploy/", form(values))
    assert DeploymentRequest.objects.get().spec_before == ""


def test_blobs_fetched_before_a_failure_are_kept(gh, viewer_client, per_spec_reads):
    customers = put_pods(gh, 12)
    failing = blob_sha(gh.files[f"pods/{customers[5]}/prod/spec.yml"])
    gh.add_fault("GET", rf"/git/blobs/{failing}$", status=502, body={"message": "Server Error"})
    assert viewer_client.get("/").status_code == 503
    fetched = set(blob_gets(gh))
    gh.clear_faults()
    gh.clear_requests()
    assert viewer_client.get("/").status_code == 200
    refetched = blob_gets(gh)
    # Only what was not read yet is asked for again; together they are every pod's blob.
    assert failing in refetched and not (set(refetched) - {failing}) & (fetched - {failing})
    specs = {blob_sha(t) for p, t in gh.files.items() if p.startswith("pods/") and p.endswith("/spec.yml")}
    assert fetched | set(refetched) == specs


@pytest.mark.usefixtures("forty_pods_and_a_reserve")
def test_a_cold_listing_keeps_a_reserve_of_the_rate_limit_and_finishes_later(gh, deployer_client):
    gh.set_rate_limit(remaining=130)
    response = deployer_client.get("/")
    assert response.status_code == 200
    assert 0 < len(blob_gets(gh)) <= 130 - 1 - 100  # the tree, then blobs down to the reserve
    unread = [pod for pod in response.context["pods"] if not pod.loaded]
    assert unread and len(response.context["pods"]) == 46
    assertContains(response, "Some specs are not loaded yet")
    gh.set_rate_limit(remaining=50)  # below the reserve: nothing more is read for now
    # An unread pod cannot be edited from a guess of its spec, nor created again.
    busy = unread[0]
    values = {**EDIT_ACME_PROD, "customer": busy.customer, "instance_name": f"{busy.customer}-web"}
    preview = deployer_client.post("/deploy/preview/", form(values))
    assertContains(preview, "not loaded yet", status_code=400)
    assert deployer_client.post("/deploy/preview/", form(values, mode="new")).status_code == 409
    gh.set_rate_limit(remaining=5000)
    response = deployer_client.get("/")
    assert all(pod.loaded for pod in response.context["pods"])
    assertNotContains(response, "Some specs are not loaded yet")


@pytest.mark.usefixtures("forty_pods_and_a_reserve")
def test_a_later_view_of_a_cold_listing_shows_the_specs_read_since(gh, viewer_client):
    gh.set_rate_limit(remaining=120)
    first = viewer_client.get("/")
    unread = sum(not pod.loaded for pod in first.context["pods"])
    assert unread and first.content.decode().count(">not loaded yet:") == unread  # a row each
    gh.set_rate_limit(remaining=130)  # a few more blobs, not all: still incomplete
    second = viewer_client.get("/")
    still = sum(not pod.loaded for pod in second.context["pods"])
    assert 0 < still < unread
    # The page shows the specs read since, not the first view's rendered content.
    assert second.content.decode().count(">not loaded yet:") == still


# --- Webhooks: provenance, not only a signature ------------------------------------------------------


@pytest.fixture
def deployed(gh, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    return DeploymentRequest.objects.get()


def completed_payload(gh, run_id: int, conclusion: str = "success") -> dict:
    gh.complete_run(run_id, conclusion=conclusion)
    return copy.deepcopy(gh.deliveries[-1].payload)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda run: run["repository"].update(full_name="someone/else"), "another repository"),
        (lambda run: run.update(path=".github/workflows/ci.yml"), "another workflow"),
        (lambda run: run.update(event="pull_request"), "pull_request"),
        (lambda run: run.update(head_branch="feature/x"), "another branch"),
        (lambda run: run.pop("repository"), "another repository"),
    ],
)
def test_a_signed_run_from_elsewhere_moves_nothing(gh, client, deployed, change, reason):
    payload = completed_payload(gh, deployed.run_id)
    change(payload["workflow_run"])
    response = post_event(client, payload)
    assert response.status_code == 202 and reason in response.json()["message"]
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == ("dispatched", "")
    assert not deployed.events.filter(source="webhook").exists()


def test_a_title_naming_another_pod_does_not_attach_to_the_request(gh, client, deployer_client, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.1
    gh.ghes, gh.run_visible_after = True, 60  # the request does not know its run
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    payload = completed_payload(gh, gh.runs[0]["id"])
    payload["workflow_run"]["id"] += 1000
    payload["workflow_run"]["display_title"] = f"Deploy globex/prod [{request.request_id}]"
    assert post_event(client, payload).status_code == 202
    request.refresh_from_db()
    assert (request.status, request.run_id) == ("dispatched", None)


def test_another_run_carrying_the_request_id_never_takes_it_over(gh, client, deployed):
    payload = completed_payload(gh, deployed.run_id, conclusion="success")
    payload["workflow_run"]["id"] = deployed.run_id + 77
    payload["workflow_run"]["html_url"] = "https://github.example/evil/actions/runs/1"
    assert post_event(client, payload).status_code == 202
    deployed.refresh_from_db()
    assert (deployed.status, deployed.run_id) == ("dispatched", deployed.run_id)


def test_the_run_link_is_never_rewritten(gh, client, deployed):
    url = deployed.run_url
    payload = completed_payload(gh, deployed.run_id)
    payload["workflow_run"]["html_url"] = f"{gh.url}/demo/pods/actions/runs/999"
    assert post_event(client, payload).status_code == 200
    deployed.refresh_from_db()
    assert (deployed.status, deployed.run_url) == ("completed", url)


@pytest.mark.parametrize(
    "html_url",
    [
        "javascript:alert(1)",
        "https://evil.example/demo/pods/actions/runs/1",
        "//evil.example/x",
        "data:text/html,x",
    ],
)
def test_a_run_link_outside_the_configured_github_is_shown_as_text(
    gh, client, deployer_client, settings, html_url
):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.1
    gh.ghes, gh.run_visible_after = True, 60  # the run (and its link) arrive by webhook only
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    payload = completed_payload(gh, gh.runs[0]["id"])
    payload["workflow_run"]["html_url"] = html_url
    assert post_event(client, payload).status_code == 200
    request.refresh_from_db()
    assert (request.status, request.run_url, request.run_link) == ("completed", "", "")
    response = deployer_client.get(f"/requests/{request.pk}/")
    assertNotContains(response, f'href="{html_url}"')
    assertNotContains(deployer_client.get("/requests/"), f'href="{html_url}"')


@pytest.mark.parametrize(
    "field, raw",
    [
        ("id", "1e400"),
        ("id", "-5"),
        ("id", "true"),
        ("id", '"123"'),
        ("id", "18446744073709551616"),
        ("run_number", '"abc"'),
        ("run_number", "1.5"),
        ("created_at", "12"),
        ("created_at", '"yesterday"'),
        ("status", "[1]"),
        ("display_title", '{"a": 1}'),
    ],
)
def test_malformed_fields_answer_400_and_change_nothing(gh, client, deployed, field, raw):
    payload = completed_payload(gh, deployed.run_id)
    marker = "__MALFORMED__"
    payload["workflow_run"][field] = marker
    body = json.dumps(payload).replace(f'"{marker}"', raw).encode()
    response = post_event(client, payload, body=body)
    assert response.status_code == 400
    deployed.refresh_from_db()
    assert deployed.status == "dispatched"


def test_deeply_nested_json_answers_400(gh, client, deployed):
    body = b'{"workflow_run": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert post_event(client, {}, body=body).status_code == 400


def test_the_emulators_own_deliveries_still_complete_the_request(gh, client, deployed):
    gh.complete_run(deployed.run_id)
    assert [replay(client, d).status_code for d in gh.deliveries] == [200, 200, 200]
    deployed.refresh_from_db()
    assert (deployed.status, deployed.conclusion) == ("completed", "success")


@pytest.mark.parametrize(
    "body", [{"content": 5, "encoding": "base64"}, {"content": "@@@not base64", "encoding": "base64"}, [1, 2]]
)
def test_a_malformed_blob_answer_is_a_github_error_page_not_a_crash(gh, viewer_client, body, per_spec_reads):
    gh.add_fault("GET", r"/git/blobs/", status=200, body=body)
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert response.context["error_type"] == "api_error"


def test_a_blob_larger_than_its_tree_entry_said_is_not_kept(gh, deployer_client, per_spec_reads):
    import base64

    big = base64.b64encode(("# " + "w" * 2_000_000 + "\n").encode()).decode()
    gh.put_file("pods/liar/prod/spec.yml", "customer: liar\n")
    sha = blob_sha("customer: liar\n")
    gh.add_fault(
        "GET", rf"/git/blobs/{sha}$", status=200, body={"sha": sha, "content": big, "encoding": "base64"}
    )
    pods = {pod.key: pod for pod in deployer_client.get("/").context["pods"]}
    assert pods["liar/prod"].spec is None and pods["liar/prod"].text == ""
    values = {**EDIT_ACME_PROD, "customer": "liar", "instance_name": "liar-prod-web"}
    preview = deployer_client.post("/deploy/preview/", form(values))
    assert preview.status_code == 200 and len(preview.content) < 50_000
