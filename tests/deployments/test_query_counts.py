"""SQL statements and write transactions the portal spends on a deploy (issue 18: deploy overhead).

What POST /deploy/ costs the database on top of GitHub's round trip, after a preview (the
inventory is warm): the session, the user and its permissions, the inventory's cache entry,
the idempotency-key lookup, then two write transactions: the request is saved (with its
``pending`` event) before GitHub is called, and moved to ``dispatched`` (with its event) after.
A change that adds a statement or a transaction fails here and must say why it is worth it.
"""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments.models import DeploymentEvent, DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, form

# SELECTs: session, user, user permissions, group permissions, inventory cache entry, request by key.
MAX_SELECTS = 6
# Writes: INSERT request + INSERT event (one transaction), UPDATE request + INSERT event (another).
WRITES = ["INSERT", "INSERT", "UPDATE", "INSERT"]


def _verb(sql: str) -> str:
    return sql.split(None, 1)[0].upper()


def test_deploy_spends_six_reads_and_two_write_transactions(gh_tx, deployer_client):
    data = form(EDIT_ACME_PROD)
    deployer_client.post("/deploy/preview/", data)  # the inventory is warm, as after a preview
    with CaptureQueriesContext(connection) as captured:
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
    statements = [v for v in verbs if v in ("SELECT", "INSERT", "UPDATE", "DELETE")]
    assert [v for v in statements if v != "SELECT"] == WRITES, verbs
    assert statements.count("SELECT") <= MAX_SELECTS, verbs
    assert "SAVEPOINT" not in verbs, verbs  # no nested transaction
    if connection.vendor == "sqlite":  # BEGIN/COMMIT are visible statements on SQLite only
        assert verbs.count("BEGIN") == verbs.count("COMMIT") == 2, verbs
