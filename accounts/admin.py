from django.contrib import admin

from .models import ExternalIdentity


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    list_display = ("user", "issuer", "subject", "last_login_at")
    search_fields = ("user__username", "subject", "issuer")
    readonly_fields = ("user", "issuer", "subject", "groups", "created_at", "last_login_at")

    def has_add_permission(self, request):
        # Identities are made by signing in; deleting one unlinks the account from the IdP.
        return False
