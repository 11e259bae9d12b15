from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.functional import SimpleLazyObject
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import gh, health, inventory, podspec, services
from .forms import DeploymentForm
from .models import DeploymentRequest

DEPLOY_PERMISSION = "deployments.add_deploymentrequest"
# Rendering is the cost of the pods page; a page of rows keeps it small at any number of pods.
PODS_PER_PAGE = 100


def portal_context(request: HttpRequest) -> dict:
    return {"sandbox": settings.PORTAL_SANDBOX, "gh_repo": settings.GH_REPO}


def error_page(request, *, status: int, error_type: str, title: str, message: str, **extra) -> HttpResponse:
    context = {"error_type": error_type, "error_title": title, "error_message": message, **extra}
    return render(request, "error.html", context, status=status)


def github_error_page(request, exc: gh.GitHubError, **extra) -> HttpResponse:
    if isinstance(exc, gh.GitHubRateLimitError):
        extra |= {"rate_limit": {"remaining": exc.remaining, "limit": exc.limit, "reset_at": exc.reset_at}}
    return error_page(
        request,
        status=exc.http_status,
        error_type=exc.error_type,
        title=exc.title,
        message=exc.message,
        **extra,
    )


@require_GET
def pod_list(request):
    try:
        listing = inventory.listing()
    except gh.GitHubError as exc:
        return github_error_page(request, exc)
    query = request.GET.get("q", "").strip().lower()
    pods = listing.pods
    if query:
        pods = [p for p in pods if query in f"{p.key} {p.spec.instance_name if p.spec else ''}".lower()]
    page = Paginator(pods, PODS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "pods": pods,
        "query": query,
        "truncated": listing.truncated,
        # The rendered rows are reused until the specs or any request change (or a minute passes).
        "rows_version": f"{listing.version}:{_activity_stamp()}:{query}:{page.number}",
        "activity": SimpleLazyObject(_pod_activity),
    }
    return render(request, "deployments/pod_list.html", context)


def _activity_stamp() -> str:
    """Changes whenever a deployment request is created or updated."""
    stamp = DeploymentRequest.objects.aggregate(latest=Max("updated_at"), count=Count("id"))
    return f"{stamp['count']}:{stamp['latest'].timestamp() if stamp['latest'] else 0}"


def _pod_activity() -> dict[str, DeploymentRequest]:
    """Per pod: its latest request and whether it is active. Two queries for any number of pods."""
    latest_ids = (
        DeploymentRequest.objects.values("customer", "environment").annotate(last=Max("id")).values("last")
    )
    return {r.pod: r for r in DeploymentRequest.objects.filter(id__in=latest_ids)}


@require_GET
def pod_new(request):
    form = DeploymentForm(initial={"mode": "new"})
    return render(request, "deployments/pod_form.html", {"form": form, "mode": "new"})


@require_GET
def pod_edit(request, customer: str, environment: str):
    try:
        pod = inventory.get_pod(customer, environment)
    except gh.GitHubError as exc:
        return github_error_page(request, exc)
    if pod is None:
        return _unknown_pod(request, f"Pod {customer}/{environment} does not exist.")
    form = DeploymentForm.for_pod(pod)
    return render(request, "deployments/pod_form.html", {"form": form, "mode": "edit", "pod": pod})


def _unknown_pod(request, message: str) -> HttpResponse:
    return error_page(
        request, status=404, error_type="not_found", title="Pod Not Found", message=message, show_pods=True
    )


def _conflict(request, title: str, message: str, **extra) -> HttpResponse:
    return error_page(request, status=409, error_type="conflict", title=title, message=message, **extra)


def _invalid_form(request, form: DeploymentForm) -> HttpResponse:
    if form.has_error("__all__", "duplicate_pod"):
        return _conflict(
            request,
            "Pod Already Exists",
            form.non_field_errors()[0],
            show_pods=True,
            pods=inventory.list_pods(revalidate=False),
        )
    if form.has_error("__all__", "unknown_pod"):
        return _unknown_pod(request, form.non_field_errors()[0])
    mode = form.data.get("mode") if form.data.get("mode") in ("edit", "new") else "new"
    return render(request, "deployments/pod_form.html", {"form": form, "mode": mode}, status=400)


@require_POST
def deploy_preview(request):
    form = DeploymentForm(request.POST)
    try:
        if not form.is_valid():
            return _invalid_form(request, form)
    except gh.GitHubError as exc:
        return github_error_page(request, exc)
    spec = form.spec
    context = {
        "form": form,
        "spec": spec,
        "inputs": spec.workflow_inputs() | {"request_id": str(form.cleaned_data["idempotency_key"])},
        "diff": podspec.diff(
            form.spec_before,
            podspec.render(spec),
            path=podspec.spec_path(settings.SPECS_PATH, spec.customer, spec.environment),
        ),
        "unchanged": form.is_unchanged,
        "can_deploy": request.user.has_perm(DEPLOY_PERMISSION),
        "holder": services.active_request_for_pod(customer=spec.customer, environment=spec.environment),
    }
    return render(request, "deployments/preview.html", context)


@require_POST
def deploy(request):
    if not request.user.has_perm(DEPLOY_PERMISSION):
        return error_page(
            request,
            status=403,
            error_type="forbidden",
            title="Permission Denied",
            message="You may browse pods but not deploy them. Ask an administrator to add you to the "
            "Deployers group.",
        )
    # The preview just refreshed the inventory: trusting it keeps the dispatch the only GitHub call.
    form = DeploymentForm(request.POST, revalidate=False)
    try:
        if not form.is_valid():
            return _invalid_form(request, form)
    except gh.GitHubError as exc:
        return github_error_page(request, exc)
    key = form.cleaned_data["idempotency_key"]
    # A resubmitted form whose deployment already landed is "unchanged" now: it still leads to it.
    if form.is_unchanged and not DeploymentRequest.objects.filter(idempotency_key=key).exists():
        return error_page(
            request,
            status=400,
            error_type="validation",
            title="Nothing to Deploy",
            message=f"The values are the same as the current spec of {form.spec.pod}.",
        )
    try:
        deployment, created = services.deployment_request_create(
            user=request.user,
            spec=form.spec,
            mode=form.cleaned_data["mode"],
            spec_before=form.spec_before,
            idempotency_key=key,
        )
    except services.AlreadySubmitted as exc:
        message = "This form was already used for another deployment with other values. Open the pod again."
        return _conflict(request, "Form Already Submitted", message, deployment=exc.request)
    except services.PodLocked as exc:
        message = f"Pod {form.spec.pod} already has a deployment in progress. Wait for it to finish."
        return _conflict(request, "Deployment in progress", message, holder=exc.holder)
    if created:
        try:
            services.deployment_request_dispatch(request=deployment)
        except gh.GitHubError as exc:
            return github_error_page(request, exc, deployment=deployment)
    return redirect(deployment)


@require_GET
def request_list(request):
    requests = DeploymentRequest.objects.select_related("requested_by")
    filters = {
        "pod": request.GET.get("pod", "").strip(),
        "status": request.GET.get("status", "").strip(),
        "user": request.GET.get("user", "").strip(),
    }
    if "/" in filters["pod"]:
        customer, _, environment = filters["pod"].partition("/")
        requests = requests.filter(customer=customer, environment=environment)
    elif filters["pod"]:
        requests = requests.filter(customer=filters["pod"])
    if filters["status"]:
        requests = requests.filter(status=filters["status"])
    if filters["user"]:
        requests = requests.filter(requested_by__username=filters["user"])
    page = Paginator(requests, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "deployments/request_list.html",
        {"page": page, "filters": filters, "statuses": DeploymentRequest.Status.choices},
    )


@require_GET
def request_detail(request, pk: int):
    deployment = get_object_or_404(DeploymentRequest.objects.select_related("requested_by"), pk=pk)
    context = {
        "deployment": deployment,
        "diff": podspec.diff(
            deployment.spec_before or None,
            deployment.spec_after,
            path=podspec.spec_path(settings.SPECS_PATH, deployment.customer, deployment.environment),
        ),
        "actions_url": gh.actions_url(),
    }
    return render(request, "deployments/request_detail.html", context)


@login_not_required
@never_cache
@require_GET
def health_ready(request):
    body, healthy = health.readiness()
    return JsonResponse(body, status=200 if healthy else 503)


@login_not_required
@never_cache
@require_GET
def health_live(request):
    return JsonResponse({"status": "alive"})
