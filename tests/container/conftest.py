"""The container tier: the project's Dockerfile built with podman and run for real.

One image, one PostgreSQL server and one GitHub emulator per session; the web containers share the
host's loopback network (``--network host``) and each listens on its own ``PORT``. Everything is
removed at the end of the session. Figures (image size, time to healthy, rolling-restart and lock
counts) are printed and appended to ``$CONTAINER_REPORT`` when it is set.

podman is required: without it the tier skips with the reason, except in CI (``CI=true``) where it
fails instead.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fakegithub.pytest_plugin import PROJECT_PODS, deploy_pod
from fakegithub.server import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
IMAGE = "localhost/pod-portal:container-tier"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
TOKEN = "container-tier-token"  # noqa: S105 (the emulator's accepted token, not a secret)
GRACEFUL_TIMEOUT = 30  # the Dockerfile's gunicorn --graceful-timeout
# Per pytest-xdist worker, so two workers never remove each other's containers.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
LABEL = f"portal-container-tier-{WORKER}"


def container_name(role: str) -> str:
    return f"portal-{WORKER}-{role}"


def podman_flags() -> list[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "podman_flags.sh")], capture_output=True, text=True, check=True
    ).stdout.split()


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def report(line: str) -> None:
    """A figure for the closing note: printed (pytest -s) and appended to $CONTAINER_REPORT."""
    print(f"\n[container] {line}")
    path = os.environ.get("CONTAINER_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(line + "\n")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"container tier cannot run in CI: {reason}")
    pytest.skip(
        f"container tier skipped: {reason} (install Debian's podman and runc; make test does as root)"
    )


@pytest.fixture(scope="session")
def podman_ready() -> None:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed")
    probe = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True)
    if probe.returncode != 0:
        _unavailable(f"podman cannot run here: {probe.stderr.decode(errors='replace').strip()[:300]}")


@pytest.fixture(scope="session")
def image(podman_ready) -> str:
    """The project's Dockerfile, built (layers cached by podman between runs); its size reported."""
    base = subprocess.run(
        [str(ROOT / "scripts" / "podman_base_image.sh"), BASE_IMAGE], capture_output=True, text=True
    )
    if base.returncode != 0:
        pytest.fail(f"the base image could not be built:\n{base.stderr[-3000:]}")
    start = time.monotonic()
    # --format docker keeps HEALTHCHECK (the OCI image format has no such field).
    # The checkout is the build context; PORTAL_IMAGE_CONTEXT names another (e.g. a `git archive`
    # export of one commit, to build it without the working tree's uncommitted changes).
    context = os.environ.get("PORTAL_IMAGE_CONTEXT") or str(ROOT)
    podman("build", *podman_flags(), "--pull=never", "--format", "docker", "-t", IMAGE, context, timeout=900)
    built = time.monotonic() - start
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    base_size = int(podman("image", "inspect", "--format", "{{.Size}}", BASE_IMAGE).stdout.strip())
    report(
        f"image {IMAGE}: {size / 1e6:.0f} MB ({(size - base_size) / 1e6:.0f} MB over {BASE_IMAGE}, "
        f"{base_size / 1e6:.0f} MB), podman build took {built:.0f} s"
    )
    return IMAGE


@dataclass
class Postgres:
    port: int
    bindir: Path
    url: str


def _pg_bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    _unavailable("PostgreSQL (initdb, pg_ctl) is not installed")
    raise AssertionError  # unreachable


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL server on loopback, as scripts/test_postgres.sh starts one."""
    bindir = _pg_bindir()
    # Not under pytest's tmp_path: the server runs as `nobody` (initdb refuses root), which cannot
    # enter root's private pytest directory.
    workdir = Path(tempfile.mkdtemp(prefix="portal-container-pg."))
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(workdir, "nobody")
    data = workdir / "data"
    subprocess.run(
        [
            *as_user,
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    options = (
        f"-h {HOST} -p {port} -k {workdir} -c fsync=off -c synchronous_commit=off -c max_connections=200"
    )
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(workdir / "server.log"), "-w"]
        + ["-t", "30", "start", "-o", options],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [str(bindir / "createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", "portal"],
            check=True,
            capture_output=True,
        )
        yield Postgres(port, bindir, f"postgres://postgres@{HOST}:{port}/portal")
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


def sql(postgres: Postgres, query: str, *params: object) -> list[tuple]:
    import psycopg

    with psycopg.connect(postgres.url) as conn:
        return conn.execute(query, params).fetchall()


WEBHOOK_SECRET = secrets.token_hex(16)


@pytest.fixture(scope="session")
def emulator() -> Iterator[FakeGitHub]:
    """The GitHub emulator on loopback; the containers reach it through the host network."""
    gh = FakeGitHub(
        repo="demo/pods",
        specs_dir=PROJECT_PODS,
        specs_path="pods",
        token=TOKEN,
        scopes="repo, workflow",
        webhook_secret=WEBHOOK_SECRET,
        workflow_effect=deploy_pod,
    ).start()
    yield gh
    gh.stop()


@dataclass
class Web:
    name: str
    port: int
    started: float = 0.0


@dataclass
class Portal:
    """The deployed topology: the environment every container gets and the running web containers."""

    image: str
    env_file: Path
    webs: list[Web] = field(default_factory=list)

    def run_args(self, name: str, *, port: int | None = None, detach: bool = True) -> list[str]:
        args = ["run", *podman_flags(), "--name", name, "--label", LABEL, "--env-file", str(self.env_file)]
        # The runtime shape this tier checks: a read-only root filesystem, a tmpfs for /tmp
        # (gunicorn's worker heartbeat files), no new privileges, every capability dropped.
        args += [
            "--read-only",
            "--tmpfs",
            "/tmp:rw,size=16m,mode=1777",
            "--security-opt",
            "no-new-privileges",
        ]
        args += ["--cap-drop", "ALL"]
        if port is not None:
            args += ["--env", f"PORT={port}"]
        if detach:
            args.append("--detach")
        return args

    def manage(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A one-off container running ``python manage.py COMMAND`` (the release step, the sync loop)."""
        name = container_name(f"task-{uuid.uuid4().hex[:8]}")
        args = [*self.run_args(name, detach=False), "--rm", self.image, "python", "manage.py", *command]
        return podman(*args, timeout=timeout)

    def start_web(self, name: str, port: int) -> Web:
        podman(*self.run_args(name, port=port), self.image)
        web = Web(name, port, time.monotonic())
        # Up to 40 s was measured on a 2-core machine at load average 19: room for a busier one.
        wait_for(
            lambda: status(port, "/health/live") == 200, what=f"{name} answering", container=name, limit=120
        )
        return web


def status(port: int, path: str, *, timeout: float = 2) -> int | None:
    with contextlib.suppress(OSError, http.client.HTTPException):
        connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
        connection.request("GET", path, headers={"Host": HOST})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status
    return None


def wait_for(predicate, *, what: str, limit: float = 60, container: str | None = None) -> float:
    """Poll ``predicate`` until true; the seconds it took. Fails with the container's log otherwise."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if predicate():
                return time.monotonic() - start
        if (
            container
            and podman("inspect", "--format", "{{.State.Running}}", container, check=False).stdout.strip()
            == "false"
        ):
            break
        time.sleep(0.1)
    logs = podman("logs", container, check=False).stderr[-3000:] if container else ""
    pytest.fail(f"timed out waiting for {what}:\n{logs}")


def remove_containers() -> None:
    listed = podman("ps", "-a", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    if listed:
        podman("rm", "-f", "-t", "0", *listed, check=False)


@pytest.fixture(scope="session")
def portal(image, postgres, emulator, tmp_path_factory) -> Iterator[Portal]:
    """The release step (migrate), then two web containers on PostgreSQL and the emulator."""
    workdir = tmp_path_factory.mktemp("portal")
    env = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": f"{HOST},localhost",
        # Plain HTTP on loopback here; production terminates TLS at the proxy.
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SESSION_COOKIE_SECURE": "false",
        "DJANGO_CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": postgres.url,
        "GH_TOKEN": TOKEN,
        "GH_REPO": "demo/pods",
        "GITHUB_API_URL": emulator.api_url,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # One run per deploy (no review step): what these tests exercise is the topology.
        "AUTO_APPLY_ENVIRONMENTS": "*",
        "APPROVAL_REQUIRED_ENVIRONMENTS": "",
        "DJANGO_SUPERUSER_USERNAME": "operator",
        "DJANGO_SUPERUSER_EMAIL": "operator@example.com",
        "DJANGO_SUPERUSER_PASSWORD": OPERATOR_PASSWORD,
        "GUNICORN_WORKERS": "2",
    }
    env_file = workdir / "portal.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    deployed = Portal(image, env_file)
    remove_containers()
    try:
        start = time.monotonic()
        migrated = deployed.manage("migrate", "--noinput")
        report(f"release step (migrate in a container) took {time.monotonic() - start:.1f} s")
        assert "Applying deployments." in migrated.stdout or "No migrations to apply" in migrated.stdout
        deployed.manage("createsuperuser", "--noinput")
        for index in (1, 2):
            web = deployed.start_web(container_name(f"web-{index}"), free_port())
            report(
                f"{web.name}: answering /health/live {time.monotonic() - web.started:.1f} s after podman run"
            )
            deployed.webs.append(web)
        yield deployed
    finally:
        remove_containers()


OPERATOR_PASSWORD = secrets.token_urlsafe(16)
