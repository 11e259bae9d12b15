"""Signed ``workflow_run`` webhook deliveries, and the thread that posts them one at a time."""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import threading
import uuid
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPSConnection
from urllib.parse import urlsplit


@dataclass
class Delivery:
    event: str
    action: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


def workflow_run_delivery(action: str, payload: dict, secret: str | None) -> Delivery:
    """The delivery GitHub makes for this event, signed with ``secret`` when there is one."""
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/fake",
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
    }
    if secret:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    return Delivery(event="workflow_run", action=action, headers=headers, body=body)


class Sender:
    """An outbox drained by ``run()`` on its own thread, so a slow receiver never holds up a run."""

    def __init__(self) -> None:
        self._outbox: queue.Queue = queue.Queue()

    def send(self, url: str, delivery: Delivery) -> None:
        self._outbox.put((url, delivery))

    def stop(self) -> None:
        self._outbox.put(None)

    def run(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            url, delivery = item
            try:
                post(url, delivery)
            except Exception as exc:  # never let a bad receiver kill the sender
                delivery.error = repr(exc)
            finally:
                delivery.done.set()


def post(url: str, delivery: Delivery) -> None:
    """POST the delivery to ``url``; its ``status`` records the receiver's answer."""
    # http.client keeps header names as GitHub spells them (urllib would not).
    parts = urlsplit(url)
    connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
    connection = connection_class(parts.netloc, timeout=5)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=delivery.body, headers=delivery.headers)
        response = connection.getresponse()
        response.read()
        delivery.status = response.status
    finally:
        connection.close()
