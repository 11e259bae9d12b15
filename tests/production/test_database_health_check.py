"""A kept PostgreSQL connection is checked before each request without a round trip, and a
connection the server ended is replaced before the request uses it (portal/postgresql/base.py).

Each test starts a request as a gunicorn worker does (``request_started`` runs Django's
``close_old_connections``; Django's test client disconnects it, so it is called here)."""

import select

import pytest
from django.db import close_old_connections, connection, connections

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's connections"),
]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _end_from_elsewhere(pid: int) -> None:
    """The server ends the connection (as at a restart or an idle timeout): its FATAL arrives."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            assert cursor.fetchone()[0] is True
    finally:
        other.close()
    readable, _, _ = select.select([connection.connection.fileno()], [], [], 10)
    assert readable, "the server's FATAL did not arrive"


def test_a_healthy_kept_connection_is_reused_without_a_round_trip(monkeypatch):
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] and connection.settings_dict["CONN_MAX_AGE"]
    pid = _backend_pid()
    queries = []
    cursor = connection.connection.cursor
    monkeypatch.setattr(connection.connection, "cursor", lambda *a, **k: queries.append(1) or cursor(*a, **k))
    for _ in range(3):
        close_old_connections()
        assert _backend_pid() == pid  # the same connection, and its only statement is the request's
    assert len(queries) == 3  # Django's check would have sent SELECT 1 before each


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it():
    pid = _backend_pid()
    _end_from_elsewhere(pid)
    close_old_connections()
    assert _backend_pid() != pid  # no error reached the request: a new connection answered


def test_a_connection_left_in_a_transaction_gets_djangos_check(monkeypatch):
    """Not idle (a transaction left open): Django's SELECT 1 decides, as without this backend."""
    _backend_pid()
    connection.connection.execute("BEGIN")
    sent = []
    execute = connection.connection.cursor
    monkeypatch.setattr(connection.connection, "cursor", lambda *a, **k: sent.append(1) or execute(*a, **k))
    close_old_connections()
    _backend_pid()
    assert len(sent) == 2  # SELECT 1, then the request's statement
    connection.connection.execute("ROLLBACK")


def test_a_connection_idle_for_long_gets_djangos_check(monkeypatch):
    """A peer that vanished without closing leaves nothing to read: after QUIET_SECONDS of
    idling the look at the socket is not trusted and Django's SELECT 1 runs."""
    from portal.postgresql import base

    pid = _backend_pid()
    connection._used_at -= base.QUIET_SECONDS + 1  # as if the last request were that long ago
    sent = []
    cursor = connection.connection.cursor
    monkeypatch.setattr(connection.connection, "cursor", lambda *a, **k: sent.append(1) or cursor(*a, **k))
    close_old_connections()
    assert _backend_pid() == pid
    assert len(sent) == 2  # SELECT 1, then the request's statement
