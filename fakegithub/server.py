"""FakeGitHub: an in-process emulator of the GitHub REST API subset the portal uses.

``FakeGitHub`` holds the settings and the control API and wires the parts together: ``state``
(everything remembered, behind one lock), ``routes`` (the route table and a standard-library
``ThreadingHTTPServer`` bound to 127.0.0.1), ``shapes`` (GitHub's JSON; checked by
tests/fakegithub/test_openapi_shapes.py) and ``webhooks`` (signed deliveries). It also moves runs
along queued → in_progress → completed, by hand or on a clock.
"""

from __future__ import annotations

import copy
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path

from fakegithub import oauth, shapes
from fakegithub.artifacts import ArtifactStore
from fakegithub.routes import make_server
from fakegithub.state import (
    FIRST_RUN_ID,
    Fault,
    PastAttempt,
    RecordedRequest,
    Run,
    RunOutcome,
    State,
    read_dir,
)
from fakegithub.webhooks import Delivery, Sender, workflow_run_delivery
from fakegithub.workflow import WorkflowDef

# What a GitHub App installation of the portal is granted by default: what the portal needs
# (actions: write to dispatch and follow runs, contents: read for the specs, checks: read for a failed
# run's annotations), and metadata: read, which every installation has.
INSTALLATION_PERMISSIONS = {"actions": "write", "checks": "read", "contents": "read", "metadata": "read"}
FINE_GRAINED_PERMISSIONS = {"actions": "write", "contents": "read", "metadata": "read"}

# What a successful run of the workflow does to the repository, given the emulator and the run's
# inputs; it returns the run's conclusion ("failure" when the real workflow would fail), or a
# RunOutcome that also names the failed step, the annotations and the artifacts the run left.
WorkflowEffect = Callable[["FakeGitHub", dict[str, str]], "str | RunOutcome"]


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
        rate_limiting_enabled: bool | None = None,
        workflow: WorkflowDef | None = None,
        workflow_effect: WorkflowEffect | None = None,
        first_run_id: int = FIRST_RUN_ID,
        tree_entry_limit: int = 100_000,
    ):
        self.repo = repo
        self.owner, self.repo_name = repo.split("/", 1)
        self.specs_path = specs_path.strip("/")
        self.api_prefix = api_prefix.rstrip("/")
        self.workflow_effect = workflow_effect
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
            # GHES ships with its API rate limits disabled, github.com always has them; None means
            # the default of the kind of server emulated.
            # https://docs.github.com/en/enterprise-server@3.18/apps/creating-github-apps/setting-up-a-github-app/rate-limits-for-github-apps
            rate_limiting_enabled=not ghes if rate_limiting_enabled is None else rate_limiting_enabled,
            workflow_def=workflow or WorkflowDef.load(),
            run_visible_after=0.0,
            workflow_state="active",
            default_conclusion="success",
            app=None,
            # Entries in a recursive tree listing before GitHub truncates it (it also stops at 7 MB).
            # https://docs.github.com/en/rest/git/trees#get-a-tree
            tree_entry_limit=tree_entry_limit,
            # Branch protection of the default branch: None (unprotected) or {"bypass_app": bool,
            # "ruleset": bool} (whether the workflow's GitHub App, used when DEPLOY_APP_ID is set, is a
            # bypass actor; whether a ruleset protects the branch rather than a protection rule).
            branch_protection=None,
            # Repository variables (`vars.*` in the workflow), e.g. DEPLOY_APP_ID.
            variables={},
            # What the GitHub App installation may do: its installation tokens carry these, and
            # a request its permissions do not cover is refused with 403 "Resource not accessible
            # by integration" (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#resource-not-accessible).
            installation_permissions=dict(INSTALLATION_PERMISSIONS),
            # The repositories the installation was given (None: all of its account's, GitHub's
            # repository_selection "all"); another repository answers 404, as GitHub does.
            installation_repositories=None,
            # What a fine-grained personal access token (github_pat_...) may do. GitHub cannot
            # grant such a token the Checks permission (https://github.com/orgs/community/discussions/179545).
            fine_grained_permissions=dict(FINE_GRAINED_PERMISSIONS),
            # The repositories a personal access token can see (None: all): a private repository
            # it cannot see answers 404, not 403.
            token_repositories=None,
            # GitHub's secondary rate limit in points per minute (GET 1 point, POST/PATCH/PUT/DELETE
            # 5), None: off. github.com allows 900 a minute for the REST API and answers 403 or 429 with
            # retry-after past it (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#calculating-points-for-the-secondary-rate-limit).
            # Off by default so benchmarks that count requests are not throttled.
            secondary_points_per_minute=None,
            # Content-creating requests (POST, PATCH, PUT, DELETE) a minute, None: off; github.com
            # allows 80 ("no more than 80 content-generating requests per minute"), same page.
            secondary_writes_per_minute=None,
            # The GraphQL endpoint's own secondary limit in points a minute (a query without
            # mutations is 1 point), None: off. github.com: "no more than 900 points per minute are
            # allowed for REST API endpoints, and no more than 2,000 points per minute are allowed
            # for the GraphQL API endpoint" (same page): a query spends none of the REST API's.
            secondary_graphql_points_per_minute=None,
            secondary_limit_status=403,
            # The share of webhook deliveries lost on the way (0.0 to 1.0), or a predicate of the
            # Delivery saying whether it is lost. GitHub does not redeliver a failed delivery by itself
            # (https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries).
            webhook_loss=0.0,
            # A GitHub environment with required reviewers in front of the deploy job: apply and
            # deploy runs wait (status "waiting") until approve_environment(run_id); plan runs
            # (action "plan") do not reference it. advance_run and the clock respect it.
            # https://docs.github.com/en/actions/managing-workflow-runs-and-deployments/managing-deployments/reviewing-deployments
            environment_reviewers=False,
        )
        seed = read_dir(Path(specs_dir), self.specs_path) if specs_dir is not None else {}
        self.state = State(seed, first_run_id)
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._sender = Sender()
        self.url = ""
        self.reset()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeGitHub:
        httpd = make_server(self, port)
        self._httpd = httpd
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._stopping.clear()
        for target, name in (
            (httpd.serve_forever, "http"),
            (self._clock, "clock"),
            (self._sender.run, "webhooks"),
        ):
            thread = threading.Thread(target=target, name=f"fakegithub-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._sender.stop()
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
        with self.state.lock:
            for name, value in self._settings.items():
                # A test's changes to a dict setting (variables, branch_protection) end with it.
                setattr(self, name, copy.copy(value) if isinstance(value, dict | list | set) else value)
            self.conclusions: dict[str, str] = {}
            self.state.reset()
            self.artifacts = ArtifactStore(self.state.lock)

    def push_refusal(self) -> str | None:
        """What GitHub answers when the workflow pushes spec.yml to the protected default branch
        (None: the push lands): the first line of git's "remote: error:" refusal, GH006 for a
        branch protection rule, GH013 for a ruleset (as in DefangLabs/defang#2280, yshavit/mdq#255).
        ``GITHUB_TOKEN`` is never a bypass actor; a GitHub App can be.
        https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/managing-rulesets/about-rulesets#about-rulesets
        """
        if self.branch_protection is None:
            return None
        if self.variables.get("DEPLOY_APP_ID") and self.branch_protection.get("bypass_app"):
            return None
        if self.branch_protection.get("ruleset"):
            return "GH013: Repository rule violations found for refs/heads/main."
        return "GH006: Protected branch update failed for refs/heads/main."

    # --- files ----------------------------------------------------------------------------------

    @property
    def files(self) -> dict[str, str]:
        return {p: d.decode("utf-8", "replace") for p, d in self.state.head_files().items()}

    @property
    def head_sha(self) -> str:
        with self.state.lock:
            return self.state.head

    def put_file(self, path: str, text: str | bytes, message: str | None = None) -> str:
        data = text.encode() if isinstance(text, str) else text
        path = path.strip("/")
        with self.state.lock:
            files = self.state.head_files()
            files[path] = data
            return self.state.commit(files, message or f"Update {path}")

    def delete_file(self, path: str, message: str | None = None) -> str:
        path = path.strip("/")
        with self.state.lock:
            files = self.state.head_files()
            if path not in files:
                raise KeyError(path)
            del files[path]
            return self.state.commit(files, message or f"Delete {path}")

    def load_dir(self, local_dir: str | Path, under: str = "pods") -> str:
        with self.state.lock:
            files = self.state.head_files()
            files.update(read_dir(Path(local_dir), under))
            return self.state.commit(files, f"Load {under}")

    # --- controls -------------------------------------------------------------------------------

    def set_rate_limit(
        self, remaining: int | None = None, reset: int | None = None, limit: int | None = None
    ) -> None:
        self.state.set_rate_limit(remaining=remaining, reset=reset, limit=limit)

    @property
    def rate_limit(self) -> dict:
        """What ``GET /rate_limit`` answers now: ``rate_limit["resources"]["core"]["remaining"]``."""
        with self.state.lock:
            return shapes.rate_overview(self.state)

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
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults = []

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.state.lock:
            return list(self.state.requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        pattern = re.compile(path) if path else None
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper()) and (pattern is None or pattern.search(r.path))
        )

    def clear_requests(self) -> None:
        with self.state.lock:
            self.state.requests = []

    @property
    def deliveries(self) -> list[Delivery]:
        with self.state.lock:
            return list(self.state.deliveries)

    @property
    def runs(self) -> list[dict]:
        """Every run (newest first) as the API shows it, plus its dispatch ``inputs``."""
        with self.state.lock:
            return [self._run_dict(run) for run in reversed(self.state.runs)]

    def run(self, run_id: int) -> dict:
        with self.state.lock:
            return self._run_dict(self._get_run(run_id))

    def advance_run(self, run_id: int) -> dict:
        """One step: queued -> in_progress -> completed (conclusion from ``conclusions``)."""
        with self.state.lock:
            run = self._get_run(run_id)
            if run.status == "queued":
                self._start(run)
            elif run.status == "in_progress":
                self._transition(run, "completed", self._conclusion_for(run))
            return self.run(run_id)

    def complete_run(
        self, run_id: int, conclusion: str | None = "success", outcome: RunOutcome | None = None
    ) -> dict:
        """Finish a run now (``conclusion=None`` uses ``conclusions``/``default_conclusion``).

        With ``outcome`` the run ends as it says (its conclusion, failed step and annotations,
        what its jobs and check-run annotations then show) instead of running the workflow effect.
        """
        with self.state.lock:
            run = self._get_run(run_id)
            if run.status == "queued":
                self._transition(run, "in_progress")
            if run.status != "completed":
                ending = outcome.conclusion if outcome else conclusion or self._conclusion_for(run)
                self._transition(run, "completed", ending, outcome=outcome)
            return self.run(run_id)

    def rerun(self, run_id: int) -> dict:
        """Re-run a completed run: same id, the next ``run_attempt``, queued again and announced by a
        ``requested`` webhook, as GitHub does (KeyError: no such run; ValueError: not completed)."""
        with self.state.lock:
            run = self._get_run(run_id)
            if run.status != "completed":
                raise ValueError(f"run {run_id} is {run.status}")
            now = time.time()
            past = PastAttempt(run.conclusion, run.outcome, run.started, run.updated)
            run.past_attempts[run.attempt] = past
            run.attempt += 1
            run.status, run.conclusion, run.outcome = "queued", None, None
            run.started = run.updated = run.advanced = now
            self._webhook(run, "requested")
            return self.run(run_id)

    # --- people, organizations, teams and OAuth apps ("Sign in with GitHub", fakegithub.oauth) ---

    def add_user(
        self, login: str, name: str | None = None, email: str | None = None, emails: list | None = None
    ) -> int:
        """A GitHub account; ``email`` is its public (and primary, verified) address, ``emails``
        [(address, primary, verified)] what ``GET /user/emails`` lists. Returns its id."""
        with self.state.lock:
            return oauth.add_user(self, login, name, email, emails)

    def add_org(self, org: str, members: Iterable[str] = (), public_members: Iterable[str] = ()) -> None:
        """An organization; ``public_members`` are members who made their membership public."""
        with self.state.lock:
            oauth.add_org(self, org, list(members), list(public_members))

    def set_org_members(self, org: str, members: list[str]) -> None:
        """Who is in ``org`` now (someone removed leaves its teams too)."""
        with self.state.lock:
            data = self.state.accounts.orgs[org]
            data["members"] = set(members)
            data["public_members"] &= data["members"]
            for team in data["teams"].values():
                team["members"] &= data["members"]

    def set_team(self, org: str, slug: str, members: list[str], name: str | None = None) -> None:
        """Create or change a team of ``org``: its members are exactly ``members``."""
        with self.state.lock:
            oauth.set_team(self, org, slug, members, name)

    def add_oauth_app(
        self, client_id: str, client_secret: str, callback_url: str, name: str = "Pod Deployment Portal"
    ) -> None:
        """An OAuth app registered with its authorization callback URL."""
        with self.state.lock:
            app = {"secret": client_secret, "callback_url": callback_url, "name": name}
            self.state.accounts.apps[client_id] = app

    def sign_in_web(self, login: str | None) -> None:
        """Whom the browser is signed in to GitHub as, on the web host (None: nobody)."""
        with self.state.lock:
            self.state.accounts.signed_in = login

    def revoke_grant(self, login: str, client_id: str) -> None:
        """The person revokes the app's access: the consent page shows again next time."""
        with self.state.lock:
            self.state.accounts.grants.pop((login, client_id), None)

    # --- runs -----------------------------------------------------------------------------------

    def create_run(self, inputs: dict[str, str], actor: dict) -> Run:
        """A queued run of the workflow, as a dispatch makes; announced by a ``requested`` webhook."""
        with self.state.lock:
            run = self.state.add_run(inputs, self.workflow_def.display_title(inputs), actor)
            self._webhook(run, "requested")
            return run

    def _run_dict(self, run: Run) -> dict:
        return dict(shapes.workflow_run(self, run), inputs=dict(run.inputs))

    def _get_run(self, run_id: int) -> Run:
        run = self.state.find_run(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def _conclusion_for(self, run: Run) -> str:
        pod = f"{run.inputs.get('customer')}/{run.inputs.get('environment')}"
        return self.conclusions.get(pod, self.default_conclusion)

    def _transition(
        self, run: Run, status: str, conclusion: str | None = None, outcome: RunOutcome | None = None
    ) -> None:
        now = time.time()
        if status == "completed" and outcome is not None:
            run.outcome, conclusion = outcome, outcome.conclusion
        elif status == "completed" and conclusion == "success" and self.workflow_effect is not None:
            effect = self.workflow_effect(self, dict(run.inputs))
            run.outcome = effect if isinstance(effect, RunOutcome) else RunOutcome(conclusion=effect)
            conclusion = run.outcome.conclusion
        elif status == "completed":
            run.outcome = RunOutcome(conclusion=conclusion or "failure")
        run.status, run.conclusion = status, conclusion
        run.updated = run.advanced = now
        if status == "completed":
            self.artifacts.add(run, now)  # uploaded before the completed event goes out
        self._webhook(run, status)

    def _start(self, run: Run) -> None:
        """queued -> in_progress, or -> waiting while an environment's required reviewers hold it.
        No workflow_run event announces waiting: its actions are requested, in_progress, completed.
        https://docs.github.com/en/webhooks/webhook-events-and-payloads#workflow_run"""
        if self.environment_reviewers and run.inputs.get("action") != "plan":
            run.status = "waiting"
            run.updated = run.advanced = time.time()
        else:
            self._transition(run, "in_progress")

    def approve_environment(self, run_id: int) -> dict:
        """A required reviewer approves the deployment of a waiting run: it starts (in_progress).
        ValueError when the run is not waiting.
        https://docs.github.com/en/actions/managing-workflow-runs-and-deployments/managing-deployments/reviewing-deployments"""
        with self.state.lock:
            run = self._get_run(run_id)
            if run.status != "waiting":
                raise ValueError(f"run {run_id} is {run.status}, not waiting")
            self._transition(run, "in_progress")
            return self.run(run_id)

    def _clock(self) -> None:
        while not self._stopping.wait(0.05):
            with self.state.lock:
                if not self.auto_runs:
                    continue
                now = time.time()
                for run in self.state.runs:
                    if run.status == "queued" and now - run.advanced >= self.queued_for:
                        self._start(run)
                    elif run.status == "in_progress" and now - run.advanced >= self.in_progress_for:
                        self._transition(run, "completed", self._conclusion_for(run))

    def _webhook(self, run: Run, action: str) -> None:
        payload = shapes.workflow_run_event(self, run, action)
        delivery = workflow_run_delivery(action, payload, self.webhook_secret)
        self.state.deliveries.append(delivery)
        loss = self.webhook_loss
        if loss(delivery) if callable(loss) else random.random() < loss:  # noqa: S311 (not security)
            # Lost on the way: recorded as a failed delivery, never posted and never retried.
            delivery.error = "lost (fakegithub webhook_loss)"
            delivery.done.set()
        elif self.webhook_url:
            self._sender.send(self.webhook_url, delivery)
        else:
            delivery.done.set()


__all__ = ["Delivery", "FakeGitHub", "Fault", "RecordedRequest", "RunOutcome", "WorkflowEffect"]
