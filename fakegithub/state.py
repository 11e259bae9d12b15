"""What the emulator remembers: commits, runs, faults, recorded requests, deliveries, the rate limit.

One ``State`` holds it all behind one re-entrant lock, shared by the HTTP threads, the run clock
and the control API.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from fakegithub._git import Snapshot, Store, commit_sha
from fakegithub.webhooks import Delivery

FIRST_RUN_ID = 9000000001
BASE_TIME = 1735689600  # 2025-01-01T00:00:00Z: timestamp of the seed commit, so its SHA is stable
DEFAULT_RATE_LIMIT = 5000


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
class Run:
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
    attempt: int = 1  # run_attempt: a re-run keeps the id and counts up
    # What the run left behind when it completed: failed step, annotations, artifacts.
    outcome: RunOutcome | None = None
    # The attempts before this one, by run_attempt: a re-run keeps their jobs readable.
    past_attempts: dict[int, PastAttempt] = field(default_factory=dict)


@dataclass(frozen=True)
class PastAttempt:
    """An earlier attempt of a re-run run: how it ended and when it ran."""

    conclusion: str | None
    outcome: RunOutcome | None
    started: float
    completed: float


@dataclass
class RunOutcome:
    """How a completed run ended, as a workflow effect reports it.

    ``failed_step`` names the step that failed (GitHub's job ``steps[].name``), ``annotations``
    are the ``::error title=...::message`` lines the run wrote (check-run annotations), and
    ``artifacts`` maps an artifact name to its files ({file name: content}) and options
    (``retention_days``).
    """

    conclusion: str = "success"
    failed_step: str | None = None
    annotations: list[dict[str, str]] = field(default_factory=list)
    # What the failed step printed (its lines of the job's log); None: the emulator's usual words.
    log: list[str] | None = None
    artifacts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    retention_days: dict[str, int] = field(default_factory=dict)


@dataclass
class Accounts:
    """People, organizations, teams and OAuth apps, for "Sign in with GitHub" (fakegithub.oauth).

    ``users``: login -> {"id", "name", "email" (public, or None), "emails" [(address, primary,
    verified)]}; ``orgs``: login -> {"id", "members" {login}, "public_members" {login},
    "teams" {slug: {"id", "name", "members" {login}}}}; ``apps``: client_id -> {"secret",
    "callback_url", "name"}; ``grants``: (login, client_id) -> the scopes that person authorized;
    ``codes``: code -> {"client_id", "login", "redirect_uri", "scopes", "expires"};
    ``tokens``: access token -> (login, scopes, client_id); ``signed_in``: whom the browser is
    signed in to the web host as (None: nobody).
    """

    users: dict[str, dict] = field(default_factory=dict)
    orgs: dict[str, dict] = field(default_factory=dict)
    apps: dict[str, dict] = field(default_factory=dict)
    grants: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    codes: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, tuple[str, frozenset[str], str]] = field(default_factory=dict)
    signed_in: str | None = None
    next_id: int = 5001


def read_dir(local: Path, under: str) -> dict[str, bytes]:
    """{repository path: content} for every file below ``local``, placed under ``under``."""
    files = {}
    for path in sorted(local.rglob("*")):
        if path.is_file():
            rel = path.relative_to(local).as_posix()
            files[f"{under.strip('/')}/{rel}" if under.strip("/") else rel] = path.read_bytes()
    return files


class State:
    def __init__(self, seed_files: dict[str, bytes], first_run_id: int = FIRST_RUN_ID):
        self.lock = threading.RLock()
        self.store = Store()
        self.seed_files = seed_files
        self.next_run_id = first_run_id  # never reset, so ids stay unique for the process
        self.reset()

    def reset(self) -> None:
        """Back to the seed commit with no runs, faults, requests or deliveries and a full rate limit."""
        with self.lock:
            self.commits: dict[str, dict] = {}
            self.snapshots: dict[str, Snapshot] = {}
            self.head = ""
            self.commit(self.seed_files, "Initial specs", BASE_TIME)
            self.runs: list[Run] = []
            self.run_number = 0
            self.faults: list[Fault] = []
            self.requests: list[RecordedRequest] = []
            self.deliveries: list[Delivery] = []
            self.issued_tokens: dict[str, float] = {}
            self.accounts = Accounts()
            # (time, points, content-creating) of the requests counted by the secondary rate limits.
            self.secondary_spent: deque[tuple[float, int, bool]] = deque()
            # The same for GraphQL queries, which GitHub counts apart (fakegithub.graphql).
            self.secondary_graphql_spent: deque[tuple[float, int, bool]] = deque()
            self.rate_limit = DEFAULT_RATE_LIMIT
            self.rate_remaining = DEFAULT_RATE_LIMIT
            self.rate_reset = int(time.time()) + 3600
            # Points left in the GraphQL API's own rate limit (fakegithub.graphql).
            self.graphql_remaining = 5000

    # --- git ----------------------------------------------------------------------------------

    def commit(self, files: dict[str, bytes], message: str, timestamp: float | None = None) -> str:
        """Make ``files`` the branch head in a new commit; return its SHA."""
        with self.lock:
            ts = int(time.time() if timestamp is None else timestamp)
            snap = self.store.snapshot(files)
            parent = self.head or None
            sha = commit_sha(snap.root, parent, message, ts)
            if sha in self.commits:  # identical content+time: make it distinct like a new commit
                sha = commit_sha(snap.root, parent, f"{message}\n\n{len(self.commits)}", ts)
            self.commits[sha] = {"tree": snap.root, "parent": parent, "message": message, "time": ts}
            self.snapshots[sha] = snap
            self.head = sha
            return sha

    def head_files(self) -> dict[str, bytes]:
        """A copy of the files at the branch head, to change and commit."""
        with self.lock:
            return dict(self.snapshots[self.head].files)

    def resolve(self, ref: str | None) -> str | None:
        """A commit SHA for a branch name, refs/heads/ name, or commit SHA."""
        if ref in (None, "", "main", "refs/heads/main", "heads/main"):
            return self.head
        if ref in self.commits:
            return ref
        matches = [sha for sha in self.commits if len(ref) >= 7 and sha.startswith(ref)]
        return matches[0] if len(matches) == 1 else None

    # --- runs ---------------------------------------------------------------------------------

    def add_run(self, inputs: dict[str, str], display_title: str, actor: dict) -> Run:
        """A new queued run on the branch head."""
        with self.lock:
            now = time.time()
            self.run_number += 1
            run = Run(
                id=self.next_run_id,
                run_number=self.run_number,
                display_title=display_title,
                inputs=inputs,
                head_sha=self.head,
                created=now,
                updated=now,
                started=now,
                advanced=now,
                actor=actor,
            )
            self.next_run_id += 1
            self.runs.append(run)
            return run

    def find_run(self, run_id: int) -> Run | None:
        return next((r for r in self.runs if r.id == int(run_id)), None)

    # --- faults and the rate limit ------------------------------------------------------------

    def match_fault(self, method: str, path: str) -> Fault | None:
        """The first fault scripted for this request, counting it down when limited in ``times``."""
        for fault in self.faults:
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

    def set_rate_limit(
        self, remaining: int | None = None, reset: int | None = None, limit: int | None = None
    ) -> None:
        with self.lock:
            if limit is not None:
                self.rate_limit = int(limit)
                self.rate_remaining = min(self.rate_remaining, self.rate_limit)
            if remaining is not None:
                self.rate_remaining = int(remaining)
            if reset is not None:
                self.rate_reset = int(reset)
