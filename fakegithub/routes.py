"""The HTTP side of the emulator: the route table and the pipeline every request goes through.

A request is recorded, may meet a scripted fault and the configured latency, is authenticated,
spends the core rate limit and gets an ETag (a matching ``If-None-Match`` answers 304 for free);
the route for its method and path makes the answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import operator
import re
import secrets
import socket
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt

from fakegithub import shapes
from fakegithub._git import blob_sha
from fakegithub.state import RecordedRequest
from fakegithub.workflow import WORKFLOW_PATH

if TYPE_CHECKING:
    from fakegithub.server import FakeGitHub

DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
INSTALLATION_TOKEN_TTL = 3600
DROP = object()  # close the connection without an answer


@dataclass
class Response:
    status: int
    body: object = None  # JSON-able, bytes (raw), or None
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


@dataclass
class ApiRequest:
    method: str
    query: dict[str, str]
    headers: dict[str, str]
    body: object  # the parsed JSON body, or None
    actor: dict | None = None  # whom the token belongs to, once authenticated
    path: str = ""  # the API path called (without GHES's /api/v3 prefix), for Link headers
    # (login, scopes) of a user access token from "Sign in with GitHub" (fakegithub.oauth).
    oauth: tuple[str, frozenset[str]] | None = None


def error(status: int, message: str) -> Response:
    return Response(status, {"message": message, "documentation_url": DOCS, "status": str(status)})


# --- handlers: (emulator, request, the route's path parameters) -> Response -----------------------


def _app_jwt_error(gh: FakeGitHub, req: ApiRequest, installation_id: str) -> Response | None:
    """Why GitHub refuses this request of the App (authenticated by its JWT), or None."""
    scheme, _, token = req.headers.get("authorization", "").partition(" ")
    if gh.app is None or scheme.lower() != "bearer" or not token:
        return error(401, "A JSON web token could not be decoded")
    app_id, public_key, expected_installation = gh.app
    try:
        claims = jwt.decode(
            token.strip(),
            public_key,
            algorithms=["RS256"],
            options={"require": ["exp", "iat", "iss"]},
            leeway=30,
        )
    except jwt.ExpiredSignatureError:
        return error(401, "'Expiration time' claim ('exp') is too far in the future or has passed")
    except jwt.PyJWTError:
        return error(401, "A JSON web token could not be decoded")
    if str(claims.get("iss")) != str(app_id):
        return error(401, "'Issuer' claim ('iss') must be an Integer")
    if str(installation_id) != str(expected_installation):
        return error(404, "Not Found")
    return None


def create_installation_token(gh: FakeGitHub, req: ApiRequest, installation_id: str) -> Response:
    """POST /app/installations/{id}/access_tokens: a token carrying the installation's permissions.
    https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app"""
    refused = _app_jwt_error(gh, req, installation_id)
    if refused is not None:
        return refused
    issued = "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
    expires = time.time() + INSTALLATION_TOKEN_TTL
    gh.state.issued_tokens[issued] = expires
    data = {
        "token": issued,
        "expires_at": shapes.iso(expires),
        "permissions": dict(gh.installation_permissions),
        "repository_selection": "all" if gh.installation_repositories is None else "selected",
    }
    return Response(201, data)


def get_installation(gh: FakeGitHub, req: ApiRequest, installation_id: str) -> Response:
    """GET /app/installations/{id}, as the App (JWT): the installation and its permissions.
    https://docs.github.com/en/rest/apps/apps#get-an-installation-for-the-authenticated-app"""
    refused = _app_jwt_error(gh, req, installation_id)
    if refused is not None:
        return refused
    return Response(200, shapes.installation(gh, int(installation_id)))


def not_found(gh: FakeGitHub, req: ApiRequest, **params: str) -> Response:
    return error(404, "Not Found")


def get_rate_limit(gh: FakeGitHub, req: ApiRequest) -> Response:
    if not gh.rate_limiting_enabled:
        # "API rate limits are disabled by default for GitHub Enterprise Server"
        # (https://docs.github.com/en/enterprise-server@3.18/apps/creating-github-apps/setting-up-a-github-app/rate-limits-for-github-apps);
        # such a server answers this 404 (seen in vermiculus/magithub#104, janeklb/gh-search#61,
        # actions/stale#1227).
        return error(404, "Rate limiting is not enabled.")
    return Response(200, shapes.rate_overview(gh.state))


def get_repo(gh: FakeGitHub, req: ApiRequest) -> Response:
    return Response(200, shapes.repository(gh))


def get_contents(gh: FakeGitHub, req: ApiRequest, path: str | None) -> Response:
    ref = req.query.get("ref")
    sha = gh.state.resolve(ref)
    if sha is None:
        return error(404, f"No commit found for the ref {ref}")
    snap = gh.state.snapshots[sha]
    path = (path or "").strip("/")
    if path in snap.files:
        data = snap.files[path]
        item = shapes.content_item(gh, path, "file", blob_sha(data), len(data), ref)
        item.update(content=shapes.b64(data), encoding="base64")
        return Response(200, item)
    if path in snap.dirs:
        items = []
        for entry in gh.state.store.trees[snap.dirs[path]]:
            child = f"{path}/{entry.name}" if path else entry.name
            kind = "file" if entry.type == "blob" else "dir"
            items.append(shapes.content_item(gh, child, kind, entry.sha, entry.size or 0, ref))
        return Response(200, items)
    return error(404, "Not Found")


def get_ref(gh: FakeGitHub, req: ApiRequest, kind: str, name: str) -> Response:
    ref = shapes.branch_ref(gh)
    if kind == "matching-refs":
        matches = "refs/heads/main".startswith("refs/" + name)
        return Response(200, [ref] if matches else [])
    if name in ("heads/main", "refs/heads/main"):
        return Response(200, ref)
    return error(404, "Not Found")


def get_tree(gh: FakeGitHub, req: ApiRequest, ident: str) -> Response:
    store = gh.state.store
    commit = gh.state.resolve(ident)
    tree_sha = gh.state.commits[commit]["tree"] if commit else ident
    if tree_sha not in store.trees:
        return error(404, "Not Found")
    if req.query.get("recursive") not in (None, "", "0", "false"):
        walked = list(store.walk(tree_sha))
        # "The limit for the tree array is 100,000 entries with a maximum size of 7 MB when using
        # the recursive parameter": past it GitHub answers the first entries, truncated: true.
        # https://docs.github.com/en/rest/git/trees#get-a-tree
        if len(walked) > gh.tree_entry_limit:
            return Response(200, shapes.tree(gh, tree_sha, walked[: gh.tree_entry_limit], truncated=True))
    else:
        walked = [(e.name, e) for e in store.trees[tree_sha]]
    return Response(200, shapes.tree(gh, tree_sha, walked))


def get_blob(gh: FakeGitHub, req: ApiRequest, sha: str) -> Response:
    data = gh.state.store.blobs.get(sha)
    if data is None:
        return error(404, "Not Found")
    return Response(200, shapes.blob(gh, sha, data))


def list_workflows(gh: FakeGitHub, req: ApiRequest) -> Response:
    flows = [shapes.workflow(gh)] if gh.workflow_state else []
    return Response(200, {"total_count": len(flows), "workflows": flows})


def get_workflow(gh: FakeGitHub, req: ApiRequest, workflow: str) -> Response:
    if not _is_workflow(gh, workflow):
        return error(404, "Not Found")
    return Response(200, shapes.workflow(gh))


def list_workflow_runs(gh: FakeGitHub, req: ApiRequest, workflow: str) -> Response:
    if not _is_workflow(gh, workflow):
        return error(404, "Not Found")
    return list_runs(gh, req)


def list_runs(gh: FakeGitHub, req: ApiRequest) -> Response:
    query = req.query
    now = time.time()
    runs = [r for r in reversed(gh.state.runs) if now - r.created >= gh.run_visible_after]
    if query.get("event"):
        runs = [r for r in runs if query["event"] == "workflow_dispatch"]
    if query.get("branch"):
        runs = [r for r in runs if query["branch"] == "main"]
    if query.get("head_sha"):
        runs = [r for r in runs if r.head_sha == query["head_sha"]]
    if query.get("actor"):
        runs = [r for r in runs if r.actor["login"] == query["actor"]]
    status = query.get("status")
    if status:
        statuses = {"queued", "in_progress", "completed", "requested", "waiting", "pending"}
        runs = [r for r in runs if (r.status if status in statuses else r.conclusion) == status]
    if query.get("created"):
        try:
            keep = _created_filter(query["created"])
        except ValueError:
            return error(422, "Invalid created parameter")
        runs = [r for r in runs if keep(int(r.created))]
    try:
        chosen, links = paginate(gh, req, runs)
    except ValueError:
        return error(422, "Invalid pagination parameter")
    body = {"total_count": len(runs), "workflow_runs": [shapes.workflow_run(gh, r) for r in chosen]}
    return Response(200, body, links)


def paginate(gh: FakeGitHub, req: ApiRequest, items: list) -> tuple[list, dict[str, str]]:
    """The page of ``items`` the request asks for (``per_page`` up to 100, default 30; ``page``),
    and the ``Link`` header to the other pages: URLs of the endpoint called, with its query.
    https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
    Raises ValueError for a parameter that is not a number."""
    per_page = max(1, min(100, int(req.query.get("per_page") or 30)))
    page = max(1, int(req.query.get("page") or 1))
    chosen = items[(page - 1) * per_page : page * per_page]
    last = max(1, -(-len(items) // per_page))
    links = []
    base = f"{gh.api_url}{req.path}"
    # The first page links to the next and last pages, the last page to the first and previous.
    wanted = {"prev": page > 1, "next": page < last, "last": page < last, "first": page > 1}
    for rel, number in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
        if wanted[rel]:
            params = urlencode({**req.query, "per_page": per_page, "page": number})
            links.append(f'<{base}?{params}>; rel="{rel}"')
    return chosen, ({"Link": ", ".join(links)} if links else {})


def get_run(gh: FakeGitHub, req: ApiRequest, run_id: str) -> Response:
    run = gh.state.find_run(int(run_id))
    return Response(200, shapes.workflow_run(gh, run)) if run else error(404, "Not Found")


def rerun(gh: FakeGitHub, req: ApiRequest, run_id: str) -> Response:
    """POST /actions/runs/{id}/rerun (and /rerun-failed-jobs): 201 with no body; the run keeps
    its id, counts up ``run_attempt``, sets ``previous_attempt_url`` and is queued again.
    https://docs.github.com/en/rest/actions/workflow-runs#re-run-a-workflow ("201 Created");
    a run that has not completed cannot be re-run ("This workflow is already running")."""
    try:
        gh.rerun(int(run_id))
    except KeyError:
        return error(404, "Not Found")
    except ValueError:
        return error(403, "This workflow is already running")
    return Response(201, {})


def create_dispatch(gh: FakeGitHub, req: ApiRequest, workflow: str) -> Response:
    body = req.body
    if not _is_workflow(gh, workflow):
        return error(404, "Not Found")
    if not isinstance(body, dict):
        return error(400, "Problems parsing JSON")
    if gh.ghes and "return_run_details" in body:
        return error(400, 'Invalid request.\n\n"return_run_details" is not a permitted key.')
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        return error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
    if ref not in ("main", "refs/heads/main"):
        # GitHub's answer for a branch that does not exist (convictional/trigger-workflow-and-wait#25).
        return error(422, f"No ref found for: {ref}")
    if gh.workflow_state != "active":
        # GitHub's answer for a disabled workflow (benc-uk/workflow-dispatch#72); a workflow is
        # disabled and enabled from the Actions tab or the API:
        # https://docs.github.com/en/actions/managing-workflow-runs/disabling-and-enabling-a-workflow
        return error(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow")
    if not gh.workflow_def.dispatchable:
        # "To run a workflow manually, the workflow must be configured to run on the
        # workflow_dispatch event" (https://docs.github.com/en/actions/using-workflows/manually-running-a-workflow);
        # GitHub's answer otherwise, seen in benc-uk/workflow-dispatch#46 and llm-d/llm-d#1572.
        return error(422, "Workflow does not have 'workflow_dispatch' trigger")
    given = body.get("inputs") or {}
    if not isinstance(given, dict):
        return error(422, "Invalid request.\n\nFor 'properties/inputs', is not an object.")
    inputs, problem = gh.workflow_def.check_inputs(given)
    if problem:
        return error(422, problem)
    run = gh.create_run(inputs, req.actor)
    if body.get("return_run_details") is True:
        run_json = shapes.workflow_run(gh, run)
        details = {"workflow_run_id": run.id, "run_url": run_json["url"]}
        return Response(200, dict(details, html_url=run_json["html_url"]))
    return Response(204)


def _is_workflow(gh: FakeGitHub, ident: str) -> bool:
    names = (str(shapes.WORKFLOW_ID), WORKFLOW_PATH.rsplit("/", 1)[1])
    return gh.workflow_state is not None and ident in names


def _parse_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip())
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _created_filter(expr: str):
    """A predicate on epoch seconds for GitHub's ``created`` search syntax."""
    expr = expr.strip()
    if ".." in expr:
        low, high = expr.split("..", 1)
        lo = None if low in ("", "*") else _parse_time(low).timestamp()
        hi = None if high in ("", "*") else _parse_time(high).timestamp()
        return lambda t: (lo is None or t >= lo) and (hi is None or t <= hi)
    for op in (">=", "<=", ">", "<"):
        if expr.startswith(op):
            bound = _parse_time(expr[len(op) :]).timestamp()
            compare = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}[op]
            return lambda t, compare=compare, bound=bound: compare(t, bound)
    start = _parse_time(expr).timestamp()
    end = start + (86400 if len(expr) <= 10 else 1)
    return lambda t: start <= t < end


# --- the route table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str | None  # None: any method
    pattern: str  # matched against the whole API path; {repo} is the emulated owner/name
    handler: Callable[..., Response]
    authenticated: bool = True  # False: answered as is, before the token is looked at
    metered: bool = True  # spends the core rate limit
    # What a GitHub App installation or a fine-grained token needs here, as GitHub's
    # x-accepted-github-permissions header says it ("actions=write"); None: nothing.
    permission: str | None = None


_APP_TOKENS = r"/app/installations/(?P<installation_id>[^/]+)/access_tokens"
_WORKFLOW = r"/repos/{repo}/actions/workflows/(?P<workflow>[^/]+)"

# First match wins. A path no route matches is a 404 that still needs a token and spends the limit:
# another repository's paths too, as GitHub answers 404 (not 403) for a private repository the
# token cannot see (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api).
# The permissions are those of each endpoint's documentation ("Fine-grained access tokens for ...").
ROUTES = (
    Route("POST", _APP_TOKENS, create_installation_token, authenticated=False),
    Route(None, _APP_TOKENS, not_found, authenticated=False),
    Route("GET", r"/app/installations/(?P<installation_id>[^/]+)", get_installation, authenticated=False),
    Route("GET", r"/rate_limit", get_rate_limit, metered=False),
    Route("GET", r"/repos/{repo}", get_repo, permission="metadata=read"),
    Route("GET", r"/repos/{repo}/contents(?:/(?P<path>.*))?", get_contents, permission="contents=read"),
    Route(
        "GET",
        r"/repos/{repo}/git/(?P<kind>ref|refs|matching-refs)/(?P<name>.+)",
        get_ref,
        permission="contents=read",
    ),
    Route("GET", r"/repos/{repo}/git/trees/(?P<ident>[^/]+)", get_tree, permission="contents=read"),
    Route("GET", r"/repos/{repo}/git/blobs/(?P<sha>[^/]+)", get_blob, permission="contents=read"),
    Route("GET", r"/repos/{repo}/actions/workflows", list_workflows, permission="actions=read"),
    Route("GET", _WORKFLOW, get_workflow, permission="actions=read"),
    Route("GET", _WORKFLOW + "/runs", list_workflow_runs, permission="actions=read"),
    Route("POST", _WORKFLOW + "/dispatches", create_dispatch, permission="actions=write"),
    Route("GET", r"/repos/{repo}/actions/runs", list_runs, permission="actions=read"),
    Route("GET", r"/repos/{repo}/actions/runs/(?P<run_id>\d+)", get_run, permission="actions=read"),
    Route(
        "POST",
        r"/repos/{repo}/actions/runs/(?P<run_id>\d+)/rerun(?:-failed-jobs)?",
        rerun,
        permission="actions=write",
    ),
)


@cache
def _compiled(repo: str) -> tuple[tuple[Route, re.Pattern], ...]:
    # The routes of runs' jobs, artifacts and commits live in their own modules (they import this one).
    from fakegithub import artifacts, commits, graphql, jobs, oauth

    owner_name = f"(?i:{re.escape(repo)})"  # owner/name match case-insensitively, as on GitHub
    routes = (*ROUTES, *jobs.ROUTES, *artifacts.ROUTES, *commits.ROUTES, *oauth.ROUTES, *graphql.ROUTES)
    return tuple((route, re.compile(route.pattern.replace("{repo}", owner_name))) for route in routes)


def find_route(repo: str, method: str, path: str) -> tuple[Route | None, dict[str, str | None]]:
    """The first route for this method and API path, with its path parameters."""
    # Empty segments do not count: "/repos//demo/pods/" is "/repos/demo/pods".
    path = "/" + "/".join(part for part in path.split("/") if part)
    for route, pattern in _compiled(repo):
        if route.method in (None, method) and (match := pattern.fullmatch(path)):
            return route, match.groupdict()
    return None, {}


# --- the request pipeline -------------------------------------------------------------------------


def handle(gh: FakeGitHub, method: str, target: str, headers: dict[str, str], raw: bytes):
    """Answer one HTTP request: a Response, or DROP to close the socket unanswered."""
    split = urlsplit(target)
    path = unquote(split.path)
    query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
    try:
        body_json = json.loads(raw) if raw else None
    except ValueError:
        body_json = None
    record = RecordedRequest(method, split.path, query, headers, raw, body_json)
    with gh.state.lock:
        gh.state.requests.append(record)
        fault = gh.state.match_fault(method, split.path)
        latency = gh.latency
    is_api = _api_path(gh, path) is not None and not _web_match(gh, path) and not _oauth_web(path)
    if is_api and latency:
        time.sleep(latency)
    if fault is not None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            record.status = 0
            return DROP
        if fault.status is not None:
            with gh.state.lock:
                extra = _rate_headers(gh)
                if is_api and _api_path(gh, path) == "/graphql":
                    # A GraphQL answer's x-ratelimit-* are the GraphQL limit's ("For GraphQL
                    # requests, this will always be graphql"), a scripted one's too.
                    from fakegithub import graphql

                    extra = graphql.rate_headers(gh)
            response = Response(fault.status, fault.body, {**extra, **fault.headers})
            record.status = response.status
            return response
    try:
        response = _route(gh, method, path, query, headers, body_json, raw)
    except Exception as exc:  # a bug here must not kill the connection thread silently
        response = Response(500, {"message": f"fakegithub error: {exc!r}"})
    record.status = response.status
    return response


def _api_path(gh: FakeGitHub, path: str) -> str | None:
    if not gh.api_prefix:
        return path
    # GHES serves GraphQL at /api/graphql beside the REST API's /api/v3 ("The GraphQL API has a
    # single endpoint: http(s)://HOSTNAME/api/graphql"; PyGithub's graphql_url drops the "/v3"):
    # routed as "/graphql", while /api/v3/graphql is no endpoint (404).
    # https://docs.github.com/en/enterprise-server@3.11/graphql/guides/forming-calls-with-graphql
    if path == gh.api_prefix.removesuffix("/v3") + "/graphql":
        return "/graphql"
    if path == gh.api_prefix or path.startswith(gh.api_prefix + "/"):
        rest = path[len(gh.api_prefix) :] or "/"
        return "/v3/graphql" if rest == "/graphql" else rest
    return None


def _web_match(gh: FakeGitHub, path: str) -> re.Match | None:
    prefix = f"/{gh.repo}/actions/".lower()
    if not path.lower().startswith(prefix):
        return None
    return re.fullmatch(r"(runs|workflows)/([^/]+)/?", path[len(prefix) :])


def _oauth_web(path: str) -> bool:
    from fakegithub import oauth

    return oauth.is_web_path(path)


def _route(
    gh: FakeGitHub,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: object,
    raw: bytes = b"",
) -> Response:
    if _oauth_web(path):
        # The OAuth web flow is on the web host (github.com/login/oauth/..., or GHES's host
        # without /api/v3), not under the API.
        from fakegithub import oauth

        return oauth.web(gh, method, path, query, headers, raw)
    web = _web_match(gh, path)
    if web is not None and method in ("GET", "HEAD"):
        return _web_page(gh, web.group(1), web.group(2))
    api_path = _api_path(gh, path)
    if api_path is None:
        return error(404, "Not Found")
    with gh.state.lock:
        extra = {"x-github-api-version-selected": "2022-11-28"}
        if gh.ghes:
            extra["x-github-enterprise-version"] = "3.20.0"
        response = _api(gh, ApiRequest(method, query, headers, body, path=api_path), api_path)
        response.headers = {**extra, **response.headers}
        return response


def _web_page(gh: FakeGitHub, kind: str, ident: str) -> Response:
    html_type = "text/html; charset=utf-8"
    with gh.state.lock:
        if kind == "runs":
            run = gh.state.find_run(int(ident)) if ident.isdigit() else None
            if run is None:
                return Response(404, b"<h1>404 Not Found</h1>", content_type=html_type)
            page = shapes.run_page(run)
        else:
            page = shapes.workflow_page(gh, ident)
    return Response(200, page.encode(), content_type=html_type)


def _api(gh: FakeGitHub, req: ApiRequest, path: str) -> Response:
    route, params = find_route(gh.repo, req.method, path)
    if route is not None and not route.authenticated:
        return route.handler(gh, req, **params)

    kind, token = _authenticate(gh, req.headers)
    if kind is None and token is None and path == "/graphql":
        # GitHub's GraphQL endpoint words its 401 to a request without credentials its own way
        # (as answered in carbon-design-system/carbon-tutorial-angular#1142 and cli/cli#8729).
        from fakegithub import graphql

        return Response(
            401,
            {
                "message": "This endpoint requires you to be authenticated.",
                "documentation_url": graphql.AUTH_DOCS,
            },
        )
    if kind is None:
        message = "Requires authentication" if token is None else "Bad credentials"
        return error(401, message)
    auth_headers = {}
    # Only classic (and OAuth app) tokens have scopes; fine-grained tokens and GitHub Apps get no
    # x-oauth-scopes header (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#resource-not-accessible).
    if kind == "classic" and gh.scopes is not None:
        auth_headers["x-oauth-scopes"] = gh.scopes
        auth_headers["x-accepted-oauth-scopes"] = "repo"
    if kind == "oauth":
        from fakegithub import oauth

        login, scopes, _client = gh.state.accounts.tokens[token or ""]
        req.oauth = (login, scopes)
        req.actor = oauth.person(gh, login)
        auth_headers["x-oauth-scopes"] = ", ".join(sorted(scopes))
    else:
        req.actor = shapes.app_bot(gh) if kind == "installation" else shapes.fake_user(gh)

    limited = gh.secondary_points_per_minute is not None or gh.secondary_writes_per_minute is not None
    if route is not None and route.metered and limited:
        throttled = _secondary_limit(gh, req.method)
        if throttled is not None:
            return throttled
    metered = (route is None or route.metered) and gh.rate_limiting_enabled
    if metered and req.method != "GET" and gh.state.rate_remaining <= 0:
        return _rate_limited(gh, auth_headers)
    if route is None or not _can_see_repo(gh, kind, path):
        response = error(404, "Not Found")
    elif (refused := _permission_refusal(gh, kind, route)) is not None:
        response = refused
    else:
        response = route.handler(gh, req, **params)
    response.headers = {**auth_headers, **response.headers}
    return _finish(gh, req, response, spend=metered)


def _can_see_repo(gh: FakeGitHub, kind: str, path: str) -> bool:
    """Whether the token can see the emulated repository, when ``path`` is one of its. GitHub
    answers 404, not 403, to a token that cannot see a private repository
    (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api)."""
    if not path.lower().startswith(f"/repos/{gh.repo.lower()}"):
        return True
    visible = gh.installation_repositories if kind == "installation" else gh.token_repositories
    return visible is None or gh.repo.lower() in {name.lower() for name in visible}


_LEVELS = {"read": 1, "write": 2, "admin": 3}


def _permission_refusal(gh: FakeGitHub, kind: str, route: Route) -> Response | None:
    """GitHub's 403 to an installation or fine-grained token without the route's permission, with
    the x-accepted-github-permissions header naming it; classic tokens are governed by scopes.
    https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#resource-not-accessible"""
    if route.permission is None or kind in ("classic", "oauth"):
        return None
    name, _, level = route.permission.partition("=")
    granted = gh.installation_permissions if kind == "installation" else gh.fine_grained_permissions
    if _LEVELS.get(str(granted.get(name)), 0) >= _LEVELS[level]:
        return None
    holder = "integration" if kind == "installation" else "personal access token"
    response = error(403, f"Resource not accessible by {holder}")
    response.headers["x-accepted-github-permissions"] = route.permission
    return response


SECONDARY_LIMIT_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)


def _secondary_limit(
    gh: FakeGitHub, method: str, *, points_per_minute: int | None = None, graphql: bool = False
) -> Response | None:
    """Count this request against the secondary rate limits, or GitHub's refusal once a minute's
    points (or content-creating requests) are spent: 403 (or 429) with retry-after, while the
    primary limit may have plenty left. ``graphql``: a GraphQL query, counted against the GraphQL
    endpoint's own points a minute (``points_per_minute``), apart from the REST API's.
    https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit"""
    now = time.time()
    spent = gh.state.secondary_graphql_spent if graphql else gh.state.secondary_spent
    if not graphql:
        points_per_minute = gh.secondary_points_per_minute
    while spent and spent[0][0] <= now - 60:
        spent.popleft()
    writes = method not in ("GET", "HEAD", "OPTIONS")
    points = 5 if writes else 1
    # For each limit: what a minute allows, what this request costs, and what each counted one cost.
    limits = []
    if points_per_minute is not None:
        limits.append((points_per_minute, points, lambda entry: entry[1]))
    if writes and not graphql and gh.secondary_writes_per_minute is not None:
        limits.append((gh.secondary_writes_per_minute, 1, lambda entry: int(entry[2])))
    wait, refused = 0.0, False
    for allowed, cost, cost_of in limits:
        need = sum(cost_of(entry) for entry in spent) + cost - allowed
        if need <= 0:
            continue
        freed, until = 0, 60.0  # seconds until enough of the last minute's requests expire
        for entry in spent:
            freed += cost_of(entry)
            if freed >= need:
                until = entry[0] + 60 - now
                break
        wait, refused = max(wait, until), True
    if not refused:
        spent.append((now, points, writes))
        return None
    body = {
        "message": "You have exceeded a secondary rate limit. "
        "Please wait a few minutes before you try again. If you reach out to GitHub Support "
        "for help, please include the request ID FAKE:0000:0000000.",
        "documentation_url": SECONDARY_LIMIT_DOCS,
        "status": str(gh.secondary_limit_status),
    }
    headers = {**_rate_headers(gh), "retry-after": str(max(1, math.ceil(wait)))}
    return Response(gh.secondary_limit_status, body, headers)


def _authenticate(gh: FakeGitHub, headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(kind, token): kind is "classic", "fine_grained" (a ``github_pat_`` token), "installation",
    "oauth" (an OAuth app's user access token), or None when rejected."""
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token:
        return None, None
    token = token.strip()
    if token == gh.token:
        # Fine-grained personal access tokens start with github_pat_, classic ones with ghp_
        # (https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/about-authentication-to-github#githubs-token-formats).
        return ("fine_grained" if token.startswith("github_pat_") else "classic"), token
    expiry = gh.state.issued_tokens.get(token)
    if expiry is not None and expiry > time.time():
        return "installation", token
    if token in gh.state.accounts.tokens:
        # A user access token of an OAuth app (gho_...), from "Sign in with GitHub".
        return "oauth", token
    return None, token


def _finish(gh: FakeGitHub, req: ApiRequest, response: Response, spend: bool) -> Response:
    """Add the ETag (answering 304 to a matching If-None-Match) and spend the rate limit."""
    encoded = None
    if req.method == "GET" and response.status == 200:
        encoded = encode(response.body)
        # GitHub's ETags are specific to the token that got them: another token's ETag (a
        # rotated installation token, another process's) answers 200 and spends the limit.
        digest = hashlib.sha256(req.headers.get("authorization", "").encode() + b"\n" + encoded)
        etag = f'W/"{digest.hexdigest()[:40]}"'
        response.headers["ETag"] = etag
        wanted = req.headers.get("if-none-match", "")
        candidates = {c.strip().removeprefix("W/") for c in wanted.split(",") if c.strip()}
        if etag.removeprefix("W/") in candidates or "*" in candidates:
            response.status, response.body = 304, None
            response.headers.update(_rate_headers(gh))
            return response
    if spend:
        if gh.state.rate_remaining <= 0:
            return _rate_limited(gh, {k: v for k, v in response.headers.items() if k.startswith("x-")})
        gh.state.rate_remaining -= 1
    if response.headers.get("x-ratelimit-resource") != "graphql":  # a GraphQL answer has its own
        response.headers.update(_rate_headers(gh))
    if encoded is not None:
        response.body = encoded
    return response


def _rate_limited(gh: FakeGitHub, headers: dict) -> Response:
    body = {"message": "API rate limit exceeded for user ID 1.", "documentation_url": RATE_LIMIT_DOCS}
    return Response(403, body, {**headers, **shapes.rate_headers(gh.state)})


def _rate_headers(gh: FakeGitHub) -> dict:
    """The x-ratelimit-* headers; none from a server whose rate limiting is disabled (GHES's
    default): its 404 to /rate_limit in vermiculus/magithub#104 carries none."""
    return shapes.rate_headers(gh.state) if gh.rate_limiting_enabled else {}


def encode(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


# --- the HTTP server ------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    gh: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the headers and the body are two writes; with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers (~40 ms a call on loopback), which
    # GitHub's servers do not add. It skewed every latency the bench measured.
    disable_nagle_algorithm = True
    server: _Server

    def version_string(self) -> str:
        return "GitHub.com"

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = handle(self.server.gh, self.command, self.path, headers, raw)
        if response is DROP:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.status in (204, 304):
            self.end_headers()
            return
        body = encode(response.body)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


def make_server(gh: FakeGitHub, port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 answering for ``gh`` (0 = any free port); call serve_forever()."""
    httpd = _Server(("127.0.0.1", port), _Handler)
    httpd.gh = gh
    return httpd
