"""The JSON (and the two HTML pages) the emulator answers with, shaped as GitHub's OpenAPI schemas.

Plain functions of the emulator's current state; tests/fakegithub/test_openapi_shapes.py checks
them against GitHub's published schemas.
"""

from __future__ import annotations

import base64
import html
import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from fakegithub._git import Entry
from fakegithub.state import BASE_TIME, Run, State
from fakegithub.workflow import WORKFLOW_PATH

if TYPE_CHECKING:
    from fakegithub.jobs import Annotation, JobSpec
    from fakegithub.server import FakeGitHub

REPO_ID = 700100200
OWNER_ID = 9919
USER_ID = 1
BOT_ID = 41898282
WORKFLOW_ID = 161335


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def b64(data: bytes) -> str:
    """Base64 wrapped at 60 characters per line, as GitHub sends file content."""
    text = base64.b64encode(data).decode()
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


def node_id(kind: str, value: object) -> str:
    return kind + "_" + base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


# --- accounts, repository, workflow, runs ---------------------------------------------------------


def user(gh: FakeGitHub, login: str, user_id: int, kind: str = "User") -> dict:
    api = f"{gh.api_url}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": node_id("U", user_id),
        "avatar_url": f"{gh.url}/avatars/{login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{gh.url}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def fake_user(gh: FakeGitHub) -> dict:
    """Who a classic token belongs to."""
    return user(gh, "fake-user", USER_ID)


def app_bot(gh: FakeGitHub) -> dict:
    """Who an installation token belongs to."""
    return user(gh, "deploy-portal[bot]", BOT_ID, "Bot")


def repository(gh: FakeGitHub, permissions: bool = True) -> dict:
    api = f"{gh.api_url}/repos/{gh.repo}"
    web = f"{gh.url}/{gh.repo}"
    created = iso(BASE_TIME)
    pushed = iso(gh.state.commits[gh.state.head]["time"])
    data = {
        "id": REPO_ID,
        "node_id": node_id("R", REPO_ID),
        "name": gh.repo_name,
        "full_name": gh.repo,
        "private": True,
        "owner": user(gh, gh.owner, OWNER_ID, "Organization"),
        "html_url": web,
        "description": "Pod specs (fakegithub)",
        "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}",
        "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments",
        "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events",
        "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_url": f"git://{gh.url.split('://', 1)[-1]}/{gh.repo}.git",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}",
        "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}",
        "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}",
        "ssh_url": f"git@127.0.0.1:{gh.repo}.git",
        "stargazers_url": f"{api}/stargazers",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags",
        "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"{web}.git",
        "mirror_url": None,
        "hooks_url": f"{api}/hooks",
        "svn_url": web,
        "homepage": None,
        "language": None,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "size": 1,
        "default_branch": "main",
        "open_issues_count": 0,
        "is_template": False,
        "topics": [],
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": True,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private",
        "pushed_at": pushed,
        "created_at": created,
        "updated_at": pushed,
        "allow_forking": False,
        "web_commit_signoff_required": False,
        "license": None,
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "network_count": 0,
        "subscribers_count": 1,
    }
    if permissions:
        data["permissions"] = {
            "admin": False,
            "maintain": False,
            "push": True,
            "triage": True,
            "pull": True,
        }
    return data


def workflow(gh: FakeGitHub) -> dict:
    api = f"{gh.api_url}/repos/{gh.repo}/actions/workflows/{WORKFLOW_ID}"
    return {
        "id": WORKFLOW_ID,
        "node_id": node_id("W", WORKFLOW_ID),
        "name": gh.workflow_def.name,
        "path": WORKFLOW_PATH,
        "state": gh.workflow_state or "active",
        "created_at": iso(BASE_TIME),
        "updated_at": iso(BASE_TIME),
        "url": api,
        "html_url": f"{gh.url}/{gh.repo}/blob/main/{WORKFLOW_PATH}",
        "badge_url": f"{gh.url}/{gh.repo}/workflows/{quote(gh.workflow_def.name)}/badge.svg",
    }


def workflow_run(gh: FakeGitHub, run: Run) -> dict:
    api = f"{gh.api_url}/repos/{gh.repo}"
    run_api = f"{api}/actions/runs/{run.id}"
    commit = gh.state.commits.get(run.head_sha, {})
    committer = {"name": "fakegithub", "email": "fakegithub@example.invalid"}
    repo = repository(gh, permissions=False)
    check_suite_id = 20000000000 + run.id
    return {
        "id": run.id,
        "name": gh.workflow_def.name,
        "node_id": node_id("WFR", run.id),
        "head_branch": "main",
        "head_sha": run.head_sha,
        "path": WORKFLOW_PATH,
        "display_title": run.display_title,
        "run_number": run.run_number,
        "event": "workflow_dispatch",
        "status": run.status,
        "conclusion": run.conclusion,
        "workflow_id": WORKFLOW_ID,
        "check_suite_id": check_suite_id,
        "check_suite_node_id": node_id("CS", check_suite_id),
        "url": run_api,
        "html_url": f"{gh.url}/{gh.repo}/actions/runs/{run.id}",
        "pull_requests": [],
        "created_at": iso(run.created),
        "updated_at": iso(run.updated),
        "actor": run.actor,
        "run_attempt": run.attempt,
        "referenced_workflows": [],
        "run_started_at": iso(run.started),
        "triggering_actor": run.actor,
        "jobs_url": f"{run_api}/jobs",
        "logs_url": f"{run_api}/logs",
        "check_suite_url": f"{api}/check-suites/{check_suite_id}",
        "artifacts_url": f"{run_api}/artifacts",
        "cancel_url": f"{run_api}/cancel",
        "rerun_url": f"{run_api}/rerun",
        "previous_attempt_url": f"{run_api}/attempts/{run.attempt - 1}" if run.attempt > 1 else None,
        "workflow_url": f"{api}/actions/workflows/{WORKFLOW_ID}",
        "head_commit": {
            "id": run.head_sha,
            "tree_id": commit.get("tree", ""),
            "message": commit.get("message", ""),
            "timestamp": iso(commit.get("time", run.created)),
            "author": committer,
            "committer": committer,
        },
        "repository": repo,
        "head_repository": repo,
        "head_repository_id": REPO_ID,
    }


def workflow_run_event(gh: FakeGitHub, run: Run, action: str) -> dict:
    """The payload of a ``workflow_run`` webhook."""
    return {
        "action": action,
        "workflow_run": workflow_run(gh, run),
        "workflow": workflow(gh),
        "repository": repository(gh, permissions=False),
        "sender": run.actor,
    }


def installation(gh: FakeGitHub, installation_id: int) -> dict:
    """``GET /app/installations/{id}``: the App's installation on the repository's owner."""
    app_id = int(gh.app[0]) if gh.app else 0
    return {
        "id": installation_id,
        "app_id": app_id,
        "app_slug": "deploy-portal",
        "client_id": f"Iv1.fake{app_id}",
        "target_id": OWNER_ID,
        "target_type": "Organization",
        "account": user(gh, gh.owner, OWNER_ID, "Organization"),
        "repository_selection": "all" if gh.installation_repositories is None else "selected",
        "access_tokens_url": f"{gh.api_url}/app/installations/{installation_id}/access_tokens",
        "repositories_url": f"{gh.api_url}/installation/repositories",
        "html_url": f"{gh.url}/organizations/{gh.owner}/settings/installations/{installation_id}",
        "permissions": dict(gh.installation_permissions),
        "events": ["workflow_run"],
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "created_at": iso(BASE_TIME),
        "updated_at": iso(BASE_TIME),
        "suspended_by": None,
        "suspended_at": None,
    }


# --- jobs and check-run annotations ---------------------------------------------------------------


def job(gh: FakeGitHub, run: Run, spec: JobSpec) -> dict:
    """A job of a run's attempt, as ``GET .../actions/runs/{id}/jobs`` lists it. A job is a check
    run: its id is the check run's id, and ``check_run_url`` leads to its annotations."""
    api = f"{gh.api_url}/repos/{gh.repo}"
    return {
        "id": spec.id,
        "run_id": run.id,
        "workflow_name": gh.workflow_def.name,
        "head_branch": "main",
        "run_url": f"{api}/actions/runs/{run.id}",
        "run_attempt": spec.attempt,
        "node_id": node_id("CR", spec.id),
        "head_sha": run.head_sha,
        "url": f"{api}/actions/jobs/{spec.id}",
        "html_url": f"{gh.url}/{gh.repo}/actions/runs/{run.id}/job/{spec.id}",
        "status": spec.status,
        "conclusion": spec.conclusion,
        "created_at": iso(spec.created),
        "started_at": iso(spec.started),
        "completed_at": iso(spec.completed) if spec.completed is not None else None,
        "name": spec.name,
        "steps": [
            {
                "name": step.name,
                "status": step.status,
                "conclusion": step.conclusion,
                "number": number,
                "started_at": iso(step.started) if step.started is not None else None,
                "completed_at": iso(step.completed) if step.completed is not None else None,
            }
            for number, step in enumerate(spec.steps, start=1)
        ],
        "check_run_url": f"{api}/check-runs/{spec.id}",
        "labels": list(spec.labels),
        "runner_id": 1 if spec.status != "queued" else None,
        "runner_name": "GitHub Actions 1" if spec.status != "queued" else None,
        "runner_group_id": 0 if spec.status != "queued" else None,
        "runner_group_name": "GitHub Actions" if spec.status != "queued" else None,
    }


def annotation(gh: FakeGitHub, run: Run, note: Annotation) -> dict:
    """A check-run annotation. Workflow commands (``::error title=...::message``) without a file, and
    the runner's own "Process completed with exit code 1.", are annotations of the ``.github`` path."""
    return {
        "path": note.path,
        "blob_href": f"{gh.url}/{gh.repo}/blob/{run.head_sha}/{quote(note.path)}",
        "start_line": note.line,
        "end_line": note.line,
        "start_column": None,
        "end_column": None,
        "annotation_level": note.level,
        "title": note.title,
        "message": note.message,
        "raw_details": "",
    }


# --- contents and git objects ---------------------------------------------------------------------


def content_item(gh: FakeGitHub, path: str, kind: str, sha: str, size: int, ref: str | None) -> dict:
    api = f"{gh.api_url}/repos/{gh.repo}"
    branch = ref or "main"
    self_url = f"{api}/contents/{quote(path)}?ref={quote(branch)}"
    git_url = f"{api}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
    html_url = f"{gh.url}/{gh.repo}/{'blob' if kind == 'file' else 'tree'}/{branch}/{quote(path)}"
    return {
        "type": kind,
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "size": size,
        "url": self_url,
        "html_url": html_url,
        "git_url": git_url,
        "download_url": f"{gh.url}/raw/{gh.repo}/{branch}/{quote(path)}" if kind == "file" else None,
        "_links": {"self": self_url, "git": git_url, "html": html_url},
    }


def branch_ref(gh: FakeGitHub) -> dict:
    api = f"{gh.api_url}/repos/{gh.repo}"
    head = gh.state.head
    return {
        "ref": "refs/heads/main",
        "node_id": node_id("REF", "refs/heads/main"),
        "url": f"{api}/git/refs/heads/main",
        "object": {"type": "commit", "sha": head, "url": f"{api}/git/commits/{head}"},
    }


def tree(gh: FakeGitHub, tree_sha: str, walked: list[tuple[str, Entry]], truncated: bool = False) -> dict:
    """A git tree listing ``walked``, its (path, entry) pairs, in order; ``truncated`` when GitHub
    would have cut it short."""
    api = f"{gh.api_url}/repos/{gh.repo}/git"
    entries = []
    for path, entry in walked:
        item = {"path": path, "mode": entry.mode, "type": entry.type, "sha": entry.sha}
        if entry.type == "blob":
            item["size"] = entry.size
            item["url"] = f"{api}/blobs/{entry.sha}"
        else:
            item["url"] = f"{api}/trees/{entry.sha}"
        entries.append(item)
    return {"sha": tree_sha, "url": f"{api}/trees/{tree_sha}", "tree": entries, "truncated": truncated}


def blob(gh: FakeGitHub, sha: str, data: bytes) -> dict:
    return {
        "sha": sha,
        "node_id": node_id("B", sha),
        "size": len(data),
        "url": f"{gh.api_url}/repos/{gh.repo}/git/blobs/{sha}",
        "content": b64(data),
        "encoding": "base64",
    }


# --- rate limit -----------------------------------------------------------------------------------


def core_rate(state: State) -> dict:
    return {
        "limit": state.rate_limit,
        "remaining": state.rate_remaining,
        "reset": state.rate_reset,
        "used": state.rate_limit - state.rate_remaining,
        "resource": "core",
    }


def rate_overview(state: State) -> dict:
    """What ``GET /rate_limit`` answers."""
    core = {k: v for k, v in core_rate(state).items() if k != "resource"}
    return {
        "resources": {
            "core": core,
            "graphql": {
                "limit": 5000,
                "remaining": state.graphql_remaining,
                "reset": state.rate_reset,
                "used": 5000 - state.graphql_remaining,
            },
            "search": {"limit": 30, "remaining": 30, "reset": state.rate_reset, "used": 0},
        },
        "rate": dict(core),
    }


def rate_headers(state: State) -> dict:
    rate = core_rate(state)
    return {
        "x-ratelimit-limit": str(rate["limit"]),
        "x-ratelimit-remaining": str(rate["remaining"]),
        "x-ratelimit-reset": str(rate["reset"]),
        "x-ratelimit-used": str(rate["used"]),
        "x-ratelimit-resource": "core",
    }


# --- web pages ------------------------------------------------------------------------------------


def run_page(run: Run) -> str:
    title = f"Run #{run.run_number}: {run.display_title}"
    state = f"{run.status} / {run.conclusion or '-'}"
    rows = "".join(f"<li>{html.escape(k)} = {html.escape(v)}</li>" for k, v in run.inputs.items())
    return _page(f"<h1>{html.escape(title)} — {html.escape(state)}</h1><ul>{rows}</ul>")


def workflow_page(gh: FakeGitHub, ident: str) -> str:
    items = "".join(
        f'<li><a href="{gh.url}/{gh.repo}/actions/runs/{r.id}">'
        f"Run #{r.run_number}: {html.escape(r.display_title)}</a> — "
        f"{r.status} / {r.conclusion or '-'}</li>"
        for r in reversed(gh.state.runs)
    )
    title = f"{gh.workflow_def.name} ({html.escape(ident)})"
    return _page(f"<h1>{html.escape(title)}</h1><ul>{items}</ul>")


def _page(body: str) -> str:
    head = "<head><meta charset='utf-8'><title>fakegithub</title></head>"
    return f"<!doctype html><html>{head}<body>{body}</body></html>"
