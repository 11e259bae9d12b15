"""The shared cache (portal/cache.py): Django's database cache, with set_many written in bulk.
Run on SQLite and on PostgreSQL (the PostgreSQL run keeps every test that uses the database)."""

import warnings

from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.cache import BATCH, DatabaseCache


def statements(queries, prefix: str) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(prefix)]


def test_set_many_writes_in_a_statement_per_batch_and_counts_the_table_once(db):
    """A cold listing of 1,000 pods caches 1,000 blobs at once: Django's set_many made five
    statements per key (5,000; 0.9 s on PostgreSQL)."""
    entries = {f"blob:{i:040x}": f"spec {i}\n" * 20 for i in range(2 * BATCH + 1)}
    with CaptureQueriesContext(connection) as queries:
        assert cache.set_many(entries, timeout=None) == []

    assert len(statements(queries, "INSERT")) == 3
    assert len(statements(queries, "SELECT COUNT(*)")) == 1
    assert cache.get_many(list(entries)) == entries


def test_set_many_replaces_values_and_their_expiry(db):
    cache.set("a", "old", timeout=None)
    cache.set_many({"a": "new", "b": {"any": ["picklable", 1]}}, timeout=None)
    assert cache.get_many(["a", "b"]) == {"a": "new", "b": {"any": ["picklable", 1]}}

    cache.set_many({"a": "expired at once"}, timeout=0)  # Django: 0 expires the key
    assert cache.get("a") is None
    assert cache.get("b") == {"any": ["picklable", 1]}


def test_set_many_keeps_versions_apart(db):
    cache.set_many({"k": "v2"}, version=2)
    assert cache.get("k", version=2) == "v2"
    assert cache.get("k") is None


def test_set_many_culls_a_full_table_before_writing(db):
    small = DatabaseCache("portal_cache", {"OPTIONS": {"MAX_ENTRIES": 10, "CULL_FREQUENCY": 2}})
    small.set_many({f"first{i}": i for i in range(12)}, timeout=None)
    small.set_many({"last": "kept"}, timeout=None)  # 12 > 10: half culled before writing

    assert small.get("last") == "kept"
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM portal_cache")
        assert cursor.fetchone()[0] == 7


def test_a_key_the_database_refuses_costs_only_itself(db, caplog):
    """PostgreSQL refuses a key longer than the column (255) and with it the whole statement:
    the batch is written again a key at a time, so the other entries are still cached.
    (SQLite does not enforce the length: there every entry is written.)"""
    too_long = "k" * 300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Django warns of keys over 250 characters (memcached)
        failed = cache.set_many({"good": 1, too_long: 2, "also-good": 3}, timeout=None)

    assert cache.get_many(["good", "also-good"]) == {"good": 1, "also-good": 3}
    if connection.vendor == "postgresql":
        assert failed == [too_long]
        assert "a bulk write of 3 entries was refused (DataError)" in caplog.text
    else:
        assert failed == []


def test_get_answers_as_djangos_in_one_statement_written_once(db):
    """``get`` reads one key with SQL written once per connection (Django's goes through
    get_many, which builds its SQL and a field for the expiry's converters on every call), and
    answers as Django's: the value, or the default for a missing key or an expired entry, which
    is then deleted."""
    cache.set("kept", {"sha": "abc", "checked_at": 1.5}, timeout=None)
    cache.set("gone", "old", timeout=60)
    with connection.cursor() as cursor:  # expired a minute ago, as if written long before
        cursor.execute(
            "UPDATE portal_cache SET expires = %s WHERE cache_key LIKE %s", ["2000-01-01", "%gone"]
        )
    with CaptureQueriesContext(connection) as queries:
        assert cache.get("kept") == {"sha": "abc", "checked_at": 1.5}
        assert cache.get("missing") is None
        assert cache.get("missing", "default") == "default"
    assert len(queries) == 3 and all(q["sql"].startswith("SELECT (SELECT") for q in queries)

    assert cache.get("gone", "default") == "default"
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM portal_cache WHERE cache_key LIKE %s", ["%gone"])
        assert cursor.fetchone()[0] == 0
    cache.set("kept", "v2", version=2)
    assert (cache.get("kept", version=2), cache.get("kept")) == ("v2", {"sha": "abc", "checked_at": 1.5})


def test_an_entry_is_read_beside_other_columns_in_the_callers_statement(db):
    cache.set("meta", {"sha": "abc"}, timeout=None)
    entry, missing = cache.entry("meta"), cache.entry("other")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 41 + 1, {entry.columns}, {missing.columns}", entry.params + missing.params)
        answer, *columns = cursor.fetchone()
    assert answer == 42
    assert entry.value(*columns[:2]) == {"sha": "abc"}
    assert missing.value(*columns[2:], default="default") == "default"


def test_each_write_of_this_process_is_counted(db):
    """``written`` tells a reader that keeps what it read for a moment (the pods page's reads)
    that its own process changed the cache since."""
    counts = [DatabaseCache.written]
    for write in (
        lambda: cache.set("a", 1),
        lambda: cache.add("b", 1),
        lambda: cache.set_many({"c": 1}),
        lambda: cache.touch("a"),
        lambda: cache.delete("a"),
        lambda: cache.delete_many(["b", "c"]),
        lambda: cache.clear(),
    ):
        write()
        counts.append(DatabaseCache.written)
    assert all(after > before for before, after in zip(counts, counts[1:], strict=False))
    before = DatabaseCache.written
    cache.get("b")
    cache.get_many(["a", "b"])  # Django's deletes the expired keys it found: none here
    assert DatabaseCache.written == before
