"""Bearer tokens for the API: ``Authorization: Bearer pdp_…`` (or ``Token pdp_…``)."""

import datetime as dt

from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiToken, digest

# last_used_at is written at most this often per token, not on every call.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class TokenAuthentication(authentication.BaseAuthentication):
    keywords = ("bearer", "token")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode("latin-1").lower() not in self.keywords:
            return None
        if len(header) != 2 or len(header[1]) > 200:
            raise exceptions.AuthenticationFailed("Malformed Authorization header: use “Bearer <token>”.")
        try:
            presented = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The token is not valid.") from None
        token = ApiToken.objects.select_related("user").filter(digest=digest(presented)).first()
        if token is None or not token.is_usable:
            # One message for unknown, revoked and expired tokens.
            raise exceptions.AuthenticationFailed("The token is not valid, was revoked or has expired.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token's user is deactivated.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
