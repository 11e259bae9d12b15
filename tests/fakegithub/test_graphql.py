"""The emulator's GraphQL endpoint: blobs by object id in aliased queries, shaped as GitHub's."""

import github
import requests

from fakegithub import FakeGitHub
from fakegithub import graphql as emulator_graphql
from fakegithub._git import blob_sha

TOKEN = "test-token"
BLOB = "fragment b on Blob { oid byteSize isBinary isTruncated text }"


def post(gh: FakeGitHub, query: str, token: str | None = TOKEN, variables: dict | None = None, path=None):
    headers = {"Authorization": f"bearer {token}"} if token else {}
    url = path or f"{gh.url}/graphql"
    return requests.post(url, json={"query": query, "variables": variables}, headers=headers, timeout=5)


def blobs_query(*oids: str, repo: str = "demo/pods") -> str:
    owner, name = repo.split("/")
    aliases = " ".join(f'b{i}: object(oid: "{oid}") {{ ...b }}' for i, oid in enumerate(oids))
    return f'{{ repository(owner: "{owner}", name: "{name}") {{ {aliases} }} }} {BLOB}'


def test_aliased_blobs_by_object_id_cost_one_point_of_the_graphql_limit(fakegithub):
    fakegithub.put_file("pods/a/prod/spec.yml", "customer: a\n")
    fakegithub.put_file("pods/b/prod/spec.yml", "customer: b\n")
    a, b = blob_sha(b"customer: a\n"), blob_sha(b"customer: b\n")
    core = fakegithub.rate_limit["resources"]["core"]["remaining"]
    answer = post(fakegithub, blobs_query(a, "0" * 40, b))
    assert answer.status_code == 200
    assert answer.json() == {
        "data": {
            "repository": {
                "b0": {
                    "oid": a,
                    "byteSize": 12,
                    "isBinary": False,
                    "isTruncated": False,
                    "text": "customer: a\n",
                },
                "b1": None,  # no such object: null, no error
                "b2": {
                    "oid": b,
                    "byteSize": 12,
                    "isBinary": False,
                    "isTruncated": False,
                    "text": "customer: b\n",
                },
            }
        }
    }
    assert answer.headers["x-ratelimit-resource"] == "graphql"
    assert (answer.headers["x-ratelimit-remaining"], answer.headers["x-ratelimit-used"]) == ("4999", "1")
    assert fakegithub.rate_limit["resources"]["core"]["remaining"] == core  # not the REST limit
    [request] = fakegithub.requests
    assert (request.method, request.path, request.status) == ("POST", "/graphql", 200)


def test_pygithub_queries_it_at_its_graphql_url_with_variables(fakegithub):
    fakegithub.put_file("pods/a/prod/spec.yml", "customer: a\n")
    requester = github.Github(auth=github.Auth.Token(TOKEN), base_url=fakegithub.api_url).requester
    query = "query($owner: String!, $name: String!, $oid: GitObjectID!) { repository(owner: $owner, "
    query += "name: $name) { object(oid: $oid) { ... on Blob { text } } } rateLimit { cost remaining } }"
    oid = blob_sha(b"customer: a\n")
    _, data = requester.graphql_query(query, {"owner": "demo", "name": "pods", "oid": oid})
    assert data["data"] == {
        "repository": {"object": {"text": "customer: a\n"}},
        "rateLimit": {"cost": 1, "remaining": 4999},
    }


def test_binary_blobs_have_no_text_and_long_ones_are_truncated(fakegithub, monkeypatch):
    fakegithub.put_file("pods/a/prod/spec.yml", b"\x00\x01binary")
    fakegithub.put_file("pods/b/prod/spec.yml", "0123456789abcdef")
    monkeypatch.setattr(emulator_graphql, "TEXT_LIMIT", 10)
    repo = post(fakegithub, blobs_query(blob_sha(b"\x00\x01binary"), blob_sha(b"0123456789abcdef"))).json()
    binary, long = repo["data"]["repository"]["b0"], repo["data"]["repository"]["b1"]
    assert (binary["isBinary"], binary["text"], binary["byteSize"]) == (True, None, 8)
    assert (long["isTruncated"], long["text"], long["byteSize"]) == (True, "0123456789", 16)


def test_a_revision_expression_names_a_blob_or_a_tree(fakegithub):
    fakegithub.put_file("pods/a/prod/spec.yml", "customer: a\n")
    query = '{ repository(owner: "demo", name: "pods") { f: object(expression: "main:pods/a/prod/spec.yml") '
    query += '{ ... on Blob { text } } d: object(expression: "main:pods") { __typename oid } } }'
    data = post(fakegithub, query).json()["data"]["repository"]
    assert data["f"] == {"text": "customer: a\n"}
    assert data["d"] == {
        "__typename": "Tree",
        "oid": fakegithub.state.snapshots[fakegithub.head_sha].dirs["pods"],
    }


def test_a_repository_the_token_cannot_see_is_not_found(fakegithub):
    fakegithub.token_repositories = []
    answer = post(fakegithub, blobs_query("0" * 40))
    assert answer.status_code == 200
    assert answer.json() == {
        "errors": [
            {
                "type": "NOT_FOUND",
                "path": ["repository"],
                "locations": [{"line": 1, "column": 3}],
                "message": "Could not resolve to a Repository with the name 'demo/pods'.",
            }
        ],
        "data": {"repository": None},
    }


def test_a_token_without_contents_read_gets_forbidden_on_each_object(fakegithub):
    fakegithub.token = "github_pat_11AAAAAAA0abcdefghijklmnopqrstuvwxyz"
    fakegithub.fine_grained_permissions = {"metadata": "read"}
    answer = post(fakegithub, blobs_query("0" * 40, "1" * 40), token=fakegithub.token).json()
    assert answer["data"] == {"repository": {"b0": None, "b1": None}}
    assert [(e["type"], e["path"], e["extensions"], e["message"]) for e in answer["errors"]] == [
        (
            "FORBIDDEN",
            ["repository", f"b{i}"],
            {"saml_failure": False},
            "Resource not accessible by personal access token",
        )
        for i in range(2)
    ]


def test_a_query_that_does_not_validate_has_errors_no_data_and_costs_nothing(fakegithub):
    for query in (
        '{ repository(owner: "demo", name: "pods") { object(oid: "a") { ... on Blob { x } } } }',
        "{ rep",
    ):
        answer = post(fakegithub, query)
        assert answer.status_code == 200
        body = answer.json()
        assert "data" not in body and body["errors"][0]["message"] and body["errors"][0]["locations"]
    assert answer.headers["x-ratelimit-remaining"] == "5000"
    no_query = requests.post(
        f"{fakegithub.url}/graphql", json={}, headers={"Authorization": f"token {TOKEN}"}, timeout=5
    )
    assert no_query.json() == {
        "errors": [{"message": "A query attribute must be specified and must be a string."}]
    }
    anonymous = post(fakegithub, "{ rateLimit { cost } }", token=None)
    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "This endpoint requires you to be authenticated."
    wrong = post(fakegithub, "{ rateLimit { cost } }", token="ghp_wrong")
    assert (wrong.status_code, wrong.json()["message"]) == (401, "Bad credentials")


def test_past_the_graphql_limit_the_answer_is_200_with_an_error(fakegithub):
    fakegithub.state.graphql_remaining = 0
    answer = post(fakegithub, blobs_query("0" * 40))
    assert answer.status_code == 200
    assert [e["type"] for e in answer.json()["errors"]] == ["RATE_LIMITED"] and "data" not in answer.json()
    assert answer.headers["x-ratelimit-remaining"] == "0"


def test_ghes_serves_graphql_at_api_graphql_without_rate_limits():
    with FakeGitHub(api_prefix="/api/v3", ghes=True) as gh:
        gh.put_file("pods/a/prod/spec.yml", "customer: a\n")
        requester = github.Github(auth=github.Auth.Token(TOKEN), base_url=gh.api_url).requester
        assert requester.graphql_url == f"{gh.url}/api/graphql"
        answer = post(gh, blobs_query(blob_sha(b"customer: a\n")), path=requester.graphql_url)
        assert answer.json()["data"]["repository"]["b0"]["text"] == "customer: a\n"
        assert not [h for h in answer.headers if h.startswith("x-ratelimit")]  # disabled, as GHES ships
        assert post(gh, blobs_query("0" * 40), path=f"{gh.url}/api/v3/graphql").status_code == 404


def test_scripted_faults_apply(fakegithub):
    fakegithub.add_fault("POST", r"/graphql$", status=502, times=1)
    failed = post(fakegithub, "{ rateLimit { cost } }")
    assert failed.status_code == 502
    # with the GraphQL limit's figures, as every answer of the endpoint
    assert (failed.headers["x-ratelimit-resource"], failed.headers["x-ratelimit-remaining"]) == (
        "graphql",
        "5000",
    )
    assert post(fakegithub, "{ rateLimit { cost } }").status_code == 200


def test_queries_have_their_own_secondary_limit_apart_from_the_rest_apis(fakegithub):
    """GitHub: "no more than 900 points per minute are allowed for REST API endpoints, and no more
    than 2,000 points per minute are allowed for the GraphQL API endpoint"."""
    fakegithub.secondary_points_per_minute = 1
    fakegithub.secondary_graphql_points_per_minute = 2
    rest = f"{fakegithub.url}/repos/demo/pods"
    auth = {"Authorization": f"token {TOKEN}"}
    assert requests.get(rest, headers=auth, timeout=5).status_code == 200  # the REST minute's point
    assert [post(fakegithub, "{ rateLimit { cost } }").status_code for _ in range(2)] == [200, 200]
    refused = post(fakegithub, "{ rateLimit { cost } }")
    assert refused.status_code == 403 and 55 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["message"].startswith("You have exceeded a secondary rate limit")
    assert refused.headers["x-ratelimit-resource"] == "graphql"
    assert refused.headers["x-ratelimit-remaining"] == "4998"  # the GraphQL limit's figures
    assert requests.get(rest, headers=auth, timeout=5).status_code == 403  # the REST minute is spent
