"""Commits: the list of a branch's commits, optionally only those that changed one path.

``GET /repos/{owner}/{repo}/commits`` with ``sha`` ("SHA or branch to start listing commits
from", default the default branch), ``path`` ("Only commits containing this file path will be
returned"), ``per_page`` and ``page``; newest first, paginated with a Link header like every list.
https://docs.github.com/en/rest/commits/commits#list-commits

A commit "contains" a file path when it changed what is at that path (added, modified or removed
it), as ``git log -- <path>`` lists them; on this emulator's linear history that is a commit
whose content at ``path`` differs from its parent's. ``path`` may name a directory too. Its
ETag comes from the answer like every GET (routes._finish): an unchanged history answers 304.

The commit shape is the endpoint's ("commit" with author, committer, message and tree; the top
level "author"/"committer" are GitHub accounts, null when the commit's e-mail belongs to none, as
here: the emulator commits as "fakegithub <fakegithub@example.invalid>", see _git.commit_sha).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fakegithub import shapes
from fakegithub.routes import ApiRequest, Response, Route, error, paginate

if TYPE_CHECKING:
    from fakegithub.server import FakeGitHub

AUTHOR = {"name": "fakegithub", "email": "fakegithub@example.invalid"}


def _content_at(gh: FakeGitHub, sha: str | None, path: str) -> object:
    """What is at ``path`` in commit ``sha``: a file's bytes, a directory's tree SHA, or None."""
    if sha is None:
        return None
    snap = gh.state.snapshots[sha]
    if path in snap.files:
        return snap.files[path]
    return snap.dirs.get(path)


def _history(gh: FakeGitHub, start: str) -> list[str]:
    """The commits reachable from ``start``, newest first (the emulator's history is linear)."""
    shas = []
    sha: str | None = start
    while sha is not None:
        shas.append(sha)
        sha = gh.state.commits[sha]["parent"]
    return shas


def commit(gh: FakeGitHub, sha: str) -> dict:
    data = gh.state.commits[sha]
    api = f"{gh.api_url}/repos/{gh.repo}"
    web = f"{gh.url}/{gh.repo}"
    who = {**AUTHOR, "date": shapes.iso(data["time"])}
    parents = [data["parent"]] if data["parent"] else []
    return {
        "sha": sha,
        "node_id": shapes.node_id("C", sha),
        "url": f"{api}/commits/{sha}",
        "html_url": f"{web}/commit/{sha}",
        "comments_url": f"{api}/commits/{sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{sha}",
            "author": who,
            "committer": dict(who),
            "message": data["message"],
            "tree": {"sha": data["tree"], "url": f"{api}/git/trees/{data['tree']}"},
            "comment_count": 0,
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
        },
        "author": None,
        "committer": None,
        "parents": [
            {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{web}/commit/{p}"} for p in parents
        ],
    }


def list_commits(gh: FakeGitHub, req: ApiRequest) -> Response:
    start = gh.state.resolve(req.query.get("sha") or None)
    if start is None:
        # GitHub's answer for a sha or branch that does not exist.
        return error(404, f"No commit found for SHA: {req.query.get('sha')}")
    shas = _history(gh, start)
    path = (req.query.get("path") or "").strip("/")
    if path:
        shas = [
            sha
            for sha in shas
            if _content_at(gh, sha, path) != _content_at(gh, gh.state.commits[sha]["parent"], path)
        ]
    try:
        chosen, links = paginate(gh, req, shas)
    except ValueError:
        return error(422, "Invalid pagination parameter")
    return Response(200, [commit(gh, sha) for sha in chosen], links)


ROUTES: tuple[Route, ...] = (
    # "Fine-grained access tokens ... Contents repository permissions (read)", on the endpoint's page.
    Route("GET", r"/repos/{repo}/commits", list_commits, permission="contents=read"),
)
