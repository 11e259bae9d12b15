"""Lost-update protection: a deploy against a spec.yml that changed since the form was opened is
refused by the portal (409, nothing dispatched) and by the workflow itself."""

import re

from pytest_django.asserts import assertContains

from deployments import podspec
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
