"""GitHub's GraphQL API, the part the portal uses: git blobs by object id, aliased in one query.

``POST /graphql`` (``/api/graphql`` on GHES: "The GraphQL API has a single endpoint",
https://docs.github.com/en/enterprise-server@3.11/graphql/guides/forming-calls-with-graphql)
with a JSON body ``{"query": ..., "variables": ...}``. The query is parsed, validated and run by
graphql-core (the Python port of the reference implementation) against a subset of GitHub's
schema: ``repository(owner:, name:)``, ``Repository.object(oid:, expression:)`` and the
``GitObject`` interface (``Blob``, ``Tree``, ``Commit``), and ``rateLimit``; aliases, fragments
and variables work as on GitHub, and a field outside the subset is a validation error.
https://docs.github.com/en/graphql/reference/objects#blob

What GitHub does, as documented:
- ``Blob.text``: "UTF8 text data or null if the Blob is binary"; ``isTruncated``: the text was
  cut short, at 512,000 bytes (measured in sveltia/sveltia-cms#950; GitHub gives no figure).
  Binary as git decides it: a NUL byte in the first 8,000 bytes.
- An object id the repository does not hold is ``null`` (``object`` is nullable), without error.
- Errors come in the answer's ``errors`` (HTTP 200) beside what could be answered, each with a
  ``type``, ``path``, ``locations`` and ``message``: a repository the token cannot see is
  ``NOT_FOUND`` "Could not resolve to a Repository with the name 'owner/name'."; an installation
  or fine-grained token without Contents: read gets ``FORBIDDEN`` "Resource not accessible by
  integration" (or "... by personal access token") on each object, with ``extensions:
  {saml_failure: false}`` (as GitHub answered in fpicalausa/remove-stale-branches#49 and
  github-community-projects/contributors#492). A query that does not parse or validate has
  ``errors`` and no ``data`` (graphql-core's messages, not GitHub's words).
- Rate limit: a query costs points of its own limit, not the REST one; one with no connection,
  as every query of this subset, costs the minimum, 1. The x-ratelimit-* headers describe it
  with ``x-ratelimit-resource: graphql``; past the limit the status "will still be 200" with an
  error (type ``RATE_LIMITED``) and ``x-ratelimit-remaining: 0``. A query is 1 point of the
  GraphQL endpoint's own secondary limit (2,000 a minute, apart from the REST API's 900;
  ``secondary_graphql_points_per_minute``).
  https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits
  https://docs.github.com/en/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api
- Latency and scripted faults apply as to every API call (routes.handle): a 502/504 with
  "We couldn't respond to your request in time" is how GitHub ends a query after 10 seconds;
  a scripted 200 with ``errors`` and partial ``data`` is its "partial results" answer.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLSchema, build_schema, graphql_sync

from fakegithub import shapes
from fakegithub._git import blob_sha
from fakegithub.routes import ApiRequest, Response, Route, _authenticate, _secondary_limit, error

if TYPE_CHECKING:
    from fakegithub.server import FakeGitHub

# The limit of a token or an installation, in points an hour (separate from the REST API's).
GRAPHQL_RATE_LIMIT = 5000
# Blob.text stops here; isTruncated says so.
TEXT_LIMIT = 512_000
# "The minimum point value of a call to the GraphQL API is 1": what a query without connections costs.
QUERY_COST = 1
FORMING_CALLS_DOCS = "https://docs.github.com/graphql/guides/forming-calls-with-graphql"
AUTH_DOCS = FORMING_CALLS_DOCS + "#authenticating-with-graphql"

# The subset of GitHub's schema (names, arguments and nullability as in its public schema).
SDL = """
scalar GitObjectID
scalar DateTime

type Query {
  repository(owner: String!, name: String!, followRenames: Boolean = true): Repository
  rateLimit(dryRun: Boolean = false): RateLimit
}

type RateLimit {
  cost: Int!
  limit: Int!
  nodeCount: Int!
  remaining: Int!
  resetAt: DateTime!
  used: Int!
}

type Repository {
  name: String!
  nameWithOwner: String!
  object(expression: String, oid: GitObjectID): GitObject
}

interface GitObject {
  abbreviatedOid: String!
  oid: GitObjectID!
}

type Blob implements GitObject {
  abbreviatedOid: String!
  byteSize: Int!
  isBinary: Boolean
  isTruncated: Boolean!
  oid: GitObjectID!
  text: String
}

type Tree implements GitObject {
  abbreviatedOid: String!
  oid: GitObjectID!
}

type Commit implements GitObject {
  abbreviatedOid: String!
  oid: GitObjectID!
}
"""


@functools.cache
def schema() -> GraphQLSchema:
    return build_schema(SDL)


class _Refused(Exception):
    """A field GitHub answers with an error of this ``type`` (NOT_FOUND, FORBIDDEN)."""

    def __init__(self, message: str, kind: str, extensions: dict | None = None):
        super().__init__(message)
        self.kind = kind
        self.extensions = extensions


def query(gh: FakeGitHub, req: ApiRequest) -> Response:
    """POST /graphql."""
    body = req.body
    if not isinstance(body, dict):
        return error(400, "Problems parsing JSON")
    text, variables = body.get("query"), body.get("variables")
    if not isinstance(text, str):
        return _answer(
            gh, {"errors": [{"message": "A query attribute must be specified and must be a string."}]}
        )
    if variables is not None and not isinstance(variables, dict):
        return _answer(gh, {"errors": [{"message": "Variables are invalid JSON."}]})
    limit = gh.secondary_graphql_points_per_minute
    if limit is not None:
        # A query without mutations: 1 point of the GraphQL endpoint's own secondary limit.
        throttled = _secondary_limit(gh, "GET", points_per_minute=limit, graphql=True)
        if throttled is not None:
            throttled.headers.update(rate_headers(gh))  # the GraphQL limit's figures
            return throttled
    limited = gh.rate_limiting_enabled
    if limited and gh.state.graphql_remaining < QUERY_COST:
        message = "API rate limit already exceeded for user ID 1."
        return _answer(gh, {"errors": [{"type": "RATE_LIMITED", "message": message}]})
    kind, _ = _authenticate(gh, req.headers)
    root = {
        "repository": lambda info, owner, name, followRenames=True: _repository(gh, kind, owner, name),
        "rateLimit": lambda info, dryRun=False: _rate_limit(gh, 0 if dryRun else QUERY_COST),
    }
    result = graphql_sync(schema(), text, root_value=root, variable_values=variables)
    answer: dict[str, Any] = {}
    if result.errors:
        answer["errors"] = [_error(e) for e in result.errors]
    if result.data is not None:
        answer["data"] = result.data
        if limited:  # only a query that ran costs points (one that did not validate did not run)
            gh.state.graphql_remaining -= QUERY_COST
    return _answer(gh, answer)


def _answer(gh: FakeGitHub, body: dict) -> Response:
    return Response(200, body, rate_headers(gh))


def rate_headers(gh: FakeGitHub) -> dict[str, str]:
    """The GraphQL limit's x-ratelimit-* headers (none where rate limiting is disabled)."""
    if not gh.rate_limiting_enabled:
        return {}
    remaining = max(0, gh.state.graphql_remaining)
    return {
        "x-ratelimit-limit": str(GRAPHQL_RATE_LIMIT),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(gh.state.rate_reset),
        "x-ratelimit-used": str(GRAPHQL_RATE_LIMIT - remaining),
        "x-ratelimit-resource": "graphql",
    }


def _error(exc: GraphQLError) -> dict:
    shaped: dict[str, Any] = {}
    cause = exc.original_error
    if isinstance(cause, _Refused):
        shaped["type"] = cause.kind
        if cause.extensions is not None:
            shaped["extensions"] = cause.extensions
    if exc.path is not None:
        shaped["path"] = list(exc.path)
    if exc.locations:
        shaped["locations"] = [{"line": loc.line, "column": loc.column} for loc in exc.locations]
    shaped["message"] = exc.message
    return shaped


def _rate_limit(gh: FakeGitHub, cost: int) -> dict:
    remaining = max(0, gh.state.graphql_remaining - cost)
    return {
        "cost": cost,
        "limit": GRAPHQL_RATE_LIMIT,
        "nodeCount": 0,
        "remaining": remaining,
        "resetAt": shapes.iso(gh.state.rate_reset),
        "used": GRAPHQL_RATE_LIMIT - remaining,
    }


def _repository(gh: FakeGitHub, kind: str | None, owner: str, name: str) -> dict:
    wanted = f"{owner}/{name}"
    visible = gh.installation_repositories if kind == "installation" else gh.token_repositories
    if wanted.lower() != gh.repo.lower() or (
        visible is not None and gh.repo.lower() not in {repo.lower() for repo in visible}
    ):
        raise _Refused(f"Could not resolve to a Repository with the name '{wanted}'.", "NOT_FOUND")
    return {
        "name": gh.repo_name,
        "nameWithOwner": gh.repo,
        "object": lambda info, oid=None, expression=None: _object(gh, kind, oid, expression),
    }


def _object(gh: FakeGitHub, kind: str | None, oid: str | None, expression: str | None) -> dict | None:
    if kind in ("installation", "fine_grained"):
        granted = gh.installation_permissions if kind == "installation" else gh.fine_grained_permissions
        if granted.get("contents") not in ("read", "write", "admin"):
            holder = "integration" if kind == "installation" else "personal access token"
            raise _Refused(f"Resource not accessible by {holder}", "FORBIDDEN", {"saml_failure": False})
    store = gh.state.store
    if oid is None and expression is not None:
        oid = _resolve(gh, expression)
    if oid is None:
        return None
    if oid in store.blobs:
        return _blob(oid, store.blobs[oid])
    if oid in store.trees:
        return {"__typename": "Tree", "oid": oid, "abbreviatedOid": oid[:7]}
    if oid in gh.state.commits:
        return {"__typename": "Commit", "oid": oid, "abbreviatedOid": oid[:7]}
    return None


def _resolve(gh: FakeGitHub, expression: str) -> str | None:
    """``<rev>`` or ``<rev>:<path>`` (a revision expression "suitable for rev-parse")."""
    rev, _, path = expression.partition(":")
    commit = gh.state.resolve(rev or "main")
    if commit is None:
        return None
    if ":" not in expression:
        return commit
    snap = gh.state.snapshots[commit]
    path = path.strip("/")
    if path in snap.files:
        return blob_sha(snap.files[path])
    return snap.dirs.get(path)


def _blob(oid: str, data: bytes) -> dict:
    binary = b"\0" in data[:8000]
    return {
        "__typename": "Blob",
        "oid": oid,
        "abbreviatedOid": oid[:7],
        "byteSize": len(data),
        "isBinary": binary,
        "isTruncated": not binary and len(data) > TEXT_LIMIT,
        "text": None if binary else data[:TEXT_LIMIT].decode("utf-8", errors="replace"),
    }


# metered=False: a query spends the GraphQL limit (above), not the REST one; permissions are
# checked per field, as GitHub answers them (200 with errors), not with a 403.
ROUTES = (Route("POST", r"/graphql", query, metered=False),)
