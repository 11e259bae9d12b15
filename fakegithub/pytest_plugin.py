"""pytest fixtures: one emulator per test process, reset before every test.

Load with ``pytest_plugins = ["fakegithub.pytest_plugin"]`` in the root conftest. Under
pytest-xdist each worker is its own process and so gets its own server on its own port.

This module is also where the emulator meets this project: ``PROJECT_PODS`` seeds the repository
and ``deploy_pod`` is what deploy-pod.yml does, passed as ``workflow_effect`` here and by the
sandbox (``python -m fakegithub``), the e2e tests and the bench.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments import podspec
from fakegithub.server import FakeGitHub

PROJECT_PODS = Path(__file__).resolve().parent.parent / "pods"


def deploy_pod(gh: FakeGitHub, inputs: dict[str, str]) -> str:
    """What deploy-pod.yml does on success: validate, render and commit spec.yml."""
    data = {k: v for k, v in inputs.items() if k in podspec.FIELDS}
    try:
        spec = podspec.validate(data)
    except podspec.SpecError:
        return "failure"  # the workflow's validate step fails
    path = podspec.spec_path(gh.specs_path, spec.customer, spec.environment)
    tag = inputs.get("request_id") or "manual"
    gh.put_file(path, podspec.render(spec), message=f"Deploy {spec.pod} [{tag}]")
    return "success"


@pytest.fixture(scope="session")
def fakegithub_server():
    """The process-wide emulator (repo demo/pods, token test-token, seeded with pods/)."""
    gh = FakeGitHub(
        repo="demo/pods",
        specs_dir=PROJECT_PODS if PROJECT_PODS.is_dir() else None,
        specs_path="pods",
        token="test-token",  # noqa: S106 (the documented test token)
        scopes="repo, workflow",
        workflow_effect=deploy_pod,
    ).start()
    yield gh
    gh.stop()


@pytest.fixture
def fakegithub(fakegithub_server):
    """The emulator, back in its initial state for this test."""
    fakegithub_server.reset()
    yield fakegithub_server
