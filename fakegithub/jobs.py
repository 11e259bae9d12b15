"""A run's jobs, steps and check-run annotations: how a failed run says why."""

from __future__ import annotations

from fakegithub.routes import Route

ROUTES: tuple[Route, ...] = ()
