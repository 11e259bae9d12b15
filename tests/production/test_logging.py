"""Structured logs: JSON lines carrying the request id and user; the id round-trips in headers."""

import io
import json
import logging
import uuid

import pytest

from portal.logging import JsonFormatter, RequestContextFilter
from tests.helpers import EDIT_ACME_PROD, form
from tests.production.test_settings import PRODUCTION_ENV, run_manage


@pytest.fixture
def json_log():
    """The portal's JSON handler on the root logger; returns a function reading the lines so far."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def test_response_returns_the_clients_request_id(client):
    response = client.get("/health/live", HTTP_X_REQUEST_ID="lb-7f3a.42")
    assert response["X-Request-ID"] == "lb-7f3a.42"


@pytest.mark.parametrize("incoming", [None, "", "two words", "x" * 200, 'forged"}\n{"level": "INFO'])
def test_request_id_is_made_when_missing_or_unsafe(client, incoming):
    headers = {} if incoming is None else {"HTTP_X_REQUEST_ID": incoming}
    response = client.get("/health/live", **headers)
    assert uuid.UUID(hex=response["X-Request-ID"])


def test_deploy_logs_json_lines_with_request_id_and_user(gh, deployer_client, json_log):
    data = form(EDIT_ACME_PROD)
    deployer_client.post("/deploy/", data, HTTP_X_REQUEST_ID="req-deploy-1")
    lines = [line for line in json_log() if line["logger"] == "deployments.services"]
    created, dispatched = lines
    assert "created for acme/prod by dana" in created["message"]
    assert "dispatched: run" in dispatched["message"]
    for line in lines:
        assert line["request_id"] == "req-deploy-1"
        assert line["user"] == "dana"
        assert line["level"] == "INFO"
        assert line["time"].endswith("+00:00")


def test_failed_dispatch_is_logged_as_a_warning_with_the_github_outcome(gh, deployer_client, json_log):
    gh.add_fault("POST", r"/dispatches$", status=502)
    deployer_client.post("/deploy/", form(EDIT_ACME_PROD))
    [failed] = [line for line in json_log() if "dispatch failed" in line["message"]]
    assert failed["level"] == "WARNING"
    assert "(api_error)" in failed["message"]
    assert failed["user"] == "dana"
    assert failed["request_id"]


def test_error_responses_are_logged_with_their_request_id(gh, viewer_client, json_log):
    # Django logs 4xx/5xx after the middleware has returned: the id still reaches the line.
    response = viewer_client.get("/pods/nobody/prod/edit/", HTTP_X_REQUEST_ID="req-404")
    [line] = [line for line in json_log() if line["logger"] == "django.request"]
    assert response.status_code == 404
    assert (line["request_id"], line["user"], line["status_code"]) == ("req-404", "victor", 404)
    assert line["request"] == "GET /pods/nobody/prod/edit/"


def test_log_lines_outside_a_request_have_no_request_id(json_log):
    logging.getLogger("deployments.sync").info("synced %d runs", 3, extra={"pod": "acme/prod"})
    [line] = json_log()
    assert line["message"] == "synced 3 runs"
    assert (line["request_id"], line["user"], line["pod"]) == (None, None, "acme/prod")


def test_exceptions_are_one_json_line_with_the_traceback(json_log):
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("deployments").exception("unexpected failure")
    [line] = json_log()
    assert line["message"] == "unexpected failure"
    assert "ValueError: bad value" in line["exception"]


def test_github_tokens_are_redacted_from_log_lines(json_log):
    logging.getLogger("github").warning("answer: {'token': 'ghs_%s'}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8")
    [line] = json_log()
    assert line["message"] == "answer: {'token': '[redacted]'}"


def test_production_logs_are_json_and_development_logs_are_plain_text():
    code = "import logging; logging.getLogger('deployments').warning('hello')"
    production = run_manage("shell", "-c", code, env=PRODUCTION_ENV)
    development = run_manage("shell", "-c", code, env={"DJANGO_DEBUG": "true"})
    assert json.loads(production.stderr.strip())["message"] == "hello"
    assert development.stderr.strip().endswith("WARNING deployments [None None] hello")
