"""``TORTOISE_ORM`` for tortoise-orm's own ``tortoise`` command (``[tool.tortoise]`` in
pyproject.toml): ``tortoise makemigrations``, ``tortoise history``, ``tortoise sqlmigrate``.

It reads ``DATABASE_URL`` as the service does (a PostgreSQL URL's libpq options translated by
``models.pg_url``), else the embedded SQLite file. To upgrade a database use
``python -m models.migrate``, which also takes the lock the service's start-up takes.
"""

from __future__ import annotations

import os

from models.db import tortoise_config
from settings import DEFAULT_DATABASE_URL, Settings, normalise_database_url

_settings = Settings(database_url=normalise_database_url(
    os.environ.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL))
_settings.ensure_data_dir()

TORTOISE_ORM = tortoise_config(_settings.database_url)
