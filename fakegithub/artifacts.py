"""Workflow run artifacts: listing a run's artifacts and downloading one (GitHub's 302 redirect).

A run that completes leaves the artifacts its ``RunOutcome`` names; ``ArtifactStore`` keeps them
(``FakeGitHub.artifacts``), each as the zip GitHub would serve, with the retention it was
uploaded with. The API lists and describes them, and answers a download with ``302`` to a
short-lived signed URL on another path of the emulator, as GitHub redirects to its blob storage:
that URL needs no ``Authorization`` header, works for a minute and serves the zip.
https://docs.github.com/en/rest/actions/artifacts

Control API: ``gh.artifacts.expire(run_id=None, name=None)`` ends the retention of artifacts now
(they stay listed with ``expired: true`` and their download answers 410), ``gh.artifacts.items``,
``signed_url(gh, artifact, ttl)`` (a download URL with any lifetime, e.g. already expired).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import secrets
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from fakegithub import shapes
from fakegithub.routes import ApiRequest, Response, Route, error, paginate

if TYPE_CHECKING:
    from fakegithub.server import FakeGitHub
    from fakegithub.state import Run

# A repository's default artifact retention, when an upload names none.
# https://docs.github.com/en/actions/tutorials/store-and-share-data#configuring-a-custom-artifact-retention-period
DEFAULT_RETENTION_DAYS = 90
# "This URL expires after 1 minute."
# https://docs.github.com/en/rest/actions/artifacts#download-an-artifact
SIGNED_URL_TTL = 60
FIRST_ARTIFACT_ID = 2400000001
# Process-wide, like run ids: an id never names two artifacts, even across resets.
_ids = itertools.count(FIRST_ARTIFACT_ID)
_ids_lock = threading.Lock()
# Signs the storage URLs of this process; the storage path trusts nothing else.
_SIGNING_KEY = secrets.token_bytes(32)
_ZIP_TIME = (2025, 1, 1, 0, 0, 0)  # fixed member timestamps: the same files make the same zip
STORAGE_PATH = "/_fakegithub/artifact-storage"


@dataclass
class Artifact:
    id: int
    run_id: int
    run_attempt: int
    head_sha: str
    name: str
    archive: bytes  # the zip GitHub serves: the uploaded files at its root
    created: float
    expires: float
    expired: bool = False  # retention ended early (``ArtifactStore.expire``)

    def is_expired(self, now: float) -> bool:
        return self.expired or now >= self.expires


def zip_files(files: dict[str, bytes]) -> bytes:
    """The files as a zip archive, deflated, members in name order."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), files[name], zipfile.ZIP_DEFLATED)
    return out.getvalue()


class ArtifactStore:
    """Every artifact the emulator's runs left, oldest first."""

    def __init__(self, lock: threading.RLock):
        self.lock = lock
        self.items: list[Artifact] = []

    def add(self, run: Run, now: float) -> list[Artifact]:
        """Keep the artifacts of ``run``'s completed attempt (its ``outcome``)."""
        outcome = run.outcome
        if outcome is None:
            return []
        added = []
        with self.lock:
            for name, files in outcome.artifacts.items():
                days = outcome.retention_days.get(name, DEFAULT_RETENTION_DAYS)
                with _ids_lock:
                    artifact_id = next(_ids)
                artifact = Artifact(
                    id=artifact_id,
                    run_id=run.id,
                    run_attempt=run.attempt,
                    head_sha=run.head_sha,
                    name=name,
                    archive=zip_files(files),
                    created=now,
                    expires=now + days * 86400,
                )
                self.items.append(artifact)
                added.append(artifact)
        return added

    def get(self, artifact_id: int) -> Artifact | None:
        with self.lock:
            return next((a for a in self.items if a.id == artifact_id), None)

    def for_run(self, run_id: int) -> list[Artifact]:
        with self.lock:
            return [a for a in self.items if a.run_id == run_id]

    def expire(self, run_id: int | None = None, name: str | None = None) -> int:
        """End the retention of the artifacts of ``run_id`` (all runs: None) named ``name`` (any:
        None) now, as if their retention days had passed. Returns how many expired."""
        count = 0
        with self.lock:
            for artifact in self.items:
                if (run_id is None or artifact.run_id == run_id) and (name is None or artifact.name == name):
                    artifact.expired = True
                    count += 1
        return count


# --- shapes ---------------------------------------------------------------------------------------


def artifact_json(gh: FakeGitHub, artifact: Artifact) -> dict:
    """An artifact as GitHub's REST API shows it (schema ``artifact``).
    https://docs.github.com/en/rest/actions/artifacts#get-an-artifact"""
    api = f"{gh.api_url}/repos/{gh.repo}/actions/artifacts/{artifact.id}"
    return {
        "id": artifact.id,
        "node_id": shapes.node_id("RA", artifact.id),
        "name": artifact.name,
        "size_in_bytes": len(artifact.archive),
        "url": api,
        "archive_download_url": f"{api}/zip",
        "expired": artifact.is_expired(time.time()),
        "created_at": shapes.iso(artifact.created),
        "expires_at": shapes.iso(artifact.expires),
        "updated_at": shapes.iso(artifact.created),
        # upload-artifact v4 and newer record the zip's SHA-256.
        "digest": "sha256:" + hashlib.sha256(artifact.archive).hexdigest(),
        "workflow_run": {
            "id": artifact.run_id,
            "repository_id": shapes.REPO_ID,
            "head_repository_id": shapes.REPO_ID,
            "head_branch": "main",
            "head_sha": artifact.head_sha,
        },
    }


# --- signed storage URLs --------------------------------------------------------------------------


def _signature(artifact_id: int, expires: int) -> str:
    mac = hmac.new(_SIGNING_KEY, f"{artifact_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def signed_url(gh: FakeGitHub, artifact: Artifact, ttl: float = SIGNED_URL_TTL) -> str:
    """Where the download redirects: the zip, readable without a token until ``ttl`` seconds from
    now (GitHub's points at its blob storage, signed the same way: ``se`` expiry, ``sig``)."""
    expires = int(time.time() + ttl)
    name = quote(artifact.name, safe="")
    return (
        f"{gh.api_url}{STORAGE_PATH}/{artifact.id}/{name}.zip"
        f"?se={expires}&sp=r&sig={_signature(artifact.id, expires)}"
    )


def _storage_error(code: str, message: str) -> Response:
    # Blob storage answers in XML, as Azure Storage does for a bad or expired shared access signature.
    body = f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
    body += "</Error>"
    return Response(
        403 if code == "AuthenticationFailed" else 404, body.encode(), content_type="application/xml"
    )


# --- handlers -------------------------------------------------------------------------------------


def list_run_artifacts(gh: FakeGitHub, req: ApiRequest, run_id: str) -> Response:
    """GET /repos/{owner}/{repo}/actions/runs/{run_id}/artifacts: ``name`` filter, ``direction``
    (default desc: newest first), ``per_page``/``page`` with Link headers.
    https://docs.github.com/en/rest/actions/artifacts#list-workflow-run-artifacts"""
    if gh.state.find_run(int(run_id)) is None:
        return error(404, "Not Found")
    found = gh.artifacts.for_run(int(run_id))
    if req.query.get("name"):
        found = [a for a in found if a.name == req.query["name"]]
    if req.query.get("direction", "desc") != "asc":
        found.reverse()
    try:
        chosen, links = paginate(gh, req, found)
    except ValueError:
        return error(422, "Invalid pagination parameter")
    return Response(
        200, {"total_count": len(found), "artifacts": [artifact_json(gh, a) for a in chosen]}, links
    )


def get_artifact(gh: FakeGitHub, req: ApiRequest, artifact_id: str) -> Response:
    """GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}.
    https://docs.github.com/en/rest/actions/artifacts#get-an-artifact"""
    artifact = gh.artifacts.get(int(artifact_id))
    return Response(200, artifact_json(gh, artifact)) if artifact else error(404, "Not Found")


def download_artifact(gh: FakeGitHub, req: ApiRequest, artifact_id: str) -> Response:
    """GET /repos/{owner}/{repo}/actions/artifacts/{artifact_id}/zip: 302 to the zip on storage
    (``Location``), or 410 once the artifact expired. The archive format "must be zip"; another
    one is no route here, so 404.
    https://docs.github.com/en/rest/actions/artifacts#download-an-artifact"""
    artifact = gh.artifacts.get(int(artifact_id))
    if artifact is None:
        return error(404, "Not Found")
    if artifact.is_expired(time.time()):
        return error(410, "Artifact has expired")
    return Response(302, None, {"Location": signed_url(gh, artifact)})


def read_storage(gh: FakeGitHub, req: ApiRequest, artifact_id: str, name: str) -> Response:
    """The signed storage URL: the zip while the signature holds, no token needed (or looked at)."""
    try:
        expires = int(req.query.get("se", ""))
    except ValueError:
        return _storage_error("AuthenticationFailed", "Signature fields not well formed.")
    given = req.query.get("sig", "")
    if not hmac.compare_digest(given.encode(), _signature(int(artifact_id), expires).encode()):
        return _storage_error("AuthenticationFailed", "Signature did not match.")
    if time.time() > expires:
        return _storage_error("AuthenticationFailed", "Signed expiry time has passed.")
    artifact = gh.artifacts.get(int(artifact_id))
    if artifact is None or artifact.is_expired(time.time()):
        return _storage_error("BlobNotFound", "The specified blob does not exist.")
    return Response(200, artifact.archive, content_type="application/zip")


_ARTIFACT = r"/repos/{repo}/actions/artifacts/(?P<artifact_id>\d+)"

ROUTES: tuple[Route, ...] = (
    # "Fine-grained access tokens ... Actions repository permissions (read)", on each endpoint's page.
    Route(
        "GET",
        r"/repos/{repo}/actions/runs/(?P<run_id>\d+)/artifacts",
        list_run_artifacts,
        permission="actions=read",
    ),
    Route("GET", _ARTIFACT, get_artifact, permission="actions=read"),
    Route("GET", _ARTIFACT + "/zip", download_artifact, permission="actions=read"),
    # Blob storage is another host on GitHub: it neither needs the token nor counts against the
    # API rate limit.
    Route(
        "GET",
        STORAGE_PATH + r"/(?P<artifact_id>\d+)/(?P<name>[^/]+)\.zip",
        read_storage,
        authenticated=False,
        metered=False,
    ),
)
