"""The bench's own PostgreSQL database: create, seed with ``models.seed``, read fixtures, drop.

The PostgreSQL server is shared: the bench only ever creates and drops databases named
``bench_<random>`` that it created itself.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent


def _dsn(server_url: str, dbname: str) -> str:
    base = server_url.rstrip("/").replace("postgres://", "postgresql://", 1)
    return f"{base}/{dbname}"


@dataclass(frozen=True)
class BenchDatabase:
    """A database the bench created on ``server_url`` (``postgresql://user@host:port``)."""

    server_url: str
    name: str

    @property
    def url(self) -> str:
        """The service's spelling (``postgres://``)."""
        return _dsn(self.server_url, self.name).replace("postgresql://", "postgres://", 1)

    @property
    def dsn(self) -> str:
        """asyncpg's spelling (``postgresql://``)."""
        return _dsn(self.server_url, self.name)

    @classmethod
    def create(cls, server_url: str, name: str | None = None) -> BenchDatabase:
        name = name or f"bench_{secrets.token_hex(4)}"
        if not name.startswith("bench_") or not name.replace("_", "").isalnum():
            raise ValueError("the bench only creates databases named bench_<alphanumerics>")

        async def create() -> None:
            conn = await asyncpg.connect(_dsn(server_url, "postgres"))
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        log.info("Created database %s", name)
        return cls(server_url, name)

    def drop(self) -> None:
        async def drop() -> None:
            conn = await asyncpg.connect(_dsn(self.server_url, "postgres"))
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            finally:
                await conn.close()

        asyncio.run(drop())
        log.info("Dropped database %s", self.name)

    def seed(self, *, users: int, posts: int, jobs: int, follows: int) -> float:
        """Run the service's seed command; returns the seconds it took."""
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "models.seed", "--users", str(users),  # noqa: S603
                        "--posts", str(posts), "--jobs", str(jobs), "--follows", str(follows),
                        "--random-seed", "5", "--database-url", self.url],
                       check=True, cwd=ROOT)
        elapsed = time.monotonic() - started
        log.info("Seeded %d users, %d posts in %.1f s", users, posts, elapsed)
        return elapsed

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def fetch() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(fetch())

    def server_version(self) -> str:
        return str(self.fetch("SHOW server_version")[0][0])
