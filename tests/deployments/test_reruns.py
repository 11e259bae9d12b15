"""Re-runs on GitHub keep the run id and count up run_attempt: the newest attempt decides."""

import github as pygithub
import pytest

from deployments import lifecycle
from deployments.lifecycle import Source, Status
from deployments.models import DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, form, make_request, post_event, replay


@pytest.fixture
def failed(gh, client, deployer_client):
    """A deployment whose run failed, as the webhook reported it."""
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    gh.complete_run(request.run_id, conclusion="failure")
    for delivery in gh.deliveries:
        replay(client, delivery)
    request.refresh_from_db()
    assert (request.status, request.conclusion) == ("completed", "failure")
    return request


def test_a_failed_deployment_re_run_to_success_ends_as_success(gh, client, failed):
    sent = len(gh.deliveries)
    rerun = pygithub.Github(auth=pygithub.Auth.Token(gh.token), base_url=gh.api_url, retry=None)
    assert rerun.get_repo("demo/pods").get_workflow_run(failed.run_id).rerun()  # 201, as GitHub
    assert gh.run(failed.run_id)["run_attempt"] == 2
    gh.complete_run(failed.run_id, conclusion="success")
    for delivery in gh.deliveries[sent:]:
        assert replay(client, delivery).status_code == 200
    failed.refresh_from_db()
    assert (failed.status, failed.conclusion, failed.run_attempt) == ("completed", "success", 2)
    moves = [
        (e.from_status, e.to_status, e.data.get("run_attempt")) for e in failed.events.all() if e.is_move
    ]
    assert moves[-5:] == [
        ("queued", "in_progress", 1), ("in_progress", "completed", 1),
        ("completed", "queued", 2), ("queued", "in_progress", 2), ("in_progress", "completed", 2),
    ]  # fmt: skip
    assert "attempt 2" in failed.events.last().message


def test_a_late_event_of_an_earlier_attempt_changes_nothing(gh, client, failed):
    first_attempt = list(gh.deliveries)
    gh.rerun(failed.run_id)
    gh.complete_run(failed.run_id, conclusion="success")
    for delivery in gh.deliveries[len(first_attempt) :]:
        replay(client, delivery)
    events = failed.events.count()
    in_progress = next(d for d in first_attempt if d.payload["workflow_run"]["status"] == "in_progress")
    assert post_event(client, in_progress.payload).status_code == 200  # delivered late, by a new id
    failed.refresh_from_db()
    assert (failed.status, failed.conclusion, failed.run_attempt) == ("completed", "success", 2)
    assert failed.events.count() == events


def test_a_re_run_while_another_request_holds_the_pod_does_not_take_the_lock(
    gh, client, deployer_client, failed
):
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD, instance_type="t3.xlarge"))
    holder = DeploymentRequest.objects.exclude(pk=failed.pk).get()
    assert holder.is_active
    sent = len(gh.deliveries)
    gh.rerun(failed.run_id)
    gh.advance_run(failed.run_id)  # attempt 2 in progress
    for delivery in gh.deliveries[sent:]:
        if delivery.payload["workflow_run"]["id"] == failed.run_id:
            assert replay(client, delivery).status_code == 200
    failed.refresh_from_db()
    assert (failed.status, failed.conclusion) == ("completed", "failure")  # not reopened
    assert "pod is busy" in failed.events.last().message
    sent = len(gh.deliveries)
    gh.complete_run(failed.run_id, conclusion="success")
    for delivery in gh.deliveries[sent:]:
        if delivery.payload["workflow_run"]["id"] == failed.run_id:
            replay(client, delivery)
    failed.refresh_from_db()
    holder.refresh_from_db()
    assert (failed.status, failed.conclusion, failed.run_attempt) == ("completed", "success", 2)
    assert holder.is_active  # the other request kept its lock throughout


@pytest.mark.parametrize("from_status", list(Status))
def test_re_run_moves_are_allowed_exactly_from_states_that_follow_a_run(deployer, from_status):
    request = make_request(deployer, status=from_status)
    if from_status in lifecycle.RERUN_FROM:
        event = lifecycle.transition(
            request, Status.COMPLETED, source=Source.SYSTEM, attempt=2, conclusion="success"
        )
        assert (event.from_status, DeploymentRequest.objects.get(pk=request.pk).run_attempt) == (
            from_status,
            2,
        )
        # The same attempt is recorded once: a second writer with it is refused.
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.transition(request, Status.COMPLETED, source=Source.SYSTEM, attempt=2)
    else:
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.transition(request, Status.QUEUED, source=Source.SYSTEM, attempt=2)
        assert DeploymentRequest.objects.get(pk=request.pk).run_attempt == 1


def test_a_request_closed_as_stale_is_corrected_when_its_run_runs_later(gh, client, deployer_client):
    from deployments import services

    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    request = DeploymentRequest.objects.get()
    assert services.deployment_request_mark_stale(request=request, reason="The run stayed queued too long.")
    gh.complete_run(request.run_id, conclusion="success")  # GitHub ran it after all
    for delivery in gh.deliveries:
        assert replay(client, delivery).status_code == 200
    request.refresh_from_db()
    assert (request.status, request.conclusion, request.run_attempt) == ("completed", "success", 1)
    assert [e.to_status for e in request.events.all() if e.is_move][-4:] == [
        "completed", "queued", "in_progress", "completed",
    ]  # fmt: skip
