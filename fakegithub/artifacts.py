"""Workflow run artifacts: listing a run's artifacts and downloading one (GitHub's 302 redirect)."""

from __future__ import annotations

from fakegithub.routes import Route

ROUTES: tuple[Route, ...] = ()
