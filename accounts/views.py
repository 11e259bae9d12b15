from django.conf import settings
from django.contrib.auth import views as auth_views

from . import github, oidc


class LoginView(auth_views.LoginView):
    """Django's login page; with single sign-on or GitHub configured it leads with their buttons
    and keeps the password form for local (break-glass) accounts."""

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["sso_enabled"] = oidc.enabled()
        context["sso_provider_name"] = settings.OIDC_PROVIDER_NAME
        context["github_enabled"] = github.enabled()
        return context

    def render_to_response(self, context, **response_kwargs):
        response = super().render_to_response(context, **response_kwargs)
        if context.get("github_enabled"):
            # The "Sign in with GitHub" form posts here and is redirected to GitHub's
            # authorization page: the policy's form-action must allow that host (Chromium checks
            # the redirect of a form submission too).
            response._csp_update = {"form-action": [github.web_origin()]}  # type: ignore[attr-defined]
        return response
