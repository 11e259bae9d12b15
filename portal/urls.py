from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.views import LoginView

admin.site.site_header = "Pod Deployment Portal"
admin.site.site_title = "Pod Deployment Portal"

handler404 = "deployments.views.page_not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Only signing in and out: accounts are made in the admin and nothing here sends e-mail, so
    # django.contrib.auth's password reset and change pages are not routed.
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Single sign-on with the company's OpenID Provider (accounts/oidc.py).
    path("oidc/", include("accounts.urls")),
    # Sign in with GitHub (accounts/github.py): /auth/login/github/, /auth/complete/github/.
    path("auth/", include("accounts.github_urls")),
    path("api/", include("api.urls")),
    path("", include("deployments.urls")),
]
