"""/api/v1/: the deploy form's and the request page's actions for scripts, bots and CI.

Every write goes through the same service functions as the pages (deployments.services), with
``source=Source.API`` and the token's user as the actor, so the lock, the idempotency, the
review rules and the audit events are the pages'. The input rules are the deploy form's.
"""

import logging
import uuid

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from deployments import inventory, podspec, selectors, services
from deployments.forms import DeploymentForm
from deployments.lifecycle import Source
from deployments.models import DeploymentEvent, DeploymentRequest
from deployments.views import DEPLOY_PERMISSION, MAX_COMMENT_CHARS

from .errors import error_response, request_ref
from .serializers import (
    DeploymentInputSerializer,
    ErrorSerializer,
    PodListSerializer,
    PodSerializer,
    RequestListSerializer,
    RequestSerializer,
    RequestSummarySerializer,
    ReviewInputSerializer,
)

logger = logging.getLogger(__name__)

NOT_A_DEPLOYER = (
    "You may browse pods but not deploy them. Ask an administrator to add you to the Deployers group."
)
ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in {
        400: "validation: invalid values (per field in `errors`)",
        401: "forbidden: no valid token",
        403: "forbidden: the token's user may not do this",
        404: "not_found",
        409: "conflict: the pod is locked by another request, or the key was used for other values",
        422: "validation: GitHub refused the workflow inputs",
        503: "service_unavailable or api_error: GitHub is unreachable, rate-limited or failing",
    }.items()
}
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="A UUID chosen by the client. A retried call with the same key and values answers the "
    "first request (200) and deploys once; the same key with other values is a 409.",
)


def _detail(pk: int) -> DeploymentRequest:
    deployment = (
        DeploymentRequest.objects.select_related("requested_by", "reviewed_by", "applied_by")
        .prefetch_related(Prefetch("events", queryset=DeploymentEvent.objects.select_related("actor")))
        .filter(pk=pk)
        .first()
    )
    if deployment is None:
        raise NotFound(f"Request #{pk} does not exist.")
    return deployment


def _answer(request, deployment: DeploymentRequest, *, status_code: int = 200, **headers) -> Response:
    response = Response(
        RequestSerializer(_detail(deployment.pk), context={"request": request}).data, status_code
    )
    for name, value in headers.items():
        response[name] = value
    return response


def _conflict(title: str, message: str, **extra) -> Response:
    return error_response(409, "conflict", title, message, **extra)


def _idempotency_key(request) -> uuid.UUID:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return uuid.uuid4()  # no retry safety asked for: every call is a new request
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise ValidationError({"Idempotency-Key": ["Must be a UUID."]}) from None


class PodList(APIView):
    @extend_schema(
        operation_id="pods_list", responses={200: PodListSerializer, 401: ERRORS[401], 503: ERRORS[503]}
    )
    def get(self, request):
        """Every pod of the inventory with its last deployment request."""
        listing = inventory.listing()
        return Response(PodListSerializer.build(listing, activity=selectors.pod_activity(), request=request))


class PodDetail(APIView):
    @extend_schema(
        operation_id="pods_retrieve", responses={200: PodSerializer, 401: ERRORS[401], 404: ERRORS[404]}
    )
    def get(self, request, customer: str, environment: str):
        """One pod: its spec and its last deployment request."""
        pod = inventory.get_pod(customer, environment)
        if pod is None:
            raise NotFound(f"Pod {customer}/{environment} does not exist.")
        activity = {pod.key: latest} if (latest := _latest(pod)) else {}
        return Response(PodSerializer(pod, context={"request": request, "activity": activity}).data)


def _latest(pod: inventory.Pod) -> DeploymentRequest | None:
    return (
        DeploymentRequest.objects.filter(customer=pod.customer, environment=pod.environment)
        .select_related("requested_by")
        .order_by("-id")
        .first()
    )


MAX_LIST = 200


class RequestCreate(APIView):
    @extend_schema(
        operation_id="requests_list",
        parameters=[
            OpenApiParameter("pod", str, description="A customer, or customer/environment."),
            OpenApiParameter("status", str, description="e.g. dispatched, awaiting_approval, completed."),
            OpenApiParameter("user", str, description="The requester's username."),
            OpenApiParameter(
                "limit", int, description=f"At most this many, newest first (1–{MAX_LIST}; 50)."
            ),
        ],
        responses={200: RequestListSerializer, 400: ERRORS[400], 401: ERRORS[401]},
    )
    def get(self, request):
        """Deployment requests, newest first, filtered as on the history page."""
        filters = {name: request.query_params.get(name, "").strip() for name in ("pod", "status", "user")}
        try:
            limit = int(request.query_params.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST:
            raise ValidationError({"limit": [f"A whole number from 1 to {MAX_LIST}."]})
        requests = selectors.requests_filtered(**filters)[:limit]
        data = RequestSummarySerializer(requests, many=True, context={"request": request}).data
        return Response({"requests": data})

    @extend_schema(
        operation_id="requests_create",
        parameters=[IDEMPOTENCY_KEY],
        request=DeploymentInputSerializer,
        responses={
            201: OpenApiResponse(RequestSerializer, description="Created and dispatched"),
            200: OpenApiResponse(RequestSerializer, description="A retry: the request made by this key"),
            **{code: ERRORS[code] for code in (400, 401, 403, 404, 409, 422, 503)},
        },
    )
    def post(self, request):
        """Request a deployment, as the deploy form does: validated by the same rules, the pod
        locked, then the workflow dispatched (plan first for reviewed pods)."""
        if not request.user.has_perm(DEPLOY_PERMISSION):
            raise PermissionDenied(NOT_A_DEPLOYER)
        key = _idempotency_key(request)
        body = DeploymentInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        existing = selectors.request_by_key(key)
        if existing is not None and existing.requested_by_id != request.user.pk:
            return _conflict(
                "Idempotency Key Already Used", "This Idempotency-Key belongs to another request."
            )
        current = None
        if existing is None:
            # As the form: the pod's spec checked against GitHub now (a free 304 when unchanged).
            listing = inventory.listing(fresh=True)
            pod_key = f"{values['customer']}/{values['environment']}"
            mode = values.get("mode") or ("edit" if pod_key in listing.by_key else "new")
            form = DeploymentForm({**values, "mode": mode, "idempotency_key": str(key)}, listing=listing)
            if not form.is_valid():
                return self._invalid(form)
            spec, current, expected_sha = form.spec, form.pod, form.expected_sha
        else:
            # A retry: the service answers the first request, or refuses other values.
            mode, expected_sha = existing.mode, None
            spec = podspec.PodSpec(**{field: values[field] for field in podspec.FIELDS})
        try:
            deployment, created = services.deployment_request_create(
                user=request.user,
                spec=spec,
                mode=mode,
                current=current,
                idempotency_key=key,
                source=Source.API,
                expected_spec_sha=expected_sha,
            )
        except services.SpecChanged as exc:
            return _conflict(
                "Spec Changed",
                f"spec.yml of {spec.pod} changed since the version you read ({exc.expected}); "
                "read the pod again and send your values against the new version.",
                expected_spec_sha=exc.expected,
                current_spec_sha=exc.current.sha if exc.current else None,
            )
        except services.NothingToDeploy as exc:
            return error_response(400, "validation", "Nothing to Deploy", str(exc))
        except services.AlreadySubmitted as exc:
            return _conflict(
                "Idempotency Key Already Used",
                "This Idempotency-Key was already used for a deployment with other values.",
                request=request_ref(exc.request),
            )
        except services.PodLocked as exc:
            extra = {"holder": request_ref(exc.holder)} if exc.holder else {}
            return _conflict(
                "Deployment in progress",
                f"Pod {spec.pod} already has a deployment in progress. Wait for it to finish.",
                **extra,
            )
        if not created:
            return _answer(request, deployment, **{"Idempotent-Replayed": "true"})
        logger.info(
            "API deployment request %s by %s (token %s)",
            deployment.pk,
            request.user,
            getattr(request.auth, "pk", None),
            extra={"deployment_request": deployment.pk, "api_token": getattr(request.auth, "pk", None)},
        )
        deployment = services.deployment_request_dispatch(
            request=deployment, actor=request.user, source=Source.API
        )
        response = _answer(request, deployment, status_code=status.HTTP_201_CREATED)
        response["Location"] = f"/api/v1/requests/{deployment.pk}/"
        return response

    @staticmethod
    def _invalid(form: DeploymentForm) -> Response:
        if form.has_error("__all__", "duplicate_pod"):
            return _conflict("Pod Already Exists", str(form.non_field_errors()[0]))
        if form.has_error("__all__", "unknown_pod"):
            raise NotFound(form.non_field_errors()[0])
        errors = {field: [str(e) for e in messages] for field, messages in form.errors.items()}
        if "__all__" in errors:
            errors["non_field_errors"] = errors.pop("__all__")
        raise ValidationError(errors)


class RequestDetail(APIView):
    @extend_schema(
        operation_id="requests_retrieve",
        responses={200: RequestSerializer, 401: ERRORS[401], 404: ERRORS[404]},
    )
    def get(self, request, pk: int):
        """A request: status, run URLs, plan summary and events (catching up with GitHub as the page does)."""
        deployment = _detail(pk)
        services.deployment_request_expire_if_due(request=deployment)
        services.deployment_request_find_run(request=deployment)
        if deployment.plan_run_id and deployment.plan_summary is None:
            services.deployment_request_fetch_plan(request=deployment)
        return _answer(request, deployment)


class _Review(APIView):
    """Apply, approve, reject or cancel: the request page's buttons."""

    service = staticmethod(services.deployment_request_apply)
    takes_comment = False

    def post(self, request, pk: int):
        deployment = _detail(pk)
        if not request.user.has_perm(DEPLOY_PERMISSION):
            raise PermissionDenied(NOT_A_DEPLOYER)
        kwargs = {}
        if self.takes_comment:
            body = ReviewInputSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            kwargs["comment"] = body.validated_data["comment"].strip()[:MAX_COMMENT_CHARS]
        try:
            deployment = self.service(request=deployment, actor=request.user, source=Source.API, **kwargs)
        except services.ReviewRefused as exc:
            error_type = {400: "validation", 403: "forbidden"}.get(exc.status, "conflict")
            return error_response(
                exc.status, error_type, exc.title, exc.message, request=request_ref(deployment)
            )
        return _answer(request, deployment)


REVIEW_RESPONSES = {
    200: RequestSerializer,
    **{code: ERRORS[code] for code in (400, 401, 403, 404, 409, 422, 503)},
}


class RequestApply(_Review):
    service = staticmethod(services.deployment_request_apply)

    @extend_schema(operation_id="requests_apply", request=None, responses=REVIEW_RESPONSES)
    def post(self, request, pk: int):
        """Apply a planned request's plan (its requester or an Approver; not when approval is required)."""
        return super().post(request, pk)


class RequestApprove(_Review):
    service = staticmethod(services.deployment_request_approve)
    takes_comment = True

    @extend_schema(operation_id="requests_approve", request=ReviewInputSerializer, responses=REVIEW_RESPONSES)
    def post(self, request, pk: int):
        """Approve a plan awaiting approval and dispatch its apply (an Approver other than the requester)."""
        return super().post(request, pk)


class RequestReject(_Review):
    service = staticmethod(services.deployment_request_reject)
    takes_comment = True

    @extend_schema(operation_id="requests_reject", request=ReviewInputSerializer, responses=REVIEW_RESPONSES)
    def post(self, request, pk: int):
        """Reject a plan awaiting approval; the comment (why) is required."""
        return super().post(request, pk)


class RequestCancel(_Review):
    service = staticmethod(services.deployment_request_cancel)

    @extend_schema(operation_id="requests_cancel", request=None, responses=REVIEW_RESPONSES)
    def post(self, request, pk: int):
        """Withdraw a request before its apply starts (its requester, an Approver or staff)."""
        return super().post(request, pk)
