"""Untrusted input end to end: form values and repository content never crash, hang or 5xx the
portal. A bad value is a 400 naming the field, with nothing dispatched; a bad spec.yml is one
invalid row with a reason while every other pod is still listed."""

import time

import pytest

from deployments import podspec
from deployments.models import DeploymentRequest
from tests.helpers import EDIT_ACME_PROD, NEW_POD, dispatches, form

# Each once passed (a trailing newline did, through a `$`-anchored regex) or could: a pod named
# "acme\n" escaped the per-pod lock and the duplicate-pod check, and the workflow wrote a
# directory "acme\n" and a two-line GITHUB_OUTPUT.
HOSTILE_VALUES = [
    ("customer", "acme\n"),
    ("customer", "\nacme"),
    ("customer", "acme\r\n"),
    ("customer", "acme\t"),
    ("customer", "ac\x00me"),
    ("customer", "acme\x85"),
    ("customer", "ac\u200bme"),
    ("environment", "prod\n"),
    ("environment", "prod\u2028"),
    ("environment", "prod\u2029"),
    ("environment", "\ufeffprod"),
    ("instance_name", "acme-prod-web\n"),
    ("instance_name", "acme-prod-web\ninstance_type: p5.48xlarge"),
    ("instance_name", "acme\u200d-prod-web"),
    ("instance_type", "t3.large\u200b"),
    ("instance_type", "\u202et3.large"),
]


@pytest.mark.parametrize("url", ["/deploy/preview/", "/deploy/"])
@pytest.mark.parametrize(("field", "value"), HOSTILE_VALUES, ids=repr)
def test_hostile_value_is_400_with_field_error_and_no_dispatch(gh, deployer_client, url, field, value):
    # A new pod "acme\n"/prod next to the existing acme/prod: the duplicate check must not be
    # the only thing in the way.
    response = deployer_client.post(
        url, form(NEW_POD | {"customer": "acme", "environment": "prod", field: value})
    )
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert dispatches(gh) == []
    assert not DeploymentRequest.objects.exists()


def test_trailing_newline_in_an_edit_is_named_not_treated_as_another_pod(gh, deployer_client):
    response = deployer_client.post("/deploy/", form(EDIT_ACME_PROD, customer="acme\n"))
    assert response.status_code == 400
    assert response.context["form"].errors["customer"] == ["Customer must not contain a line break (U+000A)"]
    assert dispatches(gh) == []


def nested(opening: str, closing: str, depth: int) -> str:
    return f"customer: {opening * depth}x{closing * depth}\n"


HOSTILE_SPECS = {
    # Tens of KiB of brackets crashed a gunicorn worker with SIGSEGV inside libyaml.
    "brackets": nested("[", "]", 40_000),
    "braces": nested("{a: ", "}", 15_000),
    "brackets under the size limit": nested("[", "]", 2_000),
    "block sequences": "- " * 2_000 + "x\n",
    "billion laughs": "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)),
    "python tag": "!!python/object/apply:os.system ['true']\n",
    "two documents": "customer: evil\n---\ncustomer: evil\n",
    "trailing newline in a value": 'customer: "evil\\n"\nenvironment: prod\ninstance_name: evil-web\n'
    "instance_type: t3.micro\nwaf_enabled: false\n",
    "NUL": "customer: evil\x00\n",
    "oversize": "customer: evil\n" + "#" * 200_000 + "\n",
}


@pytest.mark.parametrize("text", HOSTILE_SPECS.values(), ids=HOSTILE_SPECS.keys())
def test_hostile_spec_is_one_invalid_row_and_the_rest_are_listed(gh, viewer_client, text):
    gh.put_file("pods/evil/prod/spec.yml", text)
    started = time.perf_counter()
    response = viewer_client.get("/")
    assert time.perf_counter() - started < 5
    assert response.status_code == 200
    pods = {pod.key: pod for pod in response.context["pods"]}
    assert len(pods) == 7
    assert pods["evil/prod"].spec is None
    assert pods["evil/prod"].error
    assert pods["acme/prod"].spec.instance_name == "acme-prod-web"
    assert pods["umbrella/dev"].spec is not None


def test_deeply_nested_spec_says_why_it_is_invalid(gh, viewer_client):
    gh.put_file("pods/evil/prod/spec.yml", nested("[", "]", 1_000))
    pods = {pod.key: pod for pod in viewer_client.get("/").context["pods"]}
    assert "a spec is one flat mapping of field: value" in pods["evil/prod"].error


def test_edit_page_of_a_hostile_spec_still_opens(gh, viewer_client):
    gh.put_file("pods/evil/prod/spec.yml", nested("[", "]", 40_000))
    assert viewer_client.get("/pods/evil/prod/edit/").status_code == 200


def test_size_limit_is_exported_for_the_inventory():
    # The inventory refuses blobs over this size by their size in the tree, before download.
    assert podspec.MAX_SPEC_BYTES == 4096
