"""The personal API tokens page: a person makes tokens (each shown once), sees when each was
last used and revokes them. Service tokens for bots are made by an administrator in the admin."""

import datetime as dt

from django import forms
from django.conf import settings
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from .models import ApiToken

LIFETIMES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (365, "1 year")]


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “deploy script on my laptop”.")
    days = forms.TypedChoiceField(coerce=int, label="Expires after", initial=30)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["days"].choices = [
            (d, label) for d, label in LIFETIMES if d <= settings.API_TOKEN_MAX_DAYS
        ]


@never_cache
@require_http_methods(["GET", "POST"])
def token_list(request):
    issued = None
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        expires_at = timezone.now() + dt.timedelta(days=form.cleaned_data["days"])
        row, issued = ApiToken.issue(
            user=request.user, name=form.cleaned_data["name"], expires_at=expires_at, created_by=request.user
        )
        form = TokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    status = 201 if issued else (400 if form.errors else 200)
    return render(
        request, "api/tokens.html", {"form": form, "tokens": tokens, "issued": issued}, status=status
    )


@require_POST
def token_revoke(request, pk: int):
    token = ApiToken.objects.filter(pk=pk, user=request.user).first()
    if token is None:
        raise Http404("No such token.")
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=pk).update(revoked_at=timezone.now())
    return redirect("api_tokens")
