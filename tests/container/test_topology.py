"""Two web containers behind deploy/nginx/portal.conf, on one PostgreSQL: what holds across instances.

nginx (Debian's package) runs the shipped server block with both containers in its upstream. The
per-pod lock, the form's idempotency key and webhook de-duplication live in PostgreSQL, and the
cache (the /health report, the pod listing, GitHub App tokens) is Django's database cache, so every
instance sees the same state; these tests spread the requests over both instances and count.
"""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.client import HOST, Browser
from tests.container.conftest import (
    OPERATOR_PASSWORD,
    free_port,
    podman,
    report,
    sql,
    wait_for,
)  # fmt: skip
from tests.production.test_slow_clients import nginx_binary, nginx_main_conf

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "portal.conf"


@dataclass
class Nginx:
    port: int
    process: subprocess.Popen
    site: Path
    upstreams: list[int]

    def drain(self, down: set[int]) -> None:
        """Mark these instances ``down`` and reload: new requests go to the others, requests in
        flight finish (nginx's graceful reload: the old worker ends once its requests are done)."""
        self.site.write_text(render_site(listen=f"{HOST}:{self.port}", upstreams=self.upstreams, down=down))
        old_workers = set(children(self.process.pid))
        self.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: not old_workers & set(children(self.process.pid)) and children(self.process.pid),
            what="nginx's reload",
        )


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def render_site(*, listen: str, upstreams: list[int], down: set[int] = frozenset()) -> str:
    """The shipped server block with one ``server`` line per web container."""
    site = NGINX_CONF.read_text()
    servers = "\n    ".join(
        f"server {HOST}:{port} {'down' if port in down else 'max_fails=1 fail_timeout=2s'};"
        for port in upstreams
    )
    assert "server @UPSTREAM@;" in site
    site = site.replace("server @UPSTREAM@;", servers)
    site = site.replace("@UPSTREAM@", f"{HOST}:{upstreams[0]}")  # left only in the comments
    site = site.replace("@LISTEN@", listen).replace("@SERVER_NAME@", HOST)
    assert not re.search(r"@[A-Z_]+@", site)
    return site


@pytest.fixture(scope="module")
def nginx(portal, tmp_path_factory) -> Iterator[Nginx]:
    binary = nginx_binary()
    workdir = tmp_path_factory.mktemp("nginx")
    port = free_port()
    site = workdir / "portal.conf"
    upstreams = [web.port for web in portal.webs]
    site.write_text(render_site(listen=f"{HOST}:{port}", upstreams=upstreams))
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_main_conf(workdir, site))
    command = [
        binary,
        "-p",
        str(workdir),
        "-e",
        str(workdir / "error.log"),
        "-c",
        str(conf),
        "-g",
        "daemon off;",
    ]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: Browser(port).get("/health/live", timeout=2).status == 200, what="nginx")
        yield Nginx(port, process, site, upstreams)
    finally:
        process.terminate()
        process.wait(timeout=30)


def access_log_hits(name: str, marker: str) -> int:
    """Requests whose path contains ``marker`` in the container's gunicorn access log."""
    logs = podman("logs", name)
    return (logs.stdout + logs.stderr).count(marker)


def test_nginx_spreads_requests_over_both_instances(portal, nginx):
    marker = uuid.uuid4().hex
    browser = Browser(nginx.port)
    statuses = [browser.get(f"/health/live?spread={marker}").status for _ in range(20)]
    assert statuses == [200] * 20
    # A response can reach the client before its access-log line reaches podman's log: wait
    # for the lines (bounded), then count them.
    wait_for(
        lambda: sum(access_log_hits(web.name, marker) for web in portal.webs) >= 20,
        what="the 20 access-log lines",
        limit=10,
    )
    hits = [access_log_hits(web.name, marker) for web in portal.webs]
    assert sum(hits) == 20 and min(hits) > 0, hits


def _slow_headers(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(f"GET /health/live HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())  # never finished
    return sock


def _slow_body(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        "X-GitHub-Event: ping\r\nContent-Length: 1000\r\n\r\n{"
    )
    sock.sendall(head.encode())  # one byte of the promised thousand
    return sock


def test_slow_headers_and_slow_bodies_do_not_stall_the_instances_behind_nginx(portal, nginx):
    # Four times the threads of both containers together (2 x 2 workers x 4 threads).
    sockets = [_slow_headers(nginx.port) for _ in range(32)] + [_slow_body(nginx.port) for _ in range(32)]
    try:
        timings = []
        for _ in range(10):
            start = time.monotonic()
            status = Browser(nginx.port).get("/health/live", timeout=2).status
            timings.append((status, time.monotonic() - start))
    finally:
        for sock in sockets:
            sock.close()
    slowest = max(elapsed for _, elapsed in timings)
    report(
        "64 slow clients (32 slow headers, 32 slow bodies) on nginx: "
        f"10/10 /health/live, slowest {slowest * 1000:.0f} ms"
    )
    assert [status for status, _ in timings] == [200] * 10
    assert slowest < 1.0


def test_concurrent_deploys_over_both_instances_dispatch_once(portal, emulator, postgres):
    browser = Browser(portal.webs[0].port)
    browser.login("operator", OPERATOR_PASSWORD)  # the session is in PostgreSQL: valid on both
    shared_key = str(uuid.uuid4())
    keys = [shared_key] * 4 + [None] * 4  # a double-submitted form, and four other operators' forms
    answers: list = [None] * len(keys)
    barrier = threading.Barrier(len(keys), timeout=30)
    before = len(emulator.requests)

    def post(i: int) -> None:
        client = Browser(portal.webs[i % 2].port, dict(browser.cookies))
        barrier.wait()
        answers[i] = client.deploy("acme", "staging", "acme-staging-web", "t3.medium", key=keys[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = Counter(answer.status for answer in answers)
    dispatched = [
        r for r in emulator.requests[before:] if r.method == "POST" and r.path.endswith("/dispatches")
    ]
    rows = sql(
        postgres,
        "select count(*) from deployments_deploymentrequest where customer = %s and environment = %s",
        "acme",
        "staging",
    )
    report(
        f"8 concurrent deploys of one pod over 2 instances: {dict(statuses)} -> {len(dispatched)} dispatch"
    )
    assert len(dispatched) == 1
    assert rows[0][0] == 1
    # The double-submitted form lands on the one request; the others are told the pod is locked.
    assert set(statuses) <= {302, 409}, [(a.status, a.text[:300]) for a in answers]
    assert statuses[302] >= 1 and statuses[409] >= 4


def test_duplicate_webhook_deliveries_over_both_instances_are_processed_once(
    portal, emulator, nginx, postgres
):
    browser = Browser(portal.webs[1].port)
    browser.login("operator", OPERATOR_PASSWORD)
    answer = browser.deploy("globex", "staging", "globex-staging-app", "t3.large")
    assert answer.status == 302, answer.text[:500]
    [run] = [run for run in emulator.runs if run["inputs"].get("customer") == "globex"]
    emulator.complete_run(run["id"], "success")
    [delivery] = [
        d for d in emulator.deliveries
        if d.action == "completed" and d.payload["workflow_run"]["id"] == run["id"]
    ]  # fmt: skip
    ports = [nginx.port, portal.webs[0].port, portal.webs[1].port] * 2
    results: list = [None] * len(ports)
    barrier = threading.Barrier(len(ports), timeout=30)

    def send(i: int) -> None:
        headers = dict(delivery.headers)
        barrier.wait()
        results[i] = Browser(ports[i]).request(
            "POST", "/webhooks/github", body=delivery.body, headers=headers
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(ports))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    messages = Counter(json.loads(r.text)["message"] for r in results)
    delivery_id = delivery.headers["X-GitHub-Delivery"]
    report(f"6 copies of one signed delivery over nginx and both instances: {dict(messages)}")
    assert [r.status for r in results] == [200] * 6
    assert sum("Request updated." in r.text for r in results) == 1
    assert sum("Delivery already processed." in r.text for r in results) == 5
    assert sql(
        postgres, "select count(*) from deployments_webhookdelivery where delivery_id = %s", delivery_id
    ) == [(1,)]
    events = sql(
        postgres,
        "select count(*) from deployments_deploymentevent where data->>'delivery' = %s",
        delivery_id,
    )
    assert events[0][0] == 1
    status = sql(
        postgres,
        "select status from deployments_deploymentrequest where customer = %s and environment = %s",
        "globex",
        "staging",
    )
    assert status == [("completed",)]


def test_the_cache_is_shared_through_postgresql(portal, postgres):
    for web in portal.webs:
        assert Browser(web.port).get("/health").status == 200
    keys = [key for (key,) in sql(postgres, "select cache_key from portal_cache")]
    # One /health report for every instance (Django's DatabaseCache prefixes keys with ":1:").
    assert [key for key in keys if "health" in key], keys


def test_rolling_restart_under_load_loses_no_request(portal, nginx):
    browser = Browser(nginx.port)
    browser.login("operator", OPERATOR_PASSWORD)
    stop = threading.Event()
    counts: Counter = Counter()
    failures: list = []
    lock = threading.Lock()

    def load() -> None:
        client = Browser(nginx.port, dict(browser.cookies))
        while not stop.is_set():
            try:
                status = client.get("/requests/", timeout=10).status
            except (OSError, http.client.HTTPException) as exc:
                status = repr(exc)
            with lock:
                counts["sent"] += 1
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    try:
        for index, web in enumerate(list(portal.webs)):
            # One instance at a time: out of nginx's upstream, stopped (SIGTERM: gunicorn finishes
            # what it has), replaced by a new container, healthy, back in, serving, then the next.
            phases = [time.monotonic()]
            nginx.drain(down={web.port})
            phases.append(time.monotonic())
            podman("stop", "--time", "30", web.name)
            podman("rm", web.name)
            phases.append(time.monotonic())
            portal.webs[index] = portal.start_web(web.name, web.port)
            phases.append(time.monotonic())
            nginx.drain(down=set())
            wait_for(lambda n=web.name: access_log_hits(n, "GET /requests/") > 5,
                     what=f"{web.name} serving the load again")  # fmt: skip
            phases.append(time.monotonic())
            steps = ("drained", "stopped", "healthy", "serving")
            timings = ", ".join(
                f"{step} {b - a:.1f} s" for step, a, b in zip(steps, phases[:-1], phases[1:], strict=True)
            )
            report(f"rolling restart of {web.name}: {timings}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    elapsed = time.monotonic() - start
    report(
        f"rolling restart of 2 web containers in {elapsed:.1f} s under 2 looping page views: "
        f"{counts['sent']} requests sent, {len(failures)} lost"
    )
    assert counts["sent"] > 50
    assert failures == []
