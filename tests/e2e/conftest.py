"""The portal started for real (gunicorn, production settings, its own SQLite file) against the
GitHub emulator with a running clock and webhooks, driven by Debian's Chromium via Playwright.

Each xdist worker starts its own emulator, portal and browser once and shares them between
its e2e tests. Screenshots of the main pages are saved under tests/e2e/screenshots/.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import PROJECT_PODS, deploy_pod

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
PASSWORD = "e2e-Password-9x7"  # noqa: S105 (throwaway users of a throwaway database)

CREATE_USERS = f"""
from django.contrib.auth.models import Group, User
dana = User.objects.create_user("dana", password="{PASSWORD}", is_staff=True)
dana.groups.add(Group.objects.get(name="Deployers"))
User.objects.create_superuser("admin", password="{PASSWORD}")
"""


@dataclass
class Portal:
    url: str
    github: FakeGitHub
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"The portal exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/health/live", timeout=2)  # noqa: S310 (loopback)
            return
        time.sleep(0.2)
    pytest.fail(f"The portal did not answer within 30 s:\n{log.read_text()[-3000:]}")


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (make test does as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def portal(chromium_path, tmp_path_factory) -> Portal:
    workdir = tmp_path_factory.mktemp("e2e-portal")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    webhook_secret = secrets.token_hex(16)
    github = FakeGitHub(
        repo="demo/pods",
        specs_dir=PROJECT_PODS,
        webhook_url=f"{url}/webhooks/github",
        webhook_secret=webhook_secret,
        auto_runs=True,
        queued_for=1.0,
        in_progress_for=2.0,
        workflow_effect=deploy_pod,
    ).start()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(workdir),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "DJANGO_SESSION_COOKIE_SECURE": "false",
        "DJANGO_CSRF_COOKIE_SECURE": "false",
        "DJANGO_SECURE_HSTS_SECONDS": "0",
        "DATABASE_URL": f"sqlite:///{workdir / 'portal.sqlite3'}",
        "GH_TOKEN": github.token,
        "GH_REPO": "demo/pods",
        "GITHUB_API_URL": github.api_url,
        "GITHUB_WEBHOOK_SECRET": webhook_secret,
        "HEALTH_CACHE_SECONDS": "5",
    }
    manage("migrate", "--noinput", env=env)
    manage("shell", "-c", CREATE_USERS, env=env)
    # Production serves the hashed files collected here; workers collect in turn, not at once.
    with open(tmp_path_factory.getbasetemp().parent / "collectstatic.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manage("collectstatic", "--noinput", env=env)
    log = workdir / "gunicorn.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--threads", "4", "--timeout", "60", "--no-control-socket"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until_up(url, server, log)
        yield Portal(url=url, github=github, log=log)
    finally:
        server.terminate()
        server.wait(timeout=30)
        github.stop()


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, portal):
    context = browser.new_context(base_url=portal.url, viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(name: str) -> None:
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

    return take


def log_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
