"""The seed's GitHub code (seed/000_b00814fe0b204ac0.txt), as written, as the baseline.

PyGithub is used with its defaults, as the seed did: that includes its client-side throttling
(0.25 s between any two requests, 1 s between writes) and its retry policy.
"""

from __future__ import annotations

import time

import github
import yaml

DEPLOY_WORKFLOW = "deploy-pod.yml"


def connect(api_url: str, token: str, repo: str):
    """The seed's module-level ``repo`` and ``github`` objects (one GET /repos at start-up)."""
    client = github.Github(auth=github.Auth.Token(token), base_url=api_url)
    return client, client.get_repo(repo)


def list_all_pods(repo, specs_path: str = "pods") -> list[dict]:
    """Walk the directories: one call per customer dir, per environment dir and per spec file."""
    pods = []
    for customer in repo.get_contents(specs_path):
        if customer.type != "dir":
            continue
        for environment in repo.get_contents(customer.path):
            if environment.type != "dir":
                continue
            for item in repo.get_contents(environment.path):
                if item.name == "spec.yml":
                    spec = repo.get_contents(item.path)
                    pods.append(yaml.safe_load(spec.decoded_content))
    return pods


def dispatch(repo, inputs: dict[str, str]) -> str | None:
    """The seed's deploy: dispatch without run details, wait 2 s, take the latest run's URL."""
    workflow = repo.get_workflow(DEPLOY_WORKFLOW)
    if not workflow.create_dispatch(ref="main", inputs=inputs):
        raise RuntimeError("workflow_dispatch returned False")
    action_url = None
    time.sleep(2)
    runs = workflow.get_runs(branch="main")
    if runs.totalCount > 0:
        action_url = runs[0].html_url
    return action_url


def health(client, repo, specs_path: str = "pods") -> dict:
    """The seed's /health body: probes GitHub on every call."""
    repo.get_contents(specs_path)
    core = client.get_rate_limit().resources.core
    has_workflow_scope = repo.get_workflows().totalCount > 0
    return {
        "status": "healthy",
        "scopes": {"repo": True, "workflow": has_workflow_scope},
        "rate_limit": {"remaining": core.remaining, "limit": core.limit},
    }
