import csv
import io

import pytest
from django.contrib.auth.models import Group
from pytest_django.asserts import assertContains, assertNotContains

from deployments.models import DeploymentRequest
from tests.helpers import (
    EDIT_ACME_PROD,
    deployers_group,
    form,
    logged_in_client,
    make_request,
    make_user,
    post_concurrently,
    put_pods,
    replay,
)  # fmt: skip

PAGES = [
    "/",
    "/pods/new/",
    "/pods/acme/prod/edit/",
    "/requests/",
    "/requests/1/",
    "/admin/",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_requires_login(db, client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(("/accounts/login/?next=", "/admin/login/?next="))


@pytest.mark.parametrize("path", ["/deploy/", "/deploy/preview/"])
def test_posting_without_login_redirects_and_dispatches_nothing(gh, client, path):
    response = client.post(path, form(EDIT_ACME_PROD))
    assert response.status_code == 302
    assert not DeploymentRequest.objects.exists()
    assert gh.count("POST") == 0


def test_login_page_is_public_and_logs_in(gh, client, deployer):
    assert client.get("/accounts/login/").status_code == 200
    response = client.post("/accounts/login/", {"username": "dana", "password": "pw"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_deployers_group_is_created_with_deploy_permission(db):
    group = Group.objects.get(name="Deployers")
    assert set(group.permissions.values_list("codename", flat=True)) == {
        "add_deploymentrequest",
        "view_deploymentrequest",
    }


def test_request_page_polls_while_active_and_stops_when_done(gh, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    response = deployer_client.get(f"/requests/{request.pk}/")
    assertNotContains(response, "http-equiv")  # no reloads: the live part is polled in place
    assertContains(response, f'hx-get="/requests/{request.pk}/live/" hx-trigger="every 2s"')
    assertContains(response, "Deployment started")
    gh.complete_run(request.run_id)
    for delivery in gh.deliveries:
        replay(deployer_client, delivery)
    response = deployer_client.get(f"/requests/{request.pk}/")
    assertNotContains(response, "hx-trigger")
    assertContains(response, '<span class="badge success">success</span>', html=True)


def test_history_is_newest_first_and_filterable(gh, deployer_client, deployer):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD, customer="globex", instance_name="globex-prod-app"))
    other = make_user(username="olga", deployer=True)
    deployer_client.force_login(other)
    deployer_client.post(
        "/deploy/",
        form(EDIT_ACME_PROD, customer="initech", instance_name="initech-prod-api", instance_type="t3.micro"),
    )
    page = deployer_client.get("/requests/").content.decode()
    assert page.index("initech/prod") < page.index("globex/prod") < page.index("acme/prod")
    assert "acme/prod" not in deployer_client.get("/requests/", {"pod": "globex/prod"}).content.decode()
    by_olga = deployer_client.get("/requests/", {"user": "olga"}).content.decode()
    assert "initech/prod" in by_olga and "globex/prod" not in by_olga
    assert "No requests match." in deployer_client.get("/requests/", {"status": "completed"}).content.decode()


def test_history_is_paginated(gh, deployer):
    for i in range(51):
        make_request(deployer, customer=f"c{i}", status="completed")
    client = logged_in_client(deployer)
    first = client.get("/requests/").content.decode()
    assert "Page 1 of 2" in first and "c50/prod" in first and "c0/prod" not in first
    assert "c0/prod" in client.get("/requests/", {"page": 2}).content.decode()


def test_inventory_shows_last_deployment_and_running_state(gh, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    response = deployer_client.get("/")
    assert response.context["activity"]["acme/prod"] == request
    assertContains(
        response,
        f'<a href="/requests/{request.pk}/"><span class="badge dispatched active">dispatched</span></a>',
        html=True,
    )


def test_inventory_shows_deployed_values_after_success(gh, client, deployer_client):
    deployer_client.get("/")
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    run_id = DeploymentRequest.objects.get().run_id
    gh.complete_run(run_id)
    for delivery in gh.deliveries:
        replay(client, delivery)
    response = deployer_client.get("/")
    acme = next(pod for pod in response.context["pods"] if pod.key == "acme/prod")
    assert (acme.spec.instance_type, acme.spec.waf_enabled) == ("t3.large", True)
    assertContains(response, '<td data-label="Instance name">acme-prod-web</td>', html=True)
    assertContains(response, '<span class="badge success">success</span>', html=True)


# --- Per-pod lock under concurrency (database constraint) -----------------------------------------------


def test_50_concurrent_posts_to_one_pod_dispatch_once(gh_tx, deployer):
    responses = post_concurrently(deployer, [form(EDIT_ACME_PROD) for _ in range(50)])
    codes = sorted(getattr(r, "status_code", repr(r)) for r in responses)
    assert codes == [302] + [409] * 49
    assert DeploymentRequest.objects.count() == 1
    assert gh_tx.count("POST", r"/dispatches$") == 1
    conflict = next(r for r in responses if r.status_code == 409)
    assert "Deployment in progress" in conflict.content.decode()


def test_50_concurrent_posts_to_distinct_pods_dispatch_50(gh_tx, deployer):
    gh = gh_tx
    payloads = [
        form(EDIT_ACME_PROD, customer=c, instance_name=f"{c}-web") for c in put_pods(gh, 50, prefix="p")
    ]
    responses = post_concurrently(deployer, payloads)
    assert [getattr(r, "status_code", repr(r)) for r in responses] == [302] * 50
    assert gh.count("POST", r"/dispatches$") == 50
    assert DeploymentRequest.objects.filter(status="dispatched").count() == 50


def test_duplicate_idempotency_key_under_concurrency_dispatches_once(gh_tx, deployer):
    gh = gh_tx
    data = form(EDIT_ACME_PROD)
    responses = post_concurrently(deployer, [data] * 10)
    assert {r["Location"] for r in responses} == {f"/requests/{DeploymentRequest.objects.get().pk}/"}
    assert gh.count("POST", r"/dispatches$") == 1


# --- Admin: immutable audit history ----------------------------------------------------------------------


@pytest.fixture
def admin_client(db):
    return logged_in_client(make_user(username="root", staff=True, superuser=True))


@pytest.fixture
def history(gh, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    return DeploymentRequest.objects.get()


def test_admin_lists_history_with_run_link(admin_client, history):
    page = admin_client.get("/admin/deployments/deploymentrequest/").content.decode()
    assert "acme/prod" in page
    assert f'href="{history.run_url}"' in page
    assert "dana" in page


def test_admin_refuses_add_change_and_delete_even_for_superusers(admin_client, history):
    base = "/admin/deployments/deploymentrequest"
    assert admin_client.get(f"{base}/add/").status_code == 403
    response = admin_client.post(f"{base}/{history.pk}/change/", {"status": "completed"})
    assert response.status_code == 403
    assert admin_client.post(f"{base}/{history.pk}/delete/", {"post": "yes"}).status_code == 403
    page = admin_client.get(f"{base}/{history.pk}/change/").content.decode()
    assert 'name="status"' not in page  # read-only view
    admin_client.post(
        f"{base}/", {"action": "delete_selected", "_selected_action": [history.pk], "post": "yes"}
    )
    assert DeploymentRequest.objects.filter(pk=history.pk).exists()


def test_admin_exports_csv(admin_client, history):
    response = admin_client.post(
        "/admin/deployments/deploymentrequest/", {"action": "export_csv", "_selected_action": [history.pk]}
    )
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 1
    assert rows[0]["customer"] == "acme"
    assert rows[0]["run_url"] == history.run_url
    assert rows[0]["requested_by"] == "dana"


def test_admin_release_lock_records_who_and_why(admin_client, history):
    url = "/admin/deployments/deploymentrequest/"
    confirm = admin_client.post(url, {"action": "release_lock", "_selected_action": [history.pk]})
    assert "Release stuck pod locks" in confirm.content.decode()
    admin_client.post(
        url,
        {"action": "release_lock", "_selected_action": [history.pk], "apply": "1", "reason": "runner lost"},
    )
    history.refresh_from_db()
    assert (history.status, history.conclusion) == ("completed", "released")
    assert history.released_by.username == "root"
    assert history.release_reason == "runner lost"


def test_staff_without_release_permission_cannot_release(gh, history):
    staff = make_user(username="sam", staff=True)
    staff.user_permissions.add(*deployers_group().permissions.all())
    client = logged_in_client(staff)
    client.post(
        "/admin/deployments/deploymentrequest/",
        {"action": "release_lock", "_selected_action": [history.pk], "apply": "1", "reason": "x"},
    )
    history.refresh_from_db()
    assert history.status == "dispatched"


def test_unknown_page_is_a_friendly_404(viewer_client):
    response = viewer_client.get("/no/such/page/")
    assert response.status_code == 404
    assert "There is no page at this address." in response.content.decode()


def test_expired_form_is_a_friendly_403_and_deploys_nothing(gh, deployer):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(deployer)
    response = client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 403
    assert "Form Expired" in response.content.decode()
    assert gh.count("POST") == 0


@pytest.mark.parametrize("body", [["not", "a", "tree"], b"<html>Unicorn!</html>"])
def test_garbled_github_answer_is_an_api_error_page(gh, viewer_client, body):
    gh.add_fault("GET", r"/git/trees/", status=200 if isinstance(body, list) else 502, body=body)
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert "GitHub API Error" in response.content.decode()


def test_server_error_page_shows_no_traceback(db, rf):
    from django.views.defaults import server_error

    response = server_error(rf.get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Nothing you submitted was lost" in page
    assert "Traceback" not in page
