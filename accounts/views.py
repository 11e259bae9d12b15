from django.conf import settings
from django.contrib.auth import views as auth_views

from . import oidc


class LoginView(auth_views.LoginView):
    """Django's login page; with single sign-on configured it leads with the provider's button
    and keeps the password form for local (break-glass) accounts."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["sso_enabled"] = oidc.enabled()
        context["sso_provider_name"] = settings.OIDC_PROVIDER_NAME
        return context
