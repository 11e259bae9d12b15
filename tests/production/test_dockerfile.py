"""What can be checked of the Dockerfile without a Docker engine."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def arguments(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def env_vars() -> dict[str, str]:
    found = {}
    for rest in arguments("ENV") + arguments("ARG"):
        for token in shlex.split(rest):
            name, _, value = token.partition("=")
            found[name] = value
    return found


def healthcheck_command() -> str:
    [healthcheck] = arguments("HEALTHCHECK")
    return healthcheck.split(" CMD ", 1)[1]


def test_base_image_is_python_311_slim():
    assert arguments("FROM") == ["python:3.11-slim"]


def test_process_runs_as_a_non_root_user():
    user = arguments("USER")[-1].split(":")[0]
    assert user not in ("root", "0")
    last_user = max(i for i, (kw, _) in enumerate(instructions()) if kw == "USER")
    assert all(kw in ("ENV", "EXPOSE", "HEALTHCHECK", "CMD") for kw, _ in instructions()[last_user + 1 :])


def test_no_secret_is_baked_into_the_image_environment():
    names = env_vars()
    assert not [name for name in names if re.search(r"SECRET|TOKEN|KEY|PASSWORD|PRIVATE", name)]
    assert not [value for value in names.values() if re.search(r"//[^/@]+:[^/@]+@", value)]


def test_collectstatic_runs_at_build_time_with_a_throwaway_key():
    [collect] = [run for run in arguments("RUN") if "collectstatic" in run]
    assert collect.startswith("DJANGO_SECRET_KEY=")  # set for that command only
    assert "--noinput" in collect


def test_gunicorn_serves_the_wsgi_app_tuned_from_the_environment():
    [cmd] = arguments("CMD")
    for option in (
        "--workers ${GUNICORN_WORKERS}",
        "--threads ${GUNICORN_THREADS}",
        "--timeout ${GUNICORN_TIMEOUT}",
    ):
        assert option in cmd
    assert "exec gunicorn portal.wsgi" in cmd
    defaults = env_vars()
    assert (defaults["GUNICORN_WORKERS"], defaults["GUNICORN_THREADS"], defaults["GUNICORN_TIMEOUT"]) == (
        "2",
        "4",
        "60",
    )


def test_cmd_passes_a_wildcard_forwarded_allow_ips_to_gunicorn_unexpanded(tmp_path):
    # FORWARDED_ALLOW_IPS="*" (trust the forwarded headers from any address, e.g. behind a
    # Kubernetes ingress) must reach gunicorn as "*", not as the names of the files in WORKDIR.
    [cmd] = arguments("CMD")
    shell, flag, script = json.loads(cmd)
    script = script.replace("exec gunicorn ", "exec printf '%s\\n' ")
    (tmp_path / "manage.py").write_text("")
    env = {"PATH": os.environ["PATH"], "FORWARDED_ALLOW_IPS": "*", **env_vars()}
    result = subprocess.run([shell, flag, script], cwd=tmp_path, env=env, capture_output=True, text=True)
    args = result.stdout.splitlines()
    assert args[args.index("--forwarded-allow-ips") + 1] == "*"


def test_healthcheck_probes_the_liveness_url_the_portal_serves():
    path = re.search(r"'(/health/live)'", healthcheck_command()).group(1)
    match = resolve(path)
    assert match.url_name == "health_live"
    assert match.func.login_required is False


@pytest.mark.django_db(transaction=True)
def test_healthcheck_command_passes_against_a_running_portal(live_server):
    port = live_server.url.rsplit(":", 1)[1]
    env = {"PATH": os.environ["PATH"], "PORT": port, "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}
    command = shlex.split(healthcheck_command())
    assert command[0] == "python"
    result = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_every_copied_path_exists_and_is_not_docker_ignored():
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert ignored[ignored.index("*")] == "*"  # an allow-list: nothing is sent unless named
    for copy in arguments("COPY"):
        source = copy.split()[0]
        assert (ROOT / source).exists()
        assert source.rstrip("/") in allowed


def test_every_project_package_the_portal_imports_is_copied_into_the_image():
    """A new app in INSTALLED_APPS (or the settings package) missing from the image would only
    fail when the container starts; tests/container runs it, this says which line to add."""
    from django.conf import settings

    modules = [*settings.INSTALLED_APPS, settings.ROOT_URLCONF, settings.WSGI_APPLICATION]
    local = {module.split(".")[0] for module in modules if (ROOT / module.split(".")[0]).is_dir()}
    copied = {copy.split()[0].rstrip("/") for copy in arguments("COPY")}
    assert {"portal", "deployments"} <= local
    assert sorted(local - copied) == []


def test_runtime_requirements_are_pinned_exactly():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line]
    assert requirements
    assert [
        r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][\w.]*", r)
    ] == []
