"""The life of a deployment request: its states, the moves between them, and the one function
that makes a move.

Every status change in the portal goes through ``transition()``. It is a conditional update
(compare-and-swap on the status the caller saw, which must be one the table allows the move
from), so a webhook, the sync, an admin action and a web request racing on the same request
can never move it backwards or sideways: one of them wins each move, the others are refused.
Each move writes a ``DeploymentEvent`` in the same transaction; ``record()`` writes one for a
notable fact that is not a move (a run linked, a dispatch answer lost). No GitHub here.

    pending ─► planning ─► planned ─► awaiting_approval ─► approved ─► dispatched ─► queued
       │                      │              └► rejected                   ▲            │
       │                      └────────────── (no approval needed) ────────┘    (waiting)
       │                                                                              ▼
       ├► dispatch_failed   planned, awaiting_approval, approved ─► expired | cancelled
       └► dispatched (one-run deploy)                            in_progress ─► completed
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import EmptyResultSet
from django.db import connections, models, router, transaction
from django.db.models import sql
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

    from .models import DeploymentEvent, DeploymentRequest, DeploymentRequestQuerySet


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    PLANNING = "planning", "Planning"
    PLANNED = "planned", "Planned"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    DISPATCHED = "dispatched", "Dispatched"
    QUEUED = "queued", "Queued"
    WAITING = "waiting", "Waiting"
    IN_PROGRESS = "in_progress", "In progress"
    COMPLETED = "completed", "Completed"
    DISPATCH_FAILED = "dispatch_failed", "Dispatch failed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class Conclusion(models.TextChoices):
    """How a completed request ended: GitHub's run conclusions, plus the portal's own two."""

    # https://docs.github.com/en/rest/actions/workflow-runs (the run's `conclusion`)
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"
    ACTION_REQUIRED = "action_required", "Action required"
    NEUTRAL = "neutral", "Neutral"
    SKIPPED = "skipped", "Skipped"
    STALE = "stale", "Stale"  # GitHub's, and the portal's when a run never appeared or never ended
    STARTUP_FAILURE = "startup_failure", "Startup failure"
    RELEASED = "released", "Released"  # the portal's: an administrator released the pod by hand


class Source(models.TextChoices):
    """What moved a request."""

    WEB = "web", "Web"
    WEBHOOK = "webhook", "GitHub webhook"
    SYNC = "sync", "Run sync"
    ADMIN = "admin", "Admin"
    API = "api", "API"
    SYSTEM = "system", "System"


S = Status
# Whether a request in this state holds its pod's lock, and the states it may move to.
# A run seen on GitHub (queued, waiting, in_progress, completed) may overtake the portal's own
# record of the dispatch: hence the edges from pending and approved straight to run states, and
# from dispatch_failed (a dispatch whose answer was lost, yet GitHub created the run).
# completed is also how an administrator's release and the sync's "stale" close any active state.
RUN = (S.QUEUED, S.WAITING, S.IN_PROGRESS, S.COMPLETED)
HOLDS, FREE = True, False
# fmt: off
_TABLE = {
    # state               lock   may move to
    S.PENDING:           (HOLDS, {S.PLANNING, S.DISPATCHED, S.DISPATCH_FAILED, S.CANCELLED, *RUN}),
    S.PLANNING:          (HOLDS, {S.PLANNED, S.COMPLETED, S.CANCELLED}),
    S.PLANNED:           (HOLDS, {S.AWAITING_APPROVAL, S.DISPATCHED, S.DISPATCH_FAILED, S.EXPIRED,
                                  S.CANCELLED, *RUN}),
    S.AWAITING_APPROVAL: (HOLDS, {S.APPROVED, S.REJECTED, S.EXPIRED, S.CANCELLED, S.COMPLETED}),
    S.APPROVED:          (HOLDS, {S.DISPATCHED, S.DISPATCH_FAILED, S.EXPIRED, S.CANCELLED, *RUN}),
    S.DISPATCHED:        (HOLDS, {*RUN}),
    S.QUEUED:            (HOLDS, {S.WAITING, S.IN_PROGRESS, S.COMPLETED}),
    S.WAITING:           (HOLDS, {S.IN_PROGRESS, S.COMPLETED}),
    S.IN_PROGRESS:       (HOLDS, {S.COMPLETED}),
    S.COMPLETED:         (FREE,  set()),
    S.DISPATCH_FAILED:   (FREE,  {*RUN}),
    S.REJECTED:          (FREE,  set()),
    S.CANCELLED:         (FREE,  set()),
    S.EXPIRED:           (FREE,  set()),
}
# fmt: on
TABLE: dict[Status, tuple[bool, frozenset[Status]]] = {
    state: (lock, frozenset(moves)) for state, (lock, moves) in _TABLE.items()
}
# A re-run on GitHub keeps the run id and counts up run_attempt: a newer attempt may take a
# request that follows the run (or that the earlier attempt finished) back to any run state.
RUN_STATES = frozenset(RUN)
RERUN_FROM = frozenset({S.DISPATCHED, S.QUEUED, S.WAITING, S.IN_PROGRESS, S.COMPLETED, S.DISPATCH_FAILED})
del S, RUN, HOLDS, FREE, _TABLE

# The states that hold a pod's lock: the database constraint is built from this.
ACTIVE_STATUSES: tuple[Status, ...] = tuple(status for status, (active, _) in TABLE.items() if active)
# A run's status on GitHub, and the request state it means.
RUN_STATUS = {
    "requested": Status.QUEUED,
    "queued": Status.QUEUED,
    "pending": Status.QUEUED,
    "waiting": Status.WAITING,  # an environment protection rule holds the run
    "in_progress": Status.IN_PROGRESS,
    "completed": Status.COMPLETED,
}
# Outcomes that are not a failure of the deployment.
GOOD_CONCLUSIONS = frozenset({Conclusion.SUCCESS, Conclusion.NEUTRAL, Conclusion.SKIPPED})
# Ends that are failures whatever the conclusion: not started, refused, or left to expire.
FAILED_STATUSES = frozenset({Status.DISPATCH_FAILED, Status.REJECTED, Status.EXPIRED})


def is_failure(status: str, conclusion: str | None) -> bool:
    """Whether a request in ``status`` (completed with ``conclusion``) ended badly."""
    if status == Status.COMPLETED:
        return conclusion not in GOOD_CONCLUSIONS
    return status in FAILED_STATUSES


class IllegalTransition(Exception):
    """The request's current state does not allow the move (it may just have moved on)."""

    def __init__(self, request_id: int | None, from_status: str, to_status: str):
        super().__init__(f"Request {request_id} cannot move from {from_status} to {to_status}.")
        self.from_status = from_status
        self.to_status = to_status


def can_move(from_status: str, to_status: str, *, rerun: bool = False) -> bool:
    """Whether the table allows the move; ``rerun``: the move a newer run attempt makes."""
    if rerun:
        return from_status in RERUN_FROM and to_status in RUN_STATES
    return to_status in TABLE[Status(from_status)][1]


def is_active(status: str) -> bool:
    return TABLE[Status(status)][0]


def transition(
    request: DeploymentRequest,
    to: Status,
    *,
    source: Source,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    message: str = "",
    data: dict[str, Any] | None = None,
    attempt: int | None = None,
    when: dict[str, Any] | None = None,
    **fields: Any,
) -> DeploymentEvent:
    """Move ``request`` to ``to``, set ``fields`` on it, and record the event, in one transaction.

    Raises IllegalTransition when the request's state, as read from the database, does not
    allow the move. The update is conditional on the state last seen: if another writer moved
    the request meanwhile, the move is checked again from where it is now. With ``attempt``
    (a newer run attempt than the request has seen) the re-run moves apply instead of the
    table, and the update is also conditional on the request not having seen that attempt yet.
    ``when`` adds conditions on other fields (e.g. ``{"applied_by": None}``: nobody started the
    apply); when they no longer hold the move is refused.
    """
    model = type(request)
    expected = request.status
    guard: dict[str, Any] = {} if attempt is None else {"run_attempt__lt": attempt}
    for name, value in (when or {}).items():
        guard[f"{name}__isnull" if value is None else name] = True if value is None else value
    if attempt is not None:
        fields["run_attempt"] = attempt
    # Bounded: the table has no cycle, so each retry sees a state further along (and a re-run
    # stops as soon as its attempt has been recorded by another writer).
    for _ in TABLE:
        if not can_move(expected, to, rerun=attempt is not None):
            request.status = expected
            raise IllegalTransition(request.pk, expected, to)
        now = timezone.now()
        values = {"status": to, "updated_at": now, **fields}
        event = _new_event(request, source, actor, message, data, from_status=expected, to_status=to)
        if _update_with_event(model.objects.filter(pk=request.pk, status=expected, **guard), values, event):
            for name, value in values.items():
                setattr(request, name, value)
            return event
        expected, seen = model.objects.values_list("status", "run_attempt").get(pk=request.pk)
        if (attempt is not None and seen >= attempt) or when:
            # The attempt was recorded, or a condition of ``when`` no longer holds: if only the
            # state had moved, the retry below would be checked from the new state, but a
            # ``when`` move is only ever meant from the state the caller saw.
            request.status = expected
            raise IllegalTransition(request.pk, expected, to)
    raise IllegalTransition(request.pk, expected, to)  # pragma: no cover - unreachable on a DAG


def create(
    request: DeploymentRequest,
    *,
    source: Source,
    actor: AbstractBaseUser | AnonymousUser | None,
    message: str = "Request created.",
    data: dict[str, Any] | None = None,
) -> DeploymentEvent:
    """Save the new ``request`` (in its first state) and record its birth, in one transaction.
    Raises IntegrityError, with nothing written, when the database refuses the request."""
    event = _new_event(request, source, actor, message, data, from_status="", to_status=request.status)
    _insert_with_event(request, event)
    return event


def record(
    request: DeploymentRequest,
    *,
    source: Source,
    message: str,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    data: dict[str, Any] | None = None,
) -> DeploymentEvent:
    """Record a notable fact about ``request`` that does not change its state."""
    event = _new_event(
        request, source, actor, message, data, from_status=request.status, to_status=request.status
    )
    event.save(force_insert=True)
    return event


# --- PostgreSQL: a row and its event in one statement ------------------------------------------
# psycopg sends a transaction's BEGIN and COMMIT as round trips of their own, so a write and its
# event in a transaction cost four; written by one statement (a data-modifying WITH, which
# PostgreSQL runs as one atomic statement: https://www.postgresql.org/docs/15/queries-with.html
# #QUERIES-WITH-MODIFYING) they cost one (issue 18: statements per deploy). The SQL of the
# request's INSERT or UPDATE is Django's own (its compilers: pre_save, field preparation). No
# model signals are sent for these rows there (nothing in the portal listens to their saves).


def _one_statement(model: type[models.Model]) -> bool:
    return connections[router.db_for_write(model)].vendor == "postgresql"


def _insert_with_event(request: DeploymentRequest, event: DeploymentEvent) -> None:
    """INSERT the new ``request`` and its ``event``, in one transaction."""
    model = type(request)
    if not _one_statement(model):
        with transaction.atomic():
            request.save(force_insert=True)
            event.save(force_insert=True)  # its request_id is the request's new pk (Django's save)
        return
    request.check_first_state()  # as DeploymentRequest.save(), which this path skips
    query = sql.InsertQuery(model)
    query.insert_values([f for f in model._meta.local_concrete_fields if not f.primary_key], [request])
    [(insert, params)] = query.get_compiler(using=router.db_for_write(model)).as_sql()
    _write_with_event(model, insert, params, event)
    request.pk = event.request_id
    request._state.adding, request._state.db = False, event._state.db


def _update_with_event(
    rows: DeploymentRequestQuerySet[Any], values: dict[str, Any], event: DeploymentEvent
) -> bool:
    """UPDATE ``rows`` (one request at most) with ``values`` and, if a row was updated, INSERT
    ``event`` for it, in one transaction. True when it was."""
    if not _one_statement(rows.model):
        with transaction.atomic():
            if not rows._transition(**values):
                return False
            event.save(force_insert=True)
            return True
    query = cast(sql.UpdateQuery, rows.query.chain(sql.UpdateQuery))
    query.add_update_values(values)
    try:
        update, params = query.get_compiler(router.db_for_write(rows.model)).as_sql()
    except EmptyResultSet:  # a condition no row can meet (QuerySet.update() updates none)
        return False
    return _write_with_event(rows.model, update, params, event)


def _write_with_event(model: type[models.Model], write: str, params: Any, event: DeploymentEvent) -> bool:
    """Run the INSERT or UPDATE ``write`` of one ``model`` row and, for the row it wrote, insert
    ``event`` (its request is that row), as one statement. Sets the event's ids; False when
    nothing was written."""
    using = router.db_for_write(model)
    connection = connections[using]
    meta = event._meta

    def qn(name: str | None) -> str:
        return connection.ops.quote_name(cast(str, name))

    link = meta.get_field("request")  # the event's request: the row written
    fields = [f for f in meta.local_concrete_fields if not f.primary_key and f != link]
    # Typed, as the SELECT's values are not VALUES of the table's columns; without a length (a
    # CAST to varchar(n) would cut a longer value, where the INSERT refuses it).
    values = ", ".join(f"CAST(%s AS {str(f.db_type(connection)).split('(')[0]})" for f in fields)
    table, pk, events = qn(model._meta.db_table), qn(model._meta.pk.column), qn(meta.db_table)
    columns = ", ".join(qn(f.column) for f in fields)
    statement = (
        f"WITH written AS ({write} RETURNING {table}.{pk}) "  # noqa: S608 (quoted names; values are parameters)
        f"INSERT INTO {events} ({qn(link.column)}, {columns}) SELECT written.{pk}, {values} FROM written "
        f"RETURNING {qn(meta.pk.column)}, {qn(link.column)}"
    )
    # Each value as Django's INSERT compiler prepares it (pre_save: defaults such as auto_now_add).
    event_params = [f.get_db_prep_save(f.pre_save(event, True), connection) for f in fields]
    # In autocommit the statement is its own transaction; inside a caller's, a savepoint keeps a
    # refused statement from aborting the caller's transaction.
    savepoint = transaction.atomic(using=using) if connection.in_atomic_block else contextlib.nullcontext()
    with savepoint, connection.cursor() as cursor:
        cursor.execute(statement, (*params, *event_params))
        row = cursor.fetchone()
    if row is None:
        return False
    event.pk, event.request_id = row
    event._state.adding, event._state.db = False, using
    return True


def _new_event(
    request: DeploymentRequest,
    source: Source,
    actor: AbstractBaseUser | AnonymousUser | None,
    message: str,
    data: dict[str, Any] | None,
    *,
    from_status: str,
    to_status: str,
) -> DeploymentEvent:
    return request.events.model(
        request=request,
        source=source,
        actor_id=actor.pk if actor is not None and actor.is_authenticated else None,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data or {},
    )
