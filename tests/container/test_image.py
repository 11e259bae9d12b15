"""The image as it runs in production: the release step, web containers, the sync loop."""

from __future__ import annotations

import threading
import time

import pytest

from tests.container.client import Browser, static_paths
from tests.container.conftest import (
    GRACEFUL_TIMEOUT,
    OPERATOR_PASSWORD,
    container_name,
    free_port,
    podman,
    report,
    sql,
    wait_for,
)  # fmt: skip

pytestmark = pytest.mark.container


def test_release_step_migrated_postgresql_and_created_the_operator(portal, postgres):
    assert sql(postgres, "select count(*) from django_migrations where app = 'deployments'")[0][0] > 0
    assert sql(postgres, "select username, is_superuser from auth_user") == [("operator", True)]


def test_web_containers_run_as_non_root_on_a_read_only_root_filesystem(portal):
    for web in portal.webs:
        assert podman("exec", web.name, "id", "-u").stdout.strip() == "10001"
        assert (
            podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", web.name).stdout.strip() == "true"
        )
        # The code, the root filesystem and even the SQLite fallback directory are not writable...
        for path in ("/app/portal/settings.py", "/app/new-file", "/data/portal.sqlite3", "/etc/passwd"):
            written = podman("exec", web.name, "sh", "-c", f": >> {path}", check=False)
            assert written.returncode != 0, path
            assert "Read-only file system" in written.stderr or "Permission denied" in written.stderr
        # ...only the tmpfs is (gunicorn's worker heartbeat files live there).
        assert podman("exec", web.name, "sh", "-c", ": > /tmp/probe && echo ok").stdout.strip() == "ok"
        gunicorn = podman("exec", web.name, "sh", "-c", "ps -o user= -p 1 2>/dev/null || cat /proc/1/status")
        assert "Uid:\t10001" in gunicorn.stdout or gunicorn.stdout.strip() == "portal"


def test_healthcheck_reports_healthy_and_health_answers_200(portal):
    browser = Browser(portal.webs[0].port)
    for web in portal.webs:
        # podman runs the image's HEALTHCHECK command on demand (no systemd timer here).
        assert podman("healthcheck", "run", web.name, check=False).returncode == 0
        state = podman("inspect", "--format", "{{.State.Health.Status}}", web.name).stdout.strip()
        assert state == "healthy"
        ready = browser.get("/health", port=web.port)
        assert ready.status == 200, ready.text
        assert ready.text == '{"status": "healthy"}'


def test_static_files_are_served_with_far_future_cache_headers(portal):
    browser = Browser(portal.webs[0].port)
    page = browser.get("/accounts/login/")
    assert page.status == 200
    paths = static_paths(page.text)
    assert paths, page.text[:1000]
    for path in paths:
        answer = browser.get(path)
        assert answer.status == 200, path
        cache_control = answer.headers["Cache-Control"]
        assert "max-age=315360000" in cache_control and "immutable" in cache_control, (path, cache_control)


def test_the_sync_loop_runs_as_a_one_off_container(portal):
    synced = portal.manage("sync_runs")
    assert synced.stdout.startswith("checked "), synced.stdout + synced.stderr


def test_sigterm_finishes_the_in_flight_request_then_stops_within_the_graceful_timeout(portal, emulator):
    port = free_port()
    web = portal.start_web(container_name("web-sigterm"), port)
    browser = Browser(port)
    browser.login("operator", OPERATOR_PASSWORD)
    answers = []
    before = len(emulator.requests)
    emulator.latency = 2.0  # every GitHub call of the deploy now takes 2 s
    try:
        posting = threading.Thread(
            target=lambda: answers.append(browser.deploy("acme", "prod", "acme-prod-web", "t3.large"))
        )
        posting.start()
        # The deploy is in flight once the portal has started talking to GitHub.
        wait_for(lambda: len(emulator.requests) > before, what="the deploy reaching GitHub")
        start = time.monotonic()
        podman("kill", "--signal", "TERM", web.name)
        exit_code = podman("wait", web.name, timeout=GRACEFUL_TIMEOUT + 15).stdout.strip()
        stopped = time.monotonic() - start
        posting.join(timeout=30)
    finally:
        emulator.latency = 0.0
    report(
        "SIGTERM with a deploy in flight: request answered, "
        f"gunicorn exited {exit_code} after {stopped:.1f} s"
    )
    assert [a.status for a in answers] == [302], [a.text[:500] for a in answers]
    assert answers[0].headers["Location"].startswith("/requests/")
    assert exit_code == "0"
    assert stopped < GRACEFUL_TIMEOUT
    dispatched = [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/dispatches")]
    assert [r.json["inputs"]["customer"] for r in dispatched if r.json] == ["acme"]
