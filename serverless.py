"""The service for platforms that freeze the process between invocations (AWS Lambda, Vercel).

    serverless:handler    AWS Lambda (API Gateway HTTP or REST API, function URL, ALB) via Mangum
    serverless:app        an ASGI app that needs no lifespan events (Vercel's Python runtime)

The app is built at import (the platform's init phase) and started on the container's first
request by ``warm.StartOnce``, which keeps the database pool and the Redis connection open
across the invocations of a warm container (Mangum's own lifespan handling would open and
close them around every invocation, hence ``lifespan="off"``).

The hot tier is off here, whatever ``CACHE_LOCAL`` says: its coherence rests on a subscriber
that applies invalidations as they arrive, and a frozen process applies nothing. After a thaw
a request could read a record another container's write had already invalidated before the
subscriber read the backlog. A container serves one request at a time, so the hot tier would
save at most one ``MGET`` per hit and cost a second connection per container.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mangum import Mangum

from app import create_app
from middleware import CacheSettings
from settings import Settings, SettingsError
from warm import StartOnce

log = logging.getLogger("serverless")


def create_serverless_app() -> StartOnce:
    """The service from the environment, hot tier off, started on its first request.

    ``SECRET_KEY`` must be set: every container would otherwise sign tokens with a random key
    of its own, and a token would only work on the container that issued it.
    """
    settings = Settings.from_env()
    if settings.secret_key_generated:
        raise SettingsError("SECRET_KEY must be set for the serverless entry point: each "
                            "container would sign tokens with its own random key")
    cache_settings = replace(CacheSettings.from_env(), local_tier=False)
    app = StartOnce(create_app(settings, cache_settings=cache_settings))
    log.info("Serverless entry point: started on the first request, hot tier off")
    return app


app = create_serverless_app()
"""The ASGI application for serverless platforms: ``serverless:app``."""

handler = Mangum(app, lifespan="off")
"""The AWS Lambda handler: ``serverless.handler``."""
