"""Django's database cache, with ``set_many`` written in bulk.

Django's ``DatabaseCache.set_many`` sets one key at a time, and each ``set`` is five statements
(a ``COUNT(*)`` of the whole table for the cull check, then a transaction of a SELECT and an
INSERT or UPDATE). A cold pods listing caches one entry per spec blob in a few ``set_many``
calls: at 1,000 pods that was 5,000 statements, 0.9 s on PostgreSQL (0.14 s on SQLite), and the
``COUNT(*)`` grows with the table. Here a ``set_many`` counts once (the same cull as Django's),
then writes ``BATCH`` rows per statement with ``INSERT … ON CONFLICT (cache_key) DO UPDATE``,
which PostgreSQL (9.5+) and SQLite (3.24+) spell the same way: atomic per statement, and two
workers writing the same keys at once do not fail (the rows go in key order, so two batches
never wait on each other's locks in opposite orders). A batch the database refuses (a key
longer than the column, say) is written again a key at a time with Django's own ``set``, so
one bad key costs only itself, as it did.

``get`` reads one key with SQL written once per connection (``EntryRead``): Django's goes
through ``get_many``, which builds its SQL and a ``DateTimeField`` for the expiry's converters
on every call (half the pods page's listing check, which reads one entry on every view).
``entry`` lets a caller read an entry beside its own columns, in the same statement. Both
answer as Django's ``get`` does: the value, or ``default`` for a missing or expired entry,
which is deleted. Everything else is Django's.
"""

from __future__ import annotations

import base64
import itertools
import logging
import pickle
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import DatabaseError, connections, models, router, transaction
from django.utils.timezone import now as tz_now

from .sql import Column, once_per_connection

# Three parameters a row: 900 stays under SQLite's oldest limit of 999 per statement.
BATCH = 300

logger = logging.getLogger(__name__)


# The expiry column as Django's get_many converts it (an aware datetime under USE_TZ).
_EXPIRES = models.Expression(output_field=models.DateTimeField())


def _entry_columns(connection: Any, table: str) -> tuple[str, Column]:
    """An entry's two columns (SQL with its key twice as parameters), and its expiry's Column."""
    quote = connection.ops.quote_name
    where = f"FROM {quote(table)} WHERE {quote('cache_key')} = %s"  # noqa: S608 (quoted names)
    columns = f"(SELECT {quote('value')} {where}), (SELECT {quote('expires')} {where})"
    return columns, Column(connection, _EXPIRES)


class EntryRead:
    """One entry of the cache, read as two columns of a statement: ``columns`` (SQL, two scalar
    subqueries: the value and its expiry, NULL when missing) with ``params``, so a view can read
    it beside its own columns in one round trip; ``value`` answers as ``get`` would."""

    def __init__(self, cache: DatabaseCache, made_key: str, db: str) -> None:
        self.cache = cache
        self.made_key = made_key
        self.params = [made_key, made_key]
        self.db = db
        table = cache._table  # type: ignore[attr-defined]  # Django's, not in its stubs
        self.columns, self._expires = once_per_connection(connections[db], _entry_columns, table)

    def value(self, value: Any, expires: Any, default: Any = None) -> Any:
        """The entry's value from its two columns, as Django's ``get_many`` decodes it; ``default``
        when it is missing or expired (an expired entry is deleted, as Django's is)."""
        if value is None:
            return default
        connection = connections[self.db]
        if self._expires.convert(expires, connection) < tz_now():
            self.cache._base_delete_many([self.made_key])
            return default
        return pickle.loads(base64.b64decode(connection.ops.process_clob(value).encode()))  # noqa: S301 (Django's format)


# Per process, drawn after each write through the cache: DatabaseCache.written's values.
_writes = itertools.count(1)


class DatabaseCache(DjangoDatabaseCache):
    # Per process: a new value after each write this process makes through the cache (any key),
    # so a reader that keeps what it read for a moment (deployments.live) reads again after its
    # own process wrote. Drawn from a counter (unique even when threads write at once).
    written = 0

    def _base_set(self, *args: Any, **kwargs: Any) -> Any:  # set, add, touch (Django's)
        try:
            return super()._base_set(*args, **kwargs)  # type: ignore[misc]
        finally:
            DatabaseCache.written = next(_writes)

    def _base_delete_many(self, keys: Any) -> Any:  # delete, delete_many, expired entries
        try:
            return super()._base_delete_many(keys)  # type: ignore[misc]
        finally:
            if keys:  # Django's get_many calls it with none
                DatabaseCache.written = next(_writes)

    def clear(self) -> None:
        try:
            super().clear()
        finally:
            DatabaseCache.written = next(_writes)

    @property
    def db(self) -> str:
        """The database the entries are read from."""
        return router.db_for_read(self.cache_model_class)

    def entry(self, key: str, version: Any = None) -> EntryRead:
        return EntryRead(self, self.make_and_validate_key(key, version=version), self.db)

    def get(self, key: str, default: Any = None, version: Any = None) -> Any:
        entry = self.entry(key, version=version)
        with connections[entry.db].cursor() as cursor:
            cursor.execute(f"SELECT {entry.columns}", entry.params)
            value, expires = cursor.fetchone()
        return entry.value(value, expires, default)

    def set_many(self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list:
        if not data:
            return []
        try:
            return self._set_many(data, timeout, version)
        finally:
            DatabaseCache.written = next(_writes)

    def _set_many(self, data: Mapping[str, Any], timeout: Any, version: Any) -> list:
        rows = sorted(
            (
                self.make_and_validate_key(key, version=version),
                key,
                value,
                # As Django stores a value: pickled, then base64 in a text column (refs #19274).
                base64.b64encode(pickle.dumps(value, self.pickle_protocol)).decode("latin1"),
            )
            for key, value in data.items()
        )  # in key order (unique keys: the tuples never compare further)
        backend_timeout = self.get_backend_timeout(timeout)
        if backend_timeout is None:
            expires = datetime.max
        else:
            expires = datetime.fromtimestamp(backend_timeout, tz=UTC if settings.USE_TZ else None)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote = connection.ops.quote_name
        table = quote(self._table)  # type: ignore[attr-defined]  # Django's, not in its stubs
        expiry_value = connection.ops.adapt_datetimefield_value(expires.replace(microsecond=0))
        key_column, value_column, expires_column = quote("cache_key"), quote("value"), quote("expires")
        failed: list[str] = []
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 (the table's quoted name)
            count = cursor.fetchone()[0]
            if count > self._max_entries:
                self._cull(db, cursor, tz_now().replace(microsecond=0), count)  # type: ignore[attr-defined]
            for start in range(0, len(rows), BATCH):
                batch = rows[start : start + BATCH]
                values = ", ".join(["(%s, %s, %s)"] * len(batch))
                sql = (
                    f"INSERT INTO {table} ({key_column}, {value_column}, {expires_column}) "  # noqa: S608
                    f"VALUES {values} ON CONFLICT ({key_column}) DO UPDATE SET "
                    f"{value_column} = excluded.{value_column}, {expires_column} = excluded.{expires_column}"
                )
                try:
                    with transaction.atomic(using=db):
                        cursor.execute(sql, [part for k, _, _, v in batch for part in (k, v, expiry_value)])
                except DatabaseError as exc:
                    logger.warning(
                        "cache: a bulk write of %d entries was refused (%s); writing them one by one",
                        len(batch),
                        type(exc).__name__,
                    )
                    # Django's set, which lets a write fail without failing the caller.
                    failed += [
                        original
                        for made, original, value, _ in batch
                        if not self._base_set("set", made, value, timeout)
                    ]
        return failed
