"""Sessions that bring their user along: one statement per request instead of three.

Django reads a signed-in request's session (one query), then its user (a second), then, at
the first ``has_perm``, the user's permissions (a third). This engine (``SESSION_ENGINE``) keeps
Django's database sessions with the user's id in a column of their own (``PortalSession``)
and reads the session row joined to its user, with the user's permission names aggregated
in a subquery. ``AuthenticationMiddleware`` (Django's, which this subclasses) then asks the
session's backend for the user as usual; the backends (``SessionUserBackend``) answer from
that row instead of querying again, with their own rules (active or not), and Django's
checks that follow (the session's password hash) are unchanged.

Nothing is kept between requests: the user and permissions are read with the session, each
request. A sign-out, a password change, a deactivated account or a removed permission take
effect on the next request, as with Django's own engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth import middleware as auth_middleware
from django.contrib.auth.models import Group, Permission
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connections, router
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from portal.sql import Column, once_per_connection

# Set while AuthenticationMiddleware asks a backend for the request's user: that request's
# session, whose row may carry the user.
_session: ContextVar[SessionStore | None] = ContextVar("accounts_session", default=None)


class _Statement:
    """The one statement (per database connection, written once): the session row by key, its
    user's columns (LEFT JOIN: none when there is no such user) and the user's permission names
    as a JSON array, with the converters Django would apply to each column.

    It runs on every request. A queryset for it (select_related + a subquery) cost more to
    build and compile than the statement itself (1 ms of Python against 0.3 ms on PostgreSQL),
    and the ORM's OR over four outer joins (as in ``accounts.backends``) took PostgreSQL 0.5 ms to plan:
    here the permissions are two IN lists. Every name comes from the models' ``_meta``."""

    def __init__(self, connection: Any) -> None:
        q = connection.ops.quote_name
        session_model, user_model = _session_model(), get_user_model()
        self.session_fields = session_model._meta.concrete_fields
        self.user_fields = user_model._meta.concrete_fields
        self.session_names = [f.attname for f in self.session_fields]
        self.user_names = [f.attname for f in self.user_fields]
        # Each column with the converters Django's compiler would apply to it (apply_converters).
        fields = (*self.session_fields, *self.user_fields)
        self.columns = [Column(connection, f.get_col(f.model._meta.db_table)) for f in fields]
        self.user_pk = len(self.session_fields) + self.user_fields.index(user_model._meta.pk)
        session_user = q(session_model._meta.get_field("user").column)
        own = user_model._meta.get_field("user_permissions")  # user ↔ permission
        memberships = user_model._meta.get_field("groups")  # user ↔ group
        group_grants = Group._meta.get_field("permissions")  # group ↔ permission
        content_type = Permission._meta.get_field("content_type")
        permission_pk = q(Permission._meta.pk.column)
        name = f"c.{q('app_label')} || '.' || p.{q('codename')}"  # ModelBackend's "app_label.codename"
        if connection.vendor == "postgresql":
            names = f"JSON_AGG({name})::text"
        elif connection.vendor == "sqlite":
            names = f"JSON_GROUP_ARRAY({name})"
        else:
            raise ImproperlyConfigured("accounts.sessions reads sessions on PostgreSQL and SQLite only.")
        columns = [f"s.{q(f.column)}" for f in self.session_fields]
        columns += [f"u.{q(f.column)}" for f in self.user_fields]
        self.sql = (
            f"SELECT {', '.join(columns)}, (SELECT {names}"  # noqa: S608 (quoted names; the key is a parameter)
            f" FROM {q(Permission._meta.db_table)} p JOIN {q(content_type.related_model._meta.db_table)} c"
            f" ON c.{q(content_type.target_field.column)} = p.{q(content_type.column)}"
            f" WHERE p.{permission_pk} IN (SELECT {q(own.m2m_reverse_name())}"
            f" FROM {q(own.m2m_db_table())} WHERE {q(own.m2m_column_name())} = s.{session_user})"
            f" OR p.{permission_pk} IN (SELECT g.{q(group_grants.m2m_reverse_name())}"
            f" FROM {q(group_grants.m2m_db_table())} g JOIN {q(memberships.m2m_db_table())} m"
            f" ON m.{q(memberships.m2m_reverse_name())} = g.{q(group_grants.m2m_column_name())}"
            f" WHERE m.{q(memberships.m2m_column_name())} = s.{session_user}))"
            f" FROM {q(session_model._meta.db_table)} s LEFT JOIN {q(user_model._meta.db_table)} u"
            f" ON u.{q(user_model._meta.pk.column)} = s.{session_user}"
            f" WHERE s.{q(session_model._meta.pk.column)} = %s"
        )

    def read(self, connection: Any, session_key: str) -> tuple[Any, Any, list[str]] | None:
        """(session, its user or None, the user's permission names), or None: no such session."""
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [session_key])
            row = cursor.fetchone()
        if row is None:
            return None
        values = list(row[:-1])
        for index, column in enumerate(self.columns):
            values[index] = column.convert(values[index], connection)
        split = len(self.session_fields)
        session = _session_model().from_db(connection.alias, self.session_names, values[:split])
        user = None
        if values[self.user_pk] is not None:  # the join found the user
            user = get_user_model().from_db(connection.alias, self.user_names, values[split:])
        return session, user, json.loads(row[-1]) if row[-1] else []


def _session_model() -> Any:
    from .models import PortalSession

    return PortalSession


class SessionStore(DBStore):
    """Django's database session store, reading the session's user and their permissions in
    the same statement as the session (``user_read_with_session``)."""

    # (user id, the user or None when no such user): the row last read, if it named a user.
    user_row: tuple[Any, Any] | None = None

    @classmethod
    def get_model_class(cls) -> type:
        return _session_model()

    def _get_session_from_db(self) -> Any:
        """Django's (django.contrib.sessions.backends.db), with the user read alongside."""
        self.user_row = None
        connection = connections[router.db_for_read(self.model)]
        statement = once_per_connection(connection, _Statement)
        found = statement.read(connection, self.session_key) if self.session_key else None
        if found is None or found[0].expire_date <= timezone.now():  # Django's expire_date__gt=now
            self._session_key = None
            return None
        session, user, permission_names = found
        if session.user_id is not None:
            if user is not None and not user.is_superuser:
                # ModelBackend's per-request cache (get_all_permissions): the same set it reads.
                user._perm_cache = set(permission_names)
            self.user_row = (session.user_id, user)
        return session

    def create_model_instance(self, data: dict[str, Any]) -> Any:
        return _with_user_id(super().create_model_instance(data), data)

    async def acreate_model_instance(self, data: dict[str, Any]) -> Any:
        return _with_user_id(await super().acreate_model_instance(data), data)

    @classmethod
    def clear_expired(cls) -> None:
        """Django's ``clearsessions``, for this table and for rows an instance still running the
        previous version wrote to Django's table during an update (they sign no one in here)."""
        super().clear_expired()
        DBStore.clear_expired()


def _with_user_id(session: Any, data: dict[str, Any]) -> Any:
    try:
        session.user_id = get_user_model()._meta.pk.to_python(data.get(auth.SESSION_KEY))
    except (ValidationError, TypeError, ValueError):  # not an id: the column stays empty
        session.user_id = None
    return session


@contextmanager
def _reading_user_of(session: Any) -> Iterator[None]:
    token = _session.set(session if isinstance(session, SessionStore) else None)
    try:
        yield
    finally:
        _session.reset(token)


def user_read_with_session(user_id: Any) -> tuple[bool, Any]:
    """(True, the user or None) when the request's session row was read with user ``user_id``;
    (False, None) when it was not (another engine, another id, no session read): ask the
    database as usual."""
    session = _session.get()
    row = session.user_row if session is not None else None
    if row is None or row[0] != user_id:
        return False, None
    return True, row[1]


class SessionUserBackend:
    """Backend mixin: ``get_user`` answers from the user read with the session, applying the
    backend's own rule to it (``session_user_allowed``), else asks the backend as usual."""

    def session_user_allowed(self, user: Any) -> bool:
        return True

    def get_user(self, user_id: Any) -> Any:
        found, user = user_read_with_session(user_id)
        if not found:
            return super().get_user(user_id)  # type: ignore[misc]
        return user if user is not None and self.session_user_allowed(user) else None


class AuthenticationMiddleware(auth_middleware.AuthenticationMiddleware):
    """Django's, with ``request.user`` read while the request's session is known to the
    backends (``user_read_with_session``)."""

    def process_request(self, request: Any) -> None:
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: _user(request))


def _user(request: Any) -> Any:
    # Django's auth.middleware.get_user, with the session made known for the call.
    if not hasattr(request, "_cached_user"):
        with _reading_user_of(request.session):
            request._cached_user = auth.get_user(request)
    return request._cached_user
