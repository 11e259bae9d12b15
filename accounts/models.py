from django.conf import settings
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models


class ExternalIdentity(models.Model):
    """A person known to an identity provider, and the portal account they sign in to.

    An account is found by the provider's stable subject (``iss`` + ``sub``), never by e-mail:
    an address claimed at the IdP cannot take over a local account (the break-glass admin).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    # The IdP groups seen at the last sign-in (what the group mapping was applied to).
    groups = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "external identity"
        verbose_name_plural = "external identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="unique_external_identity")]

    def __str__(self) -> str:
        return f"{self.user} ({self.subject} at {self.issuer})"


class PortalSession(AbstractBaseSession):
    """Django's database session with the signed-in user's id beside it (``accounts.sessions``):
    a request reads its session, its user and the user's permissions in one statement.

    The id is a copy of the session's own ``_auth_user_id``, written on each save; it is only
    a join key. No database constraint: a user deleted while a session is open must not fail
    that session's save (the join then finds no user and the session is anonymous, as before).
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )

    class Meta(AbstractBaseSession.Meta):
        verbose_name = "session"
        verbose_name_plural = "sessions"

    @classmethod
    def get_session_store_class(cls) -> type:
        from .sessions import SessionStore

        return SessionStore
