"""Fill a database with users, follows, posts and jobs for demos and benchmarks.

    python -m models.seed --users 10000 --posts 100000 --jobs 2000 --follows 50000 \\
        [--database-url postgres://postgres@127.0.0.1:5432/bench] [--random-seed 42]

The database defaults to ``DATABASE_URL`` (else the embedded SQLite file); an empty database is
migrated first and rows are appended after the existing ones.  Every seeded user is
``user<id>`` (email ``user<id>@example.com``) with the password ``password123``: one argon2
hash is computed once and shared, so seeding costs one hash, not one per user.

Rows go in with bulk inserts: ``COPY`` (asyncpg ``copy_records_to_table``) on PostgreSQL, one
``executemany`` per table on SQLite, all in one transaction.  Run it against an idle database:
on PostgreSQL the tables are locked while seeding.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from argon2 import PasswordHasher
from sanic import Sanic
from tortoise import BaseDBAsyncClient, Tortoise, connections
from tortoise.transactions import in_transaction

from models.db import ensure_schema, init_database
from models.seed_data import COLUMNS, FirstIds, Generator, Row
from models.user import User
from settings import DEFAULT_DATABASE_URL, Settings, normalise_database_url

log = logging.getLogger(__name__)

SEED_PASSWORD = "password123"
"""The password of every seeded user."""


@dataclass(frozen=True)
class SeedCounts:
    """How many rows of each kind to add."""

    users: int = 0
    follows: int = 0
    posts: int = 0
    jobs: int = 0


DEMO = SeedCounts(users=50, follows=300, posts=500, jobs=100)
"""The small data set loaded at start-up with ``SEED_DEMO=true``."""


def _plan(counts: SeedCounts, gen: Generator, first: FirstIds, existing_users: list[int],
          password_hash: str) -> dict[str, list[Row]]:
    """Every row to insert, per table, in foreign-key order."""
    users = gen.users(counts.users, first.users, password_hash)
    pool = [row[0] for row in users] or existing_users
    if not pool and (counts.posts or counts.jobs or counts.follows):
        raise ValueError("posts, jobs and follows need users: seed some with --users")
    jobs, tags = gen.jobs(counts.jobs, first.jobs, first.job_tags, pool)
    return {
        "users": users,
        "follows": gen.follows(counts.follows, first.follows, pool) if len(pool) > 1 else [],
        "posts": gen.posts(counts.posts, first.posts, pool),
        "jobs": jobs,
        "job_tags": tags,
    }


async def _seed_postgres(conn: BaseDBAsyncClient, counts: SeedCounts, gen: Generator,
                         password_hash: str) -> dict[str, int]:
    async with conn.acquire_connection() as raw:
        async with raw.transaction():
            # Explicit ids need the tables to ourselves until the sequences are moved past them.
            await raw.execute(f"LOCK TABLE {', '.join(COLUMNS)} IN SHARE ROW EXCLUSIVE MODE")
            first = FirstIds(**{
                table: await raw.fetchval(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
                for table in COLUMNS
            })
            existing = [] if counts.users else [
                row["id"] for row in await raw.fetch("SELECT id FROM users")]
            plan = _plan(counts, gen, first, existing, password_hash)
            for table, rows in plan.items():
                if not rows:
                    continue
                columns = COLUMNS[table]
                if table == "follows" and not counts.users:
                    # Pairs of existing users may already follow each other: skip those.
                    await raw.executemany(
                        f"INSERT INTO follows ({', '.join(columns)}) VALUES "
                        f"({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) "
                        "ON CONFLICT DO NOTHING", rows)
                else:
                    await raw.copy_records_to_table(table, records=rows, columns=list(columns))
                await raw.execute("SELECT setval(pg_get_serial_sequence($1, 'id'), $2)",
                                  table, rows[-1][0])
    return {table: len(rows) for table, rows in plan.items()}


def _sqlite_value(value: Any) -> Any:
    # The text form Tortoise stores, so that keyset comparisons order seeded and API rows alike.
    if isinstance(value, datetime):
        return value.isoformat(" ")
    if isinstance(value, bool):
        return int(value)
    return value


async def _seed_sqlite(counts: SeedCounts, gen: Generator,
                       password_hash: str) -> dict[str, int]:
    async with in_transaction() as tx:
        first_ids = {}
        for table in COLUMNS:
            _, found = await tx.execute_query(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
            first_ids[table] = int(found[0][0])
        existing = [] if counts.users else [
            int(row[0]) for row in (await tx.execute_query("SELECT id FROM users"))[1]]
        plan = _plan(counts, gen, FirstIds(**first_ids), existing, password_hash)
        for table, rows in plan.items():
            if rows:
                columns = COLUMNS[table]
                # OR IGNORE: seeded follows between existing users may already exist.
                sql = (f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
                       f"VALUES ({', '.join('?' * len(columns))})")
                await tx.execute_many(sql, [[_sqlite_value(v) for v in row] for row in rows])
    return {table: len(rows) for table, rows in plan.items()}


async def seed(counts: SeedCounts, *, random_seed: int | None = None) -> dict[str, int]:
    """Insert ``counts`` rows into the open ``default`` connection; returns rows per table."""
    password_hash = await asyncio.to_thread(PasswordHasher().hash, SEED_PASSWORD)
    gen = Generator(random.Random(random_seed))
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        return await _seed_postgres(conn, counts, gen, password_hash)
    return await _seed_sqlite(counts, gen, password_hash)


async def seed_database(database_url: str, counts: SeedCounts, *,
                        random_seed: int | None = None) -> dict[str, int]:
    """Open ``database_url``, create the schema if needed, seed it and close it again."""
    await init_database(database_url)
    try:
        await ensure_schema()
        return await seed(counts, random_seed=random_seed)
    finally:
        await Tortoise.close_connections()


async def seed_demo_if_empty(database_url: str) -> bool:
    """Load :data:`DEMO` when the database has no users yet; True when it did."""
    await init_database(database_url)
    try:
        await ensure_schema()
        if await User.exists():
            log.info("Demo data not loaded: the database already has users")
            return False
        inserted = await seed(DEMO)
        log.info("Demo data loaded: %s (password %r)", inserted, SEED_PASSWORD)
        return True
    finally:
        await Tortoise.close_connections()


def register_demo_seed(app: Sanic, database_url: str) -> None:
    """Seed demo data once, in the main process, before any worker starts.

    ``main_process_start`` runs once however many workers follow, so they cannot race to seed.
    """

    async def load_demo_data(app: Sanic) -> None:
        await seed_demo_if_empty(database_url)

    app.register_listener(load_demo_data, "main_process_start")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.seed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in asdict(SeedCounts(users=100, follows=500, posts=1000, jobs=100)).items():
        parser.add_argument(f"--{name}", type=int, default=default, metavar="N",
                            help=f"{name} to add (default {default})")
    parser.add_argument("--database-url", default=None,
                        help="default: DATABASE_URL from the environment, else the SQLite file")
    parser.add_argument("--random-seed", type=int, default=None,
                        help="make the generated data reproducible")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    counts = SeedCounts(users=args.users, follows=args.follows, posts=args.posts, jobs=args.jobs)
    if min(asdict(counts).values()) < 0:
        print("counts must not be negative", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        settings = Settings(database_url=normalise_database_url(
            args.database_url or os.environ.get("DATABASE_URL", "").strip()
            or DEFAULT_DATABASE_URL))
        settings.ensure_data_dir()
        inserted = asyncio.run(seed_database(settings.database_url, counts,
                                             random_seed=args.random_seed))
    except ValueError as exc:  # also SettingsError: a malformed URL
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    summary = ", ".join(f"{n} {table}" for table, n in inserted.items())
    print(f"Seeded {summary} in {elapsed:.1f} s (password for every user: {SEED_PASSWORD})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
