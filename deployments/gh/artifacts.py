"""Reading what a finished run published as artifacts: the plan summary of a plan (or apply,
or one-run deploy) run.

GitHub serves an artifact as a zip behind a redirect: the API answers ``302`` with a signed URL
on its blob storage that expires after a minute; that URL carries its own authorisation, so the
portal's credentials are never sent there.
https://docs.github.com/en/rest/actions/artifacts#download-an-artifact

Everything GitHub or the storage answers is untrusted: the listing is type-checked, the archive
read with a size limit (not trusting ``Content-Length`` or ``size_in_bytes``), and the member
decompressed with a limit (a small zip can inflate to gigabytes).
"""

from __future__ import annotations

import io
import json
import time
import zipfile
import zlib
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings

from ..plan import MAX_SUMMARY_BYTES
from .client import _call, _repo_url, state
from .errors import GitHubAPIError

PLAN_SUMMARY_ARTIFACT = "plan-summary"
PLAN_SUMMARY_FILE = "plan-summary.json"
# The largest zip accepted from the storage; a plan summary's is a few KiB.
MAX_ARCHIVE_BYTES = 1024 * 1024
_CHUNK_BYTES = 64 * 1024
# Artifacts listed per request: a run has a handful, and GitHub filters them by name.
_PER_PAGE = 100
_MAX_ID = 2**63 - 1


def plan_summary(run_id: int) -> bytes | None:
    """The ``plan-summary.json`` run ``run_id`` published, as bytes (parsing is deployments.plan's
    job), or None when the run has no ``plan-summary`` artifact or it expired.

    Three requests at most: the run's artifacts filtered by name, the artifact's download (a 302),
    and the signed storage URL, fetched without the portal's credentials. Raises the portal's
    ``GitHubError`` subclasses: GitHub failing or refusing, or an answer that is not a plan
    summary (too large, not a zip, no ``plan-summary.json`` in it).
    """
    if type(run_id) is not int or not 0 < run_id <= _MAX_ID:
        raise ValueError(f"not a run id: {run_id!r}")
    artifact_id = _newest_artifact(run_id, PLAN_SUMMARY_ARTIFACT)
    if artifact_id is None:
        return None
    location = _download_location(artifact_id)
    if location is None:
        return None
    archive = _call(lambda: _fetch_archive(location, run_id))
    return _read_member(archive, PLAN_SUMMARY_FILE, limit=MAX_SUMMARY_BYTES, run_id=run_id)


def _newest_artifact(run_id: int, name: str) -> int | None:
    """The id of the newest unexpired artifact ``name`` of the run, or None."""
    requester = state.client(writes=False).requester
    url = _repo_url(f"/actions/runs/{run_id}/artifacts")

    def fetch() -> dict[str, Any]:
        status, headers, body = requester.requestJson("GET", url, {"name": name, "per_page": str(_PER_PAGE)})
        data = _json_body(body, status)
        if status >= 400:
            raise requester.createException(status, headers, data)
        if status != 200:
            raise GitHubAPIError(f"GitHub answered {status} to the list of run {run_id}'s artifacts.")
        return data

    data: dict[str, Any] = _call(
        fetch,
        not_found=f"GitHub has no run {run_id} in {settings.GH_REPO} "
        "(or the portal's credentials cannot see it).",
        forbidden=f"The portal's GitHub credentials cannot read the artifacts of runs in {settings.GH_REPO}. "
        "A classic token needs the 'repo' scope; a fine-grained token or GitHub App needs Actions: read.",
    )
    listed = data.get("artifacts")
    if not isinstance(listed, list) or len(listed) > _PER_PAGE:
        raise _malformed(run_id, "no list of artifacts")
    newest: tuple[int, int] | None = None  # (id, size)
    for item in listed:
        if not isinstance(item, dict):
            raise _malformed(run_id, "an artifact that is not an object")
        artifact_id, size, expired = item.get("id"), item.get("size_in_bytes"), item.get("expired")
        if type(artifact_id) is not int or not 0 < artifact_id <= _MAX_ID:
            raise _malformed(run_id, "an artifact id that is not a positive integer")
        if type(size) is not int or size < 0 or type(expired) is not bool:
            raise _malformed(run_id, f"artifact {artifact_id} without a size or an expiry flag")
        if item.get("name") != name or expired:
            continue
        if newest is None or artifact_id > newest[0]:
            newest = (artifact_id, size)
    if newest is None:
        return None
    if newest[1] > MAX_ARCHIVE_BYTES:
        raise GitHubAPIError(
            f"The {name} artifact of run {run_id} is {newest[1]} bytes, over the "
            f"{MAX_ARCHIVE_BYTES // 1024} KiB a plan summary may take; it was not downloaded."
        )
    return newest[0]


def _malformed(run_id: int, what: str) -> GitHubAPIError:
    return GitHubAPIError(f"GitHub's list of run {run_id}'s artifacts is not as documented: {what}.")


def _download_location(artifact_id: int) -> str | None:
    """Where GitHub redirects the artifact's download (a short-lived signed URL), or None when the
    artifact expired (410) or is gone (404) since it was listed."""
    result: str | None = _call(
        lambda: redirect_location(f"/actions/artifacts/{artifact_id}/zip", f"artifact {artifact_id}"),
        not_found=f"Artifact {artifact_id} was not found.",
    )
    return result


def redirect_location(path: str, what: str) -> str | None:
    """The signed storage URL GitHub's ``302`` to ``path`` (in the repository) names, checked;
    None on a 404 or 410 (expired or gone). Raises PyGithub's exception for other errors (for
    ``_call``). requestJson does not follow the redirect: the storage URL gets no Authorization."""
    requester = state.client(writes=False).requester
    status, headers, body = requester.requestJson("GET", _repo_url(path))
    if status in (404, 410):
        return None
    if status >= 400:
        raise requester.createException(status, headers, _json_body(body, status))
    location = {k.lower(): v for k, v in headers.items()}.get("location")
    if status != 302 or not isinstance(location, str):
        raise GitHubAPIError(
            f"GitHub answered {status}, with no download location, to the download of {what}."
        )
    return _checked_location(location, what)


def _json_body(body: Any, status: int) -> dict[str, Any]:
    """GitHub's JSON object, or a stand-in carrying the status when the body is none."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"message": f"unexpected answer (HTTP {status})"}


def _checked_location(location: str, what: str) -> str:
    """The redirect target, if it is one to follow: an absolute http(s) URL with no credentials in
    it, and https unless the API itself is plain http (a lab or the emulator)."""
    parts = urlsplit(location)
    allowed = ("https",) if urlsplit(settings.GITHUB_API_URL).scheme == "https" else ("https", "http")
    if (
        parts.scheme not in allowed
        or not parts.hostname
        or parts.username
        or parts.password
        or len(location) > 8192
    ):
        raise GitHubAPIError(
            f"GitHub redirected the download of {what} to a location the portal does not "
            f"follow (scheme {parts.scheme or 'none'!r})."
        )
    return location


def _no_credentials(request: requests.PreparedRequest) -> requests.PreparedRequest:
    # A session with an auth callable never adds credentials from ~/.netrc.
    return request


def _fetch_archive(location: str, run_id: int) -> bytes:
    """The zip at the signed storage URL, read up to MAX_ARCHIVE_BYTES within GITHUB_TIMEOUT."""
    deadline = time.monotonic() + settings.GITHUB_TIMEOUT
    with requests.Session() as session:
        session.auth = _no_credentials
        with session.get(
            location, timeout=settings.GITHUB_TIMEOUT, allow_redirects=False, stream=True
        ) as answer:
            if answer.status_code != 200:
                raise GitHubAPIError(
                    f"GitHub's artifact storage answered {answer.status_code} to the download of "
                    f"run {run_id}'s plan summary. Try again in a minute."
                )
            data = bytearray()
            for chunk in answer.iter_content(_CHUNK_BYTES):
                data += chunk
                if len(data) > MAX_ARCHIVE_BYTES:
                    raise GitHubAPIError(
                        f"The plan summary archive of run {run_id} is over {MAX_ARCHIVE_BYTES // 1024} KiB; "
                        "it was not read."
                    )
                if time.monotonic() > deadline:
                    raise requests.exceptions.Timeout("artifact download too slow")
    return bytes(data)


def _read_member(archive: bytes, name: str, *, limit: int, run_id: int) -> bytes:
    """The member ``name`` of the zip, decompressed up to ``limit`` bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            try:
                info = zipped.getinfo(name)
            except KeyError:
                raise GitHubAPIError(
                    f"The plan-summary artifact of run {run_id} holds no {name} "
                    f"({len(zipped.infolist())} other files)."
                ) from None
            with zipped.open(info) as member:
                data = member.read(limit + 1)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        EOFError,
        OSError,
        zlib.error,
    ):
        raise GitHubAPIError(
            f"The plan-summary artifact of run {run_id} is not a readable zip archive."
        ) from None
    if len(data) > limit:
        raise GitHubAPIError(
            f"The {name} of run {run_id} is over {limit // 1024} KiB uncompressed; it was not read."
        )
    return data
