"""The service as a module-level ASGI application, for ASGI servers.

    uvicorn asgi:app --host 0.0.0.0 --port 8000

A Sanic app is an ASGI callable: the server's lifespan ``startup`` runs the
``before_server_start`` and ``after_server_start`` listeners (database, schema, Redis, the
hot tier's subscriber, the metrics flush), ``shutdown`` the two stop events (sanic
``asgi.Lifespan``). What only Sanic's own server does is left out: the ``main_process_*``
listeners, so each ASGI worker process keeps its own metrics registry (``/metrics`` answers
for the process that serves the scrape) and its own local generations. Run one worker per
process (``uvicorn`` without ``--workers``, several instances behind the load balancer) or
``python app.py`` for several workers that share them.

For AWS Lambda and other platforms that freeze the process between invocations, use
``serverless`` instead: it starts the app once per container and turns the hot tier off.
"""

from __future__ import annotations

from app import create_app

app = create_app()
"""The ASGI application: ``uvicorn asgi:app``."""
