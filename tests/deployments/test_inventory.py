import time
import uuid

import pytest
from django.core.cache import cache
from pytest_django.asserts import assertContains

from deployments import gh as portal_gh
from deployments import inventory, podspec
from tests.helpers import graphql_oids, put_pods, spec_blobs


def lose_listing():
    """Forget the parsed listing (shared and per process), as after a cache flush; blobs stay."""
    cache.delete(f"{inventory._cache_key()}:meta")
    inventory._memo.clear()


def test_pod_list_shows_every_example_pod_with_its_values(gh, viewer_client):
    response = viewer_client.get("/")
    assert response.status_code == 200
    pods = {pod.key: pod.spec for pod in response.context["pods"]}
    assert (pods["acme/prod"].instance_type, pods["acme/prod"].waf_enabled) == ("t3.medium", True)
    assert (pods["umbrella/dev"].instance_type, pods["umbrella/dev"].waf_enabled) == ("t3.micro", False)
    assertContains(response, "6 pods")
    for label, value in (
        ("Instance name", "acme-prod-web"),
        ("Instance name", "umbrella-dev-web"),
        ("Type", "t3.micro"),
        ("WAF", "off"),
    ):
        assertContains(response, f'<td data-label="{label}">{value}</td>', html=True)
    assertContains(
        response,
        '<a class="btn" href="/pods/globex/staging/edit/">'
        'Edit<span class="visually-hidden"> globex/staging</span></a>',
        html=True,
    )
    assertContains(response, '<a class="btn primary" href="/pods/new/">New pod</a>', html=True)


def test_search_filters_pods(gh, viewer_client):
    page = viewer_client.get("/", {"q": "globex"}).content.decode()
    assert "2 pods matching" in page
    assert "globex-prod-app" in page
    assert "acme-prod-web" not in page


def test_many_pods_are_shown_a_page_at_a_time(gh, viewer_client):
    put_pods(gh, 150)
    first = viewer_client.get("/").content.decode()
    assert "156 pods" in first and "Page 1 of 2" in first
    assert "acme-prod-web" in first and "c097-web" in first and "c098-web" not in first  # sorted by pod
    second = viewer_client.get("/", {"page": 2}).content.decode()
    assert "c098-web" in second and "umbrella-dev-web" in second and "acme-prod-web" not in second
    searched = viewer_client.get("/", {"q": "c12"}).content.decode()
    assert "10 pods matching" in searched and "Page 1 of" not in searched


def test_malformed_spec_is_marked_invalid_and_the_rest_still_listed(gh, viewer_client):
    gh.put_file("pods/broken/prod/spec.yml", "customer: broken\nenvironment: prod\ninstance_type: [oops\n")
    gh.put_file("pods/gpu/prod/spec.yml", "customer: gpu\nenvironment: prod\ninstance_name: gpu-prod\n"
                "instance_type: p5.48xlarge\nwaf_enabled: false\n")  # fmt: skip
    page = viewer_client.get("/").content.decode()
    assert "8 pods" in page
    assert page.count("invalid spec") == 2
    assert "not valid YAML" in page
    assert "instance_type &#x27;p5.48xlarge&#x27; is not allowed" in page
    assert "acme-prod-web" in page


def test_spec_under_the_wrong_directory_is_marked_invalid(gh, db):
    gh.put_file("pods/acme/dev/spec.yml", gh.files["pods/acme/prod/spec.yml"])
    pod = inventory.get_pod("acme", "dev")
    assert pod.spec is None
    assert pod.error == "spec says acme/prod but lives under acme/dev"


def test_cold_listing_costs_two_tree_calls_and_one_graphql_query(gh, db):
    gh.clear_requests()
    pods = inventory.list_pods()
    assert len(pods) == 6
    specs = sorted(blob for path, blob in spec_blobs(gh).items())
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.query) for r in gh.requests] == [
        ("GET", "main", {}),
        ("GET", gh.state.snapshots[gh.head_sha].dirs["pods"], {"recursive": "1"}),
        ("POST", "graphql", {}),
    ]
    assert graphql_oids(gh.requests[2]) == specs  # every spec, named once, in one query
    # The GraphQL query spends a point of its own limit, and the portal keeps going by the REST one's.
    assert gh.rate_limit["resources"]["core"]["used"] == 2
    assert gh.rate_limit["resources"]["graphql"]["used"] == 1
    assert portal_gh.rate_limit_remaining() == gh.rate_limit["resources"]["core"]["remaining"]


@pytest.mark.usefixtures("per_spec_reads")
def test_cold_listing_without_graphql_costs_two_tree_calls_and_one_call_per_blob(gh, db):
    gh.clear_requests()
    pods = inventory.list_pods()
    assert len(pods) == 6
    assert gh.count("GET", r"/git/trees/") == 2
    assert gh.count("GET", r"/git/blobs/") == 6
    assert gh.count() == 8


def test_warm_listing_of_unchanged_repo_is_one_free_304(gh, db):
    inventory.list_pods()
    remaining = gh.rate_limit["resources"]["core"]["remaining"]
    gh.clear_requests()
    pods = inventory.list_pods()
    assert len(pods) == 6
    assert [r.status for r in gh.requests] == [304]
    assert gh.rate_limit["resources"]["core"]["remaining"] == remaining


def test_one_changed_spec_costs_the_two_trees_and_that_one_blob(gh, db):
    inventory.list_pods()
    gh.put_file(
        "pods/acme/prod/spec.yml", gh.files["pods/acme/prod/spec.yml"].replace("t3.medium", "t3.large")
    )
    gh.clear_requests()
    pod = inventory.get_pod("acme", "prod")
    assert pod.spec.instance_type == "t3.large"
    assert gh.count() == 3
    assert gh.count("GET", r"/git/trees/") == 2
    [query] = [r for r in gh.requests if r.method == "POST"]
    assert graphql_oids(query) == [spec_blobs(gh)["pods/acme/prod/spec.yml"]]  # only the changed one


def test_blobs_are_shared_through_the_cache_when_the_listing_is_lost(gh, db):
    inventory.list_pods()
    lose_listing()
    gh.clear_requests()
    assert len(inventory.list_pods()) == 6
    assert gh.count("GET", r"/git/blobs/") == 0
    assert [r.status for r in gh.requests] == [200, 200]


def test_commit_outside_specs_path_costs_the_root_tree_only(gh, db):
    inventory.list_pods()
    gh.put_file("docs/README.md", "# Pods\n")
    gh.clear_requests()
    assert len(inventory.list_pods()) == 6
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in gh.requests] == [("main", 200)]


def test_listing_checked_moments_ago_is_served_without_asking_github(gh, db, settings):
    settings.INVENTORY_FRESH_SECONDS = 60
    inventory.list_pods()
    gh.clear_requests()
    assert len(inventory.list_pods()) == 6
    assert inventory.get_pod("acme", "prod").spec.instance_name == "acme-prod-web"
    assert gh.count() == 0


def test_finished_deployment_makes_the_next_listing_ask_github(
    gh, db, settings, deployer, django_capture_on_commit_callbacks
):
    from deployments import services

    settings.INVENTORY_FRESH_SECONDS = 60
    inventory.list_pods()
    spec = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.large", True)
    request, _ = services.deployment_request_create(
        user=deployer, spec=spec, mode="edit", current=None, idempotency_key=uuid.uuid4()
    )
    services.deployment_request_dispatch(request=request, actor=deployer)
    run = portal_gh.run_state_from_payload(gh.complete_run(request.run_id))
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_request_apply_run(request=request, run=run, source="sync")
    assert inventory.get_pod("acme", "prod").spec.instance_type == "t3.large"


def test_a_new_pod_in_the_repo_appears(gh, viewer_client):
    viewer_client.get("/")
    gh.put_file("pods/hooli/prod/spec.yml", "customer: hooli\nenvironment: prod\ninstance_name: hooli-web\n"
                "instance_type: t3.small\nwaf_enabled: true\n")  # fmt: skip
    page = viewer_client.get("/").content.decode()
    assert "hooli-web" in page
    assert "7 pods" in page


def test_rate_limited_listing_shows_quota_and_reset_time(gh, viewer_client):
    reset = int(time.time()) + 600
    gh.set_rate_limit(remaining=0, reset=reset)
    response = viewer_client.get("/")
    assert response.status_code == 503
    page = response.content.decode()
    assert "GitHub Rate Limit Reached" in page
    assert "0 of 5000 requests left" in page
    assert time.strftime("%H:%M:%S", time.gmtime(reset)) in page


def test_unreachable_github_is_503_with_a_retry_hint(gh, viewer_client, settings):
    settings.GITHUB_API_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    response = viewer_client.get("/")
    assert response.status_code == 503
    page = response.content.decode()
    assert "Could not reach GitHub" in page
    assert "Try again in a minute" in page
    assert "Traceback" not in page


def test_bad_token_is_explained(gh, viewer_client, settings):
    settings.GH_TOKEN = "wrong-token"
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert "GitHub rejected the portal&#x27;s credentials" in response.content.decode()


def test_github_timeout_is_503(gh, viewer_client, settings):
    settings.GITHUB_TIMEOUT = 1
    gh.add_fault("GET", r"/git/trees/", status=None, delay=3)
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert "did not answer within 1 s" in response.content.decode()


@pytest.mark.parametrize("status", [500, 502])
def test_github_server_error_is_503_api_error(gh, viewer_client, status):
    gh.add_fault("GET", r"/git/trees/", status=status)
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert "GitHub API Error" in response.content.decode()


def test_spec_blobs_stay_cached_beyond_the_default_cache_size(gh, db):
    put_pods(gh, 350)
    inventory.list_pods()
    lose_listing()
    gh.clear_requests()
    assert len(inventory.list_pods()) == 356
    assert gh.count("GET", r"/git/blobs/") == 0


def test_files_outside_specs_path_do_not_truncate_the_listing(gh, viewer_client):
    gh.tree_entry_limit = 20
    for i in range(50):
        gh.put_file(f"docs/page{i:02}.md", f"page {i}\n")
    response = viewer_client.get("/")
    assert len(response.context["pods"]) == 6
    assert "some pods may be missing here" not in response.content.decode()
    assert gh.count("GET", r"/git/trees/") == 2


def test_specs_past_the_tree_limit_are_listed_one_sub_tree_at_a_time(gh, viewer_client):
    gh.tree_entry_limit = 20
    put_pods(gh, 30)
    gh.clear_requests()
    response = viewer_client.get("/")
    pods = response.context["pods"]
    assert len({pod.key for pod in pods}) == 36
    assert "some pods may be missing here" not in response.content.decode()
    customers = len({pod.customer for pod in pods})
    # root, SPECS_PATH recursive (truncated), SPECS_PATH one level, then each customer's tree
    assert gh.count("GET", r"/git/trees/") == 3 + customers


def test_past_the_tree_limit_a_change_lists_only_the_changed_customers_tree(gh, db):
    """Sub-trees are listed by id: once walked, a changed spec costs its customer's tree, not
    one request per customer again (at 13,000 pods that was ~6,500 requests per change)."""
    gh.tree_entry_limit = 20
    put_pods(gh, 30)
    listed = {pod.key: pod for pod in inventory.list_pods()}
    path = "pods/c004/prod/spec.yml"
    gh.put_file(path, gh.files[path].replace("t3.small", "t3.medium"))
    gh.clear_requests()

    pods = {pod.key: pod for pod in inventory.list_pods()}

    # root, SPECS_PATH recursive (truncated), SPECS_PATH one level, then c004s tree only
    trees = [r.path for r in gh.requests if "/git/trees/" in r.path]
    assert len(trees) == 4, trees
    assert pods.keys() == listed.keys()
    assert pods["c004/prod"].spec.instance_type == "t3.medium"
    assert pods["c004/prod"].sha != listed["c004/prod"].sha
    assert all(pods[key].sha == listed[key].sha for key in pods if key != "c004/prod")


def test_truncated_tree_is_flagged_on_the_page(gh, viewer_client):
    specs = portal_gh.get_spec_tree()
    entry = {"path": "acme/prod/spec.yml", "mode": "100644", "type": "blob", "size": 10}
    entry["sha"] = next(e.sha for e in specs.entries if e.path == "pods/acme/prod/spec.yml")
    gh.add_fault(  # the SPECS_PATH tree, recursive or not
        "GET",
        rf"/git/trees/{specs.sha}$",
        status=200,
        body={"sha": specs.sha, "tree": [entry], "truncated": True},
    )
    page = viewer_client.get("/").content.decode()
    assert "1 pod" in page
    assert "some pods may be missing here" in page
