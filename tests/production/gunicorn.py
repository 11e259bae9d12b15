"""A portal under gunicorn as the Dockerfile runs it, for the production tests whose failure
mode is the server's (a stall, a crash): started on a free loopback port with production
settings, a migrated SQLite file and the environment each test adds."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.production.test_dockerfile import arguments, env_vars

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def get(port: int, path: str, *, timeout: float, headers: dict | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    connection.request("GET", path, headers={"Host": HOST, **(headers or {})})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def wait_until_up(port: int, server: subprocess.Popen, log: Path, *, path: str = "/health/live") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"{server.args[0]} exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(port, path, timeout=2).status == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"Nothing answered on port {port} within 30 s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def gunicorn_command(port: int) -> tuple[list[str], dict[str, str]]:
    """The Dockerfile's CMD and its ENV defaults, bound to loopback and run from this venv."""
    [cmd] = arguments("CMD")
    shell, flag, script = json.loads(cmd)
    script = script.replace("exec gunicorn ", f"exec {sys.executable} -m gunicorn ")
    script = script.replace("--bind 0.0.0.0:", f"--bind {HOST}:")
    assert f"--bind {HOST}:${{PORT}}" in script, script
    defaults = {k: v for k, v in env_vars().items() if k.startswith("GUNICORN_")}
    return [shell, flag, script], {**defaults, "PORT": str(port)}


def production_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Production settings (DEBUG off) on plain HTTP, a SQLite file in ``workdir``, plus ``extra``."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": HOST,
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": f"sqlite:///{workdir / 'portal.sqlite3'}",
        **extra,
    }


@contextlib.contextmanager
def running_gunicorn(workdir: Path, env: dict[str, str], *, setup: str = "") -> Iterator[Server]:
    """gunicorn with the Dockerfile's command and ``env``, after migrate (and ``setup``, Python
    run by ``manage.py shell``); stopped on exit."""
    port = free_port()
    command, server_env = gunicorn_command(port)
    env = {**env, **server_env}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    if setup:
        subprocess.run([*manage, "shell", "-c", setup], cwd=ROOT, env=env, check=True, capture_output=True)
    log = workdir / "gunicorn.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(port, process, log)
        yield Server(port=port, process=process, log=log)
    finally:
        stop(process)
