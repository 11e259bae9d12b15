"""``python -m bench.profile``: where the portal spends its own time (cProfile, in-process).

Runs the portal's real views through Django's test client against the emulator (same latency
as ``make bench``) with N pods, then prints a breakdown and the hottest functions:

- default: warm views of the pods page (``--path``);
- ``--deploy``: POST /deploy/ (after the listing is warm, as after a preview), one pod each.

The portal's own time is each view's wall time minus the time its GitHub calls spent in
``requests`` (measured around ``Session.send``, without the profiler); the breakdown times
the parts named in PARTS the same way. ``BENCH_DATABASE_URL``
runs it on PostgreSQL (the database is dropped and created), e.g. under
``scripts/test_postgres.sh``. Not part of ``make bench``: use it to explain a figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import time
import uuid

from .stack import CREATE_DEPLOYER, USERNAME, Stack, _recreate_database

# What a view's time is made of: (label, module, attribute path). Each is timed around its
# calls, without the profiler, minus the GitHub HTTP time spent inside it.
PARTS = [
    # accounts.sessions: the session row with its user and their permissions, one statement.
    ("session load (with user, permissions)", "django.contrib.sessions.backends.db", "SessionStore.load"),
    ("user lookup (session → user)", "django.contrib.auth", "get_user"),
    ("has_perm (permission lookups)", "django.contrib.auth.models", "PermissionsMixin.has_perm"),
    ("inventory listing (cache, 304 check)", "deployments.inventory", "_load"),
    ("form validation", "django.forms.forms", "BaseForm.full_clean"),
    ("request create (INSERT request + event)", "deployments.services", "deployment_request_create"),
    ("dispatch (PyGithub request, move + event)", "deployments.services", "deployment_request_dispatch"),
    ("  lifecycle.transition (UPDATE + event)", "deployments.lifecycle", "transition"),
    ("  PyGithub (objects, request building)", "deployments.gh.runs", "dispatch"),
    ("logging (records emitted)", "logging", "Logger.handle"),
    ("template rendering", "django.shortcuts", "render"),
    # The pods page's: the requests' stamp with the listing's cache entry (one statement, reused
    # for PODS_PAGE_READS_SECONDS); the poll's: the stamp alone.
    ("activity stamp (+ listing's cache entry)", "deployments.live", "_stamp_and_entry"),
    ("running now", "deployments.live", "running_now"),
    # The database's share of the parts above, as the worker waits for it (a round trip to the
    # server on PostgreSQL, a call into the library on SQLite): every statement (on PostgreSQL
    # psycopg sends a transaction's BEGIN before its first one), every COMMIT, and PostgreSQL's
    # health check (SELECT 1 before a request's first query, CONN_HEALTH_CHECKS; gunicorn runs
    # it, Django's test client used here does not: it skips close_old_connections).
    ("database: statements (BEGIN included)", "django.db.backends.utils", "CursorWrapper._execute"),
    ("database: COMMIT", "django.db.backends.base.base", "BaseDatabaseWrapper._commit"),
    ("database: health check", "django.db.backends.postgresql.base", "DatabaseWrapper.is_usable"),
]


class Parts:
    """Milliseconds spent in each of PARTS during one view, GitHub's HTTP time taken out."""

    def __init__(self) -> None:
        self.http = 0.0
        self.spent: dict[str, float] = {}
        self._installed = False

    def install(self) -> None:
        import importlib

        import requests

        send = requests.Session.send

        def timed_send(session, *args, **kwargs):
            started = time.perf_counter()
            try:
                return send(session, *args, **kwargs)
            finally:
                self.http += (time.perf_counter() - started) * 1000

        requests.Session.send = timed_send  # type: ignore[method-assign]
        for label, module_name, path in PARTS:
            owner = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, self._timed(label, getattr(owner, name)))

    def _timed(self, label: str, function):
        import functools

        depth = {"n": 0}

        @functools.wraps(function)
        def timed(*args, **kwargs):
            depth["n"] += 1
            started, http = time.perf_counter(), self.http
            try:
                return function(*args, **kwargs)
            finally:
                depth["n"] -= 1
                if depth["n"] == 0:  # the outermost call only
                    spent = (time.perf_counter() - started) * 1000 - (self.http - http)
                    self.spent[label] = self.spent.get(label, 0.0) + spent

        return timed

    def start(self) -> None:
        self.http = 0.0
        self.spent = {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--path", default="/")
    parser.add_argument("--deploy", action="store_true", help="profile POST /deploy/ instead of a page")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--fresh-seconds",
        default="5",
        help="INVENTORY_FRESH_SECONDS (5: production's default, most views ask GitHub nothing; "
        "0: a 304 per view)",
    )
    args = parser.parse_args(argv)

    stack = Stack(latency=args.latency)
    try:
        stack.gh.start()
        stack.env = stack._portal_env() | {
            "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1",
            "INVENTORY_FRESH_SECONDS": args.fresh_seconds,
        }
        if stack.vendor == "postgresql":
            _recreate_database(stack.database_url)
        stack.manage("migrate", "--noinput")
        stack.manage("collectstatic", "--noinput")
        stack.manage("shell", "-c", CREATE_DEPLOYER)
        stack.grow_pods(max(args.pods, 2 * args.views + 2 if args.deploy else 0))
        os.environ.update(stack.env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
        # Django is imported only now: settings are read from the environment set just above.
        import django

        django.setup()
        from django.contrib.auth.models import User
        from django.db import connection
        from django.test import Client

        from .scenarios import _edit

        parts = Parts()
        parts.install()
        client = Client()
        client.force_login(User.objects.get(username=USERNAME))
        assert client.get("/").status_code == 200  # cold: fills the cache
        client.get("/")  # the CSRF cookie
        next_pod = iter(range(10**6))

        def view():
            if not args.deploy:
                response = client.get(args.path)
                assert response.status_code == 200, response.status_code
                return response
            values = _edit(stack, next(next_pod))
            if values.pop("waf_enabled") == "true":
                values["waf_enabled"] = "on"
            values |= {"mode": "edit", "idempotency_key": str(uuid.uuid4())}
            response = client.post("/deploy/", values)
            assert response.status_code == 302, response.content[:500]
            return response

        view()  # the first of its kind warms what is per process
        walls, own, queries, spent = [], [], [], []
        for _ in range(args.views):
            statements: list[str] = []
            parts.start()

            def record(run, sql, *rest, statements=statements):
                statements.append(sql)
                return run(sql, *rest)

            with connection.execute_wrapper(record):
                started = time.perf_counter()
                response = view()
                walls.append((time.perf_counter() - started) * 1000)
            own.append(walls[-1] - parts.http)
            queries.append(len(statements))
            spent.append(parts.spent)
        profiler = cProfile.Profile()
        for _ in range(args.views):
            profiler.enable()
            view()
            profiler.disable()
        what = "POST /deploy/" if args.deploy else f"GET {args.path}"
        print(
            f"{args.views} warm {what} with {args.pods} pods on {connection.vendor}, "
            f"{args.latency * 1000:.0f} ms per GitHub call: median {statistics.median(walls):.1f} ms wall, "
            f"{statistics.median(own):.1f} ms the portal's own (wall minus GitHub HTTP), "
            f"{statistics.median(queries):.0f} SQL statements, {len(response.content):,} bytes"
        )
        for label, _, _ in PARTS:
            values = [one.get(label, 0.0) for one in spent]
            if any(values):
                print(f"  {label:45s} {statistics.median(values):7.2f} ms (median)")
        print("  statements of the last one:")
        for sql in statements:
            print("   ", sql[:160])
        for key in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
            print(out.getvalue())
    finally:
        stack.gh.stop()
        shutil.rmtree(stack.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
