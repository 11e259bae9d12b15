import csv

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.html import format_html

from . import services
from .models import DeploymentEvent, DeploymentRequest

CSV_FIELDS = (
    "id",
    "created_at",
    "requested_by",
    "customer",
    "environment",
    "mode",
    "instance_name",
    "instance_type",
    "waf_enabled",
    "status",
    "conclusion",
    "run_id",
    "run_url",
    "error_type",
    "error_message",
    "dispatched_at",
    "started_at",
    "completed_at",
    "released_by",
    "release_reason",
    "flow",
    "approval_required",
    "plan_run_id",
    "plan_run_url",
    "planned_at",
    "reviewed_by",
    "reviewed_at",
    "review_comment",
    "applied_by",
)


class ReleaseForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Recorded on each request.")


class ReadOnlyMixin:
    """The audit history: read-only for everyone, superusers included."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DeploymentEventInline(ReadOnlyMixin, admin.TabularInline):
    model = DeploymentEvent
    fields = ("at", "source", "actor", "from_status", "to_status", "message", "data")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(DeploymentEvent)
class DeploymentEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("at", "request", "source", "actor", "from_status", "to_status", "message")
    list_filter = ("source", "to_status", "from_status", "actor")
    search_fields = (
        "message",
        "request__customer",
        "request__environment",
        "actor__username",
        "=request__id",
    )
    date_hierarchy = "at"
    list_select_related = ("request", "actor")


@admin.register(DeploymentRequest)
class DeploymentRequestAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The audit history: read-only for everyone, superusers included."""

    list_display = ("created_at", "requested_by", "pod", "mode", "status", "conclusion", "run_link")
    list_filter = ("status", "conclusion", "customer", "environment", "mode", "requested_by")
    search_fields = ("customer", "environment", "instance_name", "requested_by__username", "=run_id")
    date_hierarchy = "created_at"
    list_select_related = ("requested_by",)
    actions = ["export_csv", "release_lock"]
    inlines = [DeploymentEventInline]
    # The stored URLs are shown through run_link and plan_run_link, which link only pages of the
    # configured GitHub; the plan summary is shown on the request page.
    exclude = ("run_url", "plan_run_url")
    readonly_fields = ("run_link", "plan_run_link")

    @admin.display(description="pod", ordering="customer")
    def pod(self, obj):
        return obj.pod

    @admin.display(description="run")
    def run_link(self, obj):
        if not obj.run_link:
            return f"#{obj.run_number or obj.run_id}" if obj.run_id else "-"
        return format_html(
            '<a href="{}" rel="noopener" target="_blank">#{}</a>', obj.run_link, obj.run_number or obj.run_id
        )

    @admin.display(description="plan run")
    def plan_run_link(self, obj):
        if not obj.plan_run_link:
            return f"#{obj.plan_run_id}" if obj.plan_run_id else "-"
        return format_html(
            '<a href="{}" rel="noopener" target="_blank">#{}</a>', obj.plan_run_link, obj.plan_run_id
        )

    @admin.action(description="Export selected requests as CSV")
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="deployment-requests.csv"'
        writer = csv.writer(response)
        writer.writerow(CSV_FIELDS)
        for row in queryset.select_related("requested_by", "released_by", "reviewed_by", "applied_by"):
            writer.writerow([_csv_safe(getattr(row, field)) for field in CSV_FIELDS])
        return response

    @admin.action(description="Release stuck lock (records who and why)", permissions=["release"])
    def release_lock(self, request, queryset):
        form = ReleaseForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            released = sum(
                services.deployment_request_release(
                    request=row, user=request.user, reason=form.cleaned_data["reason"]
                )
                for row in queryset
            )
            self.message_user(request, f"Released {released} request(s).", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Release stuck pod locks",
            "queryset": queryset.filter(status__in=DeploymentRequest.ACTIVE_STATUSES),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "opts": self.model._meta,
        }
        return render(request, "admin/deployments/release_lock.html", context)

    def has_release_permission(self, request):
        return request.user.has_perm("deployments.release_lock")


def _csv_safe(value) -> str:
    """Neutralise spreadsheet formulas in exported text."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
