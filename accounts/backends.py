"""Django's ModelBackend, reading a user's permissions in one query instead of two."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.db.models import Q

from .sessions import SessionUserBackend


class PortalModelBackend(SessionUserBackend, ModelBackend):
    """ModelBackend whose ``get_all_permissions`` reads the user's own and their groups'
    permissions together (Django's reads them in two queries, each page and POST that asks
    ``has_perm``). Same answers, same per-request cache (``user._perm_cache``, which the OIDC
    backend, a ModelBackend too, then reuses); ``get_user_permissions`` and
    ``get_group_permissions`` (the admin's) are Django's. ``get_user`` takes the user read
    with the session (``accounts.sessions``), which comes with this cache filled."""

    def session_user_allowed(self, user: Any) -> bool:
        return self.user_can_authenticate(user)  # ModelBackend.get_user's rule

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                permissions = Permission.objects.all()
            else:
                permissions = Permission.objects.filter(Q(user=user_obj) | Q(group__user=user_obj))
            rows = permissions.values_list("content_type__app_label", "codename").order_by()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in rows}
        return user_obj._perm_cache
