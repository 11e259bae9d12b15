"""Reading pod specs: the spec.yml blobs under SPECS_PATH, listed in one call, read by SHA."""

from __future__ import annotations

import base64
import re
import sys
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

from .client import _call, _conditional_get, _repo_url, state
from .errors import GitHubAPIError


@dataclass(frozen=True)
class TreeEntry:
    path: str
    sha: str
    size: int  # bytes, from the tree: a blob can be refused without downloading it


@dataclass(frozen=True)
class SpecTree:
    """The blobs under SPECS_PATH; ``etag`` makes the next listing a conditional request."""

    etag: str | None
    entries: tuple[TreeEntry, ...]
    truncated: bool = False


def get_spec_tree(*, etag: str | None = None) -> SpecTree | None:
    """The spec.yml blobs under SPECS_PATH at DEPLOY_REF, in one call.

    With ``etag`` the call is conditional: an unchanged repository answers 304 (free of rate
    limit) and this returns None.
    """
    result = _conditional_get(
        _repo_url(f"/git/trees/{quote(settings.DEPLOY_REF, safe='')}"),
        {"recursive": "1"},
        etag=etag,
        not_found=f"Branch '{settings.DEPLOY_REF}' of repository '{settings.GH_REPO}' was not found. "
        "Check GH_REPO and DEPLOY_REF.",
    )
    if result is None:
        return None
    etag, data = result
    prefix = settings.SPECS_PATH + "/"
    tree = data.get("tree")
    entries = tuple(
        TreeEntry(path=item["path"], sha=item["sha"], size=_size(item.get("size")))
        for item in (tree if isinstance(tree, list) else [])
        if isinstance(item, dict)
        and item.get("type") == "blob"
        and isinstance(item.get("path"), str)
        and item["path"].startswith(prefix)
        and item["path"].endswith("/spec.yml")
        and isinstance(item.get("sha"), str)
        and _SHA_RE.fullmatch(item["sha"])
    )
    return SpecTree(etag=etag, entries=entries, truncated=data.get("truncated") is True)


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


def rate_limit_remaining() -> int | None:
    """Requests left in the rate limit as GitHub's last answer said, without asking again (None
    when unknown, or when the server sends no rate-limit headers, as GHES with it disabled)."""
    remaining, _ = state.client(writes=False).requester.rate_limiting
    return remaining if remaining >= 0 else None
