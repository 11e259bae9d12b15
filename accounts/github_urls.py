"""Sign in with GitHub (accounts/github.py). python-social-auth builds its callback URL from the
name ``social:complete`` with the backend's name: ``/auth/complete/github/``."""

from django.urls import path

from . import github

app_name = "social"
urlpatterns = [
    path("login/<str:backend>/", github.begin, name="begin"),
    path("complete/<str:backend>/", github.complete, name="complete"),
]
