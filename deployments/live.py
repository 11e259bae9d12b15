"""What the live parts of the pages read when they poll: a stamp that changes whenever what they
show changes, in one query, so an unchanged page is answered 304 without rendering anything.

Polling reads the database only (webhooks and the sync write it): any number of open pages
costs GitHub nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.db import connections, router
from django.db.models import Max, Q
from django.utils import timezone

from portal.sql import Column, once_per_connection

from . import lifecycle
from .models import DeploymentEvent, DeploymentRequest

# Seconds between polls: fast while a run moves, slow while a plan waits for a person (only an
# expiry or another person's approval can change it), none once the request has ended.
RUNNING_POLL_SECONDS = 2
WAITING_POLL_SECONDS = 30
# How long a finished page waits for a failed run's reason (read from GitHub once, at the end).
REASON_WAIT = dt.timedelta(minutes=2)
PODS_BUSY_POLL_SECONDS = 5
PODS_IDLE_POLL_SECONDS = 20
# A plan waiting to be applied or approved (as DeploymentRequest.waits_for_people).
WAITING_STATUSES = frozenset({lifecycle.Status.PLANNED, lifecycle.Status.AWAITING_APPROVAL})
# The "running now" list shows the newest few; the history page has the rest.
RUNNING_NOW_LIMIT = 10


@dataclass(frozen=True)
class RequestStamp:
    """The few columns a poll of the request page needs to decide whether anything changed."""

    pk: int
    status: str
    updated_at: dt.datetime
    events: int
    run_id: int | None
    plan_run_id: int | None
    has_plan_summary: bool
    applied_by_id: int | None
    expires_at: dt.datetime | None
    completed_at: dt.datetime | None = None

    @classmethod
    def of(cls, request: DeploymentRequest, *, events: int) -> RequestStamp:
        """The stamp of a request as loaded (with its number of events)."""
        return cls(
            pk=request.pk,
            status=request.status,
            updated_at=request.updated_at,
            events=events,
            run_id=request.run_id,
            plan_run_id=request.plan_run_id,
            has_plan_summary=request.plan_summary is not None,
            applied_by_id=request.applied_by_id,
            expires_at=request.expires_at,
            completed_at=request.completed_at,
        )

    def etag(self, *, viewer: int | None) -> str:
        # The viewer is part of it: the Apply/Approve/Cancel offered depend on who looks.
        return f'W/"r{self.pk}-{self.updated_at.timestamp():.6f}-{self.events}-{self.status}-u{viewer or 0}"'

    @property
    def waits_for_people(self) -> bool:
        return self.status in WAITING_STATUSES and self.applied_by_id is None

    def needs_catch_up(self, now: dt.datetime) -> bool:
        """Whether the page's own catch-up has work: a plan past its expiry, an active run whose
        id is not known yet, a finished plan run whose summary was not read."""
        expired = self.waits_for_people and self.expires_at is not None and self.expires_at <= now
        active = lifecycle.is_active(self.status)
        run_unknown = (
            active
            and self.run_id is None
            and self.status != lifecycle.Status.PENDING
            and not self.waits_for_people
        )
        summary_missing = bool(self.plan_run_id) and not self.has_plan_summary
        just_ended = (
            self.status == lifecycle.Status.COMPLETED
            and bool(self.run_id or self.plan_run_id)
            and self.completed_at is not None
            and now - self.completed_at < REASON_WAIT
        )
        return expired or run_unknown or summary_missing or just_ended


class _RequestStampRead:
    """The request page poll's statement: the request's columns the stamp needs, whether it has a
    plan summary (not the summary itself) and how many events it has (a subquery on the events'
    index), by primary key."""

    FIELDS = ("status", "updated_at", "run_id", "plan_run_id", "applied_by", "expires_at", "completed_at")

    def __init__(self, connection: Any) -> None:
        q = connection.ops.quote_name
        meta, events = DeploymentRequest._meta, DeploymentEvent._meta
        fields: list[Any] = [meta.get_field(name) for name in self.FIELDS]
        self.columns = [Column(connection, field.get_col("r")) for field in fields]
        pk, link = q(meta.pk.column), q(events.get_field("request").column)
        self.sql = (
            f"SELECT {', '.join(f'r.{q(field.column)}' for field in fields)}, "  # noqa: S608
            f"r.{q(meta.get_field('plan_summary').column)} IS NOT NULL, "
            f"(SELECT COUNT(*) FROM {q(events.db_table)} e WHERE e.{link} = r.{pk}) "
            f"FROM {q(meta.db_table)} r WHERE r.{pk} = %s"
        )


def request_stamp(pk: int) -> RequestStamp | None:
    """One statement, written once per connection (``portal.sql``): the request's state and how
    many events it has. As a queryset (``annotate(Count("events"))``) it cost more Python to
    build than the poll's whole answer, and read the plan summary's JSON to test it for None."""
    connection = connections[router.db_for_read(DeploymentRequest)]
    read = once_per_connection(connection, _RequestStampRead)
    with connection.cursor() as cursor:
        cursor.execute(read.sql, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    *fields, has_plan_summary, events = row
    converted = [
        column.convert(value, connection) for column, value in zip(read.columns, fields, strict=True)
    ]
    status, updated_at, run_id, plan_run_id, applied_by_id, expires_at, completed_at = converted
    return RequestStamp(
        pk=pk,
        status=status,
        updated_at=updated_at,
        events=events,
        run_id=run_id,
        plan_run_id=plan_run_id,
        has_plan_summary=bool(has_plan_summary),
        applied_by_id=applied_by_id,
        expires_at=expires_at,
        completed_at=completed_at,
    )


def poll_seconds(
    request: DeploymentRequest, *, now: dt.datetime | None = None, steps_pending: bool = False
) -> int | None:
    """How often the request page asks again; None once nothing more can happen (``steps_pending``:
    the run ended a moment ago and its final steps are still being read)."""
    if request.is_active:
        return WAITING_POLL_SECONDS if request.waits_for_people else RUNNING_POLL_SECONDS
    if steps_pending:
        return RUNNING_POLL_SECONDS
    # A failed run's reason is read from GitHub just after it ends: wait for it a little while.
    ended = request.completed_at
    reason_pending = (
        request.status == lifecycle.Status.COMPLETED and request.failed and not request.error_message
    )
    if reason_pending and ended is not None and (now or timezone.now()) - ended < REASON_WAIT:
        return RUNNING_POLL_SECONDS
    return None


@dataclass(frozen=True)
class ActivityStamp:
    """Every request's last change: the pods page's poll compares it with what it showed."""

    last_id: int  # the newest request (requests are never deleted: the audit history)
    latest: float  # the last change of any request (a new one included)

    @property
    def etag(self) -> str:
        return f'W/"a{self.last_id}-{self.latest:.6f}"'


class _StampColumns:
    """The stamp's two columns (SQL, written once per connection): the newest ``updated_at`` and
    the newest id, each an index lookup (newest-first, LIMIT 1)."""

    def __init__(self, connection: Any) -> None:
        q = connection.ops.quote_name
        meta = DeploymentRequest._meta
        field = meta.get_field("updated_at")
        self.updated_at = Column(connection, field.get_col(meta.db_table))
        table, updated_at, pk = q(meta.db_table), q(field.column), q(meta.pk.column)
        self.select = (
            f"SELECT (SELECT {updated_at} FROM {table} ORDER BY {updated_at} DESC LIMIT 1), "  # noqa: S608 (quoted names)
            f"(SELECT {pk} FROM {table} ORDER BY {pk} DESC LIMIT 1)"
        )


def activity_stamp() -> ActivityStamp:
    """Two index lookups (``updated_at``'s and the primary key's) in one query, whatever the
    history's size: every pods-page view and poll asks it. Newest-first with LIMIT 1, which
    SQLite and PostgreSQL both answer from the index (SQLite scans the table for two MAX()es in
    one SELECT). Counting the requests, as it did, read the whole table: 11 ms per view at
    50,000 requests on SQLite, 6.5 ms on PostgreSQL. (Two requests created at once may commit
    out of order and the first commit change neither figure: its move to dispatched, a moment
    later, does, as any change after it.) The SQL is written by hand once per connection:
    building the queryset for it cost 0.3 ms, ten times running it."""
    return _stamp_and_entry(None, router.db_for_read(DeploymentRequest))[0]


# Per process: (reusable until, the cache's writes then, the caller's ``local`` then, the
# answer) per database and key.
_reads: dict[tuple[str, str], tuple[float, int, Any, tuple[ActivityStamp, Any]]] = {}


def activity_stamp_and_entry(key: str, *, local: Any = None) -> tuple[ActivityStamp, Any]:
    """The stamp and the default cache's entry ``key`` (None when missing): the pods page's
    reads on every view (``key`` is the listing's cache entry).

    One statement when that cache is the portal's database cache in the same database. And
    the answer is reused for PODS_PAGE_READS_SECONDS (0.1 s) in this process, unless the process
    wrote to the cache since (a worker that revalidated the listing sees its own new version)
    or ``local`` changed (what the caller built on the answer: the listing this process loaded,
    which another view may have replaced with a newer one). A missing entry is not reused (a
    listing being made elsewhere shows as soon as it is stored). Statements and their Python
    were most of a warm view's own time: a busy worker now runs ten a second instead of
    hundreds (issue 18: the warm page against the bare view). A change made by another worker,
    or a request changed by this one, shows at most that much later."""
    alias = router.db_for_read(DeploymentRequest)
    seconds = settings.PODS_PAGE_READS_SECONDS
    if seconds <= 0:
        return _stamp_and_entry(key, alias)
    now = time.monotonic()
    written = getattr(cache, "written", 0)  # before the read: a write during it reads again
    kept = _reads.get((alias, key))
    if kept is not None and now < kept[0] and kept[1] == written and kept[2] == local:
        return kept[3]
    answer = _stamp_and_entry(key, alias)
    if len(_reads) > 16:  # keys follow the settings: a few at most, more only in tests
        _reads.clear()
    if answer[1] is not None:
        _reads[(alias, key)] = (now + seconds, written, local, answer)
    return answer


def _stamp_and_entry(key: str | None, alias: str) -> tuple[ActivityStamp, Any]:
    connection = connections[alias]
    columns = once_per_connection(connection, _StampColumns)
    entry = value = None
    if key is not None and getattr(cache, "db", None) == alias:  # portal.cache.DatabaseCache
        entry = cast(Any, cache).entry(key)  # read in the same statement
    elif key is not None:
        value = cache.get(key)
    with connection.cursor() as cursor:
        if entry is None:
            cursor.execute(columns.select)
        else:
            cursor.execute(f"{columns.select}, {entry.columns}", entry.params)
        row = cursor.fetchone()
    if entry is not None:
        value = entry.value(row[2], row[3])
    latest, last_id = row[0], row[1]
    if last_id is None:  # no request yet
        return ActivityStamp(last_id=0, latest=0.0), value
    latest = columns.updated_at.convert(latest, connection)
    return ActivityStamp(last_id=last_id, latest=latest.timestamp()), value


def running_now() -> list[DeploymentRequest]:
    """The requests holding a pod now, newest first (a few; the history has the rest)."""
    return list(
        DeploymentRequest.objects.filter(status__in=lifecycle.ACTIVE_STATUSES)
        .select_related("requested_by")
        .order_by("-created_at")[:RUNNING_NOW_LIMIT]
    )


def pods_poll_seconds(running: list[DeploymentRequest]) -> int:
    return PODS_BUSY_POLL_SECONDS if running else PODS_IDLE_POLL_SECONDS


def latest_changed_since(since: float) -> list[DeploymentRequest]:
    """For each pod with a request changed after ``since`` (a timestamp): its latest request."""
    changed = Q(updated_at__gt=dt.datetime.fromtimestamp(since, tz=dt.UTC))
    pods = DeploymentRequest.objects.filter(changed).values("customer", "environment")
    latest_ids = (
        DeploymentRequest.objects.filter(
            customer__in=pods.values("customer"), environment__in=pods.values("environment")
        )
        .values("customer", "environment")
        .annotate(last=Max("id"))
        .values("last")
    )
    return list(DeploymentRequest.objects.filter(id__in=latest_ids).select_related("requested_by"))
