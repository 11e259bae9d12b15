"""FakeGitHub: an in-process emulator of the GitHub REST API subset the portal uses.

One ``FakeGitHub`` owns all state behind one lock and serves it over a standard-library
``ThreadingHTTPServer`` bound to 127.0.0.1. Response bodies follow GitHub's OpenAPI schemas
(checked by tests/fakegithub/test_openapi_shapes.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import operator
import queue
import re
import secrets
import socket
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPConnection, HTTPSConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt

from deployments import podspec
from fakegithub._git import Snapshot, Store, blob_sha, commit_sha
from fakegithub.workflow import WORKFLOW_PATH, WorkflowDef

DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
REPO_ID = 700100200
OWNER_ID = 9919
USER_ID = 1
BOT_ID = 41898282
WORKFLOW_ID = 161335
FIRST_RUN_ID = 9000000001
BASE_TIME = 1735689600  # 2025-01-01T00:00:00Z: timestamp of the seed commit, so its SHA is stable
DEFAULT_RATE_LIMIT = 5000
INSTALLATION_TOKEN_TTL = 3600
_DROP = object()


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _b64(data: bytes) -> str:
    """Base64 wrapped at 60 characters per line, as GitHub sends file content."""
    text = base64.b64encode(data).decode()
    return "".join(text[i : i + 60] + "\n" for i in range(0, len(text), 60))


def _node_id(kind: str, value: object) -> str:
    return kind + "_" + base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


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


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: object = None
    status: int | None = None
    at: float = field(default_factory=time.time)


@dataclass
class Delivery:
    event: str
    action: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


@dataclass
class Fault:
    method: str | None
    path: re.Pattern
    status: int | None
    body: object
    headers: dict
    delay: float
    drop: bool
    times: int | None


@dataclass
class _Run:
    id: int
    run_number: int
    display_title: str
    inputs: dict[str, str]
    head_sha: str
    created: float
    actor: dict
    status: str = "queued"
    conclusion: str | None = None
    updated: float = 0.0
    started: float = 0.0
    advanced: float = 0.0  # when the current status began (drives the auto clock)


@dataclass
class _Response:
    status: int
    body: object = None  # JSON-able, bytes (raw), or None
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


class FakeGitHub:
    """The emulator. See the package docstring for the control API."""

    def __init__(
        self,
        repo: str = "demo/pods",
        specs_dir: str | Path | None = None,
        specs_path: str = "pods",
        token: str = "test-token",  # noqa: S107 (the emulator's well-known test token)
        scopes: str | None = "repo, workflow",
        api_prefix: str = "",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        auto_runs: bool = False,
        queued_for: float = 1.0,
        in_progress_for: float = 2.0,
        latency: float = 0.0,
        ghes: bool = False,
        workflow: WorkflowDef | None = None,
        first_run_id: int = FIRST_RUN_ID,
    ):
        self._lock = threading.RLock()
        self.repo = repo
        self.owner, self.repo_name = repo.split("/", 1)
        self.specs_path = specs_path.strip("/")
        self.api_prefix = api_prefix.rstrip("/")
        self.workflow_def = workflow or WorkflowDef.load()
        self._settings = dict(
            token=token,
            scopes=scopes,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            auto_runs=auto_runs,
            queued_for=queued_for,
            in_progress_for=in_progress_for,
            latency=latency,
            ghes=ghes,
            run_visible_after=0.0,
            workflow_state="active",
            default_conclusion="success",
            app=None,
        )
        self._store = Store()
        self._seed_files: dict[str, bytes] = {}
        if specs_dir is not None:
            self._seed_files = self._read_dir(Path(specs_dir), self.specs_path)
        self._next_run_id = first_run_id  # never reset, so ids stay unique for the process
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._outbox: queue.Queue = queue.Queue()
        self.url = ""
        self.reset()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeGitHub:
        httpd = _Server(("127.0.0.1", port), _Handler)
        httpd.gh = self
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._stopping.clear()
        for target, name in (
            (httpd.serve_forever, "http"),
            (self._clock, "clock"),
            (self._sender, "webhooks"),
        ):
            thread = threading.Thread(target=target, name=f"fakegithub-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._outbox.put(None)
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []

    def __enter__(self) -> FakeGitHub:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        return self.url + self.api_prefix

    def reset(self) -> None:
        """Back to the constructor's state: files, runs, faults, requests, rate limit, settings."""
        with self._lock:
            for name, value in self._settings.items():
                setattr(self, name, value)
            self.conclusions: dict[str, str] = {}
            self._commits: dict[str, dict] = {}
            self._snapshots: dict[str, Snapshot] = {}
            self._head = ""
            self._commit(self._seed_files, "Initial specs", BASE_TIME)
            self._runs: list[_Run] = []
            self._run_number = 0
            self._faults: list[Fault] = []
            self._requests: list[RecordedRequest] = []
            self._deliveries: list[Delivery] = []
            self._issued_tokens: dict[str, float] = {}
            self._rate_limit = DEFAULT_RATE_LIMIT
            self._rate_remaining = DEFAULT_RATE_LIMIT
            self._rate_reset = int(time.time()) + 3600

    # --- files --------------------------------------------------------------------------------

    @staticmethod
    def _read_dir(local: Path, under: str) -> dict[str, bytes]:
        files = {}
        for path in sorted(local.rglob("*")):
            if path.is_file():
                rel = path.relative_to(local).as_posix()
                files[f"{under.strip('/')}/{rel}" if under.strip("/") else rel] = path.read_bytes()
        return files

    def _commit(self, files: dict[str, bytes], message: str, timestamp: float | None = None) -> str:
        with self._lock:
            ts = int(time.time() if timestamp is None else timestamp)
            snap = self._store.snapshot(files)
            parent = self._head or None
            sha = commit_sha(snap.root, parent, message, ts)
            if sha in self._commits:  # identical content+time: make it distinct like a new commit
                sha = commit_sha(snap.root, parent, f"{message}\n\n{len(self._commits)}", ts)
            self._commits[sha] = {"tree": snap.root, "parent": parent, "message": message, "time": ts}
            self._snapshots[sha] = snap
            self._head = sha
            return sha

    @property
    def files(self) -> dict[str, str]:
        with self._lock:
            return {p: d.decode("utf-8", "replace") for p, d in self._snapshots[self._head].files.items()}

    @property
    def head_sha(self) -> str:
        with self._lock:
            return self._head

    def put_file(self, path: str, text: str | bytes, message: str | None = None) -> str:
        data = text.encode() if isinstance(text, str) else text
        path = path.strip("/")
        with self._lock:
            files = dict(self._snapshots[self._head].files)
            files[path] = data
            return self._commit(files, message or f"Update {path}")

    def delete_file(self, path: str, message: str | None = None) -> str:
        path = path.strip("/")
        with self._lock:
            files = dict(self._snapshots[self._head].files)
            if path not in files:
                raise KeyError(path)
            del files[path]
            return self._commit(files, message or f"Delete {path}")

    def load_dir(self, local_dir: str | Path, under: str = "pods") -> str:
        with self._lock:
            files = dict(self._snapshots[self._head].files)
            files.update(self._read_dir(Path(local_dir), under))
            return self._commit(files, f"Load {under}")

    # --- controls -----------------------------------------------------------------------------

    def set_rate_limit(
        self, remaining: int | None = None, reset: int | None = None, limit: int | None = None
    ) -> None:
        with self._lock:
            if limit is not None:
                self._rate_limit = int(limit)
                self._rate_remaining = min(self._rate_remaining, self._rate_limit)
            if remaining is not None:
                self._rate_remaining = int(remaining)
            if reset is not None:
                self._rate_reset = int(reset)

    @property
    def rate_limit(self) -> dict:
        """What ``GET /rate_limit`` answers now: ``rate_limit["resources"]["core"]["remaining"]``."""
        with self._lock:
            return self._rate_overview()

    def add_fault(
        self,
        method: str | None = None,
        path: str = "",
        status: int | None = 500,
        body: object = None,
        headers: dict | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = None,
    ) -> Fault:
        """Script a fault. ``status=None`` with ``delay`` only slows the normal answer down."""
        fault = Fault(
            method=method.upper() if method else None,
            path=re.compile(path),
            status=status,
            body={"message": "Server Error"} if body is None and status and status >= 500 else body,
            headers=dict(headers or {}),
            delay=delay,
            drop=drop,
            times=times,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        pattern = re.compile(path) if path else None
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper()) and (pattern is None or pattern.search(r.path))
        )

    def clear_requests(self) -> None:
        with self._lock:
            self._requests = []

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def runs(self) -> list[dict]:
        """Every run (newest first) as the API shows it, plus its dispatch ``inputs``."""
        with self._lock:
            return [dict(self._run_json(run), inputs=dict(run.inputs)) for run in reversed(self._runs)]

    def run(self, run_id: int) -> dict:
        with self._lock:
            run = self._find_run(run_id)
            if run is None:
                raise KeyError(run_id)
            return dict(self._run_json(run), inputs=dict(run.inputs))

    def advance_run(self, run_id: int) -> dict:
        """One step: queued -> in_progress -> completed (conclusion from ``conclusions``)."""
        with self._lock:
            run = self._get_run(run_id)
            if run.status == "queued":
                self._transition(run, "in_progress")
            elif run.status == "in_progress":
                self._transition(run, "completed", self._conclusion_for(run))
            return self.run(run_id)

    def complete_run(self, run_id: int, conclusion: str | None = "success") -> dict:
        """Finish a run now (``conclusion=None`` uses ``conclusions``/``default_conclusion``)."""
        with self._lock:
            run = self._get_run(run_id)
            if run.status == "queued":
                self._transition(run, "in_progress")
            if run.status != "completed":
                self._transition(run, "completed", conclusion or self._conclusion_for(run))
            return self.run(run_id)

    def _get_run(self, run_id: int) -> _Run:
        run = self._find_run(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def _find_run(self, run_id: int) -> _Run | None:
        return next((r for r in self._runs if r.id == int(run_id)), None)

    def _conclusion_for(self, run: _Run) -> str:
        pod = f"{run.inputs.get('customer')}/{run.inputs.get('environment')}"
        return self.conclusions.get(pod, self.default_conclusion)

    # --- runs ---------------------------------------------------------------------------------

    def _create_run(self, inputs: dict[str, str], actor: dict) -> _Run:
        now = time.time()
        self._run_number += 1
        run = _Run(
            id=self._next_run_id,
            run_number=self._run_number,
            display_title=self.workflow_def.display_title(inputs),
            inputs=inputs,
            head_sha=self._head,
            created=now,
            updated=now,
            started=now,
            advanced=now,
            actor=actor,
        )
        self._next_run_id += 1
        self._runs.append(run)
        self._webhook(run, "requested")
        return run

    def _transition(self, run: _Run, status: str, conclusion: str | None = None) -> None:
        now = time.time()
        if status == "completed" and conclusion == "success":
            conclusion = self._apply_effect(run)
        run.status, run.conclusion = status, conclusion
        run.updated = run.advanced = now
        self._webhook(run, status)

    def _apply_effect(self, run: _Run) -> str:
        """What deploy-pod.yml does on success: validate, render and commit spec.yml."""
        data = {k: v for k, v in run.inputs.items() if k in podspec.FIELDS}
        try:
            spec = podspec.validate(data)
        except podspec.SpecError:
            return "failure"  # the workflow's validate step fails
        path = podspec.spec_path(self.specs_path, spec.customer, spec.environment)
        tag = run.inputs.get("request_id") or "manual"
        self.put_file(path, podspec.render(spec), message=f"Deploy {spec.pod} [{tag}]")
        return "success"

    def _clock(self) -> None:
        while not self._stopping.wait(0.05):
            with self._lock:
                if not self.auto_runs:
                    continue
                now = time.time()
                for run in self._runs:
                    if run.status == "queued" and now - run.advanced >= self.queued_for:
                        self._transition(run, "in_progress")
                    elif run.status == "in_progress" and now - run.advanced >= self.in_progress_for:
                        self._transition(run, "completed", self._conclusion_for(run))

    # --- webhooks -----------------------------------------------------------------------------

    def _webhook(self, run: _Run, action: str) -> None:
        payload = {
            "action": action,
            "workflow_run": self._run_json(run),
            "workflow": self._workflow_json(),
            "repository": self._repo_json(permissions=False),
            "sender": run.actor,
        }
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "1",
        }
        if self.webhook_secret:
            digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        delivery = Delivery(event="workflow_run", action=action, headers=headers, body=body)
        self._deliveries.append(delivery)
        if self.webhook_url:
            self._outbox.put((self.webhook_url, delivery))
        else:
            delivery.done.set()

    def _sender(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            url, delivery = item
            try:
                # http.client keeps header names as GitHub spells them (urllib would not).
                parts = urlsplit(url)
                connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
                connection = connection_class(parts.netloc, timeout=5)
                try:
                    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                    connection.request("POST", target, body=delivery.body, headers=delivery.headers)
                    response = connection.getresponse()
                    response.read()
                    delivery.status = response.status
                finally:
                    connection.close()
            except Exception as exc:  # never let a bad receiver kill the sender
                delivery.error = repr(exc)
            finally:
                delivery.done.set()

    # --- JSON shapes --------------------------------------------------------------------------

    def _user_json(self, login: str, user_id: int, kind: str = "User") -> dict:
        api = f"{self.api_url}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": _node_id("U", user_id),
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.url}/{login}",
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

    @property
    def _user(self) -> dict:
        return self._user_json("fake-user", USER_ID)

    @property
    def _bot(self) -> dict:
        return self._user_json("deploy-portal[bot]", BOT_ID, "Bot")

    def _repo_json(self, permissions: bool = True) -> dict:
        api = f"{self.api_url}/repos/{self.repo}"
        web = f"{self.url}/{self.repo}"
        created = iso(BASE_TIME)
        pushed = iso(self._commits[self._head]["time"])
        data = {
            "id": REPO_ID,
            "node_id": _node_id("R", REPO_ID),
            "name": self.repo_name,
            "full_name": self.repo,
            "private": True,
            "owner": self._user_json(self.owner, OWNER_ID, "Organization"),
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
            "git_url": f"git://{self.url.split('://', 1)[-1]}/{self.repo}.git",
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
            "ssh_url": f"git@127.0.0.1:{self.repo}.git",
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

    def _workflow_json(self) -> dict:
        api = f"{self.api_url}/repos/{self.repo}/actions/workflows/{WORKFLOW_ID}"
        return {
            "id": WORKFLOW_ID,
            "node_id": _node_id("W", WORKFLOW_ID),
            "name": self.workflow_def.name,
            "path": WORKFLOW_PATH,
            "state": self.workflow_state or "active",
            "created_at": iso(BASE_TIME),
            "updated_at": iso(BASE_TIME),
            "url": api,
            "html_url": f"{self.url}/{self.repo}/blob/main/{WORKFLOW_PATH}",
            "badge_url": f"{self.url}/{self.repo}/workflows/{quote(self.workflow_def.name)}/badge.svg",
        }

    def _run_json(self, run: _Run) -> dict:
        api = f"{self.api_url}/repos/{self.repo}"
        run_api = f"{api}/actions/runs/{run.id}"
        commit = self._commits.get(run.head_sha, {})
        committer = {"name": "fakegithub", "email": "fakegithub@example.invalid"}
        repo = self._repo_json(permissions=False)
        check_suite_id = 20000000000 + run.id
        return {
            "id": run.id,
            "name": self.workflow_def.name,
            "node_id": _node_id("WFR", run.id),
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
            "check_suite_node_id": _node_id("CS", check_suite_id),
            "url": run_api,
            "html_url": f"{self.url}/{self.repo}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": iso(run.created),
            "updated_at": iso(run.updated),
            "actor": run.actor,
            "run_attempt": 1,
            "referenced_workflows": [],
            "run_started_at": iso(run.started),
            "triggering_actor": run.actor,
            "jobs_url": f"{run_api}/jobs",
            "logs_url": f"{run_api}/logs",
            "check_suite_url": f"{api}/check-suites/{check_suite_id}",
            "artifacts_url": f"{run_api}/artifacts",
            "cancel_url": f"{run_api}/cancel",
            "rerun_url": f"{run_api}/rerun",
            "previous_attempt_url": None,
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

    def _rate_json(self) -> dict:
        return {
            "limit": self._rate_limit,
            "remaining": self._rate_remaining,
            "reset": self._rate_reset,
            "used": self._rate_limit - self._rate_remaining,
            "resource": "core",
        }

    def _rate_overview(self) -> dict:
        core = {k: v for k, v in self._rate_json().items() if k != "resource"}
        return {
            "resources": {
                "core": core,
                "graphql": {"limit": 5000, "remaining": 5000, "reset": self._rate_reset, "used": 0},
                "search": {"limit": 30, "remaining": 30, "reset": self._rate_reset, "used": 0},
            },
            "rate": dict(core),
        }

    def _rate_headers(self) -> dict:
        rate = self._rate_json()
        return {
            "x-ratelimit-limit": str(rate["limit"]),
            "x-ratelimit-remaining": str(rate["remaining"]),
            "x-ratelimit-reset": str(rate["reset"]),
            "x-ratelimit-used": str(rate["used"]),
            "x-ratelimit-resource": "core",
        }

    # --- request handling ---------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes):
        """Answer one HTTP request: a _Response, or _DROP to close the socket unanswered."""
        split = urlsplit(target)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            body_json = json.loads(raw) if raw else None
        except ValueError:
            body_json = None
        record = RecordedRequest(method, split.path, query, headers, raw, body_json)
        with self._lock:
            self._requests.append(record)
            fault = self._match_fault(method, split.path)
            latency = self.latency
        is_api = self._api_path(path) is not None and not self._web_match(path)
        if is_api and latency:
            time.sleep(latency)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                record.status = 0
                return _DROP
            if fault.status is not None:
                with self._lock:
                    extra = self._rate_headers()
                response = _Response(fault.status, fault.body, {**extra, **fault.headers})
                record.status = response.status
                return response
        try:
            response = self._route(method, path, query, headers, body_json, raw)
        except Exception as exc:  # a bug here must not kill the connection thread silently
            response = _Response(500, {"message": f"fakegithub error: {exc!r}"})
        record.status = response.status
        return response

    def _match_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method and fault.method != method:
                continue
            if not fault.path.search(path):
                continue
            if fault.times is not None:
                if fault.times <= 0:
                    continue
                fault.times -= 1
            return fault
        return None

    def _api_path(self, path: str) -> str | None:
        if not self.api_prefix:
            return path
        if path == self.api_prefix or path.startswith(self.api_prefix + "/"):
            return path[len(self.api_prefix) :] or "/"
        return None

    def _web_match(self, path: str):
        prefix = f"/{self.repo}/actions/".lower()
        if not path.lower().startswith(prefix):
            return None
        return re.fullmatch(r"(runs|workflows)/([^/]+)/?", path[len(prefix) :])

    def _route(self, method, path, query, headers, body, raw) -> _Response:
        web = self._web_match(path)
        if web is not None and method in ("GET", "HEAD"):
            return self._web_page(web.group(1), web.group(2))
        api_path = self._api_path(path)
        if api_path is None:
            return _error(404, "Not Found")
        with self._lock:
            extra = {"x-github-api-version-selected": "2022-11-28"}
            if self.ghes:
                extra["x-github-enterprise-version"] = "3.20.0"
            response = self._api(method, api_path, query, headers, body)
            response.headers = {**extra, **response.headers}
            return response

    def _auth(self, headers: dict[str, str]) -> tuple[str | None, str | None]:
        """(kind, token): kind is "classic", "installation", or None when rejected."""
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token:
            return None, None
        token = token.strip()
        if token == self.token:
            return "classic", token
        expiry = self._issued_tokens.get(token)
        if expiry is not None and expiry > time.time():
            return "installation", token
        return None, token

    def _api(self, method, path, query, headers, body) -> _Response:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["app", "installations"] and len(parts) == 4 and parts[3] == "access_tokens":
            if method != "POST":
                return _error(404, "Not Found")
            return self._access_token(parts[2], headers)

        kind, token = self._auth(headers)
        if kind is None:
            message = "Requires authentication" if token is None else "Bad credentials"
            return _error(401, message)
        auth_headers = {}
        if kind == "classic" and self.scopes is not None:
            auth_headers["x-oauth-scopes"] = self.scopes
            auth_headers["x-accepted-oauth-scopes"] = "repo"
        actor = self._user if kind == "classic" else self._bot

        if parts == ["rate_limit"] and method == "GET":
            return self._finish(
                method, headers, _Response(200, self._rate_overview(), auth_headers), spend=False
            )

        if method != "GET" and self._rate_remaining <= 0:
            return self._rate_limited(auth_headers)
        response = self._repo_api(method, parts, query, body, actor)
        response.headers = {**auth_headers, **response.headers}
        return self._finish(method, headers, response, spend=True)

    def _finish(self, method, req_headers, response: _Response, spend: bool) -> _Response:
        encoded = None
        if method == "GET" and response.status == 200:
            encoded = _encode(response.body)
            etag = f'W/"{hashlib.sha256(encoded).hexdigest()[:40]}"'
            response.headers["ETag"] = etag
            wanted = req_headers.get("if-none-match", "")
            candidates = {c.strip().removeprefix("W/") for c in wanted.split(",") if c.strip()}
            if etag.removeprefix("W/") in candidates or "*" in candidates:
                response.status, response.body = 304, None
                response.headers.update(self._rate_headers())
                return response
        if spend:
            if self._rate_remaining <= 0:
                return self._rate_limited({k: v for k, v in response.headers.items() if k.startswith("x-")})
            self._rate_remaining -= 1
        response.headers.update(self._rate_headers())
        if encoded is not None:
            response.body = encoded
        return response

    def _rate_limited(self, headers: dict) -> _Response:
        body = {"message": "API rate limit exceeded for user ID 1.", "documentation_url": RATE_LIMIT_DOCS}
        return _Response(403, body, {**headers, **self._rate_headers()})

    def _access_token(self, installation_id: str, headers: dict) -> _Response:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if self.app is None or scheme.lower() != "bearer" or not token:
            return _error(401, "A JSON web token could not be decoded")
        app_id, public_key, expected_installation = self.app
        try:
            claims = jwt.decode(
                token.strip(),
                public_key,
                algorithms=["RS256"],
                options={"require": ["exp", "iat", "iss"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            return _error(401, "'Expiration time' claim ('exp') is too far in the future or has passed")
        except jwt.PyJWTError:
            return _error(401, "A JSON web token could not be decoded")
        if str(claims.get("iss")) != str(app_id):
            return _error(401, "'Issuer' claim ('iss') must be an Integer")
        if str(installation_id) != str(expected_installation):
            return _error(404, "Not Found")
        issued = "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        expires = time.time() + INSTALLATION_TOKEN_TTL
        self._issued_tokens[issued] = expires
        data = {
            "token": issued,
            "expires_at": iso(expires),
            "permissions": {"actions": "write", "contents": "read", "metadata": "read"},
            "repository_selection": "all",
        }
        return _Response(201, data)

    # --- repository routes --------------------------------------------------------------------

    def _repo_api(self, method, parts, query, body, actor) -> _Response:
        if len(parts) < 3 or parts[0] != "repos" or f"{parts[1]}/{parts[2]}".lower() != self.repo.lower():
            return _error(404, "Not Found")
        rest = parts[3:]
        if method == "GET":
            if not rest:
                return _Response(200, self._repo_json())
            if rest[0] == "contents":
                return self._contents("/".join(rest[1:]), query.get("ref"))
            if rest[:1] == ["git"] and len(rest) > 2 and rest[1] in ("ref", "refs", "matching-refs"):
                return self._ref(rest[1], "/".join(rest[2:]))
            if rest[:2] == ["git", "trees"] and len(rest) == 3:
                return self._tree(rest[2], query.get("recursive"))
            if rest[:2] == ["git", "blobs"] and len(rest) == 3:
                return self._blob(rest[2])
            if rest == ["actions", "workflows"]:
                flows = [self._workflow_json()] if self.workflow_state else []
                return _Response(200, {"total_count": len(flows), "workflows": flows})
            if rest[:2] == ["actions", "workflows"] and len(rest) in (3, 4):
                if not self._is_workflow(rest[2]):
                    return _error(404, "Not Found")
                if len(rest) == 3:
                    return _Response(200, self._workflow_json())
                if rest[3] == "runs":
                    return self._list_runs(query)
            if rest == ["actions", "runs"]:
                return self._list_runs(query)
            if rest[:2] == ["actions", "runs"] and len(rest) == 3 and rest[2].isdigit():
                run = self._find_run(int(rest[2]))
                return _Response(200, self._run_json(run)) if run else _error(404, "Not Found")
        is_dispatch = rest[:2] == ["actions", "workflows"] and len(rest) == 4 and rest[3] == "dispatches"
        if method == "POST" and is_dispatch:
            return self._dispatch(rest[2], body, actor)
        return _error(404, "Not Found")

    def _is_workflow(self, ident: str) -> bool:
        names = (str(WORKFLOW_ID), WORKFLOW_PATH.rsplit("/", 1)[1])
        return self.workflow_state is not None and ident in names

    def _resolve(self, ref: str | None) -> str | None:
        """A commit SHA for a branch name, refs/heads/ name, or commit SHA."""
        if ref in (None, "", "main", "refs/heads/main", "heads/main"):
            return self._head
        if ref in self._commits:
            return ref
        matches = [sha for sha in self._commits if len(ref) >= 7 and sha.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    def _contents(self, path: str, ref: str | None) -> _Response:
        sha = self._resolve(ref)
        if sha is None:
            return _error(404, f"No commit found for the ref {ref}")
        snap = self._snapshots[sha]
        path = path.strip("/")
        if path in snap.files:
            data = snap.files[path]
            item = self._content_item(path, "file", blob_sha(data), len(data), ref)
            item.update(content=_b64(data), encoding="base64")
            return _Response(200, item)
        if path in snap.dirs:
            items = []
            for entry in self._store.trees[snap.dirs[path]]:
                child = f"{path}/{entry.name}" if path else entry.name
                kind = "file" if entry.type == "blob" else "dir"
                items.append(self._content_item(child, kind, entry.sha, entry.size or 0, ref))
            return _Response(200, items)
        return _error(404, "Not Found")

    def _content_item(self, path: str, kind: str, sha: str, size: int, ref: str | None) -> dict:
        api = f"{self.api_url}/repos/{self.repo}"
        branch = ref or "main"
        self_url = f"{api}/contents/{quote(path)}?ref={quote(branch)}"
        git_url = f"{api}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
        html_url = f"{self.url}/{self.repo}/{'blob' if kind == 'file' else 'tree'}/{branch}/{quote(path)}"
        return {
            "type": kind,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": size,
            "url": self_url,
            "html_url": html_url,
            "git_url": git_url,
            "download_url": f"{self.url}/raw/{self.repo}/{branch}/{quote(path)}" if kind == "file" else None,
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        }

    def _ref(self, kind: str, name: str) -> _Response:
        api = f"{self.api_url}/repos/{self.repo}"
        ref_json = {
            "ref": "refs/heads/main",
            "node_id": _node_id("REF", "refs/heads/main"),
            "url": f"{api}/git/refs/heads/main",
            "object": {"type": "commit", "sha": self._head, "url": f"{api}/git/commits/{self._head}"},
        }
        if kind == "matching-refs":
            matches = "refs/heads/main".startswith("refs/" + name)
            return _Response(200, [ref_json] if matches else [])
        if name in ("heads/main", "refs/heads/main"):
            return _Response(200, ref_json)
        return _error(404, "Not Found")

    def _tree(self, ident: str, recursive: str | None) -> _Response:
        commit = self._resolve(ident)
        tree_sha = self._commits[commit]["tree"] if commit else ident
        if tree_sha not in self._store.trees:
            return _error(404, "Not Found")
        api = f"{self.api_url}/repos/{self.repo}/git"
        if recursive not in (None, "", "0", "false"):
            walked = list(self._store.walk(tree_sha))
        else:
            walked = [(e.name, e) for e in self._store.trees[tree_sha]]
        entries = []
        for path, entry in walked:
            item = {"path": path, "mode": entry.mode, "type": entry.type, "sha": entry.sha}
            if entry.type == "blob":
                item["size"] = entry.size
                item["url"] = f"{api}/blobs/{entry.sha}"
            else:
                item["url"] = f"{api}/trees/{entry.sha}"
            entries.append(item)
        data = {"sha": tree_sha, "url": f"{api}/trees/{tree_sha}", "tree": entries, "truncated": False}
        return _Response(200, data)

    def _blob(self, sha: str) -> _Response:
        data = self._store.blobs.get(sha)
        if data is None:
            return _error(404, "Not Found")
        return _Response(
            200,
            {
                "sha": sha,
                "node_id": _node_id("B", sha),
                "size": len(data),
                "url": f"{self.api_url}/repos/{self.repo}/git/blobs/{sha}",
                "content": _b64(data),
                "encoding": "base64",
            },
        )

    def _list_runs(self, query: dict) -> _Response:
        now = time.time()
        runs = [r for r in reversed(self._runs) if now - r.created >= self.run_visible_after]
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
                return _error(422, "Invalid created parameter")
            runs = [r for r in runs if keep(int(r.created))]
        try:
            per_page = max(1, min(100, int(query.get("per_page") or 30)))
            page = max(1, int(query.get("page") or 1))
        except ValueError:
            return _error(422, "Invalid pagination parameter")
        chosen = runs[(page - 1) * per_page : page * per_page]
        body = {"total_count": len(runs), "workflow_runs": [self._run_json(r) for r in chosen]}
        last = max(1, -(-len(runs) // per_page))
        links = []
        base = f"{self.api_url}/repos/{self.repo}/actions/runs"
        wanted = {"prev": page > 1, "next": page < last, "last": last > 1, "first": last > 1}
        for rel, number in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            if wanted[rel]:
                params = urlencode({**query, "per_page": per_page, "page": number})
                links.append(f'<{base}?{params}>; rel="{rel}"')
        return _Response(200, body, {"Link": ", ".join(links)} if links else {})

    def _dispatch(self, ident: str, body: object, actor: dict) -> _Response:
        if not self._is_workflow(ident):
            return _error(404, "Not Found")
        if not isinstance(body, dict):
            return _error(400, "Problems parsing JSON")
        if self.ghes and "return_run_details" in body:
            return _error(400, 'Invalid request.\n\n"return_run_details" is not a permitted key.')
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            return _error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.')
        if ref not in ("main", "refs/heads/main"):
            return _error(422, f"No ref found for: {ref}")
        if self.workflow_state != "active":
            return _error(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow")
        given = body.get("inputs") or {}
        if not isinstance(given, dict):
            return _error(422, "Invalid request.\n\nFor 'properties/inputs', is not an object.")
        inputs, problem = self.workflow_def.check_inputs(given)
        if problem:
            return _error(422, problem)
        run = self._create_run(inputs, actor)
        if body.get("return_run_details") is True:
            run_json = self._run_json(run)
            details = {"workflow_run_id": run.id, "run_url": run_json["url"]}
            return _Response(200, dict(details, html_url=run_json["html_url"]))
        return _Response(204)

    # --- web pages ----------------------------------------------------------------------------

    def _web_page(self, kind: str, ident: str) -> _Response:
        with self._lock:
            if kind == "runs":
                run = self._find_run(int(ident)) if ident.isdigit() else None
                if run is None:
                    return _Response(404, b"<h1>404 Not Found</h1>", content_type="text/html; charset=utf-8")
                title = f"Run #{run.run_number}: {run.display_title}"
                state = f"{run.status} / {run.conclusion or '-'}"
                rows = "".join(f"<li>{html.escape(k)} = {html.escape(v)}</li>" for k, v in run.inputs.items())
                page = f"<h1>{html.escape(title)} — {html.escape(state)}</h1><ul>{rows}</ul>"
            else:
                items = "".join(
                    f'<li><a href="{self.url}/{self.repo}/actions/runs/{r.id}">'
                    f"Run #{r.run_number}: {html.escape(r.display_title)}</a> — "
                    f"{r.status} / {r.conclusion or '-'}</li>"
                    for r in reversed(self._runs)
                )
                title = f"{self.workflow_def.name} ({html.escape(ident)})"
                page = f"<h1>{html.escape(title)}</h1><ul>{items}</ul>"
        head = "<head><meta charset='utf-8'><title>fakegithub</title></head>"
        doc = f"<!doctype html><html>{head}<body>{page}</body></html>"
        return _Response(200, doc.encode(), content_type="text/html; charset=utf-8")


def _encode(body: object) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def _error(status: int, message: str) -> _Response:
    return _Response(status, {"message": message, "documentation_url": DOCS, "status": str(status)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    gh: FakeGitHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def version_string(self) -> str:
        return "GitHub.com"

    def log_message(self, format, *args) -> None:  # quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.gh._handle(self.command, self.path, headers, raw)
        if response is _DROP:
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
        body = _encode(response.body)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


__all__ = ["Delivery", "FakeGitHub", "Fault", "RecordedRequest"]
