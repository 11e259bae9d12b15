"""The environment the test suite runs in, set before Django loads (``-p tests.environment``).

Tests run with production settings (DEBUG off) and never with a developer's real GitHub
credentials: each test that needs GitHub points the portal at the emulator.
"""

import os

os.environ.update(
    {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
        "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "GH_TOKEN": "",
        "GH_REPO": "",
        "GITHUB_APP_ID": "",
        "GITHUB_APP_PRIVATE_KEY": "",
        "GITHUB_APP_PRIVATE_KEY_PATH": "",
        "GITHUB_APP_INSTALLATION_ID": "",
        "GITHUB_WEBHOOK_SECRET": "",
        "GITHUB_API_URL": "http://127.0.0.1:9",
        "PORTAL_SANDBOX": "false",
        # Most tests follow a request through the one-run deploy (plan and apply in one run),
        # which AUTO_APPLY_ENVIRONMENTS keeps for listed environments. The review flow (plan,
        # approval, apply: every pod by default) is tested with the shipped defaults restored,
        # by the `review_flow` fixture (tests/conftest.py) and the review tests' own settings.
        "AUTO_APPLY_ENVIRONMENTS": "*",
        "APPROVAL_REQUIRED_ENVIRONMENTS": "",
    }
)
