# The service image, built from requirements.lock: every dependency pinned with == and checked
# against its sha256, so two builds of the same commit install the same files.
# Build: docker build -t sanic-cached-api .
# Run:   docker run -p 8000:8000 -e DATABASE_URL=postgres://... -e REDIS_URL=rediss://... \
#          -e SECRET_KEY=... -e WORKERS=2 sanic-cached-api
# Or the whole stack (app, PostgreSQL, Redis): SECRET_KEY=... docker compose up --build
# Release step (before starting a new version; an empty database is migrated at start-up):
#        docker run -e DATABASE_URL=postgres://... sanic-cached-api python -m models.migrate
# After changing setup.cfg's install_requires, re-lock with the one command: scripts/lock
#
# Python 3.11 on Debian 12 (bookworm) slim, pinned to a full patch tag: rebuilds get the same
# interpreter.  Pin the digest too (python:3.11.14-slim-bookworm@sha256:...) in your registry.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    WORKERS=1

WORKDIR /app

# Dependencies in their own layer, rebuilt only when the lock changes, not on every code change.
# --require-hashes refuses any file whose sha256 is not in the lock; --no-deps installs exactly
# the lock's list (it is complete: scripts/lock resolved it), nothing pip would resolve today.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

# Then the project itself, a regular (not editable) install into site-packages, built with the
# setuptools the lock just installed (sanic depends on it) rather than whatever an isolated
# build environment would download today.  The sources are a build input only, not kept in /app.
COPY . /tmp/src
RUN pip install --no-cache-dir --no-deps --no-build-isolation /tmp/src \
    && rm -rf /tmp/src \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/data \
    && chown app /app/data

# The connection checker stays where upstash.md runs it from, the working directory:
# docker run --rm -e REDIS_URL=... <image> python test_redis_connection.py (it is installed
# too, with checker_rest, so python -m test_redis_connection works anywhere).
COPY test_redis_connection.py ./

USER 10001

EXPOSE 8000

# Liveness only (no database or Redis call): python's urllib, no curl in a slim image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=3)"]

# app.main() reads HOST, PORT (Render and Railway set it), WORKERS and BACKLOG from the
# environment; the sanic CLI has no backlog option and would leave Sanic's 100, which drops
# connections under 1,000 concurrent clients. Exec form: Python is PID 1 and gets SIGTERM.
CMD ["python", "-m", "app"]
