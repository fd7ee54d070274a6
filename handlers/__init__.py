"""HTTP handlers: thin blueprints that validate, query and return."""

from __future__ import annotations

from sanic import Blueprint

from handlers import health


def blueprints() -> list[Blueprint]:
    return [health.bp]
