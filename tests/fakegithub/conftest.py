"""The emulator's own tests use the fixtures its pytest plugin provides."""

from fakegithub.pytest_plugin import fakegithub, fakegithub_server  # noqa: F401
