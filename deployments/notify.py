"""Notifications: a request awaits approval, succeeded, failed, was rejected or expired.

Every URL in ``NOTIFY_URLS`` is an apprise URL: Slack (``slack://``), Microsoft Teams
(``workflows://``), e-mail (``mailto://``, ``mailtos://``), ``json://``, … and the portal's own
signed JSON webhook (``hmac://`` and ``hmacs://``, below). A notification is sent after the
database commit, by a small pool of background threads, each notifier with a timeout: a
notifier that is down, slow or refusing never fails or delays the deployment. The outcome is
logged by the notifier's position in ``NOTIFY_URLS`` and its service name, never by its URL
(URLs hold webhook tokens and passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import apprise
import requests
from apprise.decorators import notify as apprise_notify
from django.conf import settings
from django.db import transaction
from django.utils import timezone

if TYPE_CHECKING:
    from .models import DeploymentRequest

logger = logging.getLogger(__name__)

_quiet = threading.local()


def _apprise_records(record: logging.LogRecord) -> bool:
    # apprise logs each notifier's endpoint and payload at DEBUG, and the tokens of a URL it
    # cannot load; the portal logs which NOTIFY_URLS entry failed instead.
    return record.levelno >= logging.INFO and not getattr(_quiet, "loading", False)


logging.getLogger("apprise").addFilter(_apprise_records)

SIGNATURE_HEADER = "X-Portal-Signature-256"
EVENT_HEADER = "X-Portal-Event"
DELIVERY_HEADER = "X-Portal-Delivery"
SIGNED_SCHEMES = ("hmac", "hmacs")
# Background senders, and how many sends may wait for one before new ones are dropped (logged).
SENDERS = 4
MAX_PENDING = 200

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_EVENTS = {
    "awaiting_approval": apprise.NotifyType.INFO,
    "succeeded": apprise.NotifyType.SUCCESS,
    "failed": apprise.NotifyType.FAILURE,
    "rejected": apprise.NotifyType.WARNING,
    "expired": apprise.NotifyType.WARNING,
}
EVENTS = tuple(_EVENTS)


@dataclass(frozen=True)
class Notification:
    """What every notifier of one event is told: text for people, a JSON document for machines."""

    event: str
    request: int
    title: str
    body: str
    payload: dict[str, Any] = field(repr=False)


def request_changed(request: DeploymentRequest, event: str) -> None:
    """Notify ``NOTIFY_URLS`` that ``request`` reached ``event`` (one of ``EVENTS``).

    Sent once the current transaction commits (at once outside one; never if it rolls back), in
    the background. Never raises and never waits for a notifier; a no-op without NOTIFY_URLS.
    """
    try:
        if not settings.NOTIFY_URLS:
            return
        if event not in _EVENTS:
            logger.error("Unknown notification event %r: nothing sent", event[:40])
            return
        notification = _notification(request, event)
        transaction.on_commit(lambda: _submit(notification))
    except Exception:
        logger.exception("Notification of request #%s not scheduled", getattr(request, "pk", None))


def flush(timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the notifications being sent; True when none is left."""
    with _lock:
        pending = set(_pending)
    return not wait(pending, timeout).not_done


def _notification(request: DeploymentRequest, event: str) -> Notification:
    requester = request.requested_by.get_username()
    reviewer = request.reviewed_by.get_username() if request.reviewed_by else None
    number, pod = f"#{request.pk}", request.pod
    if event == "awaiting_approval":
        title = f"{pod}: request {number} awaits approval"
        line = (
            f"{requester} asks to apply the plan of request {number} to {pod}. "
            f"An Approver other than {requester} approves or rejects it."
        )
    elif event == "succeeded":
        title = f"{pod} deployed: request {number} succeeded"
        line = f"Request {number} by {requester} to deploy {pod} succeeded."
    elif event == "failed":
        outcome = request.get_conclusion_display() if request.conclusion else request.get_status_display()
        title = f"{pod}: request {number} failed"
        line = f"Request {number} by {requester} to deploy {pod} failed ({outcome.lower()})."
    elif event == "rejected":
        title = f"{pod}: request {number} rejected"
        line = f"{reviewer or 'An approver'} rejected request {number} by {requester} to deploy {pod}."
        if request.review_comment:
            line += f" Comment: {request.review_comment[:500]}"
    else:
        title = f"{pod}: the plan of request {number} expired"
        line = (
            f"The plan of request {number} by {requester} for {pod} was not applied in time. "
            "The pod is free again; plan again to deploy."
        )
    link = f"{settings.PORTAL_URL.rstrip('/')}{request.get_absolute_url()}" if settings.PORTAL_URL else ""
    payload = {
        "event": event,
        "request": request.pk,
        "request_id": request.request_id,
        "pod": pod,
        "customer": request.customer,
        "environment": request.environment,
        "status": request.status,
        "conclusion": request.conclusion or None,
        "requester": requester,
        "reviewer": reviewer,
        "url": link or None,
        "title": title,
        "message": line,
        "at": timezone.now().isoformat(),
    }
    return Notification(event, request.pk, title, f"{line}\n{link}" if link else line, payload)


_lock = threading.Lock()
_pending: set[Future[None]] = set()
_pool: ThreadPoolExecutor | None = None


def _submit(notification: Notification) -> None:
    """Queue one send per notifier: a slow one holds a sender, never the others' messages."""
    global _pool
    try:
        timeout = settings.NOTIFY_TIMEOUT_SECONDS
        for position, url in enumerate(settings.NOTIFY_URLS, start=1):
            with _lock:
                if len(_pending) >= MAX_PENDING:
                    logger.error(
                        "Notification %s of request #%s to notifier %d dropped: %d sends already waiting",
                        notification.event, notification.request, position, len(_pending),
                    )  # fmt: skip
                    continue
                if _pool is None:
                    _pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="notify")
                future = _pool.submit(_send, notification, url, position, timeout)
                _pending.add(future)
            future.add_done_callback(_forget)
    except Exception:
        logger.exception(
            "Notification %s of request #%s not queued", notification.event, notification.request
        )


def _forget(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def _send(notification: Notification, url: str, position: int, timeout: float) -> None:
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else "?"
    service = f"{scheme}://"
    sent = False
    try:
        asset = apprise.AppriseAsset(app_id="Pod Deployment Portal", app_url=settings.PORTAL_URL or None)
        _quiet.loading = True
        try:
            plugin = apprise.Apprise.instantiate(url, asset=asset)
        finally:
            _quiet.loading = False
        if plugin:
            service = plugin.service_name or service
            plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
            signed = scheme in SIGNED_SCHEMES
            # Plain text with a bare link. Declared as text, apprise would escape every dot for
            # a Markdown service (Slack, Teams); they take it as it is and link the address.
            markdown = plugin.notify_format == apprise.NotifyFormat.MARKDOWN
            sent = plugin.notify(
                body=json.dumps(notification.payload) if signed else notification.body,
                title="" if signed else notification.title,
                notify_type=_EVENTS[notification.event],
                body_format=apprise.NotifyFormat.MARKDOWN if markdown else apprise.NotifyFormat.TEXT,
            )
        else:
            logger.error(
                "NOTIFY_URLS entry %d (%s) is not a notification URL apprise knows", position, service
            )
            return
    except Exception as exc:  # a notifier must never take a sender down; the URL stays out of the log
        logger.error("Notifier %d (%s) raised %s", position, service, type(exc).__name__)
    extra = {"event": notification.event, "deployment_request": notification.request, "notifier": position}
    if sent:
        logger.info(
            "Notification %s of request #%s sent by notifier %d (%s)",
            notification.event, notification.request, position, service, extra=extra,
        )  # fmt: skip
    else:
        logger.warning(
            "Notification %s of request #%s not sent by notifier %d (%s)",
            notification.event, notification.request, position, service, extra=extra,
        )  # fmt: skip


def sign(secret: str, body: bytes) -> str:
    """The ``X-Portal-Signature-256`` value of ``body``: as GitHub signs its webhooks."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _post_signed(
    body: str, title: str, notify_type: str, *args: Any, meta: dict[str, Any], **kwargs: Any
) -> bool:
    """The signed JSON webhook: ``hmac://host[:port]/path`` posts to http, ``hmacs://`` to https
    (the path only: apprise keeps the query string for its own options, such as ``verify=no``).

    The body is the notification's JSON document, signed with NOTIFY_SIGNING_SECRET in
    ``X-Portal-Signature-256: sha256=<hex>`` (HMAC-SHA256 of the raw body, like GitHub's
    ``X-Hub-Signature-256``); ``X-Portal-Delivery`` is unique per delivery and not signed.
    Any 2xx answer is success; redirects are not followed.
    """
    secret = settings.NOTIFY_SIGNING_SECRET
    if not secret:
        logger.error("NOTIFY_SIGNING_SECRET is not set: signed webhooks send nothing")
        return False
    raw = body.encode()
    scheme = "https" if meta["schema"] == "hmacs" else "http"
    port = f":{meta['port']}" if meta.get("port") else ""
    url = f"{scheme}://{meta['host']}{port}{meta.get('fullpath') or '/'}"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "pod-deployment-portal",
        EVENT_HEADER: str(json.loads(body).get("event", "")),
        DELIVERY_HEADER: str(uuid.uuid4()),
        SIGNATURE_HEADER: sign(secret, raw),
    }
    timeout = settings.NOTIFY_TIMEOUT_SECONDS
    try:
        # stream=True: the answer's body is never read, whatever its size.
        with requests.post(
            url, data=raw, headers=headers, timeout=(timeout, timeout),
            verify=meta.get("verify", True), allow_redirects=False, stream=True,
        ) as response:  # fmt: skip
            if 200 <= response.status_code < 300:
                return True
            logger.warning("Signed webhook answered HTTP %d", response.status_code)
    except requests.RequestException as exc:
        logger.warning("Signed webhook not reached: %s", type(exc).__name__)
    return False


for _scheme in SIGNED_SCHEMES:
    apprise_notify(on=_scheme, name="Signed JSON webhook")(_post_signed)
