"""Fixtures for the infrastructure tests: real Terraform, real git, a moto AWS emulator.

Nothing inside the project is mocked. Terraform talks to a ``moto`` server on a free
127.0.0.1 port (one per session) through a test-only ``*_override.tf``; its state goes to the
real S3 backend configuration (``use_lockfile = true``) pointed at moto's S3 with path-style
addressing, so the per-pod state key used by the workflow is exercised too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
SCRIPTS_DIR = REPO_ROOT / "scripts" / "deploy"
AWS_REGION = "us-east-1"
STATE_BUCKET = "pod-portal-tfstate-test"
# The pods' DNS domain (the workflow's POD_DOMAIN); the certificate is requested in moto's ACM.
POD_DOMAIN = "pods.example.test"

# (label, seconds) of the terraform plans and applies timed, printed at the end of the session.
TIMINGS: list[tuple[str, float]] = []


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("terraform plan and apply times (moto)")
        for label, seconds in TIMINGS:
            terminalreporter.write_line(f"{seconds:7.1f}s  {label}")


def _venv_tool(name: str) -> str | None:
    """A console script installed next to the running interpreter, else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


@pytest.fixture(scope="session")
def venv_tool():
    def find(name: str) -> str:
        path = _venv_tool(name)
        if path is None:
            pytest.fail(f"{name} is not installed; run: pip install -r requirements-dev.txt")
        return path

    return find


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    """The terraform executable; skipped when missing, except under CI=true where that fails."""
    path = shutil.which("terraform")
    if path is None:
        reason = "terraform is not on PATH: the Terraform-against-moto tests need Terraform >= 1.10"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: these tests must run in CI, not skip)")
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory) -> dict[str, str]:
    """Environment for boto3 and terraform: fake credentials, no profile, no real endpoint."""
    home = tmp_path_factory.mktemp("aws-home")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": AWS_REGION,
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env


@dataclass
class MotoServer:
    url: str
    process: subprocess.Popen

    def client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=AWS_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    """One moto server for the session, on a free loopback port."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (requirements-dev.txt)")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as log_fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            # AWS managed policies (the instance role attaches AmazonSSMManagedInstanceCore):
            # moto only knows them when asked to (moto/settings.py).
            env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
        )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"moto server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto server did not listen on 127.0.0.1:{port}:\n{log.read_text()}")
            time.sleep(0.1)
    server = MotoServer(url=f"http://127.0.0.1:{port}", process=process)
    try:
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="session")
def terraform_env(terraform_bin, aws_env, moto_server, tmp_path_factory) -> dict[str, str]:
    """Environment for terraform runs: moto everywhere, a shared plugin cache, no CLI config."""
    tf_home = tmp_path_factory.mktemp("terraform-home")
    cli_config = tf_home / "terraformrc"
    cli_config.write_text("")
    cache = tf_home / "plugin-cache"
    cache.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tf_home),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_PLUGIN_CACHE_DIR": str(cache),
        "CHECKPOINT_DISABLE": "1",
        # Belt and braces: any AWS service the override forgot still goes to moto, never to AWS.
        "AWS_ENDPOINT_URL": moto_server.url,
        **aws_env,
    }
    moto_server.client("s3").create_bucket(Bucket=STATE_BUCKET)
    # The workflow passes these from repository variables (POD_DOMAIN, POD_CERTIFICATE_ARN):
    # a wildcard certificate for the pods' domain, which the HTTPS listeners use.
    certificate = moto_server.client("acm").request_certificate(
        DomainName=f"*.{POD_DOMAIN}", ValidationMethod="DNS"
    )
    env["TF_VAR_domain_name"] = POD_DOMAIN
    env["TF_VAR_certificate_arn"] = certificate["CertificateArn"]
    # moto does not implement EC2 MonitorInstances (moto/ec2/responses/monitoring.py raises
    # NotImplementedError), which the provider calls to turn on detailed monitoring: the one
    # module default the tests turn off.
    env["TF_VAR_detailed_monitoring"] = "false"
    return env


def plugin_dir_args() -> list[str]:
    """Use the local provider mirror when there is one (offline), else the registry + cache."""
    plugin_dir = os.environ.get("TF_PLUGIN_DIR", "/opt/tf-plugins")
    return [f"-plugin-dir={plugin_dir}"] if Path(plugin_dir).is_dir() else []


def moto_override(endpoint: str) -> str:
    """The test-only provider override: every service used by the pod module goes to moto."""
    services = ("ec2", "elbv2", "wafv2", "ssm", "sts", "iam", "s3", "kms", "logs")
    endpoints = "\n".join(f'    {service} = "{endpoint}"' for service in services)
    return f"""# Written by tests/infra: point the AWS provider at moto. Never committed.
provider "aws" {{
  region                      = "{AWS_REGION}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true

  endpoints {{
{endpoints}
  }}
}}
"""


def backend_args(endpoint: str) -> list[str]:
    """Extra -backend-config for the S3 backend against moto (the workflow passes the rest)."""
    return [
        f'-backend-config=endpoints={{s3="{endpoint}"}}',
        "-backend-config=use_path_style=true",
        "-backend-config=skip_credentials_validation=true",
        "-backend-config=skip_requesting_account_id=true",
        "-backend-config=skip_metadata_api_check=true",
        "-backend-config=skip_region_validation=true",
    ]
