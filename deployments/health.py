"""Readiness for /health: the database and a cached GitHub probe.

The probe is shared by all workers through Django's cache and refreshed at most once per
HEALTH_CACHE_SECONDS, so a monitoring storm costs GitHub one probe per period.
"""

from __future__ import annotations

import dataclasses
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection

from . import gh

REPORT_KEY = "health:github:report"
PROBE_LOCK_KEY = "health:github:probe-lock"
LAST_REPORT_KEY = "health:github:last"
WAIT_FOR_PROBE_SECONDS = 5.0


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def _github_report() -> dict | None:
    period = settings.HEALTH_CACHE_SECONDS
    report = cache.get(REPORT_KEY)
    if report is not None:
        return report
    if cache.add(PROBE_LOCK_KEY, True, timeout=period):
        try:
            report = dataclasses.asdict(gh.health_probe())
        except Exception:
            cache.delete(PROBE_LOCK_KEY)  # let the next request probe again
            raise
        cache.set(REPORT_KEY, report, timeout=period)
        cache.set(LAST_REPORT_KEY, report, timeout=None)
        return report
    # Another worker is probing right now: wait for its answer, else use the last one.
    deadline = time.monotonic() + WAIT_FOR_PROBE_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        report = cache.get(REPORT_KEY)
        if report is not None:
            return report
    return cache.get(LAST_REPORT_KEY)


def readiness() -> tuple[dict, bool]:
    """The /health body (the seed's shape plus database, workflow and auth) and whether healthy."""
    database_ok = _database_ok()
    report = _github_report() if database_ok else None
    if report is None:
        reason = "The database is unreachable." if not database_ok else "GitHub probe still running."
        body = {"status": "unhealthy", "reason": reason, "database": "ok" if database_ok else "unreachable"}
        body |= {"github": "unknown", "repo": settings.GH_REPO}
        return body, False
    healthy = report["healthy"]
    body = {
        "status": "healthy" if healthy else "unhealthy",
        "github": report["github"],
        "repo": report["repo"],
        "auth": report["auth"],
        "scopes": report["scopes"],
        "workflow": report["workflow"],
        "rate_limit": report["rate_limit"],
        "database": "ok",
    }
    if not healthy:
        body["reason"] = report["reason"]
    return body, healthy
