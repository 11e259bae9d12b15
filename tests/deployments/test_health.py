import time

import pytest
from django.core.cache import cache, caches

from deployments import health

HEALTH_TOKEN = "monitor-token-3f9a"  # noqa: S105 (a test value)
SLOW_GITHUB = 3.0  # seconds the emulator sleeps on the scripted route
# Seconds: /health answered from the stored report, not after the slow GitHub above (loose enough
# for a loaded 2-core CI machine; whether a request waited on another worker is told by its sleeps).
FAST = 2.0


@pytest.fixture
def monitor(client, settings):
    """A monitoring system presenting the HEALTH_TOKEN."""
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {HEALTH_TOKEN}"
    return client


def timed_get(client, path="/health", **kwargs):
    start = time.monotonic()
    response = client.get(path, **kwargs)
    return response, time.monotonic() - start


def poll_until(client, predicate, *, seconds=SLOW_GITHUB + 10):
    """GET /health until ``predicate(response)``; every answer must come at once."""
    deadline = time.monotonic() + seconds
    while True:
        response, elapsed = timed_get(client)
        assert elapsed < FAST
        if predicate(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


# --- the report, as an authorised caller sees it ---------------------------------------------------


def test_health_is_200_with_seed_shape_when_all_is_well(gh, viewer_client):
    response = viewer_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "healthy",
        "github": "connected",
        "repo": "demo/pods",
        "auth": "classic_token",
        "scopes": {"repo": True, "workflow": True},
        "permissions": "not applicable",
        "workflow": {"file": "deploy-pod.yml", "found": True, "state": "active"},
        "rate_limit": {
            "remaining": body["rate_limit"]["remaining"],
            "limit": 5000,
            "reset_at": gh.rate_limit["rate"]["reset"],
        },
        "database": "ok",
        "checked_at": body["checked_at"],
    }
    assert body["rate_limit"]["remaining"] > 4990
    assert body["checked_at"].endswith("+00:00")


def test_health_reports_missing_workflow_scope_from_oauth_header(gh, viewer_client):
    gh.scopes = "read:org"
    response = viewer_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["scopes"] == {"repo": False, "workflow": False}
    assert "'repo' scope" in body["reason"]


def test_fine_grained_token_permissions_cannot_be_verified(gh, viewer_client, settings):
    # GitHub sends a fine-grained token no X-OAuth-Scopes, and no API tells its permissions.
    gh.token = settings.GH_TOKEN = "github_pat_11AAAAAAA0healthcheckfinegrained"
    response = viewer_client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "healthy"
    assert body["auth"] == "fine_grained_token"
    assert body["scopes"] == body["permissions"] == "cannot be verified"


def test_a_token_without_scopes_header_is_not_called_fine_grained(gh, viewer_client):
    gh.scopes = None  # e.g. a token of another kind in GH_TOKEN: no X-OAuth-Scopes
    body = viewer_client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["auth"] == "token"
    assert body["scopes"] == body["permissions"] == "cannot be verified"


def test_bad_token_is_unhealthy_with_reason(gh, viewer_client, settings):
    settings.GH_TOKEN = "wrong"
    response = viewer_client.get("/health")
    assert response.status_code == 503
    assert response.json()["github"] == "error"
    assert "401 Bad credentials" in response.json()["reason"]
    assert "wrong" not in response.content.decode()


def test_missing_workflow_is_unhealthy(gh, viewer_client):
    gh.workflow_state = None
    response = viewer_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["workflow"] == {"file": "deploy-pod.yml", "found": False, "state": None}
    assert body["reason"] == "Deploy workflow 'deploy-pod.yml' not found in demo/pods."


def test_disabled_workflow_is_unhealthy(gh, viewer_client):
    gh.workflow_state = "disabled_manually"
    response = viewer_client.get("/health")
    assert response.status_code == 503
    assert response.json()["reason"] == "Deploy workflow 'deploy-pod.yml' is disabled_manually."


def test_rate_limit_exhausted_is_unhealthy_with_quota(gh, viewer_client):
    gh.set_rate_limit(remaining=0, reset=2000000000)
    response = viewer_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["github"] == "rate_limited"
    assert body["rate_limit"] == {"remaining": 0, "limit": 5000, "reset_at": 2000000000}


def test_server_without_rate_limiting_is_healthy_and_says_so(gh, viewer_client):
    gh.rate_limiting_enabled = False  # GHES's default: GET /rate_limit answers 404
    response = viewer_client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["rate_limit"] == {"enabled": False, "remaining": None, "limit": None, "reset_at": None}
    assert [r.status for r in gh.requests if r.path == "/rate_limit"] == [404]


def test_server_without_rate_limiting_is_healthy_to_anonymous_callers(gh, client):
    gh.rate_limiting_enabled = False
    response = client.get("/health")
    assert (response.status_code, response.json()) == (200, {"status": "healthy"})


def test_other_404_on_rate_limit_is_unhealthy_and_not_a_missing_repository(gh, viewer_client):
    gh.add_fault("GET", r"^/rate_limit$", status=404, body={"message": "Not Found"})
    response = viewer_client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["github"] == "error"
    assert body["reason"].startswith("GitHub answered 404 to GET /rate_limit (Not Found).")
    assert "GITHUB_API_URL" in body["reason"]
    assert "demo/pods" not in body["reason"]


def test_repository_404_says_the_credentials_may_not_see_it(gh, viewer_client, settings):
    settings.GH_REPO = "demo/private"
    response = viewer_client.get("/health")
    assert response.status_code == 503
    assert response.json()["reason"].startswith(
        "Repository demo/private not found, or the portal's credentials cannot see it"
    )


def test_unreachable_github_is_unhealthy(gh, viewer_client, settings):
    settings.GITHUB_API_URL = "http://127.0.0.1:9"
    response = viewer_client.get("/health")
    assert response.status_code == 503
    assert response.json()["github"] == "unreachable"
    assert "Could not reach GitHub" in response.json()["reason"]


# --- who sees what -----------------------------------------------------------------------------------


def test_anonymous_caller_sees_healthy_status_only(gh, client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_anonymous_caller_sees_unhealthy_status_only(gh, client):
    gh.workflow_state = "disabled_manually"
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy"}


def test_health_token_shows_the_details(gh, monitor):
    response = monitor.get("/health")
    assert response.status_code == 200
    assert response.json()["workflow"] == {"file": "deploy-pod.yml", "found": True, "state": "active"}


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {HEALTH_TOKEN}x",
        f"Bearer {HEALTH_TOKEN[:-1]}",
        "Bearer",
        f"Basic {HEALTH_TOKEN}",
        HEALTH_TOKEN,
    ],
)
def test_wrong_health_token_shows_the_status_only(gh, client, settings, authorization):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    response = client.get("/health", HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_empty_health_token_setting_accepts_no_bearer(gh, client, settings):
    settings.HEALTH_TOKEN = ""
    response = client.get("/health", HTTP_AUTHORIZATION="Bearer ")
    assert response.json() == {"status": "healthy"}


@pytest.mark.parametrize("path", ["/health", "/health/live"])
def test_health_needs_no_login(gh, client, path):
    assert client.get(path).status_code in (200, 503)


def test_liveness_touches_neither_github_nor_database(db, client, django_assert_num_queries, fakegithub):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert fakegithub.count() == 0


# --- probing GitHub in the background ------------------------------------------------------------------


def test_100_rapid_requests_cost_one_probe(gh, client):
    gh.clear_requests()
    statuses = {client.get("/health").status_code for _ in range(100)}
    assert statuses == {200}
    assert gh.count("GET", r"^/repos/demo/pods$") == 1
    assert gh.count() == 3  # repository, workflow, rate limit: one probe


def test_slow_github_does_not_slow_health(gh, viewer_client, settings):
    first = viewer_client.get("/health")
    assert first.json()["status"] == "healthy"
    gh.workflow_state = "disabled_manually"
    gh.add_fault("GET", r"^/repos/demo/pods$", status=None, delay=SLOW_GITHUB)
    settings.HEALTH_CACHE_SECONDS = 0  # the report is now stale

    stale, elapsed = timed_get(viewer_client)

    assert elapsed < FAST
    assert stale.status_code == 200
    assert stale.json() == first.json()
    settings.HEALTH_CACHE_SECONDS = 30  # the refresh under way is the last one
    refreshed = poll_until(viewer_client, lambda r: r.status_code == 503)
    assert refreshed.json()["reason"] == "Deploy workflow 'deploy-pod.yml' is disabled_manually."
    assert refreshed.json()["checked_at"] >= first.json()["checked_at"]
    assert gh.count("GET", r"^/repos/demo/pods$") == 2


def test_slow_github_costs_the_first_call_at_most_a_second(gh, viewer_client):
    gh.add_fault("GET", r"/rate_limit", status=None, delay=SLOW_GITHUB)

    response, elapsed = timed_get(viewer_client)

    assert elapsed < health.FIRST_PROBE_WAIT_SECONDS + FAST
    assert response.status_code == 503
    assert response.json()["reason"] == "GitHub probe still running."
    assert poll_until(viewer_client, lambda r: r.status_code == 200).json()["github"] == "connected"
    assert gh.count("GET", r"/rate_limit") == 1


def test_slow_github_gives_anonymous_callers_the_status_at_once(gh, client, settings):
    client.get("/health")
    gh.add_fault("GET", r"/rate_limit", status=None, delay=SLOW_GITHUB)
    settings.HEALTH_CACHE_SECONDS = 0

    response, elapsed = timed_get(client)

    assert elapsed < FAST
    assert (response.status_code, response.json()) == (200, {"status": "healthy"})


def test_probe_is_repeated_after_the_cache_period(gh, client, settings):
    client.get("/health")
    settings.HEALTH_CACHE_SECONDS = 0
    client.get("/health")
    settings.HEALTH_CACHE_SECONDS = 30
    assert health.wait_for_probe(10)
    client.get("/health")
    assert gh.count("GET", r"^/repos/demo/pods$") == 2


def test_no_probe_while_another_worker_holds_the_lock(gh, client, settings):
    client.get("/health")
    settings.HEALTH_CACHE_SECONDS = 0
    cache.set(health.PROBE_LOCK_KEY, "another-worker", timeout=60)

    response = client.get("/health")

    assert response.json() == {"status": "healthy"}
    assert health.wait_for_probe(0)
    assert gh.count("GET", r"^/repos/demo/pods$") == 1


def another_workers_lock(started_ago: float) -> None:
    lock = {"token": "another-worker", "started": time.time() - started_ago}
    cache.set(health.PROBE_LOCK_KEY, lock, timeout=60)


def test_no_report_while_another_worker_probes_for_over_a_second_answers_at_once(
    gh, viewer_client, monkeypatch
):
    another_workers_lock(started_ago=health.FIRST_PROBE_WAIT_SECONDS)
    sleeps: list[float] = []
    monkeypatch.setattr(health.time, "sleep", sleeps.append)

    response, elapsed = timed_get(viewer_client)

    assert sleeps == []  # it did not wait for the other worker's report
    assert elapsed < FAST
    assert response.status_code == 503
    assert response.json()["reason"] == "GitHub probe still running."
    assert gh.count() == 0


def test_no_report_while_another_worker_probes_waits_at_most_a_second(gh, viewer_client):
    another_workers_lock(started_ago=0)

    response, elapsed = timed_get(viewer_client)

    assert elapsed < health.FIRST_PROBE_WAIT_SECONDS + FAST
    assert response.status_code == 503
    assert response.json()["reason"] == "GitHub probe still running."
    assert gh.count() == 0


def test_first_report_of_another_worker_answers_the_callers_waiting_for_it(gh, client, monkeypatch):
    """A new deployment's first probe runs in one worker while the other worker gets requests.

    They wait for its report instead of answering 503 (16 of the bench's 1,000 did).
    """
    client.get("/health")
    report = cache.get(health.REPORT_KEY)["report"]
    cache.delete(health.REPORT_KEY)
    another_workers_lock(started_ago=0)
    gh.clear_requests()
    backend = caches["default"]
    real_get = backend.get
    looked = []

    def get_while_the_other_worker_probes(key, *args, **kwargs):
        if key == health.REPORT_KEY:
            looked.append(key)
            if len(looked) == 3:  # it found none twice: the other worker's probe ends now
                cache.set(health.REPORT_KEY, {"report": report, "checked_at": time.time()}, timeout=None)
                cache.delete(health.PROBE_LOCK_KEY)
        return real_get(key, *args, **kwargs)

    monkeypatch.setattr(backend, "get", get_while_the_other_worker_probes)

    response, elapsed = timed_get(client)

    assert (response.status_code, response.json()) == (200, {"status": "healthy"})
    assert elapsed < FAST
    assert gh.count() == 0


def test_report_published_just_before_taking_the_lock_is_not_probed_again(gh, client, monkeypatch):
    """Another worker's probe ends between this request's read of the report and its taking the lock.

    That worker published its report, then released the lock: the lock is free, but GitHub was
    probed this period already (the bench's storm saw two probes in 10 s this way).
    """
    client.get("/health")
    report = cache.get(health.REPORT_KEY)["report"]
    cache.delete(health.REPORT_KEY)  # a new deployment: no report yet, the other worker probing
    gh.clear_requests()
    backend = caches["default"]
    real_add = backend.add

    def add_after_the_other_worker_published(key, *args, **kwargs):
        if "probe-lock" in key and cache.get(health.REPORT_KEY) is None:
            cache.set(health.REPORT_KEY, {"report": report, "checked_at": time.time()}, timeout=None)
        return real_add(key, *args, **kwargs)

    monkeypatch.setattr(backend, "add", add_after_the_other_worker_published)

    response = client.get("/health")

    assert (response.status_code, response.json()) == (200, {"status": "healthy"})
    assert gh.count() == 0
    assert health.wait_for_probe(0)
    assert cache.get(health.PROBE_LOCK_KEY) is None  # released for the next period's probe
