"""deploy-pod.yml's "Check spec.yml is unchanged" step, run by bash in real git checkouts: a commit
pushed between the portal's request and the run is refused, as the runner would see it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from deployments import podspec

from .conftest import REPO_ROOT

DEPLOY = REPO_ROOT / ".github" / "workflows" / "deploy-pod.yml"
STEP = "Check spec.yml is unchanged"
NO_SPEC = "0" * 40
SPEC = "pods/initech/prod/spec.yml"


def step() -> dict:
    steps = yaml.safe_load(DEPLOY.read_text())["jobs"]["deploy"]["steps"]
    return next(s for s in steps if s.get("name") == STEP)


@pytest.fixture
def git_env(tmp_path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "tester",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "tester",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def commit_spec(clone: Path, env: dict[str, str], instance_type: str, message: str) -> None:
    spec = podspec.PodSpec("initech", "prod", "initech-prod-web", instance_type, False)
    (clone / SPEC).parent.mkdir(parents=True, exist_ok=True)
    (clone / SPEC).write_text(podspec.render(spec))
    git(clone, env, "add", SPEC)
    git(clone, env, "commit", "--quiet", "-m", message)
    git(clone, env, "push", "--quiet", "origin", "HEAD:refs/heads/main")


@pytest.fixture
def origin(tmp_path, git_env) -> Path:
    bare = tmp_path / "origin.git"
    git(tmp_path, git_env, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "operator"
    git(tmp_path, git_env, "clone", "--quiet", str(bare), str(seed))
    commit_spec(seed, git_env, "t3.small", "seed")
    return bare


def run_step(origin: Path, tmp_path: Path, env: dict[str, str], expected: str, customer: str = "initech"):
    """The step as the runner runs it: in a fresh shallow checkout of main, with the job's env."""
    runner = tmp_path / f"runner-{len(list(tmp_path.iterdir()))}"
    git(tmp_path, env, "clone", "--quiet", "--depth", "1", f"file://{origin}", str(runner))
    job_env = {
        **env,
        "EXPECTED_SPEC_SHA": expected,
        "SPECS_PATH": "pods",
        "CUSTOMER": customer,
        "ENVIRONMENT": "prod",
    }
    return subprocess.run(
        ["bash", "-e", "-c", step()["run"]],
        cwd=runner,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def blob_at_main(origin: Path, env: dict[str, str]) -> str:
    return git(origin, env, "rev-parse", f"main:{SPEC}")


def test_the_step_runs_only_when_the_portal_sent_an_expected_spec():
    assert step()["if"] == "inputs.expected_spec_sha != ''"


def test_the_spec_the_request_was_made_against_passes(origin, tmp_path, git_env):
    result = run_step(origin, tmp_path, git_env, blob_at_main(origin, git_env))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the version the request was made against" in result.stdout


def test_a_commit_pushed_between_the_request_and_the_run_is_refused(origin, tmp_path, git_env):
    seen = blob_at_main(origin, git_env)
    other = tmp_path / "someone-else"
    git(tmp_path, git_env, "clone", "--quiet", str(origin), str(other))
    commit_spec(other, git_env, "t3.xlarge", "Hand edit")
    now = blob_at_main(origin, git_env)

    result = run_step(origin, tmp_path, git_env, seen)

    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"::error title=Spec changed::spec.yml changed since you opened it: {SPEC} was {seen[:7]} when the "
        f"request was made, it is now {now[:7]}. Nothing was changed. Review the new version in the portal "
        "and deploy again."
    )


def test_a_new_pod_passes_while_it_does_not_exist_and_is_refused_once_it_does(origin, tmp_path, git_env):
    assert run_step(origin, tmp_path, git_env, NO_SPEC, customer="hooli").returncode == 0
    result = run_step(origin, tmp_path, git_env, NO_SPEC)
    assert result.returncode == 1
    assert "::error title=Spec changed::" in result.stdout


def test_a_deleted_spec_is_refused(origin, tmp_path, git_env):
    seen = blob_at_main(origin, git_env)
    other = tmp_path / "someone-else"
    git(tmp_path, git_env, "clone", "--quiet", str(origin), str(other))
    git(other, git_env, "rm", "--quiet", SPEC)
    git(other, git_env, "commit", "--quiet", "-m", "Remove the pod")
    git(other, git_env, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    result = run_step(origin, tmp_path, git_env, seen)
    assert result.returncode == 1
    assert "it no longer exists" in result.stdout


@pytest.mark.parametrize("value", ["HEAD", "main", "abc", "$(touch pwned)", NO_SPEC + "\n::error::x"])
def test_what_is_not_an_object_id_is_refused_without_running_it(origin, tmp_path, git_env, value):
    result = run_step(origin, tmp_path, git_env, value)
    assert result.returncode == 1
    assert result.stdout.startswith("::error title=Invalid input::")
    assert not (tmp_path / "pwned").exists()
