import hashlib
import time
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.middleware.csrf import get_token
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from . import gh, health, inventory, live, plan, podspec, selectors, services, steps
from .forms import DeploymentForm
from .gh import history as gh_history
from .models import DeploymentRequest

DEPLOY_PERMISSION = "deployments.add_deploymentrequest"
# Rendering is the cost of the pods page; a page of rows keeps it small at any number of pods.
PODS_PER_PAGE = 100


def portal_context(request: HttpRequest) -> dict:
    return {"sandbox": settings.PORTAL_SANDBOX, "gh_repo": settings.GH_REPO}


def error_page(request, *, status: int, error_type: str, title: str, message: str, **extra) -> HttpResponse:
    context = {"error_type": error_type, "error_title": title, "error_message": message, **extra}
    return render(request, "error.html", context, status=status)


def github_error_page(request, exc: gh.GitHubError) -> HttpResponse:
    """The page for a GitHub failure (``GitHubErrorMiddleware`` renders it for every view)."""
    extra = dict(exc.context)
    if isinstance(exc, gh.GitHubRateLimitError):
        extra["rate_limit"] = {"remaining": exc.remaining, "limit": exc.limit, "reset_at": exc.reset_at}
    return error_page(
        request,
        status=exc.http_status,
        error_type=exc.error_type,
        title=exc.title,
        message=exc.message,
        **extra,
    )


def page_not_found(request, exception: Exception) -> HttpResponse:
    """404 with the view's own message (``Http404("Pod x does not exist.")``), not the resolver's."""
    message = exception.args[0] if exception.args and isinstance(exception.args[0], str) else ""
    return render(request, "404.html", {"message": message}, status=404)


@require_GET
def pod_list(request):
    """The pods, a page at a time. A warm view reads the listing's version and the requests'
    stamp (one query) and reuses the page's content rendered for that pair; the per-pod work
    (the last deployment of each pod, the "running now" list) is done only when it changed."""
    stamp, meta = live.activity_stamp_and_entry(inventory.meta_key(), local=inventory.loaded_version())
    listing = inventory.listing(meta=meta)
    query = request.GET.get("q", "").strip().lower()
    pods = listing.search(query) if query else listing.pods  # memoised per listing and query
    page = Paginator(pods, PODS_PER_PAGE).get_page(request.GET.get("page"))
    running = SimpleLazyObject(live.running_now)
    minute = int(time.time() // 60)
    context = {
        "page": page,
        "pods": pods,
        "query": query,
        "truncated": listing.truncated,
        "incomplete": listing.incomplete,
        # The rendered content is reused until the specs or any request change, or the minute
        # does (the "ago" of the last deployments): the minute is in the version, so the page
        # reused whole and the fragment in it are never more than a minute old together.
        "content_version": f"{listing.version}:{stamp.etag}:{query}:{page.number}:{minute}",
        "activity": SimpleLazyObject(lambda: selectors.pod_activity(page.object_list)),
        "running": running,
        "stamp": stamp,
        "poll_seconds": SimpleLazyObject(lambda: live.pods_poll_seconds(list(running))),
    }
    return _render_reused(request, "deployments/pod_list.html", context, version=context["content_version"])


# A page is reused within the minute its version names, as its content fragment is.
PAGE_SECONDS = 60
# Put where the CSRF token goes in a reused page. Safe (not escaped) on purpose: escaped text,
# which is all a page shows of what people and repositories wrote, can never contain a "<".
_CSRF_SLOT = mark_safe("<csrf-token-slot>")  # noqa: S308 (a constant)


def _render_reused(request: HttpRequest, template: str, context: dict, *, version: str) -> HttpResponse:
    """``render``, reusing the page rendered for the same ``version`` of its content and the same
    person (the header shows their name, and the Admin link to staff) within PAGE_SECONDS, per
    process (the "pages" cache); each response gets its own CSRF token, as Django's
    ``{% csrf_token %}`` would give it. What the page shows must all be in ``version``."""
    user = request.user
    identity = "\0".join([template, version, str(user.pk), user.get_username(), str(user.is_staff)])
    key = "page:" + hashlib.sha256(identity.encode()).hexdigest()
    pages = caches["pages"]
    parts = pages.get(key)  # the page, cut where its CSRF token goes (searching 50 KB cost 13 µs)
    if parts is None:
        page = render(request, template, {**context, "csrf_token": _CSRF_SLOT}).content
        parts = page.split(_CSRF_SLOT.encode())
        pages.set(key, parts, PAGE_SECONDS)
    return HttpResponse(get_token(request).encode().join(parts))


@require_GET
def pod_new(request):
    form = DeploymentForm(initial={"mode": "new"})
    return render(request, "deployments/pod_form.html", {"form": form, "mode": "new"})


@require_GET
def pod_edit(request, customer: str, environment: str):
    pod = inventory.get_pod(customer, environment)
    if pod is None:
        raise Http404(f"Pod {customer}/{environment} does not exist.")
    form = DeploymentForm.for_pod(pod)
    return render(request, "deployments/pod_form.html", {"form": form, "mode": "edit", "pod": pod})


# The pod page lists this many of the pod's requests (the Requests page has them all).
POD_REQUESTS_SHOWN = 50


def _pod_or_404(customer: str, environment: str) -> inventory.Pod:
    pod = inventory.get_pod(customer, environment)
    if pod is None:
        raise Http404(f"Pod {customer}/{environment} does not exist.")
    return pod


@require_GET
def pod_detail(request, customer: str, environment: str):
    """The pod: its spec, its requests, the git history of its spec.yml and whether the spec in
    git is still the one the portal last deployed."""
    pod = _pod_or_404(customer, environment)
    path = podspec.spec_path(settings.SPECS_PATH, customer, environment)
    try:
        page = int(request.GET.get("page", "1"))
    except ValueError:
        page = 1
    try:
        history, history_error = gh_history.spec_commits(path, page=page), ""
    except gh.GitHubError as exc:
        history, history_error = None, exc.message
    requests = [
        (r, _redeploy_form(request, pod, r))
        for r in selectors.pod_requests(customer=customer, environment=environment)[:POD_REQUESTS_SHOWN]
    ]
    commits = selectors.label_commits(history.commits if history else ())
    context = {
        "pod": pod,
        "path": path,
        "active": selectors.active_request_for_pod(customer=customer, environment=environment),
        "requests": requests,
        "history": history,
        "history_error": history_error,
        "commits": commits,
        "drift": selectors.pod_drift(pod),
        "can_deploy": request.user.has_perm(DEPLOY_PERMISSION),
    }
    return render(request, "deployments/pod_detail.html", context)


def _redeploy_form(
    request, pod: inventory.Pod | None, deployment: DeploymentRequest
) -> DeploymentForm | None:
    """The preview form of ``deployment``'s values against the pod now ("Redeploy this spec"), or
    None when there is nothing to redeploy: its spec is the current one, or the user may not."""
    if not request.user.has_perm(DEPLOY_PERMISSION) or (pod and deployment.spec_after == pod.text):
        return None
    return DeploymentForm.for_values(pod, deployment.spec, redeploy_of=deployment)


# Bytes of a version's diff shown (two specs of at most MAX_SPEC_BYTES each give far less).
MAX_DIFF_CHARS = 20_000


@require_GET
def pod_diff(request, customer: str, environment: str):
    """Two versions of the pod's spec.yml, by commit (``to`` left out: the current spec), as a
    diff, and "Roll back to this version" for the older one."""
    pod = _pod_or_404(customer, environment)
    path = podspec.spec_path(settings.SPECS_PATH, customer, environment)
    current = gh_history.SpecVersion(commit="", blob_sha=pod.sha, text=pod.text)
    try:
        old = gh_history.spec_at(request.GET.get("from", ""), path)
        new = gh_history.spec_at(request.GET["to"], path) if "to" in request.GET else current
    except ValueError:
        return error_page(
            request,
            status=400,
            error_type="validation",
            title="Not a version",
            message="Choose two versions of spec.yml from the pod's history (from= and to= commit ids).",
        )
    specs = [_parsed(old.text), _parsed(new.text)]
    rollback = None
    if specs[0][0] and old.text != pod.text and request.user.has_perm(DEPLOY_PERMISSION):
        rollback = DeploymentForm.for_values(pod, specs[0][0], source_commit=old.commit)
    context = {
        "pod": f"{customer}/{environment}",
        "customer": customer,
        "environment": environment,
        "old": old,
        "new": new,
        "diff": podspec.diff(old.text, new.text or "", path=path)[:MAX_DIFF_CHARS],
        "specs": specs,
        "rollback": rollback,
    }
    return render(request, "deployments/pod_diff.html", context)


def _parsed(text: str | None) -> tuple[podspec.PodSpec | None, str]:
    """(the spec, "") or (None, why not): a past version from git is untrusted input."""
    if text is None:
        return None, "no spec.yml in this version"
    try:
        return podspec.parse(text, settings.ALLOWED_INSTANCE_TYPES), ""
    except podspec.SpecError as exc:
        return None, str(exc)


def _conflict(request, title: str, message: str, **extra) -> HttpResponse:
    return error_page(request, status=409, error_type="conflict", title=title, message=message, **extra)


def _form_again(request, form: DeploymentForm, *, status: int, **problem: Any) -> HttpResponse:
    """The operator's form again, with what they typed, and why it was refused."""
    mode = form.data.get("mode") if form.data.get("mode") in ("edit", "new") else "new"
    context: dict[str, Any] = {"form": form, "mode": mode}
    if problem:
        holder, existing = problem.pop("holder", None), problem.pop("existing", None)
        context |= {"problem": problem, "holder": holder, "existing": existing}
    return render(request, "deployments/pod_form.html", context, status=status)


def _invalid_form(request, form: DeploymentForm) -> HttpResponse:
    if form.has_error("__all__", "duplicate_pod"):
        # Kept in the form: the operator may only have mistyped the customer or environment.
        return _form_again(
            request,
            form,
            status=409,
            title="Pod Already Exists",
            message="",
            existing={
                "customer": form.cleaned_data["customer"],
                "environment": form.cleaned_data["environment"],
            },
        )
    if form.has_error("__all__", "unknown_pod"):
        raise Http404(form.non_field_errors()[0])
    return _form_again(request, form, status=400)


def _spec_changed(request, form: DeploymentForm, exc: services.SpecChanged) -> HttpResponse:
    """409 with the three versions: the spec the operator saw, the one in git now, and theirs,
    and their values in a form against the new version (nothing was dispatched)."""
    spec, current = form.spec, exc.current
    path = podspec.spec_path(settings.SPECS_PATH, spec.customer, spec.environment)
    try:
        seen = inventory.spec_text(exc.expected)
    except gh.GitHubError:
        seen = None
    now = current.text if current else ""
    asked = podspec.render(spec)
    values = {
        **spec.as_dict(),
        "mode": form.cleaned_data["mode"],
        "expected_spec_sha": current.sha if current else "",
    }
    context = {
        "spec": spec,
        "expected": exc.expected,
        "current": current,
        "seen": seen,
        "now": now,
        "asked": asked,
        "changed_meanwhile": podspec.diff(seen, now, path=path) if seen is not None else "",
        "your_change": podspec.diff(now or None, asked, path=path),
        "reopen": DeploymentForm(initial=values),
        "mode": form.cleaned_data["mode"],
    }
    return render(request, "deployments/spec_changed.html", context, status=409)


@require_POST
def deploy_preview(request):
    form = DeploymentForm(request.POST, listing=inventory.listing())
    if not form.is_valid():
        return _invalid_form(request, form)
    try:
        services.spec_check(expected_spec_sha=form.expected_sha, current=form.pod)
    except services.SpecChanged as exc:
        return _spec_changed(request, form, exc)
    spec = form.spec
    review_flow, approval_required = services.review_policy(spec.environment)
    context = {
        "form": form,
        "spec": spec,
        "inputs": services.workflow_inputs(
            spec=spec,
            idempotency_key=form.cleaned_data["idempotency_key"],
            expected_spec_sha=services.expected_spec(expected_spec_sha=form.expected_sha, current=form.pod),
        ),
        "diff": podspec.diff(
            form.spec_before,
            podspec.render(spec),
            path=podspec.spec_path(settings.SPECS_PATH, spec.customer, spec.environment),
        ),
        "unchanged": form.is_unchanged,
        "can_deploy": request.user.has_perm(DEPLOY_PERMISSION),
        "review": review_flow == DeploymentRequest.Flow.REVIEW,
        "approval_required": approval_required,
        "holder": selectors.active_request_for_pod(customer=spec.customer, environment=spec.environment),
    }
    return render(request, "deployments/preview.html", context)


@require_POST
def deploy(request):
    if not request.user.has_perm(DEPLOY_PERMISSION):
        raise PermissionDenied(
            "You may browse pods but not deploy them. Ask an administrator to add you to the Deployers group."
        )
    # Lost-update protection: the pod's spec is checked against GitHub now (one conditional
    # request, a free 304 when nothing was committed since the last check), so a commit since the
    # form was opened is seen; the dispatch is the only other GitHub call.
    form = DeploymentForm(request.POST, listing=inventory.listing(fresh=True))
    if not form.is_valid():
        return _invalid_form(request, form)
    try:
        deployment, created = services.deployment_request_create(
            user=request.user,
            spec=form.spec,
            mode=form.cleaned_data["mode"],
            current=form.pod,
            idempotency_key=form.cleaned_data["idempotency_key"],
            expected_spec_sha=form.expected_sha,
            redeploy_of=form.redeployed,
            source_commit=form.cleaned_data["source_commit"] or "",
        )
    except services.SpecChanged as exc:
        return _spec_changed(request, form, exc)
    except services.NothingToDeploy as exc:
        return error_page(
            request, status=400, error_type="validation", title="Nothing to Deploy", message=str(exc)
        )
    except services.AlreadySubmitted as exc:
        message = "This form was already used for another deployment with other values. Open the pod again."
        return _conflict(request, "Form Already Submitted", message, deployment=exc.request)
    except services.PodLocked as exc:
        message = f"Pod {form.spec.pod} already has a deployment in progress. Wait for it to finish."
        return _form_again(
            request, form, status=409, title="Deployment in progress", message=message, holder=exc.holder
        )
    if created:
        services.deployment_request_dispatch(request=deployment, actor=request.user)
    return redirect(deployment)


@require_GET
def request_list(request):
    filters = {name: request.GET.get(name, "").strip() for name in ("pod", "status", "user")}
    page = Paginator(selectors.requests_filtered(**filters), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "deployments/request_list.html",
        {"page": page, "filters": filters, "statuses": DeploymentRequest.Status.choices},
    )


def _deployment_or_404(pk: int) -> DeploymentRequest:
    deployment = (
        DeploymentRequest.objects.select_related("requested_by", "released_by", "reviewed_by", "applied_by")
        .filter(pk=pk)
        .first()
    )
    if deployment is None:
        raise Http404(f"Request #{pk} does not exist.")
    return deployment


def _review_actions(user, deployment: DeploymentRequest) -> dict[str, bool]:
    """Which of Apply, Approve/Reject and Cancel this user is offered on the request page."""
    waiting = deployment.applied_by_id is None
    mine = user.pk == deployment.requested_by_id
    approver = user.has_perm(services.APPROVE_PERMISSION)
    status = deployment.status
    return {
        "can_apply": waiting
        and status == DeploymentRequest.Status.PLANNED
        and not deployment.approval_required
        and user.has_perm(DEPLOY_PERMISSION)
        and (mine or approver),
        "can_review": waiting
        and status == DeploymentRequest.Status.AWAITING_APPROVAL
        and approver
        and not mine,
        "own_approval": waiting and status == DeploymentRequest.Status.AWAITING_APPROVAL and mine,
        "can_cancel": waiting and status in services.CANCELLABLE and (mine or approver or user.is_staff),
    }


def _plan_summary(stored: Any) -> plan.PlanSummary | None:
    """The stored plan summary (checked when it was read from GitHub; checked again here)."""
    if stored is None:
        return None
    try:
        return plan.parse(stored)
    except plan.PlanSummaryError:
        return None


def _request_context(request, deployment: DeploymentRequest) -> dict[str, Any]:
    """What the request page's live part shows (the whole page and its polled fragment)."""
    events = list(selectors.request_events(deployment))
    stamp = live.RequestStamp.of(deployment, events=len(events))
    shown = steps.listing(deployment)
    steps_pending = steps.waiting_for_final(deployment, shown, timezone.now())
    return {
        "steps": shown,
        **_review_actions(request.user, deployment),
        "plan": _plan_summary(deployment.plan_summary),
        "deployment": deployment,
        "events": events,
        "failure": next((e for e in reversed(events) if e.data.get("step") or e.data.get("job_url")), None),
        "last_failed": next((e for e in reversed(events) if e.failed), None),
        "actions_url": gh.actions_url(),
        # "Try again" opens the preview with the same values, as a new request (a new key).
        "try_again": uuid.uuid4() if deployment.failed and request.user.has_perm(DEPLOY_PERMISSION) else None,
        # Made from what is shown, so a change while the page was being read is never missed.
        "live_etag": stamp.etag(viewer=request.user.pk),
        "poll_seconds": live.poll_seconds(deployment, steps_pending=steps_pending),
    }


def _catch_up(deployment: DeploymentRequest) -> bool:
    """Expire a due plan, look for an unknown run and read a missing plan summary: the lookups
    are throttled per request whoever asks, so open pages do not multiply GitHub calls."""
    changed = services.deployment_request_expire_if_due(request=deployment)
    changed = services.deployment_request_find_run(request=deployment) or changed
    if deployment.plan_run_id and deployment.plan_summary is None:
        changed = services.deployment_request_fetch_plan(request=deployment) or changed
    return steps.catch_up(deployment) or changed


@require_GET
def request_detail(request, pk: int):
    deployment = _deployment_or_404(pk)
    if _catch_up(deployment):
        deployment.refresh_from_db()
    pod = None if deployment.is_active else inventory.get_pod(deployment.customer, deployment.environment)
    context = {
        **_request_context(request, deployment),
        "redeploys": deployment.redeploys.order_by("pk"),
        # A failed request offers "Try again" (the same values) instead.
        "redeploy": None
        if deployment.is_active or deployment.failed
        else _redeploy_form(request, pod, deployment),
        "diff": podspec.diff(
            deployment.spec_before or None,
            deployment.spec_after,
            path=podspec.spec_path(settings.SPECS_PATH, deployment.customer, deployment.environment),
        ),
    }
    return render(request, "deployments/request_detail.html", context)


def _not_modified(etag: str) -> HttpResponse:
    response = HttpResponseNotModified()
    response.headers["ETag"] = etag
    return response


@require_GET
def request_live(request, pk: int):
    """The request page's live part, polled by the page: 304 while nothing changed (one query)."""
    stamp = live.request_stamp(pk)
    if stamp is None:
        raise Http404(f"Request #{pk} does not exist.")
    if stamp.needs_catch_up(timezone.now()):
        deployment = _deployment_or_404(pk)
        if _catch_up(deployment):
            stamp = live.request_stamp(pk) or stamp
    etag = stamp.etag(viewer=request.user.pk)
    if request.headers.get("If-None-Match") == etag:
        return _not_modified(etag)
    deployment = _deployment_or_404(pk)
    context = _request_context(request, deployment)
    response = render(request, "deployments/_request_live.html", {**context, "fragment": True})
    response.headers["ETag"] = context["live_etag"]
    response.headers["Cache-Control"] = "no-store"
    return response


@require_GET
def pods_live(request):
    """The pods page's "running now" list and, out of band, the "last deployment" cell of each
    pod whose requests changed since the page's stamp: 304 while nothing changed (one query)."""
    stamp = live.activity_stamp()
    if request.headers.get("If-None-Match") == stamp.etag:
        return _not_modified(stamp.etag)
    try:
        since = float(request.GET.get("since", ""))
    except ValueError:
        since = None
    running = live.running_now()
    context = {
        "running": running,
        "stamp": stamp,
        "poll_seconds": live.pods_poll_seconds(running),
        "changed": live.latest_changed_since(since) if since is not None else [],
    }
    response = render(request, "deployments/_running_now.html", {**context, "fragment": True})
    response.headers["ETag"] = stamp.etag
    response.headers["Cache-Control"] = "no-store"
    return response


# A review comment is read by people; a few paragraphs at most.
MAX_COMMENT_CHARS = 2000


def _review(request, pk: int, action, **kwargs) -> HttpResponse:
    deployment = _deployment_or_404(pk)
    if not request.user.has_perm(DEPLOY_PERMISSION):
        raise PermissionDenied(
            "You may browse pods but not deploy them. Ask an administrator to add you to the Deployers group."
        )
    try:
        action(request=deployment, actor=request.user, **kwargs)
    except services.ReviewRefused as exc:
        error_type = {400: "validation", 403: "forbidden"}.get(exc.status, "conflict")
        return error_page(
            request,
            status=exc.status,
            error_type=error_type,
            title=exc.title,
            message=exc.message,
            deployment=deployment,
        )
    return redirect(deployment)


def _comment(request) -> str:
    return request.POST.get("comment", "").strip()[:MAX_COMMENT_CHARS]


@require_POST
def request_apply(request, pk: int):
    return _review(request, pk, services.deployment_request_apply)


@require_POST
def request_approve(request, pk: int):
    return _review(request, pk, services.deployment_request_approve, comment=_comment(request))


@require_POST
def request_reject(request, pk: int):
    return _review(request, pk, services.deployment_request_reject, comment=_comment(request))


@require_POST
def request_cancel(request, pk: int):
    return _review(request, pk, services.deployment_request_cancel)


@login_not_required
@never_cache
@require_GET
def health_ready(request):
    body, healthy = health.readiness(details=health.details_allowed(request))
    return JsonResponse(body, status=200 if healthy else 503)


@login_not_required
@never_cache
@require_GET
def health_live(request):
    return JsonResponse({"status": "alive"})
