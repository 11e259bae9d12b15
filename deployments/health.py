"""Readiness for /health: the database and the last GitHub probe, refreshed in the background.

A request never waits on GitHub: it answers from the last report in Django's cache (shared by
all workers) and, when that report is older than HEALTH_CACHE_SECONDS, starts a probe in a
daemon thread of its process. The probe lock in the cache lets one worker probe at a time, so a
monitoring storm costs GitHub one probe per period. The probe thread touches only GitHub: its
report is handed back in memory and published to the cache by the next /health request of the
same process (the thread writes nothing to the database).

Only when no report exists at all (a new deployment, a cleared cache) do requests wait for the
first probe: the one that starts it and every one arriving while it runs, in any worker, until
its report is published or FIRST_PROBE_WAIT_SECONDS after the probe started. A healthy GitHub
answers in a fraction of that, so a new instance answers its first readiness checks, a monitor's
storm included, from the first probe. With a slow GitHub they answer 503 "GitHub probe still
running" once the probe is a second old: threads are held for the first second at most, never
for GitHub's timeout.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, connections
from django.http import HttpRequest

from . import gh

logger = logging.getLogger(__name__)

REPORT_KEY = "health:github:report"  # {"report": HealthReport as a dict, "checked_at": epoch s}
PROBE_LOCK_KEY = "health:github:probe-lock"  # {"token": the holding probe's, "started": epoch s}
FIRST_PROBE_WAIT_SECONDS = 1.0
FIRST_REPORT_POLL_SECONDS = 0.02  # how often a request waiting on another worker's probe looks


@dataclasses.dataclass
class _Probe:
    token: str
    thread: threading.Thread | None = None
    report: dict[str, Any] | None = None
    checked_at: float = 0.0

    def run(self) -> None:
        try:
            self.report = dataclasses.asdict(gh.health_probe())
        except Exception:
            logger.exception("The GitHub health probe failed")
            failed = gh.HealthReport(
                healthy=False,
                reason="The GitHub probe failed unexpectedly; see the portal's logs.",
                repo=settings.GH_REPO,
                auth="unknown",
                github="error",
            )
            self.report = dataclasses.asdict(failed)
        finally:
            # With GitHub App auth the shared installation token is read from the database cache:
            # close what this thread opened (connections are per thread) instead of leaking it.
            connections.close_all()
        self.checked_at = time.time()


_probe_guard = threading.Lock()
_probe: _Probe | None = None  # this process's probe, until its report is published


def _lock_seconds() -> int:
    # A probe is three calls, each bounded by GITHUB_TIMEOUT; its report is then published by the
    # next /health request. A worker that died holding the lock only delays the next probe.
    return settings.HEALTH_CACHE_SECONDS + 3 * settings.GITHUB_TIMEOUT


def _lock() -> tuple[str | None, float | None]:
    """The token of the probe holding the lock and when it started (None, None: nobody holds it)."""
    value = cache.get(PROBE_LOCK_KEY)
    if not isinstance(value, dict):
        return (value if isinstance(value, str) else None), None  # an older portal's lock: the token
    token, started = value.get("token"), value.get("started")
    return (token if isinstance(token, str) else None), (started if isinstance(started, float) else None)


def _publish_finished_probe() -> None:
    """Store this process's finished probe in the shared cache, if its lock is still its own."""
    global _probe
    with _probe_guard:
        probe = _probe
        if probe is None or probe.thread is None or probe.thread.is_alive():
            return
        _probe = None
    # A lock that expired or was cleared meanwhile belongs to a newer probe: this report is older.
    if _lock()[0] == probe.token:
        cache.set(REPORT_KEY, {"report": probe.report, "checked_at": probe.checked_at}, timeout=None)
        cache.delete(PROBE_LOCK_KEY)


def _fresh(entry: dict[str, Any] | None) -> bool:
    return entry is not None and time.time() - entry["checked_at"] < settings.HEALTH_CACHE_SECONDS


def _start_probe() -> dict[str, Any] | None:
    """Start a probe in this process unless one runs here or another worker holds the lock.

    Returns the fresh report found once the lock was taken, if any (then no probe starts): the
    caller read the report before taking the lock, and a probe that ended in between (in another
    worker or thread) published its report before releasing the lock. Probing again would cost
    GitHub a second probe in the same period.
    """
    global _probe
    with _probe_guard:
        if _probe is not None and _lock()[0] == _probe.token:
            return None
        # A probe of ours whose lock expired is left to finish; its report is not published.
        probe = _Probe(token=secrets.token_hex(16))
        lock = {"token": probe.token, "started": time.time()}
        if not cache.add(PROBE_LOCK_KEY, lock, timeout=_lock_seconds()):
            return None
        published: dict[str, Any] | None = cache.get(REPORT_KEY)
        if _fresh(published):
            cache.delete(PROBE_LOCK_KEY)  # ours: taken above, far from expiring
            return published
        probe.thread = threading.Thread(target=probe.run, name="health-github-probe", daemon=True)
        probe.thread.start()
        _probe = probe
        return None


def wait_for_probe(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for this process's running probe; True once none runs."""
    with _probe_guard:
        thread = _probe.thread if _probe is not None else None
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


def _await_first_report() -> dict[str, Any] | None:
    """The first report, waited for while the probe that holds the lock is under a second old."""
    _, started = _lock()
    now = time.time()
    # A probe started on another host is trusted no further than this host's clock.
    deadline = min(started, now) + FIRST_PROBE_WAIT_SECONDS if started is not None else now
    while True:
        remaining = deadline - time.time()
        with _probe_guard:
            thread = _probe.thread if _probe is not None else None
        if thread is not None and remaining > 0:
            thread.join(remaining)  # this process's probe: its report is published just below
        _publish_finished_probe()
        entry: dict[str, Any] | None = cache.get(REPORT_KEY)
        remaining = deadline - time.time()
        if entry is not None or remaining <= 0:
            return entry
        time.sleep(min(FIRST_REPORT_POLL_SECONDS, remaining))  # another worker's probe


def _github_entry() -> dict[str, Any] | None:
    _publish_finished_probe()
    entry: dict[str, Any] | None = cache.get(REPORT_KEY)
    if _fresh(entry):
        return entry
    published = _start_probe()
    if published is not None:
        return published
    if entry is None:
        entry = _await_first_report()
    return entry


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


def details_allowed(request: HttpRequest) -> bool:
    """Whether the caller may see /health's details: a logged-in user, or the HEALTH_TOKEN bearer."""
    if request.user.is_authenticated:
        return True
    expected = settings.HEALTH_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def readiness(*, details: bool) -> tuple[dict[str, Any], bool]:
    """The /health body and whether the portal is healthy.

    With ``details``: the seed's shape plus database, workflow, auth and when GitHub was checked.
    Without: the status alone, for anonymous callers such as a load balancer.
    """
    database_ok = _database_ok()
    entry = _github_entry() if database_ok else None
    if entry is None:
        reason = "The database is unreachable." if not database_ok else "GitHub probe still running."
        body = {"status": "unhealthy", "reason": reason, "database": "ok" if database_ok else "unreachable"}
        body |= {"github": "unknown", "repo": settings.GH_REPO}
        healthy = False
    else:
        report = entry["report"]
        healthy = report["healthy"]
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "github": report["github"],
            "repo": report["repo"],
            "auth": report["auth"],
            "scopes": report["scopes"],
            # A report published by an older version of the portal has no permissions.
            "permissions": report.get("permissions", "not applicable"),
            "workflow": report["workflow"],
            "rate_limit": report["rate_limit"],
            "database": "ok",
            "checked_at": datetime.fromtimestamp(entry["checked_at"], UTC).isoformat(timespec="seconds"),
        }
        if not healthy:
            body["reason"] = report["reason"]
    if not details:
        body = {"status": body["status"]}
    return body, healthy
