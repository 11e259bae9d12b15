"""An emulator of the GitHub REST API subset the portal uses (sandbox backend and test double).

Start it in-process and point PyGithub at it::

    from fakegithub import FakeGitHub

    gh = FakeGitHub(repo="demo/pods", specs_dir="pods").start()   # 127.0.0.1, free port
    github.Github(auth=github.Auth.Token("test-token"), base_url=gh.api_url, retry=None)

or run ``python -m fakegithub --help``; tests use the ``fakegithub`` fixture from
``fakegithub.pytest_plugin``. Responses follow GitHub's OpenAPI schemas. No Django here.

Control API (all thread-safe):

* files: ``put_file(path, text)``, ``delete_file(path)``, ``load_dir(dir, under="pods")``,
  ``files`` ({path: text} at the branch head), ``head_sha``. Each change is a new commit.
* settings (plain attributes, restored by ``reset()``): ``token``, ``scopes`` (None = no
  x-oauth-scopes header), ``latency``, ``ghes``, ``rate_limiting_enabled`` (False: ``GET
  /rate_limit`` answers 404 "Rate limiting is not enabled." and no x-ratelimit-* headers are
  sent, as GHES by default; the constructor's default is ``not ghes``), ``run_visible_after``,
  ``workflow_state`` ("active" / "disabled_manually" / None = no workflow), ``workflow_def``
  (a ``WorkflowDef``: inputs, run-name, whether ``on:`` has workflow_dispatch), ``default_conclusion``,
  ``conclusions`` ({"customer/env": conclusion}), ``auto_runs``, ``queued_for``,
  ``in_progress_for``, ``webhook_url``, ``webhook_secret``, ``app`` = (app_id, public PEM,
  installation_id).
* ``set_rate_limit(remaining=, reset=, limit=)``, ``rate_limit`` (current values).
* ``add_fault(method, path_regex, status, body, headers, delay, drop, times)``,
  ``clear_faults()``; ``status=None`` with ``delay`` only slows the normal answer.
* ``requests`` (``.method .path .query .headers .body .json .status``), ``count(method, path)``,
  ``clear_requests()``.
* ``runs`` (API dicts plus ``inputs``, newest first), ``run(id)``, ``advance_run(id)``,
  ``complete_run(id, conclusion="success", outcome=None)`` (a ``RunOutcome``: the run ends as it
  says, failed step and annotations included, without the workflow effect), ``rerun(id)``.
  A run's jobs, steps and check-run annotations follow from its status and outcome
  (``fakegithub.jobs``: the workflow file's steps; a failure without a named step fails at
  "Terraform apply").
* permissions (settings): ``installation_permissions`` (what the App installation and its tokens
  may do; ``GET /app/installations/{id}`` shows them), ``installation_repositories`` and
  ``token_repositories`` (None = all; another repository answers 404), ``fine_grained_permissions``
  (for a ``github_pat_`` token, which gets no x-oauth-scopes). A route its token's permissions do
  not cover answers 403 "Resource not accessible by integration" (or "by personal access token")
  with ``x-accepted-github-permissions``.
* secondary rate limits (settings, None = off): ``secondary_points_per_minute`` (GET 1, writes 5),
  ``secondary_writes_per_minute``, ``secondary_graphql_points_per_minute`` (the GraphQL
  endpoint's own, a query 1 point); past them ``secondary_limit_status`` (403 or 429) with
  ``retry-after``.
* ``webhook_loss`` (setting): the share of deliveries lost (0.0 to 1.0) or a predicate of the
  ``Delivery``; a lost one is never posted nor retried (``error`` says so).
* ``branch_protection`` ({"bypass_app": bool, "ruleset": bool} or None), ``variables``
  ({"DEPLOY_APP_ID": ...}), ``push_refusal()``: what a push of spec.yml meets (GH006, GH013, None).
* ``environment_reviewers`` (setting): apply and deploy runs wait in status "waiting" (a GitHub
  environment with required reviewers) until ``approve_environment(id)``; plan runs do not.
* ``artifacts``: what completed runs uploaded (``fakegithub.artifacts``): ``for_run(id)``,
  ``get(id)``, ``expire(run_id=None, name=None)`` (retention over: listed ``expired``, 410).
* ``deliveries`` (``.action .headers .body .payload .status .error .done``).
* ``workflow_effect`` (constructor argument): what a run that succeeds does to the repository,
  ``effect(emulator, inputs) -> conclusion``; without one the run commits nothing. Only the
  pytest plugin knows the portal: its ``deploy_pod`` is deploy-pod.yml (plan, apply or deploy:
  render spec.yml with ``deployments.podspec``, plan with ``fakegithub.terraform_model``, commit),
  used by the fixture, the sandbox, e2e tests and the bench.
* "Sign in with GitHub" (``fakegithub.oauth``): ``add_user(login, name, email, emails)``,
  ``add_org(org, members, public_members)``, ``set_org_members(org, members)``,
  ``set_team(org, slug, members)``, ``add_oauth_app(client_id, secret, callback_url)``,
  ``sign_in_web(login)`` (whom the browser is signed in to GitHub as), ``revoke_grant(login,
  client_id)``. The web flow (``/login/oauth/authorize``, ``/login/oauth/access_token``) is
  served at the root, beside the API prefix; a user access token then calls ``/user``,
  ``/user/emails``, ``/user/teams`` and the organization membership checks.
* GraphQL (``fakegithub.graphql``): ``POST /graphql`` (``/api/graphql`` under a GHES prefix) runs
  queries of ``repository { object(oid:|expression:) { ... on Blob { text isTruncated ... } } }``
  (aliases, fragments, variables) with graphql-core; its own rate limit,
  ``state.graphql_remaining`` (1 point a query); errors shaped as GitHub's (NOT_FOUND, FORBIDDEN,
  RATE_LIMITED).
* ``reset()``: back to the constructor's state (run ids keep increasing across resets).
"""

from fakegithub.server import Delivery, FakeGitHub, Fault, RecordedRequest

__all__ = ["Delivery", "FakeGitHub", "Fault", "RecordedRequest"]
