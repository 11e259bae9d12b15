"""deploy/kubernetes: rendered with kustomize, validated against the Kubernetes schemas offline
(kubernetes-validate), scanned by checkov, and the Deployment smoke-run with `podman kube play`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.checkov import checkov
from tests.container.client import Browser
from tests.container.conftest import HOST, free_port, podman, podman_flags, report, wait_for

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "production"
KUBERNETES_VERSION = "1.33"  # a version in support by the major providers; the schemas ship offline


def kustomize(directory: Path) -> list[dict]:
    """The resources ``kubectl kustomize`` renders; without kubectl, the base's files as they are."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl (kustomize) is missing")
        listed = yaml.safe_load((directory / "kustomization.yaml").read_text()).get("resources", [])
        files = [directory / name for name in listed if (directory / name).is_file()]
        return [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]
    rendered = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def by_kind(resources: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for resource in resources:
        kinds.setdefault(resource["kind"], []).append(resource)
    return kinds


@pytest.fixture(scope="module", params=[BASE, OVERLAY], ids=["base", "production"])
def rendered(request) -> list[dict]:
    return kustomize(request.param)


def test_every_resource_is_valid_against_the_kubernetes_schemas(rendered):
    assert len(rendered) >= 10
    for resource in rendered:
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_overlay_changes_only_what_it_says():
    base, production = by_kind(kustomize(BASE)), by_kind(kustomize(OVERLAY))
    [deployment] = production["Deployment"]
    assert deployment["metadata"]["namespace"] == "portal"
    assert deployment["spec"]["replicas"] == 3
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/platform/pod-portal:2026.11.28"
    [config] = production["ConfigMap"]
    assert config["data"]["DJANGO_ALLOWED_HOSTS"] == "deploy.example.com,localhost"
    assert {i["spec"]["rules"][0]["host"] for i in production["Ingress"]} == {"deploy.example.com"}
    assert base["Deployment"][0]["spec"]["replicas"] == 2


def pod_specs(kinds: dict[str, list[dict]]) -> dict[str, dict]:
    specs = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in kinds["Deployment"] + kinds["Job"]}
    for cron in kinds["CronJob"]:
        specs[cron["metadata"]["name"]] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return specs


def test_every_pod_runs_non_root_read_only_unprivileged_with_resources_and_no_inline_secret():
    kinds = by_kind(kustomize(BASE))
    specs = pod_specs(kinds)
    assert set(specs) == {"portal-web", "portal-migrate", "portal-sync-runs"}
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
        assert spec["automountServiceAccountToken"] is False
        [container] = spec["containers"]
        context = container["securityContext"]
        assert (context["readOnlyRootFilesystem"], context["allowPrivilegeEscalation"]) == (True, False)
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]
        # Settings only by reference: no env value in the manifests.
        assert "env" not in container
        refs = [next(iter(ref)) for ref in container["envFrom"]]
        assert refs == ["configMapRef", "secretRef"]
    assert "Secret" not in kinds  # created from the secret store, never from these files
    assert specs["portal-migrate"]["containers"][0]["command"] == [
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]
    assert specs["portal-sync-runs"]["containers"][0]["command"] == ["python", "manage.py", "sync_runs"]


def test_the_web_deployment_probes_and_disruption_budget():
    kinds = by_kind(kustomize(BASE))
    [deployment] = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [web] = deployment["spec"]["template"]["spec"]["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert web["readinessProbe"]["httpGet"]["path"] == "/health"
    # The probes' Host header must be one Django accepts.
    [config] = kinds["ConfigMap"]
    allowed = config["data"]["DJANGO_ALLOWED_HOSTS"].split(",")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        [host] = [h["value"] for h in web[probe]["httpGet"]["httpHeaders"] if h["name"] == "Host"]
        assert host in allowed
    # gunicorn's graceful timeout (30 s) plus the preStop pause fit in the grace period.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30 + 5
    [budget] = kinds["PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [service] = kinds["Service"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_the_ingress_serves_tls_and_the_webhook_path_with_their_body_limits():
    ingresses = {i["metadata"]["name"]: i for i in by_kind(kustomize(BASE))["Ingress"]}
    site, webhook = ingresses["portal-web"], ingresses["portal-webhook"]
    for ingress in (site, webhook):
        assert ingress["spec"]["tls"][0]["secretName"] == "portal-tls"
        assert (
            ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
        )
    [path] = webhook["spec"]["rules"][0]["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/github", "Exact")
    assert webhook["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    assert site["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "64k"


def test_every_setting_in_the_readme_has_its_place_in_the_configmap_or_the_secret():
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    settings = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.MULTILINE))
    settings |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", "\n".join(re.findall(r"^\|[^|]*\|", section, re.M))))
    assert {"GH_TOKEN", "DATABASE_URL", "DJANGO_SECRET_KEY", "HEALTH_TOKEN"} <= settings
    named = (BASE / "configmap.yaml").read_text() + (BASE / "secret.example.env").read_text()
    # Sandbox-only settings have no place in a cluster.
    missing = sorted(s for s in settings - {"PORTAL_SANDBOX"} if not re.search(rf"\b{s}\b", named))
    assert missing == []
    secret_keys = re.findall(r"^([A-Z_]+)=", (BASE / "secret.example.env").read_text(), flags=re.MULTILINE)
    assert "DJANGO_SECRET_KEY" in secret_keys and "DATABASE_URL" in secret_keys
    config = yaml.safe_load((BASE / "configmap.yaml").read_text())["data"]
    assert not [key for key in config if re.search(r"SECRET|TOKEN|PASSWORD|PRIVATE_KEY|DATABASE_URL", key)]


def test_checkov_passes_on_the_manifests_and_the_dockerfile(tmp_path):
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(kustomize(OVERLAY)))
    # The rendered overlay holds every manifest of the base, in its namespace, as it is applied.
    files = [rendered, ROOT / "Dockerfile"]
    command = [checkov(), "--quiet", "--compact", "--output", "json", "--skip-download"]
    command += ["--framework", "kubernetes", "dockerfile"]
    for path in files:
        command += ["--file", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    reports = json.loads(result.stdout or "[]")
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    skipped = sum(r.get("summary", {}).get("skipped", 0) for r in reports)
    report(
        "checkov on deploy/kubernetes (the rendered overlay) and the Dockerfile: "
        f"{passed} passed, {len(failed)} failed, {skipped} skipped"
    )
    assert failed == [], "\n".join(failed)
    assert passed > 50


@pytest.mark.container
def test_the_deployment_runs_under_podman_kube_play(portal, postgres, emulator, tmp_path):
    """The base's Deployment as podman runs Kubernetes YAML: its securityContext, envFrom (the
    ConfigMap, and the Secret's keys from a test ConfigMap), the /tmp volume and probes."""
    kinds = by_kind(kustomize(BASE))
    [deployment], [config] = kinds["Deployment"], kinds["ConfigMap"]
    port = free_port()
    config["data"].update(
        {
            "PORT": str(port),
            "DJANGO_ALLOWED_HOSTS": f"{HOST},localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "GH_REPO": "demo/pods",
            "GITHUB_API_URL": emulator.api_url,
        }
    )
    secrets_for_test = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "portal-secrets"},
        "data": {
            "DJANGO_SECRET_KEY": uuid.uuid4().hex * 2,
            "DATABASE_URL": postgres.url,
            "GH_TOKEN": "container-tier-token",
            "GITHUB_WEBHOOK_SECRET": uuid.uuid4().hex,
        },
    }
    pod_spec = deployment["spec"]["template"]["spec"]
    [container] = pod_spec["containers"]
    container["image"] = portal.image
    container["imagePullPolicy"] = "Never"
    container["envFrom"][1] = {"configMapRef": {"name": "portal-secrets"}}
    del container["ports"]  # the host's network: no port mapping
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        container[probe]["httpGet"]["port"] = port
    deployment["spec"]["replicas"] = 1
    play = tmp_path / "portal.yaml"
    play.write_text(yaml.safe_dump_all([config, secrets_for_test, deployment]))
    flags = podman_flags()
    runtime = flags[flags.index("--runtime") : flags.index("--runtime") + 2] if "--runtime" in flags else []
    # kube play takes no --ulimit: the same limits as podman_flags.sh, as podman's defaults here.
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
    kube = ["env", f"CONTAINERS_CONF={conf}", "podman", *runtime, "kube"]
    played = subprocess.run(
        [*kube, "play", "--network", "host", str(play)], capture_output=True, text=True, timeout=180
    )
    try:
        assert played.returncode == 0, played.stderr
        name = "portal-web-pod-0-web"  # podman's name for the Deployment's first pod's container
        wait_for(
            lambda: Browser(port).get("/health/live", timeout=2).status == 200,
            what="the kube play pod",
            container=name,
        )
        assert Browser(port).get("/health").status == 200
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name).stdout.strip() == "true"
        written = podman("exec", name, "sh", "-c", ": > /app/x", check=False)
        assert written.returncode != 0
        report("podman kube play of the base Deployment: /health 200, uid 10001, read-only root")
    finally:
        subprocess.run([*kube, "down", str(play)], capture_output=True, timeout=120)
