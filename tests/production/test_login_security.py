"""Sign-in: wrong passwords lock a username and address out (portal and admin login), an
administrator unlocks; only login and logout of django.contrib.auth are routed."""

import json
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.utils import timezone
from pytest_django.asserts import assertContains

from tests.helpers import logged_in_client, make_user
from tests.production.test_settings import PRODUCTION_ENV, run_manage

LIMIT = 5  # LOGIN_FAILURE_LIMIT's default
LOCKED = "Too many failed sign-in attempts"


@pytest.fixture
def dana(db):
    return make_user(username="dana", deployer=True)


@pytest.fixture
def root(db):
    return make_user(username="root", staff=True, superuser=True)


def sign_in(client, username: str, password: str, *, path: str = "/accounts/login/", **extra):
    return client.post(path, {"username": username, "password": password}, **extra)


def fail(client, username: str, times: int, *, path: str = "/accounts/login/", **extra) -> list[int]:
    return [sign_in(client, username, f"wrong-{i}", path=path, **extra).status_code for i in range(times)]


def test_wrong_passwords_lock_the_account_out_even_for_the_right_password(client, dana):
    assert fail(client, "dana", LIMIT) == [200] * (LIMIT - 1) + [429]

    response = sign_in(client, "dana", "pw")

    assert response.status_code == 429
    assertContains(response, LOCKED, status_code=429)
    assertContains(response, "Try again in 15 minutes", status_code=429)
    assertContains(response, "ask an administrator to unlock", status_code=429)
    assert client.get("/requests/").status_code == 302  # not signed in


def test_wrong_passwords_below_the_limit_still_let_the_right_one_in(client, dana):
    fail(client, "dana", LIMIT - 1)

    assert sign_in(client, "dana", "pw").status_code == 302
    assert client.get("/requests/").status_code == 200


def test_a_successful_sign_in_clears_the_count(client, dana):
    fail(client, "dana", LIMIT - 1)
    sign_in(client, "dana", "pw")
    client.post("/accounts/logout/")

    fail(client, "dana", LIMIT - 1)

    assert sign_in(client, "dana", "pw").status_code == 302


def test_another_user_from_the_same_address_still_signs_in(client, dana):
    make_user(username="olga", deployer=True)
    fail(client, "dana", LIMIT)

    assert sign_in(client, "olga", "pw").status_code == 302


def test_the_same_user_from_another_address_still_signs_in(client, dana):
    fail(client, "dana", LIMIT)

    assert sign_in(client, "dana", "pw", REMOTE_ADDR="198.51.100.7").status_code == 302


def test_a_forwarded_for_header_does_not_change_the_address_by_default(client, dana):
    fail(client, "dana", LIMIT)

    assert sign_in(client, "dana", "pw", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429


def test_admin_login_is_throttled_too(client, root):
    assert fail(client, "root", LIMIT, path="/admin/login/") == [200] * (LIMIT - 1) + [429]

    response = sign_in(client, "root", "pw", path="/admin/login/")

    assertContains(response, LOCKED, status_code=429)
    assert client.get("/admin/").status_code == 302


def test_the_lockout_ends_after_the_cool_off(client, dana):
    fail(client, "dana", LIMIT)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert sign_in(client, "dana", "pw").status_code == 302


def test_the_admin_lists_the_lockout_and_deleting_it_unlocks(client, dana, root):
    fail(client, "dana", LIMIT)
    admin_client = logged_in_client(root)
    changelist = admin_client.get("/admin/axes/accessattempt/")
    assertContains(changelist, "dana")
    assertContains(changelist, "Locked Out")

    admin_client.post(
        "/admin/axes/accessattempt/",
        {
            "action": "delete_selected",
            "_selected_action": list(AccessAttempt.objects.values_list("pk", flat=True)),
            "post": "yes",
        },
    )

    assert not AccessAttempt.objects.exists()
    assert sign_in(client, "dana", "pw").status_code == 302


def test_axes_reset_username_unlocks(client, dana):
    fail(client, "dana", LIMIT)

    call_command("axes_reset_username", "dana")

    assert sign_in(client, "dana", "pw").status_code == 302


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/password_reset/",
        "/accounts/password_reset/done/",
        "/accounts/reset/x/y/",
        "/accounts/reset/done/",
        "/accounts/password_change/",
        "/accounts/password_change/done/",
    ],
)
def test_password_reset_and_change_pages_do_not_exist(client, db, path):
    assert client.get(path).status_code == 404
    assert client.post(path, {"email": "dana@example.com"}).status_code == 404


CLIENT_ADDRESS = """
import json
from django.test import RequestFactory
from axes.helpers import get_client_ip_address
factory = RequestFactory()
cases = {
    "direct": {"REMOTE_ADDR": "192.0.2.10"},
    "forwarded": {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},
    "spoofed": {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9"},
    "two proxies": {"REMOTE_ADDR": "10.0.0.3", "HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.9, 10.0.0.2"},
}
print(json.dumps({name: get_client_ip_address(factory.get("/", **meta)) for name, meta in cases.items()}))
"""


def client_addresses(**env: str) -> dict:
    result = run_manage("shell", "-c", CLIENT_ADDRESS, env=PRODUCTION_ENV | env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_client_address_is_the_connections_unless_proxies_are_trusted():
    assert client_addresses() == {
        "direct": "192.0.2.10",
        "forwarded": "10.0.0.2",
        "spoofed": "10.0.0.2",
        "two proxies": "10.0.0.3",
    }


def test_behind_one_trusted_proxy_the_client_address_is_the_one_it_saw():
    assert client_addresses(TRUSTED_PROXY_COUNT="1") == {
        "direct": "192.0.2.10",
        "forwarded": "203.0.113.9",
        "spoofed": "203.0.113.9",
        "two proxies": "10.0.0.2",
    }


def test_behind_two_trusted_proxies_the_client_address_is_the_one_the_first_saw():
    assert client_addresses(TRUSTED_PROXY_COUNT="2")["two proxies"] == "203.0.113.9"
