"""Structured logging: one JSON object per line in production, plain text when debugging.

Every record carries the request id (``X-Request-ID``, taken from the proxy or made here and
returned in the response) and the user, through a context variable set by
``RequestIdMiddleware``. Fields passed with ``extra=`` become JSON keys. Both formatters
redact the portal's secrets and anything shaped like a GitHub token from the final line, so a
secret that reaches a log message (say, in a DEBUG dump of a GitHub answer) is not written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from contextvars import ContextVar

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import empty

REQUEST_ID_HEADER = "X-Request-ID"
# A proxy's id is kept only when it is short and plain, so it cannot forge log lines.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_GITHUB_TOKEN = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})")
SECRET_SETTINGS = (
    "SECRET_KEY",
    "GH_TOKEN",
    "GITHUB_APP_PRIVATE_KEY",
    "GITHUB_WEBHOOK_SECRET",
    "NOTIFY_SIGNING_SECRET",
    "HEALTH_TOKEN",
)
REDACTED = "[redacted]"

_current_request: ContextVar[HttpRequest | None] = ContextVar("portal_request", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_CONTEXT_ATTRS = {"request_id", "user"}


class RequestIdMiddleware:
    """Give each request an id (the client's ``X-Request-ID`` or a new one) for its log lines."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        token = _current_request.set(request)
        try:
            response = self.get_response(request)
        finally:
            _current_request.reset(token)  # worker threads are reused: never leak into the next request
        response[REQUEST_ID_HEADER] = request_id
        return response


def _username(request: HttpRequest) -> str | None:
    # Only a user the request has already loaded: logging must never query the database.
    user = request.__dict__.get("user")
    if user is None:
        return None
    wrapped = getattr(user, "_wrapped", user)
    if wrapped is empty or not getattr(wrapped, "is_authenticated", False):
        return None
    return wrapped.get_username()


class RequestContextFilter(logging.Filter):
    """Put the current request's id and user on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # django.request logs 4xx/5xx after the middleware has returned, with the request attached.
        request = getattr(record, "request", None)
        if not isinstance(request, HttpRequest):
            request = _current_request.get()
        record.request_id = getattr(request, "request_id", None)
        record.user = _username(request) if request is not None else None
        return True


def _secret_values() -> list[str]:
    if not settings.configured:
        return []
    values = []
    for name in SECRET_SETTINGS:
        value = str(getattr(settings, name, "") or "")
        if len(value) >= 8:
            values.append(value)
            # A PEM key may be logged line by line: its long base64 lines are secret too.
            values.extend(line.strip() for line in value.splitlines() if len(line.strip()) >= 32)
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    return _GITHUB_TOKEN.sub(REDACTED, text)


class PlainFormatter(logging.Formatter):
    """Human-readable lines for development, with secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        for name in _CONTEXT_ATTRS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, user and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "user": getattr(record, "user", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in _CONTEXT_ATTRS and not key.startswith("_"):
                entry[key] = f"{value.method} {value.path}" if isinstance(value, HttpRequest) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, default=str))
