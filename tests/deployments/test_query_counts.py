"""SQL statements and write transactions the portal spends on a deploy (issue 18: deploy overhead).

What POST /deploy/ costs the database on top of GitHub's round trip, after a preview (the
inventory is warm): the session with its user and their permissions (one query), the inventory's
cache entry, then two write transactions: the request is saved (with its ``pending`` event)
before GitHub is called, and moved to ``dispatched`` (with its event) after. On PostgreSQL each
is one statement in autocommit (lifecycle: a data-modifying WITH), as psycopg would send BEGIN
and COMMIT as round trips of their own. A key seen before is found by the INSERT's unique
constraint, not by a lookup first.
A change that adds a statement or a transaction fails here and must say why it is worth it.
"""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments.models import DeploymentEvent, DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, form

# SELECTs: the session with its user and their permissions (accounts.sessions), the inventory cache entry.
MAX_SELECTS = 2
# Writes: INSERT request + INSERT event (one transaction), UPDATE request + INSERT event (another).
WRITES = ["INSERT", "INSERT", "UPDATE", "INSERT"]
# On PostgreSQL each pair is one statement, outside any transaction block.
POSTGRES_WRITES = [
    (
        'WITH written AS (INSERT INTO "deployments_deploymentrequest"',
        'INSERT INTO "deployments_deploymentevent"',
    ),
    ('WITH written AS (UPDATE "deployments_deploymentrequest"', 'INSERT INTO "deployments_deploymentevent"'),
]


def _verb(sql: str) -> str:
    return sql.split(None, 1)[0].upper()


def test_deploy_spends_four_reads_and_two_write_transactions(gh_tx, deployer_client):
    data = form(EDIT_ACME_PROD)
    deployer_client.post("/deploy/preview/", data)  # the inventory is warm, as after a preview
    autocommit: list[bool] = []

    def record(execute, sql, *args):
        autocommit.append(connection.get_autocommit() and not connection.in_atomic_block)
        return execute(sql, *args)

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(record):
        response = deployer_client.post("/deploy/", data)
    assert response.status_code == 302
    request = DeploymentRequest.objects.get()
    assert response["Location"] == f"/requests/{request.pk}/"
    run = gh_tx.runs[-1]
    assert (request.status, request.run_id, request.run_url) == ("dispatched", run["id"], run["html_url"])
    # Each move's event is there (written in the move's transaction: lifecycle.transition()).
    assert list(DeploymentEvent.objects.filter(request=request).values_list("to_status", flat=True)) == [
        "pending",
        "dispatched",
    ]
    verbs = [_verb(q["sql"]) for q in captured.captured_queries]
    statements = [v for v in verbs if v in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")]
    if connection.vendor == "postgresql":
        writes = [
            (q["sql"], free)
            for q, free in zip(captured.captured_queries, autocommit, strict=True)
            if _verb(q["sql"]) != "SELECT"
        ]
        assert len(writes) == len(POSTGRES_WRITES), verbs
        for (sql, free), (write, event) in zip(writes, POSTGRES_WRITES, strict=True):
            assert sql.startswith(write) and event in sql, sql
            assert free, "a write ran in a transaction block: psycopg sent BEGIN and COMMIT round trips"
    else:
        assert [v for v in statements if v != "SELECT"] == WRITES, verbs
    assert statements.count("SELECT") <= MAX_SELECTS, verbs
    assert "SAVEPOINT" not in verbs, verbs  # no nested transaction
    if connection.vendor == "sqlite":  # BEGIN/COMMIT are visible statements on SQLite only
        assert verbs.count("BEGIN") == verbs.count("COMMIT") == 2, verbs


def test_permissions_are_read_in_one_query_with_djangos_answers(db, django_assert_num_queries):
    """accounts.backends.PortalModelBackend: the user's and their groups' permissions together."""
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.models import Permission, User

    from tests.helpers import make_user

    direct = make_user(username="direct")
    direct.user_permissions.add(Permission.objects.get(codename="view_deploymentrequest"))
    both = make_user(username="both", deployer=True, approver=True)
    both.user_permissions.add(Permission.objects.get(codename="view_deploymentrequest"))
    users = [
        direct,
        both,
        make_user(username="deployer", deployer=True),
        make_user(username="nobody"),
        make_user(username="root", superuser=True),
    ]
    inactive = make_user(username="gone", deployer=True)
    inactive.is_active = False
    inactive.save()
    for user in [*users, inactive]:
        expected = ModelBackend().get_all_permissions(User.objects.get(pk=user.pk))
        fresh = User.objects.get(pk=user.pk)
        with django_assert_num_queries(0 if user is inactive else 1):
            assert fresh.get_all_permissions() == expected
            assert fresh.has_perm("deployments.add_deploymentrequest") == (
                "deployments.add_deploymentrequest" in expected
            )
    assert User.objects.get(username="deployer").has_perm("deployments.add_deploymentrequest")
    assert not User.objects.get(username="nobody").has_perm("deployments.add_deploymentrequest")
    assert User.objects.get(username="direct").has_perm("deployments.view_deploymentrequest")
