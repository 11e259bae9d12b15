"""The cold listing's bulk read through GitHub's GraphQL API (issue 18), and its fallback to one
REST call per spec when GraphQL fails, answers malformed data or leaves a blob out."""

import logging

import pytest
from django.core.cache import cache

import fakegithub.graphql
from deployments import inventory
from tests.helpers import at_once, graphql_oids, put_pods, spec_blobs

GRAPHQL = r"/graphql$"


def listing_without_graphql(settings) -> list[tuple]:
    """The pods as the per-spec REST path lists them, from a cold cache (the reference)."""
    settings.INVENTORY_GRAPHQL = False
    cache.clear()
    inventory._memo.clear()
    pods = [astuple(pod) for pod in inventory.list_pods()]
    settings.INVENTORY_GRAPHQL = True
    cache.clear()
    inventory._memo.clear()
    return pods


def astuple(pod) -> tuple:
    return (pod.key, pod.path, pod.sha, pod.text, pod.spec, pod.error, pod.loaded)


def blob_gets(gh) -> list[str]:
    return [r.path.rsplit("/", 1)[1] for r in gh.requests if r.method == "GET" and "/git/blobs/" in r.path]


def test_cold_listing_of_many_pods_is_three_requests_with_the_per_spec_result(gh, db, settings):
    put_pods(gh, 150)
    reference = listing_without_graphql(settings)
    gh.clear_requests()
    core_used = gh.rate_limit["resources"]["core"]["used"]
    pods = [astuple(pod) for pod in inventory.list_pods()]
    assert pods == reference and len(pods) == 156
    assert [(r.method, r.status) for r in gh.requests] == [("GET", 200), ("GET", 200), ("POST", 200)]
    assert sorted(graphql_oids(gh.requests[2])) == sorted(spec_blobs(gh).values())
    # The REST limit paid for the two trees only; the query is counted on GraphQL's own limit.
    assert gh.rate_limit["resources"]["core"]["used"] - core_used == 2


def test_more_specs_than_a_batch_take_one_query_per_batch(gh, db, monkeypatch):
    monkeypatch.setattr(inventory.gh, "GRAPHQL_BATCH", 4)
    gh.clear_requests()
    assert len(inventory.list_pods()) == 6
    queries = [graphql_oids(r) for r in gh.requests if r.method == "POST"]
    assert [len(q) for q in queries] == [4, 2]
    assert sorted(queries[0] + queries[1]) == sorted(spec_blobs(gh).values())
    assert blob_gets(gh) == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (502, {"message": "We couldn't respond to your request in time. Sorry about that."}),  # the 10 s cap
        (504, None),
        (401, {"message": "Bad credentials"}),
        (200, {"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}),
        (200, {"data": None, "errors": [{"type": "FORBIDDEN", "message": "Resource not accessible"}]}),
        (200, {"data": {"repository": None}, "errors": "not a list"}),
        (200, [1, 2]),
        (200, {"data": "repository"}),
        (200, b"<html>proxy error</html>"),
        (200, b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),  # past the recursion limit
    ],
    ids=[
        "timeout-502",
        "504",
        "401",
        "rate-limited",
        "forbidden",
        "no-repository",
        "list",
        "data-str",
        "html",
        "deep-json",
    ],
)
def test_a_failed_graphql_query_falls_back_to_one_call_per_spec(gh, db, settings, caplog, status, body):
    reference = listing_without_graphql(settings)
    # Past its primary limit GitHub's answer says "x-ratelimit-remaining: 0" (the GraphQL limit's,
    # not the REST one INVENTORY_RATE_LIMIT_RESERVE goes by: the fallback still reads every spec).
    primary = isinstance(body, dict) and "RATE_LIMITED" in str(body.get("errors"))
    gh.add_fault(
        "POST", GRAPHQL, status=status, body=body, headers={"x-ratelimit-remaining": "0"} if primary else {}
    )
    gh.clear_requests()
    with caplog.at_level(logging.WARNING, logger="deployments.inventory"):
        pods = [astuple(pod) for pod in inventory.list_pods()]
    assert pods == reference
    assert gh.count("POST", GRAPHQL) == 1  # tried once, not retried
    assert sorted(blob_gets(gh)) == sorted(spec_blobs(gh).values())
    [warning] = [r.getMessage() for r in caplog.records if "GraphQL API failed" in r.getMessage()]
    assert "reading 6 specs one by one" in warning


@pytest.mark.parametrize("remaining", ["lots", "nan", "1e999"])
def test_a_rate_limit_header_that_is_no_number_is_a_failed_query_not_a_crash(
    gh, db, settings, viewer_client, remaining
):
    """PyGithub reads x-ratelimit-remaining with int(float(...)): an answer's nonsense there must
    not become a 500, neither from the GraphQL query (the listing falls back) nor from a REST call."""
    reference = listing_without_graphql(settings)
    headers = {"x-ratelimit-remaining": remaining, "x-ratelimit-limit": "5000"}
    gh.add_fault("POST", GRAPHQL, status=200, body={"data": None}, headers=headers)
    gh.clear_requests()
    assert [astuple(pod) for pod in inventory.list_pods()] == reference
    assert sorted(blob_gets(gh)) == sorted(spec_blobs(gh).values())
    cache.clear()
    inventory._memo.clear()
    gh.add_fault(
        "GET", r"/git/blobs/", status=200, body={"content": "", "encoding": "base64"}, headers=headers
    )
    response = viewer_client.get("/")
    assert response.status_code == 503
    assert b"answer could not be read" in response.content


def test_a_huge_error_message_is_logged_and_shown_on_one_short_line(gh, db, settings, viewer_client, caplog):
    message = "Bad gateway\nforged: line " + "x" * 100_000
    gh.add_fault("POST", GRAPHQL, status=502, body={"message": message})
    settings.INVENTORY_GRAPHQL = True
    gh.add_fault("GET", r"/git/blobs/", status=502, body={"message": message})
    with caplog.at_level(logging.WARNING):
        response = viewer_client.get("/")
    assert response.status_code == 503
    assert b"Bad gateway forged: line xxx" in response.content and len(response.content) < 50_000
    logged = [r.getMessage() for r in caplog.records if "Bad gateway" in r.getMessage()]
    assert any("GraphQL API failed" in line for line in logged)
    assert logged and all("\n" not in line and len(line) < 600 for line in logged)


SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."


@pytest.mark.parametrize(
    ("status", "body"),
    [(403, {"message": SECONDARY}), (200, {"errors": [{"message": SECONDARY}]})],
    ids=["403", "200-with-errors"],  # GitHub: "the response status will be 200 or 403"
)
def test_a_secondary_limit_on_the_query_reads_nothing_more_until_a_later_view(
    gh, db, viewer_client, caplog, status, body
):
    """GitHub refuses the query for a while: no burst of per-spec REST reads (they share the
    concurrency and CPU-time limits); the pods are listed as not loaded yet, then read."""
    gh.add_fault("POST", GRAPHQL, status=status, body=body, headers={"retry-after": "60"}, times=1)
    gh.clear_requests()
    with caplog.at_level(logging.WARNING, logger="deployments.inventory"):
        response = viewer_client.get("/")
    assert response.status_code == 200
    pods = response.context["pods"]
    assert len(pods) == 6 and not any(pod.loaded for pod in pods)
    assert all(pod.error.startswith("not loaded yet") for pod in pods)
    assert b"incomplete" in response.content
    assert blob_gets(gh) == [] and gh.count("POST", GRAPHQL) == 1
    assert any("6 specs are read on a later view" in r.getMessage() for r in caplog.records)
    gh.clear_requests()
    inventory.expire()
    again = viewer_client.get("/")
    assert all(pod.spec is not None for pod in again.context["pods"])
    assert gh.count("POST", GRAPHQL) == 1 and blob_gets(gh) == []


@pytest.mark.parametrize("resource", ["graphql", ""], ids=["said", "left-out-by-a-proxy"])
def test_the_rest_limits_figures_are_kept_after_a_graphql_answer(gh, db, settings, resource):
    """INVENTORY_RATE_LIMIT_RESERVE goes by the REST limit: the GraphQL answer's figures (3 points
    left) must not stop the per-spec reads that follow, whether or not x-ratelimit-resource came."""
    settings.INVENTORY_RATE_LIMIT_RESERVE = 100
    headers = {"x-ratelimit-remaining": "3", "x-ratelimit-limit": "5000", "x-ratelimit-resource": resource}
    gh.add_fault("POST", GRAPHQL, status=200, body={"data": {"repository": {}}}, headers=headers)
    gh.clear_requests()
    pods = inventory.list_pods()
    assert all(pod.loaded for pod in pods) and len(blob_gets(gh)) == 6


def test_blobs_graphql_did_not_return_whole_are_read_one_by_one(gh, db, settings, caplog):
    """Partial results (an error beside the data), a text that does not hash to its id, a
    truncated text, an answer about another object: only those are read again."""
    reference = listing_without_graphql(settings)
    shas = sorted(spec_blobs(gh).values())
    texts = {sha: text for sha, text in ((s, _text_of(gh, s)) for s in shas)}

    def blob(sha: str, **changes) -> dict:
        return {"oid": sha, "byteSize": len(texts[sha]), "isBinary": False, "isTruncated": False,
                "text": texts[sha], **changes}  # fmt: skip

    answer = {
        "b0": blob(shas[0]),
        "b1": None,  # partial results: left out, with an error below
        "b2": blob(shas[2], text="customer: evil\n"),  # not what the blob holds
        "b3": blob(shas[3], isTruncated=True),
        "b4": blob(shas[0]),  # about another blob
        "b5": blob(shas[5], text=5),
    }
    body = {"data": {"repository": answer}, "errors": [{"type": "TIMEOUT", "path": ["repository", "b1"],
            "message": "resource limits exceeded"}]}  # fmt: skip
    gh.add_fault("POST", GRAPHQL, status=200, body=body)
    gh.clear_requests()
    with caplog.at_level(logging.WARNING):
        pods = [astuple(pod) for pod in inventory.list_pods()]
    assert pods == reference
    assert sorted(blob_gets(gh)) == shas[1:]
    assert any("5 of 6 specs not read through GitHub's GraphQL API" in r.getMessage() for r in caplog.records)
    # What GitHub said of the blobs it left out is in the log too.
    said = "GitHub's GraphQL API left out 5 of 6 blobs: TIMEOUT resource limits exceeded"
    assert any(r.getMessage() == said for r in caplog.records)


def test_truncated_texts_from_the_emulator_fall_back(gh, db, settings, monkeypatch):
    reference = listing_without_graphql(settings)
    monkeypatch.setattr(fakegithub.graphql, "TEXT_LIMIT", 10)  # every spec is longer
    gh.clear_requests()
    assert [astuple(pod) for pod in inventory.list_pods()] == reference
    assert gh.count("POST", GRAPHQL) == 1
    assert sorted(blob_gets(gh)) == sorted(spec_blobs(gh).values())


def test_binary_and_oversize_specs_get_the_same_error_as_without_graphql(gh, db, settings):
    gh.put_file("pods/bin/prod/spec.yml", b"customer: bin\n\x00\x01\x02\xff\xfe binary\n")
    gh.put_file("pods/big/prod/spec.yml", "customer: big\n# " + "x" * 5000 + "\n")
    reference = {pod[0]: pod for pod in listing_without_graphql(settings)}
    gh.clear_requests()
    pods = {pod.key: astuple(pod) for pod in inventory.list_pods()}
    assert pods == reference
    assert pods["bin/prod"][5] and pods["big/prod"][5].startswith("spec.yml is larger than")
    blobs = spec_blobs(gh)
    # GraphQL said the binary one has no text: read by REST as before; the large one: never read.
    assert blob_gets(gh) == [blobs["pods/bin/prod/spec.yml"]]
    [query] = [graphql_oids(r) for r in gh.requests if r.method == "POST"]
    assert blobs["pods/big/prod/spec.yml"] not in query and len(query) == 7


def _text_of(gh, sha: str) -> str:
    return gh.state.store.blobs[sha].decode()


def test_workers_listing_cold_at_once_each_write_the_batch_and_list_every_pod(gh_tx, settings):
    """Each worker's GraphQL batch is cached in one transaction; workers doing it at once (the
    same blobs, in the same order) neither deadlock nor fail, and every pod is listed."""
    put_pods(gh_tx, 60)
    reference = listing_without_graphql(settings)
    gh_tx.clear_requests()
    results = at_once(*[lambda: [astuple(pod) for pod in inventory.list_pods()]] * 4)
    assert results == [reference] * 4
    assert gh_tx.count("POST", GRAPHQL) >= 1 and blob_gets(gh_tx) == []
    cached = cache.get_many([f"blob:{sha}" for sha in spec_blobs(gh_tx).values()])
    assert len(cached) == len(reference)
