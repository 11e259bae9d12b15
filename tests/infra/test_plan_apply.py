"""The deploy workflow's plan and apply modes, for real: its scripts, real git, Terraform and moto.

Each workflow run gets its own workspace, as a runner does: a fresh clone of the branch, the
Terraform configuration, ``terraform init``. A plan run (action=plan) renders spec.yml, plans
(``terraform plan -out``) and summarizes (plan-summary.json, read back with the portal's
``deployments.plan.parse``), committing nothing; an apply run (action=apply) gets that run's
``tfplan`` and ``plan-summary.json`` (what actions/download-artifact does), checks them, commits
spec.yml and applies exactly that plan file. The steps run in the workflow's order, through
scripts/deploy/terraform.sh and commit-spec.sh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployments import plan, podspec

from .conftest import (
    REPO_ROOT,
    SCRIPTS_DIR,
    STATE_BUCKET,
    TERRAFORM_DIR,
    TIMINGS,
    backend_args,
    moto_override,
    plugin_dir_args,
)

pytestmark = pytest.mark.infra

STALE_LEAD = "::error title=Stale plan::The plan is out of date \u2014 plan again. "
# terraform init of two workspaces at once could race in the shared plugin cache.
INIT_LOCK = threading.Lock()


def git(cwd: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@dataclass
class Origin:
    """The repository on GitHub: a bare repository whose main branch holds the specs."""

    path: Path
    env: dict[str, str]

    def head(self) -> str:
        return git(self.path, self.env, "rev-parse", "main")

    def blob(self, rel: str) -> str | None:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"main:{rel}"],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return found.stdout.strip() or None

    def spec(self, rel: str) -> podspec.PodSpec:
        return podspec.parse(git(self.path, self.env, "show", f"main:{rel}") + "\n")


@dataclass
class Step:
    name: str
    result: subprocess.CompletedProcess

    @property
    def ok(self) -> bool:
        return self.result.returncode == 0


@dataclass
class Run:
    """One workflow run's workspace: a clone of main, terraform/, and the runner's files."""

    action: str
    spec: podspec.PodSpec
    root: Path
    env: dict[str, str]
    steps: list[Step] = field(default_factory=list)

    @property
    def spec_rel(self) -> str:
        return podspec.spec_path("pods", self.spec.customer, self.spec.environment)

    @property
    def tfplan(self) -> Path:
        return self.root / "terraform" / "tfplan"

    @property
    def plan_summary(self) -> Path:
        return Path(self.env["PLAN_SUMMARY"])

    @property
    def saved_summary(self) -> Path:
        return Path(self.env["SAVED_SUMMARY"])

    @property
    def step_summary(self) -> str:
        path = Path(self.env["GITHUB_STEP_SUMMARY"])
        return path.read_text() if path.exists() else ""

    @property
    def failed(self) -> Step | None:
        return next((step for step in self.steps if not step.ok), None)

    def summary(self) -> plan.PlanSummary:
        return plan.parse(self.plan_summary.read_bytes())

    def _run(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> Step:
        result = subprocess.run(
            argv,
            cwd=self.root,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=900,
        )
        step = Step(name, result)
        self.steps.append(step)
        return step

    def terraform_sh(self, command: str, *args: str) -> Step:
        return self._run(command, [str(SCRIPTS_DIR / "terraform.sh"), command, *args])

    def render(self) -> Step:
        return self._run(
            "render", [sys.executable, "-m", "deployments.podspec", "render", "--out", self.spec_rel]
        )

    def init(self) -> Step:
        with INIT_LOCK:
            return self.terraform_sh("init", *plugin_dir_args(), *backend_args(self.env["AWS_ENDPOINT_URL"]))

    def commit(self) -> Step:
        message = f"Deploy {self.spec.pod}"
        return self._run("commit", [str(SCRIPTS_DIR / "commit-spec.sh"), self.spec_rel, message])

    def sequence(self, *steps) -> Run:
        """Run steps in order, as the job does: the first that fails ends the run."""
        for step in steps:
            if not step().ok:
                break
        return self

    def download(self, plan_run: Run) -> None:
        """What actions/download-artifact leaves of the plan run's tfplan and plan-summary."""
        self.tfplan.parent.mkdir(parents=True, exist_ok=True)
        if plan_run.tfplan.exists():
            shutil.copyfile(plan_run.tfplan, self.tfplan)
        if plan_run.plan_summary.exists():
            self.saved_summary.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plan_run.plan_summary, self.saved_summary)

    def plan_mode(self) -> Run:
        return self.sequence(
            self.render,
            self.init,
            lambda: self.terraform_sh("plan"),
            lambda: self.terraform_sh("summarize"),
        )

    def apply_mode(self, plan_run: Run | None) -> Run:
        if plan_run is not None:
            self.download(plan_run)
        return self.sequence(
            self.render,
            lambda: self.terraform_sh("unpack-plan"),
            self.init,
            lambda: self.terraform_sh("check-plan"),
            self.commit,
            lambda: self.terraform_sh("apply"),
        )

    def deploy_mode(self, *, commit: bool = True) -> Run:
        steps = [self.render, self.init]
        if commit:
            steps.append(self.commit)
        steps += [
            lambda: self.terraform_sh("plan"),
            lambda: self.terraform_sh("summarize"),
            lambda: self.terraform_sh("apply"),
        ]
        return self.sequence(*steps)

    def expect_success(self) -> Run:
        failed = self.failed
        if failed is not None:
            output = f"{failed.result.stdout}\n{failed.result.stderr}"
            pytest.fail(f"{self.action} {self.spec.pod}: {failed.name} failed:\n{output}")
        return self


@dataclass
class Repo:
    origin: Origin
    base: Path
    terraform_env: dict[str, str]
    moto_url: str
    seed: str = ""
    runs: int = 0

    def run(self, action: str, spec: podspec.PodSpec) -> Run:
        """A new workspace, as a runner checks the branch out for a run."""
        self.runs += 1
        home = self.base / f"run-{self.runs}"
        root = home / "workspace"
        git(
            self.base,
            self.origin.env,
            "clone",
            "--quiet",
            "--branch",
            "main",
            str(self.origin.path),
            str(root),
        )
        shutil.copytree(
            TERRAFORM_DIR, root / "terraform", ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*")
        )
        (root / "terraform" / "moto_override.tf").write_text(moto_override(self.moto_url))
        (root / ".git" / "info" / "exclude").write_text("terraform/\n")
        runner_temp = home / "runner-temp"
        runner_temp.mkdir()
        env = {
            **self.terraform_env,
            **self.origin.env,
            **{name.upper(): value for name, value in spec.workflow_inputs().items()},
            "ACTION": action,
            "PYTHON": sys.executable,
            "PYTHONPATH": str(REPO_ROOT),
            "SPECS_PATH": "pods",
            "SPEC_FILE": podspec.spec_path("pods", spec.customer, spec.environment),
            "TF_STATE_BUCKET": STATE_BUCKET,
            "RUNNER_TEMP": str(runner_temp),
            "PLAN_SUMMARY": str(runner_temp / "plan-summary" / "plan-summary.json"),
            "SAVED_SUMMARY": str(runner_temp / "saved-plan" / "plan-summary.json"),
            "GITHUB_STEP_SUMMARY": str(runner_temp / "step-summary.md"),
            "PLAN_RUN_ID": "4242" if action == "apply" else "",
            "DEPLOY_BRANCH": "main",
            "PUSH_ATTEMPTS": "2",
        }
        return Run(action=action, spec=spec, root=root, env=env)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, terraform_env, moto_server) -> Repo:
    base = tmp_path_factory.mktemp("plan-apply")
    home = base / "home"
    home.mkdir()
    env = {
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
    bare = base / "origin.git"
    git(base, env, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = base / "seed"
    git(base, env, "clone", "--quiet", str(bare), str(seed))
    (seed / "README.md").write_text("pods\n")
    git(seed, env, "add", ".")
    git(seed, env, "commit", "--quiet", "-m", "seed")
    git(seed, env, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    origin = Origin(bare, env)
    return Repo(origin, base, terraform_env, moto_server.url, seed=origin.head())


def timed(label: str, work):
    start = time.monotonic()
    result = work()
    TIMINGS.append((label, time.monotonic() - start))
    return result


INITECH = podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.small", True)
UMBRELLA = podspec.PodSpec("umbrella", "dev", "umbrella-dev-app", "t3.micro", False)


@dataclass
class Created:
    plan_run: Run
    apply_run: Run
    head_before_apply: str
    # umbrella/dev: planned as a new pod, then created by a run that did not commit.
    early_plan: Run
    late_apply: Run
    # The apply step run anyway, past the failed check: Terraform's own answer.
    late_terraform_apply: Step


@pytest.fixture(scope="module")
def created(repo) -> Created:
    """initech/prod planned as a new pod, then that plan applied by an apply run; meanwhile
    umbrella/dev planned as a new pod, then created by another run before its plan is applied."""
    plan_run = timed(
        "initech/prod: plan (new pod)", lambda: repo.run("plan", INITECH).plan_mode()
    ).expect_success()
    early_plan = repo.run("plan", UMBRELLA).plan_mode().expect_success()
    head = repo.origin.head()

    def apply_initech() -> Run:
        run = repo.run("apply", INITECH)
        return timed("initech/prod: apply of the saved plan (new pod)", lambda: run.apply_mode(plan_run))

    def create_umbrella() -> Run:
        # Another branch's run, or terraform run by hand: the state moves, the branch does not.
        return repo.run("deploy", UMBRELLA).deploy_mode(commit=False).expect_success()

    with ThreadPoolExecutor(max_workers=2) as pool:
        initech, umbrella = pool.submit(apply_initech), pool.submit(create_umbrella)
        apply_run = initech.result()
        umbrella.result()
    late_apply = repo.run("apply", UMBRELLA).apply_mode(early_plan)
    late_terraform_apply = late_apply.terraform_sh("apply")
    return Created(plan_run, apply_run.expect_success(), head, early_plan, late_apply, late_terraform_apply)


def ec2_instances(moto_server, spec: podspec.PodSpec) -> list[dict]:
    reservations = moto_server.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:Pod", "Values": [spec.pod]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def lb_names(moto_server) -> set[str]:
    return {
        lb["LoadBalancerName"]
        for lb in moto_server.client("elbv2").describe_load_balancers()["LoadBalancers"]
    }


class TestNewPod:
    def test_the_plan_run_summarizes_a_new_pod_as_all_creates_and_commits_nothing(self, created, repo):
        summary = created.plan_run.summary()
        assert summary.counts == {"create": 23, "update": 0, "replace": 0, "delete": 0}
        assert summary.headline == "23 to add, 0 to change, 0 to replace, 0 to destroy"
        assert {r.address for r in summary.resources} >= {
            "module.pod.aws_instance.this",
            "module.pod.aws_iam_instance_profile.instance",
            "module.pod.aws_lb_listener.https",
            "module.pod.aws_s3_bucket.alb_logs",
            "module.pod.aws_wafv2_web_acl.this[0]",
            "module.pod.aws_wafv2_web_acl_association.this[0]",
            "module.pod.aws_wafv2_web_acl_logging_configuration.this[0]",
        }
        assert (summary.pod, summary.spec_blob, summary.terraform_version) == ("initech/prod", None, "1.11.4")
        assert not summary.destructive
        assert created.head_before_apply == repo.seed, "a plan run commits nothing"

    def test_the_plan_runs_step_summary_is_the_headline_and_table(self, created):
        text = created.plan_run.step_summary
        assert "### Terraform plan for `initech/prod`" in text
        assert "**23 to add, 0 to change, 0 to replace, 0 to destroy**" in text
        assert "| `module.pod.aws_instance.this` | create |" in text

    def test_a_pod_without_waf_plans_eighteen_creates(self, created):
        assert created.early_plan.summary().counts == {"create": 18, "update": 0, "replace": 0, "delete": 0}

    def test_the_apply_run_applies_exactly_the_saved_plan_and_commits_the_spec(
        self, created, repo, moto_server
    ):
        run = created.apply_run
        assert (
            hashlib.sha256(run.tfplan.read_bytes()).digest()
            == hashlib.sha256(created.plan_run.tfplan.read_bytes()).digest()
        )
        apply = next(step for step in run.steps if step.name == "apply")
        assert "Apply complete! Resources: 23 added, 0 changed, 0 destroyed." in apply.result.stdout
        (instance,) = ec2_instances(moto_server, INITECH)
        assert instance["InstanceType"] == "t3.small"
        assert repo.origin.spec(run.spec_rel) == INITECH
        assert "is current: 23 to add" in next(s for s in run.steps if s.name == "check-plan").result.stdout

    def test_the_apply_run_installs_the_providers_the_plan_was_made_with(self, created):
        lock = created.apply_run.root / "terraform" / ".terraform.lock.hcl"
        assert lock.read_text() == (created.plan_run.root / "terraform" / ".terraform.lock.hcl").read_text()

    def test_a_plan_made_before_the_pods_first_apply_is_stale_once_another_run_created_it(
        self, created, repo
    ):
        # The apply run refuses it before committing anything, as Terraform would when applying.
        run = created.late_apply
        assert run.failed is not None and run.failed.name == "check-plan"
        assert STALE_LEAD in run.failed.result.stderr
        assert "umbrella/dev had no Terraform state when it was planned" in run.failed.result.stderr
        assert repo.origin.blob(run.spec_rel) is None, "nothing may be committed for a stale plan"
        assert [s.name for s in run.steps][:4] == ["render", "unpack-plan", "init", "check-plan"]
        refused = created.late_terraform_apply.result
        assert refused.returncode == 1
        assert "Saved plan is stale" in refused.stdout
        assert STALE_LEAD + "Terraform refused the saved plan" in refused.stderr


@dataclass
class StaleState:
    blob: str | None
    saved: Run
    drift_fix: Run
    attempt: Run
    terraform_refusal: Step
    head_before: str
    reconfigured: Run


@pytest.fixture(scope="module")
def stale_state(created, repo, moto_server) -> StaleState:
    """initech/prod: a plan (WAF off) is saved; then the instance's Name tag drifts and a deploy
    of the unchanged spec puts it back (the state moves, the branch does not); then the plan."""
    saved = repo.run("plan", INITECH_NO_WAF).plan_mode().expect_success()
    blob = repo.origin.blob(saved.spec_rel)
    (instance,) = ec2_instances(moto_server, INITECH)
    moto_server.client("ec2").create_tags(
        Resources=[instance["InstanceId"]], Tags=[{"Key": "Name", "Value": "renamed-by-hand"}]
    )
    head = repo.origin.head()
    drift_fix = timed(
        "initech/prod: deploy of the unchanged spec (drift)",
        lambda: repo.run("deploy", INITECH).deploy_mode(),
    ).expect_success()
    assert repo.origin.head() == head, "an unchanged spec commits nothing"
    attempt = repo.run("apply", INITECH_NO_WAF).apply_mode(saved)
    # The apply step's own answer, past the check: Terraform refuses the stale plan file.
    refusal = attempt.terraform_sh("apply")
    # The same plan where terraform/ changed on the branch since (a saved plan applies the
    # configuration it was made with, not the one on disk).
    reconfigured = repo.run("apply", INITECH_NO_WAF)
    reconfigured.download(saved)
    (reconfigured.root / "terraform" / "extra.tf").write_text('locals {\n  changed = "on the branch"\n}\n')
    reconfigured.apply_mode(None)
    return StaleState(blob, saved, drift_fix, attempt, refusal, head, reconfigured)


INITECH_NO_WAF = podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.small", False)


class TestStaleState:
    def test_a_plan_of_another_terraform_configuration_is_stale(self, stale_state, repo):
        run = stale_state.reconfigured
        assert run.failed is not None and run.failed.name == "check-plan"
        assert (
            STALE_LEAD + "The Terraform configuration changed since the plan (terraform/extra.tf)."
            in run.failed.result.stderr
        )
        assert repo.origin.head() == stale_state.head_before

    def test_turning_waf_off_plans_the_waf_resources_deletes(self, stale_state):
        summary = stale_state.saved.summary()
        assert summary.counts == {"create": 0, "update": 0, "replace": 0, "delete": 5}
        assert [r.address for r in summary.changed] == [
            "module.pod.aws_cloudwatch_log_group.waf[0]",
            "module.pod.aws_kms_key.waf_logs[0]",
            "module.pod.aws_wafv2_web_acl.this[0]",
            "module.pod.aws_wafv2_web_acl_association.this[0]",
            "module.pod.aws_wafv2_web_acl_logging_configuration.this[0]",
        ]
        assert summary.destructive
        # The spec.yml the apply run committed: what the plan was made against.
        assert stale_state.blob is not None
        assert summary.spec_blob == stale_state.blob

    def test_drift_shows_as_an_update_of_the_attribute_that_drifted(self, stale_state):
        summary = stale_state.drift_fix.summary()
        assert summary.counts == {"create": 0, "update": 1, "replace": 0, "delete": 0}
        (instance,) = summary.changed
        names = {c.attribute: (c.before, c.after) for c in instance.changes}
        assert names["tags.Name"] == ("renamed-by-hand", "initech-prod-web")

    def test_the_apply_run_refuses_a_plan_of_a_state_that_moved_before_committing(self, stale_state, repo):
        run = stale_state.attempt
        assert run.failed is not None and run.failed.name == "check-plan"
        assert STALE_LEAD in run.failed.result.stderr
        assert (
            "the Terraform state of initech/prod changed since the plan (serial" in run.failed.result.stderr
        )
        assert repo.origin.head() == stale_state.head_before
        assert repo.origin.spec(run.spec_rel) == INITECH

    def test_terraform_refuses_the_stale_plan_file_for_real_and_the_run_says_plan_again(
        self, stale_state, moto_server
    ):
        result = stale_state.terraform_refusal.result
        assert result.returncode == 1
        assert "Saved plan is stale" in result.stdout
        assert (
            STALE_LEAD
            + "Terraform refused the saved plan: the state of initech/prod changed after the plan was made."
            in result.stderr
        )
        web_acls = moto_server.client("wafv2").list_web_acls(Scope="REGIONAL")["WebACLs"]
        assert "initech-prod-web-waf" in {acl["Name"] for acl in web_acls}, "nothing was applied"


INITECH_RENAMED = podspec.PodSpec("initech", "prod", "initech-prod-app", "t3.small", True)
INITECH_LARGE = podspec.PodSpec("initech", "prod", "initech-prod-web", "t3.large", True)


@dataclass
class Renamed:
    plan_run: Run
    apply_run: Run
    instance_before: str
    lbs_before: set[str]
    overtaken: Run


@pytest.fixture(scope="module")
def renamed(stale_state, repo, moto_server) -> Renamed:
    """initech/prod: a plan of a resize is saved; then a rename is planned and applied; then the
    resize plan is tried. moto keeps the load balancer's deletion protection as an attribute but
    does not enforce it: on AWS this rename is made with it turned off first (README)."""
    resize = repo.run("plan", INITECH_LARGE).plan_mode().expect_success()
    (instance,) = ec2_instances(moto_server, INITECH)
    lbs = lb_names(moto_server)
    plan_run = timed("initech/prod: plan (rename)", lambda: repo.run("plan", INITECH_RENAMED).plan_mode())
    plan_run.expect_success()
    apply_run = repo.run("apply", INITECH_RENAMED)
    timed(
        "initech/prod: apply of the saved plan (rename: replacements)", lambda: apply_run.apply_mode(plan_run)
    )
    overtaken = repo.run("apply", INITECH_LARGE).apply_mode(resize)
    return Renamed(plan_run, apply_run.expect_success(), instance["InstanceId"], lbs, overtaken)


class TestRename:
    def test_renaming_the_instance_replaces_what_aws_cannot_rename(self, renamed):
        summary = renamed.plan_run.summary()
        assert summary.counts == {"create": 0, "update": 1, "replace": 10, "delete": 0}
        assert summary.destructive
        actions = {r.address: r.action for r in summary.changed}
        assert actions["module.pod.aws_instance.this"] == "update"
        forced = {
            r.address: [c.attribute for c in r.changes if c.forces_replacement] for r in summary.changed
        }
        assert forced == {
            "module.pod.aws_instance.this": [],
            "module.pod.aws_lb.this": ["name"],
            "module.pod.aws_lb_listener.http": ["load_balancer_arn"],
            "module.pod.aws_lb_listener.https": ["load_balancer_arn"],
            "module.pod.aws_lb_target_group.this": ["name"],
            "module.pod.aws_lb_target_group_attachment.this": ["target_group_arn"],
            "module.pod.aws_security_group.alb": ["name"],
            "module.pod.aws_security_group.instance": ["name"],
            "module.pod.aws_wafv2_web_acl.this[0]": ["name"],
            "module.pod.aws_wafv2_web_acl_association.this[0]": ["resource_arn", "web_acl_arn"],
            "module.pod.aws_wafv2_web_acl_logging_configuration.this[0]": ["resource_arn"],
        }
        lb = next(r for r in summary.changed if r.address == "module.pod.aws_lb.this")
        name = next(c for c in lb.changes if c.attribute == "name")
        assert (name.before, name.after) == (
            podspec_short_name(INITECH),
            podspec_short_name(INITECH_RENAMED),
        )
        assert summary.spec_blob is not None

    def test_the_rename_is_applied_exactly_as_planned(self, renamed, repo, moto_server):
        apply = next(step for step in renamed.apply_run.steps if step.name == "apply")
        assert "Apply complete! Resources: 10 added, 1 changed, 10 destroyed." in apply.result.stdout
        # AWS refuses to delete a security group still attached: the instance moves to the new
        # group before the old one is deleted (create_before_destroy).
        log = apply.result.stdout
        moved = log.index("module.pod.aws_instance.this: Modifications complete")
        assert moved < log.index("module.pod.aws_security_group.instance (deposed object")
        (instance,) = ec2_instances(moto_server, INITECH_RENAMED)
        assert instance["InstanceId"] == renamed.instance_before, "the instance is updated in place"
        tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
        assert tags["Name"] == "initech-prod-app"
        names = lb_names(moto_server)
        assert podspec_short_name(INITECH_RENAMED) in names
        assert podspec_short_name(INITECH) not in names
        assert repo.origin.spec(renamed.apply_run.spec_rel) == INITECH_RENAMED

    def test_a_plan_made_before_the_spec_changed_on_the_branch_is_stale(self, renamed, repo):
        run = renamed.overtaken
        assert run.failed is not None and run.failed.name == "check-plan"
        assert STALE_LEAD in run.failed.result.stderr
        assert "The spec.yml of initech/prod on the branch changed since the plan" in run.failed.result.stderr
        assert repo.origin.spec(run.spec_rel) == INITECH_RENAMED


def podspec_short_name(spec: podspec.PodSpec) -> str:
    """terraform/modules/pod's local.short_name: the load balancer's and target group's name."""
    head = spec.instance_name[:23].removesuffix("-")
    return f"{head}-{hashlib.sha1(spec.pod.encode(), usedforsecurity=False).hexdigest()[:8]}"


class TestPlanNotFound:
    """No AWS needed: the apply run stops before it configures anything."""

    def test_an_expired_or_missing_plan_is_not_found(self, repo):
        run = repo.run("apply", UMBRELLA).apply_mode(None)
        assert run.failed is not None and run.failed.name == "unpack-plan"
        assert run.failed.result.stderr.startswith(
            "::error title=Plan not found::The saved plan of run 4242 was not found"
        )
        assert [s.name for s in run.steps] == ["render", "unpack-plan"]

    def test_a_plan_of_another_pod_is_not_found(self, repo, created):
        run = repo.run("apply", UMBRELLA).apply_mode(created.plan_run)
        assert run.failed is not None and run.failed.name == "unpack-plan"
        assert (
            '::error title=Plan not found::The plan run planned "initech/prod", not umbrella/dev.'
            in run.failed.result.stderr
        )

    def test_a_damaged_summary_is_not_found_either(self, repo, created, tmp_path):
        run = repo.run("apply", UMBRELLA)
        run.download(created.early_plan)
        run.saved_summary.write_text(json.dumps({"format": 1}))
        run.sequence(run.render, lambda: run.terraform_sh("unpack-plan"))
        assert run.failed is not None
        assert (
            "::error title=Plan not found::The plan run's plan-summary cannot be read"
            in run.failed.result.stderr
        )
