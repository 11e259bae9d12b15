"""A run's jobs, steps and check-run annotations: how a failed run says why.

The jobs and steps are those of the project's workflow file (``.github/workflows/deploy-pod.yml``),
with the two steps GitHub adds to every job ("Set up job", "Complete job"). What they show follows
the run: queued, then in progress, then the ``RunOutcome`` the run completed with — the steps before
the failed one succeeded, the failed one failed, the later ones were skipped; a step whose ``if:``
is false was skipped. A run failed without a named step (a scripted conclusion) fails at
"Terraform apply" ("Terraform plan" in a plan run). Every job is a check run with the same id; a
failed job's annotations are the run's ``::error`` lines followed by the runner's "Process
completed with exit code 1.".

https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run
https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run-attempt
https://docs.github.com/en/rest/checks/runs#list-check-run-annotations

A started job has a log: "Download job logs for a workflow run" answers ``302`` with a URL that
"expires after 1 minute" to "a plain text file of logs for a workflow job", which needs no token.
Its lines are GitHub's: each prefixed with a UTC timestamp, a step's lines opened by
``##[group]Run ...`` and closed by ``##[endgroup]``, errors as ``##[error]...``, tools' colours as
ANSI escape codes. A failed step prints its ``RunOutcome.log``, else what that step usually says
when it fails (Terraform's error box for "Terraform apply").
https://docs.github.com/en/rest/actions/workflow-jobs#download-job-logs-for-a-workflow-run
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from fakegithub import shapes
from fakegithub.routes import ApiRequest, Response, Route, error, paginate
from fakegithub.state import Run, RunOutcome
from fakegithub.workflow import PROJECT_WORKFLOW, render_expressions

if TYPE_CHECKING:
    from fakegithub.server import FakeGitHub

# The step a run that failed without naming one fails at.
DEFAULT_FAILED_STEP = "Terraform apply"
PLAN_STEP = "Terraform plan"
SET_UP, COMPLETE = "Set up job", "Complete job"
# Job ids: run id, attempt and the job's place in the workflow, so a check run id leads back to them.
_ATTEMPTS, _JOBS = 100, 100


@dataclass(frozen=True)
class StepDef:
    name: str
    condition: str | None = None  # the step's ``if:``
    line: int = 1  # where it is in the workflow file (annotations point there)


@dataclass(frozen=True)
class JobDef:
    key: str
    name: str
    runs_on: str
    steps: tuple[StepDef, ...]
    condition: str | None = None
    timeout_minutes: int = 360


@dataclass
class StepState:
    name: str
    status: str = "queued"
    conclusion: str | None = None
    started: float | None = None
    completed: float | None = None


@dataclass(frozen=True)
class Annotation:
    message: str
    title: str = ""
    level: str = "failure"
    path: str = ".github"
    line: int = 1


@dataclass
class JobSpec:
    """One job of one attempt, as the API shows it."""

    id: int
    attempt: int
    name: str
    labels: list[str]
    status: str
    conclusion: str | None
    created: float
    started: float
    completed: float | None
    steps: list[StepState] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)


# --- the workflow file ----------------------------------------------------------------------------


@functools.cache
def workflow_jobs(path: Path = PROJECT_WORKFLOW) -> tuple[JobDef, ...]:
    """The jobs and steps of the workflow file (read once per process)."""
    if not path.is_file():
        return _DEFAULT_JOBS
    text = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(text) or {}
    lines = text.splitlines()
    jobs = []
    for key, spec in (doc.get("jobs") or {}).items():
        spec = spec or {}
        steps = []
        for step in spec.get("steps") or []:
            name = _step_name(step)
            steps.append(StepDef(name, _condition(step.get("if")), _line_of(lines, name)))
        jobs.append(
            JobDef(
                key=str(key),
                name=str(spec.get("name") or key),
                runs_on=str(spec.get("runs-on") or "ubuntu-latest"),
                steps=tuple(steps),
                condition=_condition(spec.get("if")),
                timeout_minutes=int(spec.get("timeout-minutes") or 360),
            )
        )
    return tuple(jobs) or _DEFAULT_JOBS


def _step_name(step: dict) -> str:
    # GitHub names an unnamed step after what it runs: "Run actions/checkout@...", "Run make test".
    if step.get("name"):
        return str(step["name"])
    if step.get("uses"):
        return f"Run {step['uses']}"
    first = str(step.get("run") or "").strip().splitlines()
    return f"Run {first[0]}" if first else "Run"


def _condition(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None if value in (None, True) else "false"
    text = str(value).strip()
    return text.removeprefix("${{").removesuffix("}}").strip() if text.startswith("${{") else text


def _line_of(lines: list[str], name: str) -> int:
    for number, line in enumerate(lines, start=1):
        if re.fullmatch(rf"\s*-?\s*name:\s*[\"']?{re.escape(name)}[\"']?\s*", line):
            return number
    return 1


_DEFAULT_JOBS = (
    JobDef(
        key="deploy",
        name="Deploy ${{ inputs.customer }}/${{ inputs.environment }}",
        runs_on="ubuntu-latest",
        steps=tuple(
            StepDef(name)
            for name in (
                "Check out",
                "Set up Python",
                "Install PyYAML",
                "Validate inputs",
                "Render spec.yml",
                "Commit spec.yml",
                "Configure AWS credentials (OIDC)",
                "Set up Terraform",
                "Terraform init",
                "Terraform plan",
                "Terraform apply",
            )
        ),
        timeout_minutes=60,
    ),
)

_COMPARISON = re.compile(r"^(vars|inputs)\.([A-Za-z_][\w-]*)\s*(==|!=)\s*'((?:[^']|'')*)'$")


def _holds(condition: str | None, gh: FakeGitHub, inputs: dict[str, str]) -> bool:
    """Whether an ``if:`` holds. Understood: ``vars.X``/``inputs.X`` ``==``/``!=`` a literal, joined by
    ``&&``; anything else is taken to hold."""
    if condition is None:
        return True
    if condition == "false":
        return False
    for part in condition.split("&&"):
        match = _COMPARISON.match(part.strip())
        if match is None:
            continue
        source = gh.variables if match.group(1) == "vars" else inputs
        value = str(source.get(match.group(2), ""))
        literal = match.group(4).replace("''", "'")
        if (value == literal) != (match.group(3) == "=="):
            return False
    return True


def _render(template: str, gh: FakeGitHub, inputs: dict[str, str]) -> str:
    """Render ``${{ inputs.x }}`` and ``${{ vars.X || 'literal' }}`` as Actions would."""

    def literal(match: re.Match) -> str:
        return "'" + str(gh.variables.get(match.group(1), "")).replace("'", "''") + "'"

    return render_expressions(re.sub(r"\bvars\.([A-Za-z_][\w-]*)", literal, template), inputs)


# --- what a run's jobs show -----------------------------------------------------------------------


def job_id(run: Run, attempt: int, index: int) -> int:
    return (run.id * _ATTEMPTS + attempt) * _JOBS + index


def attempt_jobs(gh: FakeGitHub, run: Run, attempt: int) -> list[JobSpec]:
    """The jobs of one attempt of ``run`` (1 up to its current ``run_attempt``)."""
    if attempt == run.attempt:
        status, conclusion, outcome = run.status, run.conclusion, run.outcome
        started, completed = run.started, run.updated if run.status == "completed" else None
    else:
        past = run.past_attempts[attempt]
        status, conclusion, outcome = "completed", past.conclusion, past.outcome
        started, completed = past.started, past.completed
    if status == "completed" and conclusion == "startup_failure":
        return []  # the workflow could not start: no job ran
    defs = workflow_jobs()
    runnable = [_holds(d.condition, gh, run.inputs) for d in defs]
    failing = _failing_job(defs, status, conclusion, outcome, lambda c: _holds(c, gh, run.inputs))
    specs = []
    for index, definition in enumerate(defs):
        spec = JobSpec(
            id=job_id(run, attempt, index),
            attempt=attempt,
            name=_render(definition.name, gh, run.inputs),
            labels=[_render(definition.runs_on, gh, run.inputs)],
            # A run held by an environment's reviewers shows its job waiting.
            status=status if status in ("completed", "waiting") else "queued",
            conclusion=None,
            created=started,
            started=started,
            completed=completed,
        )
        if status == "completed":
            _finish_job(gh, spec, definition, run, index, failing, runnable[index], conclusion, outcome)
        elif status == "in_progress":
            spec.status = "in_progress"
            spec.steps = _steps_running(gh, definition, run, started)
        specs.append(spec)
    return specs


def _failing_job(
    defs: tuple[JobDef, ...],
    status: str,
    conclusion: str | None,
    outcome: RunOutcome | None,
    holds: Callable[[str | None], bool],
) -> tuple[int, str] | None:
    """(job index, step name) where a run that did not succeed stopped; None when it succeeded.
    A run failed without a named step stops at "Terraform apply", or at "Terraform plan" when
    apply does not run (a plan run: its ``if:`` is false)."""
    if status != "completed" or conclusion in ("success", "neutral", "skipped", None):
        return None
    wanted = outcome.failed_step if outcome else None
    if not wanted:
        wanted = DEFAULT_FAILED_STEP
        for definition in defs:
            for step in definition.steps:
                if step.name == DEFAULT_FAILED_STEP and not holds(step.condition):
                    wanted = PLAN_STEP
    for index, definition in enumerate(defs):
        if any(step.name == wanted for step in definition.steps):
            return index, wanted
    if outcome and outcome.failed_step:
        return len(defs) - 1, wanted  # a step the file does not have: shown at the end of the last job
    last = defs[-1]
    return len(defs) - 1, last.steps[-1].name if last.steps else wanted


def _finish_job(
    gh: FakeGitHub,
    spec: JobSpec,
    definition: JobDef,
    run: Run,
    index: int,
    failing: tuple[int, str] | None,
    runnable: bool,
    conclusion: str | None,
    outcome: RunOutcome | None,
) -> None:
    if not runnable or (failing is not None and index > failing[0]):
        spec.conclusion = "skipped"  # jobs after the failed one, or whose ``if:`` is false
        return
    assert spec.completed is not None
    names = [SET_UP, *(s.name for s in definition.steps), COMPLETE]
    lines = {s.name: s.line for s in definition.steps}
    conditions = {s.name: s.condition for s in definition.steps}
    stopped_at = failing[1] if failing is not None and index == failing[0] else None
    if stopped_at is not None and stopped_at not in names:
        names.insert(-1, stopped_at)
    times = _spread(spec.started, spec.completed, len(names))
    after = False
    step_end = "failure" if conclusion == "failure" else "cancelled"
    for (begin, end), name in zip(times, names, strict=True):
        step = StepState(name, status="completed", started=begin, completed=end)
        if name == COMPLETE:
            step.conclusion = "success"
        elif name == stopped_at and not after:
            step.conclusion, after = step_end, True
        elif after or not _holds(conditions.get(name), gh, run.inputs):
            step.conclusion, step.started, step.completed = "skipped", None, None
        else:
            step.conclusion = "success"
        spec.steps.append(step)
    if stopped_at is None:
        spec.conclusion = "success"
        if outcome and outcome.annotations and index == 0:
            spec.annotations = [_note(a, 1) for a in outcome.annotations]
        return
    spec.conclusion = conclusion if conclusion in ("cancelled", "timed_out") else "failure"
    line = lines.get(stopped_at, 1)
    notes = [_note(a, line) for a in (outcome.annotations if outcome else [])]
    if conclusion == "cancelled":
        notes.append(Annotation("The operation was canceled.", line=line))
    elif conclusion == "timed_out":
        notes.append(
            Annotation(
                f"The job running on runner GitHub Actions 1 has exceeded the maximum execution time of "
                f"{definition.timeout_minutes} minutes.",
                line=line,
            )
        )
    else:
        notes.append(Annotation("Process completed with exit code 1.", line=line))
    spec.annotations = notes


def _note(raw: dict[str, str], line: int) -> Annotation:
    levels = {"error": "failure", "warning": "warning", "notice": "notice"}
    level = levels.get(raw.get("level", ""), "failure")
    return Annotation(str(raw.get("message", "")), title=str(raw.get("title", "")), level=level, line=line)


def _steps_running(gh: FakeGitHub, definition: JobDef, run: Run, started: float) -> list[StepState]:
    """A job just started: "Set up job" done, the first step running, the others waiting."""
    steps = [StepState(SET_UP, "completed", "success", started, started)]
    running = False
    for step in definition.steps:
        if not running and _holds(step.condition, gh, run.inputs):
            steps.append(StepState(step.name, "in_progress", None, started))
            running = True
        else:
            steps.append(StepState(step.name))
    steps.append(StepState(COMPLETE))
    return steps


def _spread(start: float, end: float, count: int) -> list[tuple[float, float]]:
    width = max(0.0, end - start) / max(1, count)
    return [(start + i * width, start + (i + 1) * width) for i in range(count)]


def find_job(gh: FakeGitHub, ident: int) -> tuple[Run, JobSpec] | None:
    """The run and job of a job (or check run) id."""
    rest, index = divmod(ident, _JOBS)
    run_id, attempt = divmod(rest, _ATTEMPTS)
    run = gh.state.find_run(run_id)
    if run is None or not 1 <= attempt <= run.attempt:
        return None
    if attempt != run.attempt and attempt not in run.past_attempts:
        return None
    jobs = attempt_jobs(gh, run, attempt)
    return (run, jobs[index]) if index < len(jobs) else None


# --- a job's log ---------------------------------------------------------------------------------

LOG_PATH = "/_fakegithub/job-logs"
LOG_URL_TTL = 60  # "This link expires after 1 minute."
_LOG_KEY = secrets.token_bytes(32)
_RED, _BOLD, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"
# What a step prints when it goes well (a few lines each, as the real tools do).
_OUTPUT = {
    "Terraform init": [
        "Initializing the backend...",
        f'{_BOLD}Successfully configured the backend "s3"!{_RESET}',
        "Initializing provider plugins...",
        '- Finding hashicorp/aws versions matching "~> 5.0"...',
        "- Installing hashicorp/aws v5.84.0...",
        f"{_BOLD}Terraform has been successfully initialized!{_RESET}",
    ],
    "Terraform plan": [
        "aws_instance.pod: Refreshing state... [id=i-0f3c2a9d4b1e5a7c8]",
        "Terraform will perform the following actions:",
        "  # aws_instance.pod will be updated in-place",
        f"{_BOLD}Plan:{_RESET} 0 to add, 1 to change, 0 to destroy.",
    ],
}


def _failure_output(step: str, inputs: dict[str, str]) -> list[str]:
    """What a step usually prints when it fails, Terraform's error box in its colours."""
    kind = inputs.get("instance_type") or "t3.small"
    box = f"{_RED}│{_RESET} "
    if step == PLAN_STEP:
        return [
            "aws_instance.pod: Refreshing state... [id=i-0f3c2a9d4b1e5a7c8]",
            f"{_RED}╷{_RESET}",
            f"{box}{_BOLD}{_RED}Error: {_RESET}{_BOLD}reading EC2 Instance Type ({kind}): "
            "operation error EC2: DescribeInstanceTypes, https response error StatusCode: 403, "
            "api error UnauthorizedOperation: "
            "You are not authorized to perform this operation. User: "
            "arn:aws:sts::123456789012:assumed-role/pod-deployer/GitHubActions is not authorized to perform: "
            f"ec2:DescribeInstanceTypes{_RESET}",
            box,
            f"{box}  with data.aws_ec2_instance_type.pod,",
            f'{box}  on main.tf line 12, in data "aws_ec2_instance_type" "pod":',
            f"{_RED}╵{_RESET}",
        ]
    if step.startswith("Terraform"):
        return [
            "aws_instance.pod: Modifying... [id=i-0f3c2a9d4b1e5a7c8]",
            f"{_RED}╷{_RESET}",
            f"{box}{_BOLD}{_RED}Error: {_RESET}{_BOLD}modifying EC2 Instance (i-0f3c2a9d4b1e5a7c8) type: "
            "operation error EC2: ModifyInstanceAttribute, https response error StatusCode: 400, "
            f"api error InsufficientInstanceCapacity: We currently do not have sufficient {kind} capacity "
            f"in the Availability Zone you requested (eu-west-1a).{_RESET}",
            box,
            f"{box}  with aws_instance.pod,",
            f'{box}  on main.tf line 42, in resource "aws_instance" "pod":',
            f'{box}  42: resource "aws_instance" "pod" {{',
            f"{_RED}╵{_RESET}",
        ]
    return [f"{step} failed."]


def job_log(gh: FakeGitHub, run: Run, spec: JobSpec) -> str:
    """The job's log as GitHub serves it (one line per output line, timestamped)."""
    outcome = run.outcome if spec.attempt == run.attempt else run.past_attempts[spec.attempt].outcome
    lines: list[tuple[float, str]] = []
    for step in spec.steps:
        if step.started is None or step.conclusion == "skipped":
            continue
        at = step.started
        if step.name == SET_UP:
            lines += [(at, "Current runner version: '2.321.0'"), (at, f"Runner name: '{spec.labels[0]}'")]
            continue
        if step.name == COMPLETE:
            lines.append((at, "Cleaning up orphan processes"))
            continue
        lines.append((at, f"##[group]Run {step.name}"))
        lines.append((at, "##[endgroup]"))
        if step.conclusion in ("failure", "cancelled", "timed_out"):
            printed = outcome.log if outcome and outcome.log is not None else None
            lines += [(at, line) for line in printed or _failure_output(step.name, run.inputs)]
            errors = [note for note in spec.annotations if note.level == "failure"]
            lines += [(at, f"##[error]{n.title + ': ' if n.title else ''}{n.message}") for n in errors]
        else:
            lines += [(at, line) for line in _OUTPUT.get(step.name, [])]
    return "".join(f"{_stamp(at)} {line}\n" for at, line in lines)


def _stamp(at: float) -> str:
    # GitHub's: 2024-01-22T22:44:54.1389777Z (seven decimals).
    moment = dt.datetime.fromtimestamp(at, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


def _log_signature(job: int, expires: int) -> str:
    mac = hmac.new(_LOG_KEY, f"log:{job}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def log_url(gh: FakeGitHub, job: int, ttl: float = LOG_URL_TTL) -> str:
    expires = int(time.time() + ttl)
    return f"{gh.api_url}{LOG_PATH}/{job}?urlExpires={expires}&urlSignature={_log_signature(job, expires)}"


# --- handlers -------------------------------------------------------------------------------------


def _jobs_page(gh: FakeGitHub, req: ApiRequest, run: Run, jobs: list[JobSpec]) -> Response:
    try:
        chosen, links = paginate(gh, req, jobs)
    except ValueError:
        return error(422, "Invalid pagination parameter")
    body = {"total_count": len(jobs), "jobs": [shapes.job(gh, run, spec) for spec in chosen]}
    return Response(200, body, links)


def list_jobs(gh: FakeGitHub, req: ApiRequest, run_id: str) -> Response:
    """``filter=latest`` (the default): the jobs of the newest attempt; ``filter=all``: of every one."""
    run = gh.state.find_run(int(run_id))
    if run is None:
        return error(404, "Not Found")
    attempts = range(1, run.attempt + 1) if req.query.get("filter") == "all" else [run.attempt]
    known = [n for n in attempts if n == run.attempt or n in run.past_attempts]
    return _jobs_page(gh, req, run, [job for n in known for job in attempt_jobs(gh, run, n)])


def list_attempt_jobs(gh: FakeGitHub, req: ApiRequest, run_id: str, attempt: str) -> Response:
    run = gh.state.find_run(int(run_id))
    number = int(attempt)
    if run is None or not (number == run.attempt or number in run.past_attempts):
        return error(404, "Not Found")
    return _jobs_page(gh, req, run, attempt_jobs(gh, run, number))


def get_job(gh: FakeGitHub, req: ApiRequest, job: str) -> Response:
    found = find_job(gh, int(job))
    return Response(200, shapes.job(gh, *found)) if found else error(404, "Not Found")


def list_annotations(gh: FakeGitHub, req: ApiRequest, check_run: str) -> Response:
    found = find_job(gh, int(check_run))
    if found is None:
        return error(404, "Not Found")
    run, spec = found
    try:
        chosen, links = paginate(gh, req, spec.annotations)
    except ValueError:
        return error(422, "Invalid pagination parameter")
    return Response(200, [shapes.annotation(gh, run, note) for note in chosen], links)


def download_job_log(gh: FakeGitHub, req: ApiRequest, job: str) -> Response:
    """GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs: 302 to the log (a queued job has none).
    https://docs.github.com/en/rest/actions/workflow-jobs#download-job-logs-for-a-workflow-run"""
    found = find_job(gh, int(job))
    if found is None or found[1].status == "queued":
        return error(404, "Not Found")
    return Response(302, None, {"Location": log_url(gh, int(job))})


def read_job_log(gh: FakeGitHub, req: ApiRequest, job: str) -> Response:
    """The signed log URL: plain text while the signature holds, no token needed."""
    try:
        expires = int(req.query.get("urlExpires", ""))
    except ValueError:
        return Response(403, b"Signature not valid.", content_type="text/plain")
    given = req.query.get("urlSignature", "")
    if not hmac.compare_digest(given.encode(), _log_signature(int(job), expires).encode()):
        return Response(403, b"Signature not valid.", content_type="text/plain")
    if time.time() > expires:
        return Response(403, b"The URL has expired.", content_type="text/plain")
    found = find_job(gh, int(job))
    if found is None:
        return Response(404, b"Not found.", content_type="text/plain")
    return Response(200, job_log(gh, *found).encode(), content_type="text/plain; charset=utf-8")


_RUN = r"/repos/{repo}/actions/runs/(?P<run_id>\d+)"
ROUTES: tuple[Route, ...] = (
    Route("GET", _RUN + "/jobs", list_jobs, permission="actions=read"),
    Route("GET", _RUN + r"/attempts/(?P<attempt>\d+)/jobs", list_attempt_jobs, permission="actions=read"),
    Route("GET", r"/repos/{repo}/actions/jobs/(?P<job>\d+)", get_job, permission="actions=read"),
    Route(
        "GET", r"/repos/{repo}/actions/jobs/(?P<job>\d+)/logs", download_job_log, permission="actions=read"
    ),
    # The log's storage is another host on GitHub: no token, not counted against the rate limit.
    Route("GET", LOG_PATH + r"/(?P<job>\d+)", read_job_log, authenticated=False, metered=False),
    # GitHub Apps need checks: read; GitHub cannot grant it to a fine-grained personal access token.
    Route(
        "GET",
        r"/repos/{repo}/check-runs/(?P<check_run>\d+)/annotations",
        list_annotations,
        permission="checks=read",
    ),
)
