"""The emulator's ETags are specific to the token that got them, as GitHub's are."""

import requests

from tests.fakegithub.apphelpers import INSTALLATION_ID, app_jwt, configure_app

SPEC = "/repos/demo/pods/contents/pods/acme/prod/spec.yml"


def get(gh, token: str, etag: str | None = None) -> requests.Response:
    headers = {"Authorization": f"token {token}", **({"If-None-Match": etag} if etag else {})}
    return requests.get(gh.api_url + SPEC, headers=headers, timeout=5)


def installation_token(gh) -> str:
    response = requests.post(
        f"{gh.api_url}/app/installations/{INSTALLATION_ID}/access_tokens",
        headers={"Authorization": f"Bearer {app_jwt(configure_app(gh))}"},
        timeout=5,
    )
    return response.json()["token"]


def test_another_tokens_etag_answers_200_and_spends_the_limit(fakegithub):
    first, second = installation_token(fakegithub), installation_token(fakegithub)
    etag = get(fakegithub, first).headers["ETag"]
    same = get(fakegithub, first, etag)
    other = get(fakegithub, second, etag)
    assert same.status_code == 304
    assert other.status_code == 200
    assert other.headers["ETag"] != etag
    assert int(other.headers["x-ratelimit-remaining"]) == int(same.headers["x-ratelimit-remaining"]) - 1
