import pytest

from deployments import health


def test_health_is_200_with_seed_shape_when_all_is_well(gh, client):
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "status": "healthy",
        "github": "connected",
        "repo": "demo/pods",
        "auth": "classic_token",
        "scopes": {"repo": True, "workflow": True},
        "workflow": {"file": "deploy-pod.yml", "found": True, "state": "active"},
        "rate_limit": {
            "remaining": body["rate_limit"]["remaining"],
            "limit": 5000,
            "reset_at": gh.rate_limit["rate"]["reset"],
        },
        "database": "ok",
    }
    assert body["rate_limit"]["remaining"] > 4990


def test_health_reports_missing_workflow_scope_from_oauth_header(gh, client):
    gh.scopes = "read:org"
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["scopes"] == {"repo": False, "workflow": False}
    assert "'repo' scope" in body["reason"]


def test_fine_grained_token_scopes_are_unknown_not_false(gh, client):
    gh.scopes = None
    body = client.get("/health").json()
    assert body["status"] == "healthy"
    assert body["auth"] == "fine_grained_token"
    assert body["scopes"] == {"repo": None, "workflow": None}


def test_bad_token_is_unhealthy_with_reason(gh, client, settings):
    settings.GH_TOKEN = "wrong"
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["github"] == "error"
    assert "401 Bad credentials" in response.json()["reason"]
    assert "wrong" not in response.content.decode()


def test_missing_workflow_is_unhealthy(gh, client):
    gh.workflow_state = None
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["workflow"] == {"file": "deploy-pod.yml", "found": False, "state": None}
    assert body["reason"] == "Deploy workflow 'deploy-pod.yml' not found in demo/pods."


def test_disabled_workflow_is_unhealthy(gh, client):
    gh.workflow_state = "disabled_manually"
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["reason"] == "Deploy workflow 'deploy-pod.yml' is disabled_manually."


def test_rate_limit_exhausted_is_unhealthy_with_quota(gh, client):
    gh.set_rate_limit(remaining=0, reset=2000000000)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["github"] == "rate_limited"
    assert body["rate_limit"] == {"remaining": 0, "limit": 5000, "reset_at": 2000000000}


def test_unreachable_github_is_unhealthy(gh, client, settings):
    settings.GITHUB_API_URL = "http://127.0.0.1:9"
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["github"] == "unreachable"
    assert "Could not reach GitHub" in response.json()["reason"]


def test_100_rapid_requests_cost_one_probe(gh, client):
    gh.clear_requests()
    statuses = {client.get("/health").status_code for _ in range(100)}
    assert statuses == {200}
    assert gh.count("GET", r"^/repos/demo/pods$") == 1
    assert gh.count() == 3  # repository, workflow, rate limit: one probe


def test_probe_is_repeated_after_the_cache_period(gh, client, settings):
    settings.HEALTH_CACHE_SECONDS = 30
    client.get("/health")
    from django.core.cache import cache

    cache.delete_many([health.REPORT_KEY, health.PROBE_LOCK_KEY])
    client.get("/health")
    assert gh.count("GET", r"^/repos/demo/pods$") == 2


def test_liveness_touches_neither_github_nor_database(db, client, django_assert_num_queries, fakegithub):
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert fakegithub.count() == 0


@pytest.mark.parametrize("path", ["/health", "/health/live"])
def test_health_needs_no_login(gh, client, path):
    assert client.get(path).status_code in (200, 503)
