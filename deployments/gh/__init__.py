"""Everything the portal asks of GitHub. The only package that imports PyGithub.

Functions read settings when called, return plain dataclasses and raise the portal's own
``GitHubError`` subclasses, so callers never see a PyGithub object or exception.

Callers write ``from deployments import gh`` and use the names below. The modules: ``errors``
(the portal's exceptions, translated from PyGithub's), ``client`` (credentials, the configured
PyGithub clients and what the process remembers about GitHub: ``state``), ``specs`` (spec.yml
blobs), ``runs`` (dispatching the deploy workflow, following its runs), ``health`` (the /health
probe). Names with a leading underscore are shared between these modules only.
"""

from .client import actions_url, auth_kind, state, web_url
from .errors import (
    GitHubAPIError,
    GitHubAuthError,
    GitHubError,
    GitHubNotFoundError,
    GitHubPermissionError,
    GitHubRateLimitError,
    GitHubUnavailableError,
    GitHubValidationError,
)
from .health import HealthReport, health_probe
from .runs import (
    DispatchResult,
    RunState,
    dispatch,
    find_run,
    foreign_run_reason,
    get_run,
    is_run_url,
    run_state_from_payload,
)
from .specs import (
    GRAPHQL_BATCH,
    SpecTree,
    TreeEntry,
    get_blob_text,
    get_blob_texts,
    get_spec_tree,
    rate_limit_remaining,
)

reset = state.reset

__all__ = [
    "GRAPHQL_BATCH",
    "DispatchResult",
    "GitHubAPIError",
    "GitHubAuthError",
    "GitHubError",
    "GitHubNotFoundError",
    "GitHubPermissionError",
    "GitHubRateLimitError",
    "GitHubUnavailableError",
    "GitHubValidationError",
    "HealthReport",
    "RunState",
    "SpecTree",
    "TreeEntry",
    "actions_url",
    "auth_kind",
    "dispatch",
    "find_run",
    "foreign_run_reason",
    "get_blob_text",
    "get_blob_texts",
    "get_run",
    "get_spec_tree",
    "health_probe",
    "is_run_url",
    "reset",
    "rate_limit_remaining",
    "run_state_from_payload",
    "state",
    "web_url",
]
