"""scripts/deploy/commit-spec.sh against real git repositories (a bare origin and two clones)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from deployments import podspec

from .conftest import REPO_ROOT, SCRIPTS_DIR

COMMIT_SPEC = SCRIPTS_DIR / "commit-spec.sh"


@pytest.fixture
def git_env(tmp_path) -> dict[str, str]:
    """Isolated git: no user/system config, fixed identity for the test's own commits."""
    home = tmp_path / "home"
    home.mkdir()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
        "GIT_TERMINAL_PROMPT": "0",
    }


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    identity = {"GIT_AUTHOR_NAME": "tester", "GIT_AUTHOR_EMAIL": "t@example.com"}
    identity |= {"GIT_COMMITTER_NAME": "tester", "GIT_COMMITTER_EMAIL": "t@example.com"}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**env, **identity}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture
def origin(tmp_path, git_env) -> Path:
    """A bare origin whose main branch holds one existing pod."""
    bare = tmp_path / "origin.git"
    git(tmp_path, git_env, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, git_env, "clone", "--quiet", str(bare), str(seed))
    spec = podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.small", False)
    write_spec(seed, spec)
    git(seed, git_env, "add", ".")
    git(seed, git_env, "commit", "--quiet", "-m", "seed")
    git(seed, git_env, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    return bare


def clone(origin: Path, dest: Path, env: dict[str, str]) -> Path:
    git(dest.parent, env, "clone", "--quiet", "--branch", "main", str(origin), str(dest))
    return dest


def write_spec(repo: Path, spec: podspec.PodSpec) -> str:
    rel = podspec.spec_path("pods", spec.customer, spec.environment)
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(podspec.render(spec))
    return rel


def commit_spec(
    repo: Path, env: dict[str, str], spec_rel: str, message: str, **extra_env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(COMMIT_SPEC), spec_rel, message],
        cwd=repo,
        env={**env, "PUSH_ATTEMPTS": "3", **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def origin_file(origin: Path, env: dict[str, str], rel: str) -> str:
    return git(origin, env, "show", f"main:{rel}")


def origin_log(origin: Path, env: dict[str, str]) -> list[str]:
    return git(origin, env, "log", "--format=%s", "main").splitlines()


def refuse_pushes(origin: Path, *stderr_lines: str) -> Path:
    """Install a pre-receive hook that refuses every push as GitHub does; returns its call log."""
    calls = origin.parent / "pre-receive-calls"
    message = "".join(f"echo {shlex.quote(line)} >&2\n" for line in stderr_lines)
    hook = origin / "hooks" / "pre-receive"
    hook.write_text(f"#!/bin/sh\necho called >>{shlex.quote(str(calls))}\n{message}exit 1\n")
    hook.chmod(0o755)
    return calls


# What github.com answers a push to a branch protected by a rule, or by a ruleset.
GH006 = (
    "error: GH006: Protected branch update failed for refs/heads/main.",
    "error: Changes must be made through a pull request.",
)
GH013 = (
    "error: GH013: Repository rule violations found for refs/heads/main.",
    "- Changes must be made through a pull request.",
)


ACME = podspec.PodSpec("acme", "prod", "acme-prod-web", "t3.medium", True)
GLOBEX = podspec.PodSpec("globex", "staging", "globex-staging-api", "m5.large", False)


def test_new_spec_is_committed_and_pushed(origin, tmp_path, git_env):
    repo = clone(origin, tmp_path / "a", git_env)
    rel = write_spec(repo, ACME)
    result = commit_spec(repo, git_env, rel, "Deploy acme/prod [42]")
    assert result.returncode == 0, result.stderr
    assert origin_log(origin, git_env) == ["Deploy acme/prod [42]", "seed"]
    assert podspec.parse(origin_file(origin, git_env, rel)) == ACME
    author = git(origin, git_env, "log", "-1", "--format=%an <%ae>", "main").strip()
    assert author == "github-actions[bot] <41898282+github-actions[bot]@users.noreply.github.com>"
    assert git(origin, git_env, "show", "--name-only", "--format=", "main").split() == [rel]


def test_existing_spec_update_is_committed(origin, tmp_path, git_env):
    repo = clone(origin, tmp_path / "a", git_env)
    updated = podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.large", True)
    rel = write_spec(repo, updated)
    (repo / "unrelated.txt").write_text("not part of the deployment\n")
    result = commit_spec(repo, git_env, rel, "Deploy initech/prod")
    assert result.returncode == 0, result.stderr
    assert podspec.parse(origin_file(origin, git_env, rel)) == updated
    # Only the spec is committed, even with other changes lying around in the checkout.
    assert git(origin, git_env, "show", "--name-only", "--format=", "main").split() == [rel]


def test_origin_moved_meanwhile_rebases_and_retries(origin, tmp_path, git_env):
    repo_a = clone(origin, tmp_path / "a", git_env)
    repo_b = clone(origin, tmp_path / "b", git_env)
    # Run B (another pod) pushes first, after A checked out.
    rel_b = write_spec(repo_b, GLOBEX)
    result_b = commit_spec(repo_b, git_env, rel_b, "Deploy globex/staging")
    assert result_b.returncode == 0, result_b.stderr

    rel_a = write_spec(repo_a, ACME)
    result_a = commit_spec(repo_a, git_env, rel_a, "Deploy acme/prod")
    assert result_a.returncode == 0, result_a.stderr
    assert "rebasing" in result_a.stdout, "the first push should have been rejected and retried"

    assert origin_log(origin, git_env) == ["Deploy acme/prod", "Deploy globex/staging", "seed"]
    assert podspec.parse(origin_file(origin, git_env, rel_a)) == ACME
    assert podspec.parse(origin_file(origin, git_env, rel_b)) == GLOBEX
    assert git(origin, git_env, "rev-list", "--merges", "main") == "", "history must stay linear"


def test_unchanged_spec_commits_nothing(origin, tmp_path, git_env):
    repo = clone(origin, tmp_path / "a", git_env)
    before = git(origin, git_env, "rev-parse", "main")
    rel = write_spec(repo, podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.small", False))
    result = commit_spec(repo, git_env, rel, "Deploy initech/prod")
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
    assert git(origin, git_env, "rev-parse", "main") == before
    assert git(repo, git_env, "rev-parse", "HEAD") == before


def test_conflicting_concurrent_edit_fails_without_pushing(origin, tmp_path, git_env):
    repo_a = clone(origin, tmp_path / "a", git_env)
    repo_b = clone(origin, tmp_path / "b", git_env)
    rel = write_spec(repo_b, podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.xlarge", False))
    assert commit_spec(repo_b, git_env, rel, "B").returncode == 0
    write_spec(repo_a, podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.2xlarge", False))
    result = commit_spec(repo_a, git_env, rel, "A")
    assert result.returncode == 1
    assert "conflicted" in result.stderr
    assert podspec.parse(origin_file(origin, git_env, rel)).instance_type == "t3.xlarge"
    # The rebase was aborted: the clone is not left mid-rebase.
    assert not (repo_a / ".git" / "rebase-merge").exists()


def test_missing_spec_file_fails(origin, tmp_path, git_env):
    repo = clone(origin, tmp_path / "a", git_env)
    result = commit_spec(repo, git_env, "pods/nope/prod/spec.yml", "x")
    assert result.returncode == 1
    assert "spec file not found" in result.stderr


def test_workflow_render_then_commit_new_pod(origin, tmp_path, git_env):
    """The workflow's own sequence: podspec CLI renders into SPECS_PATH, then commit-spec pushes."""
    repo = clone(origin, tmp_path / "a", git_env)
    rel = "pods/umbrella/dev/spec.yml"
    inputs = {
        "CUSTOMER": "umbrella",
        "ENVIRONMENT": "dev",
        "INSTANCE_NAME": "umbrella-dev-app",
        "INSTANCE_TYPE": "c6i.large",
        "WAF_ENABLED": "false",
    }
    render = subprocess.run(
        [sys.executable, "-m", "deployments.podspec", "render", "--out", str(repo / rel)],
        cwd=REPO_ROOT,
        env={"PATH": git_env["PATH"], **inputs},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert render.returncode == 0, render.stderr
    result = commit_spec(repo, git_env, rel, "Deploy umbrella/dev [7]")
    assert result.returncode == 0, result.stderr
    spec = podspec.parse(origin_file(origin, git_env, rel))
    assert spec.workflow_inputs() == {k.lower(): v for k, v in inputs.items()}


@pytest.mark.parametrize("refusal", [GH006, GH013], ids=["branch-protection", "ruleset"])
def test_protected_branch_fails_at_once_with_what_to_do(origin, tmp_path, git_env, refusal):
    repo = clone(origin, tmp_path / "a", git_env)
    before = git(origin, git_env, "rev-parse", "main")
    calls = refuse_pushes(origin, *refusal)
    rel = write_spec(repo, ACME)
    output = tmp_path / "github-output"
    output.touch()
    result = commit_spec(repo, git_env, rel, "Deploy acme/prod", GITHUB_OUTPUT=str(output))
    assert result.returncode == 1
    # One push, no rebase, no retry: a protection refusal is not a race.
    assert calls.read_text().splitlines() == ["called"]
    assert "rebasing" not in result.stdout
    assert "::error title=Protected branch::The branch main is protected" in result.stderr
    assert refusal[0].removeprefix("error: ") in result.stderr
    assert "DEPLOY_APP_ID" in result.stderr and "DEPLOY_APP_PRIVATE_KEY" in result.stderr
    # Nothing half-done: origin untouched, no rebase in progress, no commit reported to later steps.
    assert git(origin, git_env, "rev-parse", "main") == before
    assert not (repo / ".git" / "rebase-merge").exists()
    assert output.read_text() == ""


def test_other_refusal_fails_at_once_with_gits_message(origin, tmp_path, git_env):
    repo = clone(origin, tmp_path / "a", git_env)
    calls = refuse_pushes(origin, "error: the repository is read-only for maintenance")
    rel = write_spec(repo, ACME)
    result = commit_spec(repo, git_env, rel, "Deploy acme/prod")
    assert result.returncode == 1
    assert calls.read_text().splitlines() == ["called"]
    assert "read-only for maintenance" in result.stderr
    assert "refused the push" in result.stderr
    assert "protected" not in result.stderr


def test_pushed_commit_is_handed_to_the_later_steps(origin, tmp_path, git_env):
    repo_a = clone(origin, tmp_path / "a", git_env)
    repo_b = clone(origin, tmp_path / "b", git_env)
    rel_b = write_spec(repo_b, GLOBEX)
    assert commit_spec(repo_b, git_env, rel_b, "Deploy globex/staging").returncode == 0
    output = tmp_path / "github-output"
    rel = write_spec(repo_a, ACME)
    result = commit_spec(repo_a, git_env, rel, "Deploy acme/prod", GITHUB_OUTPUT=str(output))
    assert result.returncode == 0, result.stderr
    # After the rebase: the commit on the branch, whose spec is the one Terraform then applies.
    assert output.read_text() == f"commit={git(origin, git_env, 'rev-parse', 'main')}"
    assert (repo_a / rel).read_text() == origin_file(origin, git_env, rel)
