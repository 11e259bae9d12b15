"""Reading pod specs: the spec.yml blobs under SPECS_PATH, listed in one call, read by SHA."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings

from .client import _call, _conditional_get, _repo_url, state


@dataclass(frozen=True)
class TreeEntry:
    path: str
    sha: str


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
    entries = tuple(
        TreeEntry(path=item["path"], sha=item["sha"])
        for item in data.get("tree", [])
        if item.get("type") == "blob"
        and item["path"].startswith(prefix)
        and item["path"].endswith("/spec.yml")
    )
    return SpecTree(etag=etag, entries=entries, truncated=bool(data.get("truncated")))


def get_blob_text(sha: str) -> str:
    """One blob's text, by its SHA (content-addressed: cache it forever)."""
    requester = state.client(writes=False).requester
    _, data = _call(lambda: requester.requestJsonAndCheck("GET", _repo_url(f"/git/blobs/{sha}")))
    if data.get("encoding") == "base64":
        return base64.b64decode(data["content"]).decode("utf-8", errors="replace")
    return str(data.get("content", ""))
