"""Every move of a request is an event: who or what moved it, from where, when."""

import threading

from django.db import connection

from deployments import services
from deployments.models import DeploymentEvent, DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, form, logged_in_client, make_user, put_pods, replay


def history(request: DeploymentRequest) -> list[tuple]:
    return [
        (e.from_status, e.to_status, e.source, e.actor.username if e.actor else None)
        for e in request.events.order_by("at", "id")
    ]


def test_a_deploy_run_to_completion_leaves_its_history_in_order(gh, client, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id)
    for delivery in gh.deliveries:
        assert replay(client, delivery).status_code == 200
    assert history(request) == [
        ("", "pending", "web", "dana"),
        ("pending", "dispatched", "web", "dana"),
        ("dispatched", "queued", "webhook", None),
        ("queued", "in_progress", "webhook", None),
        ("in_progress", "completed", "webhook", None),
    ]
    completed = request.events.last()
    assert completed.data["conclusion"] == "success" and completed.data["run_id"] == request.run_id
    assert completed.data["delivery"] == gh.deliveries[-1].headers["X-GitHub-Delivery"]


def test_the_request_page_draws_its_timeline_from_the_events(gh, client, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id)
    for delivery in gh.deliveries:
        replay(client, delivery)
    response = deployer_client.get(f"/requests/{request.pk}/")
    assert list(response.context["events"]) == list(request.events.all())
    page = response.content.decode()
    assert "Requested" in page and "by dana via Web" in page
    assert "Completed: success" in page and "via GitHub webhook" in page
    assert 'class="failed"' not in page


def test_a_failed_run_is_a_failure_on_the_timeline(gh, client, deployer_client):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id, conclusion="failure")
    for delivery in gh.deliveries:
        replay(client, delivery)
    response = deployer_client.get(f"/requests/{request.pk}/")
    last = list(response.context["events"])[-1]
    assert (last.to_status, last.failed) == ("completed", True)
    page = response.content.decode()
    assert "Deployment failed: acme/prod" in page
    assert '<li class="failed">' in page and "Completed: failure" in page


def test_a_failed_dispatch_is_a_failure_event_with_its_error(gh, deployer_client):
    gh.add_fault("POST", r"/dispatches$", status=403, body={"message": "Resource not accessible"})
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    last = request.events.last()
    assert (last.from_status, last.to_status, last.source, last.actor.username) == (
        "pending", "dispatch_failed", "web", "dana",
    )  # fmt: skip
    assert last.data == {"error_type": "forbidden"} and last.failed
    assert "Update GH_TOKEN" in last.message


def test_release_by_an_administrator_is_an_admin_event(gh, deployer_client, deployer):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    admin = make_user(username="root", staff=True, superuser=True)
    assert services.deployment_request_release(request=request, user=admin, reason="run deleted on GitHub")
    last = request.events.last()
    assert (last.to_status, last.source, last.actor, last.message) == (
        "completed", "admin", admin, "run deleted on GitHub",
    )  # fmt: skip
    assert not services.deployment_request_release(request=request, user=admin, reason="again")
    assert request.events.filter(source="admin").count() == 1


def test_webhook_and_sync_applying_the_same_run_at_once_record_each_move_once(gh_tx, deployer):
    customers = put_pods(gh_tx, 4)
    client = logged_in_client(deployer)
    for customer in customers:
        client.post("/deploy/", form(EDIT_ACME_PROD, customer=customer, instance_name=f"{customer}-web"))
    requests = list(DeploymentRequest.objects.order_by("pk"))
    for request in requests:
        gh_tx.complete_run(request.run_id)
    barrier = threading.Barrier(2, timeout=30)
    errors = []

    def webhook():
        barrier.wait()
        try:
            for delivery in gh_tx.deliveries:
                assert replay(client, delivery).status_code == 200
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def sync():
        barrier.wait()
        try:
            services.deployment_requests_sync()
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=webhook), threading.Thread(target=sync)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for request in requests:
        request.refresh_from_db()
        assert (request.status, request.conclusion) == ("completed", "success")
        moves = [(e.from_status, e.to_status) for e in request.events.all() if e.is_move]
        assert len(moves) == len(set(moves))
        assert [to for _, to in moves][-1] == "completed"
        # Each move starts where the one before ended: no move was recorded twice or skipped.
        assert all(a[1] == b[0] for a, b in zip(moves, moves[1:], strict=False))
        assert {e.source for e in request.events.filter(from_status="dispatched")} <= {"webhook", "sync"}
    assert DeploymentEvent.objects.filter(to_status="completed").exclude(from_status="completed").count() == 4
