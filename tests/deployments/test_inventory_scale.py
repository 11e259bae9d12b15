"""The inventory at scale (issue 18): one revalidation across workers, a precomputed search key."""

import datetime as dt
import time
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.db import connection

from deployments import inventory
from deployments.models import DeploymentRequest


@pytest.fixture
def fresh_window(settings):
    settings.INVENTORY_FRESH_SECONDS = 60
    inventory._memo.clear()


@pytest.fixture
def same_minute(monkeypatch):
    """The pods page's content version names the minute: a test that counts a warm view's
    queries must not cross one (the view would render again)."""
    from deployments import views

    now = time.time()
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: now))


def _stale() -> None:
    """Make the listing's last check older than the window (as 60 s later)."""
    key = f"{inventory._cache_key()}:meta"
    cache.set(key, {**cache.get(key), "checked_at": 0.0}, timeout=None)


def test_one_worker_revalidates_a_stale_listing_the_others_serve_it(gh, db, fresh_window):
    inventory.list_pods()  # cold: listed
    _stale()
    # Another worker holds the lease: it is asking GitHub right now.
    assert cache.add(f"{inventory._cache_key()}:lease", 1, timeout=60)
    gh.clear_requests()
    assert len(inventory.list_pods()) == 6
    assert gh.count() == 0
    # The lease lapsed (or was never taken): a second later (LEASE_RETRY_SECONDS) this worker
    # asks, once, and the answer is shared.
    cache.delete(f"{inventory._cache_key()}:lease")
    inventory._lease_taken.clear()
    inventory.list_pods()
    inventory.list_pods()
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in gh.requests] == [("main", 304)]


def test_a_worker_that_found_the_lease_taken_asks_for_it_again_a_second_later(
    gh, db, fresh_window, monkeypatch
):
    """While another worker asks GitHub, each view here would try to take the lease again (a
    write transaction); it waits LEASE_RETRY_SECONDS instead, which bounds what a lapsed lease costs."""
    from django.test.utils import CaptureQueriesContext

    clock = [time.monotonic()]
    monkeypatch.setattr(inventory, "time", SimpleNamespace(time=time.time, monotonic=lambda: clock[0]))
    inventory.list_pods()
    _stale()
    lease = f"{inventory._cache_key()}:lease"
    assert cache.add(lease, 1, timeout=60)  # another worker is asking GitHub
    gh.clear_requests()
    inventory.list_pods()  # finds the lease taken
    with CaptureQueriesContext(connection) as reads:
        assert len(inventory.list_pods()) == 6
    assert [q["sql"].split()[0] for q in reads] == ["SELECT"]  # the listing's entry: no lease write
    assert gh.count() == 0
    cache.delete(lease)  # its holder died
    clock[0] += inventory.LEASE_RETRY_SECONDS
    inventory.list_pods()
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in gh.requests] == [("main", 304)]


def test_pods_page_reuses_its_reads_for_a_moment_unless_its_worker_wrote(
    gh, db, fresh_window, same_minute, deployer, settings, monkeypatch
):
    """PODS_PAGE_READS_SECONDS: the views of that moment read the session only; a request made
    elsewhere shows after it; a change this worker made to the cache (a listing it revalidated,
    a deployment that expired it) shows at once, and so does a newer listing another of its
    views loaded (the page never goes back to the version before it)."""
    from django.test.utils import CaptureQueriesContext

    from deployments import live
    from portal.cache import DatabaseCache
    from tests.helpers import logged_in_client, make_request

    settings.PODS_PAGE_READS_SECONDS = 0.1
    clock = [time.monotonic()]
    monkeypatch.setattr(live, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    client = logged_in_client(deployer)
    client.get("/")  # cold: lists the pods and writes the listing's cache entries
    client.get("/")  # reads the stamp and the listing's entry, kept for 0.1 s
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/").content.decode()
    assert len(queries) == 1 and 'FROM "accounts_portalsession"' in queries[0]["sql"]
    assert "No deployment is running." in page

    request = make_request(deployer, customer="acme", environment="prod", status="dispatched")
    assert f'href="/requests/{request.pk}/"' not in client.get("/").content.decode()  # within 0.1 s
    # The pods page's live list reads at once, and tells the page.
    assert f'href="/requests/{request.pk}/"' in client.get("/pods/live/").content.decode()
    clock[0] += 0.1
    assert f'href="/requests/{request.pk}/"' in client.get("/").content.decode()

    # Another worker lists a new version of the specs: this worker wrote nothing.
    spec = gh.files["pods/acme/prod/spec.yml"]
    gh.put_file("pods/acme/prod/spec.yml", spec.replace("t3.medium", "t3.large"))
    written, loads, memo = DatabaseCache.written, inventory._loads, dict(inventory._memo)
    inventory.listing(fresh=True)
    monkeypatch.setattr(DatabaseCache, "written", written)  # as if listed in another process
    monkeypatch.setattr(inventory, "_loads", loads)
    monkeypatch.setattr(inventory, "_memo", memo)
    assert "t3.large" not in client.get("/").content.decode()  # within 0.1 s
    # Another view of this worker (a pod's page, the deploy form) reads the listing's entry and
    # loads the new version, writing nothing: from then on the pods page shows it too, without
    # reloading the old one.
    assert inventory.get_pod("acme", "prod").spec.instance_type == "t3.large"
    assert "t3.large" in client.get("/").content.decode()

    gh.put_file("pods/acme/prod/spec.yml", spec.replace("t3.medium", "t3.xlarge"))
    assert "t3.xlarge" not in client.get("/").content.decode()  # reads kept for this moment
    inventory.expire()  # a deployment finished in this worker: its cache write
    assert "t3.xlarge" in client.get("/").content.decode()


def test_expire_lets_a_worker_ask_at_once_though_it_found_the_lease_taken(gh, db, fresh_window):
    inventory.list_pods()
    _stale()
    assert cache.add(f"{inventory._cache_key()}:lease", 1, timeout=60)  # another worker asks
    inventory.list_pods()  # finds the lease taken: would wait LEASE_RETRY_SECONDS
    spec = gh.files["pods/acme/prod/spec.yml"]
    gh.put_file("pods/acme/prod/spec.yml", spec.replace("t3.medium", "t3.large"))
    inventory.expire()  # a deployment finished in this worker
    assert inventory.get_pod("acme", "prod").spec.instance_type == "t3.large"


def test_stale_listing_revalidated_by_the_first_view_that_takes_the_lease(gh, db, fresh_window):
    inventory.list_pods()
    _stale()
    gh.clear_requests()
    inventory.list_pods()
    assert [(r.path.rsplit("/", 1)[-1], r.status) for r in gh.requests] == [("main", 304)]
    _stale()  # stale again, but the lease of that check still runs: nobody asks
    inventory.list_pods()
    assert gh.count() == 1


def test_expire_releases_the_lease(gh, db, fresh_window):
    inventory.list_pods()
    _stale()
    inventory.list_pods()  # takes the lease
    gh.put_file(
        "pods/acme/prod/spec.yml", gh.files["pods/acme/prod/spec.yml"].replace("t3.medium", "t3.large")
    )
    inventory.expire()  # a deployment finished
    assert inventory.get_pod("acme", "prod").spec.instance_type == "t3.large"


def test_search_matches_pod_and_instance_name_in_any_case(gh, db, viewer_client):
    listing = inventory.listing()
    assert [pod.key for pod in listing.search("ACME/PR")] == ["acme/prod"]
    assert [pod.key for pod in listing.search("acme-STAGING-web")] == ["acme/staging"]
    assert listing.search("nothing-like-it") == []
    page = viewer_client.get("/?q=Acme-Prod").content.decode()
    assert "acme/prod" in page and "acme/staging" not in page


def test_warm_pods_page_reuses_its_content_until_a_request_changes(
    gh, db, fresh_window, same_minute, deployer
):
    """A warm view reads the session (with its user), then the requests' stamp with the listing's
    cache entry (one statement): no per-pod query, no "running now" query; with
    PODS_PAGE_READS_SECONDS at 0 a new request shows at once on the next view."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.helpers import logged_in_client, make_request

    client = logged_in_client(deployer)
    client.get("/")  # cold: lists the pods, renders the page
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/").content.decode()
    assert "acme/prod" in page and "No deployment is running." in page
    session, reads = (q["sql"] for q in queries)
    assert 'FROM "accounts_portalsession"' in session and 'JOIN "auth_user"' in session
    # The stamp (the newest change and the newest request, LIMIT 1 each: not the requests) and
    # the listing's cache entry.
    assert reads.startswith('SELECT (SELECT "updated_at" FROM "deployments_deploymentrequest" ORDER BY')
    assert reads.count("LIMIT 1") == 2 and reads.count('FROM "portal_cache" WHERE "cache_key" = ') == 2

    request = make_request(deployer, customer="acme", environment="prod", status="dispatched")
    page = client.get("/").content.decode()
    assert f'href="/requests/{request.pk}/"' in page  # the pod's last deployment and "running now"
    assert "No deployment is running." not in page


def test_a_reused_pods_page_is_each_persons_own_with_a_working_csrf_token(gh, db, fresh_window, deployer):
    """The warm pods page is rendered once per content and person, per process: the next view
    renders no template, shows the same person's name, and its sign-out form carries a CSRF
    token of this response that Django accepts. Another person gets their own page."""
    import re

    from django.test import Client

    from tests.helpers import make_user

    def signed_in(user) -> Client:
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        return client

    def token(page: str) -> str:
        return re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[0]

    dana, staff = signed_in(deployer), signed_in(make_user(username="sam", staff=True))
    first = dana.get("/")
    assert first.templates  # rendered
    again = dana.get("/")
    assert again.status_code == 200 and not again.templates  # reused: nothing rendered
    page = again.content.decode()
    assert "acme/prod" in page and ">dana</span>" in page and ">Admin</a>" not in page
    assert "csrf-token-slot" not in page and token(page)
    other = staff.get("/").content.decode()
    assert ">sam</span>" in other and ">Admin</a>" in other and ">dana</span>" not in other
    signed_out = dana.post("/accounts/logout/", {"csrfmiddlewaretoken": token(page)})
    assert signed_out.status_code == 302
    assert dana.get("/").status_code == 302  # to the sign-in page: the token was good


def test_text_that_looks_like_the_token_slot_stays_text(gh, db, fresh_window, deployer_client):
    """The slot is unescaped markup: a search for its text is shown escaped, never a token (a
    slot that escaping leaves alone, say "csrf-token-slot", would put the token in the box)."""
    deployer_client.get("/?q=<csrf-token-slot>")
    page = deployer_client.get("/?q=<csrf-token-slot>").content.decode()
    assert 'value="&lt;csrf-token-slot&gt;"' in page
    assert page.count('name="csrfmiddlewaretoken"') == 1


def test_a_reused_pods_page_lasts_the_minute_its_version_names(
    gh, db, fresh_window, deployer_client, monkeypatch
):
    """The page reused whole and the content fragment in it ("3 minutes ago") are renewed
    together when the minute changes: never reused into the next minute."""
    from types import SimpleNamespace

    from deployments import views

    now = [1_800_000_000.0]  # the start of a minute
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: now[0]))
    assert deployer_client.get("/").templates  # rendered
    now[0] += 59
    assert not deployer_client.get("/").templates  # reused within the minute
    now[0] += 1
    assert deployer_client.get("/").templates  # the next minute: rendered again


def test_listing_is_cached_in_parts_and_a_lost_part_costs_only_the_tree(gh, db, monkeypatch):
    """A worker reads the cached listing a part at a time (never a whole 10,000-pod pickle);
    when a part was evicted the listing is made again from the cached blobs: the trees only."""
    monkeypatch.setattr(inventory, "PODS_PER_CACHE_ENTRY", 4)
    inventory._memo.clear()
    listed = [pod.key for pod in inventory.list_pods()]
    assert len(listed) == 6
    key = next(iter(inventory._memo))
    assert cache.get(key)["parts"] == 2 and len(cache.get(f"{key}:1")) == 2

    inventory._memo.clear()  # another worker: reads the parts
    gh.clear_requests()
    assert [pod.key for pod in inventory.list_pods(revalidate=False)] == listed
    assert gh.count() == 0

    inventory._memo.clear()
    cache.delete(f"{key}:1")
    gh.clear_requests()
    assert [pod.key for pod in inventory.list_pods(revalidate=False)] == listed
    assert gh.requests and all("/git/trees/" in r.path for r in gh.requests), gh.requests


def test_searches_from_a_workers_threads_at_once_all_answer():
    """gunicorn's threads share a worker's listing: evicting its oldest remembered search from
    several at once must not fail a page. The interpreter switches threads as often as it can,
    so the threads interleave between reading the oldest search and removing it."""
    import sys
    import threading

    pods = [inventory.Pod(f"c{i}", "prod", f"pods/c{i}/prod/spec.yml", "0" * 40, "", None) for i in range(20)]
    listing = inventory.Listing(pods, "v", truncated=False)
    errors: list[Exception] = []

    def search(thread: int) -> None:
        try:
            for i in range(2000):
                assert listing.search(f"c1{thread}-{i}") == []
        except Exception as exc:  # noqa: BLE001 - what a page would have failed with
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=search, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(listing._found) == inventory.SEARCHES_KEPT
    assert [pod.key for pod in listing.search("C1")] == ["c1/prod"] + [f"c1{n}/prod" for n in range(10)]


def shown(customer: str, environment: str) -> inventory.Pod:
    """A pod as the pods page lists it (its spec does not matter here)."""
    return inventory.Pod(customer, environment, f"pods/{customer}/{environment}/spec.yml", "0" * 40, "", None)


def test_a_page_of_pods_shows_each_pods_newest_request(db, deployer):
    from deployments import selectors
    from tests.helpers import history, make_request

    history(deployer, 3, pod=("acme", "prod"))
    newest = make_request(deployer, customer="acme", environment="prod", status="completed")
    staging = make_request(deployer, customer="acme", environment="staging", status="dispatched")
    make_request(deployer, customer="other", environment="prod", status="completed")  # not on the page
    page = [shown("acme", "prod"), shown("acme", "staging"), shown("nobody", "prod")]

    activity = selectors.pod_activity(page)

    assert activity == {"acme/prod": newest, "acme/staging": staging}
    assert activity["acme/prod"].requested_by == deployer  # read with the request
    everything = selectors.pod_activity()
    assert {k: everything[k] for k in activity} == activity and "other/prod" in everything


def test_a_pods_latest_request_is_its_highest_id_whatever_the_clocks_said(db, deployer):
    """created_at comes from the app server's clock: one host behind another must not make an
    older request look newer on the pods page than in the API and the page's poll."""
    from deployments import selectors
    from tests.helpers import history

    history(deployer, 2, pod=("acme", "prod"))
    older, newer = DeploymentRequest.objects.order_by("pk")
    DeploymentRequest.objects.filter(pk=older.pk)._transition(
        created_at=newer.created_at + dt.timedelta(hours=1)
    )

    assert selectors.pod_activity([shown("acme", "prod")])["acme/prod"] == newer
    assert selectors.pod_activity()["acme/prod"] == newer


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts SQLite's own instructions")
def test_a_page_of_pods_reads_the_same_whatever_the_history(db, deployer):
    """A view of the pods page after any change finds each shown pod's last deployment: one
    index seek per pod, not a pass over the audit history."""
    from deployments import selectors
    from tests.helpers import history, sqlite_steps

    page = [shown(f"c{i}", "prod") for i in range(20)]
    history(deployer, 20)  # one request for each pod of the page
    small = sqlite_steps(lambda: selectors.pod_activity(page))
    history(deployer, 3000, pod=("c0", "prod"))
    history(deployer, 3000)
    large = sqlite_steps(lambda: selectors.pod_activity(page))

    assert large <= small + 2, (small, large)
