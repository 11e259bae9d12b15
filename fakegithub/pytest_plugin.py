"""pytest fixtures: one emulator per test process, reset before every test.

Load with ``pytest_plugins = ["fakegithub.pytest_plugin"]`` in the root conftest. Under
pytest-xdist each worker is its own process and so gets its own server on its own port.

This module is also where the emulator meets this project: ``PROJECT_PODS`` seeds the repository
and ``deploy_pod`` is what deploy-pod.yml does, passed as ``workflow_effect`` here and by the
sandbox (``python -m fakegithub``), the e2e tests and the bench.
"""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from pathlib import Path

import pytest

from deployments import plan, podspec
from fakegithub import terraform_model
from fakegithub._git import blob_sha
from fakegithub.server import FakeGitHub
from fakegithub.state import RunOutcome

PROJECT_PODS = Path(__file__).resolve().parent.parent / "pods"

# The artifacts deploy-pod.yml uploads: the plan summary the portal reads (kept a week), and the
# saved plan an apply run downloads (kept one day: a plan can hold sensitive values).
PLAN_SUMMARY_ARTIFACT, PLAN_SUMMARY_FILE = "plan-summary", "plan-summary.json"
PLAN_ARTIFACT, PLAN_FILE = "tfplan", "tfplan"
SUMMARY_RETENTION_DAYS, PLAN_RETENTION_DAYS = 7, 1
PLAN_FORMAT = 1
# expected_spec_sha for a pod that must not exist yet: git's null object id.
NO_SPEC = "0" * 40
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

# The workflow's step names, where a run fails.
VALIDATE_STEP = "Validate inputs"
CHECK_SPEC_STEP = "Check spec.yml is unchanged"
UNPACK_PLAN_STEP = "Unpack the plan"
CHECK_PLAN_STEP = "Check the plan is current"
COMMIT_STEP = "Commit spec.yml"


def deploy_pod(gh: FakeGitHub, inputs: dict[str, str]) -> RunOutcome:
    """What deploy-pod.yml does in a run that is not stopped otherwise, by its ``action`` input:

    - ``deploy`` (the default, and a hand dispatch with the seed's inputs): validate, commit
      spec.yml, plan and apply; leaves the ``plan-summary`` artifact of what was applied;
    - ``plan``: validate and plan, commit nothing; leaves ``plan-summary`` (its ``spec_blob``:
      the spec.yml planned against) and ``tfplan`` (the saved plan: the spec planned, kept a day);
    - ``apply``: download run ``plan_run_id``'s saved plan and summary ("Plan not found" when
      either is missing or expired, or is another pod's), refuse it ("Stale plan") when the
      pod's spec.yml on the branch changed since or this run's spec is not the planned one —
      the workflow's own checks, ``deployments.plan.check_summary``, ``check_spec_blob`` and
      ``check_spec`` — then commit spec.yml and apply; leaves the plan's ``plan-summary``.

    In every mode, a non-empty ``expected_spec_sha`` (the blob of spec.yml the portal's operator
    saw; NO_SPEC: no spec.yml) that is not the branch's fails the run at "Check spec.yml is
    unchanged" with a "Spec changed" annotation, before anything is planned, committed or applied.
    A commit the protected default branch refuses fails the run at "Commit spec.yml", before
    anything is applied, as scripts/deploy/commit-spec.sh does. Terraform's part is
    ``terraform_model``: the spec.yml on the branch stands for what was last applied.
    """
    action = inputs.get("action", "deploy")
    try:
        spec = podspec.validate({k: v for k, v in inputs.items() if k in podspec.FIELDS})
        podspec.validate_action(action)
        podspec.validate_plan_run_id(inputs.get("plan_run_id", ""), action)
    except ValueError:  # SpecError too
        return RunOutcome("failure", failed_step=VALIDATE_STEP)
    path = podspec.spec_path(gh.specs_path, spec.customer, spec.environment)
    message = f"Deploy {spec.pod} [{inputs.get('request_id') or 'manual'}]"
    with gh.state.lock:
        changed = _spec_changed(gh, path, inputs.get("expected_spec_sha", ""))
        if changed is not None:
            return changed
        if action == "apply":
            return _apply(gh, inputs["plan_run_id"], spec, path, message)
        applied, blob = _applied(gh, path)
        summary = terraform_model.plan_summary(applied, _values(spec), spec_blob=blob)
        if action == "plan":
            saved = {"format": PLAN_FORMAT, "spec": spec.as_dict()}
            return RunOutcome(
                "success",
                artifacts={
                    PLAN_SUMMARY_ARTIFACT: {PLAN_SUMMARY_FILE: _json(summary)},
                    PLAN_ARTIFACT: {PLAN_FILE: _json(saved)},
                },
                retention_days={
                    PLAN_SUMMARY_ARTIFACT: SUMMARY_RETENTION_DAYS,
                    PLAN_ARTIFACT: PLAN_RETENTION_DAYS,
                },
            )
        refused = _commit(gh, path, podspec.render(spec), message)
        if refused is not None:
            return refused
        return _applied_with(summary)


def _apply(gh: FakeGitHub, plan_run_id: str, spec: podspec.PodSpec, path: str, message: str) -> RunOutcome:
    """Apply mode, with the workflow's own checks of the saved plan (deployments.plan)."""
    downloaded = _download_plan(gh, int(plan_run_id))  # digits: checked by "Validate inputs"
    if downloaded is None:
        why = (
            f"The saved plan of run {plan_run_id} was not found: its tfplan or plan-summary artifact is "
            f"missing, or expired (a saved plan is kept one day). Plan again; nothing was changed."
        )
        return _refused(UNPACK_PLAN_STEP, plan.PLAN_NOT_FOUND, why)
    saved, summary = downloaded
    try:
        saved_summary = plan.parse(summary)
        plan.check_summary(saved_summary, spec.pod)
        plan.check_spec_blob(saved_summary, _applied(gh, path)[1])
    except plan.SavedPlanError as exc:
        return _refused(UNPACK_PLAN_STEP, exc.title, exc.message)
    try:
        # What `terraform show -json` of the saved plan says it was made from: the root's spec output.
        plan.check_spec({"planned_values": {"outputs": {"spec": {"value": saved["spec"]}}}}, spec)
    except plan.SavedPlanError as exc:
        return _refused(CHECK_PLAN_STEP, exc.title, exc.message)
    refused = _commit(gh, path, podspec.render(spec), message)
    if refused is not None:
        return refused
    return _applied_with(summary)


def _spec_changed(gh: FakeGitHub, path: str, expected: str) -> RunOutcome | None:
    """The workflow's lost-update check (``git rev-parse HEAD:<path>`` against expected_spec_sha):
    a failed run with an ``::error title=Spec changed::`` annotation when spec.yml on the branch is
    not the version expected; None when it is, or nothing was expected (a hand dispatch).
    https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands#setting-an-error-message
    """
    if not expected:
        return None
    if not _OBJECT_ID.fullmatch(expected):
        why = "expected_spec_sha is not a git object id (40 or 64 hexadecimal digits). Nothing was changed."
        return _refused(CHECK_SPEC_STEP, "Invalid input", why)
    current = gh.state.head_files().get(path)
    found = blob_sha(current) if current is not None else NO_SPEC
    if found == expected:
        return None
    now = f"it is now {found[:7]}" if current is not None else "it no longer exists"
    why = (
        f"spec.yml changed since you opened it: {path} was {expected[:7]} when the request was made, "
        f"{now}. Nothing was changed. Review the new version in the portal and deploy again."
    )
    return _refused(CHECK_SPEC_STEP, "Spec changed", why)


def _refused(step: str, title: str, message: str) -> RunOutcome:
    return RunOutcome("failure", failed_step=step, annotations=[{"title": title, "message": message}])


def _applied_with(summary: dict) -> RunOutcome:
    """A successful apply, publishing the summary of what it applied."""
    return RunOutcome(
        "success",
        artifacts={PLAN_SUMMARY_ARTIFACT: {PLAN_SUMMARY_FILE: _json(summary)}},
        retention_days={PLAN_SUMMARY_ARTIFACT: SUMMARY_RETENTION_DAYS},
    )


def _download_plan(gh: FakeGitHub, run_id: int) -> tuple[dict, dict] | None:
    """(the saved plan, its summary) that run ``run_id`` uploaded (its newest unexpired tfplan and
    plan-summary artifacts, as actions/download-artifact finds them), or None."""
    files = {}
    for name, member in ((PLAN_ARTIFACT, PLAN_FILE), (PLAN_SUMMARY_ARTIFACT, PLAN_SUMMARY_FILE)):
        kept = [a for a in gh.artifacts.for_run(run_id) if a.name == name and not a.is_expired(time.time())]
        if not kept:
            return None
        with zipfile.ZipFile(io.BytesIO(kept[-1].archive)) as archive:
            files[name] = json.loads(archive.read(member))
    return files[PLAN_ARTIFACT], files[PLAN_SUMMARY_ARTIFACT]


def _applied(gh: FakeGitHub, path: str) -> tuple[terraform_model.PodValues | None, str | None]:
    """(what was last applied to the pod, the blob SHA of its spec.yml); (None, None) for a new
    pod. A spec.yml that does not parse stands for no known state: everything is created."""
    data = gh.state.head_files().get(path)
    if data is None:
        return None, None
    try:
        applied = _values(podspec.parse(data.decode("utf-8")))
    except (podspec.SpecError, UnicodeDecodeError):
        applied = None
    return applied, blob_sha(data)


def _commit(gh: FakeGitHub, path: str, text: str, message: str) -> RunOutcome | None:
    """Commit spec.yml as scripts/deploy/commit-spec.sh does: nothing when unchanged; a failed
    run when the protected branch refuses the push."""
    if gh.state.head_files().get(path) == text.encode():
        return None
    refusal = gh.push_refusal()
    if refusal is not None:
        return RunOutcome(
            "failure",
            failed_step=COMMIT_STEP,
            annotations=[
                {
                    "title": "Protected branch",
                    "message": "The branch main is protected and the workflow's token may not push to it: "
                    f"GitHub refused the commit of {path} ({refusal}). Nothing was applied. Make a GitHub "
                    "App a bypass actor of the branch's ruleset or protection rule and set the "
                    "DEPLOY_APP_ID variable and DEPLOY_APP_PRIVATE_KEY secret, so the workflow pushes "
                    "with the App's token (see README, The deploy workflow on GitHub).",
                }
            ],
        )
    gh.put_file(path, text, message=message)
    return None


def _values(spec: podspec.PodSpec) -> terraform_model.PodValues:
    return terraform_model.PodValues(**spec.as_dict())


def _json(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


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
