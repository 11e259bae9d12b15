"""Notifications (deployments.notify): Slack, Microsoft Teams, e-mail and the signed JSON
webhook, each received by a real server on loopback; after the commit only; a notifier that
hangs or fails is logged and never delays or fails the caller; no secret reaches a log line."""

import hashlib
import hmac
import logging
import time

import pytest
from apprise.plugins.slack import NotifySlack
from django.db import transaction
from django.urls import reverse

from deployments import notify
from tests.helpers import make_request, make_user
from tests.receivers import HttpReceiver, SmtpReceiver

PORTAL_URL = "https://deploy.example.com"
SIGNING_SECRET = "notify-Signing-Secret-Pangolin-4444"
SLACK_TOKENS = ("T0SECRETAA", "B0SECRETBB", "slackSecretTokenWombat5555")
TEAMS_WORKFLOW, TEAMS_SIGNATURE = "teamsSecretWorkflow6666", "teamsSecretSignatureOkapi7777"
MAIL_PASSWORD = "mail-Secret-Password-Tapir-8888"


@pytest.fixture
def portal(settings, db):
    settings.PORTAL_URL = PORTAL_URL
    settings.NOTIFY_SIGNING_SECRET = SIGNING_SECRET
    settings.NOTIFY_TIMEOUT_SECONDS = 2
    settings.NOTIFY_URLS = []
    reverse("pod_list")  # the URLconf loads once per process, not per notification: not timed
    yield settings
    assert notify.flush(15), "a notification was still being sent after its test"


@pytest.fixture
def receivers():
    started = []

    def start(cls=HttpReceiver, **options):
        started.append(cls(**options))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


@pytest.fixture
def requester(db):
    return make_user(username="dana", deployer=True)


@pytest.fixture
def awaiting(requester):
    return make_request(requester, status="awaiting_approval")


def announce(request, event, callbacks):
    """What a service does: notify inside its transaction; the commit runs the callbacks."""
    with callbacks(execute=True):
        notify.request_changed(request, event)


def signed_url(receiver, path="/hooks/portal"):
    return f"hmac{'s' if receiver.scheme == 'https' else ''}://127.0.0.1:{receiver.port}{path}"


def test_it_posts_to_a_slack_incoming_webhook(
    portal, receivers, awaiting, monkeypatch, django_capture_on_commit_callbacks
):
    slack = receivers()
    # apprise's slack:// always posts to https://hooks.slack.com/services/<tokens>: its base
    # address is the one thing pointed at the loopback receiver; the plugin runs unchanged.
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{slack.url}/services")
    portal.NOTIFY_URLS = ["slack://{}/{}/{}".format(*SLACK_TOKENS)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    [post] = slack.wait_for(1)
    assert post.path == "/services/{}/{}/{}".format(*SLACK_TOKENS)
    [attachment] = post.json()["attachments"]
    assert attachment["title"] == f"acme/prod: request #{awaiting.pk} awaits approval"
    assert "dana asks to apply the plan" in attachment["text"]
    assert f"{PORTAL_URL}/requests/{awaiting.pk}/" in attachment["text"]


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=no: self-signed
def test_it_posts_to_a_microsoft_teams_workflow(
    portal, receivers, requester, tmp_path, django_capture_on_commit_callbacks
):
    # Teams' incoming webhooks are Power Automate workflows (apprise's workflows://, HTTPS
    # only, any host): a loopback HTTPS receiver with a self-signed certificate.
    teams = receivers(tls_dir=tmp_path)
    portal.NOTIFY_URLS = [f"workflows://127.0.0.1:{teams.port}/{TEAMS_WORKFLOW}/{TEAMS_SIGNATURE}?verify=no"]
    succeeded = make_request(requester, status="completed", conclusion="success")

    announce(succeeded, "succeeded", django_capture_on_commit_callbacks)

    [post] = teams.wait_for(1)
    assert post.path == f"/workflows/{TEAMS_WORKFLOW}/triggers/manual/paths/invoke"
    assert post.query["sig"] == [TEAMS_SIGNATURE]
    [card] = post.json()["attachments"]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    text = str(card["content"]["body"])
    assert f"acme/prod deployed: request #{succeeded.pk} succeeded" in text
    assert f"{PORTAL_URL}/requests/{succeeded.pk}/" in text


def test_the_signed_webhook_carries_the_request_and_a_signature_the_receiver_verifies(
    portal, receivers, requester, django_capture_on_commit_callbacks
):
    hook = receivers()
    portal.NOTIFY_URLS = [signed_url(hook)]
    failed = make_request(requester, status="completed", conclusion="failure")

    announce(failed, "failed", django_capture_on_commit_callbacks)

    [post] = hook.wait_for(1)
    expected = "sha256=" + hmac.new(SIGNING_SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["X-Portal-Signature-256"], expected)
    assert post.path == "/hooks/portal"
    assert post.headers["Content-Type"] == "application/json"
    assert post.headers["X-Portal-Event"] == "failed"
    assert post.json() | {"at": None} == {
        "event": "failed",
        "request": failed.pk,
        "request_id": str(failed.idempotency_key),
        "pod": "acme/prod",
        "customer": "acme",
        "environment": "prod",
        "status": "completed",
        "conclusion": "failure",
        "requester": "dana",
        "reviewer": None,
        "url": f"{PORTAL_URL}/requests/{failed.pk}/",
        "title": f"acme/prod: request #{failed.pk} failed",
        "message": f"Request #{failed.pk} by dana to deploy acme/prod failed (failure).",
        "at": None,
    }


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=no: self-signed
def test_the_signed_webhook_posts_over_https_with_hmacs(
    portal, receivers, awaiting, tmp_path, django_capture_on_commit_callbacks
):
    hook = receivers(tls_dir=tmp_path)
    portal.NOTIFY_URLS = [signed_url(hook) + "?verify=no"]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    [post] = hook.wait_for(1)
    assert (post.path, post.query) == ("/hooks/portal", {})  # verify=no is apprise's, not the receiver's
    assert post.json()["event"] == "awaiting_approval"
    assert post.headers["X-Portal-Signature-256"] == notify.sign(SIGNING_SECRET, post.body)


def test_each_signed_delivery_has_its_own_id(portal, receivers, awaiting, django_capture_on_commit_callbacks):
    hook = receivers()
    portal.NOTIFY_URLS = [signed_url(hook)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)
    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    first, second = hook.wait_for(2)
    assert first.headers["X-Portal-Delivery"] != second.headers["X-Portal-Delivery"]


def test_without_a_signing_secret_the_signed_webhook_sends_nothing(
    portal, receivers, awaiting, caplog, django_capture_on_commit_callbacks
):
    hook = receivers()
    portal.NOTIFY_SIGNING_SECRET = ""
    portal.NOTIFY_URLS = [signed_url(hook)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    assert notify.flush(10)
    assert hook.arrived.items == []
    assert "NOTIFY_SIGNING_SECRET is not set" in caplog.text
    assert "not sent by notifier 1 (Signed JSON webhook)" in caplog.text


def test_it_emails(portal, receivers, requester, django_capture_on_commit_callbacks):
    smtp = receivers(SmtpReceiver)
    portal.NOTIFY_URLS = [
        f"mailto://127.0.0.1:{smtp.port}?mode=insecure&from=portal@example.com&to=ops@example.com"
    ]
    expired = make_request(requester, status="expired")

    announce(expired, "expired", django_capture_on_commit_callbacks)

    [(sender, recipients, message)] = smtp.wait_for(1)
    assert recipients == ["<ops@example.com>"]
    assert message["Subject"] == f"acme/prod: the plan of request #{expired.pk} expired"
    text = message.get_body(("plain", "html")).get_content()
    assert f"The plan of request #{expired.pk} by dana for acme/prod was not applied in time" in text
    assert f"{PORTAL_URL}/requests/{expired.pk}/" in text


def test_a_rejection_names_the_reviewer_and_the_comment(
    portal, receivers, awaiting, django_capture_on_commit_callbacks
):
    hook = receivers()
    portal.NOTIFY_URLS = [signed_url(hook)]
    awaiting.reviewed_by = make_user(username="lee")
    awaiting.review_comment = "Not during the freeze."

    announce(awaiting, "rejected", django_capture_on_commit_callbacks)

    message = hook.wait_for(1)[0].json()
    assert message["reviewer"] == "lee"
    assert message["message"] == (
        f"lee rejected request #{awaiting.pk} by dana to deploy acme/prod. Comment: Not during the freeze."
    )


def test_every_notifier_gets_the_notification(
    portal, receivers, awaiting, django_capture_on_commit_callbacks
):
    first, second = receivers(), receivers()
    portal.NOTIFY_URLS = [signed_url(first), signed_url(second)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    assert first.wait_for(1)[0].body == second.wait_for(1)[0].body


def test_nothing_is_sent_when_the_transaction_rolls_back(
    portal, receivers, awaiting, django_capture_on_commit_callbacks
):
    hook = receivers()
    portal.NOTIFY_URLS = [signed_url(hook)]

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        notify.request_changed(awaiting, "awaiting_approval")
        raise RuntimeError("the service failed after notifying")

    assert callbacks == []
    assert notify.flush(10)
    assert hook.arrived.items == []


def test_nothing_is_sent_before_the_commit(portal, receivers, awaiting, django_capture_on_commit_callbacks):
    hook = receivers()
    portal.NOTIFY_URLS = [signed_url(hook)]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        notify.request_changed(awaiting, "awaiting_approval")
    assert notify.flush(10)
    assert hook.arrived.items == []

    callbacks[0]()
    assert hook.wait_for(1)[0].json()["event"] == "awaiting_approval"


def test_without_notify_urls_nothing_is_scheduled(portal, awaiting, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        notify.request_changed(awaiting, "awaiting_approval")
    assert callbacks == []


def test_an_unknown_event_is_logged_and_sends_nothing(
    portal, receivers, awaiting, caplog, django_capture_on_commit_callbacks
):
    hook = receivers()
    portal.NOTIFY_URLS = [signed_url(hook)]

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notify.request_changed(awaiting, "exploded")

    assert callbacks == []
    assert "Unknown notification event 'exploded'" in caplog.text


def test_a_hanging_notifier_neither_delays_the_caller_nor_holds_up_the_others(
    portal, receivers, awaiting, caplog, django_capture_on_commit_callbacks
):
    hung, healthy = receivers(hang=True), receivers()
    portal.NOTIFY_TIMEOUT_SECONDS = 0.5
    portal.NOTIFY_URLS = [signed_url(hung), signed_url(healthy)]

    started = time.perf_counter()
    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)
    elapsed = time.perf_counter() - started

    assert elapsed < 0.05, f"the caller waited {elapsed * 1000:.1f} ms"
    assert healthy.wait_for(1)[0].json()["event"] == "awaiting_approval"
    hung.arrived.wait_for(1, 10)
    assert notify.flush(10)
    assert "Signed webhook not reached: ReadTimeout" in caplog.text
    assert f"Notification awaiting_approval of request #{awaiting.pk} not sent by notifier 1" in caplog.text
    assert f"Notification awaiting_approval of request #{awaiting.pk} sent by notifier 2" in caplog.text


@pytest.mark.parametrize("status", [500, 302, 404])
def test_a_notifier_answering_an_error_is_logged_never_raised(
    portal, receivers, awaiting, caplog, status, django_capture_on_commit_callbacks
):
    hook = receivers(status=status)
    portal.NOTIFY_URLS = [signed_url(hook)]

    started = time.perf_counter()
    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)
    assert time.perf_counter() - started < 0.05

    hook.wait_for(1)
    assert notify.flush(10)
    assert f"Signed webhook answered HTTP {status}" in caplog.text
    assert "not sent by notifier 1 (Signed JSON webhook)" in caplog.text


def test_a_notifier_nobody_listens_on_is_logged(
    portal, receivers, awaiting, caplog, django_capture_on_commit_callbacks
):
    closed = receivers()
    closed.close()
    portal.NOTIFY_URLS = [signed_url(closed)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    assert notify.flush(10)
    assert "Signed webhook not reached: ConnectionError" in caplog.text


def test_a_url_apprise_does_not_know_is_logged_by_its_position(
    portal, receivers, awaiting, caplog, django_capture_on_commit_callbacks
):
    hook = receivers()
    portal.NOTIFY_URLS = ["nosuchservice://user:pw@example.com/x", signed_url(hook)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)

    hook.wait_for(1)
    assert notify.flush(10)
    assert "NOTIFY_URLS entry 1 (nosuchservice://) is not a notification URL apprise knows" in caplog.text


def test_when_every_sender_is_busy_further_notifications_are_dropped_and_logged(
    portal, receivers, awaiting, caplog, monkeypatch, django_capture_on_commit_callbacks
):
    hung = receivers(hang=True)
    monkeypatch.setattr(notify, "MAX_PENDING", 1)
    portal.NOTIFY_TIMEOUT_SECONDS = 0.5
    portal.NOTIFY_URLS = [signed_url(hung)]

    announce(awaiting, "awaiting_approval", django_capture_on_commit_callbacks)
    hung.arrived.wait_for(1, 10)
    announce(awaiting, "failed", django_capture_on_commit_callbacks)

    assert f"Notification failed of request #{awaiting.pk} to notifier 1 dropped" in caplog.text
    assert notify.flush(10)
    assert len(hung.arrived.items) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # verify=no: self-signed
def test_no_secret_reaches_the_logs(
    portal, receivers, awaiting, caplog, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    """Every notifier fails loudly, and apprise is asked to log everything it can."""
    failing, smtp_closed = receivers(status=500), receivers()
    smtp_closed.close()
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{failing.url}/services")
    # urllib3 stays at WARNING, as settings.LOGGING keeps it: its DEBUG lines name request paths.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="apprise")
    caplog.set_level(logging.DEBUG, logger="deployments")
    portal.NOTIFY_URLS = [
        "slack://{}/{}/{}".format(*SLACK_TOKENS),
        f"workflows://127.0.0.1:{failing.port}/{TEAMS_WORKFLOW}/{TEAMS_SIGNATURE}?verify=no",
        f"mailto://ops:{MAIL_PASSWORD}@127.0.0.1:{smtp_closed.port}?mode=insecure&from=portal@example.com",
        signed_url(failing),
        # Malformed: apprise would name the bad token while refusing the URL.
        f"slack://{SLACK_TOKENS[0]}/{SLACK_TOKENS[2]}!/x",
    ]

    announce(awaiting, "failed", django_capture_on_commit_callbacks)

    assert notify.flush(15)
    assert caplog.text.count("not sent by notifier") == 4
    assert "NOTIFY_URLS entry 5 (slack://) is not a notification URL apprise knows" in caplog.text
    secrets = [*SLACK_TOKENS, TEAMS_WORKFLOW, TEAMS_SIGNATURE, MAIL_PASSWORD, SIGNING_SECRET]
    assert [secret for secret in secrets if secret in caplog.text] == []
