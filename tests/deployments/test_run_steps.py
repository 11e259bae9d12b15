"""The request page shows the run's jobs and steps, and a failed job's last log lines.

The steps are read from GitHub when a webhook (or the sync) says the run changed — once per
version of the run, whatever the number of open pages — and kept in the shared cache. The log is
read once when the run fails: GitHub's 302 to a plain-text file, cleaned of timestamps and ANSI
codes, bounded, escaped on the page; a log GitHub no longer has or may not show is one line that
says so, never an error page.
"""

import datetime as dt
import re

import pytest
from django.db import connection
from django.utils import timezone
from pytest_django.asserts import assertContains, assertNotContains

from deployments import steps
from deployments.gh import jobs
from deployments.models import DeploymentEvent, DeploymentRequest
from fakegithub.state import RunOutcome
from tests.helpers import EDIT_ACME_PROD, form, replay

LOGS = r"/actions/jobs/\d+/logs$"
JOBS = r"/actions/runs/\d+/(attempts/\d+/)?jobs\b"
STORAGE = r"^/_fakegithub/job-logs/"
# What a failed Terraform step prints, as GitHub stores it: coloured, and with markup in it.
NOISY = [
    *(f"\x1b[32mline {n}\x1b[0m of the plan" for n in range(70)),
    "\x1b[31m│\x1b[0m \x1b[1m\x1b[31mError: \x1b[0m<script>alert('x')</script> capacity & more",
    "x" * 5000,
]
FAILED = RunOutcome(
    conclusion="failure",
    failed_step="Terraform apply",
    annotations=[{"title": "Terraform", "message": "Error: InsufficientInstanceCapacity"}],
    log=NOISY,
)


def deploy(client) -> DeploymentRequest:
    response = client.post("/deploy/", form(EDIT_ACME_PROD))
    assert response.status_code == 302, response.content.decode()[-1500:]
    return DeploymentRequest.objects.latest("pk")


def deliver(client, gh) -> list[int]:
    answers = [replay(client, delivery).status_code for delivery in gh.deliveries]
    gh.deliveries.clear()
    return answers


def failed_job(gh, run_id: int) -> int:
    gh.complete_run(run_id, outcome=FAILED)
    _, listed = jobs.run_jobs(run_id)
    [job] = listed
    return job["id"]


# --- the log's tail ----------------------------------------------------------------------------------


def test_log_tail_is_cleaned_bounded_and_ends_at_the_error(gh):
    request_run = gh.create_run(dict(EDIT_ACME_PROD, request_id=""), {"login": "dana"})
    job_id = failed_job(gh, request_run.id)
    gh.clear_requests()

    tail = jobs.job_log_tail(job_id)

    lines = tail.text.split("\n")
    assert tail.note == ""
    assert len(lines) <= jobs.LOG_LINES
    assert all(len(line) <= jobs.LOG_LINE_LIMIT for line in lines)
    assert "\x1b" not in tail.text
    assert not any(re.match(r"\d{4}-\d\d-\d\dT", line) for line in lines)  # GitHub's timestamps gone
    # Up to the last error: the runner's exit code line, after the annotation and Terraform's box.
    assert lines[-1] == "Error: Process completed with exit code 1."
    assert "│ Error: <script>alert('x')</script> capacity & more" in lines  # escaped by the page
    assert "x" * (jobs.LOG_LINE_LIMIT - 1) + "…" in lines
    assert "Cleaning up orphan processes" not in tail.text  # after the error: not the failure
    # One API request (the 302) and one download from the log's storage, without the token.
    assert [(r.method, r.path.split("?")[0]) for r in gh.requests] == [
        ("GET", f"/repos/demo/pods/actions/jobs/{job_id}/logs"),
        ("GET", f"/_fakegithub/job-logs/{job_id}"),
    ]
    assert "authorization" not in {k.lower() for k in gh.requests[1].headers}


def test_a_huge_log_is_read_up_to_a_limit(gh, monkeypatch):
    run = gh.create_run(dict(EDIT_ACME_PROD, request_id=""), {"login": "dana"})
    job_id = failed_job(gh, run.id)
    monkeypatch.setattr(jobs, "MAX_LOG_BYTES", 2000)
    monkeypatch.setattr(jobs, "_LOG_CHUNK", 1000)
    tail = jobs.job_log_tail(job_id)
    assert re.fullmatch(r"… \(only the first \d KiB of the log were read\)", tail.text.split("\n")[-1])
    assert len(tail.text.split("\n")) <= jobs.LOG_LINES


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (404, "GitHub no longer keeps it"),
        (410, "GitHub no longer keeps it"),
        (403, "may not read the run's logs"),
        (500, "GitHub did not serve it"),
    ],
)
def test_a_log_github_does_not_serve_is_one_line_saying_so(gh, status, words):
    run = gh.create_run(dict(EDIT_ACME_PROD, request_id=""), {"login": "dana"})
    job_id = failed_job(gh, run.id)
    gh.add_fault("GET", LOGS, status=status, body={"message": "Gone" if status == 410 else "No"})
    tail = jobs.job_log_tail(job_id)
    assert tail.text == ""
    assert tail.note.startswith("The job's log is not available: ")
    assert words in tail.note


def test_expired_download_url_is_a_note(gh):
    run = gh.create_run(dict(EDIT_ACME_PROD, request_id=""), {"login": "dana"})
    job_id = failed_job(gh, run.id)
    gh.add_fault("GET", STORAGE, status=403, body=b"The URL has expired.")
    tail = jobs.job_log_tail(job_id)
    assert tail.text == "" and "did not serve it" in tail.note


@pytest.mark.parametrize("location", ["ftp://storage.example/log.txt", "http://user:pw@storage.example/log"])
def test_a_log_redirected_where_the_portal_does_not_follow_is_a_note(gh, location, caplog):
    run = gh.create_run(dict(EDIT_ACME_PROD, request_id=""), {"login": "dana"})
    job_id = failed_job(gh, run.id)
    gh.add_fault("GET", LOGS, status=302, headers={"Location": location}, body=b"")
    gh.clear_requests()
    tail = jobs.job_log_tail(job_id)
    assert tail.text == "" and "did not serve it" in tail.note
    assert gh.count("GET", STORAGE) == 0
    assert f"GitHub redirected the download of job {job_id}'s log to a location" in caplog.text
    assert "pw@" not in caplog.text


# --- on the request page --------------------------------------------------------------------------


def test_failed_run_shows_the_steps_and_the_escaped_log_tail_read_once(
    gh, deployer_client, django_capture_on_commit_callbacks
):
    request = deploy(deployer_client)
    gh.complete_run(request.run_id, outcome=FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        assert set(deliver(deployer_client, gh)) == {200}

    page = deployer_client.get(f"/requests/{request.pk}/")

    assert page.status_code == 200
    assertContains(page, "Failed at step “Terraform apply”")
    assertContains(page, "Last lines of the log of “Terraform apply”")
    assertContains(page, "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; capacity &amp; more")
    assertNotContains(page, "<script>alert")
    assertNotContains(page, "\x1b")
    html = page.content.decode()
    assert re.search(
        r'<li class="step step-failed">.*?Terraform apply</span> <span class="step-state">failed', html
    )
    assert re.search(r'<li class="step step-succeeded">.*?Terraform init</span>', html)
    assert re.search(r'<li class="step step-skipped">.*?Upload the plan</span>', html)
    event = DeploymentEvent.objects.filter(request=request, data__has_key="log_tail").get()
    assert len(event.data["log_tail"]) <= jobs.LOG_LINES * (jobs.LOG_LINE_LIMIT + 1)
    # Read once: more views and polls, a redelivered webhook, ask GitHub nothing more.
    for _ in range(3):
        assert deployer_client.get(f"/requests/{request.pk}/").status_code == 200
        assert deployer_client.get(f"/requests/{request.pk}/live/").status_code == 200
    assert gh.count("GET", LOGS) == 1
    assert gh.count("GET", STORAGE) == 1


def test_expired_log_leaves_a_line_on_the_page_not_an_error(
    gh, deployer_client, django_capture_on_commit_callbacks
):
    request = deploy(deployer_client)
    gh.add_fault("GET", LOGS, status=410, body={"message": "Gone"})
    gh.complete_run(request.run_id, outcome=FAILED)
    with django_capture_on_commit_callbacks(execute=True):
        assert set(deliver(deployer_client, gh)) == {200}
    page = deployer_client.get(f"/requests/{request.pk}/")
    assert page.status_code == 200
    assertContains(page, "Failed at step “Terraform apply”")
    assertContains(
        page, '<p class="muted small" id="log-note">The job&#x27;s log is not available: GitHub no longer'
    )
    assertNotContains(page, 'id="log-tail"')


# --- the steps: read once per version of the run, polls cost GitHub nothing -------------------------


def test_steps_are_read_once_per_change_of_the_run_and_polls_cost_github_nothing(gh, deployer_client):
    request = deploy(deployer_client)
    gh.advance_run(request.run_id)  # in progress
    deliver(deployer_client, gh)
    first = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(first, "Jobs and steps")
    assertContains(first, '<span class="step-name">Check out</span> <span class="step-state">running')
    fetched = gh.count("GET", JOBS)
    assert fetched == 2  # requested, in_progress: one conditional request each
    etag = re.search(r'"If-None-Match": "(W/\\u0022[^"]*?\\u0022)"', first.content.decode()).group(1)
    etag = etag.replace("\\u0022", '"').replace("\\u002D", "-")

    gh.clear_requests()
    polls = [
        deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag}).status_code
        for _ in range(20)
    ]
    assert polls == [304] * 20
    assert gh.requests == []

    # The run ends: the webhook reads the final steps; the next poll shows them.
    gh.complete_run(request.run_id)
    for delivery in list(gh.deliveries):
        replay(deployer_client, delivery)
        replay(deployer_client, delivery)  # redelivered: nothing read again
    gh.deliveries.clear()
    assert gh.count("GET", JOBS) == 1
    changed = deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag})
    assert changed.status_code == 200
    assertContains(
        changed, '<span class="step-name">Terraform apply</span> <span class="step-state">succeeded'
    )
    assertNotContains(changed, "running")
    entry = steps.listing(DeploymentRequest.objects.get(pk=request.pk))
    assert entry is not None and entry["final"] is True
    deployer_client.get(f"/requests/{request.pk}/")
    assert gh.count("GET", JOBS) == 1  # final: never asked again


def test_a_read_that_ends_after_a_later_final_one_does_not_overwrite_it(gh, deployer_client, monkeypatch):
    request = deploy(deployer_client)
    gh.advance_run(request.run_id)
    gh.deliveries.clear()
    read = jobs.run_jobs

    def slow_read(run_id, attempt=None, *, etag=None):
        # While this worker reads the in-progress version, another reads the finished run.
        answer = read(run_id, attempt, etag=etag)
        gh.complete_run(run_id)
        monkeypatch.setattr(jobs, "run_jobs", read)
        assert steps.follow(run_id, attempt=1, version="completed", completed=True)
        return answer

    monkeypatch.setattr(jobs, "run_jobs", slow_read)
    assert not steps.follow(request.run_id, attempt=1, version="in_progress", completed=False)
    entry = steps.listing(DeploymentRequest.objects.get(pk=request.pk))
    assert entry is not None and entry["final"] is True and entry["version"] == "completed"


def test_a_page_reads_the_steps_of_a_run_nobody_followed_once(gh, deployer_client):
    request = deploy(deployer_client)
    gh.complete_run(request.run_id)
    gh.deliveries.clear()  # no webhook reached the portal
    gh.clear_requests()
    for _ in range(5):
        assert deployer_client.get(f"/requests/{request.pk}/").status_code == 200
    assert gh.count("GET", JOBS) == 1  # one per RUN_LOOKUP_INTERVAL_SECONDS, whoever asks


def test_steps_github_cannot_list_leave_the_page_without_them(gh, deployer_client):
    request = deploy(deployer_client)
    gh.add_fault("GET", JOBS, status=500)
    gh.advance_run(request.run_id)
    assert set(deliver(deployer_client, gh)) == {200}
    page = deployer_client.get(f"/requests/{request.pk}/")
    assert page.status_code == 200
    assertNotContains(page, "Jobs and steps")


def leases_lapse() -> None:
    """A lookup interval passes: the read leases in the shared cache (a database table) lapse.
    (A lease of a thousandth of a second does not do it: the table keeps whole seconds.)"""
    past = timezone.now() - dt.timedelta(hours=1)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE portal_cache SET expires = %s WHERE cache_key LIKE %s", [past, "%:lease:%"])
        assert cursor.rowcount > 0


def test_steps_read_by_the_sync_without_a_status_change_give_the_poll_a_new_etag(gh, deployer_client):
    from deployments import services

    request = deploy(deployer_client)
    fault = gh.add_fault("GET", JOBS, status=500)  # 502 would be retried, with back-off
    gh.advance_run(request.run_id)
    assert set(deliver(deployer_client, gh)) == {200}  # in progress; its steps could not be read
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertNotContains(page, "Jobs and steps")
    etag = re.search(r'"If-None-Match": "(W/\\u0022[^"]*?\\u0022)"', page.content.decode()).group(1)
    etag = etag.replace("\\u0022", '"').replace("\\u002D", "-")
    assert (
        deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag}).status_code
        == 304
    )

    gh.state.faults.remove(fault)
    leases_lapse()  # the sync comes a lookup interval after the failed reads
    assert services.deployment_requests_sync()["updated"] == 0  # the run's status did not change

    poll = deployer_client.get(f"/requests/{request.pk}/live/", headers={"if-none-match": etag})
    assert poll.status_code == 200
    assert poll.headers["ETag"] != etag
    assertContains(poll, '<span class="step-name">Check out</span> <span class="step-state">running')


# --- GitHub's answers are untrusted ----------------------------------------------------------------


def test_a_job_listing_with_times_without_their_zone_is_shown_without_durations(gh, deployer_client):
    request = deploy(deployer_client)
    when = {"started_at": "2024-01-01T00:00:00", "completed_at": "2024-01-01T00:00:05Z"}
    step = {"name": "Terraform apply", "status": "completed", "conclusion": "success", **when}
    job = {"id": 7, "name": "deploy", "status": "completed", "conclusion": "success", **when, "steps": [step]}
    gh.add_fault("GET", JOBS, status=200, body={"total_count": 1, "jobs": [job]})
    gh.advance_run(request.run_id)
    assert set(deliver(deployer_client, gh)) == {200}
    page = deployer_client.get(f"/requests/{request.pk}/")
    assertContains(
        page, '<span class="step-name">Terraform apply</span> <span class="step-state">succeeded</span>'
    )


def test_a_304_to_a_listing_read_without_an_etag_leaves_the_page_without_steps(gh, deployer_client):
    request = deploy(deployer_client)
    gh.add_fault("GET", JOBS, status=304, body=b"")
    gh.advance_run(request.run_id)
    assert set(deliver(deployer_client, gh)) == {200}
    page = deployer_client.get(f"/requests/{request.pk}/")
    assert page.status_code == 200
    assertNotContains(page, "Jobs and steps")
