from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils import timezone

from .models import TOKEN_PREFIX, ApiToken, digest


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Service tokens for bots (ChatOps, CI): made here for a service account — a user with the
    groups the bot needs and no password — and shown once. Personal tokens are listed too, to
    revoke them."""

    list_display = ("name", "user", "kind", "hint", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("kind",)
    search_fields = ("name", "user__username", "hint")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name", "kind", "expires_at")
        return (
            "user",
            "name",
            "kind",
            "hint",
            "created_at",
            "created_by",
            "expires_at",
            "last_used_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("user", "kind", "hint", "created_at", "created_by", "last_used_at")

    def get_changeform_initial_data(self, request):
        return {"kind": ApiToken.Kind.SERVICE}

    def save_model(self, request, obj, form, change):
        if not change:
            from secrets import token_urlsafe

            issued = TOKEN_PREFIX + token_urlsafe(32)
            obj.digest, obj.hint, obj.created_by = digest(issued), issued[:8], request.user
            request._issued_api_token = issued
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        context = {**self.admin_site.each_context(request), "token": obj, "issued": request._issued_api_token}
        return TemplateResponse(request, "api/token_issued.html", context)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.")
