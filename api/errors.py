"""Every API error is JSON: ``{"error_type", "title", "message"}`` (+ ``errors`` per field,
``request`` when it concerns one), with the seed's error types and the pages' HTTP statuses."""

import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from deployments import gh

logger = logging.getLogger(__name__)


def error_response(status_code: int, error_type: str, title: str, message: str, **extra) -> Response:
    return Response(
        {"error_type": error_type, "title": title, "message": message, **extra}, status=status_code
    )


def request_ref(deployment) -> dict:
    return {"id": deployment.pk, "status": deployment.status, "url": f"/api/v1/requests/{deployment.pk}/"}


def exception_handler(exc, context):
    if isinstance(exc, gh.GitHubError):
        extra = {}
        deployment = exc.context.get("deployment")
        if deployment is not None:
            extra["request"] = request_ref(deployment)
        if isinstance(exc, gh.GitHubRateLimitError) and exc.reset_at:
            extra["rate_limit_reset_at"] = exc.reset_at.isoformat()
        return error_response(exc.http_status, exc.error_type, exc.title, exc.message, **extra)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(exc.args[0] if exc.args and isinstance(exc.args[0], str) else "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or "You may not do this.")
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response = error_response(401, "forbidden", "Authentication Required", _detail(exc))
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if isinstance(exc, exceptions.PermissionDenied):
        return error_response(403, "forbidden", "Permission Denied", _detail(exc))
    if isinstance(exc, exceptions.NotFound):
        return error_response(404, "not_found", "Not Found", _detail(exc))
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        return error_response(
            400, "validation", "Invalid Request", "The request has invalid values.", errors=detail
        )
    if isinstance(exc, exceptions.Throttled):
        return error_response(429, "service_unavailable", "Too Many Requests", _detail(exc))
    if isinstance(exc, exceptions.APIException):
        error_type = "validation" if exc.status_code < 500 else "server_error"
        return error_response(exc.status_code, error_type, "Request Failed", _detail(exc))
    logger.exception("API request failed unexpectedly")
    return error_response(
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "server_error",
        "Server Error",
        "Unexpected error. The details are in the portal's log.",
    )


def _detail(exc: exceptions.APIException) -> str:
    return str(exc.detail)
