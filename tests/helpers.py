"""Form data, factories and helpers shared by every test module."""

import hashlib
import hmac
import json
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable
from functools import partial

from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.db.models import QuerySet
from django.test import Client

from deployments import lifecycle, podspec, services
from deployments.lifecycle import Source, Status
from deployments.models import DeploymentRequest
from fakegithub._git import blob_sha

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
    return at_once(*[partial(c.post, "/deploy/", p) for c, p in zip(clients, payloads, strict=True)])


WEBHOOK_SECRET = "test-webhook-secret"  # what tests.conftest.use_emulator configures


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_event(client, payload: dict, *, event="workflow_run", delivery=None, signature=None, body=None):
    """POST a webhook event, signed with the portal's secret unless ``signature`` says otherwise."""
    body = body if body is not None else json.dumps(payload).encode()
    headers = {
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
        "HTTP_X_HUB_SIGNATURE_256": sign(body) if signature is None else signature,
    }
    return client.post("/webhooks/github", body, content_type="application/json", **headers)


def replay(client, delivery):
    """Send one of the emulator's webhook deliveries to the portal exactly as GitHub would."""
    headers = {
        f"HTTP_{k.upper().replace('-', '_')}": v for k, v in delivery.headers.items() if k != "Content-Type"
    }
    return client.post("/webhooks/github", delivery.body, content_type="application/json", **headers)


def path_to(status: str) -> list[Status]:
    """The shortest walk through the lifecycle table from pending to ``status``."""
    paths = {Status.PENDING: [Status.PENDING]}
    queue = deque([Status.PENDING])
    while queue:
        state = queue.popleft()
        for nxt in sorted(lifecycle.TABLE[state][1]):
            if nxt not in paths:
                paths[nxt] = [*paths[state], nxt]
                queue.append(nxt)
    return paths[Status(status)]


def make_request(
    user, *, customer: str = "acme", environment: str = "prod", status: str = Status.PENDING,
    conclusion: str = "success", **fields,
) -> DeploymentRequest:  # fmt: skip
    """A request created by the service, then moved through the lifecycle to ``status``
    (completed ones with ``conclusion``), as the portal itself would have."""
    spec = podspec.PodSpec(customer, environment, f"{customer}-{environment}-web", "t3.small", False)
    request, _ = services.deployment_request_create(
        user=user, spec=spec, mode="edit", current=None, idempotency_key=uuid.uuid4()
    )
    for step in path_to(status)[1:]:
        done = {"conclusion": conclusion} if step == Status.COMPLETED else {}
        lifecycle.transition(request, step, source=Source.SYSTEM, data=done, **done, **fields)
        fields = {}
    return request


def deployers_group() -> Group:
    """The group the data migration creates; recreated after a transactional test's flush."""
    group, created = Group.objects.get_or_create(name="Deployers")
    if created:
        codenames = ("add_deploymentrequest", "view_deploymentrequest")
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="deployments", codename__in=codenames)
        )
    return group


def approvers_group() -> Group:
    """The Approvers group of the data migration; recreated after a transactional test's flush."""
    group, created = Group.objects.get_or_create(name="Approvers")
    if created:
        codenames = ("add_deploymentrequest", "view_deploymentrequest", "approve_deploymentrequest")
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="deployments", codename__in=codenames)
        )
    return group


def make_user(
    *,
    username: str,
    deployer: bool = False,
    approver: bool = False,
    staff: bool = False,
    superuser: bool = False,
) -> User:
    user = User.objects.create_user(username=username, password="pw", is_staff=staff, is_superuser=superuser)
    if deployer:
        user.groups.add(deployers_group())
    if approver:
        user.groups.add(approvers_group())
    return user


def spec_blobs(gh) -> dict[str, str]:
    """Each spec.yml under pods/ in the emulator's head, with its blob SHA."""
    return {
        path: blob_sha(data)
        for path, data in gh.state.head_files().items()
        if path.startswith("pods/") and path.endswith("/spec.yml")
    }


def graphql_oids(request) -> list[str]:
    """The blob ids a recorded GraphQL request asked for (its ``object(oid: "...")`` aliases)."""
    return re.findall(r'object\(oid: "([0-9a-f]+)"\)', request.json["query"])


def at_once(*calls: Callable[[], object]) -> list:
    """Run every call in its own thread, released together by a barrier; each thread closes its
    database connection. Returns the results in order (an exception stands for its result)."""
    barrier = threading.Barrier(len(calls), timeout=30)
    results: list = [None] * len(calls)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = calls[i]()
        except Exception as exc:  # reported by the caller's assertions
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def history(user, n: int, *, pod: tuple[str, str] | None = None) -> None:
    """``n`` finished requests, written in bulk as years of history would have left them: one
    per pod c0/prod, c1/prod, … or all of ``pod`` (customer, environment)."""
    done = {"status": Status.COMPLETED, "conclusion": "success", "requested_by": user, "mode": "edit"}
    done |= {"instance_name": "web", "instance_type": "t3.small", "waf_enabled": False, "inputs": {}}
    rows = [
        DeploymentRequest(
            customer=pod[0] if pod else f"c{i}",
            environment=pod[1] if pod else "prod",
            idempotency_key=uuid.uuid4(),
            **done,
        )
        for i in range(n)
    ]
    QuerySet(DeploymentRequest).bulk_create(rows, batch_size=1000)  # past the manager's pending-only guard


def sqlite_steps(function) -> int:
    """SQLite virtual-machine instructions ``function`` makes the database run (in hundreds)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    connection.ensure_connection()
    connection.connection.set_progress_handler(count, 100)
    try:
        function()
    finally:
        connection.connection.set_progress_handler(None, 0)
    return steps
