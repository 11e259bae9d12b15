"""Reading pod specs: the spec.yml blobs under SPECS_PATH, listed by that tree's SHA, read by SHA."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache

from .client import _call, _conditional_get, _repo_url, state
from .errors import GitHubAPIError, _rate_limited

logger = logging.getLogger(__name__)

# Parallel sub-tree listings when GitHub truncates the SPECS_PATH tree (see _specs_under).
TREE_WALK_WORKERS = 8

# Blobs named in one GraphQL query (get_blob_texts). The query uses no connection, so whatever
# the number of blobs it costs 1 point of the GraphQL rate limit ("The minimum point value of a
# call to the GraphQL API is 1"; 5,000 points an hour for a token, separate from the REST
# limit) and 1 point of the secondary limit (2,000 a minute for GraphQL), and the 500,000-node
# limit (which counts connection nodes) does not apply. GitHub ends a query after 10 seconds
# (502 or 504) and may end one "requesting thousands of objects" with partial results and an
# error: specs are read only when their tree entry says at most MAX_SPEC_BYTES (4 KiB), so a
# batch is at most ~4 MB of text.
# https://docs.github.com/en/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api
GRAPHQL_BATCH = 1000

# What is asked of each blob. Blob.text is "UTF8 text data or null if the Blob is binary", and
# isTruncated flags a text cut short (at 512,000 bytes, as sveltia/sveltia-cms#950 measured).
# https://docs.github.com/en/graphql/reference/objects#blob
_BLOB_FRAGMENT = "fragment spec on Blob { oid byteSize isBinary isTruncated text }"


@dataclass(frozen=True)
class TreeEntry:
    path: str
    sha: str
    size: int  # bytes, from the tree: a blob can be refused without downloading it


@dataclass(frozen=True)
class SpecTree:
    """The blobs under SPECS_PATH; ``etag`` makes the next listing a conditional request.

    ``sha`` is the SPECS_PATH tree's own id ("" when DEPLOY_REF has no SPECS_PATH): the same id
    always holds the same blobs. ``listed`` is False when it was the ``known_sha`` asked with, so
    its blobs were not listed again and ``entries`` is empty.
    """

    etag: str | None
    entries: tuple[TreeEntry, ...]
    truncated: bool = False
    sha: str = ""
    listed: bool = True


def get_spec_tree(*, etag: str | None = None, known_sha: str | None = None) -> SpecTree | None:
    """The spec.yml blobs under SPECS_PATH at DEPLOY_REF.

    The root tree at DEPLOY_REF is read without recursion (it changes with every commit) to find
    the SPECS_PATH tree's SHA, and only that tree is listed recursively: files elsewhere in the
    repository neither cost anything nor make GitHub truncate the listing. With ``etag`` the
    root call is conditional: an unchanged repository answers 304 (free of rate limit) and this
    returns None. A commit outside SPECS_PATH leaves its SHA at ``known_sha``: nothing more is
    asked.
    """
    result = _conditional_get(
        _repo_url(f"/git/trees/{quote(settings.DEPLOY_REF, safe='')}"),
        {},
        etag=etag,
        not_found=f"Branch '{settings.DEPLOY_REF}' of repository '{settings.GH_REPO}' was not found. "
        "Check GH_REPO and DEPLOY_REF.",
    )
    if result is None:
        return None
    etag, data = result
    sha = ""
    for depth, name in enumerate(settings.SPECS_PATH.split("/")):
        if depth:
            data = _tree(sha, recursive=False)
        found = next((item for item in _items(data) if item.get("path") == name), None)
        if found is None or found.get("type") != "tree" or not _is_sha(found.get("sha")):
            # No SPECS_PATH (no pods yet), unless GitHub left it out of a truncated listing.
            return SpecTree(etag=etag, entries=(), truncated=data.get("truncated") is True)
        sha = found["sha"]
    if sha == known_sha:
        return SpecTree(etag=etag, entries=(), sha=sha, listed=False)
    entries, truncated = _specs_under(sha, settings.SPECS_PATH, levels=2)
    return SpecTree(etag=etag, entries=tuple(entries), truncated=truncated, sha=sha)


def _specs_under(sha: str, path: str, *, levels: int) -> tuple[list[TreeEntry], bool]:
    """The spec.yml blobs ``levels`` directories below tree ``sha`` (found at ``path``), and
    whether GitHub cut the listing short even one sub-tree at a time.

    One recursive listing, unless GitHub truncates it (past 100,000 entries or 7 MB). Then, as
    GitHub's "Get a tree" says: "If truncated is true in the response then the number of items in
    the tree array exceeded our maximum limit. If you need to fetch more items, use the
    non-recursive method of fetching trees, and fetch one sub-tree at a time."
    https://docs.github.com/en/rest/git/trees#get-a-tree
    """
    data = _tree(sha, recursive=True)
    entries = _spec_entries(data, path, levels)
    if data.get("truncated") is not True:
        return entries, False
    level = _tree(sha, recursive=False)
    if level.get("truncated") is True:
        return entries, True  # the best GitHub gives: what its recursive answer held
    entries = _spec_entries(level, path, levels)
    subtrees = [
        item
        for item in _items(level)
        if levels
        and item.get("type") == "tree"
        and _is_sha(item.get("sha"))
        and isinstance(item.get("path"), str)
    ]
    if not subtrees:
        return entries, False
    # A tree's id names its content: a sub-tree listed before under the same id holds the same
    # specs. Those are reused, so once the walk has been made, a change costs the changed
    # customers' trees only, not one request per customer.
    keys = {item["sha"]: f"specs-tree:{item['sha']}:{levels - 1}" for item in subtrees}
    known = cache.get_many(sorted(set(keys.values())))
    missing = []
    for item in subtrees:
        listed = known.get(keys[item["sha"]])
        if listed is None:
            missing.append(item)
        else:
            base = f"{path}/{item['path']}"
            entries += [TreeEntry(path=f"{base}/{rel}", sha=sha, size=size) for rel, sha, size in listed]
    truncated, fresh = False, {}
    if missing:
        with ThreadPoolExecutor(max_workers=min(TREE_WALK_WORKERS, len(missing))) as pool:
            walks = pool.map(
                lambda item: _specs_under(item["sha"], f"{path}/{item['path']}", levels=levels - 1), missing
            )
            for item, (found, cut) in zip(missing, walks, strict=True):
                entries += found
                truncated = truncated or cut
                if not cut:
                    start = len(path) + len(item["path"]) + 2  # past "<path>/<dir>/"
                    fresh[keys[item["sha"]]] = [(e.path[start:], e.sha, e.size) for e in found]
    if fresh:
        cache.set_many(fresh, timeout=None)
    return entries, truncated


def _tree(sha: str, *, recursive: bool) -> dict[str, Any]:
    result = _conditional_get(
        _repo_url(f"/git/trees/{sha}"),
        {"recursive": "1"} if recursive else {},
        etag=None,
        not_found=f"Tree {sha} of repository '{settings.GH_REPO}' was not found.",
    )
    assert result is not None  # unconditional: never a 304
    return result[1]


def _items(data: dict[str, Any]) -> list[dict[str, Any]]:
    tree = data.get("tree")
    return [item for item in tree if isinstance(item, dict)] if isinstance(tree, list) else []


def _spec_entries(data: dict[str, Any], path: str, levels: int) -> list[TreeEntry]:
    """The ``<dir>/…/spec.yml`` blobs ``levels`` directories deep in a tree listing at ``path``."""
    return [
        TreeEntry(path=f"{path}/{item['path']}", sha=item["sha"], size=_size(item.get("size")))
        for item in _items(data)
        if item.get("type") == "blob"
        and isinstance(item.get("path"), str)
        and item["path"].count("/") == levels
        and item["path"].rsplit("/", 1)[-1] == "spec.yml"
        and _is_sha(item.get("sha"))
    ]


def _is_sha(value: object) -> bool:
    return isinstance(value, str) and _SHA_RE.fullmatch(value) is not None


# A git object id: SHA-1, or SHA-256 in a repository that uses it.
_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _size(value: object) -> int:
    """A blob's size from its tree entry; unknown or nonsense counts as too large to fetch."""
    return value if type(value) is int and value >= 0 else sys.maxsize


def get_blob_text(sha: str) -> str:
    """One blob's text, by its SHA (content-addressed: cache it forever)."""
    requester = state.client(writes=False).requester
    if not _SHA_RE.fullmatch(sha):
        raise ValueError(f"not a git object id: {sha!r}")
    _, data = _call(lambda: requester.requestJsonAndCheck("GET", _repo_url(f"/git/blobs/{sha}")))
    content = data.get("content") if isinstance(data, dict) else None
    if not isinstance(content, str):
        raise GitHubAPIError(f"GitHub's answer for blob {sha} has no content.")
    if data.get("encoding") != "base64":
        return content
    try:
        return base64.b64decode(content, validate=False).decode("utf-8", errors="replace")
    except ValueError:
        raise GitHubAPIError(f"GitHub's answer for blob {sha} is not valid base64.") from None


def get_blob_texts(shas: Sequence[str]) -> dict[str, str]:
    """The texts of blobs ``shas`` (at most GRAPHQL_BATCH), read in one GraphQL query.

    ``POST /graphql`` (``/api/graphql`` on GHES: PyGithub's ``graphql_url``) with one aliased
    ``object(oid:)`` per blob. Left out of the answer, for the caller to read one by one: a blob
    GitHub says is binary or truncated, one its answer did not include (an error on that alias,
    partial results), and one whose text does not hash to its SHA (GitHub's answer is checked,
    not trusted). Raises GitHubError when the query as a whole failed: an HTTP error or timeout,
    an ``errors`` array with no repository data, or an answer not shaped as GitHub's schema says.
    """
    for sha in shas:
        if not _SHA_RE.fullmatch(sha):
            raise ValueError(f"not a git object id: {sha!r}")
    if not shas:
        return {}
    owner, _, name = settings.GH_REPO.partition("/")
    aliases = " ".join(f'b{i}: object(oid: "{sha}") {{ ...spec }}' for i, sha in enumerate(shas))
    query = (
        "query($owner: String!, $name: String!) { repository(owner: $owner, name: $name) "
        f"{{ {aliases} }} }} {_BLOB_FRAGMENT}"
    )
    requester = state.client(writes=False).requester

    def post() -> tuple[dict[str, str], object]:
        core = requester.rate_limiting, requester.rate_limiting_resettime
        status, headers, body = requester.requestJson(
            "POST", requester.graphql_url, input={"query": query, "variables": {"owner": owner, "name": name}}
        )
        if requester.rate_limiting != core[0] and requester.rate_limiting == _figures(headers):
            # The answer's x-ratelimit-* are the GraphQL limit's ("x-ratelimit-resource: For
            # GraphQL requests, this will always be graphql"), whether or not a proxy kept that
            # header: keep the REST limit's figures, which the per-spec reads and
            # INVENTORY_RATE_LIMIT_RESERVE go by, unless another thread's REST answer has set
            # newer ones meanwhile (the client is shared).
            requester.rate_limiting, requester.rate_limiting_resettime = core
        try:
            data = json.loads(body) if body else None
        except ValueError:  # e.g. a proxy's HTML error page
            data = None
        if status >= 400:
            message = data if isinstance(data, dict) else {"message": f"non-JSON answer (HTTP {status})"}
            raise requester.createException(status, headers, message)
        return {k.lower(): v for k, v in headers.items()}, data

    headers, data = _call(post, not_found=f"GitHub's GraphQL API was not found at {requester.graphql_url}.")
    found = data.get("data") if isinstance(data, dict) else None
    repository = found.get("repository") if isinstance(found, dict) else None
    if not isinstance(repository, dict):
        if _secondary_limited(data):
            # "If you exceed a secondary rate limit, the response status will be 200 or 403, and
            # you will receive an error message that indicates that you hit a secondary rate limit"
            # https://docs.github.com/en/graphql/overview/rate-limits-and-query-limits-for-the-graphql-api#exceeding-the-rate-limit
            raise _rate_limited(headers)
        raise GitHubAPIError(f"GitHub's GraphQL API did not return the specs: {_graphql_errors(data)}")
    texts = {}
    for index, sha in enumerate(shas):
        blob = repository.get(f"b{index}")
        if not isinstance(blob, dict) or blob.get("oid") != sha or blob.get("isTruncated") is not False:
            continue
        text = blob.get("text")
        if isinstance(text, str) and _blob_id(text, sha) == sha:
            texts[sha] = text
    if len(texts) < len(shas) and isinstance(data, dict) and data.get("errors"):
        # Partial results: what GitHub said about the blobs it left out (e.g. FORBIDDEN for a
        # token without Contents: read, a resource limit), for the log; the caller reads them by REST.
        logger.warning(
            "GitHub's GraphQL API left out %d of %d blobs: %s",
            len(shas) - len(texts),
            len(shas),
            _graphql_errors(data),
        )
    return texts


def _blob_id(text: str, like: str) -> str | None:
    """The git object id of a blob holding ``text`` in UTF-8 (SHA-1, or SHA-256 like ``like``)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: not what the blob holds
        return None
    digest = hashlib.sha1 if len(like) == 40 else hashlib.sha256
    return digest(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _figures(headers: dict[str, str]) -> tuple[int, int] | None:
    """(remaining, limit) as PyGithub reads them from an answer's x-ratelimit-* headers."""
    said = {k.lower(): v for k, v in headers.items()}
    try:
        return int(float(said["x-ratelimit-remaining"])), int(float(said["x-ratelimit-limit"]))
    except (KeyError, ValueError, OverflowError):
        return None


def _secondary_limited(data: object) -> bool:
    """Whether a GraphQL answer's ``errors`` say a secondary rate limit refused the query (GitHub's
    words: "You have exceeded a secondary rate limit")."""
    errors = data.get("errors") if isinstance(data, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and "secondary rate limit" in str(e.get("message", ""))[:500].lower()
        for e in errors
    )


def _graphql_errors(data: object) -> str:
    """What a GraphQL answer's ``errors`` say, briefly (GitHub's words, untrusted: shortened)."""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors:
        return "the answer is not shaped as GitHub's schema says."
    first = errors[0] if isinstance(errors[0], dict) else {}
    kind, message = first.get("type"), first.get("message")
    said = " ".join(" ".join(part.split()) for part in (kind, message) if isinstance(part, str) and part)
    return (said[:200] or "an error") + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")


def rate_limit_remaining() -> int | None:
    """Requests left in the rate limit as GitHub's last answer said, without asking again (None
    when unknown, or when the server sends no rate-limit headers, as GHES with it disabled)."""
    remaining, _ = state.client(writes=False).requester.rate_limiting
    return remaining if remaining >= 0 else None
