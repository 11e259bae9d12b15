"""The pod page: spec, requests, git history of spec.yml (cached, paginated), diffs, drift."""

import re

import pytest
from pytest_django.asserts import assertContains, assertNotContains

from deployments import podspec, services
from deployments.models import DeploymentRequest
from fakegithub._git import blob_sha
from tests.helpers import EDIT_ACME_PROD, dispatches, form, logged_in_client

ACME_PROD = "pods/acme/prod/spec.yml"


def spec_text(instance_type: str, waf: bool = True) -> str:
    return podspec.render(podspec.PodSpec("acme", "prod", "acme-prod-web", instance_type, waf))


def deploy(client, gh, values: dict) -> DeploymentRequest:
    """Deploy through the portal and let the emulated workflow run to the end."""
    response = client.post("/deploy/", values)
    assert response.status_code == 302, response.content.decode()[:500]
    request = DeploymentRequest.objects.order_by("-pk").first()
    gh.complete_run(request.run_id, conclusion=None)
    services.deployment_requests_sync()  # as the webhook or the cron would
    request.refresh_from_db()
    return request


def commit_shas(response) -> list[str]:
    return [c.sha for c, _ in response.context["commits"]]


def test_pods_list_links_each_pod_to_its_page(gh, viewer_client):
    response = viewer_client.get("/")
    assertContains(response, 'href="/pods/acme/prod/"')
    assertContains(response, 'href="/pods/umbrella/dev/"')


def test_pod_page_shows_spec_and_history_of_the_seed(gh, viewer_client):
    response = viewer_client.get("/pods/acme/prod/")
    assert response.status_code == 200
    assertContains(response, "<dd>t3.medium</dd>", html=True)
    assertContains(response, f"version <code>{blob_sha(gh.files[ACME_PROD].encode())[:7]}</code>")
    assert commit_shas(response) == [gh.head_sha]  # the seed commit added it
    assertContains(response, "Initial specs")
    assertContains(response, "changed outside the portal")
    assertContains(response, "No deployment requests yet.")


def test_pod_page_of_unknown_pod_is_404(gh, viewer_client):
    response = viewer_client.get("/pods/nobody/prod/")
    assert response.status_code == 404
    assertContains(response, "Pod nobody/prod does not exist.", status_code=404)


def test_history_lists_this_specs_commits_newest_first_with_portal_requests_linked(gh, deployer_client):
    seed = gh.head_sha
    request = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    portal_commit = gh.head_sha
    gh.put_file("pods/globex/prod/spec.yml", gh.files["pods/globex/prod/spec.yml"] + "# other pod\n")
    gh.put_file(ACME_PROD, spec_text("t3.xlarge"), message="Hand edit of acme/prod")
    outside = gh.head_sha

    response = deployer_client.get("/pods/acme/prod/")

    assert commit_shas(response) == [outside, portal_commit, seed]
    labels = [r.pk if r else None for _, r in response.context["commits"]]
    assert labels == [None, request.pk, None]
    page = response.content.decode()
    row = re.search(rf'<tr id="commit-{outside[:7]}">.*?</tr>', page, re.S).group(0)
    assert "Hand edit of acme/prod" in row and "changed outside the portal" in row
    row = re.search(rf'<tr id="commit-{portal_commit[:7]}">.*?</tr>', page, re.S).group(0)
    assert f'href="/requests/{request.pk}/"' in row and "changed outside the portal" not in row
    assert f'href="{gh.url}/demo/pods/commit/{outside}"' in page


def test_pod_page_lists_its_requests_newest_first_with_outcome_and_run_links(gh, deployer_client):
    first = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    second = deploy(deployer_client, gh, form(EDIT_ACME_PROD, instance_type="t3.xlarge"))

    response = deployer_client.get("/pods/acme/prod/")

    assert [r.pk for r, _ in response.context["requests"]] == [second.pk, first.pk]
    page = response.content.decode()
    row = re.search(rf'<tr id="request-{second.pk}">.*?</tr>', page, re.S).group(0)
    assert "success" in row and "dana" in row and f'href="{second.run_url}"' in row


def test_a_warm_pod_page_costs_only_free_conditional_requests(gh, viewer_client):
    viewer_client.get("/pods/acme/prod/")
    gh.clear_requests()

    response = viewer_client.get("/pods/acme/prod/")

    assert response.status_code == 200
    assert [(r.method, r.status) for r in gh.requests] == [("GET", 304), ("GET", 304)]
    assert gh.count("GET", r"/commits$") == 1


def test_a_new_commit_refreshes_the_cached_history(gh, viewer_client):
    viewer_client.get("/pods/acme/prod/")
    gh.put_file(ACME_PROD, spec_text("t3.xlarge"), message="Hand edit")
    response = viewer_client.get("/pods/acme/prod/")
    assert commit_shas(response)[0] == gh.head_sha


def test_history_is_paginated_with_githubs_link_header(gh, viewer_client, settings, monkeypatch):
    monkeypatch.setattr("deployments.gh.history.PER_PAGE", 2)
    for size in ("t3.large", "t3.xlarge", "t3.2xlarge"):
        gh.put_file(ACME_PROD, spec_text(size), message=f"Resize to {size}")

    first = viewer_client.get("/pods/acme/prod/")
    second = viewer_client.get("/pods/acme/prod/?page=2")

    assert len(commit_shas(first)) == 2 and first.context["history"].has_next
    assertContains(first, 'href="?page=2"')
    assert len(commit_shas(second)) == 2 and not second.context["history"].has_next
    assert set(commit_shas(first)).isdisjoint(commit_shas(second))
    assertContains(second, "Initial specs")
    assert gh.requests[-1].query["page"] == "2"


def test_diff_of_two_versions_shows_what_changed_between_them(gh, viewer_client):
    seed = gh.head_sha
    gh.put_file(ACME_PROD, spec_text("t3.xlarge", waf=False), message="Hand edit")

    response = viewer_client.get(f"/pods/acme/prod/diff/?from={seed}&to={gh.head_sha}")

    assert response.status_code == 200
    assertContains(response, '<span class="del">-instance_type: t3.medium</span>', html=True)
    assertContains(response, '<span class="add">+instance_type: t3.xlarge</span>', html=True)
    assertContains(response, '<span class="add">+waf_enabled: false</span>', html=True)


def test_diff_reads_each_version_once(gh, viewer_client):
    seed = gh.head_sha
    gh.put_file(ACME_PROD, spec_text("t3.xlarge"))
    url = f"/pods/acme/prod/diff/?from={seed}&to={gh.head_sha}"
    viewer_client.get(url)
    gh.clear_requests()
    viewer_client.get(url)
    assert gh.count("GET", r"/contents/") == 0


def test_diff_shows_a_version_that_is_not_a_valid_spec_without_trusting_it(gh, viewer_client):
    seed = gh.head_sha
    gh.put_file(ACME_PROD, "customer: acme\nenvironment: prod\ninstance_type: !!python/object:os.system x\n")
    response = viewer_client.get(f"/pods/acme/prod/diff/?from={seed}&to={gh.head_sha}")
    assert response.status_code == 200
    spec, problem = response.context["specs"][1]
    assert spec is None and problem


@pytest.mark.parametrize("query", ["from=main&to=HEAD", "from=&to=", "from=../x&to=1"])
def test_diff_refuses_what_is_not_a_commit_id(gh, viewer_client, query):
    response = viewer_client.get(f"/pods/acme/prod/diff/?{query}")
    assert response.status_code == 400
    assert gh.count("GET", r"/contents/") == 0


def test_pod_page_says_the_spec_in_git_is_the_last_deployed_one(gh, deployer_client):
    request = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    response = deployer_client.get("/pods/acme/prod/")
    assertContains(response, "in sync")
    link = f'<a href="/requests/{request.pk}/">#{request.pk}</a>'
    assertContains(response, f"the last successful deployment, {link}")
    assertNotContains(response, "changed outside the portal since")


def test_pod_page_says_when_the_spec_was_changed_outside_the_portal_since_the_last_deployment(
    gh, deployer_client
):
    request = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    gh.put_file(ACME_PROD, spec_text("t3.xlarge"), message="Hand edit")
    response = deployer_client.get("/pods/acme/prod/")
    assert response.context["drift"] == (request, True)
    link = f'<a href="/requests/{request.pk}/">#{request.pk}</a>'
    assertContains(response, f"changed outside the portal since {link}")


def test_history_unavailable_is_said_and_the_rest_of_the_page_shown(gh, viewer_client):
    gh.add_fault("GET", r"/commits$", status=500)
    response = viewer_client.get("/pods/acme/prod/")
    assert response.status_code == 200
    assertContains(response, "The history could not be read from GitHub")
    assertContains(response, "<dd>t3.medium</dd>", html=True)


def test_deploys_through_the_portal_count_as_dispatches(gh, deployer_client):
    deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    assert len(dispatches(gh)) == 1


# --- redeploy and roll back -------------------------------------------------------------------------


def hidden_values(response, form_id: str) -> dict:
    """The hidden inputs of the form ``form_id`` on a page: what its button posts."""
    page = response.content.decode()
    block = re.search(rf'<form [^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert block, f"no form {form_id}"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', block.group(1)))


def test_redeploy_of_a_past_request_sends_exactly_that_specs_inputs(gh, deployer_client):
    older = deploy(deployer_client, gh, form(EDIT_ACME_PROD))  # t3.large
    newer = deploy(deployer_client, gh, form(EDIT_ACME_PROD, instance_type="t3.xlarge", waf_enabled=""))

    page = deployer_client.get(older.get_absolute_url())
    values = hidden_values(page, "redeploy")
    assert values["redeploy_of"] == str(older.pk)
    assert values["idempotency_key"] not in (str(older.idempotency_key), str(newer.idempotency_key))
    preview = deployer_client.post("/deploy/preview/", values)
    assert preview.status_code == 200
    assertContains(preview, f'Redeploy of <a href="/requests/{older.pk}/">#{older.pk}</a>')
    # the reverse of the newer change
    assertContains(preview, '<span class="del">-instance_type: t3.xlarge</span>', html=True)
    assertContains(preview, '<span class="add">+instance_type: t3.large</span>', html=True)
    assertContains(preview, '<span class="add">+waf_enabled: true</span>', html=True)

    response = deployer_client.post("/deploy/", values)

    assert response.status_code == 302
    redeploy = DeploymentRequest.objects.get(idempotency_key=values["idempotency_key"])
    assert redeploy.redeploy_of == older and redeploy.source_commit == ""
    sent = dispatches(gh)[-1].json["inputs"]
    assert {k: sent[k] for k in podspec.FIELDS} == {k: older.inputs[k] for k in podspec.FIELDS}
    assertContains(
        deployer_client.get(redeploy.get_absolute_url()), f'Redeploy of <a href="/requests/{older.pk}/">'
    )
    assertContains(
        deployer_client.get(older.get_absolute_url()), f'Redeployed by <a href="/requests/{redeploy.pk}/">'
    )


def test_pod_page_offers_redeploy_of_past_specs_only(gh, deployer_client):
    older = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    newer = deploy(deployer_client, gh, form(EDIT_ACME_PROD, instance_type="t3.xlarge"))
    page = deployer_client.get("/pods/acme/prod/").content.decode()
    row = re.search(rf'<tr id="request-{older.pk}">.*?</tr>', page, re.S).group(0)
    assert "Redeploy this spec" in row
    row = re.search(rf'<tr id="request-{newer.pk}">.*?</tr>', page, re.S).group(0)
    assert "Redeploy this spec" not in row  # it is the current spec


def test_viewers_are_not_offered_redeploy(gh, deployer_client, viewer):
    older = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    deploy(deployer_client, gh, form(EDIT_ACME_PROD, instance_type="t3.xlarge"))
    viewer_client = logged_in_client(viewer)
    assertNotContains(viewer_client.get("/pods/acme/prod/"), "Redeploy this spec")
    assertNotContains(viewer_client.get(older.get_absolute_url()), "Redeploy this spec")


def test_roll_back_to_a_git_version_records_the_commit(gh, deployer_client):
    seed = gh.head_sha
    gh.put_file(ACME_PROD, spec_text("t3.xlarge", waf=False), message="Hand edit")

    history = deployer_client.get("/pods/acme/prod/")
    assertContains(history, f'href="/pods/acme/prod/diff/?from={seed}"')
    diff = deployer_client.get(f"/pods/acme/prod/diff/?from={seed}")
    assertContains(diff, '<span class="add">+instance_type: t3.xlarge</span>', html=True)
    values = hidden_values(diff, "rollback")
    assert values["source_commit"] == seed
    assert values["expected_spec_sha"] == blob_sha(gh.files[ACME_PROD].encode())
    preview = deployer_client.post("/deploy/preview/", values)
    assertContains(preview, f"Roll back to version <code>{seed[:7]}</code>")
    assertContains(preview, '<span class="add">+instance_type: t3.medium</span>', html=True)

    response = deployer_client.post("/deploy/", values)

    request = DeploymentRequest.objects.get()
    assert response.status_code == 302
    assert (request.source_commit, request.redeploy_of) == (seed, None)
    assert dispatches(gh)[0].json["inputs"]["instance_type"] == "t3.medium"
    assertContains(deployer_client.get(request.get_absolute_url()), f"Rolled back to <code>{seed[:7]}</code>")


def test_no_roll_back_to_a_version_that_is_not_a_valid_spec(gh, deployer_client):
    gh.put_file(ACME_PROD, "customer: acme\n")
    broken = gh.head_sha
    gh.put_file(ACME_PROD, spec_text("t3.xlarge"))
    response = deployer_client.get(f"/pods/acme/prod/diff/?from={broken}")
    assert response.status_code == 200
    assert response.context["rollback"] is None


def test_redeploy_of_another_pods_request_is_refused(gh, deployer_client):
    other = deploy(
        deployer_client, gh, form(EDIT_ACME_PROD, customer="globex", instance_name="globex-prod-app")
    )
    response = deployer_client.post("/deploy/preview/", form(EDIT_ACME_PROD, redeploy_of=str(other.pk)))
    assert response.status_code == 400
    assertContains(response, f"Request #{other.pk} is not a request of acme/prod.", status_code=400)


def test_try_again_of_a_failed_request_is_a_redeploy_of_it(gh, deployer_client):
    gh.conclusions["acme/prod"] = "failure"
    failed = deploy(deployer_client, gh, form(EDIT_ACME_PROD))
    assert failed.failed
    values = hidden_values(deployer_client.get(failed.get_absolute_url()), "try-again")
    gh.conclusions.clear()
    response = deployer_client.post("/deploy/", values)
    assert response.status_code == 302
    again = DeploymentRequest.objects.exclude(pk=failed.pk).get()
    assert again.redeploy_of == failed
    assert dispatches(gh)[-1].json["inputs"]["instance_type"] == "t3.large"
