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
one bad key costs only itself, as it did. Everything else is Django's.
"""

from __future__ import annotations

import base64
import logging
import pickle
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.db import DatabaseCache as DjangoDatabaseCache
from django.db import DatabaseError, connections, router, transaction
from django.utils.timezone import now as tz_now

# Three parameters a row: 900 stays under SQLite's oldest limit of 999 per statement.
BATCH = 300

logger = logging.getLogger(__name__)


class DatabaseCache(DjangoDatabaseCache):
    def set_many(self, data: Mapping[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list:
        if not data:
            return []
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
                        if not self._base_set("set", made, value, timeout)  # type: ignore[attr-defined]
                    ]
        return failed
