from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.permissions import AllowAny

from . import tokens, views

v1 = [
    path("pods/", views.PodList.as_view(), name="api_pods"),
    path("pods/<str:customer>/<str:environment>/", views.PodDetail.as_view(), name="api_pod"),
    path("requests/", views.RequestCreate.as_view(), name="api_requests"),
    path("requests/<int:pk>/", views.RequestDetail.as_view(), name="api_request"),
    path("requests/<int:pk>/apply/", views.RequestApply.as_view(), name="api_request_apply"),
    path("requests/<int:pk>/approve/", views.RequestApprove.as_view(), name="api_request_approve"),
    path("requests/<int:pk>/reject/", views.RequestReject.as_view(), name="api_request_reject"),
    path("requests/<int:pk>/cancel/", views.RequestCancel.as_view(), name="api_request_cancel"),
    # The OpenAPI 3 description, public like any API reference (it holds no data).
    path(
        "openapi.json",
        SpectacularJSONAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny]),
        name="api_openapi",
    ),
]

urlpatterns = [
    path("v1/", include(v1)),
    # The personal API tokens page (signed in with the portal's session).
    path("tokens/", tokens.token_list, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="api_token_revoke"),
]
