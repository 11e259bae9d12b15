"""POST /webhooks/github: GitHub's workflow_run events move requests along.

The signature (``X-Hub-Signature-256``, HMAC-SHA256 of the raw body with
GITHUB_WEBHOOK_SECRET) is checked before the body is parsed. Each ``X-GitHub-Delivery`` is
processed once; events arriving out of order never move a request backwards.
"""

import hashlib
import hmac
import json
import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import gh, selectors, services, steps
from .lifecycle import Source
from .models import WebhookDelivery

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


def signature_is_valid(*, secret: str, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # Compared as bytes: compare_digest refuses non-ASCII text, which a forged header may carry.
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "replace"))


def _answer(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


@csrf_exempt
@login_not_required
@require_POST
def github_webhook(request: HttpRequest) -> JsonResponse:
    secret = settings.GITHUB_WEBHOOK_SECRET
    if not secret:
        return _answer(503, "Webhooks are not configured: set GITHUB_WEBHOOK_SECRET on the portal.")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return _answer(413, "Payload too large.")
    body = request.body
    if not signature_is_valid(
        secret=secret, body=body, header=request.headers.get("X-Hub-Signature-256", "")
    ):
        return _answer(401, "Missing or invalid X-Hub-Signature-256.")
    event = request.headers.get("X-GitHub-Event", "")
    delivery = request.headers.get("X-GitHub-Delivery", "")
    if event == "ping":
        return _answer(200, "pong")
    if event != "workflow_run":
        return _answer(202, f"Event '{event}' ignored.")
    try:
        payload = json.loads(body)
        run = gh.run_state_from_payload(payload["workflow_run"])
    except (ValueError, KeyError, TypeError, RecursionError):
        return _answer(400, "Not a workflow_run payload.")
    foreign = gh.foreign_run_reason(run)
    if foreign:
        logger.warning("webhook %s ignored: %s (run %s)", delivery[:64], foreign, run.run_id)
        return _answer(202, f"Ignored: {foreign}.")
    # The run changed: its steps are read now, before the change is committed, so a page that
    # sees the change sees its steps (one conditional request per version of the run, whoever asks).
    following = selectors.request_for_run(run)
    steps_changed = following is not None and steps.follow_run(run)
    with transaction.atomic():
        if delivery:
            try:
                with transaction.atomic():
                    WebhookDelivery.objects.create(delivery_id=delivery[:64], event=event)
            except IntegrityError:
                return _answer(200, "Delivery already processed.")
        request_row = selectors.request_for_run(run)
        if request_row is None:
            return _answer(202, "Run does not belong to a portal request.")
        changed = services.deployment_request_apply_run(
            request=request_row, run=run, source=Source.WEBHOOK, data={"delivery": delivery[:64]}
        )
        if steps_changed and not changed:
            steps.touch(request_row.pk)
    return _answer(200, "Request updated." if changed else "No change.")
