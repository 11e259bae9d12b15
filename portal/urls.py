from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Pod Deployment Portal"
admin.site.site_title = "Pod Deployment Portal"

handler404 = "deployments.views.page_not_found"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("deployments.urls")),
]
