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
outside a transaction and its socket has nothing to read. Anything else is left to Django's
``SELECT 1``. After an error in a request, Django's own check runs, as before.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        checked = self.health_check_done  # type: ignore[has-type] # Django's, not in django-stubs
        if self.connection is None or not self.health_check_enabled or checked:  # type: ignore[attr-defined]
            return
        if not self._quiet():
            super().close_if_health_check_failed()  # SELECT 1; closed if that fails
            return
        self.health_check_done = True

    def _quiet(self) -> bool:
        """Open, idle, no transaction, nothing sent by the server since the last answer."""
        conn = self.connection
        if conn.closed or conn.broken or conn.pgconn.status != pq.ConnStatus.OK:
            return False
        if conn.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        try:
            readable, _, _ = select.select([conn.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable
