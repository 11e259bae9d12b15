import pytest
from pytest_django.asserts import assertContains, assertNotContains

from deployments import gh as portal_gh
from deployments import services
from deployments.models import DeploymentRequest
from fakegithub._git import blob_sha
from fakegithub.workflow import WorkflowDef
from tests.helpers import (
    EDIT_ACME_PROD,
    NEW_POD,
    dispatches,
    form,
    make_request,
    post_concurrently,
    put_pods,
    replay,
)  # fmt: skip

DEPLOY_BUTTON = '<button class="btn primary" type="submit">Deploy acme/prod</button>'


def test_edit_page_is_prefilled_from_spec(gh, viewer_client):
    response = viewer_client.get("/pods/acme/prod/edit/")
    form = response.context["form"]
    assert [form[name].value() for name in ("instance_name", "instance_type", "waf_enabled", "mode")] == [
        "acme-prod-web", "t3.medium", True, "edit",
    ]  # fmt: skip
    assert form["idempotency_key"].value()
    assertContains(response, '<option value="t3.medium" selected>t3.medium</option>', html=True)


def test_edit_page_of_unknown_pod_is_404(gh, viewer_client):
    response = viewer_client.get("/pods/nobody/prod/edit/")
    assert response.status_code == 404
    assert "Pod nobody/prod does not exist." in response.content.decode()


def test_preview_shows_exact_inputs_and_diff(gh, deployer_client):
    data = form(EDIT_ACME_PROD)
    response = deployer_client.post("/deploy/preview/", data)
    assert response.status_code == 200
    assert response.context["inputs"] == {
        "customer": "acme", "environment": "prod", "instance_name": "acme-prod-web",
        "instance_type": "t3.large", "waf_enabled": "true", "request_id": data["idempotency_key"],
        "action": "deploy", "expected_spec_sha": blob_sha(gh.files["pods/acme/prod/spec.yml"].encode()),
    }  # fmt: skip
    assertContains(response, '<span class="del">-instance_type: t3.medium</span>', html=True)
    assertContains(response, '<span class="add">+instance_type: t3.large</span>', html=True)
    assertContains(response, f"<dd><code>{data['idempotency_key']}</code></dd>", html=True)
    assertContains(response, DEPLOY_BUTTON, html=True)
    assert dispatches(gh) == []


def test_preview_without_changes_offers_no_deploy(gh, deployer_client):
    response = deployer_client.post("/deploy/preview/", form(EDIT_ACME_PROD, instance_type="t3.medium"))
    assert response.context["unchanged"] is True
    assertContains(response, "No changes")
    assertNotContains(response, DEPLOY_BUTTON, html=True)


def test_preview_of_new_pod_adds_whole_file(gh, deployer_client):
    response = deployer_client.post("/deploy/preview/", form(NEW_POD))
    for line in (
        '<span class="hunk">--- /dev/null</span>',
        '<span class="hunk">+++ b/pods/hooli/prod/spec.yml</span>',
        '<span class="add">+customer: hooli</span>',
        '<span class="add">+waf_enabled: false</span>',
    ):
        assertContains(response, line, html=True)  # fmt: skip


def test_deploy_of_edit_dispatches_exact_inputs_and_redirects_to_run(gh, deployer_client, deployer):
    data = form(EDIT_ACME_PROD)
    response = deployer_client.post("/deploy/", data)
    request = DeploymentRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/requests/{request.pk}/"
    [sent] = dispatches(gh)
    assert sent.json == {
        "ref": "main",
        "inputs": {
            "customer": "acme",
            "environment": "prod",
            "instance_name": "acme-prod-web",
            "instance_type": "t3.large",
            "waf_enabled": "true",
            "request_id": data["idempotency_key"],
            "action": "deploy",
            # The spec.yml it was checked against: the workflow refuses any other (lost updates).
            "expected_spec_sha": blob_sha(request.spec_before.encode()),
        },
        "return_run_details": True,
    }
    [run] = gh.runs
    assert request.status == "dispatched"
    assert request.run_id == run["id"]
    assert request.run_url == run["html_url"]
    assert request.requested_by == deployer
    assert request.inputs == sent.json["inputs"]
    assert "instance_type: t3.medium" in request.spec_before
    page = deployer_client.get(response["Location"]).content.decode()
    assert "Deployment started" in page
    assert f'href="{run["html_url"]}"' in page


def test_deploy_happy_path_makes_one_paid_github_request_after_preview(gh, deployer_client):
    data = form(EDIT_ACME_PROD)
    deployer_client.post("/deploy/preview/", data)
    gh.clear_requests()
    deployer_client.post("/deploy/", data)
    # The lost-update check (a conditional request: 304, free of rate limit), then the dispatch.
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.status) for r in gh.requests] == [
        ("GET", "main", 304),
        ("POST", "dispatches", 200),
    ]


def test_deploy_of_new_pod(gh, deployer_client):
    response = deployer_client.post("/deploy/", form(NEW_POD))
    assert response.status_code == 302
    request = DeploymentRequest.objects.get()
    assert (request.mode, request.spec_before, request.pod) == ("new", "", "hooli/prod")
    assert dispatches(gh)[0].json["inputs"]["waf_enabled"] == "false"


def test_new_pod_that_exists_is_409_keeping_the_form(gh, deployer_client):
    response = deployer_client.post("/deploy/", form(NEW_POD, customer="acme", environment="prod"))
    assert response.status_code == 409
    page = response.content.decode()
    assert "Pod Already Exists" in page
    assert "Pod acme/prod already exists." in page
    assert 'href="/pods/acme/prod/edit/"' in page
    assert 'value="hooli-prod-web"' in page  # what the operator typed is still there
    assert dispatches(gh) == []
    assert not DeploymentRequest.objects.exists()


def test_edit_of_missing_pod_is_404(gh, deployer_client):
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD, customer="nobody"))
    assert response.status_code == 404
    assert dispatches(gh) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("customer", "../etc"),
        ("customer", "a/b"),
        ("customer", "ACME"),
        ("environment", "ｐrod"),
        ("instance_name", "x" * 10_000),
        ("instance_name", "x\ninstance_type: p5.48xlarge"),
        ("instance_type", "p5.48xlarge"),
        ("instance_type", ""),
    ],
)
def test_hostile_input_is_400_with_field_error_and_no_dispatch(gh, deployer_client, field, value):
    response = deployer_client.post("/deploy/", form(NEW_POD, **{field: value}))
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    page = response.content.decode()
    # The field names its error (aria-describedby) and the error list has that id.
    assert f'aria-describedby="id_{field}_error"' in page
    assert f'id="id_{field}_error"' in page
    assert dispatches(gh) == []
    assert not DeploymentRequest.objects.exists()


def test_validation_error_re_renders_form_with_values(gh, deployer_client):
    response = deployer_client.post("/deploy/preview/", form(NEW_POD, instance_name="Bad_Name"))
    page = response.content.decode()
    assert response.status_code == 400
    assert "Instance name must be 3-63 lowercase letters" in page  # the label, not instance_name
    assert "instance_name must" not in page
    assert "3-63 characters: starts with a letter" not in page  # the help is not said twice
    assert 'value="hooli"' in page


def test_user_without_deploy_permission_gets_403_and_no_row(gh, viewer_client):
    response = viewer_client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 403
    assert "Deployers group" in response.content.decode()
    assert not DeploymentRequest.objects.exists()
    assert dispatches(gh) == []


def test_same_idempotency_key_twice_dispatches_once(gh, deployer_client):
    data = form(EDIT_ACME_PROD)
    first = deployer_client.post("/deploy/", data)
    second = deployer_client.post("/deploy/", data)
    assert first["Location"] == second["Location"]
    assert DeploymentRequest.objects.count() == 1
    assert len(dispatches(gh)) == 1


def test_resubmitting_a_form_whose_deployment_landed_leads_to_it(gh, deployer_client):
    data = form(EDIT_ACME_PROD)
    first = deployer_client.post("/deploy/", data)
    gh.complete_run(DeploymentRequest.objects.get().run_id)  # the new spec is committed
    for delivery in gh.deliveries:
        replay(deployer_client, delivery)
    assert DeploymentRequest.objects.get().status == "completed"
    assert deployer_client.get("/pods/acme/prod/edit/").status_code == 200  # the listing sees it
    again = deployer_client.post("/deploy/", data)
    assert again.status_code == 302
    assert again["Location"] == first["Location"]
    assert len(dispatches(gh)) == 1


def test_unchanged_values_deploy_nothing(gh, deployer_client):
    response = deployer_client.post(
        "/deploy/", form(EDIT_ACME_PROD, instance_type="t3.medium", waf_enabled="on")
    )
    assert response.status_code == 400
    assert "Nothing to Deploy" in response.content.decode()
    assert dispatches(gh) == []


def test_second_request_for_busy_pod_is_409_naming_the_holder(gh, deployer_client, deployer):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    holder = DeploymentRequest.objects.get()
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD, instance_type="t3.xlarge"))
    page = response.content.decode()
    assert response.status_code == 409
    assert "Deployment in progress" in page
    assert f'href="/requests/{holder.pk}/"' in page
    assert deployer.username in page
    assert '<option value="t3.xlarge" selected>' in page  # the operator's change is kept
    assert len(dispatches(gh)) == 1


# --- GitHub failures: the seed's pages, recorded on the request -------------------------------------


def assert_failure_recorded(error_type: str, text: str):
    request = DeploymentRequest.objects.get()
    assert request.status == "dispatch_failed"
    assert request.error_type == error_type
    assert text in request.error_message
    assert not request.is_active


@pytest.mark.parametrize(
    ("fault", "status", "title", "error_type", "message"),
    [
        ({"status": 403, "body": {"message": "Resource not accessible by integration"}}, 403,
         "Permission Denied", "forbidden", "Update GH_TOKEN"),
        ({"status": 404, "body": {"message": "Not Found"}}, 404,
         "Workflow or Repository Not Found", "not_found", "cannot see demo/pods"),
        ({"status": 422, "body": {"message": 'Unexpected inputs provided: ["x"]'}}, 422,
         "Invalid Workflow Inputs", "validation", "Unexpected inputs provided"),
        ({"status": 422, "body": {"message": "Actions has been disabled for this repository."}}, 422,
         "Request Rejected", "validation", "Actions has been disabled for this repository."),
        ({"status": 502}, 503, "GitHub API Error", "api_error", "Try again in a minute"),
        ({"status": 418, "body": {"message": "I'm a teapot"}}, 500,
         "Deployment Failed", "server_error", "418"),
    ],
)  # fmt: skip
def test_dispatch_failure_shows_the_right_page_and_is_recorded(
    gh, deployer_client, fault, status, title, error_type, message
):
    gh.add_fault("POST", r"/dispatches$", **fault)
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == status
    assert title.replace("'", "&#x27;") in page
    assert message in page
    assert "Traceback" not in page
    assert_failure_recorded(error_type, message)
    assert f"/requests/{DeploymentRequest.objects.get().pk}/" in page


def test_missing_workflow_is_404_naming_the_workflow_and_the_credentials(gh, deployer_client):
    gh.workflow_state = None
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 404
    assert "Workflow or Repository Not Found" in page
    assert ".github/workflows/deploy-pod.yml must be on the repository&#x27;s default branch" in page
    assert_failure_recorded("not_found", "deploy-pod.yml")


def test_repository_the_credentials_cannot_see_is_404_saying_so(gh, deployer, settings):
    # GitHub answers 404, not 403, for a private repository the token cannot see.
    request = make_request(deployer)
    settings.GH_REPO = "demo/private"
    with pytest.raises(portal_gh.GitHubNotFoundError) as exc:
        services.deployment_request_dispatch(request=request, actor=deployer)
    assert exc.value.title == "Workflow or Repository Not Found"
    assert "the portal's credentials cannot see demo/private" in exc.value.message
    assert [(r.path, r.status) for r in dispatches(gh)] == [
        ("/repos/demo/private/actions/workflows/deploy-pod.yml/dispatches", 404)
    ]
    assert_failure_recorded("not_found", "cannot see demo/private")


def test_missing_ref_is_branch_not_found_naming_deploy_ref(gh, deployer, settings):
    request = make_request(deployer)
    settings.DEPLOY_REF = "nope"
    with pytest.raises(portal_gh.GitHubValidationError) as exc:
        services.deployment_request_dispatch(request=request, actor=deployer)
    assert (exc.value.http_status, exc.value.title) == (422, "Branch Not Found")
    assert exc.value.message == (
        "GitHub found no branch 'nope' in demo/pods (No ref found for: nope). "
        "Set DEPLOY_REF to the branch the deploy workflow runs on and restart the portal."
    )
    assert_failure_recorded("validation", "No ref found for: nope")


def test_disabled_workflow_is_422_saying_how_to_enable_it(gh, deployer_client):
    gh.workflow_state = "disabled_manually"
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 422
    assert "Workflow Disabled" in page
    assert "Enable it in the repository&#x27;s Actions tab" in page
    assert "Invalid Workflow Inputs" not in page
    assert_failure_recorded("validation", "Cannot trigger a 'workflow_dispatch' on a disabled workflow")


def test_workflow_without_dispatch_trigger_is_422_saying_to_add_one(gh, deployer_client):
    gh.workflow_def = WorkflowDef.from_yaml("name: Deploy pod\non:\n  push:\njobs: {}\n")
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 422
    assert "Workflow Cannot Be Dispatched" in page
    assert "Add a workflow_dispatch trigger" in page
    assert "on the repository&#x27;s default branch" in page
    assert_failure_recorded("validation", "Workflow does not have 'workflow_dispatch' trigger")


def test_inputs_the_workflow_does_not_declare_are_invalid_workflow_inputs(gh, deployer_client):
    gh.workflow_def = WorkflowDef.from_yaml(
        "name: Deploy pod\non:\n  workflow_dispatch:\n    inputs:\n      customer: {}\njobs: {}\n"
    )
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 422
    assert "Invalid Workflow Inputs" in page
    assert "Workflow rejected inputs: Unexpected inputs provided" in page
    assert_failure_recorded("validation", "Unexpected inputs provided")


def test_rate_limited_dispatch_is_503_with_quota(gh, deployer_client):
    gh.add_fault(
        "POST",
        r"/dispatches$",
        status=403,
        body={
            "message": "You have exceeded a secondary rate limit. "
            "Please wait a few minutes before you try again."
        },
        headers={"retry-after": "60", "x-ratelimit-remaining": "4000", "x-ratelimit-limit": "5000"},
    )
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 503
    assert "GitHub Rate Limit Reached" in page
    assert "4000 of 5000 requests left" in page
    assert_failure_recorded("service_unavailable", "rate limit")


def test_dispatch_timeout_whose_run_exists_is_a_success_and_not_retried(gh, deployer_client, settings):
    settings.GITHUB_TIMEOUT = 1
    gh.add_fault("POST", r"/dispatches$", status=None, delay=2.5)  # GitHub acts, the answer is late
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    [run] = gh.runs
    assert response.status_code == 302
    assert (request.status, request.run_url) == ("dispatched", run["html_url"])
    assert len(dispatches(gh)) == 1


def test_dispatch_timeout_without_run_is_503_saying_it_may_have_started(gh, deployer_client, settings):
    settings.GITHUB_TIMEOUT = 1
    gh.add_fault("POST", r"/dispatches$", status=502, delay=2.5)
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    page = response.content.decode()
    assert response.status_code == 503
    assert "did not answer within 1 s" in page
    assert "may still have reached GitHub" in page
    assert len(dispatches(gh)) == 1
    assert_failure_recorded("service_unavailable", "did not answer")


def test_dispatch_answered_204_despite_run_details_finds_the_run(gh, deployer_client, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.3
    gh.add_fault("POST", r"/dispatches$", status=204, body=b"")
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert response.status_code == 302
    assert (request.status, request.error_type) == ("dispatched", "")


def test_reused_form_with_other_values_is_409_and_deploys_nothing_more(gh, deployer_client):
    data = form(EDIT_ACME_PROD)
    deployer_client.post("/deploy/", data)
    response = deployer_client.post("/deploy/", {**data, "instance_type": "t3.xlarge"})
    assertContains(response, "Form Already Submitted", status_code=409)
    start_again = '<a class="btn primary" href="/pods/acme/prod/edit/">Start again</a>'
    assertContains(response, start_again, html=True, status_code=409)
    assert DeploymentRequest.objects.count() == 1
    assert len(dispatches(gh)) == 1


def test_dropped_connection_dispatch_is_sent_once(gh, deployer_client):
    gh.add_fault("POST", r"/dispatches$", drop=True)
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 503
    assert "Could not reach GitHub" in response.content.decode()
    assert len(dispatches(gh)) == 1
    assert_failure_recorded("service_unavailable", "Could not reach GitHub")


def test_unreachable_github_dispatch_is_503_and_request_kept(gh, deployer, settings):
    request = make_request(deployer)
    settings.GITHUB_API_URL = "http://127.0.0.1:9"
    with pytest.raises(portal_gh.GitHubUnavailableError) as exc:
        services.deployment_request_dispatch(request=request, actor=deployer)
    assert exc.value.http_status == 503
    assert_failure_recorded("service_unavailable", "Could not reach GitHub")


def test_failed_dispatch_releases_the_pod(gh, deployer_client):
    gh.add_fault("POST", r"/dispatches$", status=502, times=1)
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 302
    assert list(DeploymentRequest.objects.values_list("status", flat=True)) == [
        "dispatched",
        "dispatch_failed",
    ]


# --- GHES: no return_run_details --------------------------------------------------------------------


def test_ghes_fallback_finds_our_run_among_others(gh, deployer_client):
    gh.ghes = True
    for customer in ("globex", "initech"):  # other requests' runs, dispatched before ours
        deployer_client.post("/deploy/", form(EDIT_ACME_PROD, customer=customer, environment="prod",
                                              instance_name=f"{customer}-web"))  # fmt: skip
    data = form(EDIT_ACME_PROD)
    response = deployer_client.post("/deploy/", data)
    request = DeploymentRequest.objects.get(idempotency_key=data["idempotency_key"])
    ours = next(run for run in gh.runs if run["inputs"]["request_id"] == data["idempotency_key"])
    assert response.status_code == 302
    assert request.run_id == ours["id"]
    assert request.run_url == ours["html_url"]
    assert f"[{data['idempotency_key']}]" in ours["display_title"]
    assert len(gh.runs) == 3


def test_ghes_run_that_never_appears_leaves_fallback_link(gh, deployer_client, settings):
    settings.GITHUB_RUN_LOOKUP_SECONDS = 0.3
    gh.ghes = True
    gh.run_visible_after = 30
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert (request.status, request.run_id, request.run_url) == ("dispatched", None, "")
    page = deployer_client.get(response["Location"]).content.decode()
    assert 'id="actions-link" href="http://127.0.0.1' in page
    assert "/demo/pods/actions/workflows/deploy-pod.yml" in page


# --- Concurrency ---------------------------------------------------------------------------------------


@pytest.fixture
def many_pods(gh_tx):
    put_pods(gh_tx, 20)
    return gh_tx


def test_20_concurrent_deploys_each_get_their_own_run(many_pods, deployer):
    from deployments import inventory

    inventory.list_pods()
    payloads = [
        form(EDIT_ACME_PROD, customer=f"c{i:03d}", instance_name=f"c{i:03d}-web", instance_type="t3.medium")
        for i in range(20)
    ]
    responses = post_concurrently(deployer, payloads)
    assert [r.status_code for r in responses] == [302] * 20
    runs = {run["inputs"]["request_id"]: run for run in many_pods.runs}
    for payload in payloads:
        request = DeploymentRequest.objects.get(idempotency_key=payload["idempotency_key"])
        assert request.run_url == runs[payload["idempotency_key"]]["html_url"]
        assert request.customer == runs[payload["idempotency_key"]]["inputs"]["customer"]
    assert len(runs) == 20
