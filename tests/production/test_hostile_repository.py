"""Hostile repository content and hostile webhooks against gunicorn as the Dockerfile runs it:
a crash or a hang would be the failure here, so the portal runs in its real server, against the
GitHub emulator over HTTP."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from fakegithub import FakeGitHub
from fakegithub.pytest_plugin import PROJECT_PODS
from tests.helpers import sign
from tests.production.gunicorn import HOST, production_env, running_gunicorn

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "hostile-Password-4k2"  # noqa: S105 (a throwaway user of a throwaway database)
HOSTILE_SPECS = {
    # A few tens of KiB of nested brackets crashed libyaml (SIGSEGV) in every view that parsed it.
    "bracket/prod": "customer: " + "[" * 40_000 + "]" * 40_000 + "\n",
    "brace/prod": "customer: " + "{a: " * 12_000 + "1" + "}" * 12_000 + "\n",
    "huge/prod": "customer: huge\n# " + "z" * 3_000_000 + "\n",
    "laughs/prod": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)),
    "newline/prod": 'customer: "newline\\n"\nenvironment: prod\ninstance_name: n-web\n'
    "instance_type: t3.small\nwaf_enabled: false\n",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple]:
    workdir = tmp_path_factory.mktemp("hostile-repository")
    github = FakeGitHub(repo="demo/pods", specs_dir=PROJECT_PODS, token="hostile-token").start()  # noqa: S106
    for pod, text in HOSTILE_SPECS.items():
        github.put_file(f"pods/{pod}/spec.yml", text)
    github.webhook_secret = secrets.token_hex(16)
    env = production_env(
        workdir,
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
        GH_TOKEN=github.token,
        GH_REPO="demo/pods",
        GITHUB_API_URL=github.api_url,
        GITHUB_WEBHOOK_SECRET=github.webhook_secret,
    )
    user = "from django.contrib.auth.models import User; "
    user += f"User.objects.create_user('olive', password='{PASSWORD}')"
    try:
        with running_gunicorn(workdir, env, setup=user) as server:
            url = f"http://{HOST}:{server.port}"
            session = requests.Session()
            login = session.get(f"{url}/accounts/login/", timeout=10)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
            session.post(
                f"{url}/accounts/login/",
                {"username": "olive", "password": PASSWORD, "csrfmiddlewaretoken": token},
                headers={"Referer": f"{url}/accounts/login/"},
                timeout=10,
            )
            yield url, github, session, server.process, server.log
    finally:
        github.stop()


def workers(process: subprocess.Popen) -> set[int]:
    """The pids of gunicorn's worker processes (children of the shell's exec'd master)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def test_hostile_specs_are_invalid_rows_and_no_worker_dies(stack):
    url, github, session, process, log = stack
    before = workers(process)
    for _ in range(3):  # every view parses the listing again unless cached: ask a few times
        response = session.get(f"{url}/", timeout=30)
        assert response.status_code == 200
        for pod in HOSTILE_SPECS:
            assert f"<strong>{pod.split('/')[0]}</strong>/prod" in response.text
        assert "acme-prod-web" in response.text  # every other pod keeps working
    for pod in HOSTILE_SPECS:
        page = session.get(f"{url}/pods/{pod}/edit/", timeout=30)
        assert page.status_code == 200 and "invalid spec" in page.text
    assert workers(process) == before
    assert "SIGSEGV" not in log.read_text() and "Worker exiting" not in log.read_text()
    huge = HOSTILE_SPECS["huge/prod"].encode()
    huge_sha = hashlib.sha1(b"blob %d\0" % len(huge) + huge, usedforsecurity=False).hexdigest()
    assert not [r for r in github.requests if r.path.endswith(f"/git/blobs/{huge_sha}")]


@pytest.mark.parametrize(
    "raw", ['{"workflow_run": {"id": 1e400}}', '{"workflow_run": {"id": 5, "run_number": "abc"}}',
            '{"workflow_run": ' + "[" * 50_000 + "]" * 50_000 + "}", '{"workflow_run": []}'],
)  # fmt: skip
def test_malformed_signed_webhooks_answer_400_from_gunicorn(stack, raw):
    url, github, session, process, log = stack
    before = workers(process)
    body = raw.encode()
    response = requests.post(
        f"{url}/webhooks/github",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": secrets.token_hex(8),
            "X-Hub-Signature-256": sign(body, github.webhook_secret),
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert json.loads(response.text) == {"message": "Not a workflow_run payload."}
    assert workers(process) == before
