# The service image.  Build: docker build -t sanic-cached-api .
# Run:   docker run -p 8000:8000 -e DATABASE_URL=postgres://... -e REDIS_URL=rediss://... \
#          -e SECRET_KEY=... -e WORKERS=2 sanic-cached-api
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

# Dependencies in their own layer: it is rebuilt only when setup.cfg changes, not on every code
# change.  The list comes from setup.cfg's install_requires, the one the README's
# scripts/bootstrap installs, so the image and a local checkout cannot drift apart.
COPY setup.cfg pyproject.toml ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(c['options']['install_requires'])" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code, installed the way scripts/bootstrap does it (pip install -e .), without
# touching the dependency layer.
COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/data \
    && chown app /app/data

USER 10001

EXPOSE 8000

# Liveness only (no database or Redis call): python's urllib, no curl in a slim image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=3)"]

# Shell form only to expand PORT and WORKERS (Render and Railway set PORT); exec hands PID 1 to
# Sanic so docker stop's SIGTERM reaches it.
CMD ["sh", "-c", "exec sanic app:create_app --factory --host 0.0.0.0 --port ${PORT:-8000} --workers ${WORKERS:-1}"]
