"""pytest fixtures: one emulator per test process, reset before every test.

Load with ``pytest_plugins = ["fakegithub.pytest_plugin"]`` in the root conftest. Under
pytest-xdist each worker is its own process and so gets its own server on its own port.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fakegithub.server import FakeGitHub

PROJECT_PODS = Path(__file__).resolve().parent.parent / "pods"


@pytest.fixture(scope="session")
def fakegithub_server():
    """The process-wide emulator (repo demo/pods, token test-token, seeded with pods/)."""
    gh = FakeGitHub(
        repo="demo/pods",
        specs_dir=PROJECT_PODS if PROJECT_PODS.is_dir() else None,
        specs_path="pods",
        token="test-token",  # noqa: S106 (the documented test token)
        scopes="repo, workflow",
    ).start()
    yield gh
    gh.stop()


@pytest.fixture
def fakegithub(fakegithub_server):
    """The emulator, back in its initial state for this test."""
    fakegithub_server.reset()
    yield fakegithub_server
