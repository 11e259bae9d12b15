"""An emulator of the GitHub REST API subset the portal uses (sandbox backend and test double).

Start it in-process and point PyGithub at it::

    from fakegithub import FakeGitHub

    gh = FakeGitHub(repo="demo/pods", specs_dir="pods").start()
    github.Github(auth=github.Auth.Token("test-token"), base_url=gh.api_url)

or run ``python -m fakegithub --help``. Tests use the ``fakegithub`` fixture from
``fakegithub.pytest_plugin``. Responses follow GitHub's OpenAPI schemas. No Django here.
"""

from fakegithub.server import Delivery, FakeGitHub, Fault, RecordedRequest

__all__ = ["Delivery", "FakeGitHub", "Fault", "RecordedRequest"]
