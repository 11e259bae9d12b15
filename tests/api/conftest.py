import pytest
from django.test import Client

from api.models import ApiToken
from tests.helpers import make_user


class ApiClient:
    """Django's test client speaking JSON with a bearer token, as a script would."""

    def __init__(self, token: str | None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **headers):
        return self.client.get(path, headers={**self.headers, **headers})

    def post(self, path: str, data=None, **headers):
        return self.client.post(
            path,
            data if data is not None else {},
            content_type="application/json",
            headers={**self.headers, **headers},
        )


def token_for(user, **kwargs) -> str:
    _, token = ApiToken.issue(user=user, name=kwargs.pop("name", f"{user.username}'s script"), **kwargs)
    return token


@pytest.fixture
def api_deployer(deployer):
    return ApiClient(token_for(deployer))


@pytest.fixture
def api_viewer(viewer):
    return ApiClient(token_for(viewer))


@pytest.fixture
def lead(db):
    return make_user(username="lead", deployer=True, approver=True)


@pytest.fixture
def api_lead(lead):
    return ApiClient(token_for(lead))
