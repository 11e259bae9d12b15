"""The system under test: the emulator in-process, the portal under gunicorn, a deployer login."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from deployments import podspec
from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import deploy_pod

ROOT = Path(__file__).resolve().parent.parent
REPO = "demo/pods"
TOKEN = "bench-token"
USERNAME = "bench-deployer"
PASSWORD = "bench-Pass-7193"  # a throwaway user in a throwaway database
ENVIRONMENTS = ("prod", "staging")

APPROVER, APPROVER_PASSWORD = "bench-approver", "bench-Approve-5821"  # noqa: S105
# The bench's users, made in one `manage.py shell` (a Django start each costs a second or two).
CREATE_DEPLOYER = f"""
from django.contrib.auth.models import Group, User
user = User.objects.create_user({USERNAME!r}, password={PASSWORD!r})
user.groups.add(Group.objects.get(name="Deployers"))
approver = User.objects.create_user({APPROVER!r}, password={APPROVER_PASSWORD!r})
approver.groups.add(Group.objects.get(name="Deployers"), Group.objects.get(name="Approvers"))
"""
# Webhooks signed as GitHub signs them, from the start: the scenarios that deliver a run's
# webhooks (review, live) need no restart of the portal to set the secret.
WEBHOOK_SECRET = "bench-webhook-secret"  # noqa: S105 (a throwaway secret of a throwaway portal)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pod_name(index: int) -> tuple[str, str]:
    """Pod number ``index``: customers of two environments each (c0000/prod, c0000/staging, ...)."""
    return f"c{index // 2:04d}", ENVIRONMENTS[index % 2]


def spec_text(index: int, *, instance_type: str = "t3.medium", waf_enabled: bool = False) -> str:
    customer, environment = pod_name(index)
    spec = podspec.PodSpec(customer, environment, f"{customer}-{environment}-web", instance_type, waf_enabled)
    return podspec.render(spec)


class Stack:
    """Emulator + migrated SQLite database + gunicorn. Use as a context manager."""

    def __init__(self, *, latency: float, workers: int = 2, database_url: str | None = None):
        self.latency = latency
        self.workers = workers
        self.tmp = Path(tempfile.mkdtemp(prefix="portal-bench-"))
        self.db_path = self.tmp / "portal.sqlite3"
        # BENCH_DATABASE_URL: a PostgreSQL URL whose database is dropped and made anew (e.g. under
        # scripts/test_postgres.sh); unset, a throw-away SQLite file.
        if database_url is None:
            database_url = os.environ.get("BENCH_DATABASE_URL", "")
        self.database_url = database_url
        self.vendor = "postgresql" if database_url.startswith(("postgres://", "postgresql://")) else "sqlite"
        self.gh = FakeGitHub(
            repo=REPO, token=TOKEN, latency=latency, workflow_effect=deploy_pod, webhook_secret=WEBHOOK_SECRET
        )
        self.pods = 0
        self.port = 0
        self.gunicorn: subprocess.Popen | None = None

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Stack:
        try:
            self.gh.start()
            self.env = self._portal_env()
            if self.vendor == "postgresql":
                _recreate_database(self.database_url)
            # DEBUG=false serves static files through whitenoise's manifest: it must exist.
            # Collected while the database is migrated (it does not touch the database).
            static = self.manage_start("collectstatic", "--noinput")
            try:
                self.manage("migrate", "--noinput")
                self.manage("shell", "-c", CREATE_DEPLOYER)
            finally:
                self.manage_wait(static)
            self.start_gunicorn()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop_gunicorn()
        self.gh.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _portal_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GITHUB_", "GH_"))}
        env.update(
            DJANGO_DEBUG="false",
            DJANGO_SECRET_KEY="bench-only-secret-key-not-used-anywhere-else-0123456789",
            DJANGO_ALLOWED_HOSTS="127.0.0.1",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_SESSION_COOKIE_SECURE="false",
            DJANGO_CSRF_COOKIE_SECURE="false",
            DATABASE_URL=self.database_url or f"sqlite:///{self.db_path}",
            GH_TOKEN=TOKEN,
            GH_REPO=REPO,
            GITHUB_API_URL=self.gh.api_url,
            GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
            LOG_LEVEL="WARNING",
            # Every pods-page view revalidates with GitHub, so the inventory rows measure the
            # conditional-request path; the throughput scenario also runs the production default.
            INVENTORY_FRESH_SECONDS="0",
        )
        return env

    def manage(self, *args: str) -> None:
        self.manage_wait(self.manage_start(*args))

    def manage_start(self, *args: str) -> subprocess.Popen:
        """``manage.py`` in the background; ``manage_wait`` checks how it ended."""
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    @staticmethod
    def manage_wait(process: subprocess.Popen) -> None:
        _, stderr = process.communicate()
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, process.args, stderr=stderr)

    def start_gunicorn(self) -> None:
        self.port = free_port()
        log = open(self.tmp / "gunicorn.log", "ab")  # noqa: SIM115 (closed with the process)
        self.gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi", "-w", str(self.workers)]
            + ["-b", f"127.0.0.1:{self.port}", "--timeout", "120"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 120  # a machine busy with other test runs starts slowly
        while time.monotonic() < deadline:
            if self.gunicorn.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self._log_tail()}")
            try:
                answer = requests.get(self.url("/health/live"), timeout=5)
                if answer.status_code == 200 and len(self.worker_pids()) == self.workers:
                    return
            except requests.RequestException:  # not listening yet, or a busy machine's slow start
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer /health/live within 120 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.tmp / "gunicorn.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop_gunicorn(self) -> None:
        if self.gunicorn is None:
            return
        self.gunicorn.terminate()
        try:
            self.gunicorn.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.gunicorn.kill()
            self.gunicorn.wait()
        self.gunicorn = None

    def restart_gunicorn(self) -> None:
        """New workers with ``self.env`` (on a new port): the old server is told to stop and
        reaped once the new one answers, so its graceful stop overlaps the new one's start."""
        old, self.gunicorn = self.gunicorn, None
        if old is not None:
            old.terminate()
        try:
            self.start_gunicorn()
        finally:
            if old is not None:
                try:
                    old.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    old.kill()
                    old.wait()

    # --- helpers ----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def worker_pids(self) -> list[int]:
        if self.gunicorn is None:
            return []
        master = self.gunicorn.pid
        children = Path(f"/proc/{master}/task/{master}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def worker_memory(self) -> list[dict[str, int]]:
        """VmHWM (peak RSS) and VmRSS of each worker, in KiB."""
        found = []
        for pid in self.worker_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            values = dict(re.findall(r"^(VmHWM|VmRSS):\s+(\d+) kB", status, re.M))
            found.append({"pid": pid, "hwm_kib": int(values["VmHWM"]), "rss_kib": int(values["VmRSS"])})
        return found

    def db(self) -> sqlite3.Connection | _Postgres:
        """A connection to the portal's database (``?`` placeholders on either); commits on exit."""
        if self.vendor == "postgresql":
            return _Postgres(self.database_url)
        return sqlite3.connect(self.db_path, timeout=20)

    def clear_portal_cache(self, like: str = "%") -> None:
        with self.db() as conn:
            conn.execute("DELETE FROM portal_cache WHERE cache_key LIKE ?", (like,))

    def grow_pods(self, total: int) -> None:
        """Make the repository hold ``total`` pods (pods only ever get added), in one commit."""
        if total <= self.pods:
            return
        staging = self.tmp / "specs"
        shutil.rmtree(staging, ignore_errors=True)
        for index in range(self.pods, total):
            customer, environment = pod_name(index)
            path = staging / customer / environment / "spec.yml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(spec_text(index))
        self.gh.load_dir(staging, under="pods")
        self.pods = total

    def prime_blob_cache(self, start: int, end: int) -> None:
        """Put the spec blobs of pods ``start``..``end`` (as ``grow_pods`` wrote them) in the
        portal's blob cache, as an earlier listing would have: a scale row measures warm views,
        and a cold listing of 10,000 pods would spend the emulated token's hourly quota."""
        from fakegithub._git import blob_sha

        entries = {}
        for index in range(start, end):
            text = spec_text(index)
            entries[f"blob:{blob_sha(text.encode())}"] = text
        path = self.tmp / "blobs.json"
        path.write_text(json.dumps(entries))
        self.manage(
            "shell",
            "-c",
            "import json, pathlib\nfrom django.core.cache import cache\nfrom django.db import transaction\n"
            f"entries = json.loads(pathlib.Path({str(path)!r}).read_text())\n"
            "with transaction.atomic(): cache.set_many(entries, timeout=None)",
        )

    def manage_output(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def login(self) -> requests.Session:
        """A deployer's session: GET the login form for the CSRF cookie, POST the credentials."""
        session = requests.Session()
        session.get(self.url("/accounts/login/"), timeout=10).raise_for_status()
        answer = session.post(
            self.url("/accounts/login/"),
            data={
                "username": USERNAME,
                "password": PASSWORD,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            allow_redirects=False,
            timeout=10,
        )
        if answer.status_code != 302 or "sessionid" not in session.cookies:
            raise RuntimeError(f"login failed: {answer.status_code}")
        return session


class _Postgres:
    """The few sqlite3.Connection methods the bench uses, on PostgreSQL (psycopg)."""

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url)

    def execute(self, query: str, params: tuple = ()):
        return self.conn.execute(query.replace("?", "%s"), params)

    def __enter__(self) -> _Postgres:
        return self

    def __exit__(self, *exc) -> None:
        with self.conn:  # commits (or rolls back on an error) and closes
            pass


def _recreate_database(url: str) -> None:
    """Drop and create the database ``url`` names (a bench's throw-away database)."""
    import psycopg
    from psycopg import sql

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
