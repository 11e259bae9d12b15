"""Form data the tests post, shared by every test module."""

import threading
import uuid

from django.db import connection
from django.test import Client

from deployments import podspec

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


def put_pods(gh, count: int, *, prefix: str = "c") -> list[str]:
    """Commit ``count`` valid specs to the emulator: pods <prefix>000/prod, <prefix>001/prod, …"""
    customers = [f"{prefix}{i:03d}" for i in range(count)]
    for customer in customers:
        spec = podspec.PodSpec(customer, "prod", f"{customer}-web", "t3.small", False)
        gh.put_file(podspec.spec_path("pods", customer, "prod"), podspec.render(spec))
    return customers


def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_concurrently(user, payloads: list[dict]) -> list:
    """POST every payload to /deploy/ at the same moment, one thread (and DB connection) each."""
    clients = [logged_in_client(user) for _ in payloads]
    results: list = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads), timeout=30)

    def worker(i):
        barrier.wait()
        try:
            results[i] = clients[i].post("/deploy/", payloads[i])
        except Exception as exc:  # reported by the caller's assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def replay(client, delivery):
    """Send one of the emulator's webhook deliveries to the portal exactly as GitHub would."""
    headers = {
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in delivery.headers.items() if k != "Content-Type"
    }
    return client.post("/webhooks/github", delivery.body, content_type="application/json", **headers)
