"""Reading a finished run's plan summary from its artifact (deployments.gh.artifacts), over HTTP
against the emulator: three requests at most, no credentials sent to the storage URL, and any
hostile answer a clear GitHubError."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from deployments import gh as portal_gh
from deployments.gh import (
    GitHubAPIError,
    GitHubNotFoundError,
    GitHubPermissionError,
    GitHubUnavailableError,
    artifacts,
)
from deployments.plan import MAX_SUMMARY_BYTES
from fakegithub.artifacts import STORAGE_PATH
from fakegithub.state import RunOutcome

ACME_PROD = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.large",
    "waf_enabled": "true",
    "request_id": "",
}
STORAGE = STORAGE_PATH + "/"


def finished_run(gh, **inputs: str) -> int:
    """A run of the deploy workflow, dispatched and completed as the workflow would."""
    run = gh.create_run({**ACME_PROD, "action": "plan", "plan_run_id": "", **inputs}, {"login": "fake-user"})
    gh.complete_run(run.id, conclusion=None)
    return run.id


def run_leaving(gh, files: dict[str, bytes], name: str = "plan-summary") -> int:
    """A run that succeeded and uploaded ``files`` as artifact ``name``."""
    run = gh.create_run(dict(ACME_PROD), {"login": "fake-user"})
    gh.complete_run(run.id, outcome=RunOutcome("success", artifacts={name: files}))
    return run.id


def zipped(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_it_reads_the_plan_summary_of_a_plan_run_in_three_requests(gh):
    run_id = finished_run(gh)
    gh.clear_requests()
    summary = json.loads(artifacts.plan_summary(run_id))
    assert (summary["format"], summary["pod"]) == (1, "acme/prod")
    changed = [row for row in summary["resources"] if row["action"] != "no-op"]
    assert [(row["address"], row["action"]) for row in changed] == [
        ("module.pod.aws_instance.this", "update")
    ]
    assert [(r.method, r.path.split("/demo/pods")[-1]) for r in gh.requests][:2] == [
        ("GET", f"/actions/runs/{run_id}/artifacts"),
        ("GET", f"/actions/artifacts/{gh.artifacts.for_run(run_id)[0].id}/zip"),
    ]
    assert len(gh.requests) == 3
    assert gh.requests[0].query["name"] == "plan-summary"


def test_it_sends_no_credentials_to_the_signed_storage_url(gh):
    run_id = finished_run(gh)
    gh.clear_requests()
    artifacts.plan_summary(run_id)
    api_calls, storage = gh.requests[:2], gh.requests[2]
    assert all(r.headers.get("authorization") == "token test-token" for r in api_calls)
    assert storage.path.startswith(STORAGE)
    assert "authorization" not in storage.headers


def test_it_reads_the_summary_an_apply_run_publishes(gh):
    plan_id = finished_run(gh)
    apply_id = finished_run(gh, action="apply", plan_run_id=str(plan_id))
    assert gh.run(apply_id)["conclusion"] == "success"
    assert artifacts.plan_summary(apply_id) == artifacts.plan_summary(plan_id)


def test_an_expired_summary_is_none_after_one_request(gh):
    run_id = finished_run(gh)
    gh.artifacts.expire(run_id)
    gh.clear_requests()
    assert artifacts.plan_summary(run_id) is None
    assert len(gh.requests) == 1


def test_a_run_without_a_summary_is_none(gh):
    gh.conclusions["acme/prod"] = "failure"
    assert artifacts.plan_summary(finished_run(gh)) is None


def test_a_summary_expiring_between_list_and_download_is_none(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", r"/zip$", status=410, body={"message": "Artifact has expired"})
    gh.clear_requests()
    assert artifacts.plan_summary(run_id) is None
    assert len(gh.requests) == 2


def test_the_newest_unexpired_summary_of_the_run_is_read(gh):
    run_id = finished_run(gh)
    gh.rerun(run_id)
    gh.complete_run(
        run_id, outcome=RunOutcome("success", artifacts={"plan-summary": {"plan-summary.json": b"{}"}})
    )
    assert artifacts.plan_summary(run_id) == b"{}"


def test_an_unknown_run_is_not_found(gh):
    with pytest.raises(GitHubNotFoundError, match="no run 1 "):
        artifacts.plan_summary(1)


def test_credentials_without_actions_read_are_told_what_they_need(gh, settings):
    run_id = finished_run(gh)
    gh.token = settings.GH_TOKEN = "github_pat_" + "x" * 30
    gh.fine_grained_permissions = {"contents": "read", "metadata": "read"}
    portal_gh.reset()
    with pytest.raises(GitHubPermissionError, match="Actions: read"):
        artifacts.plan_summary(run_id)


def test_github_failing_is_a_github_error(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", r"/artifacts$", status=500)
    with pytest.raises(GitHubAPIError, match="500"):
        artifacts.plan_summary(run_id)


# --- hostile answers --------------------------------------------------------------------------------


def test_a_member_inflating_past_the_limit_is_refused_without_reading_it_all(gh):
    bomb = b"\0" * (64 * 1024 * 1024)  # 64 MiB of zeros: a zip of about 64 KiB
    run_id = run_leaving(gh, {"plan-summary.json": bomb})
    assert gh.artifacts.for_run(run_id)[0].archive.__len__() < artifacts.MAX_ARCHIVE_BYTES
    with pytest.raises(GitHubAPIError, match=f"over {MAX_SUMMARY_BYTES // 1024} KiB uncompressed"):
        artifacts.plan_summary(run_id)


def test_an_archive_without_the_summary_file_is_refused(gh):
    run_id = run_leaving(gh, {"summary.json": b"{}", "../plan-summary.json": b"{}"})
    with pytest.raises(GitHubAPIError, match="holds no plan-summary.json"):
        artifacts.plan_summary(run_id)


def test_storage_serving_something_other_than_a_zip_is_refused(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", STORAGE, status=200, body=b"<html>maintenance</html>")
    with pytest.raises(GitHubAPIError, match="not a readable zip"):
        artifacts.plan_summary(run_id)


def test_a_corrupt_zip_is_refused(gh):
    run_id = finished_run(gh)
    archive = bytearray(zipped({"plan-summary.json": b'{"format": 1}' * 100}))
    archive[40:60] = b"\xff" * 20  # inside the compressed data: a CRC or inflate error
    gh.add_fault("GET", STORAGE, status=200, body=bytes(archive))
    with pytest.raises(GitHubAPIError, match="not a readable zip"):
        artifacts.plan_summary(run_id)


def test_an_archive_larger_than_declared_is_cut_off_at_the_limit(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", STORAGE, status=200, body=b"PK" + b"x" * (2 * artifacts.MAX_ARCHIVE_BYTES))
    with pytest.raises(GitHubAPIError, match="over 1024 KiB"):
        artifacts.plan_summary(run_id)


def test_an_artifact_listed_as_too_large_is_not_downloaded(gh):
    run_id = finished_run(gh)
    listing = gh.artifacts.for_run(run_id)
    body = {"total_count": 1, "artifacts": [_listed(listing[0].id, size=50 * 1024 * 1024)]}
    gh.add_fault("GET", r"/artifacts$", status=200, body=body)
    gh.clear_requests()
    with pytest.raises(GitHubAPIError, match="was not downloaded"):
        artifacts.plan_summary(run_id)
    assert len(gh.requests) == 1


def _listed(artifact_id, *, size=100, name="plan-summary", expired=False) -> dict:
    return {"id": artifact_id, "name": name, "size_in_bytes": size, "expired": expired}


@pytest.mark.parametrize(
    "body",
    [
        {"total_count": 1, "artifacts": "plan-summary"},
        {"total_count": 1},
        {"total_count": 1, "artifacts": [["plan-summary"]]},
        {"total_count": 1, "artifacts": [_listed("7")]},
        {"total_count": 1, "artifacts": [_listed(True)]},
        {"total_count": 1, "artifacts": [_listed(7, size=None)]},
        {"total_count": 1, "artifacts": [_listed(7, expired="no")]},
        {"total_count": 1, "artifacts": [_listed(2**64)]},
    ],
)
def test_a_malformed_artifact_list_is_refused(gh, body):
    run_id = finished_run(gh)
    gh.add_fault("GET", r"/artifacts$", status=200, body=body)
    with pytest.raises(GitHubAPIError, match="not as documented"):
        artifacts.plan_summary(run_id)


def test_artifacts_of_other_names_are_ignored(gh):
    run_id = finished_run(gh)
    gh.add_fault(
        "GET", r"/artifacts$", status=200, body={"total_count": 1, "artifacts": [_listed(7, name="tfplan")]}
    )
    assert artifacts.plan_summary(run_id) is None


@pytest.mark.parametrize(
    "location", ["file:///etc/passwd", "ftp://127.0.0.1/x.zip", "/relative.zip", "http://u:p@127.0.0.1/x"]
)
def test_a_redirect_to_anything_but_http_storage_is_not_followed(gh, location):
    run_id = finished_run(gh)
    gh.add_fault("GET", r"/zip$", status=302, body=None, headers={"Location": location})
    gh.clear_requests()
    with pytest.raises(GitHubAPIError, match="does not follow"):
        artifacts.plan_summary(run_id)
    assert len(gh.requests) == 2


def test_a_redirect_without_a_location_is_refused(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", r"/zip$", status=200, body={"message": "ok"})
    with pytest.raises(GitHubAPIError, match="no download location"):
        artifacts.plan_summary(run_id)


def test_storage_redirecting_again_is_not_followed(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", STORAGE, status=302, body=None, headers={"Location": gh.api_url + "/rate_limit"})
    gh.clear_requests()
    with pytest.raises(GitHubAPIError, match="storage answered 302"):
        artifacts.plan_summary(run_id)
    assert len(gh.requests) == 3


def test_an_expired_storage_signature_is_a_github_error(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", STORAGE, status=403, body=b"<Error><Code>AuthenticationFailed</Code></Error>")
    with pytest.raises(GitHubAPIError, match="storage answered 403"):
        artifacts.plan_summary(run_id)


def test_storage_hanging_up_is_github_unavailable(gh):
    run_id = finished_run(gh)
    gh.add_fault("GET", STORAGE, drop=True)
    with pytest.raises(GitHubUnavailableError):
        artifacts.plan_summary(run_id)


def test_a_run_id_that_is_not_a_positive_integer_is_a_programming_error(gh):
    for bad in (0, -1, True, "7"):
        with pytest.raises(ValueError, match="not a run id"):
            artifacts.plan_summary(bad)
    assert gh.requests == []
