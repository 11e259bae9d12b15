"""Django's PostgreSQL backend, checking a kept connection's health without a round trip.

With ``CONN_HEALTH_CHECKS`` Django sends ``SELECT 1`` before the first query of every request
that reuses a connection (``close_if_health_check_failed``), a round trip each request: the
dearest statement of a request, as it wakes a server process that has been idle since the last
one (issue 18, deploy overhead). A server that restarts, or ends the connection
(``pg_terminate_backend``, ``idle_session_timeout``), sends a FATAL error message and closes the
socket, so a connection it dropped has something to read while a healthy idle one has nothing
(https://www.postgresql.org/docs/15/protocol-flow.html#PROTOCOL-ASYNC: the server may send an
ErrorResponse and close at any time; ParameterStatus and notices also arrive unasked, and then
the connection is merely replaced). The check here is that: the connection is open, idle,
outside a transaction and its socket has nothing to read. A peer that vanished without closing
(a crashed host, a firewall or balancer dropping an idle flow) leaves nothing to read, so that
look is trusted only for a connection opened or checked in the last ``QUIET_SECONDS`` (a
request's queries follow its check within the request); anything else gets
Django's ``SELECT 1``, and after an error in a request Django's own check runs, as before.
"""

from __future__ import annotations

import select
import time

from django.db.backends.postgresql import base
from psycopg import pq

# A connection idle for longer gets Django's SELECT 1 (silent drops happen to idle flows).
QUIET_SECONDS = 10.0


class DatabaseWrapper(base.DatabaseWrapper):
    _used_at = 0.0  # when the connection was opened, or last checked at the start of a request

    def connect(self) -> None:
        super().connect()
        self._used_at = time.monotonic()

    def close_if_health_check_failed(self) -> None:
        checked = self.health_check_done  # type: ignore[has-type] # Django's, not in django-stubs
        if self.connection is None or not self.health_check_enabled or checked:  # type: ignore[attr-defined]
            return
        quiet = self._quiet()
        self._used_at = time.monotonic()
        if not quiet:
            super().close_if_health_check_failed()  # SELECT 1; closed if that fails
            return
        self.health_check_done = True

    def _quiet(self) -> bool:
        """Used lately, open, idle, no transaction, nothing sent by the server since."""
        conn = self.connection
        if time.monotonic() - self._used_at > QUIET_SECONDS:
            return False
        if conn.closed or conn.broken or conn.pgconn.status != pq.ConnStatus.OK:
            return False
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        poller = select.poll()  # not select.select(): no limit on the descriptor's number
        poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
        return not poller.poll(0)
