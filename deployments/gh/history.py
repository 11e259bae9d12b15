"""The git history of a pod's spec.yml: the commits that changed it, and its content at one of them.

The list is GitHub's "List commits" with ``path`` and ``sha`` (DEPLOY_REF), a page at a time:
https://docs.github.com/en/rest/commits/commits#list-commits. Each page's answer is kept in
Django's cache (shared by all workers) with its ETag, and asked again with If-None-Match: an
unchanged history answers 304, which costs no rate limit. A version's content is read once, by the
contents API at that commit (``?ref=<sha>``), and kept for ever (a commit never changes):
https://docs.github.com/en/rest/repos/contents#get-repository-content

Everything GitHub answers is checked for type and cut to a bounded length: a page shows it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache

from .client import _call, _repo_url, state, web_url
from .errors import GitHubAPIError, GitHubNotFoundError

PER_PAGE = 30
MAX_PAGE = 100  # 3,000 commits of one spec.yml: further back, GitHub's own page is the place
MESSAGE_LIMIT = 500
NAME_LIMIT = 100
# How big a spec.yml the portal reads (podspec.MAX_SPEC_BYTES; gh imports no project module).
MAX_SPEC_BYTES = 4096

_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REQUEST_ID_RE = re.compile(r"\[([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class SpecCommit:
    """One commit that changed the spec.yml. ``request_id`` is the ``[<uuid>]`` a portal deploy
    puts in its commit message ("" when there is none); ``url`` is "" unless it is a commit page
    of GH_REPO on the configured GitHub."""

    sha: str
    author: str
    date: dt.datetime | None
    message: str
    url: str
    request_id: str

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass(frozen=True)
class HistoryPage:
    commits: tuple[SpecCommit, ...]
    page: int
    has_next: bool


@dataclass(frozen=True)
class SpecVersion:
    """spec.yml at one commit: ``text`` is None when there was no spec.yml there, or it was larger
    than a spec may be (``too_large``)."""

    commit: str
    blob_sha: str
    text: str | None
    too_large: bool = False


def _key(*parts: object) -> str:
    config = "|".join(str(p) for p in (settings.GITHUB_API_URL, settings.GH_REPO, *parts))
    return "spec-history:v1:" + hashlib.sha256(config.encode()).hexdigest()[:40]


def spec_commits(path: str, *, page: int = 1) -> HistoryPage:
    """Page ``page`` (newest first, PER_PAGE a page) of the commits on DEPLOY_REF that changed
    ``path``. One conditional request: a 304 (free) when the history has not changed.

    Raises the portal's GitHubError subclasses when GitHub cannot be asked or answers nonsense.
    """
    page = max(1, min(MAX_PAGE, page))
    key = _key("commits", settings.DEPLOY_REF, path, page, PER_PAGE)
    cached = cache.get(key)
    requester = state.client(writes=False).requester
    headers = {"If-None-Match": cached["etag"]} if cached and cached.get("etag") else {}
    params = {"sha": settings.DEPLOY_REF, "path": path, "per_page": str(PER_PAGE), "page": str(page)}
    url = _repo_url("/commits")

    def fetch() -> tuple[int, dict[str, str], Any]:
        status, resp_headers, body = requester.requestJson("GET", url, params, headers)
        resp_headers = {k.lower(): v for k, v in resp_headers.items()}
        if status == 304:
            return status, resp_headers, None
        try:
            data = json.loads(body) if body else None
        except ValueError:  # e.g. a proxy's HTML error page
            data = {"message": f"non-JSON answer (HTTP {status})"}
        if status >= 400:
            raise requester.createException(
                status, resp_headers, data if isinstance(data, dict) else {"message": f"HTTP {status}"}
            )
        return status, resp_headers, data

    status, resp_headers, data = _call(
        fetch,
        not_found=f"Branch '{settings.DEPLOY_REF}' of repository '{settings.GH_REPO}' was not found. "
        "Check GH_REPO and DEPLOY_REF.",
    )
    if status == 304 and cached:
        return _page(cached, page)
    if not isinstance(data, list):
        raise GitHubAPIError(f"GitHub's list of the commits of {path} is not shaped like a list.")
    kept = {
        "etag": resp_headers.get("etag") if isinstance(resp_headers.get("etag"), str) else None,
        "commits": [c for c in (_commit(item) for item in data[:PER_PAGE]) if c is not None],
        "has_next": 'rel="next"' in str(resp_headers.get("link", "")),
    }
    cache.set(key, kept, timeout=7 * 24 * 3600)
    return _page(kept, page)


def _page(kept: dict[str, Any], page: int) -> HistoryPage:
    return HistoryPage(commits=tuple(kept["commits"]), page=page, has_next=bool(kept["has_next"]))


def _commit(item: object) -> SpecCommit | None:
    if not isinstance(item, dict) or not isinstance(item.get("sha"), str):
        return None
    sha = item["sha"]
    if not _SHA_RE.fullmatch(sha):
        return None
    detail = _dict(item.get("commit"))
    author = _dict(detail.get("author"))
    login = _dict(item.get("author")).get("login")
    message = _text(detail.get("message"), MESSAGE_LIMIT)
    found = _REQUEST_ID_RE.search(message)
    expected_url = f"{web_url()}/{settings.GH_REPO}/commit/{sha}"
    return SpecCommit(
        sha=sha,
        author=_text(login, NAME_LIMIT) or _text(author.get("name"), NAME_LIMIT) or "unknown",
        date=_date(author.get("date")),
        message=message,
        url=expected_url if item.get("html_url") == expected_url else "",
        request_id=found.group(1) if found else "",
    )


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object, limit: int) -> str:
    """A string from GitHub without control characters (newlines kept), at most ``limit`` long."""
    if not isinstance(value, str):
        return ""
    text = _CONTROL.sub(" ", value[: limit * 4]).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _date(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def spec_at(commit: str, path: str) -> SpecVersion:
    """spec.yml ``path`` as it was at ``commit``; read from GitHub once, then from the cache.

    GitHub's 404 (no such file at that commit, or no such commit) is a version without a spec.yml.
    Raises ValueError for a ``commit`` that is not a git object id, and GitHubError as usual.
    """
    if not _SHA_RE.fullmatch(commit):
        raise ValueError(f"not a commit id: {commit!r}")
    key = _key("spec-at", commit, path)
    cached = cache.get(key)
    if isinstance(cached, SpecVersion):
        return cached
    requester = state.client(writes=False).requester
    url = _repo_url(f"/contents/{quote(path)}")
    try:
        _, data = _call(lambda: requester.requestJsonAndCheck("GET", url, {"ref": commit}))
    except GitHubNotFoundError:
        version = SpecVersion(commit=commit, blob_sha="", text=None)
        cache.set(key, version, timeout=None)
        return version
    if (
        not isinstance(data, dict)
        or data.get("type") != "file"
        or not _SHA_RE.fullmatch(str(data.get("sha")))
    ):
        raise GitHubAPIError(f"GitHub's answer for {path} at {commit[:7]} is not a file.")
    size = data.get("size")
    content = data.get("content")
    if type(size) is not int or size > MAX_SPEC_BYTES or not isinstance(content, str):
        version = SpecVersion(commit=commit, blob_sha=data["sha"], text=None, too_large=True)
    else:
        try:
            raw = base64.b64decode(content[: MAX_SPEC_BYTES * 2], validate=False)
        except ValueError:
            raise GitHubAPIError(f"GitHub's answer for {path} at {commit[:7]} is not valid base64.") from None
        if len(raw) > MAX_SPEC_BYTES:
            version = SpecVersion(commit=commit, blob_sha=data["sha"], text=None, too_large=True)
        else:
            text = raw.decode("utf-8", errors="replace")
            version = SpecVersion(commit=commit, blob_sha=data["sha"], text=text)
    cache.set(key, version, timeout=None)
    return version
