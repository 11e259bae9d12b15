"""Sign-in with the company's OpenID Provider (Okta, Entra ID, Google Workspace, Keycloak…).

The protocol is mozilla-django-oidc's (authorization code flow with PKCE, state and nonce, the
ID token's signature checked against the provider's JWKS). This module adds what the portal
needs on top:

- the provider's endpoints come from its discovery document (``OIDC_ISSUER``), read once an
  hour, its ``issuer`` checked (OpenID Connect Discovery 1.0, section 4.3);
- the ID token's ``iss`` and ``aud`` are checked, and the UserInfo ``sub`` must be the ID
  token's (OpenID Connect Core 1.0, sections 3.1.3.7 and 5.3.2) — the library checks neither;
- accounts are found by ``iss`` + ``sub`` (``ExternalIdentity``), never by e-mail, so no claim
  can take over a local account such as the break-glass admin;
- at every sign-in the IdP groups (``OIDC_GROUPS_CLAIM``) are mapped onto the portal's groups
  and the staff flag (``OIDC_GROUP_MAP``): a right removed at the IdP is gone at the next sign-in.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend  # type: ignore[import-untyped]
from mozilla_django_oidc.views import (  # type: ignore[import-untyped]
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from .groups import apply_group_map, parse_group_map
from .models import ExternalIdentity
from .sessions import SessionUserBackend

logger = logging.getLogger(__name__)

DISCOVERY_TTL_SECONDS = 3600
# Everything from the provider is bounded: a discovery document, the groups of one person.
MAX_DISCOVERY_BYTES = 256 * 1024
MAX_GROUPS = 1000
MAX_GROUP_CHARS = 256
MAX_SUBJECT_CHARS = 255


class SSOUnavailable(Exception):
    """The identity provider's discovery document could not be read or is not valid."""


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


@dataclass(frozen=True)
class ProviderConfig:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


_discovered: dict[str, tuple[float, ProviderConfig]] = {}
_discovery_lock = threading.Lock()


def discovery_url() -> str:
    return settings.OIDC_DISCOVERY_URL or f"{settings.OIDC_ISSUER}/.well-known/openid-configuration"


def _endpoint(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not re.match(r"https?://[^\s]+$", value) or len(value) > 2000:
        raise SSOUnavailable(f"The provider's discovery document has no valid {name}.")
    return value


def provider_config() -> ProviderConfig:
    """The provider's endpoints, from its discovery document (cached an hour per process)."""
    url = discovery_url()
    cached = _discovered.get(url)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    with _discovery_lock:
        try:
            response = requests.get(url, timeout=settings.OIDC_TIMEOUT, allow_redirects=False)
            response.raise_for_status()
            if len(response.content) > MAX_DISCOVERY_BYTES:
                raise SSOUnavailable("The provider's discovery document is too large.")
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SSOUnavailable(f"The provider's discovery document could not be read ({exc}).") from None
        if not isinstance(document, dict):
            raise SSOUnavailable("The provider's discovery document is not a JSON object.")
        # Discovery 4.3: the issuer in the document MUST be identical to the one configured.
        if document.get("issuer") != settings.OIDC_ISSUER:
            raise SSOUnavailable(
                f"The provider's discovery document names issuer {str(document.get('issuer'))[:200]!r}, "
                f"not OIDC_ISSUER {settings.OIDC_ISSUER!r}."
            )
        config = ProviderConfig(
            issuer=settings.OIDC_ISSUER,
            authorization_endpoint=_endpoint(document, "authorization_endpoint"),
            token_endpoint=_endpoint(document, "token_endpoint"),
            userinfo_endpoint=_endpoint(document, "userinfo_endpoint"),
            jwks_uri=_endpoint(document, "jwks_uri"),
        )
        _discovered[url] = (time.monotonic() + DISCOVERY_TTL_SECONDS, config)
        return config


def reset() -> None:
    """Forget the discovered endpoints (tests, or after changing OIDC_ISSUER)."""
    _discovered.clear()


# --- group mapping -------------------------------------------------------------------------------


def group_map() -> dict[str, set[str]]:
    """``OIDC_GROUP_MAP`` as {IdP group: {portal group or "staff", …}} (``idp-group=PortalGroup``
    pairs separated by commas; an IdP group may be listed more than once)."""
    return parse_group_map(settings.OIDC_GROUP_MAP, "OIDC_GROUP_MAP")


def idp_groups(claims: dict[str, Any]) -> list[str]:
    """The person's groups at the provider, from ``OIDC_GROUPS_CLAIM`` (absent: none)."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    groups = [g for g in value[:MAX_GROUPS] if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_CHARS]
    return sorted(set(groups))


# --- the authentication backend -----------------------------------------------------------------


def _username(claims: dict[str, Any], issuer: str, subject: str) -> str:
    User = get_user_model()
    wanted = claims.get("preferred_username") or claims.get("email") or subject
    base = re.sub(r"[^\w.@+-]", "-", str(wanted))[:140] or "user"
    if not User.objects.filter(username=base).exists():
        return base
    # Taken (a local account, or another person of another provider): never share it.
    return f"{base}-{hashlib.sha256(f'{issuer} {subject}'.encode()).hexdigest()[:8]}"


def _text(claims: dict[str, Any], name: str, limit: int) -> str:
    value = claims.get(name)
    return value[:limit] if isinstance(value, str) else ""


class PortalOIDCBackend(SessionUserBackend, OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, configured by discovery, with the portal's account rules.
    Its ``get_user`` (any account with the id) takes the user read with the session."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads its endpoints here; the portal reads them at sign-in, from discovery,
        # so a portal without SSO (or with the provider down) still loads this backend.
        self.UserModel = get_user_model()

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        # Only the callback view passes a nonce: a password sign-in never reaches the provider.
        if request is None or not enabled() or "nonce" not in kwargs:
            return None
        self.config = provider_config()
        self.OIDC_OP_TOKEN_ENDPOINT = self.config.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = self.config.userinfo_endpoint
        self.OIDC_OP_JWKS_ENDPOINT = self.config.jwks_uri
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        return super().authenticate(request, **kwargs)

    def verify_token(self, token: str, **kwargs: Any) -> Any:
        payload = super().verify_token(token, **kwargs)
        # Core 3.1.3.7: the issuer must be the provider's, the audience must contain this
        # client, and with several audiences the authorized party must be this client.
        if payload.get("iss") != self.config.issuer:
            raise SuspiciousOperation("The ID token was issued by another issuer.")
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("The ID token is not meant for this portal.")
        if len(audiences) > 1 and payload.get("azp") != self.OIDC_RP_CLIENT_ID:
            raise SuspiciousOperation("The ID token's authorized party is not this portal.")
        return payload

    def verify_claims(self, claims: Any) -> bool:
        return isinstance(claims, dict) and isinstance(claims.get("sub"), str)

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        user_info = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(user_info) or user_info["sub"] != payload.get("sub"):
            # Core 5.3.2: the UserInfo sub MUST exactly match the ID token's.
            raise SuspiciousOperation("The provider's UserInfo is about another subject.")
        claims = {**payload, **user_info}
        subject = claims["sub"]
        if not 0 < len(subject) <= MAX_SUBJECT_CHARS:
            raise SuspiciousOperation("The provider's subject identifier is not valid.")
        issuer = self.config.issuer
        groups = idp_groups(claims)
        with transaction.atomic():
            identity = (
                ExternalIdentity.objects.select_for_update()
                .select_related("user")
                .filter(issuer=issuer, subject=subject)
                .first()
            )
            if identity is None:
                user = self.UserModel.objects.create_user(_username(claims, issuer, subject))
                user.set_unusable_password()
                identity = ExternalIdentity(user=user, issuer=issuer, subject=subject)
            user = identity.user
            user.email = _text(claims, "email", 254)
            user.first_name = _text(claims, "given_name", 150)
            user.last_name = _text(claims, "family_name", 150)
            user.save()
            identity.groups = groups
            identity.last_login_at = timezone.now()
            identity.save()
            apply_group_map(user, groups, group_map(), "OIDC_GROUP_MAP")
        logger.info(
            "signed in with the identity provider: %s (groups %s)",
            user.username,
            ", ".join(groups) or "none",
            extra={"oidc_subject": subject},
        )
        return user


def axes_exempt(request: Any, credentials: dict[str, Any] | None) -> bool:
    """django-axes' AXES_WHITELIST_CALLABLE: the provider's callback is never locked out or counted.

    Its authenticate() call has no username, so axes would count its failures for the address
    alone, and everyone behind one NAT would be locked out of single sign-on after a few failed
    code exchanges. Guessing there gains nothing (a code is single-use, bound to the session's
    state and PKCE verifier); passwords are throttled by the provider. Password sign-ins, which
    carry a username, are counted as before.
    """
    if not credentials:
        return False
    from . import github  # GitHub's callback likewise (accounts/github.py)

    if github.axes_exempt(credentials):
        return True
    return "nonce" in credentials and not credentials.get("username")


# --- the views ----------------------------------------------------------------------------------


@method_decorator(login_not_required, name="dispatch")
class SignInView(OIDCAuthenticationRequestView):
    """Starts the sign-in: redirects to the provider's authorization endpoint."""

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)  # the endpoints are read in get(), from discovery

    def get(self, request: Any) -> Any:
        if not enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            config = provider_config()
        except SSOUnavailable as exc:
            logger.warning("single sign-on unavailable: %s", exc)
            from deployments.views import error_page

            return error_page(
                request,
                status=503,
                error_type="service_unavailable",
                title="Sign-in Service Unavailable",
                message=f"{settings.OIDC_PROVIDER_NAME} cannot be reached. Try again in a minute.",
            )
        self.OIDC_OP_AUTH_ENDPOINT = config.authorization_endpoint
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


@method_decorator(login_not_required, name="dispatch")
class CallbackView(OIDCAuthenticationCallbackView):
    """The provider sends the person back here with a code; they are signed in or told why not."""

    def get(self, request: Any) -> Any:
        if not enabled():
            raise Http404("Single sign-on is not configured.")
        try:
            return super().get(request)
        except (SSOUnavailable, requests.RequestException, SuspiciousOperation) as exc:
            # The token endpoint's or UserInfo's refusal, a token that fails its checks, a
            # replayed state: the reason is for the log, the person is asked to try again.
            logger.warning("sign-in with the identity provider failed: %s", type(exc).__name__)
            logger.debug("sign-in failure details: %s", exc)
            return self.login_failure()

    def login_failure(self) -> HttpResponseRedirect:
        messages.error(
            self.request,
            f"Signing in with {settings.OIDC_PROVIDER_NAME} did not complete. Try again; if it keeps "
            "failing, ask an administrator.",
        )
        return redirect(reverse("login"))
