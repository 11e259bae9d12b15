"""The mapping from groups at an identity provider (OpenID Connect groups, GitHub teams) onto the
portal's groups and the staff flag, applied at every sign-in (accounts/oidc.py, accounts/github.py).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

STAFF = "staff"


def parse_group_map(raw: str | dict[str, str], setting: str) -> dict[str, set[str]]:
    """A mapping setting as {outside group: {portal group or "staff", …}}.

    The setting is ``outside-group=PortalGroup`` pairs separated by commas; an outside group may
    be listed more than once to grant several portal groups. portal/settings.py parses both
    settings at start-up, so a malformed one stops the portal instead of failing every sign-in.
    """
    mapping: dict[str, set[str]] = {}
    pairs = raw.items() if isinstance(raw, dict) else (p.partition("=")[::2] for p in raw.split(","))
    for outside, target in pairs:
        outside, target = outside.strip(), target.strip()
        if not outside and not target:
            continue
        if not outside or not target:
            message = f"{setting} entries are idp-group=PortalGroup; got {outside}={target}."
            raise ImproperlyConfigured(message)
        mapping.setdefault(outside, set()).add(target)
    return mapping


def apply_group_map(user: Any, groups: list[str], mapping: dict[str, set[str]], setting: str) -> None:
    """Give ``user`` exactly the mapped portal groups (and staff flag) that ``groups`` grant.

    Only the groups named in the mapping are managed: a group an administrator gave by hand that
    the mapping does not mention is left alone. A superuser is never made by a mapping.
    """
    from django.contrib.auth.models import Group  # noqa: PLC0415 (settings import this module)

    managed = set().union(*mapping.values()) if mapping else set()
    granted = set().union(*(mapping.get(g, set()) for g in groups)) if groups else set()
    names = managed - {STAFF}
    existing = {g.name: g for g in Group.objects.filter(name__in=names)}
    for missing in sorted(names - existing.keys()):
        logger.warning("%s names group %r, which does not exist in the portal", setting, missing)
    user.groups.add(*(existing[n] for n in sorted(granted & existing.keys())))
    user.groups.remove(*(existing[n] for n in sorted(existing.keys() - granted)))
    if STAFF in managed and user.is_staff != (STAFF in granted):
        user.is_staff = STAFF in granted
        user.save(update_fields=["is_staff"])
