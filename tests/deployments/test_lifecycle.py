"""The lifecycle table, walked edge by edge, and the rules that keep it the only writer."""

import contextlib
import itertools
import uuid

import pytest
from django.db import IntegrityError

from deployments import lifecycle
from deployments.lifecycle import Source, Status
from deployments.models import DeploymentEvent, DeploymentRequest, LifecycleError
from tests.helpers import make_request, path_to

PAIRS = list(itertools.product(Status, Status))


def test_every_state_is_in_the_table_and_reachable_from_pending():
    assert set(lifecycle.TABLE) == set(Status)
    for status in Status:
        assert path_to(status)[0] == Status.PENDING


def test_the_table_has_no_cycle_so_no_request_can_move_backwards():
    def reaches(start, goal, seen=()):
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, (*seen, nxt)))
                   for nxt in lifecycle.TABLE[start][1])  # fmt: skip

    assert not [status for status in Status if reaches(status, status)]


def test_the_lock_is_held_by_exactly_the_states_that_are_not_finished():
    assert set(lifecycle.ACTIVE_STATUSES) == set(Status) - {
        Status.COMPLETED, Status.DISPATCH_FAILED, Status.REJECTED, Status.CANCELLED, Status.EXPIRED,
    }  # fmt: skip
    constraint = next(
        c for c in DeploymentRequest._meta.constraints if c.name == "one_active_request_per_pod"
    )
    assert constraint.condition.children == [("status__in", lifecycle.ACTIVE_STATUSES)]


@pytest.mark.parametrize(("from_status", "to_status"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_each_move_is_allowed_exactly_when_the_table_says(deployer, from_status, to_status):
    request = make_request(deployer, status=from_status)
    events_before = request.events.count()
    if lifecycle.can_move(from_status, to_status):
        event = lifecycle.transition(request, to_status, source=Source.SYSTEM, message="walk")
        request.refresh_from_db()
        assert request.status == to_status
        assert (event.from_status, event.to_status, event.source) == (from_status, to_status, "system")
        assert request.events.count() == events_before + 1
    else:
        with pytest.raises(lifecycle.IllegalTransition):
            lifecycle.transition(request, to_status, source=Source.SYSTEM)
        request.refresh_from_db()
        assert request.status == from_status
        assert request.events.count() == events_before


def test_a_move_from_a_stale_copy_is_checked_against_the_database(deployer):
    request = make_request(deployer, status=Status.DISPATCHED)
    stale_copy = DeploymentRequest.objects.get(pk=request.pk)
    lifecycle.transition(request, Status.IN_PROGRESS, source=Source.WEBHOOK)
    # The copy still says dispatched, from where queued would be legal: the database says otherwise.
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.transition(stale_copy, Status.QUEUED, source=Source.SYNC)
    assert stale_copy.status == Status.IN_PROGRESS
    # From a stale copy, a move that is still legal records where the request really came from.
    stale_copy.status = Status.DISPATCHED
    event = lifecycle.transition(stale_copy, Status.COMPLETED, source=Source.SYNC, conclusion="success")
    assert (event.from_status, event.to_status) == ("in_progress", "completed")
    assert DeploymentRequest.objects.get(pk=request.pk).conclusion == "success"


def test_status_cannot_be_written_around_the_transition_function(deployer):
    request = make_request(deployer, status=Status.DISPATCHED)
    with pytest.raises(LifecycleError):
        DeploymentRequest.objects.filter(pk=request.pk).update(status="completed")
    request.status = Status.COMPLETED
    with pytest.raises(LifecycleError):
        request.save()
    with pytest.raises(LifecycleError):
        request.save(update_fields=["status"])
    with pytest.raises(LifecycleError):
        DeploymentRequest.objects.bulk_update([request], ["status"])
    with pytest.raises(LifecycleError):
        DeploymentRequest.objects.create(
            requested_by=deployer, mode="new", customer="globex", environment="prod", instance_name="g-web",
            instance_type="t3.small", waf_enabled=False, inputs={}, idempotency_key=uuid.uuid4(),
            status=Status.COMPLETED,
        )  # fmt: skip
    with pytest.raises(LifecycleError):
        DeploymentRequest.objects.bulk_create([DeploymentRequest(status=Status.COMPLETED)])
    assert DeploymentRequest.objects.get(pk=request.pk).status == Status.DISPATCHED


def test_events_are_never_changed_or_deleted(deployer):
    request = make_request(deployer, status=Status.QUEUED)
    event = request.events.last()
    event.message = "rewritten"
    for attempt in (event.save, event.delete, DeploymentEvent.objects.all().delete):
        with pytest.raises(LifecycleError):
            attempt()
    with pytest.raises(LifecycleError):
        DeploymentEvent.objects.filter(pk=event.pk).update(message="rewritten")
    with pytest.raises(IntegrityError):
        DeploymentRequest.objects.filter(pk=request.pk).delete()  # protected by its events
    assert DeploymentEvent.objects.get(pk=event.pk).message != "rewritten"


def test_a_fact_is_recorded_without_a_move(deployer):
    request = make_request(deployer, status=Status.DISPATCHED)
    event = lifecycle.record(request, source=Source.WEBHOOK, message="Run linked.", data={"run_id": 7})
    assert (event.from_status, event.to_status, event.is_move) == ("dispatched", "dispatched", False)
    assert DeploymentRequest.objects.get(pk=request.pk).status == Status.DISPATCHED


def _new_request(user, **fields) -> DeploymentRequest:
    values = {
        "requested_by": user, "mode": "new", "customer": "globex", "environment": "prod",
        "instance_name": "globex-web", "instance_type": "t3.small", "waf_enabled": False,
        "inputs": {"customer": "globex"}, "idempotency_key": uuid.uuid4(),
    }  # fmt: skip
    return DeploymentRequest(**(values | fields))


@pytest.mark.parametrize("nested", [False, True], ids=["autocommit", "in a transaction"])
@pytest.mark.django_db(transaction=True)
def test_a_request_is_born_with_its_event_or_not_at_all(deployer, nested):
    """lifecycle.create(): the request and its ``pending`` event (on PostgreSQL one statement),
    the saved instance usable as Django's; a refused request writes nothing and leaves the
    caller's transaction usable."""
    from django.db import transaction

    outer = transaction.atomic() if nested else contextlib.nullcontext()
    with outer:
        request = _new_request(deployer)
        event = lifecycle.create(request, source=Source.WEB, actor=deployer, data={"via": "test"})
        assert request.pk and not request._state.adding
        stored = DeploymentRequest.objects.get(pk=request.pk)
        assert (stored.status, stored.inputs, stored.requested_by_id) == (
            "pending",
            {"customer": "globex"},
            deployer.pk,
        )
        assert stored.created_at == request.created_at and stored.updated_at == request.updated_at
        assert list(
            stored.events.values_list("pk", "from_status", "to_status", "actor_id", "source", "data")
        ) == [(event.pk, "", "pending", deployer.pk, "web", {"via": "test"})]
        assert event.request == request and DeploymentEvent.objects.get(pk=event.pk).at == event.at
        # The same key again: the unique constraint refuses it and nothing is written.
        with pytest.raises(IntegrityError):
            lifecycle.create(
                _new_request(deployer, idempotency_key=request.idempotency_key), source=Source.WEB, actor=None
            )
        with pytest.raises(LifecycleError):
            lifecycle.create(_new_request(deployer, status=Status.DISPATCHED), source=Source.WEB, actor=None)
        # The caller's transaction (if any) still works.
        assert (DeploymentRequest.objects.count(), DeploymentEvent.objects.count()) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_a_move_refused_by_the_database_writes_no_event(deployer):
    """Two requests of one pod may not both be active (a constraint): the second's move back to
    an active state is refused by the database and leaves no event behind."""
    first = make_request(deployer, status=Status.DISPATCH_FAILED)
    make_request(deployer, status=Status.DISPATCHED)
    events = DeploymentEvent.objects.count()
    with pytest.raises(IntegrityError):
        lifecycle.transition(first, Status.QUEUED, source=Source.SYNC)
    assert DeploymentEvent.objects.count() == events
    assert DeploymentRequest.objects.get(pk=first.pk).status == Status.DISPATCH_FAILED


def test_a_move_under_a_condition_no_row_can_meet_is_refused(deployer):
    """As QuerySet.update() with an always-false filter: nothing moves, nothing is recorded."""
    request = make_request(deployer, status=Status.DISPATCHED)
    events = request.events.count()
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.transition(request, Status.QUEUED, source=Source.SYNC, when={"run_id__in": []})
    assert DeploymentRequest.objects.get(pk=request.pk).status == Status.DISPATCHED
    assert request.events.count() == events


@pytest.mark.django_db(transaction=True)
def test_an_event_value_longer_than_its_column_is_refused_not_cut(deployer):
    """PostgreSQL refuses a value longer than its varchar column, in the one-statement path too
    (a CAST to varchar(n) would cut it silently). SQLite has no length limits."""
    from django.db import DataError, connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not enforce varchar lengths")
    request = make_request(deployer, status=Status.DISPATCHED)
    with pytest.raises(DataError):
        lifecycle.transition(request, Status.QUEUED, source="webhook-but-longer")
    assert DeploymentRequest.objects.get(pk=request.pk).status == Status.DISPATCHED
    assert not request.events.filter(source__startswith="webhook-").exists()
