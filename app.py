"""Application factory and entry point.

Run with ``python app.py`` (reads HOST, PORT, WORKERS from the environment) or
``sanic app:create_app --factory --host 0.0.0.0 --port 8000 --workers 2``.
"""

from __future__ import annotations

import logging
import os
from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader
from sanic_ext.extensions.http.extension import HTTPExtension

from handlers import blueprints
from handlers.auth import install_login_guards
from handlers.cors import install_cors
from handlers.docs import describe_security
from handlers.docs_ui import LocalUIOpenAPIExtension
from handlers.errors import install_error_handler
from cache_rules import install_service_cache
from handlers.metrics import CacheMetricsObserver, install_metrics
from handlers.responses import dumps
from middleware import CacheSettings
from models.db import DatabaseUnreachableError, describe_database, register_database
from models.schema import SchemaNotCurrentError
from models.seed import register_demo_seed
from observability.logging import configure_logging
from observability.request_id import install_request_id
from serving import accept
from settings import Settings, settings_warnings

log = logging.getLogger("app")

APP_NAME = "sanic_cached_api"


def create_app(settings: Settings | None = None, *, cache_backend: object | None = None,
               cache_settings: CacheSettings | None = None) -> Sanic:
    """Build the service: blueprints, database, error handling and the response cache.

    ``cache_settings`` replaces ``CacheSettings.from_env()`` (its ``redis_url`` still comes
    from ``settings``): ``serverless`` turns the hot tier off with it.
    """
    key_generated_here = False
    if not isinstance(settings, Settings):
        # `sanic app:create_app --factory` calls the factory with its argparse Namespace.
        settings = None
    if settings is None:
        settings = Settings.from_env()
        if settings.secret_key_generated:
            # Sanic's main process builds the app before it spawns the workers, which inherit
            # the environment: publishing the generated key makes every worker sign and verify
            # tokens with the same one.
            os.environ["SECRET_KEY"] = settings.secret_key
            key_generated_here = True
    settings.ensure_data_dir()
    configure_logging(settings.log_level)
    if key_generated_here:
        _warn_generated_key()
    if not os.environ.get("SANIC_WORKER_NAME"):  # once, from the main process, not per worker
        for line in settings_warnings():
            log.warning("%s", line)
    # Sanic's default log config adds a handler per sanic.* logger (lines came out twice).
    app = Sanic(APP_NAME, dumps=dumps, configure_logging=False)
    app.config.update(
        REQUEST_MAX_SIZE=settings.request_max_size,
        FALLBACK_ERROR_FORMAT="json",
        # sanic-ext serves the description (/docs/openapi.json); the Swagger UI page is
        # handlers.docs_ui, with its assets served locally (sanic-ext's loads them from a CDN).
        OAS_UI_DEFAULT=None,
        OAS_URL_PREFIX="/docs",
        OAS_UI_REDOC=False,
        OAS_UI_SWAGGER=False,
        # sanic-ext's CORS stays off: handlers.cors (CORS_ORIGINS) keeps the cache working.
        CORS=False,
        # The real client address behind Render's, Railway's or Heroku's proxy (login limits).
        PROXIES_COUNT=settings.proxies_count,
        FORWARDED_SECRET=settings.forwarded_secret,
    )
    app.ctx.settings = settings
    # The automatic OPTIONS routes answer CORS preflights; without CORS they would only cost
    # start-up time. Automatic HEAD stays: the cache answers HEAD from the GET entry.
    # Only the extensions the service uses: sanic-ext's dependency injection dispatches a
    # signal on every request (about 8% of a cache hit's time) and nothing here injects.
    app.extend(extensions=[LocalUIOpenAPIExtension, HTTPExtension], built_in_extensions=False,
               config={"oas_autodoc": True, "http_auto_options": bool(settings.cors_origins)})
    app.ext.openapi.describe(
        "Sanic cached API",
        version="0.1.0",
        description=(
            "A social/jobs REST API whose GET routes are served by a Redis-backed response cache."
            " Writes need `Authorization: Bearer <token>` from /api/auth/register or /login."
        ),
    )
    describe_security(app)
    install_error_handler(app)
    install_request_id(app)
    if settings.cors_origins:
        install_cors(app, settings.cors_origins)
    register_database(app, settings.database_url, retry_seconds=settings.database_retry_seconds,
                      migrate_pending=settings.database_auto_migrate)
    if settings.seed_demo:
        register_demo_seed(app, settings.database_url)
    install_login_guards(app, settings)
    for bp in blueprints():
        app.blueprint(bp)
    metrics = install_metrics(app)
    if settings.cache_enabled:
        install_service_cache(app, settings, backend=cache_backend,
                              observer=CacheMetricsObserver(metrics),
                              cache_settings=cache_settings)
    else:
        log.info("Response cache disabled (CACHE_ENABLED=false)")

    log.debug("App created for %s", describe_database(settings.database_url))
    return app


def _warn_generated_key() -> None:
    # Logged once, by the process that generated the key (workers receive it).
    log.warning("SECRET_KEY is not set: using a random development key; tokens will not "
                "survive a restart (set SECRET_KEY in production)")


def serving_app(settings: Settings) -> Sanic:
    """The app as each worker of ``python app.py`` builds it, with its event loop set up.

    Sanic's workers are new processes that build the app from this factory and only then make
    their event loop: the uvloop policy installed here (kept by Sanic, as it is uvloop's) gives
    them loops that accept every waiting connection per pass (``serving.accept``).
    """
    app = create_app(settings)
    # SANIC_USE_UVLOOP=false keeps asyncio's own loop, which accepts greedily already.
    if settings.accept_all and app.config.USE_UVLOOP is not False:
        accept.install()
    return app


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if settings.secret_key_generated:
        _warn_generated_key()
    loader = AppLoader(factory=partial(serving_app, settings))
    app = loader.load()
    app.prepare(host=settings.host, port=settings.port, workers=settings.workers,
                debug=settings.debug, access_log=False, backlog=settings.backlog)
    try:
        Sanic.serve(primary=app, app_loader=loader)
    except (SchemaNotCurrentError, DatabaseUnreachableError) as exc:
        # One line that names the command or the cause, not a traceback through Sanic's
        # start-up.
        log.critical("Not starting: %s", exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
