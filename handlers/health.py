"""Liveness: answers without any I/O."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from handlers.responses import json_response

bp = Blueprint("health")


@bp.get("/health")
async def health(request: Request) -> HTTPResponse:
    """Liveness probe: no database or cache call."""
    return json_response({"status": "ok"})
