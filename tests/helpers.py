"""Form data the tests post, shared by every test module."""

import uuid

EDIT_ACME_PROD = {
    "customer": "acme",
    "environment": "prod",
    "instance_name": "acme-prod-web",
    "instance_type": "t3.large",
    "waf_enabled": "on",
    "mode": "edit",
}
NEW_POD = {
    "customer": "hooli",
    "environment": "prod",
    "instance_name": "hooli-prod-web",
    "instance_type": "t3.small",
    "mode": "new",
}


def form(values: dict, **overrides) -> dict:
    """``values`` with a fresh idempotency key, as a newly rendered form would carry."""
    return {**values, "idempotency_key": str(uuid.uuid4()), **overrides}


def dispatches(gh) -> list:
    """The dispatch POSTs the emulator received."""
    return [r for r in gh.requests if r.method == "POST" and r.path.endswith("/dispatches")]
