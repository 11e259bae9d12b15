from django.urls import path

from . import views, webhooks

urlpatterns = [
    path("", views.pod_list, name="pod_list"),
    path("pods/new/", views.pod_new, name="pod_new"),
    path("pods/<str:customer>/<str:environment>/edit/", views.pod_edit, name="pod_edit"),
    path("deploy/preview/", views.deploy_preview, name="deploy_preview"),
    path("deploy/", views.deploy, name="deploy"),
    path("requests/", views.request_list, name="request_list"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("health", views.health_ready, name="health"),
    path("health/live", views.health_live, name="health_live"),
    path("webhooks/github", webhooks.github_webhook, name="github_webhook"),
]
