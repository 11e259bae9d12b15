"""Lost-update protection: a deploy against a spec.yml that changed since the form was opened is
refused by the portal (409, nothing dispatched) and by the workflow itself."""

import re
import uuid

import pytest
from pytest_django.asserts import assertContains

from deployments import gh as portal_gh
from deployments import podspec, services
from deployments.gh import jobs
from deployments.inventory import NO_SPEC
from deployments.models import DeploymentRequest
from fakegithub._git import blob_sha
from tests.helpers import EDIT_ACME_PROD, NEW_POD, dispatches, form

ACME_PROD = "pods/acme/prod/spec.yml"
CHANGED = (
    "customer: acme\nenvironment: prod\ninstance_name: acme-prod-web\ninstance_type: t3.xlarge\n"
    "waf_enabled: true\n"
)


def opened_form(client, customer="acme", environment="prod") -> dict:
    """The values of the edit form as the page rendered them (hidden fields included)."""
    response = client.get(f"/pods/{customer}/{environment}/edit/")
    assert response.status_code == 200
    bound = response.context["form"]
    return {name: bound[name].value() for name in ("mode", "idempotency_key", "expected_spec_sha")}


def test_edit_form_carries_the_blob_sha_of_the_spec_shown(gh, deployer_client):
    values = opened_form(deployer_client)
    assert values["expected_spec_sha"] == blob_sha(gh.files[ACME_PROD].encode())
    response = deployer_client.get("/pods/acme/prod/edit/")
    assertContains(response, f'name="expected_spec_sha" value="{values["expected_spec_sha"]}"')


def test_preview_carries_the_blob_sha_to_the_deploy_form(gh, deployer_client):
    sha = blob_sha(gh.files[ACME_PROD].encode())
    response = deployer_client.post("/deploy/preview/", form(EDIT_ACME_PROD, expected_spec_sha=sha))
    assert response.status_code == 200
    assertContains(response, f'<input type="hidden" name="expected_spec_sha" value="{sha}">', html=True)


def test_a_commit_between_preview_and_deploy_is_refused_with_the_three_versions(gh, deployer_client):
    seen = gh.files[ACME_PROD]
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    assert deployer_client.post("/deploy/preview/", data).status_code == 200
    gh.put_file(ACME_PROD, CHANGED, message="Resize acme/prod by hand")

    response = deployer_client.post("/deploy/", data)

    assert response.status_code == 409
    assertContains(response, "spec.yml changed since you opened it — review the new version", status_code=409)
    assert response.context["seen"] == seen
    assert response.context["now"] == CHANGED
    assert response.context["asked"] == podspec.render(
        podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.large", True)
    )
    page = response.content.decode()
    assert re.search(r'<pre id="spec-seen">[^<]*instance_type: t3.medium', page)
    assert re.search(r'<pre id="spec-now">[^<]*instance_type: t3.xlarge', page)
    assert re.search(r'<pre id="spec-asked">[^<]*instance_type: t3.large', page)
    assert dispatches(gh) == []
    assert not DeploymentRequest.objects.exists()


def test_the_refusal_offers_the_operators_values_against_the_new_version(gh, deployer_client):
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    gh.put_file(ACME_PROD, CHANGED)

    response = deployer_client.post("/deploy/", data)

    reopen = response.context["reopen"]
    assert reopen["instance_type"].value() == "t3.large"  # what the operator typed
    assert reopen["expected_spec_sha"].value() == blob_sha(CHANGED.encode())
    assert str(reopen["idempotency_key"].value()) != data["idempotency_key"]
    again = {name: reopen[name].value() for name in ("mode", "idempotency_key", "expected_spec_sha")}
    preview = deployer_client.post("/deploy/preview/", {**EDIT_ACME_PROD, **again})
    assert preview.status_code == 200
    assertContains(preview, '<span class="del">-instance_type: t3.xlarge</span>', html=True)
    deployed = deployer_client.post("/deploy/", {**EDIT_ACME_PROD, **again})
    assert deployed.status_code == 302
    assert len(dispatches(gh)) == 1


def test_a_commit_between_edit_and_preview_is_refused_too(gh, deployer_client):
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    gh.put_file(ACME_PROD, CHANGED)
    response = deployer_client.post("/deploy/preview/", data)
    assert response.status_code == 409
    assert response.context["now"] == CHANGED


def test_a_commit_to_another_pod_does_not_refuse(gh, deployer_client):
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    gh.put_file("pods/globex/prod/spec.yml", gh.files["pods/globex/prod/spec.yml"] + "# note\n")
    response = deployer_client.post("/deploy/", data)
    assert response.status_code == 302
    assert len(dispatches(gh)) == 1


def test_a_new_pod_that_appeared_meanwhile_is_refused(gh, deployer_client):
    data = form(NEW_POD)
    assert deployer_client.post("/deploy/preview/", data).status_code == 200
    spec = podspec.PodSpec("hooli", "prod", "hooli-prod-other", "t3.micro", False)
    gh.put_file("pods/hooli/prod/spec.yml", podspec.render(spec))

    response = deployer_client.post("/deploy/", data)

    assert response.status_code == 409
    assertContains(response, "Pod hooli/prod already exists.", status_code=409)
    assert dispatches(gh) == []
    assert not DeploymentRequest.objects.exists()


def test_a_double_click_after_the_deploy_landed_is_the_same_request_not_a_conflict(gh, deployer_client):
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    first = deployer_client.post("/deploy/", data)
    gh.put_file(ACME_PROD, podspec.render(podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.large", True)))
    second = deployer_client.post("/deploy/", data)
    assert second.status_code == 302
    assert second["Location"] == first["Location"]
    assert len(dispatches(gh)) == 1


def test_the_deploy_costs_one_free_check_and_the_dispatch(gh, deployer_client):
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    deployer_client.post("/deploy/preview/", data)
    gh.clear_requests()
    deployer_client.post("/deploy/", data)
    assert [(r.method, r.status) for r in gh.requests] == [("GET", 304), ("POST", 200)]


# --- the workflow's own check (the emulated deploy-pod.yml) ----------------------------------------


def run_with(gh, *, action: str = "deploy", **extra: str) -> int:
    """Dispatch the workflow over HTTP with acme/prod on t3.large, run it to the end, its id."""
    spec = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.large", True)
    inputs = spec.workflow_inputs() | {"request_id": str(uuid.uuid4()), "action": action, **extra}
    run_id = portal_gh.dispatch(inputs=inputs).run_id
    assert run_id is not None
    gh.complete_run(run_id, conclusion=None)
    return run_id


@pytest.mark.parametrize("action", ["deploy", "plan"])
def test_the_workflow_refuses_a_spec_that_changed_since_the_request(gh, action):
    seen = blob_sha(gh.files[ACME_PROD].encode())
    gh.put_file(ACME_PROD, CHANGED, message="Resize acme/prod by hand")

    run_id = run_with(gh, action=action, expected_spec_sha=seen)

    assert gh.run(run_id)["conclusion"] == "failure"
    assert gh.files[ACME_PROD] == CHANGED  # nothing committed over it
    assert gh.artifacts.for_run(run_id) == []  # nothing planned either
    failure = jobs.run_failure(run_id)
    assert (failure.step, failure.title) == ("Check spec.yml is unchanged", "Spec changed")
    error_type, message = jobs.describe_failure(failure, "failure")
    assert error_type == "spec_changed"
    assert message.startswith("spec.yml changed since you opened it — review the new version")
    assert f"was {seen[:7]} when the request was made, it is now {blob_sha(CHANGED.encode())[:7]}" in message


def test_the_workflow_deploys_when_the_spec_is_the_one_expected(gh):
    run_id = run_with(gh, expected_spec_sha=blob_sha(gh.files[ACME_PROD].encode()))
    assert gh.run(run_id)["conclusion"] == "success"
    assert "instance_type: t3.large" in gh.files[ACME_PROD]


def test_the_workflow_refuses_a_new_pod_that_exists_by_then(gh):
    run_id = run_with(gh, expected_spec_sha=NO_SPEC)
    assert gh.run(run_id)["conclusion"] == "failure"
    assert jobs.run_failure(run_id).message.endswith(
        "it is now " + blob_sha(gh.files[ACME_PROD].encode())[:7]
        + ". Nothing was changed. Review the new version in the portal and deploy again."
    )  # fmt: skip


def test_a_hand_dispatch_without_an_expected_spec_is_not_checked(gh):
    gh.put_file(ACME_PROD, CHANGED)
    run_id = run_with(gh)
    assert gh.run(run_id)["conclusion"] == "success"
    assert "instance_type: t3.large" in gh.files[ACME_PROD]


def test_the_workflow_refuses_an_expected_spec_that_is_not_an_object_id(gh):
    run_id = run_with(gh, expected_spec_sha="HEAD~1")
    failure = jobs.run_failure(run_id)
    assert (failure.step, failure.title) == ("Check spec.yml is unchanged", "Invalid input")
    assert "instance_type: t3.medium" in gh.files[ACME_PROD]


def test_a_commit_landing_between_dispatch_and_run_fails_the_run_not_the_spec(
    gh, deployer_client, django_capture_on_commit_callbacks
):
    seen = blob_sha(gh.files[ACME_PROD].encode())
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    assert deployer_client.post("/deploy/", data).status_code == 302
    request = DeploymentRequest.objects.get()
    assert dispatches(gh)[0].json["inputs"]["expected_spec_sha"] == seen
    gh.put_file(ACME_PROD, CHANGED, message="Hand edit while the run was queued")

    gh.complete_run(request.run_id, conclusion=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_requests_sync()

    request.refresh_from_db()
    assert (request.conclusion, request.error_type) == ("failure", "spec_changed")
    assert gh.files[ACME_PROD] == CHANGED
    page = deployer_client.get(request.get_absolute_url())
    assertContains(page, "spec.yml changed since you opened it — review the new version")


def test_a_new_pods_run_expects_no_spec_yml(gh, deployer_client):
    assert deployer_client.post("/deploy/", form(NEW_POD)).status_code == 302
    assert dispatches(gh)[0].json["inputs"]["expected_spec_sha"] == NO_SPEC


def test_the_apply_of_a_reviewed_plan_checks_the_spec_again(
    gh, deployer_client, review_flow, django_capture_on_commit_callbacks
):
    review_flow.APPROVAL_REQUIRED_ENVIRONMENTS = []
    data = {**EDIT_ACME_PROD, **opened_form(deployer_client)}
    deployer_client.post("/deploy/", data)
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id, conclusion=None)
    services.deployment_requests_sync()
    request.refresh_from_db()
    assert request.status == "planned"
    gh.put_file(ACME_PROD, CHANGED, message="Hand edit after the plan")

    assert deployer_client.post(f"/requests/{request.pk}/apply/").status_code == 302

    apply_inputs = dispatches(gh)[-1].json["inputs"]
    assert (apply_inputs["action"], apply_inputs["expected_spec_sha"]) == ("apply", data["expected_spec_sha"])
    request.refresh_from_db()
    gh.complete_run(request.run_id, conclusion=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_requests_sync()
    request.refresh_from_db()
    assert request.error_type == "spec_changed"
    assert gh.files[ACME_PROD] == CHANGED
