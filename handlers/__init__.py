"""HTTP handlers: thin blueprints that validate, query and return."""

from __future__ import annotations

from sanic import Blueprint

from handlers import auth, docs_ui, health, jobs, posts, users


def blueprints() -> list[Blueprint]:
    """Every blueprint of the service, in registration order."""
    return [health.bp, docs_ui.bp, auth.bp, posts.bp, jobs.bp, users.bp]
