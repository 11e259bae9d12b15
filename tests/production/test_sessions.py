"""accounts.sessions: a request reads its session, its user and the user's permissions in one
statement, with Django's answers (who is signed in, what they may do) unchanged.

Each test signs in with Django's test client (a real session row), then builds a request with
that session cookie and runs it through the session and authentication middleware as a
request would.
"""

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission, User
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from accounts.models import PortalSession
from accounts.sessions import AuthenticationMiddleware
from tests.helpers import make_user

DEPLOY = "deployments.add_deploymentrequest"


def _signed_in(user: User, backend: str = "accounts.backends.PortalModelBackend") -> Client:
    client = Client()
    client.force_login(user, backend=backend)
    return client


def _request(client: Client):
    """A request carrying the client's session cookie, through the session and auth middleware."""
    request = RequestFactory().get("/")
    request.COOKIES[settings.SESSION_COOKIE_NAME] = client.cookies[settings.SESSION_COOKIE_NAME].value
    SessionMiddleware(lambda r: None).process_request(request)
    AuthenticationMiddleware(lambda r: None).process_request(request)
    return request


def _users() -> list[User]:
    direct = make_user(username="direct")
    direct.user_permissions.add(Permission.objects.get(codename="view_deploymentrequest"))
    both = make_user(username="both", deployer=True, approver=True)
    both.user_permissions.add(Permission.objects.get(codename="view_deploymentrequest"))
    twice = make_user(username="twice", deployer=True)  # DEPLOY directly and through Deployers
    twice.user_permissions.add(Permission.objects.get(codename="add_deploymentrequest"))
    return [
        direct,
        both,
        twice,
        make_user(username="deployer", deployer=True),
        make_user(username="nobody"),
        make_user(username="root", superuser=True),
    ]


def test_session_user_and_permissions_are_one_statement_with_djangos_answers(db):
    for user in _users():
        expected = ModelBackend().get_all_permissions(User.objects.get(pk=user.pk))
        request = _request(_signed_in(user))
        with CaptureQueriesContext(connection) as queries:
            assert request.user.pk == user.pk and request.user.is_authenticated
            assert request.user.has_perm(DEPLOY) == (DEPLOY in expected or user.is_superuser)
            if not user.is_superuser:  # a superuser's has_perm asks no backend
                assert request.user.get_all_permissions() == expected
        assert len(queries) == 1, [q["sql"] for q in queries]
        assert 'FROM "accounts_portalsession"' in queries[0]["sql"]
        assert 'JOIN "auth_user"' in queries[0]["sql"]
    assert User.objects.get(username="both").get_all_permissions() >= {
        DEPLOY,
        "deployments.view_deploymentrequest",
    }


def test_the_session_row_names_its_user_and_signing_out_removes_it(db):
    user = make_user(username="dana", deployer=True)
    client = _signed_in(user)
    assert list(PortalSession.objects.values_list("user_id", flat=True)) == [user.pk]
    client.post("/accounts/logout/")
    assert not PortalSession.objects.filter(user_id=user.pk).exists()
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize(
    "change",
    ["deactivated", "password changed", "deleted"],
)
def test_an_account_changed_elsewhere_is_signed_out_on_its_next_request(db, change):
    user = make_user(username="dana", deployer=True)
    client = _signed_in(user)
    assert client.get("/requests/").status_code == 200
    if change == "deactivated":
        User.objects.filter(pk=user.pk).update(is_active=False)
    elif change == "password changed":
        user.set_password("another password")
        user.save()
    else:
        user.delete()
    request = _request(client)
    assert not request.user.is_authenticated
    response = client.get("/requests/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_a_removed_permission_is_gone_on_the_next_request(db):
    user = make_user(username="dana", deployer=True)
    client = _signed_in(user)
    assert _request(client).user.has_perm(DEPLOY)
    user.groups.clear()
    assert not _request(client).user.has_perm(DEPLOY)
    assert client.post("/deploy/", {}).status_code == 403


def test_the_session_data_decides_who_is_signed_in_not_the_column(db):
    """The column is only a join key: a row whose column names someone else is read the old way
    (the user of the session's own data), never as that other user."""
    dana = make_user(username="dana")
    root = make_user(username="root", superuser=True)
    client = _signed_in(dana)
    PortalSession.objects.update(user_id=root.pk)
    request = _request(client)
    with CaptureQueriesContext(connection) as queries:
        assert request.user.pk == dana.pk
        assert not request.user.has_perm(DEPLOY)
    assert len(queries) == 3  # session, then Django's user query, then the permissions


@pytest.mark.parametrize(
    ("backend", "inactive_signed_in"),
    [
        ("accounts.backends.PortalModelBackend", False),  # ModelBackend.user_can_authenticate
        ("accounts.github.PortalGitHubBackend", False),  # python-social-auth: active users only
        ("accounts.oidc.PortalOIDCBackend", True),  # mozilla-django-oidc's get_user: any account
    ],
)
def test_each_backend_keeps_its_own_rule_for_the_session_user(db, backend, inactive_signed_in):
    user = make_user(username="dana", deployer=True)
    client = _signed_in(user, backend=backend)
    request = _request(client)
    with CaptureQueriesContext(connection) as queries:
        assert request.session[BACKEND_SESSION_KEY] == backend
        assert request.user.pk == user.pk
    assert len(queries) == 1
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert _request(client).user.is_authenticated == inactive_signed_in


def test_the_migration_drops_the_rows_of_djangos_session_table(db):
    """Django's table can no longer sign anyone in (the engine reads PortalSession): its rows,
    session data included, are deleted when the new table is made."""
    import importlib
    from datetime import timedelta
    from types import SimpleNamespace

    from django.apps import apps
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    migration = importlib.import_module("accounts.migrations.0002_portal_session")
    Session.objects.create(
        session_key="x" * 32, session_data="old", expire_date=timezone.now() + timedelta(days=1)
    )
    kept = _signed_in(make_user(username="dana"))
    migration.forget_djangos_sessions(apps, SimpleNamespace(connection=connection))
    assert not Session.objects.exists()
    assert _request(kept).user.username == "dana"


def test_an_expired_session_signs_no_one_in(db):
    from datetime import timedelta

    from django.utils import timezone

    user = make_user(username="dana", deployer=True)
    client = _signed_in(user)
    PortalSession.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert not _request(client).user.is_authenticated
    response = client.get("/requests/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_an_async_save_names_the_user_too(db):
    """Django's async save builds the row in acreate_model_instance, not create_model_instance."""
    import asyncio

    from django.contrib.auth import SESSION_KEY

    from accounts.sessions import SessionStore

    user = make_user(username="dana")
    store = SessionStore(session_key="k" * 32)
    row = asyncio.run(store.acreate_model_instance({SESSION_KEY: str(user.pk)}))
    assert row.user_id == user.pk and row.session_key == "k" * 32


def test_clearsessions_clears_both_tables_of_expired_rows_only(db):
    from datetime import timedelta

    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.utils import timezone

    past, future = timezone.now() - timedelta(days=1), timezone.now() + timedelta(days=1)
    Session.objects.create(session_key="o" * 32, session_data="", expire_date=past)
    Session.objects.create(session_key="p" * 32, session_data="", expire_date=future)
    PortalSession.objects.create(session_key="q" * 32, session_data="", expire_date=past)
    kept = _signed_in(make_user(username="dana"))
    call_command("clearsessions")
    assert list(Session.objects.values_list("session_key", flat=True)) == ["p" * 32]
    assert PortalSession.objects.count() == 1 and _request(kept).user.username == "dana"


def test_a_custom_active_users_filter_is_the_github_backends_rule(db, settings):
    """python-social-auth's get_user applies SOCIAL_AUTH_ACTIVE_USERS_FILTER: so does the
    session's user for the GitHub backend."""
    settings.SOCIAL_AUTH_ACTIVE_USERS_FILTER = {"is_staff": True}
    backend = "accounts.github.PortalGitHubBackend"
    staff = _signed_in(make_user(username="sam", staff=True), backend=backend)
    plain = _signed_in(make_user(username="dana"), backend=backend)
    assert _request(staff).user.username == "sam"
    assert not _request(plain).user.is_authenticated
