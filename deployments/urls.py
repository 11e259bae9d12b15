from django.urls import path

from . import views, webhooks

urlpatterns = [
    path("", views.pod_list, name="pod_list"),
    path("pods/live/", views.pods_live, name="pods_live"),
    path("pods/new/", views.pod_new, name="pod_new"),
    path("pods/<str:customer>/<str:environment>/", views.pod_detail, name="pod_detail"),
    path("pods/<str:customer>/<str:environment>/diff/", views.pod_diff, name="pod_diff"),
    path("pods/<str:customer>/<str:environment>/edit/", views.pod_edit, name="pod_edit"),
    path("deploy/preview/", views.deploy_preview, name="deploy_preview"),
    path("deploy/", views.deploy, name="deploy"),
    path("requests/", views.request_list, name="request_list"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/live/", views.request_live, name="request_live"),
    path("requests/<int:pk>/apply/", views.request_apply, name="request_apply"),
    path("requests/<int:pk>/approve/", views.request_approve, name="request_approve"),
    path("requests/<int:pk>/reject/", views.request_reject, name="request_reject"),
    path("requests/<int:pk>/cancel/", views.request_cancel, name="request_cancel"),
    path("health", views.health_ready, name="health"),
    path("health/live", views.health_live, name="health_live"),
    path("webhooks/github", webhooks.github_webhook, name="github_webhook"),
]
