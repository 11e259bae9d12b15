"""`make run` (scripts/run_portal.py): debug mode in the sandbox only, never with real credentials;
the sandbox's users, port and notification receiver."""

import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from deployments import notify
from tests.helpers import make_request, make_user

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "run_portal.py"


def load_run_portal():
    spec = importlib.util.spec_from_file_location("run_portal", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run_portal():
    return load_run_portal()


def test_the_sandbox_runs_in_debug_mode(run_portal):
    env = run_portal.portal_environment({"PATH": "/usr/bin"})
    assert env["DJANGO_DEBUG"] == "true"


def test_the_sandbox_keeps_debug_mode_off_when_asked(run_portal):
    env = run_portal.portal_environment({"DJANGO_DEBUG": "false"})
    assert env["DJANGO_DEBUG"] == "false"


@pytest.mark.parametrize("credentials", [{"GH_TOKEN": "ghp_real"}, {"GITHUB_APP_ID": "12345"}])
def test_real_credentials_never_run_in_debug_mode(run_portal, credentials):
    assert run_portal.portal_environment(credentials)["DJANGO_DEBUG"] == "false"
    assert run_portal.portal_environment(credentials | {"DJANGO_DEBUG": "true"})["DJANGO_DEBUG"] == "false"


def test_real_credentials_get_production_settings_for_plain_http_on_loopback(run_portal):
    env = run_portal.portal_environment({"GH_TOKEN": "ghp_real"})
    assert len(env["DJANGO_SECRET_KEY"]) >= 50
    assert env["DJANGO_ALLOWED_HOSTS"] == "127.0.0.1,localhost"
    assert env["DJANGO_SECURE_SSL_REDIRECT"] == "false"
    assert env["DJANGO_SESSION_COOKIE_SECURE"] == "false"
    assert env["DJANGO_CSRF_COOKIE_SECURE"] == "false"


def test_real_credentials_keep_a_secret_key_that_is_set(run_portal):
    env = run_portal.portal_environment({"GH_TOKEN": "ghp_real", "DJANGO_SECRET_KEY": "kept"})
    assert env["DJANGO_SECRET_KEY"] == "kept"


def test_make_run_listens_on_port(monkeypatch):
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.delenv("SANDBOX_GITHUB_PORT", raising=False)
    monkeypatch.delenv("SANDBOX_NOTIFY_PORT", raising=False)
    module = load_run_portal()
    assert (module.PORTAL, module.EMULATOR_PORT, module.NOTIFY_PORT) == ("127.0.0.1:9100", 9101, 9102)
    assert module.portal_environment({})["PORTAL_URL"] == "http://127.0.0.1:9100"


def test_a_portal_url_that_is_set_is_kept(run_portal):
    env = run_portal.portal_environment({"PORTAL_URL": "https://deploy.example.com"})
    assert env["PORTAL_URL"] == "https://deploy.example.com"


@pytest.fixture
def sandbox_users(run_portal, db):
    run_portal.create_sandbox_users()
    return User.objects.in_bulk(["demo", "lead"], field_name="username")


@pytest.mark.parametrize("username", ["demo", "lead"])
def test_the_sandbox_users_sign_in_with_their_name_as_password(sandbox_users, client, username):
    response = client.post("/accounts/login/", {"username": username, "password": username})
    assert response.status_code == 302
    assert client.get("/").context["user"].username == username


def test_lead_approves_and_demo_only_deploys(sandbox_users):
    demo, lead = sandbox_users["demo"], sandbox_users["lead"]
    assert {g.name for g in demo.groups.all()} == {"Deployers"}
    assert {g.name for g in lead.groups.all()} == {"Deployers", "Approvers"}
    assert demo.has_perm("deployments.add_deploymentrequest")
    assert lead.has_perm("deployments.add_deploymentrequest")
    assert lead.has_perm("deployments.approve_deploymentrequest")
    assert not demo.has_perm("deployments.approve_deploymentrequest")
    assert not demo.is_superuser and not lead.is_superuser


def test_the_sandbox_users_read_the_audit_history_in_the_admin(sandbox_users, client):
    client.post("/accounts/login/", {"username": "demo", "password": "demo"})
    assert client.get("/admin/deployments/deploymentrequest/").status_code == 200


@pytest.fixture
def receiver(run_portal):
    lines = []
    env = {}
    receiver = run_portal.start_notification_receiver(env, port=0)
    receiver.out = lines.append
    receiver.lines = lines
    receiver.env = env
    yield receiver
    receiver.close()


def test_the_sandbox_prints_the_notifications_the_portal_sends(
    receiver, settings, db, django_capture_on_commit_callbacks
):
    settings.NOTIFY_URLS = [receiver.env["NOTIFY_URLS"]]
    settings.NOTIFY_SIGNING_SECRET = receiver.env["NOTIFY_SIGNING_SECRET"]
    settings.PORTAL_URL = "http://127.0.0.1:8000"
    request = make_request(make_user(username="demo", deployer=True), status="awaiting_approval")

    with django_capture_on_commit_callbacks(execute=True):
        notify.request_changed(request, "awaiting_approval")

    assert notify.flush(10)
    assert receiver.lines == [
        f"  NOTIFICATION (signature verified): acme/prod: request #{request.pk} awaits approval "
        f"(awaiting_approval) http://127.0.0.1:8000/requests/{request.pk}/"
    ]
    with urllib.request.urlopen(f"http://127.0.0.1:{receiver.port}/", timeout=5) as listing:
        assert [n["request"] for n in json.load(listing)] == [request.pk]


def test_the_sandbox_receiver_refuses_a_notification_signed_with_another_secret(receiver):
    body = json.dumps({"event": "succeeded", "title": "forged"}).encode()
    forged = urllib.request.Request(
        f"http://127.0.0.1:{receiver.port}/notifications",
        data=body,
        headers={"X-Portal-Signature-256": notify.sign("another-secret", body)},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=5)
    assert refused.value.code == 401
    assert receiver.lines == ["  NOTIFICATION REFUSED: its X-Portal-Signature-256 does not match"]


def test_the_sandbox_keeps_notify_urls_that_are_set(run_portal):
    env = {"NOTIFY_URLS": "slack://a/b/c"}
    assert run_portal.start_notification_receiver(env, port=0) is None
    assert env == {"NOTIFY_URLS": "slack://a/b/c"}
