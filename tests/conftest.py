import pytest
from django.contrib.auth.models import Group, User
from django.core.cache import cache

from deployments import github

pytest_plugins = ["fakegithub.pytest_plugin"]


@pytest.fixture
def gh(fakegithub, settings, db):
    """The GitHub emulator, with the portal pointed at it and no cached GitHub state."""
    settings.GITHUB_API_URL = fakegithub.api_url
    settings.GH_TOKEN = "test-token"
    settings.GH_REPO = "demo/pods"
    settings.GITHUB_WEBHOOK_SECRET = "test-webhook-secret"
    github._run_details_unsupported.clear()
    cache.clear()
    return fakegithub


def make_user(*, username: str, deployer: bool = False, staff: bool = False, superuser: bool = False) -> User:
    user = User.objects.create_user(username=username, password="pw", is_staff=staff, is_superuser=superuser)
    if deployer:
        user.groups.add(Group.objects.get(name="Deployers"))
    return user


@pytest.fixture
def deployer(db) -> User:
    return make_user(username="dana", deployer=True)


@pytest.fixture
def viewer(db) -> User:
    return make_user(username="victor")


@pytest.fixture
def deployer_client(client, deployer):
    client.force_login(deployer)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client
